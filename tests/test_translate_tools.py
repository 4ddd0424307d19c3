"""Tool names, call ids and schemas (property-based where it matters)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from packyd.translate.tools import NameMap, clamp_call_id, is_strict_compatible, is_valid_name, sanitize_schema, shorten_name

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

names = st.one_of(
    st.text(min_size=1, max_size=120),
    st.text("abcXYZ_-09", min_size=1, max_size=80),
    st.builds(lambda s, t: f"mcp__{s}__{t}", st.text("abc-_.:/ é", min_size=1, max_size=60), st.text("abc_-.", min_size=1, max_size=60)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(names, max_size=30))
def test_name_map_round_trip_validity_and_no_collisions(raw: list[str]) -> None:
    m = NameMap(raw)
    shorts = [m.upstream(n) for n in set(raw)]
    assert all(VALID.match(s) for s in shorts)
    assert len(set(shorts)) == len(set(raw)), "two tools share an upstream name"
    for n in set(raw):
        assert m.client(m.upstream(n)) == n


@settings(max_examples=200, deadline=None)
@given(st.lists(names, min_size=1, max_size=10), st.randoms())
def test_name_map_is_deterministic_whatever_the_order(raw: list[str], rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(raw)
    rnd.shuffle(shuffled)
    a, b = NameMap(raw), NameMap(shuffled)
    assert a.to_upstream == b.to_upstream


def test_collision_with_a_real_name_is_resolved() -> None:
    long = "x" * 70
    victim = shorten_name(long)
    m = NameMap([long, victim])
    assert m.upstream(victim) == victim
    assert m.upstream(long) != victim and VALID.match(m.upstream(long))
    assert m.client(m.upstream(long)) == long


def test_valid_names_are_untouched_and_mcp_names_stay_readable() -> None:
    assert shorten_name("Bash") == "Bash"
    long = "mcp__plugin_chrome-devtools-mcp_chrome-devtools__performance_analyze_insight"
    short = shorten_name(long)
    assert len(short) <= 64 and short.startswith("mcp__") and "__performance_analyze_insight_" in short
    dotted = shorten_name("mcp__my.server__do.thing")
    assert VALID.match(dotted) and dotted.startswith("mcp__my_server__do_thing_")
    assert is_valid_name("a" * 64) and not is_valid_name("a" * 65) and not is_valid_name("")
    assert NameMap().client("unknown") == "unknown"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=100))
def test_call_id_clamp(call_id: str) -> None:
    out = clamp_call_id(call_id)
    assert VALID.match(out)
    assert clamp_call_id(out) == out  # idempotent: echoed ids map to themselves
    if VALID.match(call_id):
        assert out == call_id


def test_call_id_clamp_is_deterministic_and_distinct() -> None:
    a, b = "call_" + "a" * 64, "call_" + "a" * 63 + "b"
    assert clamp_call_id(a) == clamp_call_id(a) and len(clamp_call_id(a)) == 64
    assert clamp_call_id(a) != clamp_call_id(b)


def test_schema_sanitizer() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "status": {"anyOf": [{"type": "string", "const": "a"}, {"type": "string", "const": "b"}]},
            "n": {"type": "integer", "exclusiveMinimum": 0, "maximum": 9007199254740991, "minimum": -9007199254740991},
            "url": {"type": "string", "format": "uri"},
            "when": {"type": "string", "format": "date-time"},
            "meta": {"type": "object", "propertyNames": {"pattern": "^x"}, "additionalProperties": {"type": "string"}},
            "list": {"type": "array", "items": {"const": 3}},
            "mixed": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "format": {"type": "string"},
        },
        "$defs": {"d": {"$comment": "c", "type": "string"}},
    }
    out = sanitize_schema(schema)
    assert "$schema" not in out
    p = out["properties"]
    assert p["status"] == {"enum": ["a", "b"], "type": "string"}
    assert p["n"] == {"type": "integer", "exclusiveMinimum": 0}
    assert p["url"] == {"type": "string"} and p["when"]["format"] == "date-time"
    assert p["meta"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert p["list"] == {"type": "array", "items": {"enum": [3]}}
    assert p["mixed"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert p["format"] == {"type": "string"}  # a property named like a keyword is kept
    assert out["$defs"] == {"d": {"type": "string"}}
    assert schema["properties"]["n"]["maximum"] == 9007199254740991  # input untouched


def test_schema_root_is_always_an_object() -> None:
    assert sanitize_schema(None) == {"type": "object", "properties": {}}
    assert sanitize_schema({}) == {"type": "object", "properties": {}}
    root_any = sanitize_schema({"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]})
    assert root_any["type"] == "object" and root_any["properties"] == {}


def test_strict_compatibility() -> None:
    ok = {"type": "object", "properties": {"t": {"type": "string"}}, "required": ["t"], "additionalProperties": False}
    assert is_strict_compatible(ok)
    assert not is_strict_compatible({"type": "object", "properties": {"t": {"type": "string"}}, "required": ["t"]})
    nested = {**ok, "properties": {"t": {"type": "object", "properties": {"u": {"type": "string"}}, "additionalProperties": False}}}
    assert not is_strict_compatible(nested)
