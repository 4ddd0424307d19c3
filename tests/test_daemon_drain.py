"""SIGTERM while a Claude Code stream is open: the stream ends cleanly, packyd exits 0.

packyd runs as a subprocess (as under systemd) against a fake Packycode in the test's
nursery. A stream that finishes within ``drain-timeout`` completes normally; one that would
outlast it receives an SSE ``error`` event and a proper end of the chunked body, never a
cut connection (which Claude Code would report as a network failure).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import trio
import yaml

from tests.fixtures.streams import text_stream
from tests.support.daemon import PackydProcess, free_port
from tests.support.fake_packycode import FakePackycode, sse_reply
from tests.support.inprocess import packyd_config, parse_sse

REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True,
           "messages": [{"role": "user", "content": "count slowly"}]}


async def start_daemon(tmp_path: Path, upstream_url: str, drain: str) -> tuple[PackydProcess, str, dict[str, str]]:
    port = free_port()
    config = packyd_config(upstream_url, port=port, **{"drain-timeout": drain})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    daemon = PackydProcess(["serve", "--config", str(path)], home=tmp_path).start()
    await trio.to_thread.run_sync(daemon.wait_ready)
    return daemon, f"http://127.0.0.1:{port}", {"x-api-key": config["api-keys"][0]}


async def stream_with_sigterm(daemon: PackydProcess, base: str, headers: dict[str, str]) -> tuple[bytes, float]:
    """Read the first event, send SIGTERM, then read to the end; returns body and seconds after SIGTERM."""
    body = b""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        async with client.stream("POST", "/v1/messages", json=REQUEST) as response:
            assert response.status_code == 200
            chunks = response.aiter_raw()
            body += await chunks.__anext__()
            daemon.signal(signal.SIGTERM)
            sent = time.monotonic()
            async for chunk in chunks:  # raises RemoteProtocolError on a cut body
                body += chunk
            return body, time.monotonic() - sent


async def test_sigterm_lets_a_short_stream_finish(nursery: trio.Nursery, tmp_path: Path) -> None:
    fake = FakePackycode()
    url = await nursery.start(fake.serve)
    fake.script(sse_reply(text_stream("one two three four", pieces=4), per_event=True, delay=0.2))
    daemon, base, headers = await start_daemon(tmp_path, url, "10s")
    try:
        body, _ = await stream_with_sigterm(daemon, base, headers)
        events = [name for name, _ in parse_sse(body)]
        assert events[-1] == "message_stop" and "error" not in events
        assert daemon.notify is not None
        await trio.to_thread.run_sync(daemon.notify.wait_for, "STOPPING", "1", 5)
        assert await trio.to_thread.run_sync(daemon.wait, 15) == 0
    finally:
        daemon.stop()


async def test_sigterm_ends_a_long_stream_with_an_error_event(nursery: trio.Nursery, tmp_path: Path) -> None:
    fake = FakePackycode()
    url = await nursery.start(fake.serve)
    # 60 events 0.25 s apart: 15 s of stream, far beyond the 1 s drain deadline.
    fake.script(sse_reply(text_stream("x " * 60, pieces=60), per_event=True, delay=0.25))
    daemon, base, headers = await start_daemon(tmp_path, url, "1s")
    try:
        body, after = await stream_with_sigterm(daemon, base, headers)
        events = parse_sse(body)
        name, payload = events[-1]
        assert name == "error"
        assert payload["error"]["type"] == "overloaded_error"
        assert "shutting down" in payload["error"]["message"]
        assert "message_stop" not in [n for n, _ in events]
        assert 0.9 < after < 5, f"the stream should end at the drain deadline, ended after {after:.2f}s"
        assert await trio.to_thread.run_sync(daemon.wait, 15) == 0
        # The upstream stream was closed, not left running after the client's stream ended.
        assert fake.requests[0].disconnected_at is not None
    finally:
        daemon.stop()
    assert "outcome=drained" in daemon.log()
