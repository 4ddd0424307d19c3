"""Incremental Server-Sent Events parser and encoder.

The parser works on bytes because reads from the network split frames anywhere, including
inside a multi-byte UTF-8 character; line terminators (CR, LF) are ASCII and can never occur
inside a UTF-8 sequence, so splitting complete lines on bytes and decoding each field value
afterwards is always safe. ``bytes.splitlines`` is used rather than ``str.splitlines`` because
the latter also splits on U+2028/U+0085 and friends, which JSON strings may legally contain raw.

The encoder produces exactly what the Anthropic SDKs dispatch on: an ``event:`` line whose
name equals the payload's ``type``, one compact JSON ``data:`` line, and a blank line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

__all__ = ["SSEEvent", "SSEParser", "encode", "encode_events", "encode_comment", "dumps"]


class SSEEvent(NamedTuple):
    """One dispatched event. ``event`` is None when the frame had no ``event:`` line."""

    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None


# One shared encoder: building a JSONEncoder per call costs more than the encoding itself
# for the small payloads a stream is made of. ensure_ascii=False keeps non-Latin text at its
# UTF-8 size instead of inflating it sixfold with \u escapes.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class SSEParser:
    """Feed it bytes as they arrive; it returns the events completed by each chunk.

    ``close()`` flushes a final event that was not followed by a blank line (some relays end
    the body right after the last ``data:`` line). A ``data: [DONE]`` sentinel, which the
    Responses API never sends but some relays add, is dropped unless ``keep_done`` is set.
    """

    __slots__ = ("_buf", "_skip_lf", "_event", "_data", "_id", "_retry", "_keep_done", "last_event_id")

    def __init__(self, *, keep_done: bool = False) -> None:
        self._buf = b""
        self._skip_lf = False
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self._keep_done = keep_done
        self.last_event_id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf:
            # The previous chunk ended in CR: an LF right here belongs to that CRLF.
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        buf = self._buf + chunk if self._buf else chunk
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if cut < 0:
            self._buf = buf
            return []
        complete = buf[: cut + 1]
        self._buf = buf[cut + 1 :]
        if not self._buf and complete[-1] == 0x0D:
            self._skip_lf = True
        out: list[SSEEvent] = []
        for line in complete.splitlines():
            self._line(line, out)
        return out

    def close(self) -> list[SSEEvent]:
        """End of input: treat a pending partial line and a pending event as complete."""
        out: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf, out)
            self._buf = b""
        self._dispatch(out)
        self._skip_lf = False
        return out

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line[0] == 0x3A:  # ":" comment / keep-alive
            return
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self._retry = int(value)
        # any other field name is ignored, as the SSE specification requires

    def _dispatch(self, out: list[SSEEvent]) -> None:
        data = self._data
        event = self._event
        retry = self._retry
        self._event = None
        self._retry = None
        if self._id is not None:
            self.last_event_id = self._id
        if not data:
            return
        self._data = []
        text = data[0] if len(data) == 1 else "\n".join(data)
        if text == "[DONE]" and not self._keep_done:
            return
        out.append(SSEEvent(event, text, self.last_event_id, retry))


def encode(event_name: str, payload: Mapping[str, Any]) -> bytes:
    """One SSE frame: ``event: name``, one compact JSON ``data:`` line, blank line."""
    return ("event: " + event_name + "\ndata: " + dumps(payload) + "\n\n").encode("utf-8")


def encode_events(events: Iterable[Mapping[str, Any]]) -> bytes:
    """Several Anthropic events as one chunk (event name = ``payload["type"]``).

    Writing all events translated from one upstream read in a single send keeps the number
    of socket writes (and trio checkpoints) proportional to reads, not to events.
    """
    parts: list[str] = []
    append = parts.append
    for ev in events:
        append("event: ")
        append(ev["type"])
        append("\ndata: ")
        append(dumps(ev))
        append("\n\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """An SSE comment line, which every client ignores (useful as a keep-alive)."""
    return (":" + text.replace("\r", " ").replace("\n", " ") + "\n\n").encode("utf-8")
