"""Structured, content-free log lines on stderr (journald adds the timestamp and unit).

Every line is ``level=... event=... key=value ...`` (logfmt), so operators can grep and
journald can index it. The only way to log here is :func:`log` / :func:`audit` with keyword
fields; there is deliberately no helper that takes free text from a request, because packyd
must never write prompt or response content anywhere (FR-005). Callers pass metadata only:
ids, model names, provider names, statuses, sizes, durations, token counts.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["configure", "log", "audit", "debug", "enabled"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_threshold = _LEVELS["info"]
_stream: TextIO = sys.stderr
_with_time = False


def configure(level: str, *, stream: TextIO | None = None, timestamps: bool | None = None) -> None:
    """Set the level; timestamps are added unless journald (``JOURNAL_STREAM``) adds its own."""
    global _threshold, _stream, _with_time
    import os

    _threshold = _LEVELS.get(level, _LEVELS["info"])
    if stream is not None:
        _stream = stream
    _with_time = timestamps if timestamps is not None else not os.environ.get("JOURNAL_STREAM")


def enabled(level: str) -> bool:
    return _LEVELS[level] >= _threshold


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple, set, frozenset)):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    if text == "" or any(ch in text for ch in ' ="\n\r\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return text


def log(level: str, event: str, **fields: Any) -> None:
    """Write one line if ``level`` passes the threshold. Fields must be metadata only."""
    if _LEVELS[level] < _threshold:
        return
    parts = []
    if _with_time:
        parts.append("ts=" + time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    parts.append(f"level={level}")
    parts.append(f"event={event}")
    parts.extend(f"{key}={_format_value(value)}" for key, value in fields.items() if value is not None)
    try:
        _stream.write(" ".join(parts) + "\n")
        _stream.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not take the daemon down


def debug(event: str, **fields: Any) -> None:
    log("debug", event, **fields)


def audit(action: str, **fields: Any) -> None:
    """An audit event (FR-007): start, stop, reload, provider switches, circuit changes."""
    log("info", "audit", action=action, **fields)
