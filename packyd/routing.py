"""Choosing providers for a request: retries, fallback and circuit breakers, before the first byte.

A provider turns a parsed Anthropic request into batches of Anthropic stream events
(:class:`packyd.providers.base.Provider`) and may fail (a :class:`PackydError`) up to its
first batch; after that, bytes have reached the client and a failure can only become an SSE
``error`` event. So everything that hides upstream trouble from the client happens here,
before the first batch:

1. **Order**: ``routing.fallback``, minus providers that are not usable in this
   configuration, minus those switched off at runtime (``POST /v0/providers/{name}/disable``,
   kept in ``services.extras["disabled_providers"]``), minus those whose circuit is open.
2. **Retries** on the same provider (:mod:`packyd.retry`): transient failures only, with
   backoff and jitter, bounded by ``packycode.retries`` and by the provider's first-byte
   budget for this request.
3. **Fallback** to the next provider when a provider gives up, unless the failure is about
   the request itself (invalid request, context overflow, body too large): another upstream
   would reject it the same way, and Claude Code must see that 400 to compact or to show it.
4. **Circuit breakers** (:mod:`packyd.breaker`) learn from every attempt.

When every provider fails, the client gets the *first* provider's error: it is the one the
operator configured as primary, its message names the setting to fix, and a fallback's
unrelated failure must not mask, say, a quota message or a context overflow (CCR #1799).

The provider that served is in ``ctx.provider`` (the ``x-packyd-provider`` header and the
request log line); metrics are recorded here because only routing sees every attempt.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any, AsyncIterator, Mapping, Sequence

import trio

from . import logs
from .breaker import OPEN, STATE_VALUES, BreakerBoard, BreakerSettings, CircuitBreaker, counts_as_failure
from .errors import ApiError, InvalidRequest, PackydError, RequestTooLarge, Unavailable
from .metrics import PackydMetrics
from .retry import RetryPolicy
from .runtime import Runtime
from .services import Services

__all__ = ["RequestContext", "route_events", "NOT_CONFIGURED", "CircuitOpen", "attach", "may_fall_back"]

Batch = Sequence[dict]

NOT_CONFIGURED = "packyd has no usable provider: "

#: upstream codes of a model the provider does not serve: another provider may serve it
_MODEL_CODES = frozenset({"model_not_found", "unsupported_model", "model_not_supported"})


@dataclass
class RequestContext:
    """Per-request metadata, filled in as the request travels (never content)."""

    request_id: str
    session_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    provider: str | None = None
    upstream_model: str | None = None
    attempts: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    #: the client's decoded body, for passthrough providers only; never logged or shown
    payload: Mapping[str, Any] | None = field(default=None, repr=False)
    #: providers that failed or were skipped before the one that served, in order
    passed_over: list[str] = field(default_factory=list)

    @classmethod
    def from_http(cls, request_id: str, headers: Mapping[str, str], parsed: Any,
                  payload: Mapping[str, Any] | None = None) -> "RequestContext":
        from .translate.request import extract_session_id

        session = extract_session_id(headers, parsed.metadata_user_id)
        kept = {name: headers[name] for name in ("anthropic-version", "anthropic-beta", "user-agent")
                if name in headers}
        return cls(request_id=request_id, session_id=session, headers=kept, payload=payload)


class CircuitOpen(ApiError):
    """Every usable provider's circuit is open. 503 with ``retry-after`` = the shortest time
    to the next probe: Claude Code waits that long and retries (by then a probe can go)."""

    status = 503


def may_fall_back(error: PackydError) -> bool:
    """Could another provider serve what this one refused? Not when the request is the
    problem (400s, except a model this provider does not have; 413)."""
    if isinstance(error, RequestTooLarge):
        return False
    if isinstance(error, InvalidRequest):
        return getattr(error, "upstream_code", None) in _MODEL_CODES
    return True


def _board(services: Services) -> BreakerBoard:
    board = services.extras.get("breakers")
    if board is None:  # routing used without attach() (unit tests): defaults, no metrics
        board = services.extras["breakers"] = BreakerBoard(BreakerSettings())
    return board


def _policy(runtime: Runtime) -> RetryPolicy:
    retries = runtime.config.packycode.retries
    return RetryPolicy(max_attempts=retries.max_attempts, max_backoff=retries.max_backoff)


def _first_byte_budget(provider: Any) -> float:
    timeouts = getattr(getattr(provider, "config", None), "timeouts", None)
    return float(getattr(timeouts, "first_byte", 120.0))


def _no_provider_reason(services: Services, runtime: Runtime) -> str:
    disabled: set[str] = services.extras.get("disabled_providers", set())
    usable = [name for name in runtime.config.routing.fallback if name in runtime.providers]
    if usable and all(name in disabled for name in usable):
        return (f"every provider in routing.fallback is disabled at runtime ({', '.join(usable)}); "
                f"run `packyd enable {usable[0]}`")
    return runtime.load.packycode_reason or "no provider in routing.fallback is enabled and configured"


async def route_events(services: Services, runtime: Runtime, request: Any,
                       ctx: RequestContext) -> AsyncIterator[Batch]:
    """Batches of the first provider that answers; see the module docstring."""
    disabled: set[str] = services.extras.get("disabled_providers", set())
    metrics: PackydMetrics | None = services.extras.get("metrics")
    board = _board(services)
    policy = _policy(runtime)
    names = [name for name in runtime.config.routing.fallback if name in runtime.providers and name not in disabled]
    if not names:
        raise Unavailable(NOT_CONFIGURED + _no_provider_reason(services, runtime))
    started = trio.current_time()
    errors: list[tuple[str, PackydError]] = []
    upstream_models: dict[str, str | None] = {}
    circuit_waits: list[float] = []

    for name in names:
        provider = runtime.providers[name]
        breaker = board.get(name)
        if not breaker.allow():
            circuit_waits.append(breaker.retry_in())
            ctx.passed_over.append(name)
            logs.log("debug", "provider_skipped", request_id=ctx.request_id, provider=name, reason="circuit_open",
                     retry_in_s=round(breaker.retry_in(), 1))
            continue
        deadline = trio.current_time() + _first_byte_budget(provider)
        attempt = 0
        while True:
            attempt += 1
            ctx.provider = name
            attempt_started = trio.current_time()
            events = provider.events(request, ctx)
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                error: PackydError = ApiError(f"{name} ended its answer before it started")
                error.retryable = True  # type: ignore[attr-defined]
            except PackydError as raised:
                error = raised
            except BaseException:
                breaker.release()
                with trio.CancelScope(shield=True):
                    await events.aclose()
                raise
            else:
                breaker.success()
                if ctx.passed_over:
                    _note_fallback(ctx, name, errors, metrics)
                async for batch in _serve(events, first, name, breaker, ctx, request, metrics, started,
                                          attempt_started):
                    yield batch
                return
            await events.aclose()
            if counts_as_failure(error):
                breaker.failure(error.error_type, error.message)
            else:
                breaker.release()
            if metrics is not None:
                metrics.upstream_errors.inc(name, error.error_type, "before_first_byte")
            pause = policy.pause_before_retry(error, attempt, deadline - trio.current_time())
            if pause is None:
                break
            logs.log("info", "upstream_retry", request_id=ctx.request_id, provider=name, attempt=attempt,
                     error_type=error.error_type, status=error.status,
                     code=getattr(error, "upstream_code", None), pause_s=round(pause, 2))
            if metrics is not None:
                metrics.retries.inc(name, error.error_type)
            await trio.sleep(pause)
            if not breaker.allow():
                break  # the circuit opened meanwhile (other requests failed too)
        errors.append((name, error))
        upstream_models[name] = ctx.upstream_model
        ctx.passed_over.append(name)
        if not may_fall_back(error):
            break

    failure = _final_error(errors, circuit_waits, names, board)
    if failure.status >= 500 and not isinstance(failure, CircuitOpen):
        # packyd has retried and fallen back already. Claude Code would retry a 5xx ten times
        # (a 529 three times) and then print only "Repeated 529 Overloaded errors", never this
        # message (measured on 2.1.330): stop it so the user reads what is wrong at once. An
        # open circuit is the exception: its retry-after says when a probe will go through.
        failure.headers.setdefault("x-should-retry", "false")
    failed_provider = errors[0][0] if errors else names[0]
    ctx.provider = failed_provider  # the log line and metrics name the provider whose error the client gets
    ctx.upstream_model = upstream_models.get(failed_provider, ctx.upstream_model)
    if metrics is not None:
        model = _model_label(ctx, request)
        metrics.requests.inc(failed_provider, model, str(failure.status))
        metrics.duration.observe(failed_provider, "error", value=trio.current_time() - started)
    raise failure


def _final_error(errors: list[tuple[str, PackydError]], circuit_waits: list[float], names: list[str],
                 board: BreakerBoard) -> PackydError:
    if errors:
        return errors[0][1]
    wait = max(1, round(min(circuit_waits))) if circuit_waits else 30
    last = board.get(names[0]).last_failure
    return CircuitOpen(
        f"packyd took {', '.join(names)} out of rotation after repeated upstream failures (circuit open; "
        f"routing.circuit-breaker); the next try goes through in about {wait}s"
        + (f". Last failure: {last}" if last else ""),
        headers={"retry-after": str(wait)})


def _note_fallback(ctx: RequestContext, served_by: str, errors: list[tuple[str, PackydError]],
                   metrics: PackydMetrics | None) -> None:
    """One audit line when a failure made a later provider serve; circuit skips are counted
    in metrics only (the circuit_opened audit line already explains them)."""
    failed = dict(errors)
    first = ctx.passed_over[0]
    if metrics is not None:
        metrics.fallbacks.inc(first, served_by)
    if first in failed:
        error = failed[first]
        logs.audit("fallback_used", request_id=ctx.request_id, failed=",".join(ctx.passed_over), served_by=served_by,
                   error_type=error.error_type, status=error.status, code=getattr(error, "upstream_code", None))
    else:
        logs.log("info", "fallback_used", request_id=ctx.request_id, skipped=",".join(ctx.passed_over),
                 served_by=served_by, reason="circuit_open")


async def _serve(events: AsyncIterator[Batch], first: Batch, name: str, breaker: CircuitBreaker,
                 ctx: RequestContext, request: Any, metrics: PackydMetrics | None, started: float,
                 attempt_started: float) -> AsyncIterator[Batch]:
    """Forward the serving provider's batches; record the outcome whatever ends the stream."""
    outcome = "client_closed"
    if metrics is not None:
        metrics.ttfb.observe(name, value=trio.current_time() - attempt_started)
        metrics.active.add(name, amount=1)
    try:
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            yield first
            try:
                async for batch in events:
                    yield batch
            except PackydError as error:
                outcome = "stream_error"
                if counts_as_failure(error):
                    breaker.failure(error.error_type, error.message)
                if metrics is not None:
                    metrics.upstream_errors.inc(name, error.error_type, "mid_stream")
                raise
        outcome = "200"
    finally:
        if metrics is not None:
            metrics.active.add(name, amount=-1)
            metrics.requests.inc(name, _model_label(ctx, request), outcome)
            metrics.duration.observe(name, "ok" if outcome == "200" else outcome, value=trio.current_time() - started)


