"""The README and the user guides agree with the command line, and their links resolve.

* Every ``packyd`` subcommand (from ``packyd.cli.build_parser``) is in the README's command
  table, and every option that table shows for a command is one that command accepts.
* Every relative link in README.md and the guides points to an existing file, and every
  ``#anchor`` to a heading of that file (GitHub's slug rule: lower case, punctuation other
  than ``-`` and ``_`` removed, spaces become ``-``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from packyd.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDES = [README] + [ROOT / "docs" / name for name in
                     ("configuration.md", "codex-cli-migration.md", "scope-and-limits.md", "troubleshooting.md")]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _command_table() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `packyd ")]


def test_every_subcommand_is_in_the_readme() -> None:
    rows = "\n".join(_command_table())
    missing = [name for name in _subparsers() if f"`packyd {name}" not in rows and f"/ `packyd {name}" not in rows]
    assert not missing, f"README's command table lacks: {missing}"


def test_readme_options_exist() -> None:
    commands = _subparsers()
    for row in _command_table():
        cell = row.split("|")[1]
        for usage in re.findall(r"`packyd ([^`]+)`", cell):
            name = usage.split()[0]
            assert name in commands, f"README names an unknown command: packyd {name}"
            known = {flag for action in commands[name]._actions for flag in action.option_strings}
            for flag in re.findall(r"(--[a-z-]+)", usage):
                assert flag in known, f"README shows `packyd {name} {flag}`, which packyd {name} does not accept"


def _slug(heading: str) -> str:
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.name}: {broken}"


def test_slug_rule() -> None:
    assert _slug("The `--packycode` flag") == "the---packycode-flag"
    assert _slug("3. Give it the Packycode key") == "3-give-it-the-packycode-key"
    assert _slug("Reference: every key") == "reference-every-key"
