"""Issue 4's acceptance, end to end: packyd runs as a subprocess (as systemd runs it) and
talks to a fake Packycode that also runs as a subprocess, both on 127.0.0.1.

* A Codex CLI user with Packycode's documented ``~/.codex`` and no config.yaml runs
  ``packyd serve --packycode``: requests go to that base URL with that key, and /v0/status
  names the ``codex-cli:*`` sources; an environment variable, then a config.yaml value, take
  over and the shown source follows.
* Ten SIGHUP reloads leave one entry per model; disabling Packycode removes them.
* ``--packycode`` without a usable key exits non-zero with the fix.
* ``import-codex`` output started as a config behaves like the Codex files themselves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.fixtures.streams import text_stream
from tests.support.daemon import ROOT, PackydProcess, free_port
from tests.support.fake_packycode import sse_reply
from tests.test_codex_layer import PACKY_KEY

SESSION = "6a1f1e1e-7d3c-4b8a-9f00-000000000004"
REQUEST = {"model": "packyd-unmapped-name", "max_tokens": 64,
           "messages": [{"role": "user", "content": "say ok"}]}


class FakeUpstream:
    """``python -m tests.support.fake_packycode`` in a subprocess, driven over its control API."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.fake_packycode", "--port", "0"],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.url = line.split()[-1]
        self.root = self.url.removesuffix("/v1")
        reply = httpx.put(self.root + "/_fake/default", json=sse_reply(text_stream("ok")).to_json(), timeout=5)
        reply.raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        recorded = httpx.get(self.root + "/_fake/requests", timeout=5).json()
        return [r for r in recorded if r["path"].endswith("/responses")]

    def reset(self) -> None:
        httpx.post(self.root + "/_fake/reset", timeout=5).raise_for_status()
        httpx.put(self.root + "/_fake/default", json=sse_reply(text_stream("ok")).to_json(), timeout=5)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    try:
        yield fake
    finally:
        fake.close()


def documented_codex_home(path: Path, base_url: str, extra: str = "") -> Path:
    """Packycode's documented Codex CLI setup (reference/codex-cli.md §6)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(textwrap.dedent(f"""\
        model_provider = "packycode"
        model = "gpt-5"
        model_reasoning_effort = "high"
        disable_response_storage = true

        [model_providers.packycode]
        name = "packycode"
        base_url = "{base_url}"
        wire_api = "responses"
        requires_openai_auth = true
    """) + extra)
    (path / "auth.json").write_text(json.dumps({"OPENAI_API_KEY": PACKY_KEY}))
    return path


def ask(port: int, key: str | None = None) -> httpx.Response:
    headers = {"anthropic-version": "2023-06-01", "x-claude-code-session-id": SESSION}
    if key:
        headers["x-api-key"] = key
    return httpx.post(f"http://127.0.0.1:{port}/v1/messages", json=REQUEST, headers=headers, timeout=30)


def status(port: int, key: str | None = None) -> dict[str, Any]:
    headers = {"x-api-key": key} if key else {}
    response = httpx.get(f"http://127.0.0.1:{port}/v0/status", headers=headers, timeout=10)
    response.raise_for_status()
    return response.json()


def served_once(upstream: FakeUpstream, args: list[str], home: Path, env: dict[str, str],
                key: str | None = None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Start packyd, send one request, return (upstream request, status, log)."""
    port = free_port()
    upstream.reset()
    with PackydProcess(["serve", *args, "--port", str(port)], home=home, env=env) as daemon:
        daemon.wait_ready()
        answer = ask(port, key)
        assert answer.status_code == 200, answer.text
        assert answer.json()["content"][0]["text"] == "ok"
        document = status(port, key)
    [recorded] = upstream.requests()
    return recorded, document, daemon.log()


