"""Claude Code's plainest paths through packyd: a text answer, and nothing leaving loopback."""

from __future__ import annotations

from tests.fixtures.streams import text_stream
from tests.support.fake_packycode import sse_reply

from tests.e2e.harness import E2E


async def test_text_answer_arrives_intact(e2e: E2E) -> None:
    answer = "Hello from Packycode — ünïcödé, 汉字, emoji 🚀, and a `code span`.\nSecond line."
    e2e.fake.script(sse_reply(text_stream(answer, pieces=9), per_event=True))
    run = await e2e.claude("say hi")
    assert run.returncode == 0, run.describe() + e2e.log_tail()
    assert run.text == answer
    assert run.is_error is False
    [upstream] = e2e.upstream_json()
    assert upstream["stream"] is True and upstream["store"] is False


async def test_outside_traffic_would_be_caught(e2e: E2E) -> None:
    """The no-outside-traffic check is real: with nonessential traffic allowed, this Claude Code
    reaches for api.anthropic.com, and the trap proxy records (and refuses) it. Every other test
    runs with CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 and its teardown asserts the trap saw nothing."""
    e2e.fake.script(sse_reply(text_stream("still answered", pieces=2), per_event=True))
    run = await e2e.claude("say hi", env={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": ""})
    assert run.returncode == 0, run.describe() + e2e.log_tail()
    assert run.text == "still answered"
    assert e2e.trap.attempts, "expected Claude Code to try the outside world without the variable"
    assert all(line.startswith("CONNECT ") and "127.0.0.1" not in line for line in e2e.trap.attempts), e2e.trap.attempts
    e2e.trap.attempts.clear()  # proven; don't fail the teardown check
