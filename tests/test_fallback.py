"""Fallback (FR-006): Packycode failing → the same request served by a second provider.

Two real fake upstreams on 127.0.0.1: a fake Packycode (Responses API) and a fake
Anthropic-compatible relay (``tests/support/fake_anthropic.py``), with
``routing.fallback: [packycode, claude-relay]``. The client is the official ``anthropic`` SDK
or httpx; it must see one clean answer, from the provider named in ``x-packyd-provider``.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest
import trio

from tests.fixtures import streams
from tests.support.checks import check_stream_grammar
from tests.support.fake_anthropic import (
    FakeAnthropic,
    anthropic_error_reply,
    anthropic_events,
    anthropic_sse,
    anthropic_text_reply,
)
from tests.support.fake_packycode import Chunk, FakePackycode, Reply, error_reply, sse_reply
from tests.support.inprocess import packyd_config, parse_sse, start_packyd

RELAY_KEY = "sk-ant-relay-test-7d41c09b"
MODEL = "claude-opus-4-8"
BODY = {"model": MODEL, "max_tokens": 256, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}],
        "temperature": 0.2, "top_k": 5}
FAST = {"timeouts": {"connect": "0.5s", "first-byte": "2s", "idle": "2s"},
        "retries": {"max-attempts": 2, "max-backoff": "0.1s"}}
LIMIT = 15


@pytest.fixture
async def packy(nursery: trio.Nursery) -> FakePackycode:
    fake = FakePackycode()
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
async def relay(nursery: trio.Nursery) -> FakeAnthropic:
    fake = FakeAnthropic()
    await nursery.start(fake.serve)
    return fake


def two_providers(packy_url: str, relay_url: str, **overrides: Any) -> dict[str, Any]:
    relay_entry = {"name": "claude-relay", "type": "anthropic", "base-url": relay_url, "api-key": RELAY_KEY,
                   "timeouts": {"connect": "0.5s", "first-byte": "2s", "idle": "2s"}}
    config = packyd_config(packy_url, packycode=FAST, providers=[relay_entry],
                           routing={"fallback": ["packycode", "claude-relay"]})
    config.update(overrides)
    return config


async def start(nursery: trio.Nursery, packy: FakePackycode, relay: FakeAnthropic, **overrides: Any) -> Any:
    return await start_packyd(nursery, two_providers(packy.url, relay.url, **overrides))


async def post(server: Any, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers={**server.client_headers, **headers},
                                 timeout=LIMIT) as client:
        with trio.fail_after(LIMIT):
            return await client.post("/v1/messages?beta=true", json=body)


@pytest.mark.parametrize("failure", [
    pytest.param(error_reply(503, "overloaded", code="server_is_overloaded"), id="503"),
    pytest.param(error_reply(429, "You exceeded your current quota.", type="insufficient_quota",
                             code="insufficient_quota"), id="quota"),
    pytest.param(error_reply(401, "bad key", code="invalid_api_key"), id="401"),
    pytest.param(sse_reply([*streams.text_stream()[:2],
                            {"type": "response.failed", "response": {"status": "failed",
                                                                     "error": {"code": "server_error",
                                                                               "message": "boom"}}}]),
                 id="failed-before-content"),
])
async def test_packycode_failing_is_served_by_the_fallback(nursery: trio.Nursery, packy: FakePackycode,
                                                           relay: FakeAnthropic, packyd_log: Any,
                                                           failure: Reply) -> None:
    packy.default = failure
    relay.default = anthropic_text_reply("Served by the relay.", model=MODEL)
    server = await start(nursery, packy, relay)
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key=server.client_key, max_retries=0) as client:
        with trio.fail_after(LIMIT):
            known = {key: BODY[key] for key in ("model", "max_tokens", "system", "messages")}
            extra = {key: value for key, value in BODY.items() if key not in known}
            async with client.messages.stream(**known, extra_body=extra) as stream:
                final = await stream.get_final_message()
                served_by = stream.response.headers["x-packyd-provider"]
                client_version = stream.response.request.headers["anthropic-version"]
    assert [block.text for block in final.content] == ["Served by the relay."]
    assert final.model == MODEL and final.stop_reason == "end_turn"
    assert served_by == "claude-relay"
    # the relay got the client's request as it was sent (passthrough), with the relay's own key
    forwarded = relay.upstream_requests[0]
    assert forwarded.headers["x-api-key"] == RELAY_KEY
    assert forwarded.headers["anthropic-version"] == client_version  # the client's API version, passed on
    assert "authorization" not in forwarded.headers  # the client's and Packycode's credentials stay home
    body = forwarded.json
    assert body.pop("stream") is True
    assert body == BODY
    audit = [line for line in packyd_log.refresh() if "action=fallback_used" in line]
    assert len(audit) == 1 and "served_by=claude-relay" in audit[0] and "failed=packycode" in audit[0]
    request_line = next(line for line in packyd_log if "event=request " in line)
    assert "provider=claude-relay" in request_line


async def test_non_streaming_request_is_aggregated_from_the_relay_stream(nursery: trio.Nursery, packy: FakePackycode,
                                                                         relay: FakeAnthropic) -> None:
    packy.default = error_reply(500, "down", code="server_error")
    relay.default = anthropic_text_reply("Aggregated answer.", model=MODEL, input_tokens=40, output_tokens=7)
    server = await start(nursery, packy, relay)
    response = await post(server, {**BODY, "stream": False})
    assert response.status_code == 200, response.text
    assert response.headers["x-packyd-provider"] == "claude-relay"
    message = response.json()
    assert message["content"] == [{"type": "text", "text": "Aggregated answer."}]
    assert message["usage"]["input_tokens"] == 40 and message["usage"]["output_tokens"] == 7
    assert relay.upstream_requests[0].json["stream"] is True  # always streamed upstream


async def test_unreachable_packycode_falls_back(nursery: trio.Nursery, relay: FakeAnthropic) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    relay.default = anthropic_text_reply("relay here", model=MODEL)
    server = await start_packyd(nursery, two_providers(f"http://127.0.0.1:{port}/v1", relay.url))
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == 200
    assert response.headers["x-packyd-provider"] == "claude-relay"
    assert check_stream_grammar(parse_sse(response.content))[-1]["type"] == "message_stop"


async def test_request_errors_do_not_fall_back(nursery: trio.Nursery, packy: FakePackycode,
                                               relay: FakeAnthropic) -> None:
    """A context overflow is about the request: the client must see Packycode's 400 (Claude
    Code compacts on it), not an answer from another model."""
    packy.default = error_reply(400, "Your input exceeds the context window of this model.",
                                code="context_length_exceeded")
    relay.default = anthropic_text_reply("should not be used", model=MODEL)
    server = await start(nursery, packy, relay)
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("prompt is too long")
    assert relay.upstream_requests == []


async def test_everything_failing_reports_the_primary_error(nursery: trio.Nursery, packy: FakePackycode,
                                                            relay: FakeAnthropic) -> None:
    packy.default = error_reply(429, "You exceeded your current quota.", type="insufficient_quota",
                                code="insufficient_quota")
    relay.default = anthropic_error_reply(529, "overloaded_error", "Overloaded")
    server = await start(nursery, packy, relay)
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == 429
    assert response.headers["x-should-retry"] == "false"
    assert "quota" in response.json()["error"]["message"]
    assert len(relay.upstream_requests) == 2  # the relay was tried, and retried (529 is transient)


async def test_relay_overload_before_content_is_retried_then_served(nursery: trio.Nursery, packy: FakePackycode,
                                                                    relay: FakeAnthropic) -> None:
    """``message_start`` then ``error: overloaded_error`` (a busy Claude endpoint under 200):
    the first batch is held back, so the relay is retried and the client sees one clean answer."""
    packy.default = error_reply(503, "down", code="server_is_overloaded")
    overloaded = anthropic_events("x", model=MODEL)[:1] + [
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
    relay.script(anthropic_text_reply("", events=overloaded), anthropic_text_reply("second time lucky", model=MODEL))
    server = await start(nursery, packy, relay)
    response = await post(server, {**BODY, "stream": True})
    payloads = check_stream_grammar(parse_sse(response.content))
    assert [p["type"] for p in payloads].count("message_start") == 1
    assert payloads[-1]["type"] == "message_stop"
    assert len(relay.upstream_requests) == 2


@pytest.mark.parametrize(("reply", "status", "error_type", "fragment"), [
    (anthropic_error_reply(401, "authentication_error", "invalid x-api-key"), 403, "permission_error",
     "providers[claude-relay].api-key"),
    (anthropic_error_reply(404, "not_found_error", "model: claude-nope"), 400, "invalid_request_error",
     "does not know the requested model"),
    (anthropic_error_reply(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
     400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
    (anthropic_error_reply(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute limit",
                           headers=[("retry-after", "40")]), 429, "rate_limit_error", "claude-relay rate limit"),
    (anthropic_error_reply(529, "overloaded_error", "Overloaded"), 529, "overloaded_error", "claude-relay is overloaded"),
])
async def test_relay_errors_are_mapped(nursery: trio.Nursery, relay: FakeAnthropic, reply: Reply, status: int,
                                       error_type: str, fragment: str) -> None:
    """The relay as the only provider: its errors keep Anthropic's types, name the relay and
    its setting, never become a 404, and ``retry-after`` is passed on."""
    relay.default = reply
    config = packyd_config("http://127.0.0.1:9/v1", packycode={"enabled": False, **FAST},
                           providers=[{"name": "claude-relay", "type": "anthropic", "base-url": relay.url,
                                       "api-key": RELAY_KEY}],
                           routing={"fallback": ["claude-relay"]})
    server = await start_packyd(nursery, config)
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == error_type
    assert fragment in response.json()["error"]["message"]
    if status == 429:
        assert response.headers["retry-after"] == "40"


async def test_relay_failure_mid_stream_is_an_error_event(nursery: trio.Nursery, relay: FakeAnthropic) -> None:
    events = anthropic_events("partial answer", model=MODEL)
    relay.default = Reply(chunks=(Chunk(anthropic_sse(events[:4])),
                                  Chunk(anthropic_sse([{"type": "error", "error": {"type": "overloaded_error",
                                                                                   "message": "Overloaded"}}]),
                                        delay=0.05)))
    config = packyd_config("http://127.0.0.1:9/v1", packycode={"enabled": False},
                           providers=[{"name": "claude-relay", "type": "anthropic", "base-url": relay.url,
                                       "api-key": RELAY_KEY}],
                           routing={"fallback": ["claude-relay"]})
    server = await start_packyd(nursery, config)
    response = await post(server, {**BODY, "stream": True})
    payloads = check_stream_grammar(parse_sse(response.content))
    assert payloads[-1]["type"] == "error" and payloads[-1]["error"]["type"] == "overloaded_error"
    assert "content_block_stop" not in [p["type"] for p in payloads]
    assert len(relay.upstream_requests) == 1


async def test_open_circuit_routes_around_packycode_and_probe_closes_it(nursery: trio.Nursery, packy: FakePackycode,
                                                                       relay: FakeAnthropic, packyd_log: Any) -> None:
    """Real time, small numbers: 2 failures open the circuit; while it is open Packycode gets
    no traffic; after the 1 s cooldown one probe goes to Packycode and its success closes it."""
    packy.default = error_reply(500, "down", code="server_error")
    relay.default = anthropic_text_reply("relay", model=MODEL)
    server = await start(nursery, packy, relay, routing={"fallback": ["packycode", "claude-relay"],
                                                         "circuit-breaker": {"failures": 2, "window": "30s",
                                                                             "cooldown": "1s"}})
    response = await post(server, {**BODY, "stream": False})  # 2 attempts, 2 failures: circuit opens
    assert response.headers["x-packyd-provider"] == "claude-relay"
    assert len(packy.upstream_requests) == 2
    for _ in range(3):
        response = await post(server, {**BODY, "stream": False})
        assert response.headers["x-packyd-provider"] == "claude-relay"
    assert len(packy.upstream_requests) == 2  # skipped while open
    status = await get_json(server, "/v0/status")
    circuit = next(p for p in status["providers"] if p["name"] == "packycode")["circuit"]
    assert circuit["state"] == "open"
    await trio.sleep(1.05)
    packy.default = sse_reply(streams.text_stream("packycode is back"))
    response = await post(server, {**BODY, "stream": False})
    assert response.headers["x-packyd-provider"] == "packycode"
    assert response.json()["content"][0]["text"] == "packycode is back"
    status = await get_json(server, "/v0/status")
    assert next(p for p in status["providers"] if p["name"] == "packycode")["circuit"]["state"] == "closed"
    log = "\n".join(packyd_log.refresh())
    assert "action=circuit_opened provider=packycode" in log
    assert "action=circuit_closed provider=packycode" in log
    metrics = server.services.extras["metrics"].render()
    assert 'packyd_circuit_openings_total{provider="packycode"} 1' in metrics
    assert 'packyd_fallbacks_total{from="packycode",to="claude-relay"} 4' in metrics


async def test_open_circuit_with_no_fallback_answers_503_with_retry_after(nursery: trio.Nursery,
                                                                          packy: FakePackycode) -> None:
    packy.default = error_reply(500, "down", code="server_error")
    config = packyd_config(packy.url, packycode=FAST, routing={"circuit-breaker": {"failures": 2, "cooldown": "30s"}})
    server = await start_packyd(nursery, config)
    failed = await post(server, {**BODY, "stream": True})
    assert failed.status_code == 500
    assert failed.headers["x-should-retry"] == "false"  # packyd retried already: show it, don't retry
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == 503
    assert "x-should-retry" not in response.headers  # Claude Code waits retry-after, then a probe goes
    assert response.json()["error"]["type"] == "api_error"
    message = response.json()["error"]["message"]
    assert "circuit open" in message and "routing.circuit-breaker" in message
    assert "Last failure: Packycode server error 500" in message  # still says why
    assert 25 <= int(response.headers["retry-after"]) <= 30
    assert len(packy.upstream_requests) == 2


async def get_json(server: Any, path: str) -> Any:
    async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers, timeout=LIMIT) as client:
        response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("ending", "error_type", "fragment"), [
    ("cut", "api_error", "broke the connection mid-answer"),
    ("reset", "api_error", "broke the connection mid-answer"),
    ("finish", "api_error", "closed the stream before the answer was complete"),
    ("stall", "timeout_error", "went silent for 1s mid-answer (providers[claude-relay].timeouts.idle)"),
    ("garbage", "api_error", "not an Anthropic event stream"),
])
async def test_relay_stream_breaking_mid_answer(nursery: trio.Nursery, relay: FakeAnthropic, ending: str,
                                                error_type: str, fragment: str) -> None:
    """The passthrough keeps the guarantees of the Packycode path: a stream that breaks after
    content always ends with a typed ``error`` event, never a silent close or a hang."""
    events = anthropic_events("partial answer", model=MODEL)[:4]
    chunks = [Chunk(anthropic_sse(events))]
    if ending == "garbage":
        chunks.append(Chunk(b"data: <html>502</html>\n\n", 0.05))
    relay.default = Reply(chunks=tuple(chunks), end="finish" if ending == "garbage" else ending)
    config = packyd_config("http://127.0.0.1:9/v1", packycode={"enabled": False},
                           providers=[{"name": "claude-relay", "type": "anthropic", "base-url": relay.url,
                                       "api-key": RELAY_KEY, "timeouts": {"idle": "1s"}}],
                           routing={"fallback": ["claude-relay"]})
    server = await start_packyd(nursery, config)
    response = await post(server, {**BODY, "stream": True})
    payloads = check_stream_grammar(parse_sse(response.content))
    assert "content_block_delta" in [p["type"] for p in payloads]
    assert payloads[-1]["type"] == "error" and payloads[-1]["error"]["type"] == error_type
    assert fragment in payloads[-1]["error"]["message"]
