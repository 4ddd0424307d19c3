"""``packyd import-codex``: the ``packycode:`` block equivalent to the Codex CLI's own setup.

A Codex CLI user migrating to a config file (FR-011) gets a block that says, line by line,
where each value came from. The key is masked unless ``--with-key``; without it the block
keeps ``import-codex-cli: true`` so the key is still read from ``auth.json`` and the block
works as printed. ``--write FILE`` splices the block into an existing config as text — the
rest of the file, comments included, stays byte for byte — and refuses to replace an existing
``packycode:`` block unless ``--force``. The merged file is validated before it is written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["register", "render_block", "merge_block", "BlockExists"]

_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./:+-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
_TOP_KEY = re.compile(r"""^(?:packycode|"packycode"|'packycode')\s*:(?:\s|$)""")
_COMMENT_COLUMN = 40


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "import-codex", help="print (or write) the packycode: block equivalent to ~/.codex",
        description="Read the Codex CLI's config.toml and auth.json ($CODEX_HOME or ~/.codex) and print the "
                    "equivalent packycode: block for packyd's config.yaml, each value commented with where it "
                    "came from. The key is masked unless --with-key.",
        epilog="exit codes: 0 done, 1 nothing importable or problems (printed), 2 file unreadable, "
               "4 --write refused (a packycode block exists; --force replaces it)")
    parser.add_argument("--codex-home", metavar="DIR", help="Codex CLI directory (default: $CODEX_HOME or ~/.codex)")
    parser.add_argument("--with-key", action="store_true",
                        help="write the key itself into the block "
                             "(default: keep it in auth.json and read it from there)")
    parser.add_argument("--write", metavar="FILE",
                        help="merge the block into FILE (created if missing); other keys and comments are kept")
    parser.add_argument("--force", action="store_true", help="with --write: replace an existing packycode: block")
    parser.set_defaults(handler=run)


class BlockExists(Exception):
    """The target file already has a top-level ``packycode:`` block."""

    def __init__(self, line: int) -> None:
        super().__init__(f"line {line}")
        self.line = line


def run(args: argparse.Namespace) -> int:
    from ..config.codex import read_codex

    env = dict(os.environ)
    if args.codex_home:
        env["CODEX_HOME"] = args.codex_home
    imported = read_codex(env)
    for problem in imported.problems:
        print(f"{problem.severity}: {problem}", file=sys.stderr)
    if not imported.values:
        reason = ("no Codex CLI files found in " + imported.home) if not imported.found else \
            "nothing Packycode-related could be imported (see above)"
        print(f"import-codex: {reason}; nothing to print", file=sys.stderr)
        return 1
    block = render_block(imported, with_key=args.with_key)
    if not args.write:
        sys.stdout.write(block.text)
        return 1 if block.invalid or any(p.severity == "error" for p in imported.problems) else 0
    return _write(Path(args.write), block, force=args.force)


@dataclass(frozen=True)
class Block:
    text: str
    invalid: int  # values commented out because packyd would reject them
    has_key: bool


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and not re.fullmatch(r"[-+]?[\d._]+(e[-+]?\d+)?", text):
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid double-quoted YAML scalar


def _line(indent: int, text: str, comment: str | None) -> str:
    body = " " * indent + text
    if not comment:
        return body
    return f"{body:<{_COMMENT_COLUMN - 1}} # {comment}" if len(body) < _COMMENT_COLUMN - 1 else f"{body}  # {comment}"


def render_block(imported: Any, *, with_key: bool) -> Block:
    """The ``packycode:`` block for ``imported`` (a :class:`packyd.config.codex.CodexImport`)."""
    from ..config import mask_secret
    from ..config.kinds import Duration, Invalid, StrMap
    from ..config.schema import PackycodeConfig, walk_settings

    key_entry = imported.values.get("packycode.credentials.openai-api-key")
    lines = [f"# Imported from the Codex CLI files in {imported.home} by `packyd import-codex`.",
             f"# Codex provider: [model_providers.{imported.provider_id}]. Unlisted settings keep packyd's defaults."]
    lines.extend(f"# not imported: {note}" for note in imported.notes)
    lines.append("packycode:")
    lines.append(_line(2, "enabled: true", None))
    keep_reading = key_entry is not None and not with_key
    if keep_reading:
        label = key_entry[1].label
        kept = f"${label.split('=', 1)[1]} (env_key)" if label.startswith("codex-cli:env_key=") else \
            (key_entry[1].file or label)
        lines.append(_line(2, "import-codex-cli: true", f"the key stays in {kept}; --with-key copies it here"))
    else:
        lines.append(_line(2, "import-codex-cli: false", "everything is in this block; ~/.codex is not read"))
    invalid = 0
    open_sections: list[str] = []
    for path, item in walk_settings(PackycodeConfig, "packycode."):
        if path not in imported.values:
            continue
        raw, origin = imported.values[path]
        parts = path.split(".")[1:]
        sections, leaf = parts[:-1], parts[-1]
        common = 0
        while common < min(len(sections), len(open_sections)) and sections[common] == open_sections[common]:
            common += 1
        for depth in range(common, len(sections)):
            lines.append(_line(2 + 2 * depth, f"{sections[depth]}:", None))
        open_sections = sections
        indent = 2 + 2 * len(sections)
        source = origin.label + (f" ({origin.file})" if origin.file and not origin.label.endswith(".json") else "")
        kind = item.metadata["kind"]
        try:
            value = kind.parse(raw, from_text=origin.from_text)
        except Invalid as error:
            invalid += 1
            lines.append(_line(indent, f"# {leaf}: {_scalar(raw)}", f"{source} — not valid for packyd: "
                               f"{error.what}; {error.fix}"))
            continue
        if item.metadata.get("secret"):
            if with_key:
                lines.append(_line(indent, f"{leaf}: {_scalar(value)}", source))
            else:
                lines.append(_line(indent, f"# {leaf}: {mask_secret(value)}", f"{source} (masked)"))
        elif isinstance(kind, StrMap):
            lines.append(_line(indent, f"{leaf}:", source))
            for name, text in value:
                lines.append(_line(indent + 2, f"{_scalar(name)}: {_scalar(text)}", None))
        elif isinstance(kind, Duration):
            lines.append(_line(indent, f"{leaf}: {value:g}s", source))
        else:
            lines.append(_line(indent, f"{leaf}: {_scalar(value)}", source))
    if key_entry is None:
        lines.append(_line(2, "# credentials: no key in the Codex CLI files; set credentials.openai-api-key, ",
                           None))
        lines.append(_line(2, "#   PACKYD_PACKYCODE_API_KEY or a systemd credential named packycode-api-key", None))
    return Block("\n".join(lines) + "\n", invalid, key_entry is not None and with_key)


def merge_block(text: str, block: str, *, force: bool) -> str:
    """``text`` with its top-level ``packycode:`` block replaced by (or appended with) ``block``.

    Text-level on purpose: a YAML round trip would drop every comment of the file. The block
    runs from its key line to its last indented line; comments at column 0 after it belong to
    the next key and stay.
    """
    lines = text.splitlines(keepends=True)
    starts = [index for index, line in enumerate(lines) if _TOP_KEY.match(line)]
    if not starts:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        return prefix + ("\n" if prefix.strip() else "") + block
    start = starts[0]
    if not force:
        raise BlockExists(start + 1)
    end = start + 1
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if not line.strip() or line.startswith("#"):
            continue
        if line[0] in " \t":
            end = index + 1
            continue
        break
    return "".join(lines[:start]) + block + "".join(lines[end:])


def _write(path: Path, block: Block, *, force: bool) -> int:
    from ..config import load_config

    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except OSError as error:
        print(f"{path}: cannot read: {error.strerror}", file=sys.stderr)
        return 2
    if not path.parent.is_dir():
        print(f"{path}: the directory {path.parent} does not exist", file=sys.stderr)
        return 2
    existed = any(_TOP_KEY.match(line) for line in text.splitlines())
    try:
        merged = merge_block(text, block.text, force=force)
    except BlockExists as exists:
        print(f"{path}:{exists.line}: already has a packycode: block; not changed. Re-run with --force to replace "
              "it (the rest of the file is kept), or edit it by hand.", file=sys.stderr)
        return 4
    # Validate what would be written, as check-config would, before touching the file.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, dir=path.parent, encoding="utf-8") as handle:
        handle.write(merged)
        candidate = handle.name
    try:
        os.chmod(candidate, 0o600)
        load = load_config(candidate, env={})
        errors = [p for p in load.errors if p.path != "packycode.credentials"]
        if errors:
            for problem in errors:
                print(f"error: {str(problem).replace(candidate, str(path))}", file=sys.stderr)
            print(f"{path}: not changed: the merged file would not be valid", file=sys.stderr)
            return 1
        if path.exists():
            st = path.stat()
            os.chmod(candidate, st.st_mode & 0o7777)
            try:
                os.chown(candidate, st.st_uid, st.st_gid)
            except PermissionError:
                pass
        os.replace(candidate, path)
        candidate = ""
    finally:
        if candidate:
            os.unlink(candidate)
    action = "replaced the packycode: block in" if existed else "wrote the block to"
    print(f"{action} {path}; check it with: packyd check-config {path}", file=sys.stderr)
    if block.has_key and path.stat().st_mode & 0o004:
        print(f"warning: {path} now holds the Packycode key and every user on this machine can read it: "
              f"chmod o-rwx {path}", file=sys.stderr)
    return 0
