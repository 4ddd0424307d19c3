"""The daemon's state: an immutable configuration snapshot, swapped atomically on reload.

A request reads :attr:`RuntimeHolder.current` once, at its start, and keeps that snapshot to
the end, so a reload never changes a request mid-flight (DESIGN §4.5). Swapping is a single
attribute assignment inside one trio thread, so no lock is needed.

Things that live for the whole process (the upstream HTTP client, the model registry, the
runtime provider switches, metrics) are in :class:`Services`; things that belong to one
configuration (the parsed config, the providers built from it) are in :class:`Runtime`.
Later subsystems attach to reloads through :attr:`RuntimeHolder.hooks`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .config import Config, LoadResult

__all__ = ["Runtime", "RuntimeHolder", "ReloadHook", "config_changes"]


@dataclass(frozen=True)
class Runtime:
    load: LoadResult
    generation: int
    loaded_at: float = field(default_factory=time.time)
    #: Provider objects built for this snapshot, by name (see ``packyd.providers``).
    providers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Config:
        assert self.load.config is not None, "a Runtime is only built from a valid config"
        return self.load.config


#: Called after every successful swap (and once at start) with ``(previous or None, new)``.
ReloadHook = Callable[["Runtime | None", "Runtime"], None]


class RuntimeHolder:
    def __init__(self, first: Runtime) -> None:
        self.current = first
        self.hooks: list[ReloadHook] = []
        self.last_reload: dict[str, Any] = {"result": "started", "at": first.loaded_at, "problems": 0}

    def add_hook(self, hook: ReloadHook, *, run_now: bool = True) -> None:
        self.hooks.append(hook)
        if run_now:
            hook(None, self.current)

    def swap(self, new: Runtime) -> Runtime:
        previous, self.current = self.current, new
        for hook in self.hooks:
            hook(previous, new)
        return previous


def config_changes(old: Config, new: Config, prefix: str = "") -> list[str]:
    """Dotted paths of settings whose values differ; values themselves are never returned,
    so the audit line can name a changed key without leaking a secret."""
    import dataclasses

    changed: list[str] = []
    for item in dataclasses.fields(old):
        path = prefix + item.name.replace("_", "-")
        before, after = getattr(old, item.name), getattr(new, item.name)
        if dataclasses.is_dataclass(before) and dataclasses.is_dataclass(after):
            changed.extend(config_changes(before, after, path + "."))  # type: ignore[arg-type]
        elif before != after:
            changed.append(path)
    return changed
