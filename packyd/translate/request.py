"""Anthropic Messages request → OpenAI Responses request body, shaped like Codex CLI traffic.

The body is always ``stream: true``, ``store: false``, with
``include: ["reasoning.encrypted_content"]`` and a ``prompt_cache_key`` that stays the same for
a whole Claude Code session (Codex relays shard their cache and channels by it, and encrypted
reasoning only replays on the channel that produced it). It never carries the parameters Codex
relays reject (``max_output_tokens``, ``temperature``, ``top_p``, ``stop``, ``metadata``,
``previous_response_id``) nor item ids (under ``store: false`` the server would try to load
them). Output is deterministic: the same history gives byte-identical input every turn, which is
what upstream prefix caching needs.

Decisions on Claude features without an exact equivalent (each recorded in ``dropped`` so the
caller can log it without content):

* ``stop_sequences``: not sent (relays reject ``stop``); emulated on the way back by
  ``StreamTranslator(stop_sequences=...)``, which the caller must pass.
* ``temperature``/``top_p``/``top_k``: reasoning models reject sampling parameters.
* ``max_tokens``: relays reject ``max_output_tokens``; the model's own cap applies.
* ``web_search_*`` server tool → the hosted ``web_search`` tool (``blocked_domains`` and
  ``max_uses`` have no equivalent and are dropped: they only narrow a search).
* other server tools (``web_fetch``, ``code_execution``, ``bash``, ``text_editor``, ...) and
  ``mcp_servers`` change what the model can do and have no Responses equivalent here:
  ``InvalidRequest``.
* ``redacted_thinking``, foreign-signed thinking, ``server_tool_use`` and server tool results
  in history are dropped: none can be replayed upstream.
* an assistant "prefill" as last message is replayed as ordinary history.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packyd.errors import InvalidRequest
from packyd.translate.messages import (
    BILLING_HEADER_PREFIX,
    Block,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UnknownBlock,
    dump_input,
)
from packyd.translate.models import resolve_model
from packyd.translate.reasoning import unpack_signature
from packyd.translate.settings import TranslationSettings
from packyd.translate.tools import NameMap, clamp_call_id, is_strict_compatible, sanitize_schema

__all__ = [
    "UpstreamRequest",
    "translate_request",
    "extract_session_id",
    "conversation_id",
    "identity_headers",
    "TOOL_ERROR_PREFIX",
]

#: Responses has no ``is_error``: the failure is stated in the output text instead.
TOOL_ERROR_PREFIX = "[tool error]\n"
_CONV_NAMESPACE = uuid.UUID("6f1c1d0e-6b1e-4c5e-9a57-7061636b7964")  # fixed: keys must survive restarts
_WEB_SEARCH = re.compile(r"^web_search_\d+$")
_LEGACY_SESSION = re.compile(r"_session_([0-9a-fA-F-]{8,})$")


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    body: dict[str, Any]
    names: NameMap
    requested_model: str  # echo this to the client
    upstream_model: str  # put this in a response header and the log
    effort: str
    summary: str | None
    conversation_id: str
    dropped: tuple[str, ...] = ()  # feature names that were not forwarded, for the log


# --------------------------------------------------------------------------- session identity


def extract_session_id(headers: Mapping[str, str], metadata_user_id: str | None) -> str | None:
    """Claude Code's session id: the ``X-Claude-Code-Session-Id`` header, else the
    ``session_id`` inside ``metadata.user_id`` (a JSON document since 2.1.78, the
    ``user_…_account_…_session_<uuid>`` form before)."""
    for key in ("x-claude-code-session-id", "X-Claude-Code-Session-Id"):
        value = headers.get(key)
        if value and value.strip():
            return value.strip()
    if not metadata_user_id:
        return None
    text = metadata_user_id.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            sid = doc.get("session_id")
            if isinstance(sid, str) and sid.strip():
                return sid.strip()
        return None
    m = _LEGACY_SESSION.search(text)
    return m.group(1) if m else None


def conversation_id(session_id: str | None, req: MessagesRequest) -> str:
    """A UUID that stays the same for one conversation: derived from the session id, or, for
    clients without one, from the conversation's first message (which never changes)."""
    if session_id:
        return str(uuid.uuid5(_CONV_NAMESPACE, "session:" + session_id))
    h = hashlib.sha256()
    for msg in req.messages[:1]:
        for block in msg.content:
            if isinstance(block, TextBlock):
                h.update(block.text.encode("utf-8", "surrogatepass"))
                h.update(b"\x00")
    return str(uuid.uuid5(_CONV_NAMESPACE, "first:" + h.hexdigest()))


