"""Upstream providers: each turns an Anthropic request into batches of Anthropic events."""

from __future__ import annotations

from typing import Any

from ..config import LoadResult

__all__ = ["build_providers"]


def build_providers(load: LoadResult, services: Any) -> dict[str, Any]:
    """Provider objects for one configuration snapshot, by name (only usable ones)."""
    return {}
