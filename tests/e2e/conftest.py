"""Fixtures of the end-to-end suite; the machinery is in :mod:`tests.e2e.harness`.

* ``claude_cli``: the pinned CLI (a test **fails**, never skips, when it cannot run);
* ``start_e2e(fallback=False, upstream_url=None, **config_overrides)``: the whole stack;
* ``e2e``: ``start_e2e()`` with the defaults.

Every test in this directory is marked ``e2e``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
import trio
import yaml

from tests.e2e.harness import CLAUDE, E2E, FALLBACK_KEY, HERE, TrapProxy, e2e_config
from tests.support.daemon import PackydProcess, free_port
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_packycode import FakePackycode
from tests.support.inprocess import deep_merge


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def _locked_version() -> str:
    lock = json.loads((HERE / "package-lock.json").read_text())
    return lock["packages"]["node_modules/@anthropic-ai/claude-code"]["version"]


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    """The pinned CLI; a failure (not a skip) when it cannot run."""
    hint = "install it with: bash tests/e2e/install-claude-code (needs node, npm and the npm registry)"
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code is not installed at {CLAUDE}; {hint}", pytrace=False)
    try:
        out = subprocess.run([str(CLAUDE), "--version"], capture_output=True, text=True, timeout=60,
                             env={"PATH": os.environ.get("PATH", ""), "HOME": tempfile.mkdtemp(prefix="cc-version-")})
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"Claude Code at {CLAUDE} does not run ({error}); {hint}", pytrace=False)
    want = _locked_version()
    if out.returncode != 0 or not out.stdout.startswith(want):
        pytest.fail(f"Claude Code at {CLAUDE} is not {want} (exit {out.returncode}: {out.stdout or out.stderr}); {hint}",
                    pytrace=False)
    return CLAUDE


@pytest.fixture
async def start_e2e(nursery: trio.Nursery, claude_cli: Path,
                    tmp_path: Path) -> Callable[..., Awaitable[E2E]]:
    """``await start_e2e(fallback=True, packycode={...})``: the whole stack, torn down after the test."""
    started: list[E2E] = []

    async def start(*, fallback: bool = False, upstream_url: str | None = None, **overrides: Any) -> E2E:
        trap = TrapProxy()
        await nursery.start(trap.serve)
        fake = FakePackycode()
        await nursery.start(fake.serve)
        extra: dict[str, Any] = {}
        fake_anthropic = None
        if fallback:
            fake_anthropic = FakeAnthropic()
            await nursery.start(fake_anthropic.serve)
            extra = {"providers": [{"name": "fallback-claude", "type": "anthropic", "base-url": fake_anthropic.url,
                                    "api-key": FALLBACK_KEY}],
                     "routing": {"fallback": ["packycode", "fallback-claude"]}}
        port = free_port()
        config = e2e_config(upstream_url or fake.url, port, **deep_merge(extra, overrides))
        workdir = Path(tempfile.mkdtemp(prefix="e2e-", dir=tmp_path))
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        packyd = PackydProcess(["serve", "--config", str(path)], home=workdir / "packyd-home")
        (workdir / "packyd-home").mkdir()
        packyd.start()
        try:
            await trio.to_thread.run_sync(packyd.wait_ready)
        except BaseException:
            packyd.stop()
            raise
        e2e = E2E(fake=fake, packyd=packyd, url=f"http://127.0.0.1:{port}", trap=trap, claude_bin=claude_cli,
                  workdir=workdir, config=config, fallback=fake_anthropic)
        started.append(e2e)
        return e2e

    yield start  # type: ignore[misc]

    for e2e in started:
        await trio.to_thread.run_sync(e2e.packyd.stop)
        assert not e2e.trap.attempts, f"Claude Code tried to reach the outside world: {e2e.trap.attempts}"
        shutil.rmtree(e2e.workdir, ignore_errors=True)


@pytest.fixture
async def e2e(start_e2e: Callable[..., Awaitable[E2E]]) -> E2E:
    return await start_e2e()
