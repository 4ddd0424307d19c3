"""Load, merge and validate packyd's configuration; report every problem at once.

Sources, highest first (FR-012): ``config.yaml`` > environment (``PACKYD_PACKYCODE_*``) >
the Codex CLI's own files (only when ``packycode.import-codex-cli`` is true or ``--packycode``
is given) > built-in defaults. Only the ``packycode`` block is layered; the rest of the file
is packyd's own and comes from ``config.yaml`` or its defaults.

Every leaf under ``packycode`` remembers where its value came from (:attr:`LoadResult.sources`),
which ``/v0/status`` and ``packyd status`` show, and problems point at that place: a line of
``config.yaml``, an environment variable, or a line of ``~/.codex/config.toml``.

Two severities: an *error* makes the whole file unusable (``check-config`` exits 1, a reload
keeps the previous config, a start is refused); a *warning* leaves the file usable but
switches something off. A missing Packycode key is a warning, so packyd starts and explains
what to configure, unless Packycode is required (``--packycode``), where it is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .kinds import Invalid, is_loopback_host
from .schema import Config, PackycodeConfig, walk_settings, yaml_key
from .yamlfile import YamlDocument, YamlError, parse_yaml

__all__ = [
    "Problem",
    "Origin",
    "LoadResult",
    "load_config",
    "default_config_path",
    "CodexLayer",
    "CREDENTIAL_NAME",
    "Conflict",
    "mask_secret",
    "source_rank",
]

#: File name of the key when systemd passes it with ``LoadCredential=``.
CREDENTIAL_NAME = "packycode-api-key"


@dataclass(frozen=True)
class Origin:
    """Where a value came from: ``label`` is what status shows (``config.yaml:12``,
    ``env:PACKYD_PACKYCODE_MODEL``, ``codex-cli:config.toml``, ``default``)."""

    label: str
    file: str | None = None
    line: int | None = None
    from_text: bool = False  # environment values are strings and need lenient parsing

    def where(self) -> str:
        if self.file:
            return f"{self.file}:{self.line}" if self.line else self.file
        return self.label


DEFAULT_ORIGIN = Origin("default")


@dataclass(frozen=True)
class Problem:
    where: str
    path: str
    what: str
    fix: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"{self.where}: {self.path}: {self.what} — {self.fix}"


@dataclass(frozen=True)
class Conflict:
    """Several sources set one packycode setting to different values; ``winner`` is used.

    Only labels are kept: the value itself is looked up (and masked when secret) by whoever
    logs or shows it, so a conflict can be passed around without leaking a key.
    """

    path: str
    winner: str
    overridden: tuple[str, ...]

    def why(self) -> str:
        return "config.yaml > environment > Codex CLI files > defaults"


def source_rank(label: str) -> int:
    """Precedence of a source label, lower wins (FR-012); used where two settings compete."""
    if label.startswith("config.yaml") or label == "--packycode":
        return 0
    if label.startswith("env:"):
        return 1
    if label.startswith("systemd-credential:"):
        return 2
    if label.startswith("codex-cli"):
        return 3
    return 9


#: A Codex CLI reader returns ``{dotted packycode path: (raw value, origin)}`` plus problems.
CodexLayer = Callable[[Mapping[str, str]], tuple[dict[str, tuple[Any, Origin]], list[Problem]]]


@dataclass(frozen=True)
class LoadResult:
    config: Config | None
    problems: tuple[Problem, ...]
    path: str | None  # the file read, or None for built-in defaults
    sources: Mapping[str, str]  # "packycode.x.y" -> origin label, for every packycode leaf
    packycode_key: str | None = None
    packycode_key_source: str = "none"
    packycode_usable: bool = False
    packycode_reason: str = ""  # why it is not usable, with the fix
    conflicts: tuple[Conflict, ...] = ()  # settings that more than one source set differently

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors


def default_config_path(env: Mapping[str, str]) -> str | None:
    """``$PACKYD_CONFIG``, else ``/etc/packyd/config.yaml`` if present, else ``./config.yaml``
    if present, else None (built-in defaults)."""
    if env.get("PACKYD_CONFIG"):
        return env["PACKYD_CONFIG"]
    for candidate in ("/etc/packyd/config.yaml", "config.yaml"):
        if os.path.exists(candidate):
            return candidate
    return None


def mask_secret(value: str | None) -> str:
    """``sk-…last4``: enough to tell keys apart, never enough to use one."""
    if not value:
        return "(unset)"
    prefix = "sk-" if value.startswith("sk-") else ""
    return f"{prefix}…{value[-4:]}" if len(value) >= 12 else f"{prefix}…"


class _Builder:
    """Turns a raw mapping into a config dataclass, collecting problems instead of stopping."""

    def __init__(self, document: YamlDocument, filename: str, overlay: dict[str, tuple[Any, Origin]], *,
                 lenient_codex: bool = False) -> None:
        self.document = document
        self.filename = filename
        self.overlay = overlay
        self.problems: list[Problem] = []
        self.sources: dict[str, str] = {}
        #: Codex CLI values read only because there is no config file: a bad one is a
        #: warning and the default applies (nobody asked packyd to use ~/.codex).
        self.lenient_codex = lenient_codex

    def origin_of(self, path: str) -> Origin:
        line = self.document.line_of(path)
        return Origin(f"config.yaml:{line}" if line else "config.yaml", self.filename, line)

    def problem(self, origin: Origin, path: str, what: str, fix: str, severity: str = "error") -> None:
        self.problems.append(Problem(origin.where(), path, what, fix, severity))

    def build(self, cls: type, raw: Any, path: str) -> Any:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problem(self.origin_of(path), path or "(top level)", "expected a mapping of settings",
                         "indent the settings under this key as `name: value` lines")
            raw = {}
        fields = {yaml_key(item.name): item for item in dataclasses.fields(cls)}
        for key in raw:
            if str(key) not in fields:
                child = f"{path}.{key}" if path else str(key)
                close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
                fix = f"did you mean `{close[0]}`?" if close else "remove it; known keys here: " + ", ".join(fields)
                self.problem(self.origin_of(child), child, "unknown key", fix)
        values: dict[str, Any] = {}
        for key, item in fields.items():
            child = f"{path}.{key}" if path else key
            if "section" in item.metadata:
                if key in raw or any(p.startswith(child + ".") for p in self.overlay):
                    values[item.name] = self.build(item.metadata["section"], raw.get(key), child)
                else:
                    self._record_defaults(item.metadata["section"], child)
            elif "list_of" in item.metadata:
                if key in raw:
                    values[item.name] = self.build_list(item.metadata["list_of"], raw[key], child)
            else:
                # An explicit null means "not set here", so lower sources still apply.
                if raw.get(key) is not None:
                    value, origin = raw[key], self.origin_of(child)
                elif child in self.overlay:
                    value, origin = self.overlay[child]
                else:
                    self.sources[child] = DEFAULT_ORIGIN.label
                    continue
                self.sources[child] = origin.label
                try:
                    values[item.name] = item.metadata["kind"].parse(value, from_text=origin.from_text)
                except Invalid as invalid:
                    if self.lenient_codex and origin.label.startswith("codex-cli"):
                        self.problem(origin, child, invalid.what, invalid.fix + "; using the default meanwhile",
                                     "warning")
                        self.sources[child] = DEFAULT_ORIGIN.label
                    else:
                        self.problem(origin, child, invalid.what, invalid.fix)
        return cls(**values)

    def build_list(self, cls: type, raw: Any, path: str) -> tuple[Any, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.problem(self.origin_of(path), path, "expected a list", "write one `- name: ...` entry per item")
            return ()
        return tuple(self.build(cls, item, f"{path}[{index}]") for index, item in enumerate(raw))

    def _record_defaults(self, cls: type, prefix: str) -> None:
        for leaf, _ in walk_settings(cls, prefix + "."):
            self.sources[leaf] = DEFAULT_ORIGIN.label


def _env_layer(env: Mapping[str, str]) -> dict[str, tuple[Any, Origin]]:
    layer: dict[str, tuple[Any, Origin]] = {}
    for path, item in walk_settings(PackycodeConfig, "packycode."):
        name = item.metadata.get("env")
        if name and env.get(name, "") != "":
            layer[path] = (env[name], Origin(f"env:{name}", from_text=True))
    return layer


def load_config(
    path: str | None,
    *,
    env: Mapping[str, str] | None = None,
    require_packycode: bool = False,
    codex_layer: CodexLayer | None = None,
) -> LoadResult:
    """Read ``path`` (or built-in defaults when None), merge sources, validate everything.

    Raises OSError when the file cannot be read (``check-config`` exits 2 on it).

    ``codex_layer`` reads the Codex CLI's files; it is consulted when the file or environment
    sets ``packycode.import-codex-cli`` or when ``require_packycode`` (``--packycode``) is true.
    With no config file at all, the built-in default imports the Codex CLI files too, so a Codex
    CLI user gets a working packyd with no configuration.
    """
    env = os.environ if env is None else env
    filename = path or "(built-in defaults)"
    if path is None:
        document = YamlDocument({})
    else:
        text = Path(path).read_text(encoding="utf-8")
        try:
            document = parse_yaml(text)
        except YamlError as error:
            where = f"{path}:{error.line}" if error.line else path
            problem = Problem(where, "(file)", f"not valid YAML: {error.message}",
                              "fix the syntax at that line (indentation, a missing colon or quote)")
            return LoadResult(None, (problem,), path, {})
    problems: list[Problem] = []
    for dup_path, line in document.duplicates:
        problems.append(Problem(f"{path}:{line}", dup_path, "key appears twice; only the last one counts",
                                "delete one of them"))
    raw = document.data if document.data is not None else {}

    overlay = _env_layer(env)
    env_values = dict(overlay)
    codex_values: dict[str, tuple[Any, Origin]] = {}
    raw_packycode = raw.get("packycode") if isinstance(raw, dict) else None
    asked_for_codex = require_packycode or _wants_codex(raw_packycode, overlay)
    if (asked_for_codex or path is None) and codex_layer is not None:
        codex_values, codex_problems = codex_layer(env)
        if not asked_for_codex:
            # Read only because there is no config file: a broken ~/.codex must not stop a
            # packyd that was never told to use it.
            codex_problems = [dataclasses.replace(p, severity="warning") for p in codex_problems]
        problems.extend(codex_problems)
        for key, entry in codex_values.items():
            overlay.setdefault(key, entry)
    if require_packycode:
        overlay["packycode.enabled"] = (True, Origin("--packycode"))
        if isinstance(raw_packycode, dict) and raw_packycode.get("enabled") is False:
            problems.append(Problem(f"{path}:{document.line_of('packycode.enabled')}", "packycode.enabled",
                                    "is false, but --packycode makes Packycode mandatory",
                                    "set it to true, or start without --packycode", "warning"))
            raw_packycode = dict(raw_packycode)
            raw_packycode.pop("enabled")
            raw = dict(raw)
            raw["packycode"] = raw_packycode

    builder = _Builder(document, filename, overlay, lenient_codex=not asked_for_codex)
    config: Config = builder.build(Config, raw, "")
    problems.extend(builder.problems)
    problems.extend(_cross_checks(config, builder))
    if not config.packycode.privacy.disable_response_storage:
        problems.append(_storage_note(builder, overlay))
    key, key_source, key_problems = _resolve_key(config.packycode, builder, env)
    problems.extend(key_problems)

    usable, reason = True, ""
    if not config.packycode.enabled:
        usable, reason = False, "packycode.enabled is false"
    elif config.packycode.requires_openai_auth and not key:
        usable = False
        reason = ("no Packycode key: set packycode.credentials.openai-api-key (or openai-api-key-file) "
                  "in config.yaml, or the environment variable PACKYD_PACKYCODE_API_KEY (or a systemd "
                  f"credential named {CREDENTIAL_NAME}), or OPENAI_API_KEY in ~/.codex/auth.json "
                  "($CODEX_HOME/auth.json), read with packycode.import-codex-cli: true or --packycode")
        problems.append(Problem(builder.origin_of("packycode.credentials").where() if path else filename,
                                "packycode.credentials", "Packycode is enabled but no key was found",
                                reason.removeprefix("no Packycode key: "),
                                "error" if require_packycode else "warning"))
    if any(p.severity == "error" and p.path.startswith("packycode") for p in problems):
        usable, reason = False, "the packycode block has problems (see above)"
    has_errors = any(p.severity == "error" for p in problems)
    return LoadResult(
        config=None if has_errors else config,
        problems=tuple(problems),
        path=path,
        sources=builder.sources,
        packycode_key=key,
        packycode_key_source=key_source,
        packycode_usable=usable and not has_errors,
        packycode_reason=reason,
        conflicts=_conflicts(raw_packycode, env_values, codex_values, builder.sources),
    )


def _storage_note(builder: _Builder, overlay: Mapping[str, tuple[Any, Origin]]) -> Problem:
    """``disable-response-storage: false`` is accepted (Codex configs carry the key) but
    cannot take effect: Codex relays require ``store: false`` and packyd stores nothing."""
    path = "packycode.privacy.disable-response-storage"
    source = builder.sources.get(path, "default")
    where = builder.origin_of(path).where() if source.startswith("config.yaml") else \
        overlay[path][1].where() if path in overlay else source
    return Problem(where, path, "is false, but packyd always sends store:false (Codex relays require it, and "
                   "packyd never stores content); the setting has no effect", "remove it or set it to true",
                   "warning")


def _conflicts(raw_packycode: Any, env_values: Mapping[str, tuple[Any, Origin]],
               codex_values: Mapping[str, tuple[Any, Origin]], sources: Mapping[str, str]) -> tuple[Conflict, ...]:
    """Settings given different values by more than one source, for the start/reload log."""
    found = []
    for path, item in walk_settings(PackycodeConfig, "packycode."):
        candidates: list[tuple[str, Any]] = []
        node: Any = raw_packycode
        for part in path.split(".")[1:]:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            candidates.append((sources.get(path, "config.yaml"), node))
        for layer in (env_values, codex_values):
            if path in layer:
                value, origin = layer[path]
                candidates.append((origin.label, _normalized(item, value, origin)))
        if len(candidates) > 1:
            first = _normalized(item, candidates[0][1], Origin("config.yaml"))
            if any(value != first for _, value in candidates[1:]):
                found.append(Conflict(path, candidates[0][0], tuple(label for label, _ in candidates[1:])))
    return tuple(found)


def _normalized(item: dataclasses.Field[Any], value: Any, origin: Origin) -> Any:
    try:
        return item.metadata["kind"].parse(value, from_text=origin.from_text)
    except Invalid:
        return value


def _wants_codex(raw_packycode: Any, overlay: dict[str, tuple[Any, Origin]]) -> bool:
    if isinstance(raw_packycode, dict) and "import-codex-cli" in raw_packycode:
        return raw_packycode["import-codex-cli"] is True
    entry = overlay.get("packycode.import-codex-cli")
    return bool(entry) and str(entry[0]).strip().lower() in {"1", "true", "yes", "on"}


def _cross_checks(config: Config, builder: _Builder) -> list[Problem]:
    """Rules that involve more than one setting."""
    found: list[Problem] = []

    def add(path: str, what: str, fix: str) -> None:
        found.append(Problem(builder.origin_of(path).where(), path, what, fix))

    if not is_loopback_host(config.host) and not config.api_keys:
        add("host", f"{config.host!r} is reachable from other machines but api-keys is empty",
            "add at least one key under api-keys, or listen on 127.0.0.1")
    names = ["packycode"]
    for index, provider in enumerate(config.providers):
        where = f"providers[{index}]"
        if not provider.name:
            add(f"{where}.name", "every provider needs a name", "add `name: <something>`")
        elif provider.name in names:
            add(f"{where}.name", f"the name {provider.name!r} is already used", "give each provider its own name")
        names.append(provider.name)
        if not provider.base_url:
            add(f"{where}.base-url", "missing", 'set it, e.g. "https://api.anthropic.com"')
        if not provider.api_key and not provider.api_key_file:
            add(f"{where}.api-key", "missing", "set api-key or api-key-file")
        if provider.api_key_file:
            found.extend(_check_key_file(provider.api_key_file, f"{where}.api-key-file", builder))
    for index, name in enumerate(config.routing.fallback):
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            fix = f"did you mean `{close[0]}`?" if close else "name one of: " + ", ".join(names)
            add(f"routing.fallback[{index}]", f"no provider is named {name!r}", fix)
    if len(set(config.routing.fallback)) != len(config.routing.fallback):
        add("routing.fallback", "a provider is listed twice", "list each provider once")
    return found


def _check_key_file(filename: str, path: str, builder: _Builder) -> list[Problem]:
    where = builder.origin_of(path).where()
    try:
        mode = os.stat(filename).st_mode
    except OSError as error:
        return [Problem(where, path, f"cannot read {filename}: {error.strerror}",
                        "create the file with the key on one line, or fix the path")]
    if mode & stat.S_IROTH:
        return [Problem(where, path, f"{filename} is readable by every user on this machine",
                        f"chmod o-rwx {filename}")]
    return []


def _read_key_file(filename: str) -> str:
    return Path(filename).read_text(encoding="utf-8").strip()


def _resolve_key(packycode: PackycodeConfig, builder: _Builder,
                 env: Mapping[str, str]) -> tuple[str | None, str, list[Problem]]:
    """The key from the best-ranked source: openai-api-key, openai-api-key-file, systemd credential.

    The two settings and the credential compete as one: a key file named in config.yaml beats
    a key imported from ~/.codex/auth.json, and a systemd credential (set up by the
    administrator) beats the Codex CLI files too. Within one source the key wins over the file.
    """
    credentials = packycode.credentials
    key_rank = source_rank(builder.sources.get("packycode.credentials.openai-api-key", "default"))
    file_rank = source_rank(builder.sources.get("packycode.credentials.openai-api-key-file", "default"))
    credential = _systemd_credential(env)
    if credentials.openai_api_key and key_rank <= file_rank and not (credential and key_rank > 2):
        return credentials.openai_api_key, builder.sources["packycode.credentials.openai-api-key"], []
    if credentials.openai_api_key_file and not (credential and file_rank > 2):
        problems = _check_key_file(credentials.openai_api_key_file, "packycode.credentials.openai-api-key-file",
                                   builder)
        if problems:
            return None, "none", problems
        key = _read_key_file(credentials.openai_api_key_file)
        if not key:
            return None, "none", [Problem(builder.origin_of("packycode.credentials.openai-api-key-file").where(),
                                          "packycode.credentials.openai-api-key-file",
                                          f"{credentials.openai_api_key_file} is empty",
                                          "write the key into it on one line")]
        return key, f"file:{credentials.openai_api_key_file}", []
    if credential:
        return credential, f"systemd-credential:{CREDENTIAL_NAME}", []
    if credentials.openai_api_key:
        return credentials.openai_api_key, builder.sources["packycode.credentials.openai-api-key"], []
    return None, "none", []


def _systemd_credential(env: Mapping[str, str]) -> str | None:
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory:
        candidate = os.path.join(directory, CREDENTIAL_NAME)
        if os.path.exists(candidate):
            return _read_key_file(candidate) or None
    return None