def _model_label(ctx: RequestContext, request: Any) -> str:
    return ctx.upstream_model or getattr(request, "model", None) or "unknown"


# ------------------------------------------------------------------------------ attach


def _breaker_settings(runtime: Runtime) -> BreakerSettings:
    cb = runtime.config.routing.circuit_breaker
    return BreakerSettings(failures=cb.failures, window=cb.window, cooldown=cb.cooldown)


def _provider_settings(runtime: Runtime) -> dict[str, Any]:
    """What identifies each provider's upstream (for "did it change on reload?")."""
    config = runtime.config
    found: dict[str, Any] = {"packycode": (config.packycode, runtime.load.packycode_key)}
    for entry in config.providers:
        found[entry.name] = entry
    return found


def _enabled_state(runtime: Runtime) -> dict[str, str | None]:
    """name → None when the configuration enables it, else why not."""
    config = runtime.config
    state: dict[str, str | None] = {}
    names = ["packycode", *(entry.name for entry in config.providers)]
    for name in names:
        if name in runtime.providers:
            state[name] = None if name in config.routing.fallback else "not in routing.fallback"
        elif name == "packycode":
            state[name] = runtime.load.packycode_reason or "not usable"
        else:
            entry = next(e for e in config.providers if e.name == name)
            state[name] = "enabled is false" if not entry.enabled else f"type {entry.type} is not available"
    return state


