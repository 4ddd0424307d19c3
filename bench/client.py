"""A small HTTP/1.1 client on asyncio protocols that times what the benchmarks need.

A general client (httpx, aiohttp) would add its own per-request and per-chunk costs; they
cancel out of the packyd-minus-direct differences, but their noise does not. This one keeps a
connection alive, sends one request at a time, de-chunks the body and records the time the
response head arrived, the time of the first body byte, the end, and the number of SSE events
(blank-line terminated frames) in the body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Connection", "Result", "connect"]


@dataclass
class Result:
    status: int = 0
    sent: float = 0.0           # request written (monotonic)
    head: float = 0.0           # response head parsed
    first_byte: float = 0.0     # first body byte
    end: float = 0.0            # body complete (or connection closed)
    events: int = 0
    nbytes: int = 0
    tail: bytes = b""
    complete: bool = False      # the body ended properly (last chunk / length / EOF)
    body: bytearray | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ttfb(self) -> float:
        return self.first_byte - self.sent

    @property
    def total(self) -> float:
        return self.end - self.sent

    seen: set[bytes] = field(default_factory=set)

    def ended_with(self, *markers: bytes) -> bool:
        """The body ended properly and contained one of ``markers`` (see ``request(watch=…)``)."""
        return self.complete and any(m in self.seen for m in markers)


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.result: Result | None = None
        self.done: asyncio.Future | None = None
        self.state = "idle"
        self.remaining = 0
        self.keep_body = False
        self.on_event: Callable[[Result], None] | None = None
        self._last = b""
        self.closed = False

    # -- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.result is not None and self.done is not None and not self.done.done():
            if self.state == "eof":
                self.result.complete = True
            self._finish()

    def data_received(self, data: bytes) -> None:
        if self.result is None:
            return
        self.buf += data
        self._parse()

    # -- request

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                      *, keep_body: bool = False, on_event: Callable[[Result], None] | None = None,
                      watch: tuple[bytes, ...] = (b"message_stop", b"response.completed", b"event: error")) -> Result:
        assert self.transport is not None and not self.closed, "connection closed"
        lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.result = Result(body=bytearray() if keep_body else None)
        self.done = asyncio.get_running_loop().create_future()
        self.state = "head"
        self.on_event = on_event
        self.watch = watch
        self._overlap = max((len(m) for m in watch), default=1)
        self._last = b""
        self.result.sent = time.monotonic()
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.done
        result, self.result = self.result, None
        return result

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- parsing

    def _finish(self) -> None:
        result = self.result
        assert result is not None and self.done is not None
        result.end = time.monotonic()
        self.state = "idle"
        if result.headers.get("connection", "").lower() == "close":
            # the server ends keep-alive here (Hypercorn does after keep_alive_max_requests)
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def _body(self, data: bytes) -> None:
        result = self.result
        assert result is not None
        if not data:
            return
        if not result.nbytes:
            result.first_byte = time.monotonic()
        result.nbytes += len(data)
        joined = self._last + data
        found = joined.count(b"\n\n") - self._last.count(b"\n\n")
        for m in self.watch:
            if m in joined:
                result.seen.add(m)
        self._last = joined[-self._overlap:]
        result.tail = (result.tail + data)[-512:]
        if result.body is not None:
            result.body += data
        if found:
            result.events += found
            if self.on_event is not None:
                self.on_event(result)

    def _parse(self) -> None:
        result = self.result
        assert result is not None
        while True:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                del self.buf[:end + 4]
                result.status = int(lines[0].split(" ", 2)[1])
                result.head = time.monotonic()
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    result.headers[name.strip().lower()] = value.strip()
                if result.headers.get("transfer-encoding", "").lower() == "chunked":
                    self.state = "size"
                elif "content-length" in result.headers:
                    self.remaining = int(result.headers["content-length"])
                    self.state = "length"
                    if self.remaining == 0:
                        result.complete = True
                        self._finish()
                        return
                else:
                    self.state = "eof"
            elif self.state == "size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self.buf[:end]).split(b";")[0], 16)
                del self.buf[:end + 2]
                if size == 0:
                    self.state = "trailer"
                else:
                    self.remaining = size
                    self.state = "chunk"
            elif self.state == "chunk":
                if not self.buf:
                    return
                take = bytes(self.buf[:self.remaining])
                del self.buf[:len(take)]
                self.remaining -= len(take)
                self._body(take)
                if self.remaining == 0:
                    self.state = "chunk-end"
            elif self.state == "chunk-end":
                if len(self.buf) < 2:
                    return
                del self.buf[:2]
                self.state = "size"
            elif self.state == "trailer":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                del self.buf[:end + 2]
                if end == 0:
                    result.complete = True
                    self._finish()
                    return
            elif self.state == "length":
                if not self.buf:
                    return
                take = bytes(self.buf[:self.remaining])
                del self.buf[:len(take)]
                self.remaining -= len(take)
                self._body(take)
                if self.remaining == 0:
                    result.complete = True
                    self._finish()
                    return
            elif self.state == "eof":
                data = bytes(self.buf)
                self.buf.clear()
                self._body(data)
                return
            else:
                return


async def connect(port: int, host: str = "127.0.0.1") -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Connection, host, port)
    return conn
