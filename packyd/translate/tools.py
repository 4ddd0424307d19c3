"""Tool names, call ids and parameter schemas, made acceptable to the Responses API.

Responses requires tool names matching ``^[a-zA-Z0-9_-]{1,64}$`` and call ids of at most 64
characters, while Claude Code's MCP tools are named ``mcp__<server>__<tool>`` (often longer,
sometimes with dots) and relays can hand back 69-character call ids. Both mappings are
deterministic functions of the original string (plus a hash), so the same name maps the same
way on every turn and the upstream prompt cache keeps hitting; names keep their readable tail
because the model chooses tools by name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "NameMap",
    "shorten_name",
    "is_valid_name",
    "clamp_call_id",
    "sanitize_schema",
    "is_strict_compatible",
    "MAX_NAME",
    "MAX_CALL_ID",
]

MAX_NAME = 64
MAX_CALL_ID = 64
_VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LEN = 8


def is_valid_name(name: str) -> bool:
    return _VALID.match(name) is not None


def _digest(text: str, salt: int = 0) -> str:
    data = text.encode("utf-8", "surrogatepass")
    if salt:
        data += b"\x00" + str(salt).encode()
    return hashlib.sha256(data).hexdigest()[:_HASH_LEN]


def shorten_name(name: str, salt: int = 0) -> str:
    """A valid Responses tool name for ``name``: itself when already valid, else a readable
    sanitized form that ends in ``_`` + 8 hex digits of the original's SHA-256.

    For ``mcp__server__tool`` names the tool part is kept whole where possible and the server
    part is shortened first, because the tool part is what tells the model what it does.
    """
    if not salt and _VALID.match(name):
        return name
    suffix = "_" + _digest(name, salt)
    budget = MAX_NAME - len(suffix)
    clean = _BAD_CHARS.sub("_", name)
    parts = clean.split("__")
    if len(parts) >= 3 and parts[0] == "mcp":
        server = parts[1]
        tool = "__".join(parts[2:])
        room = budget - len("mcp____") - len(tool)
        if room >= 0:
            head = "mcp__" + server[:room] + "__" + tool
        else:
            head = "mcp__" + tool
    else:
        head = clean
    if len(head) > budget:
        head = head[:budget]
    return head + suffix


class NameMap:
    """Per-request mapping between client tool names and upstream ones.

    Built once from every name the request mentions (tools, history tool_use blocks, the
    forced tool_choice). Collisions — two names sanitizing to the same string, or a short form
    equal to another tool's real name — are resolved by re-salting the hash, processing names
    in sorted order so the outcome does not depend on tool order.
    """

    __slots__ = ("to_upstream", "to_client")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.to_upstream: dict[str, str] = {}
        self.to_client: dict[str, str] = {}
        unique = sorted(set(names))
        # valid names claim themselves first so that a shortened name can never steal one
        for n in unique:
            if _VALID.match(n):
                self.to_upstream[n] = n
                self.to_client[n] = n
        for n in unique:
            if n in self.to_upstream:
                continue
            salt = 0
            short = shorten_name(n)
            while short in self.to_client:
                salt += 1
                short = shorten_name(n, salt)
            self.to_upstream[n] = short
            self.to_client[short] = n

    def upstream(self, name: str) -> str:
        """Upstream name of a client name (names outside the map are shortened on the fly)."""
        short = self.to_upstream.get(name)
        return short if short is not None else shorten_name(name)

    def client(self, name: str) -> str:
        """Original client name of an upstream name; unknown names are returned unchanged."""
        return self.to_client.get(name, name)

    def __len__(self) -> int:
        return len(self.to_upstream)


def clamp_call_id(call_id: str) -> str:
    """A call id of at most 64 valid characters; ids already in shape are untouched.

    Applied to ``tool_use.id``/``tool_result.tool_use_id`` going up and to upstream call ids
    coming down, so a pair always still matches and a 69-character upstream id never has to be
    replayed (Responses rejects those).
    """
    if len(call_id) <= MAX_CALL_ID and _VALID.match(call_id):
        return call_id
    if not call_id:
        return "call_" + _digest("")
    suffix = "_" + _digest(call_id)
    return _BAD_CHARS.sub("_", call_id)[: MAX_CALL_ID - len(suffix)] + suffix


# --------------------------------------------------------------------------- schemas

#: keys that only annotate a schema for humans or validators and that some Responses
#: backends reject or choke on; dropping them never widens what the client accepts
_DROP_KEYS = frozenset({"$schema", "$id", "$comment", "propertyNames", "examples", "deprecated", "readOnly", "writeOnly"})
#: string formats OpenAI's structured outputs understand; others (``uri``, ...) are dropped
_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
_BOUND_KEYS = ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum")
_HUGE = 2**53 - 1
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else")


def _clean(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _clean(v) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_clean(v) for v in value]
        elif key in _SCHEMA_ONE and isinstance(value, dict):
            out[key] = _clean(value)
        elif key == "format" and isinstance(value, str):
            if value in _FORMATS:
                out[key] = value
        elif key in _BOUND_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
            # 2**53-1 style "no limit" sentinels constrain nothing but trip some validators
            if abs(value) < _HUGE:
                out[key] = value
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    branches = out.get("anyOf")
    if isinstance(branches, list) and branches and all(
        isinstance(b, dict) and set(b) <= {"enum", "type", "description", "title"} and "enum" in b for b in branches
    ):
        # anyOf of consts (Claude Code's TaskUpdate.status) is just an enum
        values: list[Any] = []
        for b in branches:
            values.extend(b["enum"])
        del out["anyOf"]
        out["enum"] = values
        types = {b.get("type") for b in branches} - {None}
        if "type" not in out and len(types) == 1:
            out["type"] = types.pop()
    return out


def sanitize_schema(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """A function-tool ``parameters`` schema the Responses API accepts with ``strict: false``.

    The root must be an object schema: a missing or non-object root becomes one, and a root
    without ``properties`` gets an empty map. The input is never modified.
    """
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    out = _clean(schema)
    if out.get("type") != "object":
        out["type"] = "object"
    if not isinstance(out.get("properties"), dict):
        out["properties"] = {}
    return out


def is_strict_compatible(schema: Any) -> bool:
    """True when ``strict: true`` would accept the schema: every object lists all its
    properties as required and forbids additional ones."""
    if isinstance(schema, list):
        return all(is_strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    props = schema.get("properties")
    if schema.get("type") == "object" or isinstance(props, dict):
        if schema.get("additionalProperties") is not False:
            return False
        if isinstance(props, dict) and set(schema.get("required") or ()) != set(props):
            return False
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            if not all(is_strict_compatible(v) for v in value.values()):
                return False
        elif key in _SCHEMA_LISTS or key in _SCHEMA_ONE:
            if not is_strict_compatible(value):
                return False
    return True
