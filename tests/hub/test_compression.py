"""The compressed wire form: encode → decode is identity; references round-trip."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixerhub.api.mixer.v1 import attributes_pb2 as pb
from mixerhub.attributes.bag import AttributeBag, Reference
from mixerhub.attributes.compression import Decoder, Encoder, decode_references
from mixerhub.attributes.dictionary import global_index, global_words
from mixerhub.attributes.types import ValueType, default_manifest
from mixerhub.errors import EncodeError, WireError

MANIFEST = default_manifest()
WORDS = global_words()
text = st.one_of(st.sampled_from(WORDS), st.text(max_size=20))
timestamps = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9999, 1, 1),
                          timezones=st.just(dt.timezone.utc))
durations = st.timedeltas(min_value=dt.timedelta(days=-10**6), max_value=dt.timedelta(days=10**6))
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
BY_TYPE = {
    ValueType.STRING: text, ValueType.DNS_NAME: text, ValueType.URI: text,
    ValueType.EMAIL_ADDRESS: text, ValueType.INT64: st.integers(-(2**63), 2**63 - 1),
    ValueType.DOUBLE: st.floats(allow_nan=False), ValueType.BOOL: st.booleans(),
    ValueType.TIMESTAMP: timestamps, ValueType.DURATION: durations, ValueType.IP_ADDRESS: ips,
    ValueType.STRING_MAP: st.dictionaries(text, text, max_size=5),
    ValueType.BYTES: st.binary(max_size=16).filter(lambda b: len(b) not in (4, 16)),
}
known = st.sampled_from(sorted(MANIFEST)).flatmap(
    lambda name: st.tuples(st.just(name), BY_TYPE[MANIFEST[name]]))
unknown = st.tuples(st.text(min_size=1, max_size=30).filter(lambda n: n not in MANIFEST),
                    st.one_of(text, st.integers(-(2**63), 2**63 - 1), st.booleans(),
                              st.floats(allow_nan=False), timestamps, durations,
                              st.dictionaries(text, text, max_size=3), st.binary(max_size=8)))
attribute_bags = st.lists(st.one_of(known, unknown), max_size=25).map(dict)


@settings(max_examples=400, deadline=None)
@given(attribute_bags)
def test_encode_then_decode_is_identity(values: dict) -> None:
    ca = Encoder().encode(values)
    again = pb.CompressedAttributes.FromString(ca.SerializeToString())
    assert Decoder().decode(again) == values


@settings(max_examples=200, deadline=None)
@given(st.lists(attribute_bags, min_size=1, max_size=4))
def test_shared_words_decode_through_default_words(batch: list[dict]) -> None:
    shared: list[str] = []
    encoded = [Encoder().encode(v, shared_words=shared) for v in batch]
    assert all(not ca.words for ca in encoded)
    assert [Decoder().decode(ca, default_words=shared) for ca in encoded] == batch


def test_dictionary_is_222_strings_with_first_index_for_duplicates() -> None:
    assert len(WORDS) == 222
    assert "true" in WORDS and "200" in WORDS  # BaseLoader keeps them words
    assert global_index()["200"] == WORDS.index("200")
    assert WORDS.count("0") == WORDS.count("1") == WORDS.count("200") == 2


def test_known_words_use_global_indices() -> None:
    ca = Encoder().encode({"request.method": "GET", "x-custom": "value"})
    assert list(ca.words) == ["x-custom", "value"]
    assert ca.strings[WORDS.index("request.method")] == WORDS.index("GET")
    assert ca.strings[-1] == -2


def test_ip_bytes_decode_to_addresses_only_for_ip_attributes() -> None:
    ca = Encoder().encode({"source.ip": ipaddress.ip_address("10.1.2.3"), "blob.x": b"\x01\x02"})
    assert ca.bytes[WORDS.index("source.ip")] == b"\x0a\x01\x02\x03"
    decoded = Decoder().decode(ca)
    assert decoded["source.ip"] == ipaddress.ip_address("10.1.2.3")
    assert decoded["blob.x"] == b"\x01\x02"


def test_encoding_rejects_what_the_wire_cannot_hold() -> None:
    with pytest.raises(EncodeError, match="does not fit in INT64"):
        Encoder().encode({"request.size": 2**63})
    with pytest.raises(EncodeError, match="no attribute type holds a list"):
        Encoder().encode({"request.size": [1]})


def test_client_with_smaller_dictionary_cannot_name_later_words() -> None:
    ca = Encoder().encode({"request.method": "GET"})
    with pytest.raises(WireError, match="global dictionary has 10 words"):
        Decoder().decode(ca, global_word_count=10)


def test_references_round_trip_with_map_keys_and_absence() -> None:
    bag = AttributeBag({"request.headers": {"x-user": "alice"}, "source.uid": "u"})
    bag.get_map_key("request.headers", "x-user")
    bag.get_map_key("request.headers", "x-missing")
    bag.get("destination.uid")
    bag.get("source.uid")
    refs = bag.references()
    assert [r.notation() for r in refs] == [
        "request.headers[x-user]", "-request.headers[x-missing]", "-destination.uid",
        "source.uid"]
    assert bag.references(keyed=True)[0].notation() == "request.headers"
    bag.get("request.headers")  # a whole-map use: now the map itself is referenced
    assert bag.references()[0].notation() == "request.headers"
    ra = pb.ReferencedAttributes.FromString(
        Encoder().encode_references(refs).SerializeToString())
    assert decode_references(ra) == refs
    assert Reference("x-missing", None, True).notation() == "x-missing"
