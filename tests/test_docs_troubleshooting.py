"""docs/troubleshooting.md explains every message packyd can produce; checked against the code.

Extraction rule (static, with :mod:`ast`, over ``packyd/**/*.py``):

* **client errors**: the first argument of every call to ``PackydError`` or one of its
  subclasses, wherever they are defined (``packyd/errors.py``, ``CircuitOpen`` in routing, ...:
  found by following class bases through the whole package);
* **configuration problems** (in ``packyd/config/``): the *what* argument of ``Problem(where,
  path, what, fix)`` and of its helpers ``self.problem(origin, path, what, fix)``,
  ``self.warn(where, key, what, fix)`` and ``add(path, what, fix)``, and of
  ``Invalid(what, fix)`` (a value that does not fit its kind);
* **command-line messages** (``packyd/cli.py``, ``packyd/commands/``, ``packyd/online_check.py``,
  ``packyd/daemon_client.py``): ``print(..., file=...)`` to stderr, the message of
  ``OnlineResult(outcome, message)``, ``NotRunning(...)`` and ``DaemonError(...)``;
* **log events**: ``logs.log(level, EVENT, ...)`` at any level but ``"debug"`` gives
  ``event=EVENT``; ``logs.audit(ACTION, ...)`` gives ``action=ACTION``.

A message argument becomes a template: string literals are kept, f-string fields and any
other expression become a placeholder, ``+`` concatenates, ``a if c else b`` gives both
branches, a variable gives every value assigned to it in the enclosing function (else at
module level), and ``_with_reason(prefix, ...)`` gives ``prefix`` plus a placeholder.
Templates with fewer than 5 letters or digits outside placeholders (e.g. ``f"{kept} ({provider})"``)
carry nothing checkable and are skipped.

Matching: backticks are removed and runs of whitespace collapsed, in the template and in the
page; each template becomes a regular expression where a placeholder matches any text within
one line except a table-cell separator, and it must match somewhere in the page. So the page
can quote a message with example values (``Packycode rejected the key; check
packycode.credentials (source: codex-cli:auth.json)``) or with ``…`` for the variable parts.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "packyd"
DOC = ROOT / "docs" / "troubleshooting.md"
HOLE = "\x00"
#: call name -> index of the "what" argument, for configuration problems
PROBLEM_WHAT = {"Problem": 2, "problem": 2, "warn": 2, "add": 1, "Invalid": 0}
CLI_FILES = ("packyd/cli.py", "packyd/commands/", "packyd/online_check.py", "packyd/daemon_client.py")


@dataclass(frozen=True)
class Message:
    kind: str  # client | config | cli | log
    where: str  # file:line
    template: str  # HOLE marks a variable part

    def shown(self) -> str:
        return self.template.replace(HOLE, "…")


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


class _Templates:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node

    def _scope(self, node: ast.AST) -> ast.AST:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node
        return self.tree

    def resolve(self, node: ast.AST, depth: int = 0) -> list[str]:
        if depth > 6:
            return [HOLE]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
            return [text]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return [a + b for a in self.resolve(node.left, depth + 1) for b in self.resolve(node.right, depth + 1)]
        if isinstance(node, ast.IfExp):
            return self.resolve(node.body, depth + 1) + self.resolve(node.orelse, depth + 1)
        if isinstance(node, ast.Name):
            for scope in (self._scope(node), self.tree):
                found: list[str] = []
                for item in ast.walk(scope):
                    if isinstance(item, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == node.id for t in item.targets):
                        found.extend(self.resolve(item.value, depth + 1))
                if found:
                    return found
            return [HOLE]
        if isinstance(node, ast.Call) and _call_name(node) == "_with_reason" and node.args:
            return [prefix + HOLE for prefix in self.resolve(node.args[0], depth + 1)]
        return [HOLE]


def _error_classes(trees: dict[str, ast.Module]) -> set[str]:
    names = {"PackydError"}
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names:
                    bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", None) for b in node.bases}
                    if bases & names:
                        names.add(node.name)
                        grew = True
    return names


@functools.lru_cache(maxsize=1)
def extract_messages() -> tuple[Message, ...]:
    trees = {str(path.relative_to(ROOT)): ast.parse(path.read_text(encoding="utf-8"))
             for path in sorted(PACKAGE.rglob("*.py"))}
    errors = _error_classes(trees)
    found: list[Message] = []
    for rel, tree in trees.items():
        templates = _Templates(tree)

        def add(kind: str, call: ast.Call, arg: ast.AST, prefix: str = "") -> None:
            for text in templates.resolve(arg):
                found.append(Message(kind, f"{rel}:{call.lineno}", prefix + text))

        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            if name in errors and node.args:
                add("client", node, node.args[0])
            if rel.startswith("packyd/config/") and name in PROBLEM_WHAT and len(node.args) > PROBLEM_WHAT[name]:
                add("config", node, node.args[PROBLEM_WHAT[name]])
            if rel.startswith(CLI_FILES):
                if name == "print" and node.args and any(k.arg == "file" for k in node.keywords):
                    add("cli", node, node.args[0])
                elif name == "OnlineResult" and len(node.args) > 1:
                    add("cli", node, node.args[1])
                elif name in ("NotRunning", "DaemonError") and node.args:
                    add("cli", node, node.args[0])
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "logs":
                if func.attr == "log" and len(node.args) >= 2:
                    level = node.args[0]
                    if not (isinstance(level, ast.Constant) and level.value == "debug"):
                        add("log", node, node.args[1], "event=")
                elif func.attr == "audit" and node.args:
                    add("log", node, node.args[0], "action=")
    return tuple(found)


def _normalise(text: str) -> str:
    return re.sub(r"[ \t]+", " ", text.replace("`", "").replace("\\|", "|"))


def _checkable(template: str) -> bool:
    return sum(ch.isalnum() for ch in template.replace(HOLE, "")) >= 5


def _pattern(template: str) -> re.Pattern[str]:
    pieces = _normalise(template).strip().split(HOLE)
    return re.compile(r"[^|\n]*?".join(re.escape(piece) for piece in pieces))


def undocumented(messages: list[Message] | tuple[Message, ...], page: str) -> list[Message]:
    text = _normalise(page)
    missing, seen = [], set()
    for message in messages:
        key = (message.kind, message.template)
        if key in seen or not _checkable(message.template):
            continue
        seen.add(key)
        if not _pattern(message.template).search(text):
            missing.append(message)
    return missing


def test_extraction_finds_messages_of_every_kind() -> None:
    """Guard against the extraction silently finding nothing (a refactor renaming things)."""
    messages = extract_messages()
    kinds = {kind: [m for m in messages if m.kind == kind] for kind in ("client", "config", "cli", "log")}
    assert len(kinds["client"]) > 50 and len(kinds["config"]) > 30 and len(kinds["cli"]) > 20, \
        {k: len(v) for k, v in kinds.items()}
    shown = {m.shown() for m in messages}
    for known in ("… rejected the key; check packycode.credentials (source: …)",
                  "packyd has no usable provider: …", "Packycode is enabled but no key was found",
                  "event=upstream_failure", "action=circuit_opened", "packyd is not running: …"):
        assert any(known in text for text in shown), known


@pytest.mark.parametrize("kind", ["client", "config", "cli", "log"])
def test_every_message_is_in_troubleshooting(kind: str) -> None:
    page = DOC.read_text(encoding="utf-8")
    missing = undocumented([m for m in extract_messages() if m.kind == kind], page)
    assert not missing, f"{len(missing)} {kind} message(s) not explained in docs/troubleshooting.md:\n" + "\n".join(
        f"  {m.where}: {m.shown()}" for m in missing)


def test_matching_rule() -> None:
    """A placeholder stands for any text within one line (and one table cell)."""
    template = f"{HOLE} rejected the key; check packycode.credentials (source: {HOLE})"
    ok = "| `Packycode rejected the key; check packycode.credentials (source: …)` | 403 |"
    assert _pattern(template).search(_normalise(ok))
    split = "| Packycode rejected | the key; check packycode.credentials (source: x) |"
    assert not _pattern(template).search(_normalise(split))
    assert not _checkable(f"{HOLE} ({HOLE})") and _checkable("missing")
