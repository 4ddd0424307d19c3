"""Model listing and status routes: ``/v1/models``, ``/v1/models/{id}``, ``/v0/status``."""

from __future__ import annotations

from quart_trio import QuartTrio

from ..services import Services


def register(app: QuartTrio, services: Services) -> None:
    """Add this module's routes to the app."""
