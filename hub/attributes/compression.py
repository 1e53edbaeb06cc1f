"""Mixer v1 ``CompressedAttributes`` ⇄ attribute values.

An index ≥ 0 names a global-dictionary word, an index < 0 names ``words[-index - 1]`` of
the message (or of ``ReportRequest.default_words`` when the message has none). Anything
that cannot be decoded raises :class:`~mixerhub.errors.WireError` naming the field and
the index, which the gRPC boundary turns into INVALID_ARGUMENT.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.unknown_fields import UnknownFieldSet

from mixerhub.api.mixer.v1 import attributes_pb2 as pb
from mixerhub.attributes.bag import Reference
from mixerhub.attributes.dictionary import global_index, global_words
from mixerhub.attributes.types import Manifest, ValueType, default_manifest, names_of_type
from mixerhub.errors import EncodeError, WireError

try:  # the C decoder of Report bytes (setup.py builds it when a compiler is there)
    from mixerhub.attributes import _wire
except ImportError:  # pragma: no cover - the Python path serves alone
    _wire = None  # type: ignore[assignment]  # the module, or None when it is not built

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# A message's words resolved: the fast table, its index range [lo, hi), and what the
# checked resolver (_Words) needs for the precise error: the message's words and the
# client's global word count.
_Table = tuple[tuple[str, ...], int, int, Sequence[str], int]
_UTC = dt.timezone.utc


class _Words:
    """Resolves wire indices of one message against the global and message word lists."""

    __slots__ = ("glob", "limit", "local", "client_count")

    def __init__(self, glob: Sequence[str], local: Sequence[str], client_count: int) -> None:
        self.glob = glob
        self.local = local
        self.client_count = client_count
        self.limit = min(len(glob), client_count) if client_count else len(glob)

    def __call__(self, index: int, where: str) -> str:
        if index >= 0:
            if index < self.limit:
                return self.glob[index]
            raise WireError(self._beyond_global(index, where))
        j = -index - 1
        if j < len(self.local):
            return self.local[j]
        raise WireError(
            f"{where}: word index {index} is out of range: the message has {len(self.local)} words"
        )

    def _beyond_global(self, index: int, where: str) -> str:
        if self.client_count > len(self.glob):
            return (
                f"{where}: word index {index} is beyond the hub's global dictionary of "
                f"{len(self.glob)} words (the client's has {self.client_count}); "
                f"resend with global_word_count={len(self.glob)} and per-message words"
            )
        return (
            f"{where}: word index {index} is out of range: the global dictionary has "
            f"{self.limit} words"
        )


class Decoder:
    """Decodes ``CompressedAttributes`` to a values dict; one per hub, thread-safe."""

    def __init__(
        self, dictionary: Sequence[str] | None = None, manifest: Manifest | None = None
    ) -> None:
        self.dictionary = tuple(global_words() if dictionary is None else dictionary)
        self.ip_names = names_of_type(default_manifest() if manifest is None else manifest,
                                      ValueType.IP_ADDRESS)
        # The dictionary's first N words for each N clients have sent (few, in practice).
        self._known: dict[int, tuple[str, ...]] = {}
        self._addresses: dict[bytes, Any] = {}

    def decode(
        self,
        ca: pb.CompressedAttributes,
        *,
        default_words: Sequence[str] = (),
        global_word_count: int = 0,
        into: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Decode one message; ``into`` (updated in place) serves Report's delta encoding."""
        return self._decode(ca, self._words(ca.words or default_words, global_word_count),
                            {} if into is None else into)

    def decode_report_bytes(self, raw: bytes) -> list[dict[str, Any]] | None:
        """A serialized ReportRequest's bags (DELTA_ENCODING applied) decoded in C
        (``_wire.c``, about 10x faster), or None: the extension is not built, or the
        bytes are not the plain kind it takes — then parse them and use
        :meth:`decode_all`, which explains any problem exactly."""
        if _wire is None:
            return None
        result: list[dict[str, Any]] | None = _wire.decode_report(
            raw, self.dictionary, _time_value, _duration_value, self._bytes)
        return result

    def decode_all(self, messages: Iterable[pb.CompressedAttributes],
                   default_words: Sequence[str] = (), global_word_count: int = 0,
                   delta: bool = False) -> list[dict[str, Any]]:
        """Decode a Report's messages: the word table of ``default_words`` is built once
        for all of them; ``delta`` starts each from the previous one's values (Report's
        DELTA_ENCODING). A WireError names the message's position."""
        shared = None
        out: list[dict[str, Any]] = []
        previous: dict[str, Any] = {}
        for i, ca in enumerate(messages):
            if ca.words:
                words = self._words(ca.words, global_word_count)
            else:
                if shared is None:
                    shared = self._words(default_words, global_word_count)
                words = shared
            try:
                previous = self._decode(ca, words, dict(previous) if delta else {})
            except WireError as exc:
                raise WireError(f"attributes[{i}]: {exc}") from None
            out.append(previous)
        return out

    def _words(self, local: Sequence[str], global_word_count: int) -> _Table:
        # Fast path: one table where Python's negative indexing lands on the message's
        # words (table[-k] == local[k-1]); indices outside [lo, hi) go through _word(),
        # which raises the precise error.
        limit = min(len(self.dictionary), global_word_count) if global_word_count \
            else len(self.dictionary)
        known = self._known.get(limit)
        if known is None:
            known = self._known[limit] = self.dictionary[:limit]
        # (a protobuf repeated field slices to a list in C, 3x faster than reversed())
        table = known + tuple(local[::-1]) if local else known
        return table, -len(local), limit, local, global_word_count

    def _word(self, words: _Table, index: int, where: str) -> str:
        table, lo, hi, local, global_word_count = words
        if lo <= index < hi:
            return table[index]
        return _Words(self.dictionary, local, global_word_count)(index, where)  # raises

    def _decode(self, ca: pb.CompressedAttributes, words: _Table, out: dict[str, Any]
                ) -> dict[str, Any]:
        _reject_wrong_wire_types(ca, "CompressedAttributes")
        table, lo, hi = words[0], words[1], words[2]
        word = self._word
        # Protobuf maps iterate their keys twice as fast as their items(); most messages
        # leave most maps empty, and an empty map costs only its truth test.
        strings = ca.strings
        for k in strings:
            v = strings[k]
            if lo <= k < hi and lo <= v < hi:
                out[table[k]] = table[v]
            else:
                out[word(words, k, "strings key")] = word(words, v, "strings value")
        if ca.int64s:
            for k, i in _items(ca.int64s):
                out[table[k] if lo <= k < hi else word(words, k, "int64s key")] = i
        if ca.doubles:
            for k, d in _items(ca.doubles):
                out[table[k] if lo <= k < hi else word(words, k, "doubles key")] = d
        if ca.bools:
            for k, b in _items(ca.bools):
                out[table[k] if lo <= k < hi else word(words, k, "bools key")] = b
        if ca.timestamps:
            for k, ts in _items(ca.timestamps):
                name = table[k] if lo <= k < hi else word(words, k, "timestamps key")
                out[name] = _timestamp(ts, k)
        if ca.durations:
            for k, du in _items(ca.durations):
                name = table[k] if lo <= k < hi else word(words, k, "durations key")
                out[name] = _duration(du, k)
        if ca.bytes:
            for k, blob in _items(ca.bytes):
                name = table[k] if lo <= k < hi else word(words, k, "bytes key")
                out[name] = self._bytes(name, blob)
        if ca.string_maps:
            for k, sm in _items(ca.string_maps):
                name = table[k] if lo <= k < hi else word(words, k, "string_maps key")
                _reject_wrong_wire_types(sm, "string_maps", name)
                entries = _items(sm.entries)
                if all(lo <= mk < hi and lo <= mv < hi for mk, mv in entries):
                    out[name] = {table[mk]: table[mv] for mk, mv in entries}
                else:
                    out[name] = {word(words, mk, f"string_maps[{name}] key"):
                                 word(words, mv, f"string_maps[{name}] value")
                                 for mk, mv in entries}
        return out

    def _bytes(self, name: str, raw: bytes) -> Any:
        if name in self.ip_names and len(raw) in (4, 16):
            # A mesh has few addresses: one (immutable) object each, made once.
            address = self._addresses.get(raw)
            if address is None:
                if len(self._addresses) >= 4096:
                    self._addresses.clear()
                address = self._addresses[raw] = ipaddress.ip_address(raw)
            return address
        return raw


