"""Client mistakes on ``/v1/messages`` and ``count_tokens`` over HTTP.

Every bad input gets an Anthropic-shaped 4xx that names the problem, never quotes the
content, and never reaches Packycode.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import anthropic
import httpx
import pytest
import trio

from packyd.tokens import count_request_tokens, estimate_request_tokens
from packyd.translate.messages import parse_messages_request
from tests.fixtures import requests as cc
from tests.fixtures import streams
from tests.support.fake_packycode import sse_reply
from tests.support.inprocess import packyd_config, parse_sse, start_packyd

SECRET = "CANARY-7f3e-prompt-text"


async def post(stack: Any, path: str, content: bytes | None = None, json: Any = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url, headers={**stack.client_headers, **(headers or {})},
                                 timeout=30) as client:
        return await client.post(path, content=content, json=json,
                                 headers={"content-type": "application/json"} if content is not None else None)


def assert_error(response: httpx.Response, status: int, error_type: str, *fragments: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == error_type
    message = payload["error"]["message"]
    for fragment in fragments:
        assert fragment in message, message
    assert SECRET not in response.text
    return message


@pytest.mark.parametrize(("content", "fragments"), [
    pytest.param(b'{"model": "' + SECRET.encode() + b'", "messages": [', ("not valid JSON", "line 1"), id="truncated"),
    pytest.param(b"", ("empty",), id="empty"),
    pytest.param(b'["' + SECRET.encode() + b'"]', ("JSON object",), id="array"),
    pytest.param(b"\xff\xfe" + SECRET.encode(), ("UTF-8",), id="not-utf8"),
])
async def test_malformed_bodies(stack: Any, content: bytes, fragments: tuple[str, ...]) -> None:
    response = await post(stack, "/v1/messages", content=content)
    assert_error(response, 400, "invalid_request_error", *fragments)
    assert stack.upstream_requests == []


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"max_tokens": 10, "messages": []}, "model", id="no-model"),
    pytest.param({"model": "claude-opus-4-8", "messages": []}, "max_tokens", id="no-max-tokens"),
    pytest.param({"model": "claude-opus-4-8", "max_tokens": "ten", "messages": []}, "max_tokens", id="max-tokens-type"),
    pytest.param({"model": "claude-opus-4-8", "max_tokens": 10, "messages": {"role": "user"}}, "messages",
                 id="messages-type"),
    pytest.param({"model": "claude-opus-4-8", "max_tokens": 10,
                  "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
                 "messages.0.content.0.text", id="block-field-type"),
    pytest.param({"model": "claude-opus-4-8", "max_tokens": 10, "stream": "yes",
                  "messages": [{"role": "user", "content": SECRET}]}, "stream", id="stream-type"),
    pytest.param({"model": "claude-opus-4-8", "max_tokens": 10, "messages": [{"role": "user", "content": SECRET}],
                  "tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}, "tools.0.type", id="server-tool"),
])
async def test_wrong_types_name_the_field(stack: Any, body: dict[str, Any], field: str) -> None:
    response = await post(stack, "/v1/messages", json=body)
    message = assert_error(response, 400, "invalid_request_error", field)
    assert message.startswith(field) or f" {field}" in message or f"{field}:" in message
    assert stack.upstream_requests == []


async def test_sdk_sees_bad_request_error(stack: Any) -> None:
    async with anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.client_key, max_retries=0) as client:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await client.messages.create(model="claude-opus-4-8", max_tokens=10,
                                         messages=[{"role": "user", "content": [{"type": "text"}]}])
    assert "messages.0.content.0" in raised.value.message


async def test_body_over_the_limit_is_413_and_not_sent(start_stack: Callable[..., Awaitable[Any]]) -> None:
    stack = await start_stack(**{"max-body-size": "1MiB"})
    body = {"model": "claude-opus-4-8", "max_tokens": 10, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    response = await post(stack, "/v1/messages", json=body)
    assert_error(response, 413, "request_too_large", "1 MiB", "max-body-size")  # names the limit and the setting
    assert stack.upstream_requests == []
    response = await post(stack, "/v1/messages/count_tokens", json=body)
    assert response.status_code == 413


async def test_missing_client_key_is_401(stack: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        response = await client.post("/v1/messages", json={"model": "m", "max_tokens": 1, "messages": []})
    assert_error(response, 401, "authentication_error", "api-keys")


async def test_no_usable_provider_is_503_without_retry(nursery: trio.Nursery, fake_packycode: Any) -> None:
    config = packyd_config(fake_packycode.url)
    config["packycode"]["credentials"] = {}
    server = await start_packyd(nursery, config)
    async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers) as client:
        response = await client.post("/v1/messages", json={"model": "claude-opus-4-8", "max_tokens": 10,
                                                           "messages": [{"role": "user", "content": "hi"}]})
    assert_error(response, 503, "api_error", "Packycode key")
    assert response.headers["x-should-retry"] == "false"
    assert fake_packycode.requests == []


async def test_count_tokens_over_http_and_the_stream_estimate(stack: Any) -> None:
    """count_tokens is answered locally with the o200k vocabulary; message_start carries the
    cheaper ~4-bytes-per-token estimate of the same parts, which stays close to it."""
    body = cc.first_turn()
    body.pop("stream")
    response = await post(stack, "/v1/messages/count_tokens", json={k: v for k, v in body.items() if k != "max_tokens"})
    assert response.status_code == 200
    counted = response.json()
    assert counted == {"input_tokens": count_request_tokens(parse_messages_request(body))}
    assert counted["input_tokens"] > 100
    assert stack.upstream_requests == []  # no upstream call for counting

    stack.fake.script(sse_reply(streams.text_stream("ok")))
    streamed = await post(stack, "/v1/messages", json={**body, "stream": True})
    message_start = parse_sse(streamed.content)[0][1]
    estimate = message_start["message"]["usage"]["input_tokens"]
    assert estimate == estimate_request_tokens(parse_messages_request(body))
    assert 0.75 < estimate / counted["input_tokens"] < 1.35, (estimate, counted)


async def test_count_tokens_bad_input(stack: Any) -> None:
    response = await post(stack, "/v1/messages/count_tokens", json={"model": "claude-opus-4-8", "messages": "hi"})
    assert_error(response, 400, "invalid_request_error", "messages")
