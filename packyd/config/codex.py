"""Reading the Codex CLI's own files ($CODEX_HOME or ~/.codex) as a settings source.

A Codex CLI user who already set Packycode up has everything packyd needs in two files:
``config.toml`` (provider, base URL, model, effort) and ``auth.json`` (the key). This module
turns them into the lowest layer of the ``packycode`` block, each value tagged with the file
and line it came from, so ``/v0/status`` can say *why* packyd uses a value.

Resolution follows the Codex CLI itself (reference/codex-cli.md §5.4): the top-level keys,
overlaid by the selected ``[profiles.<name>]``; then the provider chosen by ``model_provider``;
the key from ``env[env_key]``, else ``experimental_bearer_token``, else ``auth.json``.

Decisions (also reported to the user, never silent):

* Only the provider that ``model_provider`` selects is imported, and only when it is a
  user-defined ``[model_providers.<id>]`` entry. Codex's built-in ids (``openai`` — the
  default —, ``oss``, ``ollama``, ``lmstudio``) describe OpenAI or local servers, not a Codex
  relay: importing them would send the user's OpenAI key to a place it was never meant for,
  so nothing at all is imported then and a warning says how to point Codex (or packyd) at
  Packycode.
* ``model_verbosity`` becomes ``packycode.defaults.model-verbosity`` (sent as
  ``text.verbosity``, as Codex does).
* ``query_params`` has no packyd equivalent: Packycode needs none (it is Azure's
  ``api-version`` in practice) and packyd's ``base-url`` refuses a query string. It is reported
  as ignored, with a warning, rather than half-applied.
* ``requires_openai_auth`` means "credentials come from auth.json" in Codex, whereas packyd's
  ``requires-openai-auth`` means "a key is required and sent as a Bearer token". A Codex
  provider with ``env_key`` sends a Bearer key too, so either one makes packyd require a key.
* ``disable_response_storage`` is carried over for the record; packyd sends ``store: false``
  whatever it says.
* ChatGPT-login tokens in ``auth.json`` are not an API key and are never used.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .load import Origin, Problem

__all__ = ["read_codex_layer", "read_codex", "CodexImport", "codex_home", "BUILTIN_PROVIDERS"]

#: Codex's built-in provider ids; a user entry with the same id is ignored by Codex itself.
BUILTIN_PROVIDERS = frozenset({"openai", "oss", "ollama", "lmstudio"})
#: Keys a ``[profiles.<name>]`` table may override (Codex 0.46 and later).
PROFILE_KEYS = ("model", "model_provider", "model_reasoning_effort", "model_reasoning_summary", "model_verbosity")
#: Codex keys that only shape the Codex client itself; read, deliberately not imported.
CLIENT_ONLY = {
    "stream_max_retries": "whole-turn replays after a stream broke; packyd retries only before the first byte",
    "name": "a display name",
    "env_key_instructions": "help text of the Codex CLI",
    "supports_websockets": "packyd speaks HTTP + SSE to Packycode",
}


@dataclass
class CodexImport:
    """Everything read from the Codex CLI files: packycode values with origins, problems, notes."""

    home: str
    values: dict[str, tuple[Any, Origin]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: what was read but not imported, and why (shown by ``import-codex``)
    notes: list[str] = field(default_factory=list)
    provider_id: str | None = None
    found: bool = False  # at least one of the two files exists


def codex_home(env: Mapping[str, str]) -> str:
    """``$CODEX_HOME``, else ``$HOME/.codex`` (HOME from ``env`` so tests and services agree)."""
    if env.get("CODEX_HOME"):
        return env["CODEX_HOME"]
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".codex")


def read_codex_layer(env: Mapping[str, str]) -> tuple[dict[str, tuple[Any, Origin]], list[Problem]]:
    """The :data:`packyd.config.load.CodexLayer` hook: values and problems only."""
    result = read_codex(env)
    return result.values, result.problems


def read_codex(env: Mapping[str, str]) -> CodexImport:
    """Read ``config.toml`` and ``auth.json``; never raises for anything in those files."""
    home = codex_home(env)
    result = CodexImport(home=home)
    if env.get("CODEX_HOME") and not os.path.isdir(home):
        result.problems.append(Problem("env:CODEX_HOME", "CODEX_HOME", f"{home} is not a directory",
                                       "point CODEX_HOME at the Codex CLI's directory, or unset it to use ~/.codex",
                                       "warning"))
        return result
    toml = _TomlFile.read(os.path.join(home, "config.toml"), result)
    auth = _read_auth(os.path.join(home, "auth.json"), result)
    if toml is None and auth is None:
        return result
    _Importer(result, toml or _TomlFile.empty(os.path.join(home, "config.toml")), auth, env).run()
    return result


# --- config.toml ---------------------------------------------------------------------------

_TOML_ERROR_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")
_SEGMENT = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = re.compile(rf"^\s*({_SEGMENT}(?:\s*\.\s*{_SEGMENT})*)\s*=")
_HEADER = re.compile(rf"^\s*\[\s*({_SEGMENT}(?:\s*\.\s*{_SEGMENT})*)\s*\]")


def _split_dotted(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(_SEGMENT, text)]


@dataclass
class _TomlFile:
    path: str
    data: dict[str, Any]
    lines: dict[str, int]

    @classmethod
    def empty(cls, path: str) -> "_TomlFile":
        return cls(path, {}, {})

    @classmethod
    def read(cls, path: str, result: CodexImport) -> "_TomlFile | None":
        text = _read_text(path, result, "config", "or fix its encoding")
        if text is None:
            return None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            message = str(error)
            match = _TOML_ERROR_LINE.search(message)
            where = f"{path}:{match.group(1)}" if match else path
            reason = _TOML_ERROR_LINE.sub("", message).strip()
            result.problems.append(Problem(where, "(file)", f"not valid TOML: {reason}",
                                           "fix the syntax at that line (quotes around strings, one key per line, "
                                           "[table] headers), or run `codex` once to see its own message"))
            return None
        return cls(path, data, _line_index(text))

    def line(self, *path: str) -> int | None:
        """Line of the dotted key, or of its nearest enclosing table or key."""
        parts = list(path)
        while parts:
            found = self.lines.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return None

    def origin(self, *path: str) -> Origin:
        line = self.line(*path)
        label = f"codex-cli:config.toml:{line}" if line else "codex-cli:config.toml"
        return Origin(label, self.path, line)


def _line_index(text: str) -> dict[str, int]:
    """``dotted.key -> line`` for keys and table headers (tomllib keeps no positions)."""
    index: dict[str, int] = {}
    table: list[str] = []
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            table = _split_dotted(stripped.strip("[] \t"))
            continue
        header = _HEADER.match(stripped)
        if header:
            table = _split_dotted(header.group(1))
            index.setdefault(".".join(table), number)
            continue
        key = _DOTTED.match(stripped)
        if key:
            index.setdefault(".".join([*table, *_split_dotted(key.group(1))]), number)
        for quote in ('"""', "'''"):
            if line.count(quote) % 2 == 1:
                in_multiline = quote
                break
    return index


