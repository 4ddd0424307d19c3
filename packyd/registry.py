"""The model registry: which model ids packyd lists, and which provider serves each.

Providers register their models under their own name; the registry counts, per model id, how
many providers registered it, so a model that two providers serve stays listed until both
have let go of it. Registering the same (provider, model) again changes nothing — every start
and every reload re-registers the whole list (FR-014), and ten reloads must leave exactly one
entry per model. :meth:`ModelRegistry.replace` is the operation reloads use: it makes a
provider's set exactly the given one, adding and dropping the difference.

The reload hook (:func:`attach`) keeps provider ``codex`` in step with the configuration:
an enabled and usable Packycode registers ``packycode.models`` plus the Claude-named aliases
from ``packycode.model-map`` (Claude Code's model discovery keeps only ``claude*`` ids, so
without them it would see nothing); a disabled or unusable one unregisters them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Iterable

from . import logs
from .config import LoadResult, mask_secret
from .config.schema import PackycodeConfig

__all__ = [
    "ModelInfo",
    "ModelRegistry",
    "PACKYCODE_PROVIDER",
    "KNOWN_LIMITS",
    "CLAUDE_CODE_MODEL_IDS",
    "packycode_models",
    "attach",
]

#: Provider name under which Packycode's models are registered (DESIGN §4.4).
PACKYCODE_PROVIDER = "codex"

#: (context window, max output tokens) as OpenAI publishes them; first matching glob wins.
KNOWN_LIMITS: tuple[tuple[str, int, int], ...] = (
    ("codex-mini-latest", 200_000, 100_000),
    ("gpt-5-pro*", 400_000, 272_000),
    ("gpt-5*", 400_000, 128_000),
)

#: Concrete model ids Claude Code sends (claude-code.md §5): its default opus, the haiku used
#: by subagents and titles, and the sonnet names. A glob in ``model-map`` is listed as these.
CLAUDE_CODE_MODEL_IDS: tuple[str, ...] = (
    "claude-opus-4-8",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
)

#: ``created`` timestamp listed for every model (the APIs require one; packyd has no real date).
_EPOCH = 1_754_611_200  # 2025-08-08, the day gpt-5 shipped in Codex CLI


@dataclass(frozen=True)
class ModelInfo:
    id: str
    provider: str
    display_name: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    #: for a Claude-named alias: the upstream model (and effort) it is served by
    alias_of: str | None = None
    created: int = _EPOCH

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``/v1/models`` entry, with packyd's extra fields after the standard ones."""
        entry: dict[str, Any] = {"id": self.id, "object": "model", "created": self.created,
                                 "owned_by": self.provider}
        if self.context_window:
            entry["context_window"] = self.context_window
        if self.max_output_tokens:
            entry["max_output_tokens"] = self.max_output_tokens
        if self.alias_of:
            entry["alias_of"] = self.alias_of
        return entry

    def anthropic(self) -> dict[str, Any]:
        """The Anthropic model object (anthropic-messages.md §13)."""
        entry: dict[str, Any] = {
            "type": "model", "id": self.id, "display_name": self.display_name,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
        }
        if self.context_window:
            entry["max_input_tokens"] = self.context_window
        if self.max_output_tokens:
            entry["max_tokens"] = self.max_output_tokens
        return entry


class ModelRegistry:
    """Per-provider, reference-counted, idempotent model registration."""

    def __init__(self) -> None:
        self._by_provider: dict[str, dict[str, ModelInfo]] = {}
        self._refs: dict[str, int] = {}

    def register(self, provider: str, models: Iterable[ModelInfo]) -> list[str]:
        """Add models for ``provider``; returns the ids that were new for it."""
        owned = self._by_provider.setdefault(provider, {})
        added = []
        for model in models:
            model = model if model.provider == provider else replace(model, provider=provider)
            if model.id not in owned:
                self._refs[model.id] = self._refs.get(model.id, 0) + 1
                added.append(model.id)
            owned[model.id] = model  # details may change on reload; the count does not
        return added

    def unregister(self, provider: str, ids: Iterable[str] | None = None) -> list[str]:
        """Drop ``ids`` (default: all) of ``provider``; returns the ids it actually held."""
        owned = self._by_provider.get(provider, {})
        removed = []
        for model_id in list(owned if ids is None else ids):
            if owned.pop(model_id, None) is not None:
                removed.append(model_id)
                self._refs[model_id] -= 1
                if self._refs[model_id] == 0:
                    del self._refs[model_id]
        if not owned:
            self._by_provider.pop(provider, None)
        return removed

    def replace(self, provider: str, models: Iterable[ModelInfo]) -> tuple[list[str], list[str]]:
        """Make ``provider``'s models exactly ``models``; returns (added, removed) ids."""
        wanted = list(models)
        keep = {model.id for model in wanted}
        removed = self.unregister(provider, [m for m in self._by_provider.get(provider, {}) if m not in keep])
        added = self.register(provider, wanted)
        return added, removed

    def refcount(self, model_id: str) -> int:
        return self._refs.get(model_id, 0)

    def providers_of(self, model_id: str) -> list[str]:
        return [name for name, owned in self._by_provider.items() if model_id in owned]

    def models(self, provider: str | None = None) -> list[ModelInfo]:
        """Each id once, in registration order (the first provider's details win)."""
        seen: dict[str, ModelInfo] = {}
        for name, owned in self._by_provider.items():
            if provider is not None and name != provider:
                continue
            for model_id, model in owned.items():
                seen.setdefault(model_id, model)
        return list(seen.values())

    def get(self, model_id: str) -> ModelInfo | None:
        for owned in self._by_provider.values():
            if model_id in owned:
                return owned[model_id]
        return None