def identity_headers(
    profile: str,
    conversation: str,
    request_id: str,
    version: str,
    settings: TranslationSettings | None = None,
) -> dict[str, str]:
    """Upstream headers that make a request look like the chosen client (auth excluded).

    ``codex-cli``: Codex 0.169 (``originator``, its User-Agent, one id per conversation in
    ``session-id``/``thread-id``/``x-client-request-id``, no ``OpenAI-Beta``).
    ``codex-legacy``: Codex 0.58 (``session_id``/``conversation_id``).
    ``plain``: packyd's own User-Agent and a per-request id only.
    """
    s = settings or TranslationSettings()
    headers = {"accept": "text/event-stream", "content-type": "application/json"}
    if profile == "codex-cli":
        v = s.codex_version
        headers.update(
            {
                "x-client-request-id": conversation,
                "session-id": conversation,
                "thread-id": conversation,
                "x-codex-window-id": conversation + ":0",
                "originator": "codex_exec",
                "user-agent": f"codex_exec/{v} ({s.os_description}) {s.terminal} (codex_exec; {v})",
            }
        )
    elif profile == "codex-legacy":
        v = s.codex_legacy_version
        headers.update(
            {
                "conversation_id": conversation,
                "session_id": conversation,
                "originator": "codex_cli_rs",
                "user-agent": f"codex_cli_rs/{v} ({s.os_description}) {s.terminal}",
            }
        )
    elif profile == "plain":
        headers.update({"user-agent": f"packyd/{version}", "x-client-request-id": request_id})
    else:
        raise ValueError(f"unknown identity profile {profile!r}")
    return headers


# --------------------------------------------------------------------------- content


def _image_url(block: ImageBlock) -> str:
    if block.url is not None:
        return block.url
    data = block.data or ""
    media = block.media_type or _sniff_image(data)
    return f"data:{media};base64,{data}"


def _sniff_image(data: str) -> str:
    if data.startswith("iVBOR"):
        return "image/png"
    if data.startswith("/9j/"):
        return "image/jpeg"
    if data.startswith("R0lG"):
        return "image/gif"
    if data.startswith("UklG"):
        return "image/webp"
    return "application/octet-stream"


