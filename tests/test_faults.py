"""The fault matrix (DESIGN §6): every upstream failure, before the first byte and mid-stream.

A real packyd on 127.0.0.1 talks to a fake Packycode that misbehaves on purpose; the client
is httpx (raw wire) or the official ``anthropic`` SDK. Each case asserts the status, the
Anthropic error type, the actionable part of the message, the retry headers, how many
upstream attempts packyd made (what it retried and what it did not), and that the client got
a complete HTTP error or a stream ending in a terminal event — within a hard time limit, so a
hang fails the test instead of stalling the suite.

Timeouts are shortened (connect 0.5 s, first byte 1 s, idle 1 s) and retries are 2 attempts
with at most 0.2 s of backoff, so the whole matrix runs in seconds; the policy is the same as
with the defaults.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import anthropic
import httpx
import pytest
import trio

from tests.fixtures import streams
from tests.support.checks import check_stream_grammar
from tests.support.fake_packycode import (
    Chunk,
    FakePackycode,
    Reply,
    detail_reply,
    encode_sse,
    error_reply,
    sse_reply,
    stall_reply,
    text_error_reply,
)
from tests.support.inprocess import packyd_config, parse_sse, start_packyd

MODEL = "claude-opus-4-8"
FAST = {
    "timeouts": {"connect": "0.5s", "first-byte": "1s", "idle": "1s"},
    "retries": {"max-attempts": 2, "max-backoff": "0.2s"},
}
#: a hang must fail the test, not the suite
LIMIT = 15

BODY = {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]}

HTML_502 = ("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
            "<hr><center>nginx</center></body></html>")


def head() -> list[dict[str, Any]]:
    """``response.created`` + ``in_progress``: the upstream accepted, nothing for the client yet."""
    return streams.text_stream()[:2]


def text_prefix() -> list[dict[str, Any]]:
    """Head plus a message item with two text deltas: content has reached the client."""
    events = streams.failed_stream("server_error")  # head, item added, part added, 3 deltas, failed
    return events[:-1]


def with_failure(prefix: list[dict[str, Any]], *tail: dict[str, Any], end: str = "finish") -> Reply:
    """``prefix`` in one write, then ``tail`` after a short pause (so the prefix reached the client)."""
    chunks = [Chunk(encode_sse(prefix))]
    if tail:
        chunks.append(Chunk(encode_sse(list(tail)), delay=0.05))
    return Reply(chunks=tuple(chunks), end=end)


def failed(code: str | None, message: str) -> dict[str, Any]:
    return {"type": "response.failed", "sequence_number": 99,
            "response": {"id": "resp_f", "object": "response", "status": "failed", "model": "gpt-5-codex",
                         "output": [], "usage": None, "error": {"code": code, "message": message}}}


FLAT_ERROR = {"type": "error", "sequence_number": 9, "code": "server_error",
              "message": "The server had an error while processing your request.", "param": None}
NESTED_QUOTA = {"type": "error", "sequence_number": 9,
                "error": {"type": "insufficient_quota", "code": "insufficient_quota",
                          "message": "You exceeded your current quota, please check your plan and billing details.",
                          "param": None}}


@dataclass
class Case:
    reply: Reply | None  # None: the case needs a special upstream (refused / never accepts)
    status: int
    error_type: str
    fragments: tuple[str, ...]
    attempts: int | None  # upstream requests packyd made; None: not observable at the fake
    headers: dict[str, str] = field(default_factory=dict)
    absent_headers: tuple[str, ...] = ()


# ------------------------------------------------------------------ before the first byte

BEFORE: dict[str, Case] = {
    "connection-refused": Case(None, 529, "overloaded_error",
                               ("Packycode is unreachable", "packycode.base-url"), None),
    "connect-timeout": Case(None, 529, "overloaded_error",
                            ("did not accept a connection within 0.5s", "packycode.timeouts.connect"), None),
    "401": Case(error_reply(401, "Incorrect API key provided: sk-test-***2d.", type="invalid_request_error",
                            code="invalid_api_key"),
                403, "permission_error", ("Packycode rejected the key", "packycode.credentials", "source: "),
                1, {"x-should-retry": "false"}),
    "403": Case(error_reply(403, "Forbidden", type="permission_error", code="forbidden"),
                403, "permission_error", ("Packycode rejected the key", "packycode.credentials"), 1),
    "404-model": Case(error_reply(404, "The model `gpt-5-codex` does not exist or you do not have access to it.",
                                  type="invalid_request_error", code="model_not_found"),
                      400, "invalid_request_error",
                      ("does not serve model 'gpt-5-codex'", "available: gpt-5", "packycode.model-map"), 1),
    "429-retry-after": Case(error_reply(429, "Rate limit reached for gpt-5-codex on requests per min.",
                                        type="requests", code="rate_limit_exceeded", headers=[("retry-after", "30")]),
                            429, "rate_limit_error", ("Packycode rate limit reached", "rate_limit_exceeded"), 1,
                            {"retry-after": "30"}, ("x-should-retry",)),
    "429-quota": Case(error_reply(429, "You exceeded your current quota, please check your plan and billing details.",
                                  type="insufficient_quota", code="insufficient_quota",
                                  extra={"resets_in_seconds": 5400}),
                      429, "rate_limit_error", ("quota", "insufficient_quota", "resets in 1h 30m"), 1,
                      {"x-should-retry": "false"}),
    "400-context": Case(error_reply(400, "Your input exceeds the context window of this model. Please adjust your "
                                         "input and try again.", type="invalid_request_error",
                                    code="context_length_exceeded"),
                        400, "invalid_request_error", ("prompt is too long",), 1),
    "400-detail": Case(detail_reply(400, "Unsupported parameter: max_output_tokens"),
                       400, "invalid_request_error", ("Packycode rejected the request with 400",
                                                      "Unsupported parameter"), 1),
    "500": Case(error_reply(500, "The server had an error while processing your request.", type="server_error",
                            code="server_error"),
                500, "api_error", ("Packycode server error 500", "server_error"), 2),
    "502-html": Case(text_error_reply(502, HTML_502), 529, "overloaded_error",
                     ("gateway answered 502 with an HTML page", "502 Bad Gateway"), 2),
    "503": Case(error_reply(503, "The engine is currently overloaded, please try again later.",
                            type="server_error", code="server_is_overloaded"),
                529, "overloaded_error", ("Packycode", "503"), 2),
    "response.failed": Case(sse_reply([*head(), failed("server_error", "Sorry, something went wrong.")]),
                            500, "api_error", ("Packycode stream failed", "server_error"), 2),
    "error-event-flat": Case(sse_reply([*head(), FLAT_ERROR]), 500, "api_error",
                             ("Packycode stream failed", "server_error"), 2),
    "error-event-nested-quota": Case(sse_reply([*head(), NESTED_QUOTA]), 429, "rate_limit_error",
                                     ("quota", "insufficient_quota"), 1, {"x-should-retry": "false"}),
    "response.failed-context": Case(sse_reply([*head(), failed("context_length_exceeded",
                                                               "Your input exceeds the context window.")]),
                                    400, "invalid_request_error", ("prompt is too long",), 1),
    "cut-before-content": Case(sse_reply(head(), end="cut"), 500, "api_error",
                               ("before the response was complete",), 2),
    "eof-before-content": Case(sse_reply(head()), 500, "api_error", ("before the response was complete",), 2),
    "stall-before-headers": Case(stall_reply(before_headers=True), 504, "timeout_error",
                                 ("sent nothing within 1s", "packycode.timeouts.first-byte"), 1),
    # after response.created the upstream is answering: the idle limit applies from there
    "stall-after-created": Case(stall_reply(events=head()), 504, "timeout_error",
                                ("accepted the request, then went silent for 1s", "packycode.timeouts.idle"), 1),
    # a web page under 200: a base-url pointing at the website, not the API; not transient
    "garbage-200": Case(Reply(headers=(("content-type", "text/html"),),
                              chunks=(Chunk(b"<html><body>Welcome to nginx!</body></html>\n"),)),
                        500, "api_error", ("web page instead of an event stream", "packycode.base-url"), 1,
                        {"x-should-retry": "false"}),
    "garbage-data": Case(Reply(chunks=(Chunk(b"data: {this is not json\n\n"),)),
                         500, "api_error", ("Packycode",), 2),
}


# ------------------------------------------------------------------ after the first byte

MID: dict[str, Case] = {
    "response.failed": Case(with_failure(text_prefix(), failed("server_error", "Sorry, something went wrong.")),
                            200, "api_error", ("Packycode stream failed", "server_error"), 1),
    "response.failed-rate-limit": Case(
        with_failure(text_prefix(), failed("rate_limit_exceeded", "Rate limit reached. Please try again in 7s.")),
        200, "rate_limit_error", ("Packycode rate limit reached",), 1),
    "response.failed-context": Case(
        with_failure(text_prefix(), failed("context_length_exceeded", "Your input exceeds the context window.")),
        200, "invalid_request_error", ("prompt is too long",), 1),
    "error-event-flat": Case(with_failure(text_prefix(), FLAT_ERROR), 200, "api_error",
                             ("Packycode stream failed",), 1),
    "error-event-nested-quota": Case(with_failure(text_prefix(), NESTED_QUOTA), 200, "rate_limit_error",
                                     ("quota", "insufficient_quota"), 1),
    "cut": Case(with_failure(text_prefix(), end="cut"), 200, "api_error",
                ("before the response was complete",), 1),
    "reset": Case(with_failure(text_prefix(), end="reset"), 200, "api_error",
                  ("before the response was complete",), 1),
    "eof": Case(with_failure(text_prefix()), 200, "api_error", ("before the response was complete",), 1),
    "stall-beyond-idle": Case(Reply(chunks=(Chunk(encode_sse(text_prefix())),), end="stall"),
                              200, "timeout_error", ("went silent for 1s mid-answer", "packycode.timeouts.idle"), 1),
    "garbage": Case(Reply(chunks=(Chunk(encode_sse(text_prefix())), Chunk(b"data: <html>oops</html>\n\n", 0.05))),
                    200, "api_error", ("Packycode",), 1),
}


# ------------------------------------------------------------------ upstreams that never answer


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: connections are refused


class NeverAccepts:
    """A listening socket whose accept queue is full: the kernel drops further SYNs, so a
    connect times out, as with a firewalled or wedged upstream (plain TCP: TLS is not needed
    to time out the connect)."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.port = self.server.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port))  # fills the backlog of 0 (+1)

    def close(self) -> None:
        self.filler.close()
        self.server.close()