def _items(mapping: Any) -> list[tuple[Any, Any]]:
    return [(k, mapping[k]) for k in mapping]


def _time_value(seconds: int, nanos: int) -> dt.datetime:
    """What :func:`_timestamp` makes of a Timestamp with these fields (for _wire.c)."""
    return Timestamp(seconds=seconds, nanos=nanos).ToDatetime(tzinfo=_UTC)


def _duration_value(seconds: int, nanos: int) -> dt.timedelta:
    """What :func:`_duration` makes of a Duration with these fields (for _wire.c)."""
    return Duration(seconds=seconds, nanos=nanos).ToTimedelta()


def _timestamp(ts: Timestamp, key: int) -> dt.datetime:
    try:
        return ts.ToDatetime(tzinfo=_UTC)
    except (ValueError, OverflowError) as exc:
        raise WireError(f"timestamps[{key}]: not a valid timestamp: {exc}") from None


def _duration(du: Duration, key: int) -> dt.timedelta:
    try:
        return du.ToTimedelta()
    except (ValueError, OverflowError) as exc:
        raise WireError(f"durations[{key}]: not a valid duration: {exc}") from None


def _reject_wrong_wire_types(message: Any, where: str, key: str | None = None) -> None:
    """Protobuf keeps a known field sent with the wrong wire type (a map entry whose value
    is no StringMap, say) as an unknown field; numbers we define are malformed there,
    higher numbers may be a newer client's additions and are ignored. Costs ~0.3 µs.
    ``where[key]`` names the message (built only when there is an error to report)."""
    known = message.DESCRIPTOR.fields_by_number
    # iterable through __getitem__/__len__ at run time; the stub declares no __iter__
    for field in UnknownFieldSet(message):  # type: ignore[attr-defined]
        if field.field_number in known:
            if key is not None:
                where = f"{where}[{key}]"
            name = known[field.field_number].name
            what = "an entry is not a StringMap of word indices" if name == "string_maps" \
                else f"wire type {field.wire_type} is wrong for this field"
            raise WireError(f"{where}.{name}: {what}")