class _Builder:
    """Walks the parsed messages once, appending Responses input items."""

    __slots__ = ("input", "names", "include_reasoning", "dropped", "_parts", "_role")

    def __init__(self, names: NameMap, include_reasoning: bool) -> None:
        self.input: list[dict[str, Any]] = []
        self.names = names
        self.include_reasoning = include_reasoning
        self.dropped: set[str] = set()
        self._parts: list[dict[str, Any]] = []
        self._role = ""

    # pending message parts are flushed before any non-message item so order is preserved
    def flush(self) -> None:
        if self._parts:
            self.input.append({"type": "message", "role": self._role, "content": self._parts})
            self._parts = []

    def _part(self, role: str, part: dict[str, Any]) -> None:
        if role != self._role:
            self.flush()
            self._role = role
        self._parts.append(part)

    def input_parts(self, block: Block, out: list[dict[str, Any]]) -> None:
        """User-side content (also tool_result content) as input parts."""
        if isinstance(block, TextBlock):
            if block.text:
                out.append({"type": "input_text", "text": block.text})
        elif isinstance(block, ImageBlock):
            out.append({"type": "input_image", "image_url": _image_url(block)})
        elif isinstance(block, DocumentBlock):
            self._document(block, out)
        elif isinstance(block, UnknownBlock):
            self.dropped.add(f"block:{block.type}")
        else:
            self.dropped.add(f"block:{type(block).__name__}")

    def _document(self, doc: DocumentBlock, out: list[dict[str, Any]]) -> None:
        if doc.kind == "base64":
            media = doc.media_type or "application/pdf"
            name = doc.title or ("document.pdf" if media == "application/pdf" else "document")
            out.append({"type": "input_file", "filename": name, "file_data": f"data:{media};base64,{doc.data}"})
        elif doc.kind == "url":
            out.append({"type": "input_file", "file_url": doc.url})
        elif doc.kind == "text":
            text = doc.text or ""
            if doc.title:
                text = doc.title + "\n\n" + text
            if text:
                out.append({"type": "input_text", "text": text})
        else:
            if doc.title:
                out.append({"type": "input_text", "text": doc.title})
            for inner in doc.content:
                self.input_parts(inner, out)

    def user(self, content: tuple[Block, ...]) -> None:
        for block in content:
            if isinstance(block, ToolResultBlock):
                self.flush()
                self.input.append(self._tool_output(block))
            elif isinstance(block, (TextBlock, ImageBlock, DocumentBlock, UnknownBlock)):
                parts: list[dict[str, Any]] = []
                self.input_parts(block, parts)
                for p in parts:
                    self._part("user", p)
            else:
                self.dropped.add(f"user-block:{type(block).__name__}")

    def _tool_output(self, block: ToolResultBlock) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        for inner in block.content:
            self.input_parts(inner, parts)
        output: str | list[dict[str, Any]]
        if all(p["type"] == "input_text" for p in parts):
            # Codex always sends a plain string; keep that shape whenever it is possible
            output = "\n".join(p["text"] for p in parts)
            if block.is_error:
                output = TOOL_ERROR_PREFIX + output
        else:
            if block.is_error:
                parts.insert(0, {"type": "input_text", "text": TOOL_ERROR_PREFIX.rstrip("\n")})
            output = parts
        return {"type": "function_call_output", "call_id": clamp_call_id(block.tool_use_id), "output": output}

    def assistant(self, content: tuple[Block, ...]) -> None:
        for block in content:
            if isinstance(block, TextBlock):
                if block.text:
                    self._part("assistant", {"type": "output_text", "text": block.text})
            elif isinstance(block, ToolUseBlock):
                self.flush()
                self.input.append(
                    {
                        "type": "function_call",
                        "call_id": clamp_call_id(block.id),
                        "name": self.names.upstream(block.name),
                        "arguments": dump_input(block.input),
                    }
                )
            elif isinstance(block, ThinkingBlock):
                blob = unpack_signature(block.signature) if self.include_reasoning else None
                if blob is None:
                    self.dropped.add("thinking:unreplayable")
                    continue
                self.flush()
                self.input.append({"type": "reasoning", "summary": [], "encrypted_content": blob})
            else:
                self.dropped.add(f"assistant-block:{getattr(block, 'type', type(block).__name__)}")

    def developer(self, texts: list[str]) -> None:
        parts = [{"type": "input_text", "text": t} for t in texts if t]
        if parts:
            self.flush()
            self.input.append({"type": "message", "role": "developer", "content": parts})


def _system_texts(req: MessagesRequest) -> list[str]:
    # The billing header changes on every request and would defeat upstream prefix caching.
    return [b.text for b in req.system if b.text and not b.text.startswith(BILLING_HEADER_PREFIX)]


