"""The Anthropic Messages request, parsed once into frozen, typed structures.

Everything downstream (model resolution, request translation, token counting) reads these
objects instead of re-walking the JSON, so validation happens exactly once and a wrong type is
reported with the path of the offending field, the way Anthropic's API words it
(``messages.3.content.0.type: ...``).

Lenient where real clients legitimately vary: string or block content, ``cache_control``
anywhere, unknown top-level fields and unknown block types (kept as ``UnknownBlock`` so the
translator can decide), ``null`` for optional fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from packyd.errors import InvalidRequest

__all__ = [
    "TextBlock",
    "ImageBlock",
    "DocumentBlock",
    "ToolUseBlock",
    "ToolResultBlock",
    "ThinkingBlock",
    "RedactedThinkingBlock",
    "ServerToolUseBlock",
    "ServerToolResultBlock",
    "UnknownBlock",
    "Block",
    "Message",
    "Tool",
    "ToolChoice",
    "Thinking",
    "OutputConfig",
    "MessagesRequest",
    "parse_messages_request",
    "BILLING_HEADER_PREFIX",
]

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str


@dataclass(frozen=True, slots=True)
class ImageBlock:
    """``data`` for base64 sources, ``url`` for URL sources (exactly one is set)."""

    media_type: str | None
    data: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentBlock:
    """``kind``: ``base64`` (PDF data), ``url``, ``text`` (plain text in ``text``) or ``content``."""

    kind: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    text: str | None = None
    title: str | None = None
    content: tuple[Block, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    id: str
    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResultBlock:
    tool_use_id: str
    content: tuple[Block, ...]
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ThinkingBlock:
    thinking: str
    signature: str


@dataclass(frozen=True, slots=True)
class RedactedThinkingBlock:
    data: str


@dataclass(frozen=True, slots=True)
class ServerToolUseBlock:
    id: str
    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ServerToolResultBlock:
    """``web_search_tool_result`` and friends; only the type and id matter to packyd."""

    type: str
    tool_use_id: str


@dataclass(frozen=True, slots=True)
class UnknownBlock:
    type: str


Block = Union[
    TextBlock,
    ImageBlock,
    DocumentBlock,
    ToolUseBlock,
    ToolResultBlock,
    ThinkingBlock,
    RedactedThinkingBlock,
    ServerToolUseBlock,
    ServerToolResultBlock,
    UnknownBlock,
]


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "user" | "assistant" | "system" (mid-conversation system message)
    content: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Tool:
    """A client tool (``type`` None or ``custom``) or an Anthropic server tool (versioned ``type``).

    ``options`` keeps a server tool's settings (``allowed_domains``, ``user_location``, ...).
    """

    name: str
    description: str | None
    input_schema: Mapping[str, Any] | None
    type: str | None = None
    options: Mapping[str, Any] | None = None

    @property
    def is_server_tool(self) -> bool:
        return self.type is not None and self.type != "custom"


@dataclass(frozen=True, slots=True)
class ToolChoice:
    type: str  # auto | any | tool | none
    name: str | None = None
    disable_parallel_tool_use: bool = False


@dataclass(frozen=True, slots=True)
class Thinking:
    type: str  # enabled | adaptive | disabled | (anything newer, kept verbatim)
    budget_tokens: int | None = None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class OutputConfig:
    effort: str | None = None
    format: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    model: str
    max_tokens: int | None
    messages: tuple[Message, ...]
    system: tuple[TextBlock, ...] = ()
    stream: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    metadata_user_id: str | None = None
    stop_sequences: tuple[str, ...] = ()
    temperature: float | None = None
    mcp_servers: int = 0


# --------------------------------------------------------------------------- helpers


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _fail(path: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"{path}: expected {expected}, got {_type_name(value)}")


def _str(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            return _missing(f"{path}.{key}" if path else key)
        return None
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}" if path else key, "a string", value)
    return value


def _missing(path: str) -> str:
    raise InvalidRequest(f"{path}: Field required")


def _int(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _fail(f"{path}.{key}" if path else key, "an integer", value)
    return value


def _bool(obj: Mapping[str, Any], key: str, path: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(f"{path}.{key}" if path else key, "a boolean", value)
    return value


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "an object", value)
    return value


_USER_BLOCKS = "text, image, document, tool_result, search_result"
_ASSISTANT_BLOCKS = "text, thinking, redacted_thinking, tool_use, server_tool_use"


# --------------------------------------------------------------------------- blocks


def _parse_image(b: dict[str, Any], path: str) -> ImageBlock:
    src = _obj(b.get("source"), f"{path}.source")
    kind = _str(src, "type", f"{path}.source")
    if kind == "base64":
        data = _str(src, "data", f"{path}.source")
        return ImageBlock(_str(src, "media_type", f"{path}.source", required=False), data=data)
    if kind == "url":
        return ImageBlock(None, url=_str(src, "url", f"{path}.source"))
    raise InvalidRequest(f"{path}.source.type: expected one of base64, url")


def _parse_document(b: dict[str, Any], path: str) -> DocumentBlock:
    src = _obj(b.get("source"), f"{path}.source")
    kind = _str(src, "type", f"{path}.source")
    title = _str(b, "title", path, required=False)
    if kind == "base64":
        return DocumentBlock(
            "base64",
            media_type=_str(src, "media_type", f"{path}.source", required=False),
            data=_str(src, "data", f"{path}.source"),
            title=title,
        )
    if kind == "url":
        return DocumentBlock("url", url=_str(src, "url", f"{path}.source"), title=title)
    if kind == "text":
        return DocumentBlock("text", text=_str(src, "data", f"{path}.source"), title=title)
    if kind == "content":
        inner = src.get("content")
        if isinstance(inner, str):
            blocks: tuple[Block, ...] = (TextBlock(inner),)
        else:
            blocks = _parse_blocks(inner, f"{path}.source.content", _USER_BLOCKS)
        return DocumentBlock("content", content=blocks, title=title)
    raise InvalidRequest(f"{path}.source.type: expected one of base64, url, text, content")


def _parse_search_result(b: dict[str, Any], path: str) -> TextBlock:
    """Flattened to text: Responses has no equivalent and the text is what the model needs."""
    parts = [p for p in (b.get("title"), b.get("source")) if isinstance(p, str) and p]
    for inner in _parse_blocks(b.get("content") or [], f"{path}.content", "text"):
        if isinstance(inner, TextBlock):
            parts.append(inner.text)
    return TextBlock("\n".join(parts))


def _parse_block(b: Any, path: str, allowed: str) -> Block:
    b = _obj(b, path)
    kind = b.get("type")
    if not isinstance(kind, str):
        if kind is None:
            raise InvalidRequest(f"{path}.type: Field required")
        raise InvalidRequest(f"{path}.type: expected one of {allowed}")
    if kind == "text":
        return TextBlock(_str(b, "text", path))  # type: ignore[arg-type]
    if kind == "tool_result":
        tid = _str(b, "tool_use_id", path)
        raw = b.get("content")
        if raw is None:
            content: tuple[Block, ...] = ()
        elif isinstance(raw, str):
            content = (TextBlock(raw),)
        else:
            content = _parse_blocks(raw, f"{path}.content", "text, image, document, search_result")
        return ToolResultBlock(tid, content, _bool(b, "is_error", path))  # type: ignore[arg-type]
    if kind == "tool_use":
        inp = b.get("input")
        if inp is None:
            inp = {}
        elif not isinstance(inp, dict):
            raise _fail(f"{path}.input", "an object", inp)
        return ToolUseBlock(_str(b, "id", path), _str(b, "name", path), inp)  # type: ignore[arg-type]
    if kind == "thinking":
        return ThinkingBlock(
            _str(b, "thinking", path, required=False) or "",
            _str(b, "signature", path, required=False) or "",
        )
    if kind == "image":
        return _parse_image(b, path)
    if kind == "document":
        return _parse_document(b, path)
    if kind == "redacted_thinking":
        return RedactedThinkingBlock(_str(b, "data", path, required=False) or "")
    if kind == "server_tool_use":
        inp = b.get("input")
        return ServerToolUseBlock(
            _str(b, "id", path),  # type: ignore[arg-type]
            _str(b, "name", path),  # type: ignore[arg-type]
            inp if isinstance(inp, dict) else {},
        )
    if kind.endswith("_tool_result"):
        return ServerToolResultBlock(kind, _str(b, "tool_use_id", path, required=False) or "")
    if kind == "search_result":
        return _parse_search_result(b, path)
    return UnknownBlock(kind)


def _parse_blocks(raw: Any, path: str, allowed: str) -> tuple[Block, ...]:
    if not isinstance(raw, list):
        raise _fail(path, "a string or an array of content blocks", raw)
    return tuple(_parse_block(b, f"{path}.{i}", allowed) for i, b in enumerate(raw))


def _parse_content(raw: Any, path: str, allowed: str) -> tuple[Block, ...]:
    if isinstance(raw, str):
        return (TextBlock(raw),)
    return _parse_blocks(raw, path, allowed)


def _parse_message(m: Any, path: str) -> Message:
    m = _obj(m, path)
    role = m.get("role")
    if role not in ("user", "assistant", "system"):
        if role is None:
            raise InvalidRequest(f"{path}.role: Field required")
        raise InvalidRequest(f"{path}.role: expected one of user, assistant, system")
    if "content" not in m:
        raise InvalidRequest(f"{path}.content: Field required")
    allowed = _ASSISTANT_BLOCKS if role == "assistant" else _USER_BLOCKS
    return Message(role, _parse_content(m["content"], f"{path}.content", allowed))


# --------------------------------------------------------------------------- top level


def _parse_system(raw: Any) -> tuple[TextBlock, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (TextBlock(raw),) if raw else ()
    if not isinstance(raw, list):
        raise _fail("system", "a string or an array of text blocks", raw)
    out = []
    for i, b in enumerate(raw):
        b = _obj(b, f"system.{i}")
        if b.get("type") != "text":
            raise InvalidRequest(f"system.{i}.type: expected one of text")
        out.append(TextBlock(_str(b, "text", f"system.{i}")))  # type: ignore[arg-type]
    return tuple(out)


def _parse_tools(raw: Any) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail("tools", "an array", raw)
    out = []
    for i, t in enumerate(raw):
        path = f"tools.{i}"
        t = _obj(t, path)
        kind = _str(t, "type", path, required=False)
        name = _str(t, "name", path)
        if kind is None or kind == "custom":
            schema = t.get("input_schema")
            if schema is not None and not isinstance(schema, dict):
                raise _fail(f"{path}.input_schema", "an object", schema)
            out.append(Tool(name, _str(t, "description", path, required=False), schema, kind))  # type: ignore[arg-type]
        else:
            opts = {k: v for k, v in t.items() if k not in ("type", "name", "cache_control")}
            out.append(Tool(name, None, None, kind, opts))  # type: ignore[arg-type]
    return tuple(out)


def _parse_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    raw = _obj(raw, "tool_choice")
    kind = raw.get("type")
    if kind not in ("auto", "any", "tool", "none"):
        raise InvalidRequest("tool_choice.type: expected one of auto, any, tool, none")
    name = _str(raw, "name", "tool_choice", required=kind == "tool")
    return ToolChoice(kind, name, _bool(raw, "disable_parallel_tool_use", "tool_choice"))


def _parse_thinking(raw: Any) -> Thinking | None:
    if raw is None:
        return None
    raw = _obj(raw, "thinking")
    kind = _str(raw, "type", "thinking")
    return Thinking(
        kind,  # type: ignore[arg-type]
        _int(raw, "budget_tokens", "thinking"),
        _str(raw, "display", "thinking", required=False),
    )


def _parse_output_config(raw: Any) -> OutputConfig | None:
    if raw is None:
        return None
    raw = _obj(raw, "output_config")
    fmt = raw.get("format")
    if fmt is not None:
        fmt = _obj(fmt, "output_config.format")
        if fmt.get("type") != "json_schema":
            raise InvalidRequest("output_config.format.type: expected one of json_schema")
        _obj(fmt.get("schema"), "output_config.format.schema")
    return OutputConfig(_str(raw, "effort", "output_config", required=False), fmt)


def _parse_metadata(raw: Any) -> str | None:
    if raw is None:
        return None
    raw = _obj(raw, "metadata")
    value = raw.get("user_id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail("metadata.user_id", "a string", value)
    return value


def parse_messages_request(body: Any, *, count_tokens: bool = False) -> MessagesRequest:
    """Validate and convert a decoded JSON body. ``count_tokens`` relaxes ``max_tokens``.

    Raises ``InvalidRequest`` naming the first offending field.
    """
    body = _obj(body, "body")
    model = _str(body, "model", "")
    if not model:
        raise InvalidRequest("model: String should have at least 1 character")
    max_tokens = _int(body, "max_tokens", "")
    if max_tokens is None and not count_tokens:
        raise InvalidRequest("max_tokens: Field required")
    if max_tokens is not None and max_tokens < 0:
        raise InvalidRequest("max_tokens: Input should be greater than or equal to 0")
    raw_messages = body.get("messages")
    if raw_messages is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(raw_messages, list):
        raise _fail("messages", "an array", raw_messages)
    messages = tuple(_parse_message(m, f"messages.{i}") for i, m in enumerate(raw_messages))
    stop = body.get("stop_sequences")
    if stop is None:
        stop_sequences: tuple[str, ...] = ()
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stop_sequences = tuple(stop)
    else:
        raise _fail("stop_sequences", "an array of strings", stop)
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))):
        raise _fail("temperature", "a number", temperature)
    mcp = body.get("mcp_servers")
    return MessagesRequest(
        model=model,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        messages=messages,
        system=_parse_system(body.get("system")),
        stream=_bool(body, "stream", ""),
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        thinking=_parse_thinking(body.get("thinking")),
        output_config=_parse_output_config(body.get("output_config")),
        metadata_user_id=_parse_metadata(body.get("metadata")),
        stop_sequences=stop_sequences,
        temperature=float(temperature) if temperature is not None else None,
        mcp_servers=len(mcp) if isinstance(mcp, list) else 0,
    )


def dump_input(value: Mapping[str, Any]) -> str:
    """Tool input as the compact JSON text Responses wants in ``arguments``."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
