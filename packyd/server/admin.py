"""Model listing and status routes: ``/v1/models``, ``/v1/models/{id}``, ``/v0/status``.

``/v1/models`` answers in OpenAI's list shape by default and in Anthropic's when the request
carries ``anthropic-version``: Claude Code's gateway discovery sends that header and rejects
the OpenAI shape ("Gateway /v1/models returned an unexpected body"), while OpenAI-style tools
send none. ``/v0/status`` is the one place that says what the daemon is really using and why:
every packycode setting with its effective source, secrets masked.
"""

from __future__ import annotations

import re
import time
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..config import mask_secret
from ..config.kinds import Duration
from ..config.schema import PackycodeConfig, walk_settings
from ..errors import InvalidRequest, NotFound
from ..registry import ModelInfo, ModelRegistry
from ..services import Services

__all__ = ["register", "status_document", "list_models"]

#: Header names whose values are credentials: shown masked in status.
_SENSITIVE_HEADER = re.compile(r"auth|key|token|secret|cookie|signature|session", re.IGNORECASE)
_MAX_LIMIT = 1000


def _registry(services: Services) -> ModelRegistry:
    return services.extras.setdefault("registry", ModelRegistry())


def register(app: QuartTrio, services: Services) -> None:
    """Add this module's routes to the app."""
    from .app import json_response

    @app.get("/v1/models")
    async def models_list() -> Response:
        return json_response(list_models(_registry(services), anthropic="anthropic-version" in request.headers,
                                         args=request.args))

    @app.get("/v1/models/<path:model_id>")
    async def models_get(model_id: str) -> Response:
        registry = _registry(services)
        model = registry.get(model_id) or registry.get(re.sub(r"\[1m\]$", "", model_id, flags=re.IGNORECASE))
        if model is None:
            known = [m.id for m in registry.models()]
            shown = ", ".join(known[:20]) + (" …" if len(known) > 20 else "") if known else "none (Packycode is "\
                "not configured; see GET /v0/status)"
            raise NotFound(f"model {model_id[:128]!r} is not listed by packyd; listed models: {shown}")
        anthropic = "anthropic-version" in request.headers
        return json_response(model.anthropic() if anthropic else model.openai())

    @app.get("/v0/status")
    async def status() -> Response:
        return json_response(status_document(services))


