"""A fake Packycode: a real HTTP/1.1 server on 127.0.0.1 that plays scripted replies.

packyd's tests talk to it over real sockets, exactly as packyd talks to Packycode. It is
written directly on trio + h11 rather than as an ASGI app because an ASGI server cannot do
what the tests need: cut a connection in the middle of a chunked body (Hypercorn keeps the
connection open when an app stops mid-body), send a reset, or write raw bytes one at a time.

Every request is recorded (:class:`RecordedRequest`: method, path, headers, body, parsed
JSON, and *when the client closed its connection* while the reply was still being played,
which is what the disconnect tests measure). Each request gets the next scripted
:class:`Reply`; when the script is empty, :attr:`FakePackycode.default` (if set) answers,
else a 500 that names the problem so a test with a short script fails loudly.

In-process use (in a test's nursery)::

    fake = FakePackycode()
    base_url = await nursery.start(fake.serve)        # "http://127.0.0.1:PORT/v1"
    fake.script(sse_reply(text_stream("hello")))
    ...
    assert fake.requests[0].json["store"] is False

As a subprocess (for daemon and end-to-end tests)::

    python -m tests.support.fake_packycode --port 0 [--script replies.json]

prints ``listening on http://127.0.0.1:PORT/v1`` on stdout, then serves until killed. The
script file is ``{"replies": [Reply...], "default": Reply}`` in :meth:`Reply.to_json` form.
A running fake is also controlled over HTTP: ``POST /_fake/replies`` (a JSON list of
replies to append), ``PUT /_fake/default`` (a reply, or null), ``GET /_fake/requests``
(the recorded requests as JSON), ``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import h11
import trio

__all__ = [
    "Chunk",
    "Reply",
    "RecordedRequest",
    "FakePackycode",
    "encode_sse",
    "sse_reply",
    "error_reply",
    "detail_reply",
    "text_error_reply",
    "stall_reply",
]

#: How a reply ends once its chunks are written.
ENDINGS = ("finish", "cut", "reset", "stall")


@dataclass(frozen=True)
class Chunk:
    """``data`` written as one chunk of the body, after ``delay`` seconds."""

    data: bytes
    delay: float = 0.0


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``head_delay`` delays the status line and headers (``math.inf``: never send them, the
    upstream hangs before answering). ``end`` says what happens after the last chunk:
    ``finish`` ends the body properly, ``cut`` closes the socket without the chunked
    terminator (the client sees a truncated body), ``reset`` aborts with a TCP RST, and
    ``stall`` keeps the connection open and silent until the client goes away.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/event-stream; charset=utf-8"),)
    chunks: tuple[Chunk, ...] = ()
    head_delay: float = 0.0
    end: str = "finish"

    def __post_init__(self) -> None:
        if self.end not in ENDINGS:
            raise ValueError(f"end must be one of {ENDINGS}, not {self.end!r}")

    @property
    def body(self) -> bytes:
        return b"".join(chunk.data for chunk in self.chunks)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "headers": [list(pair) for pair in self.headers],
            "chunks": [{"b64": base64.b64encode(c.data).decode(), "delay": c.delay} for c in self.chunks],
            "head_delay": None if math.isinf(self.head_delay) else self.head_delay,
            "end": self.end,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Reply":
        """Inverse of :meth:`to_json`; chunks may also be given as ``{"text": ...}``, and
        ``"events": [...]`` (Responses events) stands for an SSE body."""
        chunks: list[Chunk] = []
        for raw in data.get("chunks", ()):
            payload = base64.b64decode(raw["b64"]) if "b64" in raw else raw["text"].encode()
            chunks.append(Chunk(payload, float(raw.get("delay", 0.0))))
        if "events" in data:
            chunks.append(Chunk(encode_sse(data["events"])))
        head_delay = data.get("head_delay", 0.0)
        return cls(
            status=int(data.get("status", 200)),
            headers=tuple((str(k), str(v)) for k, v in data.get("headers", cls.headers)),
            chunks=tuple(chunks),
            head_delay=math.inf if head_delay is None else float(head_delay),
            end=data.get("end", "finish"),
        )


@dataclass
class RecordedRequest:
    """What the fake saw of one request, and when (``time.monotonic()``, comparable across
    processes on one host)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    #: set when the client closed the connection while the reply was still being played
    disconnected_at: float | None = None
    #: set when the reply was fully played (finish, cut or reset)
    finished_at: float | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "received_at": self.received_at,
            "disconnected_at": self.disconnected_at,
            "finished_at": self.finished_at,
        }


