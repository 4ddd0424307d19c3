"""The SSE response body: one nursery per streamed request, owned by the body itself.

Quart iterates a response body inside ``async with body:``; entering the body opens the
request's nursery and leaving it closes it, so the nursery brackets exactly the time Quart
spends sending, and no nursery is ever held across a ``yield`` (trio's structured-concurrency
rule; see reference/stack.md §1.6). Inside it run two small tasks:

* the reader, which pulls Anthropic event batches from the provider (one batch per upstream
  read) into a short channel. It is a task of its own so that waiting for the upstream can
  time out for a ``ping`` without cancelling a read in the middle;
* a drain watcher, which on shutdown gives the stream ``drain-timeout`` to finish and then
  stops the reader, so the stream ends with an ``error`` event rather than Hypercorn cutting
  the connection.

Quart's own task does the rest in :meth:`EventStreamBody.__anext__`: it takes the next batch,
adds any batches that are already waiting, and returns them encoded as one chunk, so a burst
of upstream events costs one socket write, and a quiet upstream gets a ``ping`` instead.
Nothing is held back: a batch is handed to Quart as soon as Quart asks for more, and the
channel only fills while the client reads slower than the upstream writes.

A client disconnect cancels quart-trio's request nursery, which cancels this one, which
closes the provider's iterator and with it the upstream HTTP stream.

When the provider fails mid-stream (a :class:`~packyd.errors.PackydError`), the body sends
an SSE ``error`` event at once and ends normally, leaving the interrupted content block open
as Anthropic's own API does: Claude Code then retries the turn without streaming.
"""

from __future__ import annotations

import contextlib
import math
from types import TracebackType
from typing import AsyncIterator, Callable, Sequence, Union

import trio
from quart.wrappers.response import ResponseBody

from .. import logs
from ..errors import ApiError, Overloaded, PackydError
from ..sse import encode_events

__all__ = ["EventStreamBody", "Batch", "ping_interval_for"]

Batch = Sequence[dict]
_Item = Union[Batch, PackydError]

_PING = encode_events([{"type": "ping"}])
#: batches the reader may run ahead of a slow client before the upstream read waits
_AHEAD = 8
_FIRST, _STREAMING, _DONE = range(3)


class EventStreamBody(ResponseBody):
    """Streams provider event batches as SSE; see the module docstring for the tasks it owns."""

    def __init__(
        self,
        first: Batch,
        rest: AsyncIterator[Batch],
        *,
        ping_interval: float,
        draining: trio.Event,
        drain_timeout: float,
        request_id: str,
        on_finish: Callable[[str], None] | None = None,
    ) -> None:
        self._first = first
        self._rest = rest
        self._ping_interval = ping_interval
        self._draining = draining
        self._drain_timeout = drain_timeout
        self._request_id = request_id
        self._on_finish = on_finish
        self._stack = contextlib.AsyncExitStack()
        self._incoming: trio.MemoryReceiveChannel[_Item] | None = None
        self._state = _FIRST
        self._drained = False
        # The reader's own scope: the nursery's scope also covers Quart's sending (it runs in
        # the nursery's body), so only this one may be cancelled while the stream goes on.
        self._reader_scope = trio.CancelScope()
        self.outcome = "incomplete"

    async def __aenter__(self) -> "EventStreamBody":
        nursery = await self._stack.enter_async_context(trio.open_nursery())
        batches, self._incoming = trio.open_memory_channel[_Item](_AHEAD)
        nursery.start_soon(self._read, batches)
        nursery.start_soon(self._watch_drain)
        self._helpers = nursery.cancel_scope
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,  # type: ignore[override]
                        tb: TracebackType | None) -> bool | None:
        self._helpers.cancel()  # the client has all it will get (or is gone): stop reading
        if self._state != _DONE:
            self.outcome = "client_closed"  # Quart stopped asking: the client went away
        try:
            return await self._stack.__aexit__(exc_type, exc_value, tb)  # a nursery may swallow its own Cancelled
        finally:
            try:
                # Shielded and bounded: after a disconnect this runs in a cancelled scope, and
                # the upstream must still be closed (and the request logged) now, not later.
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await self._rest.aclose()  # type: ignore[attr-defined]
            except Exception:
                pass  # the provider's cleanup failing must not hide the request's own outcome
            finally:
                if self._on_finish is not None:
                    self._on_finish(self.outcome)

    def __aiter__(self) -> "EventStreamBody":
        return self

    async def __anext__(self) -> bytes:
        if self._state == _FIRST:
            self._state = _STREAMING
            return encode_events(self._first)
        if self._state == _DONE:
            raise StopAsyncIteration
        assert self._incoming is not None
        with trio.move_on_after(self._ping_interval) as quiet:
            try:
                item = await self._incoming.receive()
            except trio.EndOfChannel:
                return self._end(None)
        if quiet.cancelled_caught:
            return _PING
        if isinstance(item, PackydError):
            return self._end(item)
        return self._with_waiting(item)

    def _with_waiting(self, batch: Batch) -> bytes:
        """``batch`` plus every batch already waiting, as one chunk (and an error that follows)."""
        assert self._incoming is not None
        merged: list[dict] | None = None
        while True:
            try:
                item = self._incoming.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(item, PackydError):
                data = encode_events(batch if merged is None else merged)
                return data + self._end(item)
            if merged is None:
                merged = list(batch)
            merged.extend(item)
        return encode_events(batch if merged is None else merged)

    def _end(self, error: PackydError | None) -> bytes:
        """The last chunk of the stream: an error event, or nothing after a complete answer."""
        self._state = _DONE
        if self._drained:
            error = Overloaded("packyd is shutting down; retry in a moment")
            self.outcome = "drained"
        elif error is not None:
            self.outcome = f"error:{error.error_type}"
        else:
            self.outcome = "ok"
        if error is None:
            raise StopAsyncIteration
        return encode_events([error.body(self._request_id)])

    async def _read(self, batches: trio.MemorySendChannel[_Item]) -> None:
        """Move the provider's batches into the channel; failures travel the same way."""
        with self._reader_scope:
            async with batches:
                try:
                    async for batch in self._rest:
                        await batches.send(batch)
                except PackydError as failure:
                    await batches.send(failure)
                except Exception as crash:  # a bug must still end the stream with an event
                    logs.log("error", "stream_crash", request_id=self._request_id, error=type(crash).__name__)
                    await batches.send(ApiError("packyd hit an internal error while streaming; "
                                                "the request id is in packyd's log"))

    async def _watch_drain(self) -> None:
        await self._draining.wait()
        await trio.sleep(self._drain_timeout)
        self._drained = True
        self._reader_scope.cancel()  # its channel closes, and __anext__ ends the stream


def ping_interval_for(idle_timeout: float) -> float:
    """Ping well inside any idle timeout a client or proxy is likely to have."""
    return max(1.0, min(10.0, math.floor(idle_timeout / 3)))
