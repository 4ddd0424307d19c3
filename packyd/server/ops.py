"""Operations routes: the runtime provider switch and ``GET /metrics``.

``POST /v0/providers/{name}/disable`` takes a provider out of routing for the *next* request
(SC-005: an operator recovers from a broken upstream in seconds, without editing files);
``/enable`` puts it back. The switch lives in :class:`~packyd.services.Services`, not in the
configuration snapshot, so it survives reloads until the opposite call or a restart; the
persistent way is ``enabled: false`` in config.yaml plus ``systemctl reload``. Both calls are
audited. Authentication (management key, else api-keys) is done by the app for every
``/v0/*`` and ``/metrics`` path.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from .. import logs
from ..errors import NotFound
from ..services import Services

__all__ = ["register", "known_providers", "set_provider_enabled"]

#: ``services.extras`` key of the set of provider names disabled at runtime.
DISABLED_KEY = "disabled_providers"


def known_providers(services: Services) -> list[str]:
    """Every provider name the running configuration defines, in routing order first."""
    config = services.holder.current.config
    names = list(config.routing.fallback)
    for name in ["packycode", *(provider.name for provider in config.providers)]:
        if name not in names:
            names.append(name)
    return names


def set_provider_enabled(services: Services, name: str, enabled: bool) -> dict[str, object]:
    """Flip the runtime switch for ``name``; returns what the route answers.

    Raises NotFound for a name the configuration does not know (a typo must not silently
    succeed while traffic keeps going to the broken provider)."""
    names = known_providers(services)
    if name not in names:
        raise NotFound(f"no provider is named {name[:64]!r}; providers in this configuration: {', '.join(names)}")
    disabled: set[str] = services.extras.setdefault(DISABLED_KEY, set())
    changed = (name in disabled) == enabled
    if enabled:
        disabled.discard(name)
    else:
        disabled.add(name)
    if changed:
        logs.audit("provider_enabled" if enabled else "provider_disabled", provider=name, by="runtime-switch")
    metrics = services.extras.get("metrics")
    if metrics is not None:
        metrics.provider_disabled.set(name, value=0 if enabled else 1)
    runtime = services.holder.current
    serving = [provider for provider in runtime.config.routing.fallback
               if provider in runtime.providers and provider not in disabled]
    return {
        "provider": name,
        "enabled": enabled,
        "changed": changed,
        "runtime_disabled": sorted(disabled),
        "routing": serving,
        "note": "runtime switch: lasts until the opposite call or a restart; "
                "for a lasting change set enabled in config.yaml and reload",
    }


def register(app: QuartTrio, services: Services) -> None:
    """Add this module's routes to the app."""
    from .app import json_response

    @app.post("/v0/providers/<name>/disable")
    async def disable_provider(name: str) -> Response:
        return json_response(set_provider_enabled(services, name, False))

    @app.post("/v0/providers/<name>/enable")
    async def enable_provider(name: str) -> Response:
        return json_response(set_provider_enabled(services, name, True))

    @app.get("/metrics")
    async def metrics() -> Response:
        from ..metrics import CONTENT_TYPE

        collected = services.extras.get("metrics")
        text = collected.render() if collected is not None else ""
        return Response(text, status=200, content_type=CONTENT_TYPE)