_LINE_SUFFIX = re.compile(r"^(config\.yaml):\d+$")


def _source_kind(label: str) -> str:
    """A source label without its line number: moving a line is not a source change."""
    return _LINE_SUFFIX.sub(r"\1", label)


def _on_reload(services: Services, previous: Runtime | None, new: Runtime) -> None:
    board: BreakerBoard = services.extras["breakers"]
    metrics: PackydMetrics = services.extras["metrics"]
    metrics.config_generation.set(value=new.generation)
    before_state = _enabled_state(previous) if previous is not None else {}
    after_state = _enabled_state(new)
    for name, reason in after_state.items():
        was = before_state.get(name, "absent") if previous is not None else "absent"
        if previous is not None and (was is None) == (reason is None):
            continue
        if reason is None:
            logs.audit("provider_enabled", provider=name, by="config", generation=new.generation)
        else:
            logs.audit("provider_disabled", provider=name, by="config", reason=reason, generation=new.generation)
    if previous is None:
        return
    metrics.reloads.inc("ok")
    old_settings, new_settings = _provider_settings(previous), _provider_settings(new)
    changed = [name for name in new_settings if name in old_settings and old_settings[name] != new_settings[name]]
    board.configure(_breaker_settings(new), changed_providers=changed)
    old_sources, new_sources = previous.load.sources, new.load.sources
    for setting in sorted(set(old_sources) | set(new_sources)):
        before = _source_kind(old_sources.get(setting, "default"))
        after = _source_kind(new_sources.get(setting, "default"))
        if before != after:
            logs.audit("config_source_changed", setting=setting, source_was=before, source_now=after,
                       generation=new.generation)


