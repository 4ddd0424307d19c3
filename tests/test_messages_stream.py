"""``POST /v1/messages`` end to end: the official SDK → packyd → a fake Packycode over sockets.

Each answer is consumed with the ``anthropic`` SDK's own streaming helper (whose accumulator
rejects malformed event sequences) and its final message is compared field by field; the
request packyd sent upstream is checked field by field too.
"""

from __future__ import annotations

import copy
import inspect
import json
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anthropic
import httpx
import pytest

from tests.fixtures import requests as cc
from tests.fixtures import streams
from tests.support.checks import check_message, check_stream_grammar, check_upstream_request, usage
from tests.support.fake_packycode import Chunk, RecordedRequest, Reply, encode_sse, sse_reply
from tests.support.inprocess import parse_sse

MODEL = "claude-opus-4-8"
SIGNATURE = "pky1:" + streams.ENC_FINAL
_SDK_PARAMS = set(inspect.signature(anthropic.resources.messages.AsyncMessages.create).parameters) - {"self", "stream"}


@asynccontextmanager
async def sdk(stack: Any) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.client_key, max_retries=0) as client:
        yield client


def sdk_args(body: dict[str, Any]) -> dict[str, Any]:
    """A Claude Code-shaped body as SDK keyword arguments (fields the SDK does not know go in
    ``extra_body``, so the wire body is the same)."""
    args = {key: value for key, value in body.items() if key in _SDK_PARAMS}
    extra = {key: value for key, value in body.items() if key not in _SDK_PARAMS and key != "stream"}
    if extra:
        args["extra_body"] = extra
    return args


async def stream_final(client: anthropic.AsyncAnthropic, body: dict[str, Any], **options: Any) -> Any:
    async with client.messages.stream(**sdk_args(body), **options) as stream:
        return await stream.get_final_message()


def simple(prompt: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": prompt}], **fields}


async def raw_stream(stack: Any, body: dict[str, Any]) -> tuple[httpx.Response, list[tuple[str | None, dict[str, Any]]]]:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers, timeout=30) as client:
        response = await client.post("/v1/messages?beta=true", json={**body, "stream": True})
    return response, parse_sse(response.content)


def upstream_name(recorded: RecordedRequest, client_name: str) -> str:
    """The upstream name packyd gave a client tool (found by its description)."""
    descriptions = {tool["description"]: tool["name"] for tool in recorded.json["tools"]}
    wanted = next(t["description"] for t in cc.TOOLS if t["name"] == client_name)
    return descriptions[wanted]


# --------------------------------------------------------------------------- answers


async def test_plain_text_claude_code_turn(stack: Any) -> None:
    text = "Hello there! The files are listed below."
    stack.fake.script(sse_reply(streams.text_stream(text, pieces=7), per_event=True))
    body = cc.first_turn()
    async with sdk(stack) as client:
        final = await stream_final(client, body, extra_headers={"X-Claude-Code-Session-Id": cc.SESSION_ID})
    check_message(final, content=[{"type": "text", "text": text}], stop_reason="end_turn",
                  usage=usage(1234, 1024, 56), model=MODEL)

    [recorded] = stack.upstream_requests
    sent = check_upstream_request(recorded)
    assert list(sent) == ["model", "stream", "input", "tools", "tool_choice", "parallel_tool_calls", "reasoning",
                          "store", "include", "prompt_cache_key"]
    assert sent["input"] == [
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK."},
            {"type": "input_text", "text": "\nYou are an interactive agent that helps users with software engineering tasks."},
        ]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "<system-reminder>\nToday's date is 2026-01-01.\n</system-reminder>\n\n"},
            {"type": "input_text", "text": "list the files"},
        ]},
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "Available agent types for the Agent tool: general-purpose."},
        ]},
    ]
    assert [tool["name"] for tool in sent["tools"][:4]] == ["Bash", "Read", "TaskUpdate", "WebFetch"]
    assert all(tool["type"] == "function" and tool["strict"] is False for tool in sent["tools"])
    assert sent["tool_choice"] == "auto"
    assert sent["parallel_tool_calls"] is True
    assert sent["reasoning"] == {"effort": "high", "summary": "auto"}
    assert str(uuid.UUID(sent["prompt_cache_key"])) == sent["prompt_cache_key"]
    assert recorded.headers["session-id"] == sent["prompt_cache_key"]