@pytest.fixture
async def upstream(nursery: trio.Nursery):
    fake = FakePackycode()
    await nursery.start(fake.serve)
    return fake


async def start(nursery: trio.Nursery, url: str, **overrides: Any) -> Any:
    return await start_packyd(nursery, packyd_config(url, packycode=FAST, **overrides))


async def post(server: Any, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers, timeout=LIMIT) as client:
        with trio.fail_after(LIMIT):
            return await client.post("/v1/messages?beta=true", json=body)


def check_error_body(response: httpx.Response, case: Case) -> str:
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == case.error_type
    message = payload["error"]["message"]
    for fragment in case.fragments:
        assert fragment in message, (fragment, message)
    for name, value in case.headers.items():
        assert response.headers.get(name) == value, (name, response.headers.get(name))
    for name in case.absent_headers:
        assert name not in response.headers
    assert payload["request_id"] == response.headers["request-id"]
    assert "Traceback" not in response.text
    return message


async def serve_case(nursery: trio.Nursery, upstream: FakePackycode, name: str, case: Case) -> tuple[Any, Callable[[], None]]:
    """packyd pointed at the right upstream for ``case``; returns it and a cleanup."""
    if name == "connection-refused":
        return await start(nursery, f"http://127.0.0.1:{closed_port()}/v1"), lambda: None
    if name == "connect-timeout":
        never = NeverAccepts()
        return await start(nursery, f"http://127.0.0.1:{never.port}/v1"), never.close
    upstream.default = case.reply
    return await start(nursery, upstream.url), lambda: None


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("name", list(BEFORE))
async def test_before_first_byte_is_a_complete_http_error(nursery: trio.Nursery, upstream: FakePackycode,
                                                          name: str, stream: bool) -> None:
    case = BEFORE[name]
    server, cleanup = await serve_case(nursery, upstream, name, case)
    try:
        response = await post(server, {**BODY, "stream": stream})
    finally:
        cleanup()
    check_error_body(response, case)
    assert response.status_code != 404  # never: Claude Code reads any 404 as "the model is broken"
    if case.attempts is not None:
        assert len(upstream.upstream_requests) == case.attempts, [r.path for r in upstream.upstream_requests]


