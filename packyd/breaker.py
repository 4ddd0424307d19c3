"""Per-provider circuit breakers: take a failing upstream out of rotation for a cooldown.

A breaker is *closed* (traffic flows) until ``failures`` failures fall inside a sliding
``window``; then it is *open* and routing skips the provider (the next one in
``routing.fallback`` serves instead). After ``cooldown`` it is *half-open*: exactly one
request (the probe) may try the provider again; success closes the circuit, failure opens it
for another cooldown, and a probe that ends without a verdict (the client went away, the
request itself was bad) hands the probe slot to the next request.

What counts as a failure is decided by :func:`counts_as_failure`, and it is deliberately
narrow. The breaker exists to stop sending traffic to an upstream that is *down*, not to
punish a single key for being busy: Packycode is usually used with one key, and CLIProxyAPI's
30-minute lockout after one 429 is the most-cited complaint about its cooldowns
(lessons-from-peers.md §2.6). So:

* connection errors, timeouts, 5xx/overload and a stream that breaks count: the upstream is
  unreachable or unwell, and every request sent there costs the client a wait;
* 429s never count, with or without ``Retry-After``, quota or rate limit: the upstream is up
  and has told packyd exactly how long to wait; routing honours that per request (retry
  within the budget, else fall back or pass ``retry-after`` on), which recovers the moment
  the limit lifts instead of after a cooldown;
* client errors (400, 404 model, 413, context overflow) never count: they describe the
  request, not the provider;
* a rejected key (401/403) does not count either: the upstream answers it at once, so there
  is no wait to save, and an open circuit would replace "Packycode rejected the key; check
  packycode.credentials" with a vaguer "circuit open" for a whole cooldown. With a fallback,
  each request still moves on after one fast round trip.

An open circuit remembers the failure that opened it (type and message, which are
content-free by construction), so the error a client gets while it is open still says why.

Time comes from ``trio.current_time()`` so tests can drive a breaker with trio's
``MockClock``; a breaker is only ever touched from the trio thread, so it needs no lock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable, Iterable

import trio

from . import logs
from .errors import AuthenticationFailed, PackydError, PermissionDenied, RateLimited

__all__ = ["CircuitBreaker", "BreakerBoard", "BreakerSettings", "counts_as_failure",
           "CLOSED", "OPEN", "HALF_OPEN", "STATE_VALUES"]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"

#: Numeric encoding of the state for the ``packyd_circuit_state`` gauge.
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0


def counts_as_failure(error: BaseException) -> bool:
    """Whether an upstream failure says the *provider* is unhealthy (see the module docstring)."""
    if isinstance(error, (RateLimited, AuthenticationFailed, PermissionDenied)):
        return False
    if isinstance(error, PackydError):
        return error.status >= 500
    return False


class CircuitBreaker:
    """One provider's breaker. ``allow()`` before an attempt; then exactly one of
    ``success()``, ``failure()`` or ``release()`` for every attempt that was allowed."""

    def __init__(self, provider: str, settings: BreakerSettings,
                 on_change: Callable[["CircuitBreaker", str, str], None] | None = None) -> None:
        self.provider = provider
        self.settings = settings
        self.state = CLOSED
        self.opened_at: float | None = None
        self.openings = 0
        self._failures: collections.deque[float] = collections.deque()
        self._probe_out = False
        self._on_change = on_change
        #: "error_type: message" of the last counted failure (content-free), for the client
        self.last_failure: str | None = None

    # -- queries ---------------------------------------------------------------------------

    def _now(self) -> float:
        return trio.current_time()

    def _prune(self, now: float) -> None:
        horizon = now - self.settings.window
        while self._failures and self._failures[0] <= horizon:
            self._failures.popleft()

    def retry_in(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when it would now)."""
        if self.state != OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.settings.cooldown - self._now())

    def snapshot(self) -> dict[str, object]:
        """Status view: state, recent failures, seconds until the next probe."""
        now = self._now()
        self._prune(now)
        state = self.state
        if state == OPEN and self.retry_in() == 0:
            state = HALF_OPEN  # the next request will probe
        return {
            "state": state,
            "recent_failures": len(self._failures),
            "failure_threshold": self.settings.failures,
            "window_s": self.settings.window,
            "cooldown_s": self.settings.cooldown,
            "retry_in_s": round(self.retry_in(), 1),
            "openings": self.openings,
        }

    # -- transitions -----------------------------------------------------------------------

    def _set(self, state: str, **fields: object) -> None:
        before, self.state = self.state, state
        if before == state:
            return
        if state == OPEN:
            self.openings += 1
            logs.audit("circuit_opened", provider=self.provider, **fields)
        elif state == CLOSED:
            logs.audit("circuit_closed", provider=self.provider, **fields)
        else:
            logs.log("info", "circuit_half_open", provider=self.provider)
        if self._on_change is not None:
            self._on_change(self, before, state)

    def allow(self) -> bool:
        """May a request try this provider now? In half-open, only one probe at a time."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self.retry_in() > 0:
                return False
            self._set(HALF_OPEN)
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def success(self) -> None:
        """The provider answered (its first content reached packyd)."""
        self._probe_out = False
        if self.state != CLOSED:
            self._failures.clear()
            self._set(CLOSED, reason="probe succeeded")

    def failure(self, reason: str = "", message: str | None = None) -> None:
        """The provider failed in a way :func:`counts_as_failure` accepts; ``reason`` is the
        error type (logged), ``message`` its content-free text (quoted while open)."""
        now = self._now()
        self._probe_out = False
        if message:
            self.last_failure = message
        if self.state == HALF_OPEN:
            self.opened_at = now
            self._set(OPEN, reason=reason or None, after="probe failed", cooldown_s=self.settings.cooldown)
            return
        if self.state == OPEN:
            return  # a request that started before the circuit opened
        self._prune(now)
        self._failures.append(now)
        if len(self._failures) >= self.settings.failures:
            self.opened_at = now
            self._set(OPEN, reason=reason or None, failures=len(self._failures),
                      window_s=self.settings.window, cooldown_s=self.settings.cooldown)

    def release(self) -> None:
        """The attempt ended without saying anything about the provider's health."""
        self._probe_out = False

    def reset(self) -> None:
        """Forget everything (the provider's settings changed on reload)."""
        self._failures.clear()
        self._probe_out = False
        self.opened_at = None
        if self.state != CLOSED:
            self._set(CLOSED, reason="provider settings changed")


class BreakerBoard:
    """All breakers of the process, by provider name; they outlive configuration reloads
    (a reload that leaves a provider alone must not forget that it is down)."""

    def __init__(self, settings: BreakerSettings,
                 on_change: Callable[[CircuitBreaker, str, str], None] | None = None) -> None:
        self.settings = settings
        self._on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            breaker = self._breakers[provider] = CircuitBreaker(provider, self.settings, self._on_change)
        return breaker

    def configure(self, settings: BreakerSettings, changed_providers: Iterable[str] = ()) -> None:
        """Apply new thresholds (reload) and reset breakers whose provider settings changed."""
        self.settings = settings
        for breaker in self._breakers.values():
            breaker.settings = settings
        for name in changed_providers:
            if name in self._breakers:
                self._breakers[name].reset()

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {name: breaker.snapshot() for name, breaker in sorted(self._breakers.items())}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._breakers.items()))
