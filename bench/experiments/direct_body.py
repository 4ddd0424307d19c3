"""Experiment (not a proposal as is): the response body iterates the provider directly in
Quart's task -- no pump task, no channels, no pings/drain -- to see the floor of this stack."""
import sys
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), "..", ".."))
from packyd.server import streaming as s
from packyd.sse import encode_events
from packyd.errors import PackydError

async def __aenter__(self):
    self._started = False
    return self

async def __aexit__(self, *exc):
    await self._rest.aclose()
    if self._on_finish is not None:
        self._on_finish(self.outcome)

async def __anext__(self):
    if not self._started:
        self._started = True
        return encode_events(self._first)
    if self.outcome != "incomplete":
        raise StopAsyncIteration
    try:
        batch = await self._rest.__anext__()
    except StopAsyncIteration:
        self.outcome = "ok"
        raise
    except PackydError as error:
        self.outcome = f"error:{error.error_type}"
        return encode_events([error.body(self._request_id)])
    return encode_events(batch)

s.EventStreamBody.__aenter__ = __aenter__
s.EventStreamBody.__aexit__ = __aexit__
s.EventStreamBody.__anext__ = __anext__
from packyd.cli import main
sys.exit(main())
