"""Precedence between sources (FR-012): config.yaml > environment > Codex CLI files > defaults.

Each layer is added on top of the previous one and the winner and its label must change each
time; conflicts are reported once per load with labels only, and the key's three settings
(openai-api-key, openai-api-key-file, the systemd credential) compete as one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from packyd import logs
from packyd.config import load_config
from packyd.config.codex import read_codex_layer
from packyd.registry import log_conflicts
from tests.test_codex_layer import DOCUMENTED, PACKY_KEY, codex_home


def test_each_layer_changes_the_winner_and_its_label(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth={"OPENAI_API_KEY": PACKY_KEY})
    env = {"CODEX_HOME": str(home)}
    codex_only = load_config(None, env=env, codex_layer=read_codex_layer)
    assert codex_only.config is not None
    assert (codex_only.config.packycode.defaults.model, codex_only.sources["packycode.defaults.model"]) == \
        ("gpt-5", "codex-cli:config.toml:2")
    assert codex_only.packycode_key_source == "codex-cli:auth.json"

    env.update({"PACKYD_PACKYCODE_MODEL": "gpt-5.1", "PACKYD_PACKYCODE_API_KEY": "sk-env-layer-key-4444"})
    with_env = load_config(None, env=env, codex_layer=read_codex_layer)
    assert with_env.config is not None
    assert (with_env.config.packycode.defaults.model, with_env.sources["packycode.defaults.model"]) == \
        ("gpt-5.1", "env:PACKYD_PACKYCODE_MODEL")
    assert (with_env.packycode_key, with_env.packycode_key_source) == \
        ("sk-env-layer-key-4444", "env:PACKYD_PACKYCODE_API_KEY")
    assert with_env.sources["packycode.base-url"] == "codex-cli:config.toml:8", "untouched settings stay"

    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  import-codex-cli: true\n  defaults:\n    model: gpt-5-codex\n"
                      "  credentials:\n    openai-api-key: sk-yaml-layer-key-5555\n")
    with_file = load_config(str(config), env=env, codex_layer=read_codex_layer)
    assert with_file.config is not None
    assert (with_file.config.packycode.defaults.model, with_file.sources["packycode.defaults.model"]) == \
        ("gpt-5-codex", "config.yaml:4")
    assert (with_file.packycode_key, with_file.packycode_key_source) == \
        ("sk-yaml-layer-key-5555", "config.yaml:6")


def test_conflicts_name_winner_and_losers_once(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth={"OPENAI_API_KEY": PACKY_KEY})
    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  import-codex-cli: true\n  defaults:\n    model: gpt-5-codex\n"
                      "    model-reasoning-effort: HIGH\n")
    env = {"CODEX_HOME": str(home), "PACKYD_PACKYCODE_MODEL": "gpt-5.1", "PACKYD_PACKYCODE_API_KEY": "sk-e-12345678"}
    load = load_config(str(config), env=env, codex_layer=read_codex_layer)
    conflicts = {c.path: c for c in load.conflicts}
    model = conflicts["packycode.defaults.model"]
    assert model.winner == "config.yaml:4"
    assert model.overridden == ("env:PACKYD_PACKYCODE_MODEL", "codex-cli:config.toml:2")
    key = conflicts["packycode.credentials.openai-api-key"]
    assert key.winner == "env:PACKYD_PACKYCODE_API_KEY" and key.overridden == ("codex-cli:auth.json",)
    # "HIGH" in config.yaml and "high" in config.toml are the same value: no conflict
    assert "packycode.defaults.model-reasoning-effort" not in conflicts

    buffer = io.StringIO()
    logs.configure("info", stream=buffer, timestamps=False)
    try:
        log_conflicts(load)
    finally:
        logs.configure("info", stream=__import__("sys").stderr)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == len(load.conflicts) == 2
    [model_line] = [line for line in lines if "setting=packycode.defaults.model " in line]
    assert "winner=config.yaml:4" in model_line and "value=gpt-5-codex" in model_line
    assert "overridden=env:PACKYD_PACKYCODE_MODEL,codex-cli:config.toml:2" in model_line
    assert "config.yaml > environment > Codex CLI files" in model_line
    [key_line] = [line for line in lines if "openai-api-key" in line]
    assert "sk-e-12345678" not in key_line and PACKY_KEY not in key_line and "value=sk-…5678" in key_line


def test_key_file_in_config_beats_key_from_codex(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth={"OPENAI_API_KEY": PACKY_KEY})
    key_file = tmp_path / "packycode.key"
    key_file.write_text("sk-from-the-key-file-0001\n")
    key_file.chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(f"packycode:\n  credentials:\n    openai-api-key-file: {key_file}\n")
    load = load_config(str(config), env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer,
                       require_packycode=True)
    assert (load.packycode_key, load.packycode_key_source) == ("sk-from-the-key-file-0001", f"file:{key_file}")


def test_systemd_credential_beats_codex_but_not_config(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth={"OPENAI_API_KEY": PACKY_KEY})
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "packycode-api-key").write_text("sk-systemd-credential-0002\n")
    env = {"CODEX_HOME": str(home), "CREDENTIALS_DIRECTORY": str(credentials)}
    load = load_config(None, env=env, codex_layer=read_codex_layer, require_packycode=True)
    assert (load.packycode_key, load.packycode_key_source) == \
        ("sk-systemd-credential-0002", "systemd-credential:packycode-api-key")
    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  credentials:\n    openai-api-key: sk-config-wins-00000003\n")
    assert load_config(str(config), env=env, codex_layer=read_codex_layer).packycode_key == "sk-config-wins-00000003"


def test_packycode_flag_overrides_enabled_false(tmp_path: Path) -> None:
    home = codex_home(tmp_path, auth={"OPENAI_API_KEY": PACKY_KEY})
    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  enabled: false\n")
    load = load_config(str(config), env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer,
                       require_packycode=True)
    assert load.ok and load.packycode_usable
    assert load.sources["packycode.enabled"] == "--packycode"
    assert any(p.path == "packycode.enabled" and p.severity == "warning" for p in load.problems)


def test_sources_cover_every_packycode_setting(tmp_path: Path) -> None:
    from packyd.config.schema import PackycodeConfig, walk_settings

    home = codex_home(tmp_path, DOCUMENTED, auth=json.dumps({"OPENAI_API_KEY": PACKY_KEY}))
    load = load_config(None, env={"CODEX_HOME": str(home)}, codex_layer=read_codex_layer)
    leaves = {path for path, _ in walk_settings(PackycodeConfig, "packycode.")}
    assert leaves == {path for path in load.sources if path.startswith("packycode.")}
