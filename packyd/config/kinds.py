"""Value kinds for config settings: each parses one raw YAML/env value or explains why not.

A kind raises :class:`Invalid` with two sentences, *what is wrong* and *how to fix it*,
because that pair is what ``packyd check-config`` prints for every problem. Keeping the
parsing in small objects lets the same kind serve YAML values (already typed) and environment
variables (always strings), and lets the documentation generator describe a setting's type.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Invalid",
    "Kind",
    "Str",
    "Bool",
    "Int",
    "Duration",
    "Size",
    "Enum",
    "StrList",
    "StrMap",
    "Url",
    "ModelMap",
    "is_loopback_host",
]


class Invalid(Exception):
    """A value that does not fit its kind; ``fix`` says what to write instead."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


class Kind:
    """Base class: ``parse`` takes a raw value (from YAML, or a string from the environment)."""

    name = "value"

    def parse(self, value: Any, *, from_text: bool = False) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Str(Kind):
    nonempty: bool = True
    optional: bool = False
    name = "string"

    def parse(self, value: Any, *, from_text: bool = False) -> str | None:
        if value is None and self.optional:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {_type_name(value)}", "write a quoted string")
        if self.nonempty and not value.strip():
            raise Invalid("must not be empty", "write a value, or remove the key to use the default")
        return value


@dataclass(frozen=True)
class Bool(Kind):
    name = "boolean"

    def parse(self, value: Any, *, from_text: bool = False) -> bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
        raise Invalid(f"expected true or false, got {_type_name(value)} {value!r}", "write true or false")


@dataclass(frozen=True)
class Int(Kind):
    minimum: int | None = None
    maximum: int | None = None
    name = "integer"

    def parse(self, value: Any, *, from_text: bool = False) -> int:
        if from_text and isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected a whole number, got {_type_name(value)} {value!r}", "write a whole number")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise Invalid(f"{value} is out of range", f"use a number from {self.minimum} to {self.maximum}")
        return value

    def describe(self) -> str:
        return f"integer {self.minimum}..{self.maximum}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class Duration(Kind):
    """``30s``, ``5m``, ``250ms``, ``1h`` or plain seconds; returned as float seconds."""

    minimum: float = 0.0
    maximum: float = 86400.0
    name = "duration"

    def parse(self, value: Any, *, from_text: bool = False) -> float:
        seconds: float
        if isinstance(value, bool):
            raise Invalid(f"expected a duration, got {_type_name(value)}", 'write e.g. "30s", "5m" or 30')
        if isinstance(value, (int, float)):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        else:
            raise Invalid(f"{value!r} is not a duration", 'write e.g. "30s", "5m", "250ms" or plain seconds')
        if not self.minimum <= seconds <= self.maximum:
            raise Invalid(f"{value!r} is out of range",
                          f"use a duration from {self.minimum:g}s to {self.maximum:g}s")
        return seconds

    def describe(self) -> str:
        return "duration (e.g. 30s, 5m, 250ms, or seconds)"


_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
               "gb": 1000**3, "gib": 1024**3}


@dataclass(frozen=True)
class Size(Kind):
    """``32MiB``, ``500kB`` or plain bytes; returned as int bytes."""

    minimum: int = 1024
    maximum: int = 1024**3
    name = "size"

    def parse(self, value: Any, *, from_text: bool = False) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(value, str) and (match := _SIZE.match(value)):
            size = int(match.group(1)) * _UNIT_BYTES[(match.group(2) or "b").lower() if match.group(2) else None]
        else:
            raise Invalid(f"{value!r} is not a size", 'write e.g. "32MiB", "500kB" or a number of bytes')
        if not self.minimum <= size <= self.maximum:
            raise Invalid(f"{value!r} is out of range", f"use a size from {self.minimum} to {self.maximum} bytes")
        return size

    def describe(self) -> str:
        return "size (e.g. 32MiB, 500kB, or bytes)"


@dataclass(frozen=True)
class Enum(Kind):
    choices: tuple[str, ...] = ()
    name = "one of"

    def parse(self, value: Any, *, from_text: bool = False) -> str:
        if isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        shown = value if isinstance(value, str) else _type_name(value)
        raise Invalid(f"{shown!r} is not allowed", "use one of: " + ", ".join(self.choices))

    def describe(self) -> str:
        return "one of " + " | ".join(self.choices)


