"""Process-wide services shared by the HTTP layer, routing and providers.

One instance per daemon. It outlives configuration snapshots: the upstream HTTP client (one
per process, DESIGN §9), the concurrency limiter that stands in for httpx's pool limit
(httpcore#1093), the model registry, runtime provider switches and metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from .runtime import RuntimeHolder

__all__ = ["Services"]


@dataclass
class Services:
    holder: RuntimeHolder
    version: str
    config_path: str | None = None
    require_packycode: bool = False
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    draining: trio.Event = field(default_factory=trio.Event)
    http: httpx.AsyncClient | None = None
    limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(512))
    #: HTTP requests being served, streamed bodies included (the shutdown waits for 0).
    inflight: int = 0
    #: Set when the last request in flight finishes once draining has begun.
    drained: trio.Event = field(default_factory=trio.Event)
    #: Subsystems that attach themselves (registry, metrics, provider switches, breakers).
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic
