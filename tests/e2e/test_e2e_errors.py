"""What a Claude Code user sees when the upstream fails, through packyd (DESIGN §6).

Each case asserts on the CLI's own output (print mode: the ``result`` text, ``api_error_status``,
the exit code) and on the number of upstream attempts, so a swallowed message or a retry storm
shows up here. Claude Code's retry count is set per case (``CLAUDE_CODE_MAX_RETRIES``) to what
the case needs to show; packyd's own retries are off (``retries.max-attempts: 1``) so every
attempt seen upstream is Claude Code's.
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable

import pytest

from tests.e2e.harness import E2E, FALLBACK_KEY, ClaudeRun
from tests.fixtures.streams import parallel_calls_stream, text_stream
from tests.support.daemon import free_port
from tests.support.fake_anthropic import anthropic_text_reply
from tests.support.fake_packycode import error_reply, sse_reply, stall_reply

StartE2E = Callable[..., Awaitable[E2E]]

OVERFLOW_MESSAGE = "Your input exceeds the context window of this model. Please adjust your input and try again."
OVERFLOW = error_reply(400, OVERFLOW_MESSAGE, type="invalid_request_error", code="context_length_exceeded")
SUMMARY = "<analysis>Short.</analysis>\n<summary>The user ran echo hello and asked for more.</summary>"


def _failed(run: ClaudeRun, status: int) -> None:
    assert run.returncode == 1, run.describe()
    assert run.is_error is True
    assert run.result.get("api_error_status") == status, run.describe()


async def test_rate_limit_passes_retry_after(e2e: E2E) -> None:
    e2e.fake.default = error_reply(429, "Rate limit reached for requests. Please try again in 2s.", type="requests",
                                   code="rate_limit_exceeded", headers=[("retry-after", "2")])
    run = await e2e.claude("hi", env={"CLAUDE_CODE_MAX_RETRIES": "1"})
    _failed(run, 429)
    assert run.text.startswith("API Error: Request rejected (429) · Packycode rate limit reached (rate_limit_exceeded")
    # Claude Code honoured the retry-after packyd passed through (its own first pause is ~0.5 s)
    first, second = e2e.upstream_requests
    assert second.received_at - first.received_at >= 1.9


async def test_quota_exhausted_is_shown_once_with_its_reset(e2e: E2E) -> None:
    e2e.fake.default = error_reply(429, "The usage limit has been reached", type="usage_limit_reached",
                                   extra={"resets_in_seconds": 5400})
    run = await e2e.claude("hi", env={"CLAUDE_CODE_MAX_RETRIES": "3"})
    _failed(run, 429)
    assert run.text == ("API Error: Request rejected (429) · Packycode usage quota exhausted (usage_limit_reached); "
                        "resets in 1h 30m: The usage limit has been reached")
    assert len(e2e.upstream_requests) == 1, "a quota error must not be retried"


async def test_rejected_upstream_key_points_at_packyd_config(e2e: E2E) -> None:
    e2e.fake.default = error_reply(401, "Incorrect API key provided: sk-e2e-p***9a.", type="invalid_request_error",
                                   code="invalid_api_key")
    run = await e2e.claude("hi", env={"CLAUDE_CODE_MAX_RETRIES": "3"})
    _failed(run, 403)  # packyd's own key is not Claude Code's to fix: 403, which the CLI never retries
    assert run.text.startswith("Failed to authenticate. API Error: 403 Packycode rejected the key; "
                               "check packycode.credentials (source: config.yaml:")
    assert "sk-e2e" not in run.text
    assert len(e2e.upstream_requests) == 1, "a rejected key must not be retried"


async def test_context_overflow_on_a_single_exchange(e2e: E2E) -> None:
    """Claude Code recognises packyd's "prompt is too long: N tokens > M maximum" and reports it
    with packyd's numbers; one exchange has nothing to compact."""
    e2e.fake.default = OVERFLOW
    run = await e2e.claude("hi")
    _failed(run, 400)
    assert run.text.startswith("Prompt is too long · the request is ~"), run.text
    assert "(limit 272000)" in run.text and "cannot be compacted" in run.text
    assert len(e2e.upstream_requests) == 1


@pytest.mark.parametrize("shape", ["http-400", "response.failed"])
async def test_context_overflow_mid_task_compacts_and_continues(e2e: E2E, shape: str) -> None:
    """After a tool round, the next request overflows: Claude Code compacts (a summary request)
    and retries the turn on the summary, which then succeeds."""
    args = json.dumps({"command": "echo hello", "description": "Print hello"})
    if shape == "http-400":
        overflow = OVERFLOW
    else:  # a 200 stream that fails before any content, as relays often answer
        failed = {"type": "response.failed", "response": {"id": "resp_o", "status": "failed", "output": [],
                  "error": {"code": "context_length_exceeded", "message": OVERFLOW_MESSAGE}}}
        overflow = sse_reply([{"type": "response.created", "response": {"id": "resp_o", "status": "in_progress"}},
                              failed], per_event=True)
    e2e.fake.script(
        sse_reply(parallel_calls_stream([("Bash", "call_e2e_ovf", args)], pieces=3, with_reasoning=False),
                  per_event=True),
        overflow,
        sse_reply(text_stream(SUMMARY, pieces=3), per_event=True),           # the compaction request
        sse_reply(text_stream("Continued after compaction.", pieces=3), per_event=True),
    )
    run = await e2e.claude("run echo hello", args=("--allowedTools", "Bash"), stream_json=True)
    assert run.returncode == 0, run.describe() + e2e.log_tail()
    assert run.text == "Continued after compaction."
    [boundary] = run.of_type("system", "compact_boundary")
    assert boundary["compact_metadata"]["trigger"] == "auto"
    assert any(line.get("compact_result") == "success" for line in run.of_type("system", "status"))
    requests = e2e.upstream_json()
    assert len(requests) == 4
    compact_prompt = json.dumps(requests[2]["input"][-1])
    assert "Respond with TEXT ONLY" in compact_prompt
    # the turn is retried on the summary, not on the overflowing history
    assert "call_e2e_ovf" not in json.dumps(requests[3]["input"])
    assert "The user ran echo hello" in json.dumps(requests[3]["input"])


async def test_upstream_down_falls_back_to_the_next_provider(start_e2e: StartE2E) -> None:
    e2e = await start_e2e(fallback=True, upstream_url=f"http://127.0.0.1:{free_port()}/v1")
    assert e2e.fallback is not None
    e2e.fallback.default = anthropic_text_reply("Answered by the fallback provider.")
    run = await e2e.claude("hi")
    assert run.returncode == 0, run.describe() + e2e.log_tail()
    assert run.text == "Answered by the fallback provider."
    [request] = e2e.fallback.upstream_requests
    assert request.headers.get("x-api-key") == FALLBACK_KEY
    assert "provider=fallback-claude" in e2e.packyd.log()


async def test_upstream_down_without_fallback_says_so(start_e2e: StartE2E) -> None:
    e2e = await start_e2e(upstream_url=f"http://127.0.0.1:{free_port()}/v1")
    run = await e2e.claude("hi", env={"CLAUDE_CODE_MAX_RETRIES": "3"})
    assert run.returncode == 1 and run.is_error, run.describe()
    assert "Packycode is unreachable" in run.text, run.text


async def test_upstream_down_without_fallback_fails_fast(start_e2e: StartE2E) -> None:
    """An unreachable upstream with no fallback fails fast: packyd has already retried, so its
    answer carries x-should-retry: false and the CLI gives up after one attempt, naming packyd's
    address as the gateway."""
    e2e = await start_e2e(upstream_url=f"http://127.0.0.1:{free_port()}/v1")
    run = await e2e.claude("hi", env={"CLAUDE_CODE_MAX_RETRIES": "3"})
    assert run.returncode == 1 and run.is_error, run.describe()
    assert run.result.get("api_error_status") in (503, 529)
    assert e2e.url.removeprefix("http://") in run.text
    assert run.seconds < 30
    assert "outcome=error:" in e2e.packyd.log()


async def test_not_configured_message_is_visible(start_e2e: StartE2E) -> None:
    """packyd without a Packycode key answers 503 api_error + x-should-retry: false; the CLI shows
    packyd's message after a single attempt."""
    e2e = await start_e2e(packycode={"credentials": {"openai-api-key": None}})
    run = await e2e.claude("hi", env={"CLAUDE_CODE_MAX_RETRIES": "3"})
    _failed(run, 503)
    assert run.text.startswith("API Error: 503 packyd has no usable provider: no Packycode key"), run.text
    assert "packycode.credentials.openai-api-key" in run.text
    assert len([line for line in e2e.packyd.log().splitlines() if "event=request" in line]) == 1


async def test_broken_stream_recovers_without_streaming(e2e: E2E) -> None:
    answer = "This answer is cut in the middle of a sentence and then served whole."
    events = text_stream(answer, pieces=8)
    e2e.fake.script(sse_reply(events[:8], per_event=True, end="cut"),  # text started, then the connection drops
                    sse_reply(events, per_event=True))
    run = await e2e.claude("hi", stream_json=True)
    assert run.returncode == 0, run.describe() + e2e.log_tail()
    assert run.text == answer
    assert len(e2e.upstream_requests) == 2
    requests = [line for line in e2e.packyd.log().splitlines() if "event=request" in line]
    assert "stream=True" in requests[0] and "outcome=error:" in requests[0]
    assert "stream=False" in requests[1] and "outcome=ok" in requests[1]




async def test_upstream_silent_before_answering(start_e2e: StartE2E) -> None:
    """The upstream accepts the request and never answers: packyd gives up after
    ``timeouts.first-byte`` with 504 timeout_error and x-should-retry: false, which the CLI
    shows at once instead of waiting out the first-byte timeout again up to ten times."""
    e2e = await start_e2e(packycode={"timeouts": {"first-byte": "2s"}})
    e2e.fake.default = stall_reply(before_headers=True)
    run = await e2e.claude("hi", env={"CLAUDE_CODE_MAX_RETRIES": "3"})
    _failed(run, 504)
    assert run.text.startswith("API Error: 504 Packycode sent nothing within 2s (packycode.timeouts.first-byte)")
    assert len(e2e.upstream_requests) == 1