def _limits(model_id: str) -> tuple[int | None, int | None]:
    low = model_id.lower()
    for pattern, window, output in KNOWN_LIMITS:
        if fnmatchcase(low, pattern):
            return window, output
    return None, None


def _alias_ids(pattern: str) -> list[str]:
    if not any(ch in pattern for ch in "*?["):
        return [pattern]
    return [model_id for model_id in CLAUDE_CODE_MODEL_IDS if fnmatchcase(model_id, pattern.lower())]


def packycode_models(packycode: PackycodeConfig) -> list[ModelInfo]:
    """Upstream models from ``packycode.models`` then Claude-named aliases from ``model-map``.

    An alias takes the first ``model-map`` entry that matches it (the same rule translation
    uses), so the listing says which upstream model will really answer.
    """
    models = []
    for model_id in packycode.models:
        window, output = _limits(model_id)
        models.append(ModelInfo(model_id, PACKYCODE_PROVIDER, f"{model_id} (Packycode)", window, output))
    listed = {model.id for model in models}
    for pattern, _target, _effort in packycode.model_map:
        for alias in _alias_ids(pattern):
            if alias in listed:
                continue
            route = next(((t, e) for p, t, e in packycode.model_map if fnmatchcase(alias.lower(), p.lower())), None)
            if route is None:
                continue
            target, effort = route
            served_by = f"{target}({effort})" if effort else target
            window, output = _limits(target)
            models.append(ModelInfo(alias, PACKYCODE_PROVIDER, f"{alias} → {served_by} (Packycode)", window, output,
                                    alias_of=served_by))
            listed.add(alias)
    return models


def sync_packycode(registry: ModelRegistry, load: LoadResult) -> tuple[list[str], list[str]]:
    """Register Packycode's models when it is enabled and usable, unregister them otherwise."""
    config = load.config
    if config is not None and config.packycode.enabled and load.packycode_usable:
        return registry.replace(PACKYCODE_PROVIDER, packycode_models(config.packycode))
    return [], registry.unregister(PACKYCODE_PROVIDER)


def attach(services: Any) -> ModelRegistry:
    """Create the registry in ``services.extras["registry"]`` and keep it in step with reloads.

    The same hook logs, once per start or reload, every packycode setting that two sources set
    differently: which value won and why (FR-012).
    """
    registry: ModelRegistry = services.extras.setdefault("registry", ModelRegistry())

    def on_runtime(previous: Any, new: Any) -> None:
        added, removed = sync_packycode(registry, new.load)
        if added or removed or previous is None:
            logs.audit("models_registered", provider=PACKYCODE_PROVIDER, generation=new.generation,
                       added=len(added), removed=len(removed), total=len(registry.models(PACKYCODE_PROVIDER)),
                       reason=None if new.load.packycode_usable else new.load.packycode_reason)
        log_conflicts(new.load)

    services.holder.add_hook(on_runtime)
    return registry


def log_conflicts(load: LoadResult) -> None:
    """One line per setting set differently by several sources; secrets masked."""
    from .config.schema import walk_settings

    fields = dict(walk_settings(PackycodeConfig, "packycode."))
    for conflict in load.conflicts:
        value = _effective(load, conflict.path)
        item = fields.get(conflict.path)
        if item is not None and item.metadata.get("secret"):
            value = mask_secret(value)
        elif conflict.path == "packycode.headers":
            value = ",".join(name for name, _ in value or ())  # header values may be credentials
        logs.log("info", "config_source_conflict", setting=conflict.path, winner=conflict.winner,
                 overridden=",".join(conflict.overridden), value=value, rule=conflict.why())


def _effective(load: LoadResult, path: str) -> Any:
    node: Any = load.config
    for part in path.split("."):
        node = getattr(node, part.replace("-", "_"), None)
    return node