@dataclass(frozen=True)
class StrList(Kind):
    name = "list of strings"

    def parse(self, value: Any, *, from_text: bool = False) -> tuple[str, ...]:
        if from_text and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if value is None:
            return ()
        if not isinstance(value, list):
            raise Invalid(f"expected a list, got {_type_name(value)}", 'write a YAML list, e.g. ["a", "b"]')
        items = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise Invalid(f"item {index} is {_type_name(item)}, not a non-empty string",
                              "make every item a non-empty string")
            items.append(item)
        return tuple(items)


@dataclass(frozen=True)
class StrMap(Kind):
    """A mapping of strings to strings (HTTP headers); order kept."""

    name = "mapping of strings"

    def parse(self, value: Any, *, from_text: bool = False) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise Invalid(f"expected a mapping, got {_type_name(value)}", 'write e.g. {"X-Name": "value"}')
        pairs = []
        for key, item in value.items():
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(key, str) or not isinstance(item, str):
                raise Invalid(f"entry {key!r} is not a string to string pair", "quote both name and value")
            if "\n" in key or "\n" in item or "\r" in key or "\r" in item:
                raise Invalid(f"entry {key!r} contains a line break", "remove the line break")
            pairs.append((key, item))
        return tuple(pairs)


def is_loopback_host(host: str) -> bool:
    """True for addresses that only this machine can reach (``localhost``, 127/8, ::1)."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Url(Kind):
    """An http(s) base URL; ``require_v1`` for OpenAI-style bases that must end in ``/v1``."""

    require_v1: bool = False
    name = "URL"

    def parse(self, value: Any, *, from_text: bool = False) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"expected a URL, got {_type_name(value)}", 'write e.g. "https://codex-api.packycode.com/v1"')
        text = value.strip()
        parts = urlsplit(text)
        if parts.scheme not in {"http", "https"}:
            raise Invalid(f"{text!r} is not an http(s) URL", 'start it with "https://"')
        if not parts.hostname:
            raise Invalid(f"{text!r} has no host name", 'write e.g. "https://codex-api.packycode.com/v1"')
        if parts.query or parts.fragment:
            raise Invalid(f"{text!r} has a query or fragment", "remove everything from ? or # on")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise Invalid(f"{text!r} sends your key in clear text to a remote host",
                          "use https:// (plain http is only accepted for 127.0.0.1/localhost)")
        path = parts.path.rstrip("/")
        if self.require_v1 and not path.endswith("/v1"):
            raise Invalid(f"{text!r} does not end in /v1",
                          f'write "{parts.scheme}://{parts.netloc}{path}/v1" (packyd appends /responses)')
        return text.rstrip("/")


_MODEL_SPEC = re.compile(r"^([A-Za-z0-9._:/-]+?)(?:\((none|minimal|low|medium|high|xhigh)\))?$")


@dataclass(frozen=True)
class ModelMap(Kind):
    """Ordered ``glob pattern -> model(effort)``; the first match wins, so order matters."""

    name = "mapping of model patterns"

    def parse(self, value: Any, *, from_text: bool = False) -> tuple[tuple[str, str, str | None], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise Invalid(f"expected a mapping, got {_type_name(value)}",
                          'write e.g. {"claude-*opus*": "gpt-5-codex(high)"}')
        entries = []
        for pattern, target in value.items():
            if not isinstance(pattern, str) or not pattern.strip():
                raise Invalid(f"pattern {pattern!r} is not a string", "quote the pattern")
            match = _MODEL_SPEC.match(target.strip()) if isinstance(target, str) else None
            if match is None:
                raise Invalid(f"target {target!r} for {pattern!r} is not a model name",
                              'write "model" or "model(effort)" with effort none, minimal, low, medium, high or xhigh')
            entries.append((pattern.strip(), match.group(1), match.group(2)))
        return tuple(entries)

    def describe(self) -> str:
        return 'mapping "glob" -> "model" or "model(effort)"'
