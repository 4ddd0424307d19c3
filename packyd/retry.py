"""When packyd retries an upstream attempt itself, and how long it waits first.

Retries happen only before the first byte reaches the client (after that the client has
content and must retry the turn itself). They are for transient trouble: connection errors,
timeouts, 5xx and overload, a stream that failed before any content, and a 429 that says
when to come back. A quota/usage-limit 429 is never retried: it will not lift in seconds,
and retrying it only burns the user's time (claude-code.md §9.2).

The pause is exponential with jitter ("equal jitter": half fixed, half random, so attempts
from many clients spread out without ever retrying instantly), capped by
``retries.max-backoff``. A ``Retry-After`` the upstream sent replaces the computed pause; if
it is longer than ``max-backoff``, or longer than the time the request has left, packyd does
not sit on the request: it falls back to the next provider or hands the 429 (with its
``retry-after``) to the client, whose own retry loop honours it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import PackydError, RateLimited

__all__ = ["RetryPolicy", "retry_after_seconds", "is_transient"]


def retry_after_seconds(error: PackydError) -> float | None:
    """The upstream's ``Retry-After`` in seconds, when it sent a usable one."""
    value = error.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare upstream, and not worth sleeping on blindly
    return seconds if seconds >= 0 else None


def is_transient(error: PackydError) -> bool:
    """Could the same request succeed if sent again in a moment?"""
    from .translate.errors import is_retryable

    if error.headers.get("x-should-retry") == "false":
        return False  # quota, bad key: the classifier has said no
    if isinstance(error, RateLimited):
        # Only a limit that says when it lifts; an open-ended 429 goes to the next provider
        # or to the client, whose own loop backs off for minutes if it must.
        return retry_after_seconds(error) is not None
    return is_retryable(error)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    max_backoff: float = 8.0
    base: float = 0.5

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Pause after failed attempt number ``attempt`` (1-based), without Retry-After."""
        ceiling = min(self.max_backoff, self.base * (2 ** (attempt - 1)))
        draw = (rng or random).random()
        return ceiling / 2 + draw * ceiling / 2

    def pause_before_retry(self, error: PackydError, attempt: int, remaining: float,
                           rng: random.Random | None = None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when packyd should not retry
        (not transient, attempts used up, or the wait would not fit in the request's time)."""
        if attempt >= self.max_attempts or not is_transient(error):
            return None
        hinted = retry_after_seconds(error)
        if hinted is not None:
            if hinted > self.max_backoff:
                return None
            pause = hinted
        else:
            pause = self.backoff(attempt, rng)
        if pause >= remaining:
            return None
        return pause