def test_codex_files_alone_then_env_then_config_yaml(tmp_path: Path, upstream: FakeUpstream) -> None:
    codex = documented_codex_home(tmp_path / "codex", upstream.url)
    env = {"CODEX_HOME": str(codex)}

    recorded, document, log = served_once(upstream, ["--no-config", "--packycode"], tmp_path, env)
    assert recorded["path"] == "/v1/responses"
    assert recorded["headers"]["authorization"] == f"Bearer {PACKY_KEY}"
    body = json.loads(recorded["body"])
    assert body["model"] == "gpt-5" and body["reasoning"]["effort"] == "high" and body["store"] is False
    settings = document["packycode"]["settings"]
    assert settings["base-url"] == {"value": upstream.url, "source": "codex-cli:config.toml:8"}
    assert settings["defaults.model"] == {"value": "gpt-5", "source": "codex-cli:config.toml:2"}
    assert settings["defaults.model-reasoning-effort"]["source"] == "codex-cli:config.toml:3"
    assert settings["privacy.disable-response-storage"]["source"] == "codex-cli:config.toml:4"
    assert settings["enabled"]["source"] == "--packycode"
    assert document["packycode"]["key_source"] == "codex-cli:auth.json"
    assert document["packycode"]["key"] == f"sk-…{PACKY_KEY[-4:]}"
    assert PACKY_KEY not in json.dumps(document) and PACKY_KEY not in log

    env_key = "sk-env-layer-upstream-key-7777"
    env.update({"PACKYD_PACKYCODE_MODEL": "gpt-5.1", "PACKYD_PACKYCODE_API_KEY": env_key})
    recorded, document, log = served_once(upstream, ["--no-config", "--packycode"], tmp_path, env)
    assert recorded["headers"]["authorization"] == f"Bearer {env_key}"
    assert json.loads(recorded["body"])["model"] == "gpt-5.1"
    settings = document["packycode"]["settings"]
    assert settings["defaults.model"] == {"value": "gpt-5.1", "source": "env:PACKYD_PACKYCODE_MODEL"}
    assert document["packycode"]["key_source"] == "env:PACKYD_PACKYCODE_API_KEY"
    assert settings["base-url"]["source"] == "codex-cli:config.toml:8"
    assert ("event=config_source_conflict setting=packycode.defaults.model winner=env:PACKYD_PACKYCODE_MODEL "
            "overridden=codex-cli:config.toml:2 value=gpt-5.1") in log
    assert env_key not in log and PACKY_KEY not in log

    yaml_key = "sk-config-yaml-upstream-key-8888"
    config = tmp_path / "config.yaml"
    config.write_text(f"packycode:\n  defaults:\n    model: gpt-5-codex\n  credentials:\n"
                      f"    openai-api-key: {yaml_key}\n")
    recorded, document, log = served_once(upstream, ["--config", str(config), "--packycode"], tmp_path, env)
    assert recorded["headers"]["authorization"] == f"Bearer {yaml_key}"
    assert json.loads(recorded["body"])["model"] == "gpt-5-codex"
    settings = document["packycode"]["settings"]
    assert settings["defaults.model"] == {"value": "gpt-5-codex", "source": "config.yaml:3"}
    assert document["packycode"]["key_source"] == "config.yaml:5"
    assert settings["base-url"]["source"] == "codex-cli:config.toml:8", "still from the Codex files"
    assert "winner=config.yaml:3 overridden=env:PACKYD_PACKYCODE_MODEL,codex-cli:config.toml:2" in log


def test_ten_reloads_then_disable(tmp_path: Path, upstream: FakeUpstream) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    base = (f"port: {port}\napi-keys: [client-key-4]\npackycode:\n  base-url: {upstream.url}\n"
            f"  credentials:\n    openai-api-key: {PACKY_KEY}\n")
    config.write_text(base)
    headers = {"x-api-key": "client-key-4", "anthropic-version": "2023-06-01"}
    with PackydProcess(["serve", "--config", str(config)], home=tmp_path) as daemon:
        daemon.wait_ready()
        assert daemon.notify is not None
        first = httpx.get(f"http://127.0.0.1:{port}/v1/models?limit=1000", headers=headers, timeout=5).json()
        expected = [m["id"] for m in first["data"]]
        assert "gpt-5" in expected and "claude-opus-4-8" in expected
        for _ in range(10):
            daemon.signal(signal.SIGHUP)
            daemon.notify.wait_for("RELOADING", "1")
            daemon.notify.wait_for("READY", "1")
        listing = httpx.get(f"http://127.0.0.1:{port}/v1/models?limit=1000", headers=headers, timeout=5).json()
        ids = [m["id"] for m in listing["data"]]
        assert ids == expected and len(ids) == len(set(ids))
        openai_ids = [m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models",
                                                 headers={"x-api-key": "client-key-4"}, timeout=5).json()["data"]]
        assert openai_ids == expected
        document = status(port, "client-key-4")
        assert document["generation"] == 11 and document["last_reload"]["result"] == "ok"

        config.write_text(base + "  enabled: false\n")
        daemon.signal(signal.SIGHUP)
        daemon.notify.wait_for("RELOADING", "1")
        daemon.notify.wait_for("READY", "1")
        gone = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers, timeout=5).json()
        assert gone["data"] == []
        document = status(port, "client-key-4")
        [packy] = [p for p in document["providers"] if p["name"] == "packycode"]
        assert packy["health"] == "disabled in config" and document["models"] == []
        assert document["last_reload"]["changed"] == ["packycode.enabled"]

        config.write_text(base)
        daemon.signal(signal.SIGHUP)
        daemon.notify.wait_for("READY", "1")
        back = httpx.get(f"http://127.0.0.1:{port}/v1/models?limit=1000", headers=headers, timeout=5).json()
        assert [m["id"] for m in back["data"]] == expected
    log = daemon.log()
    assert log.count("action=models_registered") == 3, "start, disable, enable: the ten reloads changed nothing"