def _circuit_series(board: BreakerBoard, services: Services) -> list[tuple[tuple[str], float]]:
    runtime = services.holder.current
    names = [name for name in runtime.config.routing.fallback if name in runtime.providers]
    series = []
    for name in names:
        snapshot = board.get(name).snapshot()
        series.append(((name,), float(STATE_VALUES[str(snapshot["state"])])))
    return series


def _last_reload_series(services: Services) -> list[tuple[tuple[()], float]]:
    return [((), 0.0 if services.holder.last_reload.get("result") == "failed" else 1.0)]


def attach(services: Services) -> None:
    """Breakers, metrics and the runtime switch set, kept in step with reloads.

    ``services.extras`` keys: ``breakers`` (:class:`BreakerBoard`), ``metrics``
    (:class:`PackydMetrics`), ``disabled_providers`` (set of names) and ``provider_status``
    (name → ``{"circuit": {...}}`` for ``/v0/status``).
    """
    from .metrics import Gauge

    metrics = PackydMetrics(circuit_source=lambda: _circuit_series(services.extras["breakers"], services))
    metrics.registry.add(Gauge("packyd_config_last_reload_successful",
                               "1 when the last reload (or the start) succeeded, 0 when it failed and the "
                               "previous configuration is still in use.", source=partial(_last_reload_series, services)))

    def on_change(breaker: CircuitBreaker, before: str, after: str) -> None:
        if after == OPEN:
            metrics.circuit_openings.inc(breaker.provider)

    board = BreakerBoard(_breaker_settings(services.holder.current), on_change)
    services.extras["breakers"] = board
    services.extras["metrics"] = metrics
    services.extras.setdefault("disabled_providers", set())
    services.extras["provider_status"] = lambda name: {"circuit": board.get(name).snapshot()}
    services.holder.add_hook(partial(_on_reload, services))
