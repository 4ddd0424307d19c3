"""`packyd check-config`: every broken config is reported with file, line, key path and a fix.

Each case is a small config file with one kind of mistake; the command runs as a real
subprocess, exactly as an administrator (or systemd's ExecReload) runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from packyd.config import load_config
from tests.support.daemon import ROOT

# (id, config text, expected line, expected key path, words the "what"/"fix" must contain)
BROKEN = [
    ("unknown-key-hint", "log-levl: debug\n", 1, "log-levl", ["unknown key", "did you mean `log-level`"]),
    ("port-type", "port: eighty\n", 1, "port", ["whole number"]),
    ("port-range", "port: 70000\n", 1, "port", ["out of range", "0 to 65535"]),
    ("log-level-value", "log-level: loud\n", 1, "log-level", ["not allowed", "debug, info, warning, error"]),
    ("base-url-scheme", "packycode:\n  base-url: ftp://codex-api.packycode.com/v1\n", 2, "packycode.base-url",
     ["not an http(s) URL", "https://"]),
    ("base-url-no-host", "packycode:\n  base-url: 'https:///v1'\n", 2, "packycode.base-url", ["no host"]),
    ("base-url-no-v1", "packycode:\n  base-url: https://codex-api.packycode.com\n", 2, "packycode.base-url",
     ["does not end in /v1", "https://codex-api.packycode.com/v1"]),
    ("base-url-plain-http", "packycode:\n  base-url: http://codex-api.packycode.com/v1\n", 2,
     "packycode.base-url", ["clear text", "https://"]),
    ("wire-api", "packycode:\n  wire-api: chat\n", 2, "packycode.wire-api", ["'chat' is not allowed", "responses"]),
    ("effort", "packycode:\n  defaults:\n    model-reasoning-effort: extreme\n", 3,
     "packycode.defaults.model-reasoning-effort", ["not allowed", "minimal, low, medium, high, xhigh"]),
    ("summary", "packycode:\n  defaults:\n    model-reasoning-summary: verbose\n", 3,
     "packycode.defaults.model-reasoning-summary", ["not allowed", "auto, concise, detailed, none"]),
    ("duration", "packycode:\n  timeouts:\n    idle: forever\n", 3, "packycode.timeouts.idle",
     ["not a duration", "30s"]),
    ("nested-unknown", "packycode:\n  retries:\n    max-attemps: 2\n", 3, "packycode.retries.max-attemps",
     ["unknown key", "max-attempts"]),
    ("fallback-unknown-provider", "routing:\n  fallback: [packycode, claude-relay]\n", 2, "routing.fallback[1]",
     ["no provider is named 'claude-relay'"]),
    ("non-loopback-without-keys", "host: 0.0.0.0\n", 1, "host",
     ["reachable from other machines", "api-keys"]),
    ("bool-type", "packycode:\n  enabled: maybe\n", 2, "packycode.enabled", ["true or false"]),
    ("model-map-target", "packycode:\n  model-map:\n    'claude-*': 'gpt-5(ultra)'\n", 2, "packycode.model-map",
     ["not a model name", "model(effort)"]),
    ("provider-missing-key", "providers:\n  - name: relay\n    base-url: https://relay.example\n", 2,
     "providers[0].api-key", ["missing", "api-key-file"]),
    ("section-not-mapping", "packycode: yes please\n", 1, "packycode", ["expected a mapping"]),
    ("duplicate-key", "port: 1\nport: 2\n", 2, "port", ["twice"]),
    ("headers-type", "packycode:\n  headers: [a, b]\n", 2, "packycode.headers", ["expected a mapping"]),
    ("size", "max-body-size: huge\n", 1, "max-body-size", ["not a size", "32MiB"]),
]


def run_check(path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PACKYD_")}
    environment.update({"PYTHONPATH": str(ROOT), "HOME": str(path.parent)})
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "packyd", "check-config", str(path), *extra],
                          capture_output=True, text=True, env=environment, timeout=60)


@pytest.mark.parametrize(("text", "line", "key", "words"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_each_broken_config_names_file_line_key_and_fix(tmp_path: Path, text: str, line: int, key: str,
                                                        words: list[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = run_check(config)
    assert result.returncode == 1, result.stdout + result.stderr
    expected_prefix = f"error: {config}:{line}: {key}: "
    matching = [row for row in result.stdout.splitlines() if row.startswith(expected_prefix)]
    assert matching, f"no line starting {expected_prefix!r} in:\n{result.stdout}"
    assert " — " in matching[0], "every problem carries a fix after the dash"
    for word in words:
        assert word in matching[0], f"{word!r} missing from {matching[0]!r}"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("log-levl: debug\nport: eighty\nhost: 0.0.0.0\npackycode:\n  wire-api: chat\n")
    result = run_check(config)
    assert result.returncode == 1
    errors = [row for row in result.stdout.splitlines() if row.startswith("error: ")]
    assert [row.split(": ")[2] for row in errors] == ["log-levl", "port", "packycode.wire-api", "host"]


def test_example_config_is_valid(tmp_path: Path) -> None:
    result = run_check(ROOT / "config.example.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    result = run_check(tmp_path / "missing.yaml")
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_not_yaml_points_at_the_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("host: 127.0.0.1\nport: [8317\n")
    result = run_check(config)
    assert result.returncode == 1
    assert f"{config}:" in result.stdout and "not valid YAML" in result.stdout


def test_missing_key_is_a_warning_unless_packycode_is_required(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  enabled: true\n")
    relaxed = run_check(config)
    assert relaxed.returncode == 0
    assert "warning:" in relaxed.stdout and "PACKYD_PACKYCODE_API_KEY" in relaxed.stdout
    strict = run_check(config, "--packycode")
    assert strict.returncode == 1
    for place in ("openai-api-key", "PACKYD_PACKYCODE_API_KEY", "auth.json"):
        assert place in strict.stdout


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "packycode.key"
    key.write_text("sk-test-0000000000000000\n")
    key.chmod(0o644)
    config = tmp_path / "config.yaml"
    config.write_text(f"packycode:\n  credentials:\n    openai-api-key-file: {key}\n")
    result = run_check(config)
    assert result.returncode == 1
    assert f"chmod o-rwx {key}" in result.stdout
    key.chmod(0o600)
    assert run_check(config).returncode == 0


def test_environment_fills_what_the_file_leaves_out_and_file_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent("""\
        packycode:
          defaults:
            model: gpt-5-codex
    """))
    env = {"PACKYD_PACKYCODE_MODEL": "gpt-5.1", "PACKYD_PACKYCODE_REASONING_EFFORT": "low",
           "PACKYD_PACKYCODE_API_KEY": "sk-env-key-1234567890"}
    result = load_config(str(config), env=env)
    assert result.ok
    assert result.config is not None
    assert result.config.packycode.defaults.model == "gpt-5-codex"
    assert result.sources["packycode.defaults.model"] == "config.yaml:3"
    assert result.config.packycode.defaults.model_reasoning_effort == "low"
    assert result.sources["packycode.defaults.model-reasoning-effort"] == "env:PACKYD_PACKYCODE_REASONING_EFFORT"
    assert result.sources["packycode.base-url"] == "default"
    assert result.packycode_usable and result.packycode_key_source == "env:PACKYD_PACKYCODE_API_KEY"


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    result = load_config(None, env={"PACKYD_PACKYCODE_IDLE_TIMEOUT": "soon"})
    assert not result.ok
    assert [str(p) for p in result.errors] == [
        'env:PACKYD_PACKYCODE_IDLE_TIMEOUT: packycode.timeouts.idle: \'soon\' is not a duration — '
        'write e.g. "30s", "5m", "250ms" or plain seconds']


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("5m", 300.0), ("250ms", 0.25), ("45", 45.0),
                                              ("1.5m", 90.0)])
def test_durations(text: str, seconds: float) -> None:
    result = load_config(None, env={"PACKYD_PACKYCODE_CONNECT_TIMEOUT": text})
    assert result.config is not None and result.config.packycode.timeouts.connect == seconds
