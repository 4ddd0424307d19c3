"""Run packyd in-process on a real port, assembled the way ``packyd.daemon`` assembles it.

The same pieces as production: ``load_config`` on a real file, :class:`Services` with the
one httpx client (unbounded pool) and the capacity limiter, ``build_runtime`` (providers),
``attach_all`` (subsystems), ``create_app``, and the daemon's own ``upstream_client``,
``hypercorn_config`` and ``serve_until_drained``, bound to ``127.0.0.1:0`` inside the test's
nursery. Only the parts that belong to a process are left
out: signals, sd_notify and the watchdog (``tests/support/daemon.py`` runs the real
subprocess for those).

    server = await start_packyd(nursery, {"packycode": {"base-url": fake.url, ...}})
    async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers) as c: ...
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Mapping

import trio
import yaml

from packyd import __version__
from packyd.config import LoadResult, load_config
from packyd.daemon import build_runtime, hypercorn_config, serve_until_drained, upstream_client
from packyd.runtime import Runtime, RuntimeHolder
from packyd.server.app import create_app
from packyd.services import Services
from packyd.sse import SSEParser
from packyd.subsystems import attach_all

__all__ = ["PackydServer", "start_packyd", "packyd_config", "deep_merge", "parse_sse", "CLIENT_KEY", "UPSTREAM_KEY"]

#: the key clients present to packyd (``api-keys``)
CLIENT_KEY = "packyd-test-client-key-0001"
#: the Packycode key packyd sends upstream (what the fake sees as Bearer)
UPSTREAM_KEY = "sk-test-packycode-9f3a7c1e5b2d"


@dataclass
class PackydServer:
    """A running in-process packyd."""

    url: str  # http://127.0.0.1:PORT
    services: Services
    load: LoadResult
    config_path: str
    client_key: str = CLIENT_KEY
    stop: trio.Event = field(default_factory=trio.Event)

    @property
    def client_headers(self) -> dict[str, str]:
        return {"x-api-key": self.client_key, "anthropic-version": "2023-06-01"}

    def shutdown(self) -> None:
        """What SIGTERM does: mark draining (streams get ``drain-timeout``) and stop accepting."""
        self.services.draining.set()
        self.stop.set()


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, recursively for nested mappings."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def packyd_config(upstream_url: str, *, upstream_key: str = UPSTREAM_KEY, client_key: str = CLIENT_KEY,
                  **overrides: Any) -> dict[str, Any]:
    """A config.yaml (as a dict) serving from a fake Packycode at ``upstream_url``.

    ``overrides`` are merged in with kebab-case keys, e.g.
    ``packyd_config(url, packycode={"identity": "plain", "timeouts": {"idle": "3s"}})``.
    """
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "api-keys": [client_key],
        "drain-timeout": "2s",
        "packycode": {
            "base-url": upstream_url,
            "credentials": {"openai-api-key": upstream_key},
            "import-codex-cli": False,
        },
    }
    return deep_merge(config, overrides)


async def start_packyd(nursery: trio.Nursery, config: str | Mapping[str, Any], *,
                       env: Mapping[str, str] | None = None) -> PackydServer:
    """Start packyd with ``config`` (YAML text or a dict) in ``nursery``; returns once it listens.

    ``env`` is the environment the config loader sees (default: empty, so the developer's
    ``PACKYD_*`` variables and ``~/.codex`` never leak into a test).
    """
    text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
    handle, path = tempfile.mkstemp(prefix="packyd-test-", suffix=".yaml")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    load = load_config(path, env=dict(env or {}), codex_layer=None)
    if not load.ok:
        os.unlink(path)
        raise AssertionError("test config is invalid:\n" + "\n".join(str(p) for p in load.problems))
    assert load.config is not None
    holder = RuntimeHolder(Runtime(load=load, generation=1))
    services = Services(holder=holder, version=__version__, config_path=path,
                        limiter=trio.CapacityLimiter(load.config.max_upstream_streams))
    stop = trio.Event()

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with upstream_client() as http:
                services.http = http
                holder.current = build_runtime(load, 1, services)
                attach_all(services)
                app = create_app(services)
                assert load.config is not None
                hyper = hypercorn_config(load.config, "127.0.0.1", 0)
                async with trio.open_nursery() as inner:
                    binds = await inner.start(partial(serve_until_drained, app, hyper, services, stop))
                    task_status.started(binds[0])
        finally:
            os.unlink(path)

    url = await nursery.start(run)
    return PackydServer(url=url, services=services, load=holder.current.load, config_path=path, stop=stop)


def parse_sse(body: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """An SSE body as ``(event name, JSON payload)`` pairs, in order (for raw-wire assertions)."""
    import json

    parser = SSEParser()
    events = parser.feed(body) + parser.close()
    return [(event.event, json.loads(event.data)) for event in events]
