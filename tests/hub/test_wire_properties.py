"""Properties of Mixer decode/encode on generated input (hypothesis), beyond the value
round trips of test_compression.py:

* any bytes sent as Check or Report are answered or refused with the hub's own error —
  through the handlers the gRPC server calls;
* random word indices, random mutations and truncations of valid encodings decode or
  raise WireError, never anything else;
* DELTA_ENCODING reports decode to the cumulative bags, INDEPENDENT to each bag;
* a client whose dictionary is a prefix of the hub's is understood;
* references and whole verdicts survive the hub's encoder and the client's decoder.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixerhub.api.mixer.v1 import attributes_pb2, check_pb2, report_pb2
from mixerhub.attributes.bag import Reference
from mixerhub.attributes.compression import Decoder, Encoder, decode_references
from mixerhub.attributes.dictionary import global_words
from mixerhub.errors import MixerhubError, WireError
from mixerhub.metrics import Metrics
from mixerhub.policy import AllowAll
from mixerhub.proxy_filter.mixer_client import decode_check_response
from mixerhub.server.guard import parse
from mixerhub.server.mixer import MixerService, decode_report
from mixerhub.verdict import CheckOutcome, HeaderOp, HeaderOperation, QuotaGrant, Verdict
from tests.fakes import Log

WORDS = global_words()
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
text = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))
names = st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=12))
simple_values = st.one_of(text, st.integers(-(2**63), 2**63 - 1), st.booleans(),
                          st.floats(allow_nan=False), st.dictionaries(text, text, max_size=3))
bags = st.dictionaries(names, simple_values, max_size=8)
SERVICE = MixerService(AllowAll, Metrics(), Log())


def run(coro: Any) -> Any:
    """Drive a handler coroutine that never waits (AllowAll) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the handler waited on something")


@SETTINGS
@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_are_answered_or_refused_with_the_hubs_own_error(raw: bytes,
                                                                    report: bool) -> None:
    handler = SERVICE.report if report else SERVICE.check
    try:
        answer = run(handler(raw))
    except MixerhubError as exc:
        assert exc.grpc_status.name == "INVALID_ARGUMENT"
        return
    kind = report_pb2.ReportResponse if report else check_pb2.CheckResponse
    kind.FromString(answer)  # whatever was accepted got a well-formed answer


sint32 = st.integers(-(2**31), 2**31 - 1)
small_index = st.integers(-12, len(WORDS) + 3)


@SETTINGS
@given(st.lists(st.text(max_size=6), max_size=6),
       st.dictionaries(st.one_of(small_index, sint32), st.one_of(small_index, sint32),
                       max_size=6),
       st.dictionaries(small_index, st.dictionaries(small_index, small_index, max_size=3),
                       max_size=2),
       st.integers(0, 2 * len(WORDS)))
def test_random_word_indices_decode_to_known_words_or_raise_a_wire_error(
        words: list[str], strings: dict[int, int], maps: dict[int, dict[int, int]],
        global_count: int) -> None:
    ca = attributes_pb2.CompressedAttributes(words=words)
    for k, v in strings.items():
        ca.strings[k] = v
    for k, entries in maps.items():
        for mk, mv in entries.items():
            ca.string_maps[k].entries[mk] = mv
    try:
        values = Decoder().decode(ca, global_word_count=global_count)
    except WireError:
        return
    vocabulary = set(WORDS) | set(words)
    for name, value in values.items():
        assert name in vocabulary
        items = value.items() if isinstance(value, dict) else [(value, value)]
        assert all(k in vocabulary and v in vocabulary for k, v in items)


@SETTINGS
@given(bags, st.data())
def test_mutated_or_truncated_encodings_decode_or_raise_a_wire_error(values: dict[str, Any],
                                                                     data: st.DataObject
                                                                     ) -> None:
    wire = bytearray(Encoder().encode(values).SerializeToString())
    if wire:
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(wire) - 1))
            wire[at] = data.draw(st.integers(0, 255))
        wire = wire[:data.draw(st.integers(0, len(wire)))]
    try:
        Decoder().decode(parse(attributes_pb2.CompressedAttributes, bytes(wire)))
    except WireError:
        pass


