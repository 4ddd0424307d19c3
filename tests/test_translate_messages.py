"""Parsing the Anthropic request once into typed structures, with Anthropic-style errors."""

from __future__ import annotations

from typing import Any

import pytest

from packyd.errors import InvalidRequest
from packyd.translate.messages import (
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    RedactedThinkingBlock,
    ServerToolResultBlock,
    ServerToolUseBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UnknownBlock,
    parse_messages_request,
)
from tests.fixtures import requests as rq


def base(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "claude-opus-4-8", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return body


def test_claude_code_first_turn_parses() -> None:
    req = parse_messages_request(rq.first_turn())
    assert isinstance(req, MessagesRequest)
    assert req.model == "claude-opus-4-8" and req.max_tokens == 64000 and req.stream is True
    assert [m.role for m in req.messages] == ["user", "system"]
    assert req.messages[1].content == (TextBlock("Available agent types for the Agent tool: general-purpose."),)
    assert len(req.system) == 3 and req.system[0].text.startswith("x-anthropic-billing-header:")
    assert [t.name for t in req.tools] == [t["name"] for t in rq.TOOLS]
    assert req.thinking is not None and req.thinking.type == "adaptive"
    assert req.output_config is not None and req.output_config.effort == "high"
    assert req.metadata_user_id and rq.SESSION_ID in req.metadata_user_id


def test_all_block_kinds() -> None:
    body = base(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}, "citations": []},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVB"}},
                    {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "c"}]}},
                    {"type": "tool_result", "tool_use_id": "t1"},
                    {"type": "tool_result", "tool_use_id": "t2", "content": "s", "is_error": True},
                    {"type": "search_result", "title": "T", "source": "https://s", "content": [{"type": "text", "text": "body"}]},
                    {"type": "container_upload", "file_id": "f"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "r"},
                    {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"a": 1}, "caller": {"type": "direct"}},
                    {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}},
                    {"type": "web_search_tool_result", "tool_use_id": "s1", "content": []},
                ],
            },
        ]
    )
    req = parse_messages_request(body)
    user, assistant = req.messages
    assert user.content == (
        TextBlock("a"),
        ImageBlock("image/png", data="AAA"),
        ImageBlock(None, url="https://x/y.png"),
        DocumentBlock("base64", media_type="application/pdf", data="JVB"),
        DocumentBlock("content", content=(TextBlock("c"),)),
        ToolResultBlock("t1", ()),
        ToolResultBlock("t2", (TextBlock("s"),), True),
        TextBlock("T\nhttps://s\nbody"),
        UnknownBlock("container_upload"),
    )
    assert assistant.content == (
        ThinkingBlock("hm", "sig"),
        RedactedThinkingBlock("r"),
        ToolUseBlock("t1", "Bash", {"a": 1}),
        ServerToolUseBlock("s1", "web_search", {"query": "q"}),
        ServerToolResultBlock("web_search_tool_result", "s1"),
    )


def test_structures_are_frozen() -> None:
    req = parse_messages_request(base())
    with pytest.raises(AttributeError):
        req.model = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"max_tokens": 1, "messages": []}, "model: Field required"),
        (base(model=3), "model: expected a string, got number"),
        ({"model": "m", "messages": []}, "max_tokens: Field required"),
        (base(max_tokens="10"), "max_tokens: expected an integer, got string"),
        (base(messages=None), "messages: Field required"),
        (base(messages={}), "messages: expected an array, got object"),
        (base(messages=[{"role": "bot", "content": "x"}]), "messages.0.role: expected one of user, assistant, system"),
        (base(messages=[{"role": "user"}]), "messages.0.content: Field required"),
        (base(messages=[{"role": "user", "content": 5}]), "messages.0.content: expected a string or an array of content blocks, got number"),
        (
            base(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": 7}]}]),
            "messages.1.content.1.type: expected one of text, image, document, tool_result, search_result",
        ),
        (base(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages.0.content.0.text: Field required"),
        (base(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]), "messages.0.content.0.text: expected a string, got number"),
        (
            base(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "x"}}]}]),
            "messages.0.content.0.source.type: expected one of base64, url",
        ),
        (
            base(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": []}]}]),
            "messages.0.content.0.input: expected an object, got array",
        ),
        (base(system=5), "system: expected a string or an array of text blocks, got number"),
        (base(system=[{"type": "image"}]), "system.0.type: expected one of text"),
        (base(tools=[{"name": "x", "input_schema": "s"}]), "tools.0.input_schema: expected an object, got string"),
        (base(tools=[{"description": "x"}]), "tools.0.name: Field required"),
        (base(tool_choice={"type": "sometimes"}), "tool_choice.type: expected one of auto, any, tool, none"),
        (base(tool_choice={"type": "tool"}), "tool_choice.name: Field required"),
        (base(thinking={"type": "enabled", "budget_tokens": "lots"}), "thinking.budget_tokens: expected an integer, got string"),
        (base(output_config={"format": {"type": "xml"}}), "output_config.format.type: expected one of json_schema"),
        (base(stream="yes"), "stream: expected a boolean, got string"),
        (base(stop_sequences="END"), "stop_sequences: expected an array of strings, got string"),
        (base(metadata={"user_id": 5}), "metadata.user_id: expected a string, got number"),
        ([], "body: expected an object, got array"),
    ],
)
def test_errors_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages_request(body)
    assert info.value.message == message
    assert info.value.status == 400


def test_lenient_where_clients_vary() -> None:
    req = parse_messages_request(
        base(
            unknown_top_level={"x": 1},
            cache_control={"type": "ephemeral"},
            system="plain system",
            metadata=None,
            tools=None,
            tool_choice=None,
            thinking=None,
            temperature=1,
            context_management={"edits": []},
        )
    )
    assert req.system == (TextBlock("plain system"),) and req.temperature == 1.0
    assert parse_messages_request(base(max_tokens=0)).max_tokens == 0


def test_count_tokens_does_not_need_max_tokens() -> None:
    body = base()
    del body["max_tokens"]
    assert parse_messages_request(body, count_tokens=True).max_tokens is None
