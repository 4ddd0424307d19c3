"""Assertions shared by the integration tests: the upstream request's invariants, the final
message the SDK accumulated, and the wire grammar of an Anthropic stream."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from .fake_packycode import RecordedRequest
from .inprocess import UPSTREAM_KEY

__all__ = ["FORBIDDEN_UPSTREAM_FIELDS", "check_upstream_request", "check_message", "usage", "check_stream_grammar"]

#: fields Codex relays reject or that would make them store or load state
FORBIDDEN_UPSTREAM_FIELDS = frozenset({
    "max_output_tokens", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "metadata",
    "previous_response_id", "truncation", "user", "stream_options", "prompt_cache_retention", "background",
})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def check_upstream_request(recorded: RecordedRequest, *, model: str = "gpt-5-codex") -> dict[str, Any]:
    """The invariants every upstream request keeps; returns the parsed body for more checks."""
    assert recorded.method == "POST"
    assert recorded.path == "/v1/responses"
    headers = recorded.headers
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert headers["accept-encoding"] == "identity"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"
    body = recorded.json
    assert isinstance(body, dict)
    assert not FORBIDDEN_UPSTREAM_FIELDS & body.keys(), FORBIDDEN_UPSTREAM_FIELDS & body.keys()
    assert body["model"] == model
    assert body["stream"] is True
    assert body["store"] is False
    assert body["include"] == ["reasoning.encrypted_content"]
    assert isinstance(body["prompt_cache_key"], str) and body["prompt_cache_key"]
    for tool in body["tools"]:
        if tool["type"] == "function":
            assert _TOOL_NAME.match(tool["name"]), tool["name"]
            assert "$schema" not in json.dumps(tool["parameters"])
    for item in body["input"]:
        assert "id" not in item, "item ids must not be replayed under store:false"
        if item.get("type") == "message":
            assert item["role"] in ("user", "assistant", "developer")
        if "call_id" in item:
            assert len(item["call_id"]) <= 64
    return body


def usage(inp: int, cached: int, out: int) -> dict[str, int]:
    """Anthropic usage for an upstream usage of ``inp`` input (``cached`` of them cached) and ``out``."""
    return {"input_tokens": inp - cached, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached,
            "output_tokens": out}


def check_message(message: Any, *, content: list[dict[str, Any]], stop_reason: str, usage: dict[str, int],
                  model: str) -> None:
    """Compare an SDK ``Message`` field by field (fields the SDK leaves None are ignored)."""
    data = message.model_dump(exclude_none=True)
    message_id = data.pop("id")
    assert re.match(r"^msg_[0-9a-f]{24}$", message_id), message_id
    assert data.pop("type") == "message"
    assert data.pop("role") == "assistant"
    assert data.pop("model") == model
    assert data.pop("stop_reason") == stop_reason
    assert data.pop("usage") == usage
    got = data.pop("content")
    assert len(got) == len(content), got
    for index, (block, expected) in enumerate(zip(got, content)):
        assert block == expected, f"content[{index}]: {block} != {expected}"
    assert data == {}, f"unexpected fields {data}"


def check_stream_grammar(events: Iterable[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each frame names its type in ``event:``; blocks open one at a time with indices 0, 1, …;
    the stream ends with ``message_stop`` or ``error``. Returns the payloads."""
    payloads: list[dict[str, Any]] = []
    open_index: int | None = None
    next_index = 0
    for name, payload in events:
        assert name == payload["type"], (name, payload["type"])
        payloads.append(payload)
        kind = payload["type"]
        if kind == "content_block_start":
            assert open_index is None, "a block opened while another was open"
            assert payload["index"] == next_index
            open_index = payload["index"]
        elif kind == "content_block_delta":
            assert payload["index"] == open_index
        elif kind == "content_block_stop":
            assert payload["index"] == open_index
            open_index, next_index = None, next_index + 1
        elif kind == "message_delta":
            assert open_index is None
    assert payloads, "empty stream"
    assert payloads[0]["type"] == "message_start"
    assert payloads[-1]["type"] in ("message_stop", "error"), payloads[-1]
    return payloads
