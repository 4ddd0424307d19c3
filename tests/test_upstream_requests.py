"""What packyd sends to Packycode, and what it makes of Packycode's answers before streaming.

Identity profiles, auth, header overrides and session keys are checked on the request the
fake recorded; upstream HTTP errors, transport failures and timeouts are checked as the
client sees them (status, Anthropic error shape, retry headers), through real sockets.
"""

from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable

import anthropic
import httpx
import pytest
import trio

from packyd import __version__
from tests.fixtures import requests as cc
from tests.fixtures import streams
from tests.support.checks import check_upstream_request
from tests.support.fake_packycode import (
    Chunk,
    Reply,
    detail_reply,
    error_reply,
    sse_reply,
    stall_reply,
    text_error_reply,
)
from tests.support.inprocess import UPSTREAM_KEY, packyd_config, start_packyd

MODEL = "claude-opus-4-8"
StartStack = Callable[..., Awaitable[Any]]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 512, "messages": [{"role": "user", "content": "hi"}], "stream": True,
            **fields}


@pytest.fixture
async def one_attempt(start_stack: StartStack) -> Any:
    """A stack where packyd makes exactly one upstream attempt: these tests check how one
    answer is classified and delivered (retries and fallback are tested in test_faults.py)."""
    return await start_stack(packycode={"retries": {"max-attempts": 1}})


async def post(stack: Any, payload: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url, headers={**stack.client_headers, **(headers or {})},
                                 timeout=30) as client:
        return await client.post("/v1/messages", json=payload)


# --------------------------------------------------------------------------- identity


async def test_identity_codex_cli(start_stack: StartStack) -> None:
    stack = await start_stack(packycode={"identity": "codex-cli"})
    stack.fake.script(sse_reply(streams.text_stream("ok")))
    system = [{"type": "text", "text": "be brief"}]
    assert (await post(stack, body(system=system), {"x-claude-code-session-id": cc.SESSION_ID})).status_code == 200
    recorded = stack.upstream_requests[0]
    sent = check_upstream_request(recorded)
    key = sent["prompt_cache_key"]
    headers = recorded.headers
    assert headers["originator"] == "codex_exec"
    assert re.fullmatch(r"codex_exec/0\.169\.0 \([^)]+\) \S+ \(codex_exec; 0\.169\.0\)", headers["user-agent"])
    assert headers["session-id"] == headers["thread-id"] == headers["x-client-request-id"] == key
    assert headers["x-codex-window-id"] == key + ":0"
    for absent in ("openai-beta", "session_id", "conversation_id", "version"):
        assert absent not in headers
    assert "instructions" not in sent
    assert sent["input"][0] == {"type": "message", "role": "developer",
                                "content": [{"type": "input_text", "text": "be brief"}]}


async def test_identity_codex_legacy(start_stack: StartStack) -> None:
    stack = await start_stack(packycode={"identity": "codex-legacy"})
    stack.fake.script(sse_reply(streams.text_stream("ok")))
    system = [{"type": "text", "text": "be brief"}]
    assert (await post(stack, body(system=system), {"x-claude-code-session-id": cc.SESSION_ID})).status_code == 200
    recorded = stack.upstream_requests[0]
    sent = check_upstream_request(recorded)
    headers = recorded.headers
    assert headers["originator"] == "codex_cli_rs"
    assert re.fullmatch(r"codex_cli_rs/0\.58\.0 \([^)]+\) \S+", headers["user-agent"])
    assert headers["session_id"] == headers["conversation_id"] == sent["prompt_cache_key"]
    for absent in ("session-id", "thread-id", "openai-beta", "x-codex-window-id"):
        assert absent not in headers
    assert sent["instructions"] == "be brief"
    assert sent["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]


async def test_identity_plain(start_stack: StartStack) -> None:
    stack = await start_stack(packycode={"identity": "plain"})
    stack.fake.script(sse_reply(streams.text_stream("ok")))
    response = await post(stack, body())
    assert response.status_code == 200
    recorded = stack.upstream_requests[0]
    check_upstream_request(recorded)
    headers = recorded.headers
    assert headers["user-agent"] == f"packyd/{__version__}"
    assert headers["x-client-request-id"] == response.headers["request-id"]
    for absent in ("originator", "session-id", "thread-id", "session_id", "conversation_id", "openai-beta"):
        assert absent not in headers


async def test_header_overrides_and_auth_switch(start_stack: StartStack) -> None:
    stack = await start_stack(packycode={"headers": {"User-Agent": "my-agent/1.0", "X-Team": "blue"},
                                         "requires-openai-auth": False})
    stack.fake.script(sse_reply(streams.text_stream("ok")))
    assert (await post(stack, body())).status_code == 200
    headers = stack.upstream_requests[0].headers
    assert headers["user-agent"] == "my-agent/1.0"
    assert headers["x-team"] == "blue"
    assert headers["originator"] == "codex_exec"
    assert "authorization" not in headers  # requires-openai-auth: false sends no key


async def test_defaults_block_reaches_the_upstream_body(start_stack: StartStack) -> None:
    """``packycode.defaults`` and ``model-map`` as the translator sees them (via the provider)."""
    stack = await start_stack(packycode={
        "defaults": {"model": "gpt-5.1", "model-reasoning-effort": "low", "model-reasoning-summary": "detailed",
                     "model-verbosity": "high"},
        "model-map": {"claude-*opus*": "gpt-5.1-codex-max(xhigh)"},
    })
    stack.fake.default = sse_reply(streams.text_stream("ok"))
    await post(stack, body(model="claude-opus-4-8"))
    await post(stack, body(model="some-unknown-model"))
    mapped, fallback = (r.json for r in stack.upstream_requests)
    check_upstream_request(stack.upstream_requests[0], model="gpt-5.1-codex-max")
    assert mapped["reasoning"] == {"effort": "xhigh", "summary": "detailed"}
    assert mapped["text"] == {"verbosity": "high"}
    check_upstream_request(stack.upstream_requests[1], model="gpt-5.1")
    assert fallback["reasoning"] == {"effort": "low", "summary": "detailed"}


async def test_bearer_key_and_path_under_base_url(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.text_stream("ok")))
    assert (await post(stack, body())).status_code == 200
    recorded = stack.upstream_requests[0]
    assert recorded.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert recorded.path == "/v1/responses"


