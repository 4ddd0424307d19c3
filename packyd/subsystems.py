"""Process-wide subsystems that attach to the daemon at start (registry, metrics, breakers).

Each ``attach`` runs once, after the first runtime is built and before the server listens;
it may store objects in ``services.extras`` and add reload hooks to ``services.holder``.
"""

from __future__ import annotations

from . import registry, routing
from .services import Services

__all__ = ["attach_all"]


def attach_all(services: Services) -> None:
    """Attach every subsystem, in dependency order."""
    registry.attach(services)  # model registry, kept in step with reloads (FR-014)
    routing.attach(services)  # circuit breakers, metrics, runtime provider switch, config audit
