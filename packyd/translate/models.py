"""Which upstream model and reasoning effort serve a client's model name (DESIGN §5).

Order, highest priority first, for the effort:

1. a ``name(level)`` suffix on the requested name (the user's explicit, per-model wish);
2. the effort of the first ``model-map`` entry whose glob matches;
3. the client's own hints: ``thinking.type: disabled`` → the lowest level,
   ``thinking.budget_tokens`` bands, ``output_config.effort``;
4. ``defaults.model-reasoning-effort``.

The model comes from the map, else the name itself when it is an upstream model, else
``defaults.model`` (so Claude Code's haiku side calls and fresh ``claude-*`` ids always work
with no extra configuration). Finally the effort is clamped to what the model accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache

from packyd.translate.messages import OutputConfig, Thinking
from packyd.translate.settings import EFFORTS, ModelRoute, TranslationSettings

__all__ = ["ModelChoice", "resolve_model", "parse_model_spec", "strip_context_suffix", "clamp_effort", "effort_from_budget"]

_SUFFIX = re.compile(r"^(.*?)\s*\(\s*([A-Za-z]+)\s*\)$")
_ONE_M = re.compile(r"\[1m\]$", re.IGNORECASE)
#: names that are clearly upstream (OpenAI) model ids, served as asked when no map entry matches
_UPSTREAM_LIKE = re.compile(r"^(gpt-|o[1-9]|codex-|chatgpt-)", re.IGNORECASE)
_EFFORT_ALIASES = {"max": "xhigh", "none": "minimal", "maximum": "xhigh"}


@dataclass(frozen=True, slots=True)
class ModelChoice:
    requested: str  # what the client sent, echoed back in responses
    model: str  # upstream model
    effort: str
    summary: str | None  # None: send no reasoning.summary


def strip_context_suffix(name: str) -> str:
    """Drop Claude Code's ``[1m]`` context-size marker, which is not part of any model id."""
    return _ONE_M.sub("", name.strip())


def _norm_effort(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip().lower()
    v = _EFFORT_ALIASES.get(v, v)
    return v if v in EFFORTS else None


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """``"gpt-5-codex(high)"`` → ``("gpt-5-codex", "high")``; no or unknown suffix → effort None."""
    spec = strip_context_suffix(spec)
    m = _SUFFIX.match(spec)
    if m:
        effort = _norm_effort(m.group(2))
        if effort is not None:
            return m.group(1).strip(), effort
    return spec, None


def effort_from_budget(budget: int) -> str:
    """Anthropic thinking budgets → effort bands (the bands peers converged on)."""
    if budget <= 512:
        return "minimal"
    if budget <= 1024:
        return "low"
    if budget <= 8192:
        return "medium"
    if budget <= 24576:
        return "high"
    return "xhigh"


def _hint(thinking: Thinking | None, output_config: OutputConfig | None) -> str | None:
    if thinking is not None:
        if thinking.type == "disabled":
            return "minimal"
        if thinking.type == "enabled" and thinking.budget_tokens is not None:
            return effort_from_budget(thinking.budget_tokens)
    if output_config is not None:
        return _norm_effort(output_config.effort)
    return None


def _route(name: str, routes: tuple[ModelRoute, ...]) -> ModelRoute | None:
    low = name.lower()
    for r in routes:
        if fnmatchcase(low, r.pattern.lower()):
            return r
    return None


@lru_cache(maxsize=256)
def _allowed(model: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[str, ...] | None:
    low = model.lower()
    for pattern, levels in table:
        if fnmatchcase(low, pattern):
            return levels
    return None


def clamp_effort(model: str, effort: str, settings: TranslationSettings) -> str:
    """Nearest level the model accepts, preferring the lower one on a tie."""
    allowed = _allowed(model, settings.model_efforts)
    if not allowed or effort in allowed:
        return effort
    want = EFFORTS.index(effort)
    return min(allowed, key=lambda lv: (abs(EFFORTS.index(lv) - want), EFFORTS.index(lv)))


def resolve_model(
    requested: str,
    settings: TranslationSettings,
    thinking: Thinking | None = None,
    output_config: OutputConfig | None = None,
) -> ModelChoice:
    base, suffix_effort = parse_model_spec(requested)
    route = _route(base, settings.model_map)
    fallback_effort = None
    if route is not None:
        model, route_effort = parse_model_spec(route.model)
        route_effort = _norm_effort(route.effort) or route_effort
    else:
        route_effort = None
        known = {m.lower() for m in settings.models}
        if base.lower() in known or _UPSTREAM_LIKE.match(base):
            model = base
        else:
            model, fallback_effort = parse_model_spec(settings.default_model)
    effort = (
        suffix_effort
        or route_effort
        or _hint(thinking, output_config)
        or fallback_effort
        or _norm_effort(settings.default_effort)
        or "medium"
    )
    effort = clamp_effort(model, effort, settings)
    summary: str | None = settings.default_summary
    if summary == "none" or (thinking is not None and thinking.display == "omitted"):
        summary = None
    return ModelChoice(requested, model, effort, summary)