@SETTINGS
@given(st.lists(bags, min_size=1, max_size=5), st.booleans())
def test_reports_decode_to_cumulative_bags_under_delta_encoding(patches: list[dict[str, Any]],
                                                                delta: bool) -> None:
    encoder, shared = Encoder(), []
    request = report_pb2.ReportRequest(
        attributes=[encoder.encode(p, shared) for p in patches], default_words=shared,
        global_word_count=encoder.global_word_count,
        repeated_attributes_semantics=(report_pb2.ReportRequest.DELTA_ENCODING if delta
                                       else report_pb2.ReportRequest.INDEPENDENT_ENCODING))
    request = report_pb2.ReportRequest.FromString(request.SerializeToString())
    decoded = [bag.values for bag in decode_report(Decoder(), request)]
    wanted, current = [], {}
    for patch in patches:
        current = {**current, **patch} if delta else dict(patch)
        wanted.append(current)
    assert decoded == wanted


@SETTINGS
@given(bags, st.integers(0, len(WORDS)))
def test_a_client_with_a_shorter_dictionary_is_understood(values: dict[str, Any],
                                                          known: int) -> None:
    client = Encoder(WORDS[:known])
    ca = attributes_pb2.CompressedAttributes.FromString(
        client.encode(values).SerializeToString())
    assert Decoder().decode(ca, global_word_count=known or len(WORDS)) == values


references = st.lists(st.builds(Reference, names, st.one_of(st.none(), text), st.booleans()),
                      max_size=8, unique_by=lambda r: (r.name, r.map_key))


@SETTINGS
@given(references)
def test_references_survive_encode_and_decode(refs: list[Reference]) -> None:
    wire = Encoder().encode_references(refs).SerializeToString()
    assert decode_references(attributes_pb2.ReferencedAttributes.FromString(wire)) == refs


header_ops = st.lists(st.builds(HeaderOp, st.text(min_size=1, max_size=8),
                                st.text(max_size=8), st.sampled_from(list(HeaderOperation))),
                      max_size=3).map(tuple)
verdicts = st.builds(
    Verdict, code=st.integers(0, 16), message=st.text(max_size=20),
    valid_duration=st.timedeltas(dt.timedelta(0), dt.timedelta(days=3650)).map(
        lambda d: dt.timedelta(seconds=d.days * 86400 + d.seconds,
                               microseconds=d.microseconds)),
    valid_use_count=st.integers(0, 2**31 - 1), references=references.map(tuple),
    request_header_ops=header_ops, response_header_ops=header_ops,
    direct_response_code=st.integers(0, 599), direct_response_body=st.text(max_size=20))
grants = st.dictionaries(st.text(min_size=1, max_size=8), st.builds(
    QuotaGrant, granted_amount=st.integers(0, 2**40),
    valid_duration=st.integers(0, 10**6).map(lambda s: dt.timedelta(seconds=s)),
    code=st.sampled_from([0, 8, 14]), message=st.text(max_size=10)), max_size=3)


@SETTINGS
@given(verdicts, grants)
def test_a_verdict_survives_the_hubs_encoder_and_the_clients_decoder(verdict: Verdict,
                                                                      quotas: dict) -> None:
    if not verdict.direct_response_code:
        verdict = Verdict(**{**_fields(verdict), "direct_response_body": ""})
    wire = SERVICE._encode_check(CheckOutcome(verdict, quotas))
    result = decode_check_response(check_pb2.CheckResponse.FromString(wire))
    assert result.verdict == verdict
    assert {n: (g.granted_amount, g.valid_duration, g.code, g.message if g.code else "")
            for n, g in result.quotas.items()} == {
        n: (g.granted_amount, g.valid_duration, g.code, g.message if g.code else "")
        for n, g in quotas.items()}


def _fields(verdict: Verdict) -> dict[str, Any]:
    return {f: getattr(verdict, f) for f in Verdict.__dataclass_fields__}
