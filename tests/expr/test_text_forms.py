"""Text forms (Go durations, RFC 3339, IPs) and the DNS / e-mail / URI rules."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from mixerhub.expr import names
from mixerhub.expr.values import format_rfc3339, ip_key, parse_go_duration, parse_ip, parse_rfc3339

UTC = dt.UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", dt.timedelta(0)), ("1h", dt.timedelta(hours=1)), ("1h30m", dt.timedelta(minutes=90)),
        ("1.5s", dt.timedelta(seconds=1.5)), ("-2ms", dt.timedelta(milliseconds=-2)),
        ("+3us", dt.timedelta(microseconds=3)), ("7µs", dt.timedelta(microseconds=7)),
        ("1500ns", dt.timedelta(microseconds=1)), (".5m", dt.timedelta(seconds=30)),
        ("2562047h", dt.timedelta(hours=2562047)),
    ],
)  # fmt: skip
def test_go_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "1x", "h", ".s", "1.2.3s", "--1s", "1s ", "3000000h", "s1"])
def test_not_go_durations(text: str) -> None:
    assert parse_go_duration(text) is None


def test_rfc3339() -> None:
    assert parse_rfc3339("2015-01-02T15:04:35Z") == dt.datetime(2015, 1, 2, 15, 4, 35, tzinfo=UTC)
    moment = parse_rfc3339("2015-01-02T15:04:35.123456789+01:30")
    assert moment == dt.datetime(2015, 1, 2, 13, 34, 35, 123456, tzinfo=UTC)
    assert moment is not None and moment.tzinfo is UTC
    assert format_rfc3339(dt.datetime(2015, 1, 2, 15, 4, 35, tzinfo=UTC)) == "2015-01-02T15:04:35Z"


@pytest.mark.parametrize(
    "text", ["2015-13-02T15:04:35Z", "2015-01-02t15:04:35Z", "2015-01-02T15:04:35", "2015-01-02", "242233"]
)
def test_not_rfc3339(text: str) -> None:
    assert parse_rfc3339(text) is None


def test_ip_parsing_and_normalisation() -> None:
    assert parse_ip("1.2.3.4") == ipaddress.IPv4Address("1.2.3.4")
    assert parse_ip("::1") == ipaddress.IPv6Address("::1")
    assert parse_ip("fe80::1%eth0") is None
    assert parse_ip("10.1.12") is None
    four = ipaddress.IPv4Address("1.2.3.4")
    assert ip_key(b"\x01\x02\x03\x04") == four
    assert ip_key(b"\x00" * 10 + b"\xff\xff\x01\x02\x03\x04") == four
    assert ip_key(ipaddress.IPv6Address("::ffff:1.2.3.4")) == four
    assert ip_key(b"\x01\x02") is None and ip_key("1.2.3.4") is None


@pytest.mark.parametrize(
    "name", ["foo.bar", "foo.Bar.baz.", "a", "xn--bcher-kva.de", "bücher.de", "a-b.c0", "x" * 63 + ".io"]
)
def test_valid_dns_names(name: str) -> None:
    assert names.dns_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty name"), ("-foo.-bar", "invalid label '-foo'"), ("a..b", "invalid label ''"),
        ("a_b.c", "invalid label 'a_b'"), ("ab--cd.e", "invalid label 'ab--cd'"),
        ("x" * 64 + ".io", "invalid label '" + "x" * 64 + "'"),
        (".".join(["abcdefghi"] * 26), "name longer than 253 characters"),
        ("xn--zz.de", "invalid label 'xn--zz'"),
    ],
)  # fmt: skip
def test_invalid_dns_names(name: str, problem: str) -> None:
    assert names.dns_name_problem(name) == problem


def test_dns_name_equality() -> None:
    assert names.dns_names_equal("Foo.Bar.", "foo.bar")
    assert names.dns_names_equal("xn--bcher-kva.de", "BÜCHER.de")
    assert not names.dns_names_equal("foo.bar", "bar.foo")


def test_emails() -> None:
    assert names.parse_email('"istio"@istio.io') == names.EmailAddress("istio", "istio.io")
    assert names.parse_email("<a.b@c.io>") == names.EmailAddress("a.b", "c.io")
    assert names.parse_email("") == "no address"
    assert names.parse_email("barfoo") == "missing '@'"
    assert names.parse_email("Name <a@b.io>") == "display names are not allowed"
    assert names.parse_email("a..b@c.io") == "invalid local part 'a..b'"
    assert names.parse_email("a@-c.io") == "invalid domain: invalid label '-c'"
    assert names.emails_equal('"x"@A.io', "x@a.io") is True
    assert names.emails_equal("X@a.io", "x@a.io") is False  # local parts are case-sensitive
    assert names.emails_equal("nope", "x@a.io") == "'nope': missing '@'"


def test_uris() -> None:
    assert names.parse_uri("http://u@h.io:8080/p?q=%zz#f") == names.URIParts("http", "u", "h.io", "8080", "/p?q=%zz#f")
    assert names.parse_uri("urn:foo") == names.URIParts("urn", None, None, "", "foo")
    assert names.parse_uri("www.istio.io") == names.URIParts("", None, None, "", "www.istio.io")
    assert names.parse_uri("http://[::1]:80/") == names.URIParts("http", None, "::1", "80", "/")
    assert names.parse_uri("") == "empty string"
    assert names.parse_uri(":/") == "missing protocol scheme"
    assert names.parse_uri("http://h/%zz") == "invalid percent-escape"
    assert names.parse_uri("http://h:port/") == "invalid host or port 'h:port'"
    assert names.parse_uri("1a:b") == "first path segment cannot contain a colon"
    assert names.parse_uri("a\nb") == "invalid control character"
    assert names.uris_equal("HTTPS://Foo.bar./x", "https://foo.bar/x") is True
    assert names.uris_equal("https://foo.bar/x", "https://foo.bar/X") is False
    assert names.uris_equal(":/", "http://a") == "':/': missing protocol scheme"