@pytest.mark.parametrize("name", list(MID))
async def test_mid_stream_failure_is_an_error_event_with_the_block_left_open(
        nursery: trio.Nursery, upstream: FakePackycode, name: str) -> None:
    case = MID[name]
    upstream.default = case.reply
    server = await start(nursery, upstream.url)
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == 200
    events = parse_sse(response.content)
    payloads = check_stream_grammar(events)
    kinds = [p["type"] for p in payloads]
    assert "content_block_delta" in kinds  # content reached the client before the failure
    assert "content_block_stop" not in kinds and "message_stop" not in kinds  # the block stays open
    error = payloads[-1]
    assert error["type"] == "error" and error["error"]["type"] == case.error_type
    for fragment in case.fragments:
        assert fragment in error["error"]["message"], (fragment, error)
    assert len(upstream.upstream_requests) == case.attempts  # never retried after the first byte


@pytest.mark.parametrize("name", ["response.failed", "cut", "stall-beyond-idle"])
async def test_mid_stream_failure_of_a_non_streaming_request_is_an_http_error(
        nursery: trio.Nursery, upstream: FakePackycode, name: str) -> None:
    """A non-streaming client has no stream to put an error event in: the failure after the
    first upstream content is still a complete HTTP error (what Claude Code's non-stream retry gets)."""
    case = MID[name]
    upstream.default = case.reply
    server = await start(nursery, upstream.url)
    response = await post(server, {**BODY, "stream": False})
    assert response.status_code == {"api_error": 500, "timeout_error": 504}[case.error_type], response.text
    assert response.json()["error"]["type"] == case.error_type


