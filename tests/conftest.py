"""Fixtures shared by packyd's integration tests.

* ``fake_packycode``: a :class:`~tests.support.fake_packycode.FakePackycode` serving on
  127.0.0.1 in the test's nursery (script it with ``fake_packycode.script(...)``).
* ``start_stack(**overrides)``: starts an in-process packyd pointed at that fake and returns a
  :class:`Stack`; ``overrides`` are merged into the config (kebab-case keys), e.g.
  ``await start_stack(packycode={"identity": "plain"})``.
* ``stack``: ``start_stack()`` with the defaults.
* ``packyd_log``: packyd's log lines of the test, as a list of strings (level debug).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

import pytest
import trio

from packyd import logs
from tests.support.fake_packycode import FakePackycode, RecordedRequest
from tests.support.inprocess import PackydServer, packyd_config, start_packyd


@dataclass
class Stack:
    """A fake Packycode and a packyd serving from it."""

    fake: FakePackycode
    server: PackydServer

    @property
    def url(self) -> str:
        """packyd's base URL (give it to clients as ``base_url``)."""
        return self.server.url

    @property
    def client_key(self) -> str:
        return self.server.client_key

    @property
    def client_headers(self) -> dict[str, str]:
        return self.server.client_headers

    @property
    def upstream_requests(self) -> list[RecordedRequest]:
        """What packyd sent to the fake's ``/v1/responses``, in order."""
        return self.fake.upstream_requests


@pytest.fixture
async def fake_packycode(nursery: trio.Nursery) -> FakePackycode:
    fake = FakePackycode()
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
async def start_stack(nursery: trio.Nursery, fake_packycode: FakePackycode) -> Callable[..., Awaitable[Stack]]:
    async def start(**overrides: Any) -> Stack:
        server = await start_packyd(nursery, packyd_config(fake_packycode.url, **overrides))
        return Stack(fake_packycode, server)

    return start


@pytest.fixture
async def stack(start_stack: Callable[..., Awaitable[Stack]]) -> Stack:
    return await start_stack()


class _LogLines(list):  # type: ignore[type-arg]
    def __init__(self, buffer: io.StringIO) -> None:
        super().__init__()
        self._buffer = buffer

    def refresh(self) -> "_LogLines":
        self[:] = self._buffer.getvalue().splitlines()
        return self


@pytest.fixture
def packyd_log() -> Iterator[_LogLines]:
    """packyd's log of this test (call ``.refresh()`` to re-read)."""
    buffer = io.StringIO()
    logs.configure("debug", stream=buffer, timestamps=False)
    lines = _LogLines(buffer)
    try:
        yield lines
    finally:
        lines.refresh()
        import sys

        logs.configure("info", stream=sys.stderr)