async def test_response_headers_name_upstream_model(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.text_stream("ok")))
    response, events = await raw_stream(stack, simple())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-packyd-upstream-model"] == "gpt-5-codex"
    assert response.headers["x-packyd-provider"] == "packycode"
    assert response.headers["request-id"].startswith("req_")
    payloads = check_stream_grammar(events)
    assert payloads[0]["message"]["model"] == MODEL  # the name the client asked for, not gpt-5-codex
    assert payloads[-1] == {"type": "message_stop"}


async def test_reasoning_summary_then_text(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.reasoning_text_stream(), per_event=True))
    async with sdk(stack) as client:
        final = await stream_final(client, simple(thinking={"type": "enabled", "budget_tokens": 2048}))
    check_message(final, content=[
        {"type": "thinking", "thinking": "\n\n".join(streams.REASONING_PARTS), "signature": SIGNATURE},
        {"type": "text", "text": "Here are the files."},
    ], stop_reason="end_turn", usage=usage(5120, 4096, 312), model=MODEL)
    sent = check_upstream_request(stack.upstream_requests[0])
    assert sent["reasoning"] == {"effort": "high", "summary": "auto"}  # opus → gpt-5-codex(high) wins


async def test_parallel_function_calls_with_many_argument_deltas(stack: Any) -> None:
    calls = [
        ("Bash", "call_bash_01", json.dumps({"command": "ls -la /tmp && echo \"done\"", "description": "list tmp"})),
        ("Read", "call_read_02", json.dumps({"file_path": "/etc/hostname", "limit": 20})),
        ("Bash", "call_bash_03", json.dumps({"command": "printf 'é ü 漢字'", "timeout": 5000})),
    ]
    stack.fake.script(sse_reply(streams.parallel_calls_stream(calls, pieces=23), per_event=True))
    async with sdk(stack) as client:
        final = await stream_final(client, simple(tools=[cc.BASH_TOOL, cc.READ_TOOL]))
    check_message(final, content=[
        {"type": "thinking", "thinking": "Two things to check.", "signature": SIGNATURE},
        *({"type": "tool_use", "id": call_id, "name": name, "input": json.loads(args)} for name, call_id, args in calls),
    ], stop_reason="tool_use", usage=usage(900, 0, 120), model=MODEL)
    sent = check_upstream_request(stack.upstream_requests[0])
    assert [tool["name"] for tool in sent["tools"]] == ["Bash", "Read"]
    assert sent["parallel_tool_calls"] is True


async def test_tool_name_over_64_chars_is_shortened_and_restored(stack: Any) -> None:
    assert len(cc.LONG_MCP_TOOL) > 64

    def call_the_long_tool(recorded: RecordedRequest) -> Reply:
        short = upstream_name(recorded, cc.LONG_MCP_TOOL)
        calls = [(short, "call_mcp_1", json.dumps({"insightName": "LCP"}))]
        return sse_reply(streams.parallel_calls_stream(calls, pieces=4, with_reasoning=False), per_event=True)

    stack.fake.responder = call_the_long_tool
    async with sdk(stack) as client:
        final = await stream_final(client, simple(tools=[cc.MCP_TOOL, cc.BASH_TOOL]))
    check_message(final, content=[
        {"type": "tool_use", "id": "call_mcp_1", "name": cc.LONG_MCP_TOOL, "input": {"insightName": "LCP"}},
    ], stop_reason="tool_use", usage=usage(900, 0, 120), model=MODEL)
    sent = check_upstream_request(stack.upstream_requests[0])
    short = upstream_name(stack.upstream_requests[0], cc.LONG_MCP_TOOL)
    assert short != cc.LONG_MCP_TOOL and len(short) <= 64
    assert [tool["name"] for tool in sent["tools"]] == [short, "Bash"]


