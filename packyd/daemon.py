"""packyd's trio main: Hypercorn, signals, reload, drain, systemd notifications.

One nursery holds the process: the Hypercorn server (which gives each request its own
nursery), the signal loop and the watchdog pinger. The signal receiver is opened before
anything else and kept open to the very end, because trio coalesces repeated signals and a
signal arriving after the receiver is closed would get Python's default action (SIGHUP
would kill the process).

Shutdown (SIGTERM/SIGINT): ``STOPPING=1``, stop accepting connections, let open streams run
for ``drain-timeout``, then end the ones still open with an SSE ``error`` event (see
:mod:`packyd.server.streaming`); Hypercorn's own graceful deadline is set just after that, so
it never has to cut a stream. A second signal stops at once.
"""

from __future__ import annotations

import errno
import signal
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from . import __version__, logs, systemd
from .config import Config, LoadResult, load_config, mask_secret
from .config.codex import read_codex_layer
from .providers import build_providers
from .runtime import Runtime, RuntimeHolder, config_changes
from .server.app import count_inflight, create_app
from .services import Services
from .subsystems import attach_all

__all__ = ["ServeOptions", "serve_forever", "load_for", "build_runtime", "upstream_client", "hypercorn_config",
           "serve_until_drained"]


@dataclass(frozen=True)
class ServeOptions:
    config_path: str | None
    host: str | None = None
    port: int | None = None
    require_packycode: bool = False


def load_for(options: ServeOptions) -> LoadResult:
    """Load the config the way every start and reload does (raises OSError if unreadable)."""
    return load_config(options.config_path, require_packycode=options.require_packycode,
                       codex_layer=read_codex_layer)


def build_runtime(load: LoadResult, generation: int, services: Services) -> Runtime:
    return Runtime(load=load, generation=generation, providers=build_providers(load, services))


def _describe_packycode(load: LoadResult) -> dict[str, Any]:
    overridden = {path.removeprefix("packycode."): source for path, source in load.sources.items()
                  if path.startswith("packycode.") and source != "default"}
    return {
        "packycode": "usable" if load.packycode_usable else "unusable",
        "key": mask_secret(load.packycode_key) if load.packycode_key else None,
        "key_source": load.packycode_key_source,
        "sources": ",".join(f"{k}={v}" for k, v in sorted(overridden.items())) or "defaults",
    }


def _log_problems(load: LoadResult) -> None:
    for problem in load.problems:
        logs.log("error" if problem.severity == "error" else "warning", "config_problem",
                 where=problem.where, key=problem.path, problem=problem.what, fix=problem.fix)


async def serve_forever(options: ServeOptions, first: LoadResult) -> int:
    """Run until stopped; returns the process exit code."""
    assert first.config is not None
    config = first.config
    host = options.host or config.host
    port = options.port if options.port is not None else config.port
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
        holder = RuntimeHolder(Runtime(load=first, generation=1))
        services = Services(holder=holder, version=__version__, config_path=first.path,
                            require_packycode=options.require_packycode,
                            limiter=trio.CapacityLimiter(config.max_upstream_streams))
        async with upstream_client() as http:
            services.http = http
            holder.current = build_runtime(first, 1, services)
            attach_all(services)
            app = create_app(services)
            hyper = hypercorn_config(config, host, port)
            stop = trio.Event()
            async with trio.open_nursery() as nursery:

                async def run_server(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
                    await serve_until_drained(app, hyper, services, stop, task_status=task_status)
                    nursery.cancel_scope.cancel()  # the server is done: stop the signal loop and watchdog

                try:
                    binds = await nursery.start(run_server)
                except (OSError, BaseExceptionGroup) as failure:
                    error = _os_error_in(failure)
                    if error is None:
                        raise
                    hint = " (another process is using it; pick another port)" if error.errno == errno.EADDRINUSE else ""
                    logs.log("error", "listen_failed", address=hyper.bind[0], error=error.strerror, hint=hint or None)
                    nursery.cancel_scope.cancel()
                    return 1
                listening = " ".join(binds)
                logs.audit("start", version=__version__, listen=listening, config=first.path or "(built-in defaults)",
                           **_describe_packycode(first))
                if not first.packycode_usable:
                    logs.log("warning", "packycode_not_configured", reason=first.packycode_reason)
                _log_problems(first)
                systemd.ready(f"serving on {listening}; {_status_line(holder.current)}")
                nursery.start_soon(_signal_loop, signals, options, services, stop, nursery.cancel_scope)
                nursery.start_soon(_watchdog)
        logs.audit("stop", version=__version__, uptime_s=round(services.uptime))
    return 0


def upstream_client() -> httpx.AsyncClient:
    """The one upstream HTTP client of the process (DESIGN §9).

    Explicit timeouts, because httpx's default of 5 s would kill any stream whose first token
    takes longer (providers set tighter per-request deadlines); an unbounded pool, because a
    bounded one can wedge for good after cancellations (httpcore#1093) — ``services.limiter``
    bounds concurrency instead; no compression, so SSE is never held in a decoder.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=10.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=30.0),
        headers={"accept-encoding": "identity"},
    )


def hypercorn_config(config: Config, host: str, port: int) -> HypercornConfig:
    hyper = HypercornConfig()
    hyper.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    # Streams are ended by packyd at drain-timeout (with an error event); Hypercorn's own
    # deadline comes after, so it never has to cut one.
    hyper.graceful_timeout = config.drain_timeout + 2.0
    hyper.keep_alive_timeout = 10.0  # idle connections hold an fd until this expires
    hyper.accesslog = None
    hyper.errorlog = None  # packyd logs its own, content-free lines
    hyper.include_server_header = False
    return hyper


async def serve_until_drained(app: Any, hyper: HypercornConfig, services: Services, stop: trio.Event, *,
                              task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Run Hypercorn until ``stop``; then wait for in-flight requests and close the rest.

    Hypercorn 0.18's trio worker keeps an idle keep-alive connection open until its
    ``graceful_timeout`` (measured: a stop took the whole 27 s while Claude Code held a
    connection). packyd knows when nothing is in flight (``services.inflight``, counted around
    each HTTP request including its streamed body), so it cancels the server itself then;
    only idle connections are cut.
    """
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, count_inflight(app, services), hyper,
                                               shutdown_trigger=stop.wait, mode="asgi"))
            task_status.started(binds)
            await stop.wait()
            if services.inflight:
                with trio.move_on_after(services.holder.current.config.drain_timeout + 1.0):
                    await services.drained.wait()
            scope.cancel()


