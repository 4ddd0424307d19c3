"""Operations routes: ``/v0/providers/{name}/disable|enable`` and ``/metrics``."""

from __future__ import annotations

from quart_trio import QuartTrio

from ..services import Services


def register(app: QuartTrio, services: Services) -> None:
    """Add this module's routes to the app."""
