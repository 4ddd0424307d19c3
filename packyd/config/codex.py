"""Reading the Codex CLI's own files ($CODEX_HOME or ~/.codex) as a settings source."""

from __future__ import annotations

from typing import Any, Mapping

from .load import Origin, Problem

__all__ = ["read_codex_layer"]


def read_codex_layer(env: Mapping[str, str]) -> tuple[dict[str, tuple[Any, Origin]], list[Problem]]:
    return {}, []