async def test_prompt_cache_key_is_stable_per_session(stack: Any) -> None:
    stack.fake.default = sse_reply(streams.text_stream("ok"))
    other_session = "7a1d6b1e-0c55-4d5f-8a57-1b9e3c2f4d60"
    user_id = json.dumps({"device_id": "ab" * 32, "account_uuid": "", "session_id": cc.SESSION_ID})
    await post(stack, body(), {"x-claude-code-session-id": cc.SESSION_ID})
    await post(stack, body(messages=[{"role": "user", "content": "another turn"}]),
               {"x-claude-code-session-id": cc.SESSION_ID})
    await post(stack, body(metadata={"user_id": user_id}))  # no header: the session id inside user_id
    await post(stack, body(), {"x-claude-code-session-id": other_session})
    keys = [check_upstream_request(r)["prompt_cache_key"] for r in stack.upstream_requests]
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] != keys[0]
    assert cc.SESSION_ID not in keys  # derived, not the raw client id


# --------------------------------------------------------------------------- upstream errors


@pytest.mark.parametrize(("reply", "status", "error_type", "check"), [
    pytest.param(error_reply(401, "Incorrect API key provided: sk-test-****", type="invalid_request_error",
                             code="invalid_api_key"), 403, "permission_error",
                 lambda r: "packycode.credentials" in r.json()["error"]["message"]
                 and r.headers["x-should-retry"] == "false", id="401"),
    pytest.param(error_reply(429, "Rate limit reached", type="rate_limit_exceeded", code="rate_limit_exceeded",
                             headers=[("retry-after", "7")]), 429, "rate_limit_error",
                 lambda r: r.headers["retry-after"] == "7", id="429-retry-after"),
    pytest.param(error_reply(429, "You have hit your usage limit", type="usage_limit_reached",
                             extra={"resets_in_seconds": 3600}), 429, "rate_limit_error",
                 lambda r: r.headers["x-should-retry"] == "false" and "resets in 1h" in r.json()["error"]["message"],
                 id="429-usage-limit"),
    pytest.param(detail_reply(400, "Unsupported parameter: max_output_tokens"), 400, "invalid_request_error",
                 lambda r: "400" in r.json()["error"]["message"], id="400-detail"),
    pytest.param(error_reply(404, "The model 'gpt-5-codex' does not exist", type="invalid_request_error",
                             code="model_not_found"), 400, "invalid_request_error",
                 lambda r: "gpt-5-codex" in r.json()["error"]["message"], id="404-model"),
    pytest.param(text_error_reply(502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
                 529, "overloaded_error", lambda r: "502" in r.json()["error"]["message"], id="502-html"),
    pytest.param(error_reply(500, "boom", type="server_error", code="server_error"), 500, "api_error",
                 lambda r: True, id="500"),
    pytest.param(text_error_reply(500, "x" * (1024 * 1024), content_type="text/plain"), 500, "api_error",
                 lambda r: len(r.content) < 2000, id="huge-body"),
])
async def test_upstream_http_errors_become_anthropic_errors(one_attempt: Any, reply: Reply, status: int,
                                                            error_type: str,
                                                            check: Callable[[httpx.Response], bool]) -> None:
    stack = one_attempt
    stack.fake.script(reply)
    response = await post(stack, body())
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == error_type
    assert payload["request_id"] == response.headers["request-id"]
    assert UPSTREAM_KEY not in response.text
    assert check(response)


async def test_upstream_error_reaches_the_sdk_as_its_typed_exception(one_attempt: Any) -> None:
    stack = one_attempt
    stack.fake.script(error_reply(429, "Rate limit reached", code="rate_limit_exceeded", headers=[("retry-after", "3")]))
    async with anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.client_key, max_retries=0) as client:
        with pytest.raises(anthropic.RateLimitError) as raised:
            await client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.response.headers["retry-after"] == "3"


