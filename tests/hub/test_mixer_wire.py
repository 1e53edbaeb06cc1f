"""Mixer v1 Check over the wire, with requests built by hand from the field facts."""

from __future__ import annotations

import os
from importlib import resources

import grpc
import pytest
import yaml

from tests.conftest import scrape
from tests.wire import f_len, f_sint, f_str, f_varint, first, map_entry, parse, tag, varint

CHECK = "/istio.mixer.v1.Mixer/Check"


def dictionary() -> list[str]:
    text = (resources.files("mixerhub") / "data" / "global_dictionary.yaml").read_text()
    return yaml.load(text, Loader=yaml.BaseLoader)


def hand_check_request() -> bytes:
    """source.uid (global) = "kubernetes://alice" (message word -1); request.path (global) =
    "/reviews" (message word -2); request.headers (global) = {":method" (global): "GET"
    (global), "x-user" (word -3): "alice" (word -4)}; request.size (global) = 512."""
    words = dictionary()
    g = words.index
    attrs = b"".join([
        f_str(1, "kubernetes://alice"), f_str(1, "/reviews"), f_str(1, "x-user"),
        f_str(1, "alice"),
        map_entry(2, f_sint(1, g("source.uid")), f_sint(2, -1)),
        map_entry(2, f_sint(1, g("request.path")), f_sint(2, -2)),
        map_entry(3, f_sint(1, g("request.size")), f_varint(2, 512)),
        map_entry(9, f_sint(1, g("request.headers")), f_len(2, b"".join([
            map_entry(1, f_sint(1, g(":method")), f_sint(2, g("GET"))),
            map_entry(1, f_sint(1, -3), f_sint(2, -4)),
        ]))),
    ])
    return f_len(1, attrs) + f_varint(2, len(words)) + f_str(3, "dedup-1")


def raw_check(channel: grpc.aio.Channel):
    return channel.unary_unary(CHECK)  # bytes in, bytes out: no generated code involved


async def test_hand_built_check_gets_ok_60s_10000(hub, channel) -> None:
    from tests.conftest import CapturingPolicy

    hub.policy = policy = CapturingPolicy()
    reply = parse(await raw_check(channel)(hand_check_request(), timeout=10))
    precondition = parse(first(reply, 2))
    status = parse(first(precondition, 1, b""))
    duration = parse(first(precondition, 2))
    assert first(status, 1, 0) == 0  # google.rpc.Code OK
    assert first(duration, 1) == 60 and first(duration, 2, 0) == 0
    assert first(precondition, 3) == 10_000
    assert policy.checks[0].values == {
        "source.uid": "kubernetes://alice", "request.path": "/reviews", "request.size": 512,
        "request.headers": {":method": "GET", "x-user": "alice"},
    }


@pytest.mark.parametrize("name,payload,reason", [
    ("global index out of range",
     f_len(1, map_entry(2, f_sint(1, 5000), f_sint(2, 0))), "word index 5000 is out of range"),
    ("message word out of range",
     f_len(1, f_str(1, "only") + map_entry(2, f_sint(1, 0), f_sint(2, -7))),
     "word index -7 is out of range"),
    ("map value that is no StringMap",
     f_len(1, map_entry(9, f_sint(1, 0), tag(2, 0) + varint(5))), "an entry is not a StringMap"),
    ("string map entry whose value is no word index",
     f_len(1, map_entry(9, f_sint(1, 0), f_len(2, map_entry(1, f_sint(1, 0), f_str(2, "x"))))),
     "string_maps[source.ip].entries: wire type 2 is wrong"),
    ("string map entry out of range",
     f_len(1, map_entry(9, f_sint(1, 0), f_len(2, map_entry(1, f_sint(1, 0), f_sint(2, 999))))),
     "word index 999"),
    ("random bytes", os.urandom(7) + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
     "CheckRequest is not valid protobuf"),
    ("index beyond the hub's dictionary of a newer client",
     f_len(1, map_entry(2, f_sint(1, 230), f_sint(2, 0))) + f_varint(2, 300),
     "beyond the hub's global dictionary of 222 words"),
])
async def test_malformed_is_invalid_argument_and_server_keeps_serving(
        hub, channel, name, payload, reason) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_check(channel)(payload, timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, name
    assert reason in err.value.details()
    reply = parse(await raw_check(channel)(hand_check_request(), timeout=10))
    assert first(parse(first(reply, 2)), 3) == 10_000
    metrics = await scrape(hub.http.port)
    assert metrics['mixerhub_bad_requests_total{method="Check",service="mixer"}'] == 1
    assert metrics['mixerhub_checks_total{outcome="error",source="mixer"}'] == 1
    assert metrics['mixerhub_checks_total{outcome="ok",source="mixer"}'] == 1


async def test_dictionary_duplicates_decode_from_both_indices(hub, channel) -> None:
    from tests.conftest import CapturingPolicy

    hub.policy = policy = CapturingPolicy()
    words = dictionary()
    dups = [i for i, w in enumerate(words) if w in ("0", "1", "200")]
    assert [words[i] for i in dups] == ["200", "0", "1", "0", "1", "200"]
    body = b"".join(map_entry(2, f_sint(1, -(k + 1)), f_sint(2, i)) for k, i in enumerate(dups))
    body = b"".join(f_str(1, f"a{k}") for k in range(len(dups))) + body
    await raw_check(channel)(f_len(1, body), timeout=10)
    assert [policy.checks[0].values[f"a{k}"] for k in range(len(dups))] == [words[i] for i in dups]
