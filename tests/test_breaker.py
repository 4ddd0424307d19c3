"""Circuit breaker transitions, driven by trio's own fake clock (``autojump_clock``).

closed → open after N counted failures inside the window; open → half-open after the
cooldown with exactly one probe; probe success → closed, probe failure → open again; and the
single-key rules: 429s and client errors never count.
"""

from __future__ import annotations

import io

import pytest
import trio

from packyd import logs
from packyd.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerBoard,
    BreakerSettings,
    CircuitBreaker,
    counts_as_failure,
)
from packyd.errors import (
    ApiError,
    AuthenticationFailed,
    InvalidRequest,
    Overloaded,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamTimeout,
)


@pytest.fixture
def audit_lines():
    stream = io.StringIO()
    logs.configure("info", stream=stream, timestamps=False)
    yield stream
    logs.configure("info", stream=__import__("sys").stderr)


def make(failures: int = 3, window: float = 60.0, cooldown: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker("packycode", BreakerSettings(failures, window, cooldown))


async def test_opens_after_threshold_within_window(autojump_clock, audit_lines):
    breaker = make(failures=3, window=60)
    breaker.failure("api_error")
    await trio.sleep(10)
    breaker.failure("api_error")
    assert breaker.state == CLOSED and breaker.allow()
    await trio.sleep(10)
    breaker.failure("overloaded_error")
    assert breaker.state == OPEN
    assert not breaker.allow()
    assert breaker.openings == 1
    assert "action=circuit_opened provider=packycode reason=overloaded_error failures=3" in audit_lines.getvalue()


async def test_failures_outside_window_do_not_add_up(autojump_clock):
    breaker = make(failures=3, window=60)
    breaker.failure()
    breaker.failure()
    await trio.sleep(61)  # both fall out of the window
    breaker.failure()
    breaker.failure()
    assert breaker.state == CLOSED
    breaker.failure()
    assert breaker.state == OPEN


async def test_half_open_lets_exactly_one_probe_and_success_closes(autojump_clock, audit_lines):
    breaker = make(failures=1, cooldown=30)
    breaker.failure("api_error")
    assert breaker.state == OPEN
    await trio.sleep(29)
    assert not breaker.allow()
    assert 0 < breaker.retry_in() <= 1
    await trio.sleep(1)
    assert breaker.snapshot()["state"] == HALF_OPEN  # status shows that the next request probes
    assert breaker.allow()  # the probe
    assert breaker.state == HALF_OPEN
    assert not breaker.allow()  # a second request while the probe is out goes elsewhere
    breaker.success()
    assert breaker.state == CLOSED
    assert breaker.allow() and breaker.allow()
    text = audit_lines.getvalue()
    assert "event=circuit_half_open provider=packycode" in text
    assert "action=circuit_closed provider=packycode" in text


async def test_probe_failure_reopens_for_another_cooldown(autojump_clock):
    breaker = make(failures=1, cooldown=30)
    breaker.failure()
    await trio.sleep(30)
    assert breaker.allow()
    breaker.failure("api_error")
    assert breaker.state == OPEN and breaker.openings == 2
    assert not breaker.allow()
    await trio.sleep(29.5)
    assert not breaker.allow()
    await trio.sleep(0.5)
    assert breaker.allow()


async def test_probe_without_verdict_hands_the_slot_on(autojump_clock):
    breaker = make(failures=1, cooldown=5)
    breaker.failure()
    await trio.sleep(5)
    assert breaker.allow()
    breaker.release()  # e.g. the client disconnected, or its request was invalid
    assert breaker.state == HALF_OPEN
    assert breaker.allow()  # the next request probes
    breaker.success()
    assert breaker.state == CLOSED


async def test_success_while_closed_keeps_window_counting(autojump_clock):
    """The threshold is failures in a window, not consecutive failures: a flapping upstream
    that fails 3 of every 4 requests still opens."""
    breaker = make(failures=3)
    for _ in range(2):
        breaker.failure()
        breaker.success()
    breaker.failure()
    assert breaker.state == OPEN


@pytest.mark.parametrize("error, counted", [
    (ApiError("x"), True),
    (Overloaded("x"), True),
    (UpstreamTimeout("x"), True),
    (AuthenticationFailed("x"), False),  # answered at once and actionable: never hidden behind "circuit open"
    (PermissionDenied("x"), False),
    (RateLimited("x", headers={"retry-after": "20"}), False),
    (RateLimited("x"), False),
    (RateLimited("quota", headers={"x-should-retry": "false"}), False),
    (InvalidRequest("prompt is too long"), False),
    (RequestTooLarge("x"), False),
    (ValueError("not an upstream failure"), False),
])
def test_what_counts_as_a_failure(error, counted):
    assert counts_as_failure(error) is counted


async def test_single_key_429_storm_never_opens(autojump_clock):
    """A burst of rate limits on one key (the common Packycode setup) must not lock the
    provider out: routing feeds only counted failures to the breaker."""
    breaker = make(failures=2)
    for _ in range(50):
        error = RateLimited("rate limited", headers={"retry-after": "1"})
        if counts_as_failure(error):
            breaker.failure()
        else:
            breaker.release()
        assert breaker.allow()
    assert breaker.state == CLOSED


async def test_board_reset_on_changed_settings_and_new_thresholds(autojump_clock, audit_lines):
    board = BreakerBoard(BreakerSettings(1, 60, 30))
    board.get("packycode").failure()
    board.get("packy-claude").failure()
    assert board.snapshot()["packycode"]["state"] == OPEN
    board.configure(BreakerSettings(10, 60, 5), changed_providers=["packycode"])
    assert board.get("packycode").state == CLOSED  # new key or URL: give it a fresh start
    assert board.get("packy-claude").state == OPEN  # untouched provider keeps its state
    assert board.get("packy-claude").settings.cooldown == 5
    await trio.sleep(5)
    assert board.get("packy-claude").allow()
    assert "reason=\"provider settings changed\"" in audit_lines.getvalue()
