"""Plain-value settings the translators need, built by the provider from the config.

Kept free of any config import so that ``translate/`` stays pure and testable on its own,
and frozen so one instance can be shared by every request of a runtime snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "EFFORTS",
    "SUMMARIES",
    "IDENTITIES",
    "ModelRoute",
    "TranslationSettings",
    "DEFAULT_MODEL_MAP",
    "DEFAULT_MODEL_EFFORTS",
]

#: Reasoning efforts packyd knows, lowest first. Order matters: clamping walks it.
EFFORTS: Final[tuple[str, ...]] = ("minimal", "low", "medium", "high", "xhigh")
#: ``none`` means: send no ``reasoning.summary`` (as Codex does for that setting).
SUMMARIES: Final[tuple[str, ...]] = ("auto", "concise", "detailed", "none")
IDENTITIES: Final[tuple[str, ...]] = ("codex-cli", "codex-legacy", "plain")


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """One ``model-map`` entry: a glob over client model names → upstream model (+ effort)."""

    pattern: str
    model: str
    effort: str | None = None


DEFAULT_MODEL_MAP: Final[tuple[ModelRoute, ...]] = (
    ModelRoute("claude-*opus*", "gpt-5-codex", "high"),
    ModelRoute("claude-*sonnet*", "gpt-5-codex", "medium"),
    ModelRoute("claude-*haiku*", "gpt-5-codex-mini", "low"),
)

#: Effort levels each upstream family accepts (glob, lowercase), first match wins. A model
#: rejects a level it does not support, so requests are clamped to the nearest allowed one.
#: Models matching no entry get whatever was asked.
DEFAULT_MODEL_EFFORTS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("gpt-5-codex-mini*", ("medium", "high")),
    ("gpt-5.1-codex-max*", ("low", "medium", "high", "xhigh")),
    ("gpt-5.1-codex-mini*", ("medium", "high")),
    ("gpt-5.1-codex*", ("low", "medium", "high")),
    ("gpt-5.1*", ("low", "medium", "high")),
    ("gpt-5-codex*", ("low", "medium", "high")),
    ("gpt-5-pro*", ("high",)),
    ("gpt-5", ("minimal", "low", "medium", "high")),
    ("gpt-5-mini*", ("minimal", "low", "medium", "high")),
    ("gpt-5-nano*", ("minimal", "low", "medium", "high")),
    ("gpt-5-2025*", ("minimal", "low", "medium", "high")),
    ("gpt-5.*", ("low", "medium", "high", "xhigh")),
)


@dataclass(frozen=True, slots=True)
class TranslationSettings:
    """Everything request/stream translation depends on besides the request itself.

    ``store`` exists so the effective value is visible in one place; translation always sends
    ``store: false`` whatever it says, because Codex relays reject anything else and packyd
    promises never to have content stored.
    """

    default_model: str = "gpt-5"
    default_effort: str = "high"
    default_summary: str = "auto"
    model_map: tuple[ModelRoute, ...] = DEFAULT_MODEL_MAP
    #: upstream models known to exist; a client naming one of these directly gets it as is
    models: tuple[str, ...] = ("gpt-5", "gpt-5-codex", "gpt-5-codex-mini", "gpt-5.1-codex", "gpt-5.1-codex-max")
    model_efforts: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_MODEL_EFFORTS
    identity: str = "codex-cli"
    store: bool = False
    #: parallel_tool_calls when the client does not disable it (Codex 0.169 sends true)
    parallel_tool_calls: bool = True
    #: ``text.verbosity`` to send, or None to omit it (Codex omits it unless configured)
    verbosity: str | None = None
    #: what the identity headers claim to be; the provider may fill these from the host
    codex_version: str = "0.169.0"
    codex_legacy_version: str = "0.58.0"
    os_description: str = "Linux 6.1.0; x86_64"
    terminal: str = "xterm-256color"
    #: upstream context window used to phrase "prompt is too long: N tokens > MAX maximum"
    context_window: int = 272_000
