"""The regopy wrapper (adapters/_rego.py): what regopy 1.5.2 does wrong, pinned, and how the
wrapper turns each failure into an error instead of a wrong answer or a dead process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from mixerhub.adapters import _rego
from mixerhub.adapters._rego import Decision, RegoFailure
from tests.adapters.opa_tokens import quick_start_policy


def run(source: str, ref: str, input_json: str = "{}") -> Decision:
    return _rego.Policy([source], ref).evaluate(json.loads(input_json))


def missing(*sources: str) -> list[str]:
    return _rego.missing_builtins(sources, _rego.compile_policy(sources))


# ---- values, undefined, errors ----------------------------------------------------------

def test_false_is_a_value_not_undefined() -> None:
    """(A query string answers "undefined" for false; the bundle's entrypoint does not.)"""
    policy = "package a\ndefault allow := false\nallow if input.x == 1"
    assert run(policy, "data.a.allow", '{"x": 1}') == Decision(True, True)
    assert run(policy, "data.a.allow", '{"x": 2}') == Decision(True, False)


def test_a_rule_without_default_that_does_not_match_is_undefined() -> None:
    assert run("package a\nallow if input.x == 1", "data.a.allow", '{"x": 2}') == \
        Decision(False)


def test_objects_come_back_whole() -> None:
    policy = 'package a\nd := {"allowed": true, "headers": {"x": "1"}}'
    assert run(policy, "data.a.d") == Decision(True, {"allowed": True,
                                                      "headers": {"x": "1"}})


def test_a_conflict_is_a_failure_with_its_code() -> None:
    with pytest.raises(RegoFailure, match="eval_conflict_error"):
        run("package a\nv := 1 if input.x\nv := 2 if input.x", "data.a.v", '{"x": true}')


def test_an_internal_engine_error_reported_as_ok_text_is_a_failure() -> None:
    """regopy answers a malformed JWT with error text while saying 'ok'; its own Output
    class raises JSONDecodeError on it. OPA would treat the call as undefined."""
    header = '{"attributes": {"request": {"http": {"method": "GET", "path": "/people", '
    document = header + '"headers": {"authorization": "Bearer x.y.z"}}}}}'
    with pytest.raises(RegoFailure, match="basic_string_view"):
        run(quick_start_policy(), "data.envoy.authz.allow", document)


def test_a_syntax_error_names_module_and_line() -> None:
    with pytest.raises(RegoFailure, match=r"policy\[1\] line 3: Invalid boolean operator"):
        _rego.compile_policy(["package ok\nx := 1", "package a\n\nallow if { input.x == }"])


def test_errors_are_not_printed_to_stdout() -> None:
    code = textwrap.dedent("""
        from mixerhub.adapters import _rego
        try:
            _rego.compile_policy(["package a\\nallow if { input.x == }"])
        except _rego.RegoFailure:
            pass
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout == ""


def test_regopy_aborts_the_process_where_the_wrapper_does_not_go() -> None:
    """Pinned: Output.binding() on an undefined result kills the process (SIGABRT). If this
    starts passing, regopy fixed it; the wrapper reads results as text either way."""
    code = textwrap.dedent("""
        from regopy import Interpreter
        rego = Interpreter()
        rego.add_module("m.rego", "package a\\nallow if input.x == 1")
        rego.query("x = data.a.allow").binding("x")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "out_of_range" in out.stderr
    assert run("package a\nallow if input.x == 1", "data.a.allow") == Decision(False)


def test_a_compile_error_surfaces_in_the_probe() -> None:
    policy = _rego.Policy(["package a\nallow if { count(1, 2, 3) }"], "data.a.allow")
    with pytest.raises(ValueError, match="wrong number of arguments; wellformed_error"):
        _rego.probe(policy)


# ---- built-ins the engine lacks ----------------------------------------------------------

def test_a_missing_builtin_is_named_with_module_and_line() -> None:
    policy = textwrap.dedent("""\
        package a

        allow if {
            net.cidr_contains("10.0.0.0/8", input.ip)
        }
        deny if http.send({"method": "GET", "url": input.u}).status_code == 500
    """)
    assert missing(policy) == ["net.cidr_contains (policy[0] line 4)",
                               "http.send (policy[0] line 6)"]


def test_unknown_builtins_are_silently_undefined_in_regopy() -> None:
    """Why the scan exists: regopy evaluates such a rule to undefined without an error."""
    policy = 'package a\ndefault allow := false\nallow if net.cidr_contains("10.0.0.0/8", input.ip)'
    assert run(policy, "data.a.allow", '{"ip": "10.1.2.3"}') == Decision(True, False)


def test_a_query_string_is_what_regopy_answers_undefined_for_false() -> None:
    """Pinned: the reason the wrapper evaluates a bundle's entrypoint, not a query."""
    rego = _rego.compile_policy(["package a\ndefault allow := false"])
    out = rego.query("data.a.allow")
    assert str(out) == "undefined"


def test_user_functions_imports_strings_and_comments_are_not_builtins() -> None:
    lib = textwrap.dedent("""\
        package lib
        is_admin(user) if user == "root"
        """)
    policy = textwrap.dedent("""\
        package a
        import data.lib
        import data.lib.is_admin as admin
        # net.cidr_contains("10.0.0.0/8", x) in a comment
        double(x) := y if { y := x * 2 }
        default check(_) := false
        check(x) if { double(x) > 2 }
        allow if {
            lib.is_admin(input.user)
            data.lib.is_admin(input.user)
            check(count(input.items))
            msg := "http.send(x) in a string"
            not startswith(msg, "x")
            some i in numbers.range(1, 2)
            print("debug", i)
        }
        """)
    assert missing(lib, policy) == []


def test_the_opa_envoy_quick_start_needs_nothing_missing() -> None:
    assert missing(quick_start_policy()) == []


def test_regopy_accepts_a_policy_opa_refuses_and_words_errors_its_own_way() -> None:
    """Pinned: a variable declared twice compiles in regopy (OPA refuses it), so the
    embedded engine is no substitute for `opa check`; an unsafe variable is refused at
    load (by the probe), but in the engine's internal words."""
    assert run("package a\nallow if { y := 1; y := 2 }", "data.a.allow") == Decision(True, True)
    with pytest.raises(ValueError, match="bundle verify: local index"):
        _rego.probe(_rego.Policy(["package a\nallow if { x }"], "data.a.allow"))