def _os_error_in(failure: BaseException) -> OSError | None:
    """The OSError behind a failed bind, which Hypercorn's nursery wraps in a group."""
    if isinstance(failure, OSError):
        return failure
    if isinstance(failure, BaseExceptionGroup):
        for inner in failure.exceptions:
            if (found := _os_error_in(inner)) is not None:
                return found
    return None


def _status_line(runtime: Runtime) -> str:
    load = runtime.load
    state = "packycode ready" if load.packycode_usable else "packycode NOT configured (see log)"
    return f"config generation {runtime.generation}; {state}"


async def _signal_loop(signals: Any, options: ServeOptions, services: Services, stop: trio.Event,
                       everything: trio.CancelScope) -> None:
    async for signum in signals:
        if signum == signal.SIGHUP:
            if services.draining.is_set():
                logs.log("info", "reload_ignored", reason="shutting down")
                continue
            reload(options, services)
        elif not services.draining.is_set():
            drain = services.holder.current.config.drain_timeout
            logs.audit("stopping", signal=signal.Signals(signum).name, drain_timeout_s=drain)
            systemd.stopping(f"draining open streams (up to {drain:g}s)")
            services.draining.set()
            stop.set()
        else:
            logs.audit("stop_now", signal=signal.Signals(signum).name)
            everything.cancel()


def reload(options: ServeOptions, services: Services) -> bool:
    """Re-read and validate the config; swap it in or keep the old one. Always ends READY=1."""
    systemd.reloading()
    holder = services.holder
    old = holder.current
    try:
        load = load_for(options)
    except OSError as error:
        logs.audit("reload_failed", problems=1, reason=f"cannot read {options.config_path}: {error.strerror}")
        holder.last_reload = {"result": "failed", "problems": 1, "at": _now()}
        systemd.ready(f"reload failed (config unreadable), keeping generation {old.generation}")
        return False
    if not load.ok:
        _log_problems(load)
        logs.audit("reload_failed", problems=len(load.errors), kept_generation=old.generation)
        holder.last_reload = {"result": "failed", "problems": len(load.errors), "at": _now()}
        systemd.ready(f"reload failed ({len(load.errors)} problems), keeping generation {old.generation}")
        return False
    new = build_runtime(load, old.generation + 1, services)
    changed = config_changes(old.config, new.config)
    holder.swap(new)
    # Settings read outside the runtime snapshot: apply them here so a reload really does.
    if new.config.log_level != old.config.log_level:
        logs.configure(new.config.log_level)
    services.limiter.total_tokens = new.config.max_upstream_streams
    restart_needed = [key for key in changed if key in {"host", "port"}]
    logs.audit("reload", generation=new.generation, changed=changed or "nothing", **_describe_packycode(load))
    if restart_needed:
        logs.log("warning", "restart_needed", changed=restart_needed,
                 hint="host and port apply at the next restart; still serving on the old address")
    _log_problems(load)
    holder.last_reload = {"result": "ok", "problems": 0, "at": _now(), "changed": changed,
                          "restart_needed": restart_needed}
    note = "; restart to apply host/port" if restart_needed else ""
    systemd.ready(f"reloaded; {_status_line(new)}{note}")
    return True


def _now() -> float:
    import time

    return time.time()


async def _watchdog() -> None:
    interval = systemd.watchdog_interval()
    if interval is None:
        return
    while True:
        systemd.watchdog_ping()
        await trio.sleep(interval)
