"""docs/configuration.md and config.example.yaml are checked against the config schema.

* The reference tables in docs/configuration.md are generated from ``packyd/config/schema.py``
  by ``scripts/gen-config-docs``; the test regenerates them and compares, so a setting that is
  added, renamed, or given another default, type, env var or doc line fails here until
  ``python3 scripts/gen-config-docs --write`` has been run.
* Independently of the generator, every ``walk_settings`` path, its environment variable, and
  every setting that needs a restart are named in the page.
* ``config.example.yaml`` shows every key: the file is parsed as YAML, with the commented-out
  example entry under ``providers: []`` uncommented (lines starting with ``#`` right after that
  key), and every schema path must exist in it; each value shown must be the default, except
  for the keys listed in ``EXAMPLE_NOT_DEFAULT`` (whose comments say they are examples).
"""

from __future__ import annotations

import dataclasses
import re
import runpy
from pathlib import Path
from typing import Any

import yaml

from packyd.config.kinds import Invalid
from packyd.config.load import load_config
from packyd.config.schema import Config, walk_settings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "config.example.yaml"
#: keys whose value in config.example.yaml is an example, not the default
EXAMPLE_NOT_DEFAULT = {"api-keys"}


def _generator() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "scripts" / "gen-config-docs"), run_name="gen_config_docs")


def test_reference_tables_are_generated_from_the_schema() -> None:
    gen = _generator()
    assert gen["current"]() == gen["generate"](), (
        "docs/configuration.md's reference tables differ from the schema: run python3 scripts/gen-config-docs --write")


def test_every_setting_and_env_var_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = []
    for path, item in walk_settings(Config):
        if f"`{path}`" not in text:
            missing.append(path)
        env = item.metadata.get("env")
        if env and f"`{env}`" not in text:
            missing.append(env)
    assert not missing, f"not in docs/configuration.md: {missing}"


def test_restart_settings_are_named_in_the_reload_section() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Reloading", 1)[1].split("\n## ", 1)[0]
    restart = [path for path, item in walk_settings(Config) if not item.metadata["reload"]]
    assert restart, "the schema marks no setting as needing a restart"
    for path in restart:
        assert f"`{path}`" in section, f"{path} needs a restart but the Reloading section does not say so"


def test_page_states_precedence_and_the_packycode_flag() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "## Sources and precedence" in text and "## The `--packycode` flag" in text
    ranks = [text.index(label) for label in ("| 1 | `config.yaml`", "| 2 | environment, `PACKYD_PACKYCODE_*`",
                                              "| 4 | Codex CLI files", "| 5 | built-in default")]
    assert ranks == sorted(ranks)


def example_document() -> dict[str, Any]:
    """config.example.yaml with the commented-out entry under ``providers: []`` uncommented."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    in_example = False
    for line in lines:
        if line.rstrip() == "providers: []":
            out.append("providers:")
            in_example = True
            continue
        if in_example and line.startswith("#"):
            out.append(line[1:])
            continue
        in_example = False
        out.append(line)
    document = yaml.safe_load("\n".join(out))
    assert isinstance(document, dict)
    return document


def _lookup(document: dict[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = document
    for part in path.split("."):
        if part.endswith("[]"):
            node = node.get(part[:-2]) if isinstance(node, dict) else None
            if not isinstance(node, list) or not node:
                return False, None
            node = node[0]
            continue
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def test_example_config_shows_every_key_with_its_default() -> None:
    document = example_document()
    missing, wrong = [], []
    for path, item in walk_settings(Config):
        found, value = _lookup(document, path)
        if not found:
            missing.append(path)
            continue
        if path in EXAMPLE_NOT_DEFAULT or path.startswith("providers[]."):
            continue
        if value is None:  # null means "not set here" to the loader: fine where the default is unset
            if item.default is not None:
                wrong.append(f"{path}: shows null, the default is {item.default!r}")
            continue
        try:
            parsed = item.metadata["kind"].parse(value)
        except Invalid as error:
            wrong.append(f"{path}: {error.what}")
            continue
        if parsed != item.default:
            wrong.append(f"{path}: shows {value!r}, the default is {item.default!r}")
    assert not missing, f"config.example.yaml does not show: {missing}"
    assert not wrong, f"config.example.yaml does not show the default for: {wrong}"


def test_example_config_is_valid() -> None:
    load = load_config(str(EXAMPLE), env={})
    assert load.ok, [str(p) for p in load.errors]
    assert dataclasses.asdict(load.config)  # parsed into the schema's dataclasses


def test_documented_minimal_config_is_valid(tmp_path: Path) -> None:
    """The smallest useful file in "Three ways to configure it" loads (with its key file present)."""
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"The smallest useful file:\n\n\s*```yaml\n(.*?)```", text, re.DOTALL)
    assert block, "the minimal config example is missing"
    key_file = tmp_path / "packycode.key"
    key_file.write_text("sk-test-minimal-config-0001\n")
    key_file.chmod(0o640)
    config = tmp_path / "config.yaml"
    lines = [line[3:] if line.startswith("   ") else line for line in block.group(1).splitlines()]
    config.write_text("\n".join(lines).replace("/etc/packyd/packycode.key", str(key_file)) + "\n")
    load = load_config(str(config), env={})
    assert load.ok and load.packycode_usable, [str(p) for p in load.problems]