def encode_sse(events: Iterable[Mapping[str, Any]], *, event_lines: bool = True) -> bytes:
    """Responses events as an SSE body (``event: <type>`` + compact ``data:``, as Packycode sends)."""
    out = []
    for event in events:
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        out.append((f"event: {event['type']}\n" if event_lines else "") + f"data: {data}\n\n")
    return "".join(out).encode("utf-8")


def _split(body: bytes, chunk_size: int | None) -> list[bytes]:
    if not chunk_size:
        return [body]
    return [body[i:i + chunk_size] for i in range(0, len(body), chunk_size)]


def sse_reply(
    events: Iterable[Mapping[str, Any]],
    *,
    chunk_size: int | None = None,
    per_event: bool = False,
    delay: float = 0.0,
    end: str = "finish",
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """A 200 SSE reply. By default the whole body is one write; ``per_event`` writes each
    event separately, ``chunk_size`` cuts the body every N bytes (1: every byte boundary).
    ``delay`` is slept before every write after the first."""
    events = list(events)
    if per_event:
        pieces = [encode_sse([event]) for event in events]
        if chunk_size:
            pieces = [part for piece in pieces for part in _split(piece, chunk_size)]
    else:
        pieces = _split(encode_sse(events), chunk_size)
    chunks = tuple(Chunk(piece, delay if i else 0.0) for i, piece in enumerate(pieces))
    return Reply(headers=(("content-type", "text/event-stream; charset=utf-8"), *headers), chunks=chunks, end=end)


def error_reply(status: int, message: str, *, type: str | None = None, code: str | None = None,
                headers: Iterable[tuple[str, str]] = (), extra: Mapping[str, Any] | None = None) -> Reply:
    """The platform error shape ``{"error": {"message", "type", "param", "code"}}``."""
    error: dict[str, Any] = {"message": message, "type": type, "param": None, "code": code, **(extra or {})}
    return _json_reply(status, {"error": error}, headers)


def detail_reply(status: int, detail: Any, *, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    """The FastAPI shape ``{"detail": ...}`` used by ChatGPT-backed relays."""
    return _json_reply(status, {"detail": detail}, headers)


def text_error_reply(status: int, text: str, *, content_type: str = "text/html; charset=utf-8",
                     headers: Iterable[tuple[str, str]] = ()) -> Reply:
    """A non-JSON error page (a relay's web frontend, a proxy's 502 page)."""
    return Reply(status=status, headers=(("content-type", content_type), *headers), chunks=(Chunk(text.encode()),))


def _json_reply(status: int, payload: Any, headers: Iterable[tuple[str, str]]) -> Reply:
    body = json.dumps(payload).encode()
    return Reply(status=status, headers=(("content-type", "application/json"), *headers), chunks=(Chunk(body),))


def stall_reply(*, before_headers: bool = False, events: Iterable[Mapping[str, Any]] = ()) -> Reply:
    """Hang: before sending headers, or after sending ``events`` (possibly none)."""
    if before_headers:
        return Reply(head_delay=math.inf)
    body = encode_sse(events)
    return Reply(chunks=(Chunk(body),) if body else (), end="stall")


class FakePackycode:
    """The server; see the module docstring. One instance serves any number of connections."""

    def __init__(self, *, default: Reply | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.replies: list[Reply] = []
        self.default = default
        #: optional hook that picks the reply itself (called before the script is consulted)
        self.responder: Callable[[RecordedRequest], Reply | None] | None = None
        self.port: int | None = None
        self._changed = trio.Event()

    # ------------------------------------------------------------------ scripting

    def script(self, *replies: Reply) -> None:
        """Append replies; each request takes the next one."""
        self.replies.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self.replies.clear()
        self.default = None
        self.responder = None

    @property
    def url(self) -> str:
        assert self.port is not None, "the fake is not serving yet"
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def upstream_requests(self) -> list[RecordedRequest]:
        """Requests to ``/v1/responses`` only."""
        return [r for r in self.requests if r.path.split("?")[0].endswith("/responses")]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (re-checked whenever a request changes state)."""
        with trio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _next_reply(self, record: RecordedRequest) -> Reply:
        if self.responder is not None:
            chosen = self.responder(record)
            if chosen is not None:
                return chosen
        if self.replies:
            return self.replies.pop(0)
        if self.default is not None:
            return self.default
        return error_reply(500, "fake packycode: no scripted reply left for this request", type="fake_script_exhausted")

    # ------------------------------------------------------------------ serving

    async def serve(self, *, port: int = 0, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 and serve until cancelled; ``task_status`` gets the base URL."""
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._connection, listeners)
            task_status.started(self.url)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                received = await _read_request(conn, stream)
                if received is None:
                    return
                request, body = received
                target = request.target.decode("latin-1")
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
                record = RecordedRequest(request.method.decode(), target, headers, body, time.monotonic())
                if target.startswith("/_fake/"):
                    reply = self._control(record)
                else:
                    self.requests.append(record)
                    self._notify()
                    reply = self._next_reply(record)
                keep = await self._play(conn, stream, reply, record)
                if not keep or conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _play(self, conn: h11.Connection, stream: trio.SocketStream, reply: Reply,
                    record: RecordedRequest) -> bool:
        """Play one reply while watching for the client going away; False: close the connection."""
        keep = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_disconnect, conn, stream, record, nursery.cancel_scope)
            try:
                keep = await self._send_reply(conn, stream, reply)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # the client went away mid-write (the watcher may not have noticed yet)
                if record.disconnected_at is None:
                    record.disconnected_at = time.monotonic()
                keep = False
            finally:
                if record.disconnected_at is None:
                    record.finished_at = time.monotonic()
                self._notify()
                nursery.cancel_scope.cancel()
        if record.disconnected_at is not None:
            return False
        return keep

    async def _watch_disconnect(self, conn: h11.Connection, stream: trio.SocketStream,
                                record: RecordedRequest, scope: trio.CancelScope) -> None:
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                record.disconnected_at = time.monotonic()
                self._notify()
                scope.cancel()
                return
            conn.receive_data(data)  # a pipelined next request: h11 keeps it for the next cycle

    async def _send_reply(self, conn: h11.Connection, stream: trio.SocketStream, reply: Reply) -> bool:
        if reply.head_delay:
            await trio.sleep(reply.head_delay)  # math.inf sleeps until the client leaves
        headers = list(reply.headers)
        if reply.end == "finish" and reply.status != 200:
            headers.append(("content-length", str(len(reply.body))))
        await stream.send_all(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        for chunk in reply.chunks:
            if chunk.delay:
                await trio.sleep(chunk.delay)
            if chunk.data:
                await stream.send_all(conn.send(h11.Data(data=chunk.data)))
        if reply.end == "finish":
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return True
        if reply.end == "stall":
            await trio.sleep_forever()
        if reply.end == "reset":
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return False  # cut / reset: the connection is closed by the caller

    # ------------------------------------------------------------------ control API (subprocess use)

    def _control(self, record: RecordedRequest) -> Reply:
        path, method = record.path.split("?")[0], record.method
        if path == "/_fake/requests" and method == "GET":
            return _json_reply(200, [r.to_json() for r in self.requests], ())
        if path == "/_fake/replies" and method == "POST":
            self.script(*(Reply.from_json(item) for item in record.json))
            return _json_reply(200, {"queued": len(self.replies)}, ())
        if path == "/_fake/default" and method == "PUT":
            self.default = None if record.json is None else Reply.from_json(record.json)
            return _json_reply(200, {"default": self.default is not None}, ())
        if path == "/_fake/reset" and method == "POST":
            self.reset()
            return _json_reply(200, {"reset": True}, ())
        return _json_reply(404, {"error": f"no control endpoint {method} {path}"}, ())


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_packycode", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--script", help='JSON file {"replies": [...], "default": {...}}')
    args = parser.parse_args(argv)
    fake = FakePackycode()
    if args.script:
        with open(args.script, encoding="utf-8") as handle:
            loaded = json.load(handle)
        fake.script(*(Reply.from_json(item) for item in loaded.get("replies", ())))
        if loaded.get("default") is not None:
            fake.default = Reply.from_json(loaded["default"])

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(lambda task_status: fake.serve(port=args.port, task_status=task_status))
            print(f"listening on {url}", flush=True)

    trio.run(run)


if __name__ == "__main__":
    _main(sys.argv[1:])