# --- auth.json -----------------------------------------------------------------------------

@dataclass
class _Auth:
    path: str
    api_key: str | None
    has_tokens: bool


def _read_text(path: str, result: CodexImport, kind: str, advice: str) -> str | None:
    """A Codex CLI file's text; None when it is absent (not a problem) or unreadable (one)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        what = getattr(error, "strerror", None) or "not UTF-8 text"
        result.found = True
        result.problems.append(Problem(path, "(file)", f"cannot read the Codex CLI {kind}: {what}",
                                       f"make {path} readable by the user packyd runs as, {advice}"))
        return None
    result.found = True
    return text


def _read_auth(path: str, result: CodexImport) -> _Auth | None:
    text = _read_text(path, result, "credentials", "and keep it 0600")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # error.msg names the syntax problem only; the text around it could be the key.
        result.problems.append(Problem(f"{path}:{error.lineno}", "(file)", f"not valid JSON: {error.msg}",
                                       'it should read {"OPENAI_API_KEY": "<your Packycode key>"}; '
                                       "or run `codex login --with-api-key` to rewrite it"))
        return None
    if not isinstance(data, dict):
        result.problems.append(Problem(path, "(file)", "not a JSON object",
                                       'it should read {"OPENAI_API_KEY": "<your Packycode key>"}'))
        return None
    key = data.get("OPENAI_API_KEY")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        result.problems.append(Problem(path, "OPENAI_API_KEY", "is not a non-empty string",
                                       'write the key as a JSON string: {"OPENAI_API_KEY": "sk-..."}', "warning"))
        key = None
    return _Auth(path, key.strip() if isinstance(key, str) else None, isinstance(data.get("tokens"), dict))


# --- mapping to packycode settings ---------------------------------------------------------

class _Importer:
    def __init__(self, result: CodexImport, toml: _TomlFile, auth: _Auth | None, env: Mapping[str, str]) -> None:
        self.result = result
        self.toml = toml
        self.auth = auth
        self.env = env

    def put(self, path: str, value: Any, origin: Origin) -> None:
        self.result.values[f"packycode.{path}"] = (value, origin)

    def warn(self, where: str, key: str, what: str, fix: str) -> None:
        self.result.problems.append(Problem(where, key, what, fix, "warning"))

    def run(self) -> None:
        data = self.toml.data
        top = self._effective_top()
        provider_id = top.get("model_provider", ("openai", None))
        provider_name, provider_origin_path = provider_id
        if not isinstance(provider_name, str) or not provider_name:
            self.warn(self._where(provider_origin_path), "model_provider", "is not a provider id",
                      'write e.g. model_provider = "packycode"')
            return
        self.result.provider_id = provider_name
        if provider_name in BUILTIN_PROVIDERS:
            explicit = provider_origin_path is not None
            self.warn(self._where(provider_origin_path) if explicit else self.toml.path, "model_provider",
                      f"the Codex CLI uses its built-in provider {provider_name!r}"
                      f"{'' if explicit else ' (the default)'}, not a Packycode provider; nothing was imported "
                      "from the Codex CLI files",
                      'set model_provider = "packycode" with a [model_providers.packycode] table (Packycode\'s '
                      "documented setup), or configure the packycode block in packyd's config.yaml")
            return
        providers = data.get("model_providers")
        entry = providers.get(provider_name) if isinstance(providers, dict) else None
        if not isinstance(entry, dict):
            self.warn(self._where(provider_origin_path), "model_provider",
                      f"names {provider_name!r}, but there is no [model_providers.{provider_name}] table",
                      f"add [model_providers.{provider_name}] with base_url, wire_api and requires_openai_auth, "
                      "or fix the id")
            return
        self._model_settings(top)
        self._provider(provider_name, entry)
        if "disable_response_storage" in data:
            self.put("privacy.disable-response-storage", data["disable_response_storage"],
                     self.toml.origin("disable_response_storage"))

    def _where(self, path: tuple[str, ...] | None) -> str:
        return self.toml.origin(*path).where() if path else self.toml.path

    def _effective_top(self) -> dict[str, tuple[Any, tuple[str, ...] | None]]:
        """Top-level keys with the selected profile laid over them: ``key -> (value, toml path)``."""
        data = self.toml.data
        top: dict[str, tuple[Any, tuple[str, ...] | None]] = {
            key: (data[key], (key,)) for key in PROFILE_KEYS if key in data}
        profile = data.get("profile")
        if profile is None:
            return top
        profiles = data.get("profiles")
        chosen = profiles.get(profile) if isinstance(profiles, dict) and isinstance(profile, str) else None
        if not isinstance(chosen, dict):
            self.warn(self._where(("profile",)), "profile", f"selects {profile!r}, but there is no such "
                      "[profiles.<name>] table; the top-level keys were used",
                      f"add [profiles.{profile}] or remove the profile line")
            return top
        for key in PROFILE_KEYS:
            if key in chosen:
                top[key] = (chosen[key], ("profiles", profile, key))
        return top

    def _model_settings(self, top: dict[str, tuple[Any, tuple[str, ...] | None]]) -> None:
        mapping = {
            "model": "defaults.model",
            "model_reasoning_effort": "defaults.model-reasoning-effort",
            "model_reasoning_summary": "defaults.model-reasoning-summary",
            "model_verbosity": "defaults.model-verbosity",
        }
        for codex_key, packyd_path in mapping.items():
            if codex_key in top:
                value, where = top[codex_key]
                self.put(packyd_path, value, self.toml.origin(*(where or (codex_key,))))

    def _provider(self, provider_id: str, entry: dict[str, Any]) -> None:
        base = ("model_providers", provider_id)
        origin = lambda key: self.toml.origin(*base, key)  # noqa: E731
        if "base_url" in entry:
            self.put("base-url", entry["base_url"], origin("base_url"))
        else:
            self.result.notes.append(f"[model_providers.{provider_id}] has no base_url: packyd's default "
                                     "(Packycode's https://codex-api.packycode.com/v1) applies")
        if "wire_api" in entry:
            self.put("wire-api", entry["wire_api"], origin("wire_api"))
        env_key = entry.get("env_key")
        if env_key is not None and (not isinstance(env_key, str) or not env_key.strip()):
            self.warn(origin("env_key").where(), f"model_providers.{provider_id}.env_key",
                      "is not an environment variable name", 'write e.g. env_key = "PACKYCODE_API_KEY"')
            env_key = None
        if "requires_openai_auth" in entry:
            value = entry["requires_openai_auth"]
            self.put("requires-openai-auth", value or bool(env_key) if isinstance(value, bool) else value,
                     origin("requires_openai_auth"))
        elif env_key:
            self.put("requires-openai-auth", True, origin("env_key"))
        self._key(provider_id, entry, env_key)
        self._headers(provider_id, entry)
        self._numbers(provider_id, entry)
        if entry.get("query_params"):
            self.warn(origin("query_params").where(), f"model_providers.{provider_id}.query_params",
                      "is ignored by packyd: it has no setting for URL query parameters, and Packycode needs none",
                      "remove query_params if it is left over from an Azure setup; if your relay really needs "
                      "it, packyd cannot serve that relay yet")
        for key, why in CLIENT_ONLY.items():
            if key in entry:
                self.result.notes.append(f"model_providers.{provider_id}.{key}: {why}")

    def _key(self, provider_id: str, entry: dict[str, Any], env_key: str | None) -> None:
        base = ("model_providers", provider_id)
        if env_key:
            value = self.env.get(env_key, "")
            if value.strip():
                line = self.toml.line(*base, "env_key")
                self.put("credentials.openai-api-key", value.strip(),
                         Origin(f"codex-cli:env_key={env_key}", self.toml.path, line))
                return
            self.result.notes.append(f"env_key names {env_key}, which is not set: the key comes from "
                                     "experimental_bearer_token or auth.json instead")
        token = entry.get("experimental_bearer_token")
        if isinstance(token, str) and token.strip():
            self.put("credentials.openai-api-key", token.strip(),
                     self.toml.origin(*base, "experimental_bearer_token"))
            return
        if self.auth is None:
            return
        if self.auth.api_key:
            self.put("credentials.openai-api-key", self.auth.api_key,
                     Origin("codex-cli:auth.json", self.auth.path, None))
        elif self.auth.has_tokens:
            self.warn(self.auth.path, "OPENAI_API_KEY",
                      "auth.json holds a ChatGPT login, not an API key; Packycode needs its own API key",
                      "run `codex login --with-api-key` with your Packycode key, or set "
                      "packycode.credentials.openai-api-key in packyd's config.yaml")

    def _headers(self, provider_id: str, entry: dict[str, Any]) -> None:
        base = ("model_providers", provider_id)
        headers: dict[str, Any] = {}
        where: tuple[str, ...] | None = None
        static = entry.get("http_headers")
        if isinstance(static, dict):
            headers.update(static)
            where = (*base, "http_headers")
        elif static is not None:
            self.warn(self.toml.origin(*base, "http_headers").where(), f"model_providers.{provider_id}.http_headers",
                      "is not a table", 'write http_headers = { "X-Name" = "value" }')
        dynamic = entry.get("env_http_headers")
        if isinstance(dynamic, dict):
            for name, variable in dynamic.items():
                value = self.env.get(variable, "") if isinstance(variable, str) else ""
                if value.strip():  # Codex adds the header only when the variable is set and not blank
                    headers[name] = value
                    where = where or (*base, "env_http_headers")
                else:
                    self.result.notes.append(f"env_http_headers.{name}: {variable} is not set, header not sent")
        elif dynamic is not None:
            self.warn(self.toml.origin(*base, "env_http_headers").where(),
                      f"model_providers.{provider_id}.env_http_headers", "is not a table",
                      'write env_http_headers = { "X-Name" = "ENV_VAR" }')
        if headers and where:
            self.put("headers", headers, self.toml.origin(*where))

    def _numbers(self, provider_id: str, entry: dict[str, Any]) -> None:
        base = ("model_providers", provider_id)
        retries = entry.get("request_max_retries")
        if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0:
            attempts = min(retries + 1, 10)
            if attempts != retries + 1:
                self.result.notes.append(f"request_max_retries = {retries} capped to packyd's maximum "
                                         "of 10 attempts")
            self.put("retries.max-attempts", attempts, self.toml.origin(*base, "request_max_retries"))
        idle = entry.get("stream_idle_timeout_ms")
        if isinstance(idle, int) and not isinstance(idle, bool):
            self.put("timeouts.idle", idle / 1000.0, self.toml.origin(*base, "stream_idle_timeout_ms"))