async def test_image_input(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.text_stream("A single pixel.")))
    content = [
        {"type": "text", "text": "what is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": cc.PNG_1PX}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]
    async with sdk(stack) as client:
        final = await stream_final(client, simple(content))
    check_message(final, content=[{"type": "text", "text": "A single pixel."}], stop_reason="end_turn",
                  usage=usage(1234, 1024, 56), model=MODEL)
    sent = check_upstream_request(stack.upstream_requests[0])
    assert sent["input"] == [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "what is in these?"},
        {"type": "input_image", "image_url": "data:image/png;base64," + cc.PNG_1PX},
        {"type": "input_image", "image_url": "https://example.com/cat.png"},
    ]}]


async def test_tool_results_with_is_error_and_images(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.text_stream("Both tools answered.")))
    body = cc.tool_turn(SIGNATURE)
    async with sdk(stack) as client:
        final = await stream_final(client, body)
    check_message(final, content=[{"type": "text", "text": "Both tools answered."}], stop_reason="end_turn",
                  usage=usage(1234, 1024, 56), model=MODEL)
    recorded = stack.upstream_requests[0]
    sent = check_upstream_request(recorded)
    short = upstream_name(recorded, cc.LONG_MCP_TOOL)
    assert sent["input"][3:] == [
        {"type": "reasoning", "summary": [], "encrypted_content": streams.ENC_FINAL},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "toolu_01A", "name": "Bash",
         "arguments": json.dumps({"command": "ls", "description": "list"}, separators=(",", ":"))},
        {"type": "function_call", "call_id": "toolu_01B", "name": short,
         "arguments": json.dumps({"insightName": "LCP"}, separators=(",", ":"))},
        {"type": "function_call_output", "call_id": "toolu_01A",
         "output": "[tool error]\nThis command requires approval"},
        {"type": "function_call_output", "call_id": "toolu_01B", "output": [
            {"type": "input_text", "text": "screenshot attached"},
            {"type": "input_image", "image_url": "data:image/png;base64," + cc.PNG_1PX},
        ]},
    ]


async def test_thinking_round_trip_replays_encrypted_reasoning(stack: Any) -> None:
    """Turn 1 returns reasoning; Claude Code echoes the thinking block; turn 2 must carry the
    reasoning item with the same (final) encrypted_content, in the same conversation."""
    stack.fake.script(sse_reply(streams.reasoning_text_stream(), per_event=True),
                      sse_reply(streams.text_stream("Continuing.")))
    headers = {"X-Claude-Code-Session-Id": cc.SESSION_ID}
    first = simple("list the files")
    async with sdk(stack) as client:
        turn1 = await stream_final(client, first, extra_headers=headers)
        assistant = [block.model_dump(exclude_none=True) for block in turn1.content]
        second = copy.deepcopy(first)
        second["messages"] += [{"role": "assistant", "content": assistant}, {"role": "user", "content": "go on"}]
        turn2 = await stream_final(client, second, extra_headers=headers)
    assert turn2.content[0].text == "Continuing."
    one, two = (check_upstream_request(r) for r in stack.upstream_requests)
    assert two["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": streams.ENC_FINAL},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Here are the files."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go on"}]},
    ]
    assert streams.ENC_STALE not in json.dumps(two)
    assert one["prompt_cache_key"] == two["prompt_cache_key"]
    first_headers, second_headers = (r.headers for r in stack.upstream_requests)
    for name in ("session-id", "thread-id", "x-client-request-id"):
        assert first_headers[name] == second_headers[name] == one["prompt_cache_key"]


async def test_response_incomplete_is_max_tokens(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.incomplete_stream(), per_event=True))
    async with sdk(stack) as client:
        final = await stream_final(client, simple())
    check_message(final, content=[{"type": "text", "text": "This answer will be cut sh"}], stop_reason="max_tokens",
                  usage=usage(300, 0, 128), model=MODEL)


# --------------------------------------------------------------------------- failures


