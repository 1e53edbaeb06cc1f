"""The expression compiler: operators, functions, ``|``, references, errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixerhub.attributes.bag import AttributeBag
from mixerhub.attributes.types import ValueType
from mixerhub.expr import CompiledExpression, EvaluationError, ExpressionCompileError, compile_expression
from mixerhub.errors import MixerhubError

V = ValueType
UTC = dt.UTC
MANIFEST = {
    "as": V.STRING, "bs": V.STRING, "ai": V.INT64, "bi": V.INT64, "ad": V.DOUBLE, "bd": V.DOUBLE,
    "ab": V.BOOL, "bb": V.BOOL, "ar": V.STRING_MAP, "br": V.STRING_MAP,
    "at": V.TIMESTAMP, "bt": V.TIMESTAMP, "adur": V.DURATION, "bdur": V.DURATION,
    "aip": V.IP_ADDRESS, "bip": V.IP_ADDRESS, "adns": V.DNS_NAME, "bdns": V.DNS_NAME,
    "amail": V.EMAIL_ADDRESS, "bmail": V.EMAIL_ADDRESS, "auri": V.URI, "buri": V.URI,
    "abytes": V.BYTES, "bbytes": V.BYTES,
    "request.headers": V.STRING_MAP, "destination.service.host": V.STRING,
}  # fmt: skip


def run(text: str, **attributes: Any) -> tuple[Any, set[str]]:
    """Evaluate ``text`` on a bag of ``attributes``; the value and the references made."""
    bag = AttributeBag(attributes)
    value = compile_expression(text, MANIFEST)(bag)
    return value, {ref.notation() for ref in bag.references(keyed=True)}


def value(text: str, **attributes: Any) -> Any:
    return run(text, **attributes)[0]


def refs(text: str, **attributes: Any) -> set[str]:
    return run(text, **attributes)[1]


def compile_error(text: str) -> ExpressionCompileError:
    with pytest.raises(ExpressionCompileError) as caught:
        compile_expression(text, MANIFEST)
    return caught.value


def eval_error(text: str, **attributes: Any) -> EvaluationError:
    with pytest.raises(EvaluationError) as caught:
        run(text, **attributes)
    return caught.value


# --- the public surface --------------------------------------------------------------------


def test_compiled_expression_surface() -> None:
    compiled = compile_expression('request.headers["x-user"] == "alice"')
    assert isinstance(compiled, CompiledExpression)
    assert compiled.type is V.BOOL
    assert compiled.text == 'request.headers["x-user"] == "alice"'
    assert compiled.attributes == frozenset({"request.headers"})
    assert "def _cexl(bag)" in compiled.python_source
    assert repr(compiled) == 'CompiledExpression(\'request.headers["x-user"] == "alice"\', type=BOOL)'


def test_default_manifest_is_used_when_none_given() -> None:
    assert compile_expression("destination.service.host").type is V.STRING
    with pytest.raises(ExpressionCompileError, match="unknown attribute 'as'"):
        compile_expression("as")


def test_errors_have_stable_codes() -> None:
    assert issubclass(ExpressionCompileError, MixerhubError)
    assert issubclass(EvaluationError, MixerhubError)
    assert ExpressionCompileError.code == "expression_compile_error"
    assert EvaluationError.code == "evaluation_error"


# --- literals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "value_type"),
    [
        ("42", 42, V.INT64),
        ("-42", -42, V.INT64),
        ("-9223372036854775808", -(1 << 63), V.INT64),
        ("4.5", 4.5, V.DOUBLE),
        (".5e1", 5.0, V.DOUBLE),
        ("-0.25", -0.25, V.DOUBLE),
        ('"a\\tb\\u00e9\\x41"', "a\tbéA", V.STRING),
        ("'single quoted'", "single quoted", V.STRING),
        ("`raw \\n`", "raw \\n", V.STRING),
        ("true", True, V.BOOL),
        ("FALSE", False, V.BOOL),
        ('"10ms"', dt.timedelta(milliseconds=10), V.DURATION),
        ('"1h30m"', dt.timedelta(minutes=90), V.DURATION),
    ],
)
def test_literals(text: str, expected: Any, value_type: ValueType) -> None:
    compiled = compile_expression(text, MANIFEST)
    assert compiled.type is value_type
    result = compiled(AttributeBag())
    assert result == expected and type(result) is type(expected)


def test_a_duration_looking_literal_is_still_a_string_where_a_string_is_expected() -> None:
    assert value('as == "0"', **{"as": "0"}) is True
    assert value('as | "10s"') == "10s"
    assert value('adur | "10s"') == dt.timedelta(seconds=10)
    assert value('toLower("1H")') == "1h"
    assert compile_expression('"0" == "0s"', MANIFEST).type is V.BOOL
    assert value('"0" == "0s"') is True  # both durations of zero


def test_integer_literal_out_of_range() -> None:
    error = compile_error("9223372036854775808")
    assert "does not fit in INT64" in error.message and error.position == 0


# --- comparison and logic ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ai == 2", True), ("ai != 2", False), ("ai < 3", True), ("ai <= 2", True),
        ("ai > 2", False), ("ai >= 3", False), ("ad == 2.5", True), ("ad < 3.0", True),
        ('as == "m"', True), ('as < "n"', True), ('as >= "n"', False), ("ab == true", True),
        ("at < bt", True), ("at == at", True), ("at >= bt", False),
        ("adur < bdur", True), ('adur == "1s"', True), ('bdur > "1m"', True),
        ("abytes == bbytes", False), ("abytes == abytes", True),
    ],
)  # fmt: skip
def test_comparisons(text: str, expected: bool) -> None:
    attributes = {
        "ai": 2, "ad": 2.5, "as": "m", "ab": True,
        "at": dt.datetime(2020, 1, 1, tzinfo=UTC), "bt": dt.datetime(2021, 1, 1, tzinfo=UTC),
        "adur": dt.timedelta(seconds=1), "bdur": dt.timedelta(hours=1),
        "abytes": b"\x01", "bbytes": b"\x02",
    }  # fmt: skip
    assert value(text, **attributes) is expected


def test_timestamps_compare_as_instants_across_zones() -> None:
    here = dt.datetime(2020, 1, 1, 12, tzinfo=UTC)
    there = here.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert value("at == bt", at=here, bt=there) is True
    assert value('at == timestamp("2020-01-01T13:00:00+01:00")', at=here) is True


def test_a_naive_timestamp_in_the_bag_is_taken_as_utc() -> None:
    assert value('at == timestamp("2020-01-01T12:00:00Z")', at=dt.datetime(2020, 1, 1, 12)) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ab && bb", False), ("ab || bb", True), ("!ab", False), ("!bb && ab", True), ("!(ab && bb)", True)],
)
def test_logic(text: str, expected: bool) -> None:
    assert value(text, ab=True, bb=False) is expected


def test_and_short_circuits_and_records_only_the_evaluated_operands() -> None:
    assert run("ab && bb", ab=False) == (False, {"ab"})
    assert run("ab && bb", ab=True, bb=True) == (True, {"ab", "bb"})
    assert run("ab || bb || ai == 1", ab=True) == (True, {"ab"})
    assert run("ab || bb || ai == 1", ab=False, bb=False, ai=1) == (True, {"ab", "bb", "ai"})


def test_a_skipped_operand_does_not_fail_even_if_it_would() -> None:
    # bb is absent, but never looked at.
    assert run("ab || bb", ab=True) == (True, {"ab"})


def test_long_chains_stay_flat() -> None:
    text = " || ".join(f'as == "{i}"' for i in range(300))
    assert value(text, **{"as": "299"}) is True
    alternation = " | ".join(["as"] * 300 + ['"end"'])
    assert value(alternation) == "end"


def test_plus() -> None:
    assert value('as + "-" + bs', **{"as": "a", "bs": "b"}) == "a-b"
    assert value("ai + bi + 1", ai=1, bi=2) == 4
    assert value("ad + 0.5", ad=1.0) == 1.5
    assert value('adur + "500ms"', adur=dt.timedelta(seconds=1)) == dt.timedelta(seconds=1.5)


def test_plus_and_or_share_a_precedence_level_as_in_go() -> None:
    # (as | "a") + "b", not as | ("a" + "b")
    assert value('as | "a" + "b"', **{"as": "x"}) == "xb"


def test_integer_overflow_is_an_evaluation_error() -> None:
    error = eval_error("ai + 1", ai=(1 << 63) - 1)
    assert "overflow" in error.message and "'+'" in error.message


# --- "|" ---------------------------------------------------------------------------------


def test_or_takes_the_first_present_operand_and_records_the_absent_ones() -> None:
    assert run('as | bs | "d"', bs="b") == ("b", {"-as", "bs"})
    assert run('as | bs | "d"') == ("d", {"-as", "-bs"})
    assert run('as | bs | "d"', **{"as": "a", "bs": "b"}) == ("a", {"as"})


def test_or_result_has_the_operand_type() -> None:
    assert compile_expression("ai | 7", MANIFEST).type is V.INT64
    assert value("ai | 7") == 7
    assert value("ai | 7", ai=0) == 0  # a present zero is a value, not "missing"
    assert value("ar | emptyStringMap()") == {}


def test_or_whose_last_operand_is_missing_fails_on_that_operand() -> None:
    error = eval_error("as | bs")
    assert error.message == "lookup failed: 'bs'"
    assert error.attribute == "bs"


def test_or_does_not_fall_through_a_call_or_a_constant() -> None:
    assert value('"first" | as') == "first"
    # ip(as) is a call: its missing argument is an error, not a reason to try ip(bs)
    assert eval_error("ip(as) | ip(bs)", bs="1.2.3.4").message == "lookup failed: 'as'"


def test_or_on_map_entries() -> None:
    assert run('ar["k"] | "d"', ar={"k": "v"}) == ("v", {"ar", "ar[k]"})
    assert run('ar["k"] | "d"', ar={}) == ("d", {"ar", "-ar[k]"})
    assert run('ar["k"] | "d"') == ("d", {"-ar"})
    assert run('ar[as] | "d"', ar={"x": "v"}) == ("d", {"ar", "-as"})
    assert run('ar[as] | "d"', ar={"x": "v"}, **{"as": "x"}) == ("v", {"ar", "as", "ar[x]"})


def test_index_of_an_alternation_records_the_map_actually_used() -> None:
    assert run('(ar | br)["k"]', br={"k": "v"}) == ("v", {"-ar", "br", "br[k]"})
    assert run('(ar | br)["k"] | "d"', br={}) == ("d", {"-ar", "br", "-br[k]"})
    assert run('(ar | emptyStringMap())["k"] | "d"') == ("d", {"-ar"})


# --- maps ----------------------------------------------------------------------------------


def test_index_records_the_map_and_the_key() -> None:
    assert run('request.headers["x-user"]', **{"request.headers": {"x-user": "alice"}}) == (
        "alice",
        {"request.headers", "request.headers[x-user]"},
    )


def test_a_missing_key_outside_or_is_the_empty_string_as_in_mixer() -> None:
    assert run('ar["k"]', ar={}) == ("", {"ar", "-ar[k]"})
    assert value('ar["k"] == ""', ar={}) is True


def test_a_missing_map_outside_or_is_an_evaluation_error() -> None:
    error = eval_error('request.headers["x-user"] == "alice"')
    assert error.message == "lookup failed: 'request.headers'"


def test_dynamic_keys() -> None:
    assert run("ar[toLower(as)]", ar={"k": "v"}, **{"as": "K"}) == ("v", {"ar", "as", "ar[k]"})
    assert eval_error("ar[as]", ar={}).message == "lookup failed: 'as'"


def test_conditional_maps_keep_their_tracking() -> None:
    assert run('conditional(ab, ar, br)["k"]', ab=False, ar={}, br={"k": "v"}) == ("v", {"ab", "br", "br[k]"})
    assert run('conditional(ab, ar, emptyStringMap())["k"]', ab=False) == ("", {"ab"})


# --- functions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("curl*", "curlish", True), ("curl*", "ishcurl", False), ("*.ns1", "svc.ns1", True),
        ("*.ns1", "svc.ns2", False), ("exact", "exact", True), ("exact", "exactly", False),
        ("*", "anything", True),
    ],
)  # fmt: skip
def test_match_globs(pattern: str, text: str, expected: bool) -> None:
    assert value(f'match(as, "{pattern}")', **{"as": text}) is expected
    assert value("match(as, bs)", **{"as": text, "bs": pattern}) is expected


def test_matches_is_an_unanchored_regex_search_with_the_pattern_as_target() -> None:
    assert value('"^st.*1$".matches(as)', **{"as": "str1"}) is True
    assert value('"b+".matches(as)', **{"as": "abbbc"}) is True
    assert value("as.matches(bs)", **{"as": "^x", "bs": "yx"}) is False
    assert value('"[[:digit:]]+".matches(as)', **{"as": "a1"}) is True  # RE2 class spelling


def test_a_literal_regex_is_compiled_once_and_checked_at_compile_time() -> None:
    compiled = compile_expression('"a+b".matches(as)', MANIFEST)
    assert "re.compile" not in compiled.python_source and "_k0.search" in compiled.python_source
    error = compile_error('"a(".matches(as)')
    assert "'a('" in error.message and error.position == 0


def test_a_bad_dynamic_regex_is_an_evaluation_error() -> None:
    error = eval_error("as.matches(bs)", **{"as": "a(", "bs": "x"})
    assert "'a('" in error.message


def test_starts_and_ends_with() -> None:
    assert value('as.startsWith("ab")', **{"as": "abc"}) is True
    assert value('as.endsWith("bc")', **{"as": "abc"}) is True
    assert value("as.endsWith(bs)", **{"as": "abc", "bs": "x"}) is False
    assert value('"abc".startsWith(as)', **{"as": "abcd"}) is False


def test_ip_addresses() -> None:
    v4 = ipaddress.ip_address("10.0.0.1")
    assert value('ip("10.0.0.1")') == v4
    assert value('aip == ip("10.0.0.1")', aip=v4) is True
    assert value('aip == ip("10.0.0.1")', aip=b"\x0a\x00\x00\x01") is True  # raw wire bytes
    assert value('aip == ip("::ffff:10.0.0.1")', aip=v4) is True  # IPv4-mapped
    assert value('aip != ip("10.0.0.2")', aip=v4) is True
    assert value('aip == ip("2001:db8::1")', aip=ipaddress.ip_address("2001:db8::1")) is True
    assert value("aip == bip", aip=b"\x01\x02\x03\x04", bip=b"\x00" * 10 + b"\xff\xff\x01\x02\x03\x04") is True
    assert value("aip", aip=b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"  # passed through unchanged


def test_a_bad_ip_literal_fails_at_evaluation_like_mixer() -> None:
    compiled = compile_expression('ip("10.1.12")', MANIFEST)
    with pytest.raises(EvaluationError, match=r"'10\.1\.12'"):
        compiled(AttributeBag())


def test_timestamp() -> None:
    assert value('timestamp("2015-01-02T15:04:35Z")') == dt.datetime(2015, 1, 2, 15, 4, 35, tzinfo=UTC)
    assert value('timestamp("2015-01-02T15:04:35.25-02:00")') == dt.datetime(2015, 1, 2, 17, 4, 35, 250000, tzinfo=UTC)
    assert "'2015-01-02'" in eval_error('timestamp("2015-01-02")').message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('dnsName("foo.bar.baz") == dnsName("FOO.bar.baz.")', True),
        ("adns == bdns", True),
        ('email("istio@istio.io") == email("istio@ISTIO.io")', True),
        ("amail == bmail", True),
        ('uri("http://foo.bar") == uri("HTTP://FOO.bar.")', True),
        ('uri("http://foo.bar:80") == uri("http://foo.bar:81")', False),
        ('uri("urn:a") == uri("urn:A")', False),
    ],
)
def test_typed_string_equality(text: str, expected: bool) -> None:
    attributes = {"adns": "a.example.", "bdns": "A.Example", "amail": '"x"@a.io', "bmail": "x@A.io"}
    assert value(text, **attributes) is expected


@pytest.mark.parametrize(
    ("text", "named"),
    [('dnsName("-x.y")', "'-x.y'"), ('dnsName("a..b")', "'a..b'"), ('email("no-at")', "'no-at'"),
     ('email("Name <a@b.io>")', "'Name <a@b.io>'"), ('uri(":/")', "':/'"), ('uri("")', "''")],
)  # fmt: skip
def test_typed_string_conversions_reject_bad_text(text: str, named: str) -> None:
    assert named in eval_error(text).message


def test_conditional_evaluates_only_the_chosen_branch() -> None:
    assert run("conditional(ab, as, bs)", ab=True, **{"as": "a"}) == ("a", {"ab", "as"})
    assert run("conditional(ab, as, bs)", ab=False, bs="b") == ("b", {"ab", "bs"})
    assert value("conditional(ab, 1, 2)", ab=False) == 2
    assert value('conditionalString(ab, "y", "n")', ab=True) == "y"


def test_to_lower_and_size() -> None:
    assert value("toLower(as)", **{"as": "MiXeD"}) == "mixed"
    assert value("size(as)", **{"as": "two"}) == 3
    assert value('size("é")') == 2  # Mixer counts UTF-8 bytes


def test_empty_string_map_is_a_fresh_dict_each_time() -> None:
    compiled = compile_expression("emptyStringMap()", MANIFEST)
    first = compiled(AttributeBag())
    first["x"] = "y"
    assert compiled(AttributeBag()) == {}


# --- compile errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("foo.bar == 1", "unknown attribute 'foo.bar'", 0),
        ("ai == 2 && nope", "unknown attribute 'nope'", 11),
        ("ai == as", "type mismatch: '==' between INT64 and STRING", 3),
        ("ai | as", "type mismatch: '|' between INT64 and STRING", 3),
        ("ai == 1.0", "type mismatch: '==' between INT64 and DOUBLE", 3),
        ("ar == br", "operator '==' is not defined for STRING_MAP", 3),
        ("ab < bb", "operator '<' is not defined for BOOL", 3),
        ("ai && ab", "operator '&&' needs BOOL operands, not INT64", 3),
        ("!ai", "operator '!' needs a BOOL operand, not INT64", 0),
        ("-ai", "unary '-' is only supported before a number", 0),
        ("ai * 2", "operator '*' is not supported", 3),
        ("ai - 2", "operator '-' is not supported", 3),
        ("as[1]", "'[]' indexes a STRING_MAP, not STRING", 2),
        ("ar[1]", "a map key must be STRING, not INT64", 3),
        ("nosuch(as)", "unknown function 'nosuch'", 0),
        ("as.toLower()", "'toLower' is a function, not a method: write toLower(...)", 3),
        ("ai.startsWith(as)", "startsWith() is a method of STRING, not of INT64", 3),
        ('match(as, "a", "b")', "match() takes 2 argument(s), got 3", 0),
        ("conditional(ab, 1, as)", "type mismatch: conditional() arguments are INT64 and STRING", 0),
        ("conditional(ai, 1, 2)", "conditional() argument 1 must be BOOL, not INT64", 12),
        ("ai == ", "unexpected end of expression: expected an operand", 6),
        ("(ai == 1", "unexpected end of expression: expected ')'", 8),
        ("ai == 1)", "expected the end of the expression, found ')'", 7),
        ('as == "abc', "string literal not terminated", 6),
        ("0x10", "invalid number '0x10': only decimal numbers are supported", 0),
        ("a # b", "illegal character U+0023 '#'", 2),
        ("(as).x", "'.x' must be a method call: only attribute names continue with '.'", 5),
        ('"a\\q"', "unknown escape sequence '\\q'", 2),
    ],
)
def test_compile_errors(text: str, message: str, position: int) -> None:
    error = compile_error(text)
    assert error.message == message
    assert error.position == position
    assert error.text == text


def test_compile_error_pointer() -> None:
    error = compile_error("ai == as")
    assert error.pointer() == "type mismatch: '==' between INT64 and STRING\n  ai == as\n     ^"


def test_deep_nesting_is_a_compile_error() -> None:
    assert "nested too deeply" in compile_error("(" * 200 + "ab" + ")" * 200).message
    assert "nested too deeply" in compile_error("!" * 200 + "ab").message


def test_text_must_be_a_string() -> None:
    with pytest.raises(ExpressionCompileError):
        compile_expression(b"ab", MANIFEST)  # type: ignore[arg-type]


# --- evaluation errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "attribute", "bad"),
    [
        ('as == "x"', "as", 1), ("ai == 1", "ai", "1"), ("ai == 1", "ai", True), ("ab", "ab", 1),
        ("ad < 1.0", "ad", "x"), ('ar["k"]', "ar", "not a map"), ("at < bt", "at", "2020"),
        ('adur < "1s"', "adur", 5), ('aip == ip("1.2.3.4")', "aip", "1.2.3.4"),
        ('aip == ip("1.2.3.4")', "aip", b"\x01\x02"), ("abytes", "abytes", "text"),
    ],
)  # fmt: skip
def test_a_bag_value_of_the_wrong_type_is_an_evaluation_error(text: str, attribute: str, bad: Any) -> None:
    attributes = {"bt": dt.datetime(2020, 1, 1, tzinfo=UTC), attribute: bad}
    error = eval_error(text, **attributes)
    assert f"attribute '{attribute}'" in error.message
    assert error.attribute == attribute


def test_lenient_coercions() -> None:
    assert value("ad == 2.0", ad=2) is True  # an int where a DOUBLE is declared


def test_unexpected_python_errors_become_evaluation_errors() -> None:
    # A non-string inside a string map breaks the map contract; it must not leak a TypeError.
    error = eval_error('ar["k"].startsWith("x")', ar={"k": 5})
    assert "cannot evaluate" in error.message
    with pytest.raises(EvaluationError):
        compile_expression("ab", MANIFEST)(object())  # type: ignore[arg-type]


def test_user_text_never_becomes_code() -> None:
    sneaky = "\"); import os; os.system('x')  #"
    text = f'as == "{sneaky.replace(chr(34), chr(92) + chr(34))}"'
    compiled = compile_expression(text, MANIFEST)
    assert compiled(AttributeBag({"as": sneaky})) is True
    assert "import os" not in compiled.python_source.replace(repr(sneaky), "")


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_any_printable_text_compiles_or_raises_a_compile_error(text: str) -> None:
    try:
        compiled = compile_expression(text, MANIFEST)
    except ExpressionCompileError as exc:
        assert exc.message
        return
    assert isinstance(compiled.type, ValueType)


_TOKENS = ['"a"', "'b'", "1", "2.5", "as", "ai", "ab", "ar", '"1s"', "(", ")", "[", "]", ",", ".",
           "==", "!=", "<", "&&", "||", "|", "+", "!", "-", "match", "startsWith", "ip", "size",
           "conditional", "emptyStringMap", "toLower", "true", " "]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=14))
def test_token_soup_compiles_or_raises_a_compile_error(tokens: list[str]) -> None:
    text = "".join(tokens)
    try:
        compiled = compile_expression(text, MANIFEST)
    except ExpressionCompileError:
        return
    with contextlib.suppress(EvaluationError):
        compiled(AttributeBag({"as": "x", "ai": 1, "ab": True, "ar": {"x": "y"}}))


def _typed_expressions() -> st.SearchStrategy[tuple[str, ValueType]]:
    """Well-typed expressions over the test manifest, built bottom-up."""
    leaves = st.sampled_from(
        [("as", V.STRING), ("bs", V.STRING), ('"x"', V.STRING), ('ar["k"]', V.STRING), ("ai", V.INT64),
         ("3", V.INT64), ("ab", V.BOOL), ("true", V.BOOL), ("ar", V.STRING_MAP), ("aip", V.IP_ADDRESS)]
    )  # fmt: skip

    def extend(inner: st.SearchStrategy[tuple[str, ValueType]]) -> st.SearchStrategy[tuple[str, ValueType]]:
        def combine(pair: tuple[tuple[str, ValueType], tuple[str, ValueType], str]) -> tuple[str, ValueType]:
            (left, lt), (right, rt), op = pair
            if op == "[]" and lt is V.STRING_MAP and rt is V.STRING:
                return (f"({left})[toLower({right})]", V.STRING)
            if lt is not rt:
                return (f"({left})", lt)
            if op in ("==", "!=") and lt is not V.STRING_MAP:
                return (f"({left} {op} {right})", V.BOOL)
            if op in ("&&", "||") and lt is V.BOOL:
                return (f"({left} {op} {right})", V.BOOL)
            if op == "+" and lt in (V.STRING, V.INT64):
                return (f"({left} + {right})", lt)
            return (f"({left} | {right})", lt)

        return st.tuples(inner, inner, st.sampled_from(["==", "!=", "&&", "||", "+", "|", "[]"])).map(combine)

    return st.recursive(leaves, extend, max_leaves=12)


# Well-formed and deliberately ill-typed bag values for each attribute.
_BAG_VALUES = {
    "as": ["s", 5],
    "bs": ["t"],
    "ai": [1, (1 << 63) - 1, "1"],
    "ab": [True, 1],
    "ar": [{"k": "v"}, {}, "m"],
    "aip": [ipaddress.ip_address("1.2.3.4"), b"\x01\x02\x03\x04", 7],
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _typed_expressions(), st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in _BAG_VALUES.items()})
)
def test_well_typed_expressions_compile_and_fail_only_with_evaluation_errors(
    expression: tuple[str, ValueType], attributes: dict[str, Any]
) -> None:
    text, expected_type = expression
    compiled = compile_expression(text, MANIFEST)
    assert compiled.type is expected_type
    with contextlib.suppress(EvaluationError):
        compiled(AttributeBag(attributes))


def test_expressions_sharing_generated_code_keep_their_own_constants() -> None:
    first = compile_expression('aip == ip("1.2.3.4")', MANIFEST)
    second = compile_expression('aip == ip("5.6.7.8")', MANIFEST)
    assert first.python_source == second.python_source  # one code object serves both
    bag = AttributeBag({"aip": ipaddress.ip_address("5.6.7.8")})
    assert (first(bag), second(bag)) == (False, True)


def test_very_long_sums_compile() -> None:
    assert value(" + ".join(["ai"] * 3000), ai=1) == 3000
    assert value(" + ".join(["as"] * 100), **{"as": "x"}) == "x" * 100


def test_a_non_printable_illegal_character_is_named_by_code_point_only() -> None:
    assert compile_error("ab == \x00").message == "illegal character U+0000"
