"""Upstream providers: each turns an Anthropic request into batches of Anthropic events.

:func:`build_providers` makes the provider objects of one configuration snapshot. The
``packycode`` block gives the ``packycode`` provider; each entry of ``providers:`` is built by
the factory registered for its ``type`` in :data:`PROVIDER_TYPES`, so a new kind of upstream
is one module plus one line here. Only usable providers are built: an unusable one is left
out of the snapshot (and routing says why), never half-configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..config import LoadResult, ProviderConfig
from .base import Batch, Provider, mark
from .packycode import PackycodeProvider

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["build_providers", "PROVIDER_TYPES", "Provider", "Batch", "mark", "PackycodeProvider"]

#: ``providers[].type`` → factory(entry, services). The ``anthropic`` passthrough registers here.
PROVIDER_TYPES: dict[str, Callable[[ProviderConfig, "Services"], Provider]] = {}

from .anthropic import build_anthropic  # noqa: E402 - after PROVIDER_TYPES, which it joins

PROVIDER_TYPES["anthropic"] = build_anthropic


def build_providers(load: LoadResult, services: "Services") -> dict[str, Provider]:
    """Provider objects for one configuration snapshot, by name (only usable ones)."""
    providers: dict[str, Provider] = {}
    config = load.config
    if config is None:
        return providers
    if load.packycode_usable:
        providers[PackycodeProvider.name] = PackycodeProvider.from_load(load, services)
    for entry in config.providers:
        factory = PROVIDER_TYPES.get(entry.type)
        if entry.enabled and factory is not None:
            providers[entry.name] = factory(entry, services)
    return providers
