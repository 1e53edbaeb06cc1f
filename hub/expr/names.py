"""DNS names, e-mail addresses and URIs: validation for the conversion functions and the
equality Mixer used for these types (case-insensitive hosts, a trailing dot ignored,
``"a"@b`` equal to ``a@b``).

The rules follow what Mixer delegated to Go (``idna`` with strict labels, ``net/mail``,
``net/url``) closely enough for policy use; they are written from those rules, not ported.
Each validator returns an error reason, or None when the text is acceptable.
"""

from __future__ import annotations

import contextlib
import encodings.idna
import re
import unicodedata
from typing import NamedTuple

_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")
_QUOTED_LOCAL = re.compile(r'"((?:[^"\\\r\n]|\\.)*)"\Z')
_PERCENT_BAD = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- DNS names ---------------------------------------------------------------------------


def dns_name_problem(text: str) -> str | None:
    """Why ``text`` is not a valid DNS name (strict letters-digits-hyphen labels), or None."""
    if text == "":
        return "empty name"
    body = text[:-1] if text.endswith(".") else text
    labels = body.split(".")
    ascii_length = 0
    for label in labels:
        ascii_label = _ascii_label(label)
        if ascii_label is None or not _valid_ascii_label(ascii_label):
            return f"invalid label '{label}'"
        ascii_length += len(ascii_label) + 1
    return "name longer than 253 characters" if ascii_length - 1 > 253 else None


def _ascii_label(label: str) -> str | None:
    if label.isascii():
        return label
    try:
        return encodings.idna.ToASCII(label).decode("ascii")
    except UnicodeError:
        return None


def _valid_ascii_label(label: str) -> bool:
    if not 0 < len(label) <= 63 or not _LDH_LABEL.match(label):
        return False
    if label[:4].lower() == "xn--":
        return _decodes(label)
    # Hyphens in the 3rd and 4th places are reserved for encodings such as "xn--".
    return label[2:4] != "--"


def _decodes(label: str) -> bool:
    try:
        encodings.idna.ToUnicode(label)
    except UnicodeError:
        return False
    return True


def canonical_dns_name(text: str) -> str:
    """The form two names are compared in: Unicode labels, case-folded, no trailing dot."""
    if text.endswith("."):
        text = text[:-1]
    return ".".join(_canonical_label(label) for label in text.split("."))


def _canonical_label(label: str) -> str:
    if label[:4].lower() == "xn--":
        with contextlib.suppress(UnicodeError):  # a bad encoding compares as written
            label = encodings.idna.ToUnicode(label)
    return unicodedata.normalize("NFKC", label).casefold()


def dns_names_equal(a: str, b: str) -> bool:
    return a == b or canonical_dns_name(a) == canonical_dns_name(b)


# --- e-mail addresses --------------------------------------------------------------------


class EmailAddress(NamedTuple):
    local: str
    domain: str


def parse_email(text: str) -> EmailAddress | str:
    """The local part (unquoted) and domain of a bare address, or the reason it is not one."""
    spec = text.strip()
    if spec == "":
        return "no address"
    if spec.endswith(">"):
        if not spec.startswith("<"):
            return "display names are not allowed"
        spec = spec[1:-1]
    local, at, domain = spec.rpartition("@")
    if not at:
        return "missing '@'"
    unquoted = _local_part(local)
    if unquoted is None:
        return f"invalid local part '{local}'"
    problem = dns_name_problem(domain)
    return f"invalid domain: {problem}" if problem else EmailAddress(unquoted, domain)


def _local_part(local: str) -> str | None:
    if _DOT_ATOM.match(local):
        return local
    quoted = _QUOTED_LOCAL.match(local)
    if quoted is None:
        return None
    return re.sub(r"\\(.)", r"\1", quoted.group(1))


def emails_equal(a: str, b: str) -> bool | str:
    """Whether two addresses are the same mailbox, or the reason one of them is not an address."""
    first, second = parse_email(a), parse_email(b)
    if isinstance(first, str):
        return f"'{a}': {first}"
    if isinstance(second, str):
        return f"'{b}': {second}"
    return first.local == second.local and dns_names_equal(first.domain, second.domain)


# --- URIs --------------------------------------------------------------------------------


class URIParts(NamedTuple):
    scheme: str
    userinfo: str | None
    host: str | None
    port: str
    rest: str


def parse_uri(text: str) -> URIParts | str:
    """The parts of a URI reference, or the reason it cannot be one. Relative references are
    accepted, as Go's ``url.Parse`` accepts them."""
    if text == "":
        return "empty string"
    if _CONTROL.search(text):
        return "invalid control character"
    scheme, rest = _split_scheme(text)
    if scheme is None:
        return "missing protocol scheme"
    if _PERCENT_BAD.search(rest.partition("?")[0] + rest.partition("#")[2]):
        return "invalid percent-escape"
    if not scheme and ":" in rest.partition("/")[0]:
        return "first path segment cannot contain a colon"
    if not rest.startswith("//"):
        return URIParts(scheme, None, None, "", rest)
    return _split_authority(scheme, rest[2:])


def _split_scheme(text: str) -> tuple[str | None, str]:
    """(scheme, remainder); scheme "" when there is none and None when it is empty (":x")."""
    for i, char in enumerate(text):
        if char.isascii() and char.isalpha():
            continue
        if char == ":":
            return (None, text) if i == 0 else (text[:i], text[i + 1 :])
        if i == 0 or not (char.isascii() and (char.isdigit() or char in "+-.")):
            return "", text
    return "", text


def _split_authority(scheme: str, text: str) -> URIParts | str:
    cut = min((i for i in (text.find(c) for c in "/?#") if i >= 0), default=len(text))
    authority, rest = text[:cut], text[cut:]
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _split_host_port(hostport)
    if host is None or (not port.isdigit() and port != ""):
        return f"invalid host or port '{hostport}'"
    return URIParts(scheme, userinfo if at else None, host, port, rest)


def _split_host_port(hostport: str) -> tuple[str | None, str]:
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            return None, ""
        return host, after[1:]
    host, colon, port = hostport.rpartition(":")
    return (host, port) if colon else (hostport, "")


def uris_equal(a: str, b: str) -> bool | str:
    """Whether two URIs name the same resource, or the reason one of them is not a URI.

    Schemes compare case-insensitively; for http and https the host compares as a DNS name.
    """
    first, second = parse_uri(a), parse_uri(b)
    if isinstance(first, str):
        return f"'{a}': {first}"
    if isinstance(second, str):
        return f"'{b}': {second}"
    if first.scheme.lower() != second.scheme.lower():
        return False
    if first.scheme.lower() in ("http", "https") and first.host is not None and second.host is not None:
        same_host = dns_names_equal(first.host, second.host)
        return same_host and first[3:] == second[3:] and first.userinfo == second.userinfo
    return first[1:] == second[1:]