async def test_response_failed_mid_stream_sends_error_with_block_open(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.failed_stream("server_error"), per_event=True, delay=0.02))
    response, events = await raw_stream(stack, simple())
    assert response.status_code == 200
    payloads = check_stream_grammar(events)
    kinds = [p["type"] for p in payloads]
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_delta", "error"]
    assert "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta") == "Partial answer that"
    error = payloads[-1]
    assert error["error"]["type"] == "api_error"
    assert error["error"]["message"].startswith("Packycode stream failed (server_error")
    assert error["request_id"] == response.headers["request-id"]

    stack.fake.script(sse_reply(streams.failed_stream("server_error"), per_event=True, delay=0.02))
    async with sdk(stack) as client:
        with pytest.raises(anthropic.APIStatusError) as raised:
            await stream_final(client, simple())
    assert raised.value.body["error"]["type"] == "api_error"


async def test_content_arriving_with_the_failure_is_delivered_before_the_error(stack: Any) -> None:
    """Text deltas and ``response.failed`` in one upstream read: the deltas still reach the
    client, then the error event (nothing that upstream sent is dropped)."""
    events = streams.failed_stream("server_error")
    first, rest = events[:5], events[5:]  # ... first delta | other deltas + response.failed
    stack.fake.script(Reply(chunks=(Chunk(encode_sse(first)), Chunk(encode_sse(rest), delay=0.05))))
    response, raw = await raw_stream(stack, simple())
    payloads = check_stream_grammar(raw)
    assert "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta") == "Partial answer that"
    assert payloads[-1]["type"] == "error"


@pytest.mark.parametrize(("events", "status", "error_type", "check"), [
    pytest.param(streams.failed_stream("rate_limit_exceeded", "Rate limit reached. Please try again in 2s.",
                                       after_text=False), 429, "rate_limit_error",
                 lambda e: e.response.headers["retry-after"] == "2", id="rate-limit"),
    pytest.param(streams.failed_stream("server_is_overloaded", "busy", after_text=False), 529, "overloaded_error",
                 lambda e: True, id="overloaded"),
    pytest.param(streams.nested_error_stream(), 429, "rate_limit_error",
                 lambda e: e.response.headers["x-should-retry"] == "false" and "quota" in e.message, id="quota"),
    pytest.param(streams.failed_stream("context_length_exceeded", "Your input exceeds the context window.",
                                       after_text=False), 400, "invalid_request_error",
                 lambda e: e.body["error"]["message"].startswith("prompt is too long"), id="context"),
])
async def test_response_failed_before_content_is_an_http_error(stack: Any, events: list[dict[str, Any]], status: int,
                                                               error_type: str, check: Any) -> None:
    """Failures that arrive before any content reached the client (right after
    ``response.created``) become a proper HTTP error that clients can act on (every attempt
    fails: packyd retries the transient ones itself first, see tests/test_faults.py)."""
    stack.fake.default = sse_reply(events, per_event=True, delay=0.01)
    async with sdk(stack) as client:
        with pytest.raises(anthropic.APIStatusError) as raised:
            await stream_final(client, simple())
    assert raised.value.status_code == status
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == error_type
    assert check(raised.value)


@pytest.mark.parametrize("end", ["cut", "reset", "finish"])
async def test_stream_cut_midway_ends_with_error_event(stack: Any, end: str) -> None:
    """A connection cut (truncated chunked body), a reset, or a clean EOF before the terminal
    event: the client gets an ``error`` event, never a silent close; the block stays open."""
    stack.fake.script(sse_reply(streams.cut_stream(), per_event=True, delay=0.02, end=end))
    response, events = await raw_stream(stack, simple())
    assert response.status_code == 200
    payloads = check_stream_grammar(events)
    assert [p["type"] for p in payloads][:2] == ["message_start", "content_block_start"]
    assert "content_block_stop" not in [p["type"] for p in payloads]
    assert payloads[-1]["type"] == "error"
    assert payloads[-1]["error"]["type"] == "api_error"
    assert "before the response was complete" in payloads[-1]["error"]["message"]


# --------------------------------------------------------------------------- chunking


def _bytewise(body: bytes) -> Reply:
    return Reply(chunks=tuple(Chunk(body[i:i + 1]) for i in range(len(body))))