@pytest.mark.parametrize("codex_setup", ["none", "openai"])
def test_packycode_flag_without_a_key_exits_with_the_fix(tmp_path: Path, codex_setup: str) -> None:
    env = {}
    if codex_setup == "openai":
        codex = tmp_path / "codex"
        codex.mkdir()
        (codex / "config.toml").write_text('model = "o3"\n')
        env["CODEX_HOME"] = str(codex)
    with PackydProcess(["serve", "--no-config", "--packycode", "--port", str(free_port())], home=tmp_path,
                       env=env) as daemon:
        assert daemon.wait(20) == 1
    log = daemon.log()
    assert "event=not_started" in log
    for place in ("packycode.credentials.openai-api-key", "PACKYD_PACKYCODE_API_KEY", "auth.json",
                  "packycode-api-key"):
        assert place in log, f"{place!r} missing from the fix:\n{log}"
    if codex_setup == "openai":
        assert "built-in provider 'openai'" in log


@pytest.mark.parametrize("with_key", [True, False], ids=["with-key", "key-left-in-auth-json"])
def test_imported_block_behaves_like_the_codex_files(tmp_path: Path, upstream: FakeUpstream, with_key: bool) -> None:
    codex = documented_codex_home(tmp_path / "codex", upstream.url,
                                  'http_headers = { "X-Team" = "blue" }\n')
    text = (tmp_path / "codex" / "config.toml").read_text()
    (tmp_path / "codex" / "config.toml").write_text(text.replace('model_reasoning_effort = "high"\n',
                                                                 'model_reasoning_effort = "high"\n'
                                                                 'model_verbosity = "low"\n'))
    env = {"CODEX_HOME": str(codex)}
    from_codex, status_codex, _ = served_once(upstream, ["--no-config", "--packycode"], tmp_path, env)

    printed = subprocess.run([sys.executable, "-m", "packyd", "import-codex", *(["--with-key"] if with_key else [])],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path,
                             env={**{k: v for k, v in os.environ.items() if not k.startswith("PACKYD_")},
                                  "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **env})
    assert printed.returncode == 0, printed.stderr
    config = tmp_path / "imported.yaml"
    config.write_text(printed.stdout)
    # with the key copied into the block, the Codex files are not needed any more
    run_env = {} if with_key else env
    if with_key:
        (codex / "auth.json").unlink()
        (codex / "config.toml").unlink()
    from_block, status_block, _ = served_once(upstream, ["--config", str(config)], tmp_path, run_env)

    assert from_block["path"] == from_codex["path"]
    assert from_block["headers"] == from_codex["headers"], "same key, identity and extra headers"
    assert json.loads(from_block["body"]) == json.loads(from_codex["body"])
    assert from_block["headers"]["x-team"] == "blue"
    assert json.loads(from_block["body"])["text"]["verbosity"] == "low"
    effective = {k: v["value"] for k, v in status_block["packycode"]["settings"].items() if k != "import-codex-cli"}
    assert effective == {k: v["value"] for k, v in status_codex["packycode"]["settings"].items()
                         if k != "import-codex-cli"}
    assert status_block["packycode"]["settings"]["base-url"]["source"].startswith("config.yaml:")
