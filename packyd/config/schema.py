"""The shape of ``config.yaml``: frozen dataclasses whose field metadata is the schema.

Each setting is declared once, with its kind, default and a one-line doc. Validation, the
"did you mean" hints for unknown keys, ``config.example.yaml``'s coverage test and the
configuration reference in ``docs/configuration.md`` are all derived from these declarations,
so a setting cannot exist in one place and be missing in another.

YAML keys are kebab-case (as in CLIProxyAPI); the Python attribute is the same name in
snake_case.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

from .kinds import (
    Bool,
    Duration,
    Enum,
    Int,
    Kind,
    ModelMap,
    Size,
    Str,
    StrList,
    StrMap,
    Url,
)

__all__ = [
    "Config",
    "PackycodeConfig",
    "ProviderConfig",
    "RoutingConfig",
    "setting",
    "walk_settings",
    "yaml_key",
    "DEFAULT_PACKYCODE_MODELS",
    "DEFAULT_MODEL_MAP",
    "EFFORTS",
    "SUMMARIES",
]

#: "none" is what newer Codex CLIs write; packyd sends it upstream as "minimal".
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SUMMARIES = ("auto", "concise", "detailed", "none")
VERBOSITIES = ("low", "medium", "high")

#: Models registered under provider ``codex`` when ``packycode.models`` is not set.
DEFAULT_PACKYCODE_MODELS: tuple[str, ...] = (
    "gpt-5",
    "gpt-5-codex",
    "gpt-5-codex-mini",
    "gpt-5.1",
    "gpt-5.1-codex",
    "gpt-5.1-codex-mini",
    "gpt-5.1-codex-max",
    "codex-mini-latest",
)

#: Claude Code's model names -> upstream model(effort). Claude Code asks for its own names
#: (opus for the main loop, haiku for titles and subagents) unless the user sets model env
#: vars; this map makes both work with no client configuration.
DEFAULT_MODEL_MAP: tuple[tuple[str, str, str | None], ...] = (
    ("claude-*opus*", "gpt-5-codex", "high"),
    ("claude-*sonnet*", "gpt-5-codex", "medium"),
    ("claude-*haiku*", "gpt-5-codex-mini", "low"),
)


def setting(default: Any, kind: Kind, doc: str, *, secret: bool = False, env: str | None = None,
            example: Any = None, reload: bool = True) -> Any:
    """Declare one setting.

    Args:
        default: value when no source sets it (already parsed).
        kind: how a raw value is parsed and checked.
        doc: one line for the configuration reference.
        secret: mask the value in status, logs and ``import-codex`` output.
        env: the environment variable that can set it (packycode settings, see sources).
        example: value shown in docs when the default is empty.
        reload: False when a change needs a restart (host, port).
    """
    meta = {"kind": kind, "doc": doc, "secret": secret, "env": env, "example": example, "reload": reload}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for defaults; configs are immutable")
    return field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    """Declare a nested block (its own dataclass)."""
    return field(default_factory=cls, metadata={"section": cls, "doc": doc})


@dataclass(frozen=True)
class Credentials:
    openai_api_key: str | None = setting(
        None, Str(optional=True), "the Packycode key (sk-...), sent upstream as Authorization: Bearer",
        secret=True, env="PACKYD_PACKYCODE_API_KEY", example="sk-...")
    openai_api_key_file: str | None = setting(
        None, Str(optional=True), "file holding the key (must not be world-readable); "
        "systemd's $CREDENTIALS_DIRECTORY/packycode-api-key is read when present",
        env="PACKYD_PACKYCODE_API_KEY_FILE", example="/etc/packyd/packycode.key")


@dataclass(frozen=True)
class Privacy:
    disable_response_storage: bool = setting(
        True, Bool(), "send store:false upstream; packyd itself never stores content either way",
        env="PACKYD_PACKYCODE_DISABLE_RESPONSE_STORAGE")


@dataclass(frozen=True)
class Defaults:
    model: str = setting("gpt-5", Str(), "upstream model for requests that name no mapped model",
                         env="PACKYD_PACKYCODE_MODEL")
    model_reasoning_effort: str = setting("high", Enum(EFFORTS), "reasoning effort when nothing else decides it",
                                          env="PACKYD_PACKYCODE_REASONING_EFFORT")
    model_reasoning_summary: str = setting("auto", Enum(SUMMARIES),
                                           "reasoning summaries shown to Claude Code as thinking blocks",
                                           env="PACKYD_PACKYCODE_REASONING_SUMMARY")
    model_verbosity: str | None = setting(None, Enum(VERBOSITIES),
                                          "text.verbosity sent upstream (gpt-5 family); unset sends none, "
                                          "as Codex does", env="PACKYD_PACKYCODE_VERBOSITY", example="medium")


@dataclass(frozen=True)
class Timeouts:
    connect: float = setting(10.0, Duration(0.1, 300), "connect + TLS handshake to Packycode",
                             env="PACKYD_PACKYCODE_CONNECT_TIMEOUT")
    first_byte: float = setting(120.0, Duration(1, 3600), "wait for the first upstream event",
                                env="PACKYD_PACKYCODE_FIRST_BYTE_TIMEOUT")
    idle: float = setting(300.0, Duration(1, 3600), "longest upstream silence inside a stream",
                          env="PACKYD_PACKYCODE_IDLE_TIMEOUT")


@dataclass(frozen=True)
class Retries:
    max_attempts: int = setting(3, Int(1, 10), "attempts per request before falling back (before the first byte only)",
                                env="PACKYD_PACKYCODE_MAX_ATTEMPTS")
    max_backoff: float = setting(8.0, Duration(0, 120), "longest pause between attempts",
                                 env="PACKYD_PACKYCODE_MAX_BACKOFF")


@dataclass(frozen=True)
class PackycodeConfig:
    enabled: bool = setting(True, Bool(), "serve requests from Packycode", env="PACKYD_PACKYCODE_ENABLED")
    import_codex_cli: bool = setting(
        False, Bool(), "also read settings from the Codex CLI's config.toml and auth.json ($CODEX_HOME or ~/.codex)",
        env="PACKYD_PACKYCODE_IMPORT_CODEX_CLI")
    base_url: str = setting("https://codex-api.packycode.com/v1", Url(require_v1=True),
                            "Packycode's Responses API base; packyd posts to {base-url}/responses",
                            env="PACKYD_PACKYCODE_BASE_URL")
    wire_api: str = setting("responses", Enum(("responses",)), "the only wire API Packycode serves",
                            env="PACKYD_PACKYCODE_WIRE_API")
    requires_openai_auth: bool = setting(True, Bool(), "send the key as Authorization: Bearer (Packycode needs it)",
                                         env="PACKYD_PACKYCODE_REQUIRES_OPENAI_AUTH")
    credentials: Credentials = section(Credentials, "where the upstream key comes from")
    privacy: Privacy = section(Privacy, "content storage")
    defaults: Defaults = section(Defaults, "model and reasoning defaults")
    models: tuple[str, ...] = setting(DEFAULT_PACKYCODE_MODELS, StrList(),
                                      "models registered for /v1/models under provider codex",
                                      env="PACKYD_PACKYCODE_MODELS")
    model_map: tuple[tuple[str, str, str | None], ...] = setting(
        DEFAULT_MODEL_MAP, ModelMap(), "Claude model names (glob, first match wins) -> upstream model(effort)")
    identity: str = setting("codex-cli", Enum(("codex-cli", "codex-legacy", "plain")),
                            "how upstream requests look: like current Codex CLI, like Codex 0.5x, or plain",
                            env="PACKYD_PACKYCODE_IDENTITY")
    headers: tuple[tuple[str, str], ...] = setting((), StrMap(), "extra upstream HTTP headers (override identity)",
                                                   example={"X-Example": "1"})
    timeouts: Timeouts = section(Timeouts, "upstream timeouts")
    retries: Retries = section(Retries, "retries before the first byte")


@dataclass(frozen=True)
class ProviderTimeouts:
    connect: float = setting(10.0, Duration(0.1, 300), "connect + TLS handshake")
    first_byte: float = setting(120.0, Duration(1, 3600), "wait for the response headers and first event")
    idle: float = setting(300.0, Duration(1, 3600), "longest silence inside a stream")


@dataclass(frozen=True)
class ProviderConfig:
    name: str = setting("", Str(), "name used in routing.fallback, status and logs", example="packy-claude")
    type: str = setting("anthropic", Enum(("anthropic",)), "anthropic: an Anthropic-compatible Messages API")
    enabled: bool = setting(True, Bool(), "take part in routing")
    base_url: str = setting("", Url(), "base URL; packyd posts to {base-url}/v1/messages",
                            example="https://api.anthropic.com")
    api_key: str | None = setting(None, Str(optional=True), "key sent as x-api-key", secret=True)
    api_key_file: str | None = setting(None, Str(optional=True), "file holding the key")
    headers: tuple[tuple[str, str], ...] = setting((), StrMap(), "extra upstream headers")
    timeouts: ProviderTimeouts = section(ProviderTimeouts, "upstream timeouts")


@dataclass(frozen=True)
class CircuitBreaker:
    failures: int = setting(5, Int(1, 1000), "failures within the window that open the circuit")
    window: float = setting(60.0, Duration(1, 3600), "how far back failures count")
    cooldown: float = setting(30.0, Duration(1, 3600), "how long an open circuit stays open before one probe")


@dataclass(frozen=True)
class RoutingConfig:
    fallback: tuple[str, ...] = setting(("packycode",), StrList(),
                                        "providers tried in order until one answers (before the first byte)")
    circuit_breaker: CircuitBreaker = section(CircuitBreaker, "taking a failing provider out of rotation")


@dataclass(frozen=True)
class Config:
    host: str = setting("127.0.0.1", Str(), "address to listen on (restart to change)", reload=False)
    port: int = setting(8317, Int(0, 65535), "port to listen on (restart to change)", reload=False)
    api_keys: tuple[str, ...] = setting((), StrList(), "keys clients must send (x-api-key or Bearer); "
                                        "empty allows anyone on loopback", secret=True, example=["change-me"])
    management_key: str | None = setting(None, Str(optional=True),
                                         "key for /v0/* and /metrics; when unset, api-keys are accepted",
                                         secret=True)
    log_level: str = setting("info", Enum(("debug", "info", "warning", "error")),
                             "debug adds metadata, never content")
    max_body_size: int = setting(32 * 1024**2, Size(64 * 1024, 1024**3), "largest request body accepted (413 above)")
    drain_timeout: float = setting(25.0, Duration(0, 3600),
                                   "on stop, how long open streams may finish before packyd ends them")
    max_upstream_streams: int = setting(512, Int(1, 100000), "concurrent upstream requests (others wait)")
    packycode: PackycodeConfig = section(PackycodeConfig, "the Packycode provider (OpenAI Responses API)")
    providers: tuple[ProviderConfig, ...] = field(
        default=(), metadata={"list_of": ProviderConfig, "doc": "other upstreams, for fallback"})
    routing: RoutingConfig = section(RoutingConfig, "provider order and circuit breaker")


def yaml_key(attribute: str) -> str:
    return attribute.replace("_", "-")


def walk_settings(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """Yield ``(dotted.yaml.path, field)`` for every leaf setting of a config dataclass.

    Lists of objects (``providers``) are described with ``[]`` in the path.
    """
    for item in dataclasses.fields(cls):
        path = f"{prefix}{yaml_key(item.name)}"
        if "section" in item.metadata:
            yield from walk_settings(item.metadata["section"], path + ".")
        elif "list_of" in item.metadata:
            yield from walk_settings(item.metadata["list_of"], path + "[].")
        else:
            yield path, item
