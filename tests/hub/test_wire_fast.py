"""The C decoder of Report bytes (hub/attributes/_wire.c) against the Python path.

For every input, ``Decoder.decode_report_bytes`` either gives exactly the bags that
protobuf parsing + ``decode_report`` give, or None (the hub then takes the Python path).
It must never accept what the Python path refuses, and it must take the plain inputs
real clients send (or it would be useless): both are checked on generated bags, their
encodings, and random mutations of those encodings.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixerhub.api.mixer.v1 import attributes_pb2, report_pb2
from mixerhub.attributes import compression
from mixerhub.attributes.compression import Decoder, Encoder
from mixerhub.attributes.dictionary import global_words
from mixerhub.errors import MixerhubError
from mixerhub.proxy_filter.mixer_client import encode_report
from mixerhub.server.guard import parse
from mixerhub.server.mixer import decode_report

WORDS = global_words()
DECODER = Decoder()
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
text = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))
names = st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=12))
times = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1),
                     timezones=st.just(dt.timezone.utc))
durations = st.timedeltas(min_value=dt.timedelta(days=-9999), max_value=dt.timedelta(days=9999))
addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
values = st.one_of(text, st.integers(-(2**63), 2**63 - 1), st.booleans(),
                   st.floats(allow_nan=False), st.dictionaries(text, text, max_size=4),
                   times, durations, st.binary(max_size=8))
bags = st.one_of(
    st.dictionaries(names, values, max_size=8),
    # IP attributes, as bytes on the wire: decoded to addresses by name
    st.fixed_dictionaries({"source.ip": addresses}, optional={"destination.ip": addresses,
                                                              "request.path": text}))

pytestmark = pytest.mark.skipif(compression._wire is None and not os.environ.get("CI"),
                                reason="the C decoder is not built here")


def test_ci_builds_the_c_decoder() -> None:
    assert compression._wire is not None, "setup.py's extension did not build"


def python_path(raw: bytes) -> Any:
    """What the hub's Python path makes of ``raw``: bags, or the error's type."""
    try:
        return [bag.values for bag in decode_report(DECODER,
                                                     parse(report_pb2.ReportRequest, raw))]
    except MixerhubError as exc:
        return type(exc)


def assert_agrees(raw: bytes) -> bool:
    """C gives the Python path's bags or None; True when C decoded it."""
    fast = DECODER.decode_report_bytes(raw)
    slow = python_path(raw)
    if fast is None:
        return False
    assert isinstance(slow, list), f"C accepted what the Python path refuses: {slow}"
    assert fast == slow
    assert [list(b) for b in fast] == [list(b) for b in slow] or _same_keys(fast, slow)
    return True


def _same_keys(fast: list[dict[str, Any]], slow: list[dict[str, Any]]) -> bool:
    # Insertion order within one map of one message follows the wire in C and protobuf's
    # map order in Python; the sets of names are what a bag promises.
    return all(set(a) == set(b) for a, b in zip(fast, slow, strict=True))


@SETTINGS
@given(st.lists(bags, min_size=1, max_size=6), st.sampled_from(["delta", "independent"]))
def test_encoded_reports_decode_the_same_in_c(batch: list[dict[str, Any]],
                                              encoding: str) -> None:
    for request in encode_report(Encoder(), batch, encoding):  # type: ignore[arg-type]
        raw = request.SerializeToString()
        assert assert_agrees(raw), "C fell back on a plain encoding"


@SETTINGS
@given(st.lists(bags, min_size=1, max_size=4), st.randoms(use_true_random=False),
       st.integers(1, 6))
def test_mutated_reports_decode_the_same_in_c_or_fall_back(batch: list[dict[str, Any]],
                                                            rng: random.Random,
                                                            mutations: int) -> None:
    for request in encode_report(Encoder(), batch, "delta"):
        raw = bytearray(request.SerializeToString())
        for _ in range(mutations):
            where = rng.randrange(len(raw) + 1)
            action = rng.randrange(3)
            if action == 0 and where < len(raw):
                raw[where] = rng.randrange(256)
            elif action == 1:
                raw.insert(where, rng.randrange(256))
            elif where < len(raw):
                del raw[where]
        assert_agrees(bytes(raw))


def test_the_plain_kind_of_request_is_decoded_in_c() -> None:
    when = dt.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
    batch = [{"source.ip": ipaddress.ip_address("10.0.0.7"), "request.time": when,
              "response.duration": dt.timedelta(milliseconds=7), "response.code": 200,
              "request.headers": {"x-user": "alice", ":path": "/a"}, "request.path": "/a",
              "connection.mtls": True, "request.size": 12}]
    batch.append({**batch[0], "request.path": "/b", "request.headers": {"x-user": "bob"}})
    for encoding in ("delta", "independent"):
        [request] = encode_report(Encoder(), batch, encoding)  # type: ignore[arg-type]
        fast = DECODER.decode_report_bytes(request.SerializeToString())
        assert fast == batch


def test_unusual_inputs_fall_back_to_the_python_path() -> None:
    entry = attributes_pb2.CompressedAttributes(words=["a", "b"])
    entry.strings[-1] = -2  # "a": "b"
    good = report_pb2.ReportRequest(attributes=[entry])
    assert DECODER.decode_report_bytes(good.SerializeToString()) == [{"a": "b"}]
    # a word index beyond both lists: the Python path names it
    bad = report_pb2.ReportRequest(attributes=[attributes_pb2.CompressedAttributes(
        words=["only"])])
    bad.attributes[0].strings[-3] = 0
    assert DECODER.decode_report_bytes(bad.SerializeToString()) is None
    assert not isinstance(python_path(bad.SerializeToString()), list)
    # one name twice in one map (a global and a message word): protobuf's order decides
    twice = attributes_pb2.CompressedAttributes(words=[WORDS[0]])
    twice.strings[0] = 1
    twice.strings[-1] = 2
    assert DECODER.decode_report_bytes(
        report_pb2.ReportRequest(attributes=[twice]).SerializeToString()) is None
    # a field number the decoder does not know (a newer client's): the Python path
    newer = good.SerializeToString() + b"\x28\x01"  # field 5, varint 1
    assert DECODER.decode_report_bytes(newer) is None
    assert python_path(newer) == [{"a": "b"}]


def test_a_word_that_is_not_utf8_is_refused_even_unused() -> None:
    raw = report_pb2.ReportRequest(attributes=[attributes_pb2.CompressedAttributes()]
                                   ).SerializeToString()
    raw += b"\x12\x02\xff\xfe"  # default_words: two bytes that are not UTF-8
    assert DECODER.decode_report_bytes(raw) is None
    assert not isinstance(python_path(raw), list)


@SETTINGS
@given(st.lists(st.text(max_size=4), max_size=3),
       st.dictionaries(st.integers(-5, len(WORDS) + 2), st.integers(-5, len(WORDS) + 2),
                       max_size=4),
       st.dictionaries(st.integers(-5, 3), st.integers(-5, 3), max_size=3),
       st.integers(0, len(WORDS) + 3))
def test_random_word_indices_decode_the_same_in_c_or_fall_back(
        words: list[str], strings: dict[int, int], inner: dict[int, int],
        global_word_count: int) -> None:
    message = attributes_pb2.CompressedAttributes(words=words)
    for key, value in strings.items():
        message.strings[key] = value
    for key, value in inner.items():
        message.string_maps[-1].entries[key] = value
    raw = report_pb2.ReportRequest(attributes=[message],
                                   global_word_count=global_word_count).SerializeToString()
    assert_agrees(raw)
