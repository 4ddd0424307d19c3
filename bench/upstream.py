"""A fast fake Packycode for the benchmarks: Responses SSE from asyncio protocols.

The benchmarks compare packyd with a direct connection to this server, so it must cost as
little as possible and behave the same for both: it is a plain HTTP/1.1 server on asyncio
``Protocol`` objects (no framework), keeps connections alive, answers with chunked SSE, and
paces events with one shared ticker per rate rather than a timer per stream, so 500 streams
at 50 events/s are 50 wake-ups a second, not 25 000.

What to send is read from a marker in the request body, so the same scenario works whether
the body came through packyd (translated from an Anthropic request) or straight from the
benchmark client::

    [bench mode=text n=200 rate=50 id=17]

``mode=text``: ``response.created``, a message item, ``n`` ``output_text.delta`` events of a
few bytes each (all at once when ``rate=0``, else ``rate`` per second), the done events and
``response.completed``. ``mode=stall``: the same start, then one delta every ``1/rate``
seconds until the client goes away. The time each request's connection was closed is kept
by ``id`` (``time.monotonic()``, which is one clock for all processes on Linux).

Control endpoints (GET): ``/_bench/closed?id=X&wait=S`` (when the connection that served
``id`` closed, waiting up to S seconds), ``/_bench/last`` (the last request body, verbatim),
``/_bench/stats``.

Run: ``python -m bench.upstream [--port N]``; it prints ``READY <port>`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Callable
from urllib.parse import parse_qs, urlsplit

__all__ = ["main"]

_MARKER = re.compile(rb"\[bench ([^\]]*)\]")
_RESP_ID = "resp_bench0000000000000000000000"
_MSG_ID = "msg_bench00000000000000000000000"
_MODEL = "gpt-5-codex"


def _sse(payload: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (
        payload["type"].encode(),
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _head(events: int) -> bytes:
    """Everything up to the first delta (response.created, the message item, its part)."""
    response = {"id": _RESP_ID, "object": "response", "created_at": 1760000000, "status": "in_progress",
                "model": _MODEL, "output": [], "usage": None}
    return b"".join((
        _sse({"type": "response.created", "sequence_number": 0, "response": response}),
        _sse({"type": "response.in_progress", "sequence_number": 1, "response": response}),
        _sse({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
              "item": {"id": _MSG_ID, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        _sse({"type": "response.content_part.added", "sequence_number": 3, "item_id": _MSG_ID, "output_index": 0,
              "content_index": 0, "part": {"type": "output_text", "annotations": [], "text": ""}}),
    ))


_DELTA = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":%d,'
          b'"item_id":"' + _MSG_ID.encode() + b'","output_index":0,"content_index":0,"delta":"%s","logprobs":[]}\n\n')


def _delta(seq: int, text: bytes) -> bytes:
    return _DELTA % (seq, text)


def _tail(seq: int, text: str, input_tokens: int) -> bytes:
    part = {"type": "output_text", "annotations": [], "text": text}
    item = {"id": _MSG_ID, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": max(1, len(text) // 4), "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": input_tokens + max(1, len(text) // 4)}
    response = {"id": _RESP_ID, "object": "response", "created_at": 1760000000, "status": "completed",
                "model": _MODEL, "output": [item], "usage": usage}
    return b"".join((
        _sse({"type": "response.output_text.done", "sequence_number": seq, "item_id": _MSG_ID, "output_index": 0,
              "content_index": 0, "text": text}),
        _sse({"type": "response.content_part.done", "sequence_number": seq + 1, "item_id": _MSG_ID,
              "output_index": 0, "content_index": 0, "part": part}),
        _sse({"type": "response.output_item.done", "sequence_number": seq + 2, "output_index": 0, "item": item}),
        _sse({"type": "response.completed", "sequence_number": seq + 3, "response": response}),
    ))


class Ticker:
    """Calls every registered callback once per period; one asyncio timer for all of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self.loop = loop
        self.period = period
        self.subscribers: set[Callable[[], bool]] = set()
        self._next = loop.time() + period
        loop.call_at(self._next, self._tick)

    def _tick(self) -> None:
        for callback in list(self.subscribers):
            if not callback():
                self.subscribers.discard(callback)
        self._next += self.period
        now = self.loop.time()
        if self._next < now:  # fell behind (box busy): skip ahead rather than burst
            self._next = now + self.period
        self.loop.call_at(self._next, self._tick)


class State:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tickers: dict[float, Ticker] = {}
        self.closed: dict[str, float] = {}
        self.waiters: dict[str, list[asyncio.Future]] = {}
        self.last_body = b""
        self.requests = 0
        self.open_streams = 0
        self.events_sent = 0

    def ticker(self, rate: float) -> Ticker:
        ticker = self.tickers.get(rate)
        if ticker is None:
            ticker = self.tickers[rate] = Ticker(self.loop, 1.0 / rate)
        return ticker

    def mark_closed(self, ident: str) -> None:
        self.closed.setdefault(ident, time.monotonic())
        for future in self.waiters.pop(ident, []):
            if not future.done():
                future.set_result(None)