def _tools(req: MessagesRequest, names: NameMap, dropped: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(req.tools):
        if not tool.is_server_tool:
            entry: dict[str, Any] = {"type": "function", "name": names.upstream(tool.name)}
            if tool.description:
                entry["description"] = tool.description
            entry["strict"] = False
            entry["parameters"] = sanitize_schema(tool.input_schema)
            out.append(entry)
        elif _WEB_SEARCH.match(tool.type or ""):
            ws: dict[str, Any] = {"type": "web_search"}
            opts = tool.options or {}
            allowed = opts.get("allowed_domains")
            if isinstance(allowed, list) and allowed:
                ws["filters"] = {"allowed_domains": [d for d in allowed if isinstance(d, str)]}
            loc = opts.get("user_location")
            if isinstance(loc, dict) and loc:
                ws["user_location"] = {k: v for k, v in loc.items() if v is not None}
            for unsupported in ("blocked_domains", "max_uses"):
                if opts.get(unsupported):
                    dropped.add(f"web_search.{unsupported}")
            out.append(ws)
        else:
            raise InvalidRequest(
                f"tools.{i}.type: the Anthropic server tool '{tool.type}' has no equivalent on "
                "Packycode's Responses API; remove it or route this model to an Anthropic provider"
            )
    return out


def _tool_choice(req: MessagesRequest, names: NameMap) -> Any:
    tc = req.tool_choice
    if tc is None or tc.type == "auto":
        return "auto"
    if tc.type == "any":
        return "required"
    if tc.type == "none":
        return "none"
    name = tc.name or ""
    for tool in req.tools:
        if tool.name == name and tool.is_server_tool:
            return {"type": "web_search"} if _WEB_SEARCH.match(tool.type or "") else "required"
    return {"type": "function", "name": names.upstream(name)}


def _names(req: MessagesRequest) -> NameMap:
    names = [t.name for t in req.tools if not t.is_server_tool]
    for msg in req.messages:
        if msg.role == "assistant":
            names.extend(b.name for b in msg.content if isinstance(b, ToolUseBlock))
    if req.tool_choice is not None and req.tool_choice.name:
        names.append(req.tool_choice.name)
    return NameMap(names)


def _text_format(req: MessagesRequest) -> dict[str, Any] | None:
    fmt = req.output_config.format if req.output_config is not None else None
    if not fmt:
        return None
    schema = fmt.get("schema")
    clean = sanitize_schema(schema) if isinstance(schema, dict) and schema.get("type", "object") == "object" else schema
    return {
        "type": "json_schema",
        "name": "output",
        "schema": clean,
        "strict": is_strict_compatible(clean),
    }


def translate_request(
    req: MessagesRequest,
    settings: TranslationSettings,
    *,
    session_id: str | None = None,
    include_reasoning: bool = True,
) -> UpstreamRequest:
    """Build the upstream request. ``include_reasoning=False`` leaves out replayed reasoning
    (the retry after an upstream ``invalid_encrypted_content``)."""
    if req.mcp_servers:
        raise InvalidRequest(
            "mcp_servers: Anthropic-hosted MCP connectors have no equivalent on Packycode; "
            "configure the MCP servers in the client instead"
        )
    choice = resolve_model(req.model, settings, req.thinking, req.output_config)
    names = _names(req)
    builder = _Builder(names, include_reasoning)
    dropped = builder.dropped
    legacy = settings.identity == "codex-legacy"
    system = _system_texts(req)
    if not legacy:
        builder.developer(system)
    for msg in req.messages:
        if msg.role == "user":
            builder.user(msg.content)
        elif msg.role == "assistant":
            builder.assistant(msg.content)
        else:  # mid-conversation system message: relays reject role "system" input items
            builder.developer([b.text for b in msg.content if isinstance(b, TextBlock)])
    builder.flush()
    tools = _tools(req, names, dropped)

    if req.temperature is not None:
        dropped.add("temperature")

    conv = conversation_id(session_id, req)
    reasoning: dict[str, Any] = {"effort": choice.effort}
    if choice.summary is not None:
        reasoning["summary"] = choice.summary
    body: dict[str, Any] = {"model": choice.model}
    if legacy:
        body["instructions"] = "\n\n".join(system)
    else:
        body["stream"] = True
    body["input"] = builder.input
    body["tools"] = tools
    body["tool_choice"] = _tool_choice(req, names) if tools else "auto"
    disable_parallel = req.tool_choice is not None and req.tool_choice.disable_parallel_tool_use
    body["parallel_tool_calls"] = bool(tools) and settings.parallel_tool_calls and not disable_parallel
    body["reasoning"] = reasoning
    body["store"] = False
    body["stream"] = True
    body["include"] = ["reasoning.encrypted_content"]
    body["prompt_cache_key"] = conv
    text: dict[str, Any] = {}
    fmt = _text_format(req)
    if fmt is not None:
        text["format"] = fmt
    if settings.verbosity:
        text["verbosity"] = settings.verbosity
    if text:
        body["text"] = text
    return UpstreamRequest(
        body=body,
        names=names,
        requested_model=req.model,
        upstream_model=choice.model,
        effort=choice.effort,
        summary=choice.summary,
        conversation_id=conv,
        dropped=tuple(sorted(dropped)),
    )