async def test_sdk_sees_typed_errors(nursery: trio.Nursery, upstream: FakePackycode) -> None:
    """The official SDK maps what packyd sends onto its own exception classes."""
    server = await start(nursery, upstream.url)
    expectations = [
        (BEFORE["429-quota"].reply, anthropic.RateLimitError),
        (BEFORE["400-context"].reply, anthropic.BadRequestError),
        (BEFORE["403"].reply, anthropic.PermissionDeniedError),
        (BEFORE["401"].reply, anthropic.PermissionDeniedError),
    ]
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key=server.client_key, max_retries=0) as client:
        for reply, exception in expectations:
            upstream.default = reply
            with trio.fail_after(LIMIT), pytest.raises(exception) as raised:
                await client.messages.create(**BODY)
            assert raised.value.body["error"]["message"]
        upstream.default = MID["cut"].reply
        with trio.fail_after(LIMIT), pytest.raises(anthropic.APIStatusError) as raised:
            async with client.messages.stream(**BODY) as stream:
                await stream.get_final_message()
        assert "before the response was complete" in str(raised.value)


async def test_context_overflow_wording_is_what_claude_code_compacts_on(nursery: trio.Nursery,
                                                                         upstream: FakePackycode) -> None:
    """claude-code.md §10.x (observed on 2.1.197): a 400 invalid_request_error whose message
    *starts* with "prompt is too long" is classified as context overflow and triggers
    compaction; a 413 with a generic message is not. packyd answers the former, with its token
    estimate and the model's window when it knows them."""
    upstream.default = BEFORE["400-context"].reply
    server = await start(nursery, upstream.url)
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("prompt is too long")
    assert response.json()["error"]["type"] == "invalid_request_error"


# ------------------------------------------------------------------ retries


RETRYING = {"timeouts": {"connect": "0.5s", "first-byte": "5s", "idle": "2s"},
            "retries": {"max-attempts": 3, "max-backoff": "1s"}}


async def test_transient_failures_are_retried_invisibly(nursery: trio.Nursery, upstream: FakePackycode) -> None:
    """503, then a stream that fails before content, then success: the client sees one clean
    answer; packyd made three attempts."""
    upstream.script(BEFORE["503"].reply, BEFORE["response.failed"].reply,
                    sse_reply(streams.text_stream("recovered"), per_event=True))
    server = await start_packyd(nursery, packyd_config(upstream.url, packycode=RETRYING))
    response = await post(server, {**BODY, "stream": True})
    payloads = check_stream_grammar(parse_sse(response.content))
    assert payloads[-1]["type"] == "message_stop"
    assert "".join(p["delta"].get("text", "") for p in payloads if p["type"] == "content_block_delta") == "recovered"
    assert len(upstream.upstream_requests) == 3
    text = server.services.extras["metrics"].render()
    assert 'packyd_retries_total{provider="packycode",reason="overloaded_error"} 1' in text
    assert 'packyd_retries_total{provider="packycode",reason="api_error"} 1' in text