def list_models(registry: ModelRegistry, *, anthropic: bool, args: Any) -> dict[str, Any]:
    """The listing in either shape; Anthropic's supports ``limit``, ``after_id``, ``before_id``."""
    models = registry.models()
    if not anthropic:
        return {"object": "list", "data": [model.openai() for model in models]}
    limit = _limit(args.get("limit"))
    ids = [model.id for model in models]
    after, before = args.get("after_id"), args.get("before_id")
    if after and before:
        raise InvalidRequest("send after_id or before_id, not both")
    for name, value in (("after_id", after), ("before_id", before)):
        if value and value not in ids:
            raise InvalidRequest(f"{name} {value[:128]!r} is not a listed model id; start without it")
    if after:
        window = models[ids.index(after) + 1:]
        page, has_more = window[:limit], len(window) > limit
    elif before:
        window = models[:ids.index(before)]
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = models[:limit], len(models) > limit
    return {
        "data": [model.anthropic() for model in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20  # Anthropic's default page size
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"limit must be a whole number from 1 to {_MAX_LIMIT}, got {raw[:32]!r}") from None
    if not 1 <= value <= _MAX_LIMIT:
        raise InvalidRequest(f"limit must be from 1 to {_MAX_LIMIT}, got {value}")
    return value


def status_document(services: Services) -> dict[str, Any]:
    """What ``GET /v0/status`` answers and ``packyd status`` prints; no content, keys masked."""
    runtime = services.holder.current
    load = runtime.load
    config = runtime.config
    registry = _registry(services)
    return {
        "service": "packyd",
        "version": services.version,
        "started_at": _iso(services.started_at),
        "uptime_s": round(services.uptime, 1),
        "state": "draining" if services.draining.is_set() else "serving",
        "config_file": load.path or "(built-in defaults)",
        "generation": runtime.generation,
        "loaded_at": _iso(runtime.loaded_at),
        "last_reload": _reload(services.holder.last_reload),
        "require_packycode": services.require_packycode,
        "packycode": {
            "usable": load.packycode_usable,
            "reason": load.packycode_reason or None,
            "key": mask_secret(load.packycode_key) if load.packycode_key else None,
            "key_source": load.packycode_key_source,
            "settings": _settings(load, config.packycode),
            "conflicts": [{"setting": c.path, "winner": c.winner, "overridden": list(c.overridden)}
                          for c in load.conflicts],
        },
        "providers": _providers(services),
        "models": [_model_entry(model, registry) for model in registry.models()],
        "problems": [{"severity": p.severity, "where": p.where, "key": p.path, "problem": p.what, "fix": p.fix}
                     for p in load.problems],
    }


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _reload(last: dict[str, Any]) -> dict[str, Any]:
    shown = dict(last)
    if isinstance(shown.get("at"), (int, float)):
        shown["at"] = _iso(shown["at"])
    return shown


def _settings(load: Any, packycode: PackycodeConfig) -> dict[str, dict[str, Any]]:
    settings = {}
    for path, item in walk_settings(PackycodeConfig, "packycode."):
        value: Any = packycode
        for part in path.split(".")[1:]:
            value = getattr(value, part.replace("-", "_"))
        settings[path.removeprefix("packycode.")] = {"value": _shown(path, item, value),
                                                     "source": load.sources.get(path, "default")}
    return settings


def _shown(path: str, item: Any, value: Any) -> Any:
    if item.metadata.get("secret"):
        return mask_secret(value) if value else None
    if path == "packycode.headers":
        return {name: mask_secret(text) if _SENSITIVE_HEADER.search(name) else text for name, text in value}
    if path == "packycode.model-map":
        return {pattern: f"{model}({effort})" if effort else model for pattern, model, effort in value}
    if isinstance(item.metadata.get("kind"), Duration):
        return f"{value:g}s"  # as written in config.yaml
    if isinstance(value, tuple):
        return list(value)
    return value


def _providers(services: Services) -> list[dict[str, Any]]:
    runtime = services.holder.current
    config = runtime.config
    load = runtime.load
    disabled: set[str] = services.extras.get("disabled_providers", set())
    entries = [{
        "name": "packycode",
        "type": "packycode",
        "base_url": config.packycode.base_url,
        "enabled": config.packycode.enabled,
        "runtime_disabled": "packycode" in disabled,
        "usable": load.packycode_usable,
        "reason": load.packycode_reason or None,
    }]
    for provider in config.providers:
        entries.append({
            "name": provider.name,
            "type": provider.type,
            "base_url": provider.base_url,
            "enabled": provider.enabled,
            "runtime_disabled": provider.name in disabled,
            "usable": provider.name in runtime.providers,
            "reason": None if provider.name in runtime.providers else
            ("enabled is false" if not provider.enabled else "not built for this configuration"),
        })
    in_routing = list(config.routing.fallback)
    for entry in entries:
        name = entry["name"]
        entry["in_routing"] = name in in_routing
        entry["health"] = _health(entry, name in runtime.providers)
        entry.update(_extra_state(services, name))
        circuit = entry.get("circuit")
        if isinstance(circuit, dict) and circuit.get("state") == "open" and entry["health"] == "ready":
            entry["health"] = f"circuit open, next probe in {circuit.get('retry_in_s')}s"
    return entries


def _health(entry: dict[str, Any], built: bool) -> str:
    if not entry["enabled"]:
        return "disabled in config"
    if entry["runtime_disabled"]:
        return "disabled at runtime"
    if not entry["usable"]:
        return "not usable"
    if not entry["in_routing"]:
        return "ready, not in routing.fallback"
    return "ready" if built else "not built"


def _extra_state(services: Services, name: str) -> dict[str, Any]:
    """Per-provider state other subsystems publish (circuit breakers, counters).

    A subsystem opts in with ``services.extras["provider_status"]``: a callable taking the
    provider name and returning a JSON-able mapping (or a mapping of name -> mapping).
    """
    source = services.extras.get("provider_status")
    try:
        if callable(source):
            found = source(name)
        elif isinstance(source, dict):
            found = source.get(name)
        else:
            found = None
    except Exception:  # a broken reporter must not take status down with it
        return {"extra_state_error": True}
    return dict(found) if isinstance(found, dict) else {}


def _model_entry(model: ModelInfo, registry: ModelRegistry) -> dict[str, Any]:
    return {
        "id": model.id,
        "providers": registry.providers_of(model.id),
        "alias_of": model.alias_of,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
    }
