"""The SSE response body: one nursery per streamed request, owned by the body itself.

Quart iterates a response body inside ``async with body:``; entering the body opens the
request's nursery and leaving it closes it, so the nursery brackets exactly the time Quart
spends sending, and no nursery is ever held across a ``yield`` (trio's structured-concurrency
rule; see reference/stack.md §1.6). Inside it run:

* the pump, which pulls Anthropic event batches from the provider and hands each batch to
  Quart as one chunk (one ``send`` per upstream read, never per event, never buffered);
* a heartbeat, which sends ``ping`` while the upstream is silent (reasoning) so nothing in
  between times out;
* a drain watcher, which on shutdown gives the stream ``drain-timeout`` to finish and then
  ends it with an ``error`` event rather than letting Hypercorn cut the connection.

A client disconnect cancels quart-trio's request nursery, which cancels this one, which
closes the provider's iterator and with it the upstream HTTP stream.

When the provider fails mid-stream (a :class:`~packyd.errors.PackydError`), the body sends
an SSE ``error`` event at once and ends normally, leaving the interrupted content block open
as Anthropic's own API does: Claude Code then retries the turn without streaming.
"""

from __future__ import annotations

import contextlib
import math
from typing import AsyncIterator, Callable, Sequence

import trio
from quart.wrappers.response import ResponseBody

from .. import logs
from ..errors import ApiError, Overloaded, PackydError
from ..sse import encode_events

__all__ = ["EventStreamBody", "Batch"]

Batch = Sequence[dict]

_PING = encode_events([{"type": "ping"}])


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
        self._send, self._receive = trio.open_memory_channel[bytes](0)
        self.outcome = "incomplete"

    async def __aenter__(self) -> "EventStreamBody":
        nursery = await self._stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(self._pump)
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        try:
            return await self._stack.__aexit__(*exc_info)
        finally:
            with contextlib.suppress(Exception):
                await self._rest.aclose()  # type: ignore[attr-defined]
            if self._on_finish is not None:
                self._on_finish(self.outcome)

    def __aiter__(self) -> "EventStreamBody":
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def _pump(self) -> None:
        async with self._send:
            error: PackydError | None = None
            with trio.CancelScope() as upstream_scope:
                async with trio.open_nursery() as helpers:
                    batches, incoming = trio.open_memory_channel[Batch | PackydError](0)
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

    async def _read(self, batches: trio.MemorySendChannel[Batch | PackydError]) -> None:
        """Iterate the provider in its own task, so waiting for it can time out safely."""
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

    async def _forward(self, incoming: trio.MemoryReceiveChannel[Batch | PackydError]) -> PackydError | None:
        """Send batches as they come, with pings while the upstream is quiet."""
        while True:
            with trio.move_on_after(self._ping_interval) as quiet:
                try:
                    item = await incoming.receive()
                except trio.EndOfChannel:
                    return None
            if quiet.cancelled_caught:
                await self._send.send(_PING)
            elif isinstance(item, PackydError):
                return item
            else:
                await self._send.send(encode_events(item))

    async def _watch_drain(self, upstream_scope: trio.CancelScope) -> None:
        await self._draining.wait()
        await trio.sleep(self._drain_timeout)
        upstream_scope.cancel()


def ping_interval_for(idle_timeout: float) -> float:
    """Ping well inside any idle timeout a client or proxy is likely to have."""
    return max(1.0, min(10.0, math.floor(idle_timeout / 3)))