async def test_rate_limit_with_short_retry_after_is_waited_out(nursery: trio.Nursery, upstream: FakePackycode) -> None:
    upstream.script(error_reply(429, "Rate limit reached", code="rate_limit_exceeded", headers=[("retry-after", "1")]),
                    sse_reply(streams.text_stream("after the limit")))
    server = await start_packyd(nursery, packyd_config(upstream.url, packycode=RETRYING))
    began = trio.current_time()
    response = await post(server, {**BODY, "stream": False})
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "after the limit"
    gap = upstream.upstream_requests[1].received_at - upstream.upstream_requests[0].received_at
    assert 0.95 <= gap < 2.0  # exactly the Retry-After, no extra backoff
    assert trio.current_time() - began < 3


async def test_quota_is_never_retried_and_says_when_it_resets(nursery: trio.Nursery, upstream: FakePackycode) -> None:
    upstream.default = error_reply(429, "You have reached your usage limit.", type="usage_limit_reached",
                                   extra={"resets_in_seconds": 1234})
    server = await start_packyd(nursery, packyd_config(upstream.url, packycode=RETRYING))
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == 429
    assert response.headers["x-should-retry"] == "false"
    assert "resets in 20m 34s" in response.json()["error"]["message"]
    assert len(upstream.upstream_requests) == 1


async def test_backoff_stays_within_the_first_byte_budget(nursery: trio.Nursery, upstream: FakePackycode) -> None:
    """Attempts that each take most of the budget are not retried past it: the client gets
    its answer (an error) when the first-byte budget is spent, not max-attempts times later."""
    upstream.default = Reply(chunks=(Chunk(b"", 0.0),), head_delay=0.8, status=500,
                             headers=(("content-type", "application/json"),))
    config = {"timeouts": {"first-byte": "1s", "idle": "1s"}, "retries": {"max-attempts": 10, "max-backoff": "0.5s"}}
    server = await start_packyd(nursery, packyd_config(upstream.url, packycode=config))
    began = trio.current_time()
    response = await post(server, {**BODY, "stream": True})
    assert response.status_code == 500
    assert trio.current_time() - began < 2.5
    assert len(upstream.upstream_requests) <= 2


async def test_no_retry_after_the_first_byte(nursery: trio.Nursery, upstream: FakePackycode) -> None:
    upstream.script(MID["cut"].reply, sse_reply(streams.text_stream("should not be used")))
    server = await start_packyd(nursery, packyd_config(upstream.url, packycode=RETRYING))
    response = await post(server, {**BODY, "stream": True})
    assert parse_sse(response.content)[-1][1]["type"] == "error"
    assert len(upstream.upstream_requests) == 1


def test_matrix_covers_the_acceptance_list() -> None:
    """The acceptance list of issue 5, each before the first byte and mid-stream where it applies."""
    before = {"connection-refused", "connect-timeout", "401", "403", "404-model", "429-retry-after", "429-quota",
              "400-context", "400-detail", "500", "502-html", "503", "response.failed", "error-event-flat",
              "error-event-nested-quota", "cut-before-content", "stall-before-headers", "garbage-200"}
    mid = {"response.failed", "error-event-flat", "error-event-nested-quota", "cut", "stall-beyond-idle", "garbage"}
    assert before <= BEFORE.keys() and mid <= MID.keys()


@pytest.mark.parametrize(("headers", "size"), [
    ({"x-api-key": "wrong-key"}, 8 * 1024 * 1024),  # refused before the body is read
    ({}, 33 * 1024 * 1024),                         # over max-body-size (32 MiB)
])
async def test_an_early_error_never_wedges_the_connection(nursery: trio.Nursery, upstream: FakePackycode,
                                                           headers: dict[str, str], size: int) -> None:
    """An error answered before a large body was read leaves the rest of the body in flight;
    packyd closes that connection, so the client's next request (on a fresh connection) is
    answered instead of waiting forever behind the unread bytes."""
    upstream.default = sse_reply(streams.text_stream("fine"))
    server = await start(nursery, upstream.url)
    big = b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"' + b"x" * size + b'"}]}'
    async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers, timeout=LIMIT) as client:
        with trio.fail_after(LIMIT):
            refused = await client.post("/v1/messages", content=big,
                                        headers={"content-type": "application/json", **headers})
            assert refused.status_code in (401, 413)
            assert refused.headers["connection"] == "close"
            answered = await client.post("/v1/messages", json=BODY)
    assert answered.status_code == 200