class Stream:
    """One SSE answer in progress on a connection."""

    def __init__(self, conn: "Connection", params: dict[str, str], input_tokens: int) -> None:
        self.conn = conn
        self.mode = params.get("mode", "text")
        self.n = int(params.get("n", "5"))
        self.rate = float(params.get("rate", "0"))
        self.ident = params.get("id")
        self.text = params.get("delta", "tok ").encode()
        self.input_tokens = input_tokens
        self.sent = 0
        self.seq = 4
        self.finished = False

    def start(self) -> None:
        state = self.conn.state
        state.open_streams += 1
        self.conn.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                        b"transfer-encoding: chunked\r\n\r\n")
        if self.mode == "stall":
            self.conn.write(_chunk(_head(0) + _delta(self.seq, self.text)))
            self.seq += 1
            state.ticker(self.rate or 1.0).subscribers.add(self._tick_stall)
            return
        if self.rate <= 0:
            # burst: the whole stream in as few writes as the socket allows, one event per write call
            self.conn.write(_chunk(_head(0)))
            for _ in range(self.n):
                self.conn.write(_chunk(_delta(self.seq, self.text)))
                self.seq += 1
            self.sent = self.n
            self._finish()
            return
        self.conn.write(_chunk(_head(0)))
        state.ticker(self.rate).subscribers.add(self._tick_text)

    def _tick_text(self) -> bool:
        if self.finished or self.conn.closed:
            return False
        self.conn.write(_chunk(_delta(self.seq, self.text)))
        self.seq += 1
        self.sent += 1
        if self.sent >= self.n:
            self._finish()
            return False
        return True

    def _tick_stall(self) -> bool:
        if self.conn.closed:
            return False
        self.conn.write(_chunk(_delta(self.seq, self.text)))
        self.seq += 1
        return True

    def _finish(self) -> None:
        text = (self.text * self.sent).decode()
        self.conn.write(_chunk(_tail(self.seq, text, self.input_tokens)) + b"0\r\n\r\n")
        self.conn.state.events_sent += self.sent + 8
        self.finished = True
        self.conn.state.open_streams -= 1
        self.conn.stream = None
        self.conn.state.loop.call_soon(self.conn.process)  # a pipelined request may be waiting

    def lost(self) -> None:
        if not self.finished:
            self.conn.state.open_streams -= 1
            self.finished = True


class Connection(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.stream: Stream | None = None
        self.idents: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.process()

    def eof_received(self) -> bool:
        self._gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def _gone(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.stream is not None:
            self.stream.lost()
        for ident in self.idents:
            self.state.mark_closed(ident)

    def process(self) -> None:
        while self.stream is None and not self.closed:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            self.handle(method, target, body)

    def respond(self, status: str, body: bytes, content_type: str = "application/json") -> None:
        self.write(b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                   % (status.encode(), content_type.encode(), len(body), body))

    def handle(self, method: str, target: str, body: bytes) -> None:
        url = urlsplit(target)
        if method == "GET" and url.path.startswith("/_bench/"):
            self.control(url.path, parse_qs(url.query))
            return
        if method != "POST" or not url.path.endswith("/responses"):
            self.respond("404 Not Found", b'{"error":{"message":"not found","type":"invalid_request_error"}}')
            return
        self.state.requests += 1
        self.state.last_body = body
        match = _MARKER.search(body)
        params = dict(part.split("=", 1) for part in match.group(1).decode().split() if "=" in part) if match else {}
        stream = Stream(self, params, input_tokens=len(body) // 4)
        if stream.ident:
            self.idents.append(stream.ident)
        self.stream = stream
        stream.start()

    def control(self, path: str, query: dict[str, list[str]]) -> None:
        state = self.state
        if path == "/_bench/last":
            self.respond("200 OK", state.last_body)
        elif path == "/_bench/stats":
            self.respond("200 OK", json.dumps({"requests": state.requests, "open_streams": state.open_streams,
                                               "events_sent": state.events_sent}).encode())
        elif path == "/_bench/closed":
            ident = query["id"][0]
            wait = float(query.get("wait", ["0"])[0])
            if ident in state.closed or wait <= 0:
                self._send_closed(ident)
                return
            future = state.loop.create_future()
            state.waiters.setdefault(ident, []).append(future)

            def done(_: asyncio.Future) -> None:
                self._send_closed(ident)

            future.add_done_callback(done)
            state.loop.call_later(wait, lambda: future.done() or future.set_result(None))
        else:
            self.respond("404 Not Found", b"{}")

    def _send_closed(self, ident: str) -> None:
        self.respond("200 OK", json.dumps({"id": ident, "closed_at": self.state.closed.get(ident)}).encode())


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    state = State(loop)
    server = await loop.create_server(lambda: Connection(state), "127.0.0.1", port, backlog=2048)
    actual = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {actual}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
