"""Experiment: EventStreamBody keeps its upstream reader task (so a quiet upstream can be
pinged without cancelling a read) but drops the pump task and the second channel: Quart's own
task receives batches from the reader, sends pings when the channel is quiet, and merges
batches that are already waiting into one send. Drain handling is kept."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import contextlib  # noqa: E402

import trio  # noqa: E402

from packyd.errors import Overloaded, PackydError  # noqa: E402
from packyd.server import streaming as s  # noqa: E402
from packyd.sse import encode_events  # noqa: E402

BUFFER = 16


async def __aenter__(self):  # noqa: ANN001, N807
    self._state = 0  # 0: first batch pending, 1: streaming, 2: done
    self._scope = trio.CancelScope()
    nursery = await self._stack.enter_async_context(trio.open_nursery())
    batches, self._incoming = trio.open_memory_channel(BUFFER)
    nursery.start_soon(self._read, batches)
    nursery.start_soon(self._watch_drain_r, nursery.cancel_scope)
    self._helpers = nursery.cancel_scope
    return self


async def __aexit__(self, *exc_info):  # noqa: ANN001, N807
    self._helpers.cancel()
    try:
        return await self._stack.__aexit__(*exc_info)
    finally:
        with contextlib.suppress(Exception):
            await self._rest.aclose()
        if self._on_finish is not None:
            self._on_finish(self.outcome)


async def _watch_drain_r(self, helpers):  # noqa: ANN001
    await self._draining.wait()
    await trio.sleep(self._drain_timeout)
    self._drained = True
    helpers.cancel()


def _end(self, error):  # noqa: ANN001
    self._state = 2
    if getattr(self, "_drained", False):
        error, self.outcome = Overloaded("packyd is shutting down; retry in a moment"), "drained"
    elif error is not None:
        self.outcome = f"error:{error.error_type}"
    elif self.outcome == "incomplete":
        self.outcome = "ok"
    return None if error is None else encode_events([error.body(self._request_id)])


async def __anext__(self):  # noqa: ANN001, N807
    if self._state == 0:
        self._state = 1
        return encode_events(self._first)
    if self._state == 2:
        raise StopAsyncIteration
    with trio.move_on_after(self._ping_interval) as quiet:
        try:
            item = await self._incoming.receive()
        except trio.EndOfChannel:
            tail = self._end(None)
            if tail is None:
                raise StopAsyncIteration from None
            return tail
    if quiet.cancelled_caught:
        if getattr(self, "_drained", False):
            return self._end(None)
        return s._PING
    if isinstance(item, PackydError):
        return self._end(item)
    events = None
    error = None
    while True:
        try:
            more = self._incoming.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        if isinstance(more, PackydError):
            error = more
            break
        if events is None:
            events = list(item)
        events.extend(more)
    data = encode_events(item if events is None else events)
    if error is not None:
        data += self._end(error)
    return data


for name, value in {"__aenter__": __aenter__, "__aexit__": __aexit__, "__anext__": __anext__,
                    "_watch_drain_r": _watch_drain_r, "_end": _end}.items():
    setattr(s.EventStreamBody, name, value)

from packyd.cli import main  # noqa: E402

sys.exit(main())
