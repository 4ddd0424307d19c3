"""Experiment: buffered channels + coalescing batches into one send in EventStreamBody."""
import sys
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), "..", ".."))
import trio
from packyd.server import streaming as s
from packyd.errors import PackydError, Overloaded
from packyd.sse import encode_events

N = 64
orig_init = s.EventStreamBody.__init__
def __init__(self, *a, **k):
    orig_init(self, *a, **k)
    self._send, self._receive = trio.open_memory_channel(N)
s.EventStreamBody.__init__ = __init__

async def __anext__(self):
    try:
        first = await self._receive.receive()
    except trio.EndOfChannel:
        raise StopAsyncIteration from None
    parts = None
    while True:
        try:
            nxt = self._receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        if parts is None:
            parts = [first]
        parts.append(nxt)
    return first if parts is None else b"".join(parts)
s.EventStreamBody.__anext__ = __anext__

async def _pump(self):
    async with self._send:
        error = None
        with trio.CancelScope() as upstream_scope:
            async with trio.open_nursery() as helpers:
                batches, incoming = trio.open_memory_channel(N)
                helpers.start_soon(self._read, batches)
                helpers.start_soon(self._watch_drain, upstream_scope)
                await self._send.send(encode_events(self._first))
                error = await self._forward(incoming)
                helpers.cancel_scope.cancel()
        if upstream_scope.cancelled_caught:
            error = Overloaded("packyd is shutting down; retry in a moment")
            self.outcome = "drained"
        if error is not None:
            if self.outcome != "drained":
                self.outcome = f"error:{error.error_type}"
            await self._send.send(encode_events([error.body(self._request_id)]))
        elif self.outcome == "incomplete":
            self.outcome = "ok"
s.EventStreamBody._pump = _pump

async def _forward(self, incoming):
    while True:
        with trio.move_on_after(self._ping_interval) as quiet:
            try:
                item = await incoming.receive()
            except trio.EndOfChannel:
                return None
        if quiet.cancelled_caught:
            await self._send.send(s._PING)
            continue
        if isinstance(item, PackydError):
            return item
        events = None
        err = None
        while True:
            try:
                nxt = incoming.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(nxt, PackydError):
                err = nxt
                break
            if events is None:
                events = list(item)
            events.extend(nxt)
        await self._send.send(encode_events(item if events is None else events))
        if err is not None:
            return err
s.EventStreamBody._forward = _forward

from packyd.cli import main
sys.exit(main())
