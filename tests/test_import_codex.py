"""``packyd import-codex``: the printed block, its round trip through check-config, and
``--write`` merging into an existing file without disturbing anything else."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from packyd.commands.import_codex import BlockExists, merge_block
from tests.support.daemon import ROOT
from tests.test_codex_layer import DOCUMENTED, PACKY_KEY, codex_home


def packyd(*args: str, home: Path, codex: Path | None = None, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PACKYD_", "CODEX_HOME"))}
    environment.update({"PYTHONPATH": str(ROOT), "HOME": str(home)})
    if codex is not None:
        environment["CODEX_HOME"] = str(codex)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "packyd", *args], capture_output=True, text=True, env=environment,
                          timeout=60, cwd=home)


@pytest.fixture
def codex(tmp_path: Path) -> Path:
    toml = DOCUMENTED.replace('disable_response_storage = true\n',
                              'disable_response_storage = true\nmodel_verbosity = "high"\n')
    toml += 'http_headers = { "X-Team" = "blue team" }\nquery_params = { api-version = "1" }\n'
    return codex_home(tmp_path, toml, auth={"OPENAI_API_KEY": PACKY_KEY})


def test_printed_block_masks_the_key_and_names_sources(tmp_path: Path, codex: Path) -> None:
    result = packyd("import-codex", home=tmp_path, codex=codex)
    assert result.returncode == 0, result.stderr
    assert PACKY_KEY not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "packycode:" in lines
    row = {line.split(":")[0].strip(): line for line in lines if not line.lstrip().startswith("#") and ":" in line}
    assert row["model"].split("#")[1].strip() == f"codex-cli:config.toml:2 ({codex}/config.toml)"
    assert "gpt-5" in row["model"] and "high" in row["model-reasoning-effort"]
    assert "http://127.0.0.1:9/v1" in row["base-url"] and "codex-cli:config.toml:9" in row["base-url"]
    assert "model-verbosity: high" in row["model-verbosity"]
    assert "import-codex-cli: true" in row["import-codex-cli"] and f"{codex}/auth.json" in row["import-codex-cli"]
    assert any(line.strip().startswith(f"# openai-api-key: sk-…{PACKY_KEY[-4:]}") and "codex-cli:auth.json" in line
               for line in lines)
    assert '    X-Team: "blue team"' in lines
    assert "query_params" in result.stderr and "ignored" in result.stderr


@pytest.mark.parametrize("with_key", [True, False], ids=["with-key", "masked"])
def test_block_round_trips_through_check_config(tmp_path: Path, codex: Path, with_key: bool) -> None:
    printed = packyd("import-codex", *(["--with-key"] if with_key else []), home=tmp_path, codex=codex)
    assert printed.returncode == 0
    assert (PACKY_KEY in printed.stdout) is with_key
    config = tmp_path / "config.yaml"
    config.write_text(printed.stdout)
    # with the key copied, the block needs no Codex files at all
    checked = packyd("check-config", str(config), "--packycode", home=tmp_path, codex=None if with_key else codex)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Packycode is usable" in checked.stdout
    assert PACKY_KEY not in checked.stdout + checked.stderr


def test_nothing_to_import(tmp_path: Path) -> None:
    openai = codex_home(tmp_path, 'model = "o3"\n', auth={"OPENAI_API_KEY": "sk-openai-real-key-000000"})
    result = packyd("import-codex", home=tmp_path, codex=openai)
    assert result.returncode == 1 and not result.stdout
    assert "built-in provider 'openai'" in result.stderr and "nothing to print" in result.stderr
    empty = packyd("import-codex", home=tmp_path, codex=tmp_path / "empty-dir-does-not-exist")
    assert empty.returncode == 1 and "CODEX_HOME" in empty.stderr


EXISTING = """\
# packyd config, hand-edited
host: 127.0.0.1   # loopback only
port: 8317

# clients
api-keys:
  - change-me
"""

WITH_BLOCK = EXISTING + """\

# Packycode, old setup
packycode:
  enabled: false
  # a comment inside the block
  defaults:
    model: gpt-5

# routing comes next and keeps its comment
routing:
  fallback: [packycode]
"""


def test_write_appends_and_keeps_every_other_byte(tmp_path: Path, codex: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(EXISTING)
    config.chmod(0o640)
    result = packyd("import-codex", "--with-key", "--write", str(config), home=tmp_path, codex=codex)
    assert result.returncode == 0, result.stderr
    text = config.read_text()
    assert text.startswith(EXISTING + "\n# Imported from the Codex CLI files")
    assert (config.stat().st_mode & 0o777) == 0o640, "the file keeps its mode"
    checked = packyd("check-config", str(config), "--packycode", home=tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert "every user on this machine can read it" not in result.stderr
    config.chmod(0o644)
    again = packyd("import-codex", "--with-key", "--write", str(config), "--force", home=tmp_path, codex=codex)
    assert again.returncode == 0 and f"chmod o-rwx {config}" in again.stderr
    new = tmp_path / "new.yaml"
    assert packyd("import-codex", "--with-key", "--write", str(new), home=tmp_path, codex=codex).returncode == 0
    assert (new.stat().st_mode & 0o777) == 0o600, "a new file holding the key is private"


def test_write_refuses_an_existing_block_unless_forced(tmp_path: Path, codex: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(WITH_BLOCK)
    refused = packyd("import-codex", "--write", str(config), home=tmp_path, codex=codex)
    assert refused.returncode == 4
    assert f"{config}:10: already has a packycode: block" in refused.stderr and "--force" in refused.stderr
    assert config.read_text() == WITH_BLOCK
    forced = packyd("import-codex", "--with-key", "--write", str(config), "--force", home=tmp_path, codex=codex)
    assert forced.returncode == 0, forced.stderr
    text = config.read_text()
    before, after = WITH_BLOCK.split("# Packycode, old setup\n")
    assert text.startswith(before + "# Packycode, old setup\n# Imported from the Codex CLI files")
    assert text.endswith("\n# routing comes next and keeps its comment\nrouting:\n  fallback: [packycode]\n")
    assert "enabled: false" not in text and "a comment inside the block" not in text
    assert packyd("check-config", str(config), "--packycode", home=tmp_path).returncode == 0


def test_write_refuses_a_result_that_would_not_validate(tmp_path: Path, codex: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("port: eighty\n")
    result = packyd("import-codex", "--write", str(config), home=tmp_path, codex=codex)
    assert result.returncode == 1 and "not changed" in result.stderr and "port" in result.stderr
    assert config.read_text() == "port: eighty\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("", "BLOCK\n"),
    ("port: 1", "port: 1\n\nBLOCK\n"),
    ("packycode: {enabled: false}\nport: 1\n", "BLOCK\nport: 1\n"),
    ("a: 1\npackycode:\n  x: 1\n\n  y: 2\n# next\nb: 2\n", "a: 1\nBLOCK\n# next\nb: 2\n"),
    ("packycode:\n  x: 1\n", "BLOCK\n"),
], ids=["empty", "no-newline", "flow-style", "blank-inside", "at-end"])
def test_merge_block_text_level(text: str, expected: str) -> None:
    assert merge_block(text, "BLOCK\n", force=True) == expected


def test_merge_block_refuses_without_force() -> None:
    with pytest.raises(BlockExists) as refused:
        merge_block("port: 1\n'packycode':\n  x: 1\n", "BLOCK\n", force=False)
    assert refused.value.line == 2
    assert merge_block(textwrap.dedent("""\
        # packycode: is mentioned in a comment only
        packycodes: 1
    """), "BLOCK\n", force=False).endswith("packycodes: 1\n\nBLOCK\n")
