"""``GET /v0/status`` and the ``packyd status`` / ``packyd models`` commands.

The commands run as real subprocesses (``trio.run_process``, so the in-process daemon keeps
serving meanwhile) against a packyd on a real port.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Awaitable, Callable

import httpx
import trio

from tests.conftest import Stack
from tests.support.daemon import ROOT, free_port
from tests.support.inprocess import CLIENT_KEY, UPSTREAM_KEY

MANAGEMENT_KEY = "packyd-test-management-key-77"


def line_of(path: str, start: str) -> str:
    """``config.yaml:N`` for the first line of ``path`` that starts (after indentation) with ``start``."""
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip().startswith(start):
            return f"config.yaml:{number}"
    raise AssertionError(f"{start!r} not in {path}")


async def packyd_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> trio.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PACKYD_", "CODEX_HOME"))}
    environment.update({"PYTHONPATH": str(ROOT)})
    environment.update(env or {})
    return await trio.run_process([sys.executable, "-m", "packyd", *args], capture_stdout=True, capture_stderr=True,
                                  check=False, env=environment, cwd=str(cwd) if cwd else None)


async def test_status_document(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers) as client:
        status = (await client.get("/v0/status")).json()
    assert status["service"] == "packyd" and status["state"] == "serving"
    assert status["generation"] == 1 and status["last_reload"]["result"] == "started"
    assert status["config_file"] == stack.server.config_path
    assert status["uptime_s"] >= 0
    packycode = status["packycode"]
    assert packycode["usable"] is True
    key_line, url_line = (line_of(stack.server.config_path, key) for key in ("openai-api-key:", "base-url:"))
    assert packycode["key"] == "sk-…" + UPSTREAM_KEY[-4:] and packycode["key_source"] == key_line
    settings = packycode["settings"]
    assert settings["base-url"] == {"value": stack.fake.url, "source": url_line}
    assert settings["credentials.openai-api-key"]["value"] == "sk-…" + UPSTREAM_KEY[-4:]
    assert settings["identity"] == {"value": "codex-cli", "source": "default"}
    assert settings["model-map"]["value"]["claude-*opus*"] == "gpt-5-codex(high)"
    assert UPSTREAM_KEY not in json.dumps(status)
    [packy] = [p for p in status["providers"] if p["name"] == "packycode"]
    assert packy["health"] == "ready" and packy["enabled"] is True and packy["in_routing"] is True
    ids = [m["id"] for m in status["models"]]
    assert "gpt-5" in ids and "claude-opus-4-8" in ids
    assert [m for m in status["models"] if m["id"] == "gpt-5"][0]["providers"] == ["codex"]


async def test_status_shows_runtime_switch_and_secret_headers(start_stack: Callable[..., Awaitable[Stack]]) -> None:
    stack = await start_stack(packycode={"headers": {"X-Team": "blue", "X-Relay-Token": "tok-secret-123456789"}})
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers) as client:
        await client.post("/v0/providers/packycode/disable")
        status = (await client.get("/v0/status")).json()
        await client.post("/v0/providers/packycode/enable")
    headers = status["packycode"]["settings"]["headers"]["value"]
    assert headers == {"X-Team": "blue", "X-Relay-Token": "…6789"}
    [packy] = [p for p in status["providers"] if p["name"] == "packycode"]
    assert packy["runtime_disabled"] is True and packy["health"] == "disabled at runtime"


async def test_management_key_guards_status(start_stack: Callable[..., Awaitable[Stack]]) -> None:
    stack = await start_stack(**{"management-key": MANAGEMENT_KEY})
    async with httpx.AsyncClient(base_url=stack.url) as client:
        with_client_key = await client.get("/v0/status", headers={"x-api-key": CLIENT_KEY})
        with_management_key = await client.get("/v0/status", headers={"authorization": f"Bearer {MANAGEMENT_KEY}"})
    assert with_client_key.status_code == 401
    assert with_management_key.status_code == 200


async def test_status_command_reads_address_and_key_from_config(
        start_stack: Callable[..., Awaitable[Stack]], tmp_path: Path) -> None:
    stack = await start_stack(**{"management-key": MANAGEMENT_KEY})
    port = stack.url.rsplit(":", 1)[1]
    config = tmp_path / "config.yaml"
    config.write_text(f"host: 0.0.0.0\nport: {port}\napi-keys: [{CLIENT_KEY}]\nmanagement-key: {MANAGEMENT_KEY}\n")
    key_line, url_line = (line_of(stack.server.config_path, key) for key in ("openai-api-key:", "base-url:"))
    readable = await packyd_cli("status", "--config", str(config))
    assert readable.returncode == 0, readable.stderr.decode()
    text = readable.stdout.decode()
    assert f"at http://127.0.0.1:{port}: serving" in text
    assert f"packycode    usable; key sk-…{UPSTREAM_KEY[-4:]} from {key_line}" in text
    [url_row] = [row for row in text.splitlines() if row.strip().startswith("base-url ")]
    assert stack.fake.url in url_row and url_row.endswith(url_line)
    assert "packycode      ready" in text and "claude-opus-4-8 → gpt-5-codex(high)" in text
    assert UPSTREAM_KEY not in text and MANAGEMENT_KEY not in text
    as_json = await packyd_cli("status", "--config", str(config), "--json")
    document = json.loads(as_json.stdout)
    assert document["packycode"]["settings"]["base-url"]["source"] == url_line
    # /v1/models takes api-keys only, even when a management key is set
    models = await packyd_cli("models", "--config", str(config), "--json")
    assert models.returncode == 0 and models.stderr == b"", models.stderr
    assert "gpt-5" in [m["id"] for m in json.loads(models.stdout)["data"]]


async def test_status_command_errors(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    stopped = await packyd_cli("status", "--url", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert stopped.returncode == 3
    assert b"packyd is not running" in stopped.stderr and b"systemctl start packyd" in stopped.stderr
    wrong_key = await packyd_cli("status", "--url", stack.url, env={"PACKYD_API_KEY": "not-a-key"}, cwd=tmp_path)
    assert wrong_key.returncode == 1 and b"refused the key" in wrong_key.stderr
    right_key = await packyd_cli("status", "--url", stack.url, "--json", env={"PACKYD_API_KEY": CLIENT_KEY},
                                 cwd=tmp_path)
    assert right_key.returncode == 0 and json.loads(right_key.stdout)["generation"] == 1


async def test_models_command_online_and_offline(stack: Stack, tmp_path: Path) -> None:
    online = await packyd_cli("models", "--url", stack.url, "--json", env={"PACKYD_API_KEY": CLIENT_KEY},
                              cwd=tmp_path)
    assert online.returncode == 0, online.stderr.decode()
    ids = [m["id"] for m in json.loads(online.stdout)["data"]]
    assert "gpt-5" in ids and "claude-haiku-4-5-20251001" in ids
    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  models: [gpt-5.1-codex]\n  credentials:\n    openai-api-key: sk-offline-0000001\n")
    offline = await packyd_cli("models", "--config", str(config), "--url", f"http://127.0.0.1:{free_port()}",
                               cwd=tmp_path)
    assert offline.returncode == 0
    assert b"packyd is not running" in offline.stderr
    lines = offline.stdout.decode().splitlines()
    assert lines[0].startswith(f"{len(lines) - 1} model(s), from {config}")
    assert lines[1].strip().startswith("gpt-5.1-codex  [codex]")
    unusable = tmp_path / "unusable.yaml"
    unusable.write_text("packycode:\n  enabled: true\n")
    none = await packyd_cli("models", "--config", str(unusable), "--offline", cwd=tmp_path)
    assert none.returncode == 0 and b"0 model(s)" in none.stdout and b"PACKYD_PACKYCODE_API_KEY" in none.stdout


async def test_circuit_state_is_shown(start_stack: Callable[..., Awaitable[Stack]], tmp_path: Path) -> None:
    from tests.support.fake_packycode import error_reply

    stack = await start_stack(packycode={"retries": {"max-attempts": 1}},
                              routing={"circuit-breaker": {"failures": 1, "cooldown": "60s"}})
    stack.fake.script(error_reply(503, "busy"))
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers) as client:
        failed = await client.post("/v1/messages", json={"model": "claude-opus-4-8", "max_tokens": 16,
                                                          "messages": [{"role": "user", "content": "hi"}]})
        status = (await client.get("/v0/status")).json()
    assert failed.status_code >= 500
    [packy] = [p for p in status["providers"] if p["name"] == "packycode"]
    assert packy["circuit"]["state"] == "open" and packy["health"].startswith("circuit open, next probe in")
    text = await packyd_cli("status", "--url", stack.url, env={"PACKYD_API_KEY": CLIENT_KEY}, cwd=tmp_path)
    assert "circuit open: 1/1 recent failures, opened 1 time(s)" in text.stdout.decode()