@pytest.mark.parametrize(("events", "body", "content", "stop", "used"), [
    pytest.param(streams.text_stream("Split me at every byte: é漢字🙂.", pieces=5), simple(),
                 [{"type": "text", "text": "Split me at every byte: é漢字🙂."}], "end_turn", usage(1234, 1024, 56),
                 id="text"),
    pytest.param(streams.reasoning_text_stream(), simple(),
                 [{"type": "thinking", "thinking": "\n\n".join(streams.REASONING_PARTS), "signature": SIGNATURE},
                  {"type": "text", "text": "Here are the files."}], "end_turn", usage(5120, 4096, 312), id="reasoning"),
    pytest.param(streams.parallel_calls_stream(), simple(tools=[cc.BASH_TOOL, cc.READ_TOOL]),
                 [{"type": "thinking", "thinking": "Two things to check.", "signature": SIGNATURE},
                  *({"type": "tool_use", "id": c, "name": n, "input": json.loads(a)} for n, c, a in streams.PARALLEL_CALLS)],
                 "tool_use", usage(900, 0, 120), id="tools"),
])
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
async def test_stream_split_at_every_byte_boundary(stack: Any, events: list[dict[str, Any]], body: dict[str, Any],
                                                   content: list[dict[str, Any]], stop: str, used: dict[str, int],
                                                   crlf: bool) -> None:
    stack.fake.script(_bytewise(streams.to_sse(events, crlf=crlf)))
    async with sdk(stack) as client:
        final = await stream_final(client, body)
    check_message(final, content=content, stop_reason=stop, usage=used, model=MODEL)


async def raw_pieces(stack: Any, body: dict[str, Any]) -> list[bytes]:
    """The response body as the pieces packyd wrote (one HTTP chunk per send)."""
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers, timeout=30) as client:
        async with client.stream("POST", "/v1/messages", json={**body, "stream": True}) as response:
            return [piece async for piece in response.aiter_raw()]


async def test_writes_follow_upstream_reads(stack: Any) -> None:
    """All events translated from one upstream read go out in one send; an upstream that
    trickles one event at a time gets one send per event that produced output."""
    events = streams.text_stream("one two three four five six", pieces=6)
    stack.fake.script(sse_reply(events))  # the whole answer in one upstream write
    whole = await raw_pieces(stack, simple())
    assert len(whole) == 1
    in_one = check_stream_grammar(parse_sse(whole[0]))  # message_start … message_stop in that one piece

    stack.fake.script(sse_reply(events, per_event=True, delay=0.02))
    trickled = await raw_pieces(stack, simple())
    assert len(trickled) >= 8  # message_start, block start + each delta, block stop..., the end
    assert len(check_stream_grammar(parse_sse(b"".join(trickled)))) == len(in_one) == 11


# --------------------------------------------------------------------------- non-streaming


async def test_non_streaming_text_and_tools(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.reasoning_text_stream(), per_event=True),
                      sse_reply(streams.parallel_calls_stream(), per_event=True))
    async with sdk(stack) as client:
        text = await client.messages.create(**simple())
        tools = await client.messages.create(**simple(tools=[cc.BASH_TOOL, cc.READ_TOOL]))
    assert isinstance(text, anthropic.types.Message)
    check_message(text, content=[
        {"type": "thinking", "thinking": "\n\n".join(streams.REASONING_PARTS), "signature": SIGNATURE},
        {"type": "text", "text": "Here are the files."},
    ], stop_reason="end_turn", usage=usage(5120, 4096, 312), model=MODEL)
    check_message(tools, content=[
        {"type": "thinking", "thinking": "Two things to check.", "signature": SIGNATURE},
        *({"type": "tool_use", "id": c, "name": n, "input": json.loads(a)} for n, c, a in streams.PARALLEL_CALLS),
    ], stop_reason="tool_use", usage=usage(900, 0, 120), model=MODEL)
    for recorded in stack.upstream_requests:
        assert check_upstream_request(recorded)["stream"] is True  # upstream always streams


async def test_non_streaming_failure_mid_answer_is_an_http_error(stack: Any) -> None:
    """A non-streaming client never gets half an answer: a failure after content is an error."""
    stack.fake.script(sse_reply(streams.failed_stream("server_error"), per_event=True, delay=0.01))
    async with sdk(stack) as client:
        with pytest.raises(anthropic.InternalServerError) as raised:
            await client.messages.create(**simple())
    assert raised.value.body["error"]["type"] == "api_error"