class _WordTable:
    """Assigns indices while encoding: global first, then message words (negative)."""

    __slots__ = ("glob", "words", "local")

    def __init__(self, glob: Mapping[str, int], words: list[str]) -> None:
        self.glob = glob
        self.words = words
        self.local = {w: -(i + 1) for i, w in enumerate(words)}

    def __call__(self, word: str) -> int:
        i = self.glob.get(word)
        if i is not None:
            return i
        return self.own(word)

    def own(self, word: str) -> int:
        """The message's own index for ``word``, even if the dictionary has it."""
        i = self.local.get(word)
        if i is None:
            self.words.append(word)
            i = self.local[word] = -len(self.words)
        return i


class Encoder:
    """Encodes values dicts (and references) to the compressed wire form."""

    def __init__(self, dictionary: Sequence[str] | None = None) -> None:
        if dictionary is None:
            self.index = global_index()
        else:
            self.index = {}
            for i, w in enumerate(dictionary):
                self.index.setdefault(w, i)

    @property
    def global_word_count(self) -> int:
        return max(self.index.values(), default=-1) + 1

    def encode(
        self, values: Mapping[str, Any], shared_words: list[str] | None = None
    ) -> pb.CompressedAttributes:
        """One message; with ``shared_words`` new words go there (Report's default_words)."""
        ca = pb.CompressedAttributes()
        own = [] if shared_words is None else shared_words
        word = _WordTable(self.index, own)
        for name, value in values.items():
            _put(ca, word(name), value, word, name)
        if shared_words is None:
            ca.words.extend(own)
        return ca

    def encode_all(self, records: Iterable[Mapping[str, Any]], shared_words: list[str]
                   ) -> list[pb.CompressedAttributes]:
        """Several messages whose new words all go to ``shared_words`` (Report's
        default_words), with one word table for all: ~30 % cheaper than :meth:`encode` per
        message in a 100-record batch. A record that cannot be encoded raises EncodeError
        naming it; the words it added stay (harmless: they are only a dictionary)."""
        word = _WordTable(self.index, shared_words)
        out = []
        for i, values in enumerate(records):
            ca = pb.CompressedAttributes()
            try:
                for name, value in values.items():
                    _put(ca, word(name), value, word, name)
            except EncodeError as exc:
                raise EncodeError(f"record {i}: {exc}") from None
            out.append(ca)
        return out

    def encode_references(self, refs: Iterable[Reference]) -> pb.ReferencedAttributes:
        ra = pb.ReferencedAttributes()
        words: list[str] = []
        word = _WordTable(self.index, words)
        for ref in refs:
            m = ra.attribute_matches.add()
            m.name = word(ref.name)
            m.condition = pb.ReferencedAttributes.EXACT if ref.present else pb.ReferencedAttributes.ABSENCE
            if ref.map_key is not None:
                m.map_key = word(ref.map_key) or word.own(ref.map_key)
        ra.words.extend(words)
        return ra


def _put(ca: pb.CompressedAttributes, key: int, value: Any, word: _WordTable, name: str) -> None:
    if isinstance(value, bool):
        ca.bools[key] = value
    elif isinstance(value, str):
        ca.strings[key] = word(value)
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise EncodeError(f"{name}: {value} does not fit in INT64")
        ca.int64s[key] = value
    elif isinstance(value, float):
        ca.doubles[key] = value
    elif isinstance(value, dt.datetime):
        ca.timestamps[key].FromDatetime(value if value.tzinfo else value.replace(tzinfo=_UTC))
    elif isinstance(value, dt.timedelta):
        ca.durations[key].FromTimedelta(value)
    elif isinstance(value, bytes):
        ca.bytes[key] = value
    elif isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        ca.bytes[key] = value.packed
    elif isinstance(value, dict):
        entries = ca.string_maps[key].entries
        for mk, mv in value.items():
            if not isinstance(mk, str) or not isinstance(mv, str):
                raise EncodeError(f"{name}: a string map holds only strings")
            entries[word(mk)] = word(mv)
    else:
        raise EncodeError(f"{name}: no attribute type holds a {type(value).__name__}")


def decode_references(
    ra: pb.ReferencedAttributes, dictionary: Sequence[str] | None = None
) -> list[Reference]:
    """The references of a verdict, as the hub recorded them."""
    word = _Words(tuple(global_words() if dictionary is None else dictionary), ra.words, 0)
    out = []
    for m in ra.attribute_matches:
        # map_key 0 means "no key" on the wire, so word 0 travels as a message word.
        key = word(m.map_key, "map_key") if m.map_key else None
        present = m.condition != pb.ReferencedAttributes.ABSENCE
        out.append(Reference(word(m.name, "name"), key, present))
    return out
