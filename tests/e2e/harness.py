"""End-to-end harness (used by tests/e2e/conftest.py and the tests): the real Claude Code CLI → packyd (a subprocess, as in production) → a
scripted fake Packycode.

* The CLI is the one pinned in ``tests/e2e/package-lock.json``, installed by
  ``bash tests/e2e/install-claude-code``. When it is missing or does not run, every test here
  **fails** (it never skips): an e2e suite that quietly skips proves nothing.
* packyd runs as ``python -m packyd serve --config …`` with a real notify socket
  (:class:`tests.support.daemon.PackydProcess`), its Packycode ``base-url`` pointing at a
  :class:`~tests.support.fake_packycode.FakePackycode` served in the test's own nursery, so
  tests script replies and read the recorded upstream requests directly.
* Claude Code runs in print mode (``-p``) with a throwaway ``HOME`` and project directory and an
  environment built from nothing (``env -i`` style): base URL, a Bearer token, nonessential
  traffic, telemetry, auto-update and error reporting off, small retry counts and timeouts.
* Nothing may leave 127.0.0.1. ``HTTPS_PROXY``/``HTTP_PROXY`` point at a trap proxy that answers
  every attempt with 403 at once (so a stray call can never hang a test) and records it;
  ``NO_PROXY`` exempts loopback, so only traffic to somewhere else reaches the trap. Every test
  asserts the trap saw nothing (see ``test_no_outside_traffic`` for the proof that it would).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import trio

from tests.support.daemon import PackydProcess
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_packycode import FakePackycode, RecordedRequest
from tests.support.inprocess import deep_merge

HERE = Path(__file__).resolve().parent
CLAUDE = HERE / "node_modules" / ".bin" / "claude"
CLIENT_KEY = "packyd-e2e-client-key-7c41"
UPSTREAM_KEY = "sk-e2e-packycode-5d2e9a"
FALLBACK_KEY = "sk-ant-e2e-fallback-1b7f"


# --------------------------------------------------------------------------- trap proxy


class TrapProxy:
    """An HTTP proxy that refuses everything at once and remembers the request lines."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.port = 0

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(5):
                data = await stream.receive_some(65536)
                self.attempts.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                await stream.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --------------------------------------------------------------------------- a Claude Code run


@dataclass
class ClaudeRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    home: Path
    #: ``--output-format json``: the result object; ``stream-json``: the final ``result`` line
    result: dict[str, Any] = field(default_factory=dict)
    #: ``stream-json`` lines, in order
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """What the user sees as the answer (or the error) in print mode."""
        return str(self.result.get("result", ""))

    @property
    def is_error(self) -> bool:
        return bool(self.result.get("is_error"))

    def describe(self) -> str:
        return (f"exit {self.returncode} after {self.seconds:.1f}s\n--- stdout ---\n{self.stdout[-4000:]}"
                f"\n--- stderr ---\n{self.stderr[-2000:]}")

    def of_type(self, kind: str, subtype: str | None = None) -> list[dict[str, Any]]:
        return [line for line in self.lines
                if line.get("type") == kind and (subtype is None or line.get("subtype") == subtype)]


def claude_env(base_url: str, proxy: str, home: Path, **extra: str) -> dict[str, str]:
    """The whole environment Claude Code gets (nothing inherited except PATH); ``extra`` overrides,
    and an empty value removes a variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": CLIENT_KEY,
        # no calls anywhere but the base URL: telemetry, auto-update, error reporting, feature flags
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_COST_WARNINGS": "1",
        # anything that still tries to go out hits the trap, which refuses at once
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "https_proxy": proxy,
        "http_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        # small retries and timeouts keep error cases to seconds
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "API_TIMEOUT_MS": "30000",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v}  # "" removes a variable


# --------------------------------------------------------------------------- the stack


@dataclass
class E2E:
    """A fake Packycode, packyd serving from it (subprocess), and a way to run Claude Code."""

    fake: FakePackycode
    packyd: PackydProcess
    url: str
    trap: TrapProxy
    claude_bin: Path
    workdir: Path
    config: dict[str, Any]
    fallback: FakeAnthropic | None = None
    runs: list[ClaudeRun] = field(default_factory=list)

    @property
    def upstream_requests(self) -> list[RecordedRequest]:
        return self.fake.upstream_requests

    def upstream_json(self) -> list[dict[str, Any]]:
        return [r.json for r in self.upstream_requests]

    def new_home(self) -> Path:
        home = self.workdir / f"home{len(self.runs)}"
        home.mkdir()
        return home

    async def claude(self, prompt: str, *, stream_json: bool = False, args: tuple[str, ...] = (),
                     env: Mapping[str, str] | None = None, home: Path | None = None, timeout: float = 120,
                     project: Path | None = None) -> ClaudeRun:
        """Run ``claude -p prompt`` to the end and parse its output (json or stream-json)."""
        home = home or self.new_home()
        project = project or (self.workdir / "project")
        project.mkdir(exist_ok=True)
        fmt = ("--output-format", "stream-json", "--verbose") if stream_json else ("--output-format", "json")
        command = [str(self.claude_bin), "-p", prompt, *fmt, *args]
        started = time.monotonic()
        with trio.fail_after(timeout):
            proc = await trio.run_process(command, env=claude_env(self.url, self.trap.url, home, **(env or {})),
                                          cwd=str(project), stdin=subprocess.DEVNULL, capture_stdout=True,
                                          capture_stderr=True, check=False)
        run = ClaudeRun(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                        proc.stderr.decode("utf-8", "replace"), time.monotonic() - started, home)
        self.runs.append(run)
        if stream_json:
            for line in run.stdout.splitlines():
                line = line.strip()
                if line.startswith("{"):
                    try:
                        run.lines.append(json.loads(line))
                    except ValueError:
                        pass
            results = run.of_type("result")
            run.result = results[-1] if results else {}
        else:
            try:
                run.result = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
            except (ValueError, IndexError):
                run.result = {}
        if not run.result:
            raise AssertionError("Claude Code printed no result object\n" + run.describe() + self.log_tail())
        return run

    def log_tail(self) -> str:
        return "\n--- packyd log ---\n" + self.packyd.log()[-4000:]


def e2e_config(upstream_url: str, port: int, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "api-keys": [CLIENT_KEY],
        "log-level": "info",
        "drain-timeout": "2s",
        "packycode": {
            "base-url": upstream_url,
            "credentials": {"openai-api-key": UPSTREAM_KEY},
            "import-codex-cli": False,
            "timeouts": {"connect": "2s", "first-byte": "15s", "idle": "15s"},
            "retries": {"max-attempts": 1, "max-backoff": "1s"},
        },
    }
    return deep_merge(config, overrides)