async def test_unreachable_upstream(nursery: trio.Nursery) -> None:
    with trio.socket.socket() as probe:  # a port with nothing listening
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await start_packyd(nursery, packyd_config(f"http://127.0.0.1:{port}/v1",
                                                       packycode={"retries": {"max-attempts": 1}}))
    async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers) as client:
        response = await client.post("/v1/messages", json=body())
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    assert "unreachable" in response.json()["error"]["message"]


async def test_first_byte_timeout_closes_upstream_and_answers_504(start_stack: StartStack) -> None:
    stack = await start_stack(packycode={"timeouts": {"first-byte": "1s"}, "retries": {"max-attempts": 1}})
    stack.fake.script(stall_reply(before_headers=True))
    started = trio.current_time()
    response = await post(stack, body())
    elapsed = trio.current_time() - started
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout_error"
    assert "first-byte" in response.json()["error"]["message"]
    assert 0.9 < elapsed < 5
    await stack.fake.wait_for(lambda: stack.upstream_requests[0].disconnected_at is not None)


async def test_first_byte_timeout_counts_until_the_first_event(start_stack: StartStack) -> None:
    """Headers alone are not an answer: a 200 that then stays silent hits first-byte too."""
    stack = await start_stack(packycode={"timeouts": {"first-byte": "1s", "idle": "30s"},
                                         "retries": {"max-attempts": 1}})
    stack.fake.script(stall_reply())
    response = await post(stack, body())
    assert response.status_code == 504
    assert "first-byte" in response.json()["error"]["message"]


@pytest.mark.parametrize(("reply", "fragment"), [
    pytest.param(Reply(headers=(("content-type", "text/html"),), chunks=(Chunk(b"<html>welcome</html>"),)),
                 "base-url", id="web-page"),
    pytest.param(Reply(chunks=(Chunk(b"\x00\xff garbage \r\n\r\n{{{"),)), "before the response was complete",
                 id="garbage"),
    pytest.param(Reply(chunks=(Chunk(b"data: {not json}\n\n"),)), "malformed", id="bad-json"),
])
async def test_a_200_that_is_not_an_event_stream(one_attempt: Any, reply: Reply, fragment: str) -> None:
    stack = one_attempt
    stack.fake.script(reply)
    response = await post(stack, body())
    assert response.status_code >= 500
    assert response.json()["error"]["type"] == "api_error"
    assert fragment in response.json()["error"]["message"]


async def test_concurrency_is_bounded_by_max_upstream_streams(start_stack: StartStack) -> None:
    """With one upstream slot, a second request waits for the first to finish upstream."""
    stack = await start_stack(**{"max-upstream-streams": 1})
    stack.fake.script(sse_reply(streams.text_stream("slow", pieces=4), per_event=True, delay=0.1),
                      sse_reply(streams.text_stream("fast")))
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await post(stack, body())).status_code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        await stack.fake.wait_for(lambda: len(stack.upstream_requests) == 1)
        nursery.start_soon(one)
        await trio.sleep(0.3)
        assert len(stack.upstream_requests) == 1  # the second is queued in packyd
    assert statuses == [200, 200]
    first, second = stack.upstream_requests
    assert first.finished_at is not None and second.received_at >= first.finished_at


# --------------------------------------------------------------------------- privacy


async def test_logs_carry_metadata_only(one_attempt: Any, packyd_log: Any) -> None:
    """At debug level: no prompt or answer text, no upstream error text, no key; the request
    line names the upstream model."""
    stack = one_attempt
    secret_prompt, secret_answer = "CANARY-prompt-4d1c", "CANARY-answer-93be"
    stack.fake.script(sse_reply(streams.text_stream(secret_answer)),
                      error_reply(400, f"Invalid value: '{secret_prompt}'", type="invalid_request_error"),
                      sse_reply(streams.failed_stream("server_error", f"echo {secret_prompt}"), per_event=True,
                                delay=0.01))
    for _ in range(3):
        await post(stack, body(messages=[{"role": "user", "content": secret_prompt}]))
    lines = packyd_log.refresh()
    text = "\n".join(lines)
    assert "CANARY" not in text
    assert UPSTREAM_KEY not in text and UPSTREAM_KEY[-12:] not in text
    requests = [line for line in lines if "event=request " in line]
    assert len(requests) == 3
    assert all("upstream_model=gpt-5-codex" in line and "provider=packycode" in line for line in requests)
    assert "outcome=ok" in requests[0] and "input_tokens=210 output_tokens=56" in requests[0]
    assert "outcome=error:invalid_request_error" in requests[1]
