"""Notifications to systemd (sd_notify): readiness, reload, stopping, status, watchdog.

This wraps the ``sdnotify`` package to get around its measured pitfalls:

* it connects its socket once, at construction, so a notify socket that was re-created later
  swallows every message: we build a fresh notifier per message (a datagram socket is cheap);
* it encodes as Latin-1 and silently drops a whole message that does not fit: we reduce
  ``STATUS=`` text to printable ASCII;
* a newline inside a value would inject extra fields: we replace line breaks.

Everything is a no-op when ``NOTIFY_SOCKET`` is unset (not run by systemd).
"""

from __future__ import annotations

import os
import re
import time

import sdnotify

__all__ = ["notify", "ready", "reloading", "stopping", "status", "watchdog_interval", "watchdog_ping"]

_UNPRINTABLE = re.compile(r"[^\x21-\x7e]+")


def _clean(value: str) -> str:
    return _UNPRINTABLE.sub(" ", value).strip()[:400]


def notify(*fields: str) -> bool:
    """Send ``KEY=VALUE`` fields in one datagram; False when systemd is not listening."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    payload = "\n".join(_clean(field) for field in fields)
    notifier = sdnotify.SystemdNotifier()
    try:
        notifier.notify(payload)
    finally:
        if notifier.socket is not None:
            notifier.socket.close()
    return True


def ready(status_text: str) -> bool:
    return notify("READY=1", f"STATUS={status_text}")


def reloading() -> bool:
    monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")


def stopping(status_text: str) -> bool:
    return notify("STOPPING=1", f"STATUS={status_text}")


def status(status_text: str) -> bool:
    return notify(f"STATUS={status_text}")


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when off."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


def watchdog_ping() -> bool:
    return notify("WATCHDOG=1")
