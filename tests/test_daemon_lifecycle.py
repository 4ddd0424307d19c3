"""packyd as systemd runs it: a subprocess reporting to a real AF_UNIX notify socket.

Covers readiness, SIGHUP reloads (valid, broken, in a burst), the watchdog, refusals at
start, and the HTTP basics every client meets first (auth, JSON errors, body limit).
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from packyd import systemd
from tests.support.daemon import NotifySocket, PackydProcess, free_port


def write_config(path: Path, port: int, *, keys: tuple[str, ...] = ("key-one",), extra: str = "") -> Path:
    path.write_text(f"host: 127.0.0.1\nport: {port}\napi-keys: [{', '.join(keys)}]\n{extra}")
    return path


def post_bad_json(port: int, key: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/v1/messages", content=b"{not json",
                      headers={"x-api-key": key, "content-type": "application/json"}, timeout=10)


def test_ready_then_healthz_with_no_config_file(tmp_path: Path) -> None:
    port = free_port()
    with PackydProcess(["serve", "--no-config", "--port", str(port)], home=tmp_path) as daemon:
        ready = daemon.wait_ready()
        assert "serving on http://127.0.0.1:" in ready["STATUS"]
        assert "NOT configured" in ready["STATUS"]
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        # With no config at all, /v1/messages says what to configure instead of failing vaguely.
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/messages?beta=true", timeout=5, json={
            "model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 503
        assert answer.headers["x-should-retry"] == "false"
        error = answer.json()["error"]
        assert error["type"] == "api_error"
        assert "PACKYD_PACKYCODE_API_KEY" in error["message"] and "openai-api-key" in error["message"]
    assert "packycode_not_configured" in daemon.log()


def test_sighup_valid_config_swaps_and_reports(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", port, keys=("key-one",))
    with PackydProcess(["serve", "--config", str(config)], home=tmp_path) as daemon:
        daemon.wait_ready()
        assert post_bad_json(port, "key-one").status_code == 400
        assert post_bad_json(port, "key-two").status_code == 401
        write_config(config, port, keys=("key-two",))
        daemon.signal(signal.SIGHUP)
        assert daemon.notify is not None
        reloading = daemon.notify.wait_for("RELOADING", "1")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        ready = daemon.notify.wait_for("READY", "1")
        assert ready["STATUS"].startswith("reloaded; config generation 2")
        assert post_bad_json(port, "key-two").status_code == 400
        assert post_bad_json(port, "key-one").status_code == 401
    assert "action=reload generation=2 changed=api-keys" in daemon.log()
    assert "key-two" not in daemon.log(), "secrets never reach the log"


def test_sighup_broken_config_keeps_serving_the_old_one(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", port)
    with PackydProcess(["serve", "--config", str(config)], home=tmp_path) as daemon:
        daemon.wait_ready()
        config.write_text(f"port: {port}\napi-keys: [key-one]\nlog-level: shouty\npackycode:\n  wire-api: chat\n")
        daemon.signal(signal.SIGHUP)
        assert daemon.notify is not None
        daemon.notify.wait_for("RELOADING", "1")
        ready = daemon.notify.wait_for("READY", "1")
        assert ready["STATUS"] == "reload failed (2 problems), keeping generation 1"
        assert post_bad_json(port, "key-one").status_code == 400
        log = daemon.log()
        assert f"where={config}:3 key=log-level" in log
        assert f"where={config}:5 key=packycode.wire-api" in log
        assert "action=reload_failed problems=2 kept_generation=1" in log


def test_burst_of_sighups_is_survived_and_coalesced(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", port)
    with PackydProcess(["serve", "--config", str(config)], home=tmp_path) as daemon:
        daemon.wait_ready()
        daemon.signal(signal.SIGHUP)
        daemon.signal(signal.SIGHUP)
        assert daemon.notify is not None
        daemon.notify.wait_for("READY", "1")
        time.sleep(0.5)
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


def test_sigterm_when_idle_exits_zero_with_stopping(tmp_path: Path) -> None:
    port = free_port()
    with PackydProcess(["serve", "--no-config", "--port", str(port)], home=tmp_path) as daemon:
        daemon.wait_ready()
        daemon.signal(signal.SIGTERM)
        assert daemon.notify is not None
        daemon.notify.wait_for("STOPPING", "1")
        assert daemon.wait(15) == 0
    assert "action=stop" in daemon.log()


def test_sigterm_does_not_wait_for_idle_keep_alive_connections(tmp_path: Path) -> None:
    """Claude Code keeps its connection open between turns; a stop must not wait for it
    (Hypercorn alone would hold it until graceful_timeout, 27 s with the defaults)."""
    port = free_port()
    with PackydProcess(["serve", "--no-config", "--port", str(port)], home=tmp_path) as daemon:
        daemon.wait_ready()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/healthz").status_code == 200  # leaves an idle keep-alive connection
            daemon.signal(signal.SIGTERM)
            started = time.monotonic()
            assert daemon.wait(20) == 0
            assert time.monotonic() - started < 3


def test_watchdog_pings(tmp_path: Path) -> None:
    port = free_port()
    with PackydProcess(["serve", "--no-config", "--port", str(port)], home=tmp_path, env={"WATCHDOG_USEC": "200000"}) as daemon:
        daemon.wait_ready()
        assert daemon.notify is not None
        started = time.monotonic()
        daemon.notify.wait_for("WATCHDOG", "1", timeout=5)
        daemon.notify.wait_for("WATCHDOG", "1", timeout=5)
        assert time.monotonic() - started < 2


def test_non_loopback_host_without_keys_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"host: 0.0.0.0\nport: {free_port()}\n")
    with PackydProcess(["serve", "--config", str(config)], home=tmp_path) as daemon:
        assert daemon.wait(20) == 1
    log = daemon.log()
    assert "reachable from other machines but api-keys is empty" in log
    assert "add at least one key under api-keys" in log


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with PackydProcess(["serve", "--no-config", "--port", str(port)], home=tmp_path) as daemon:
            assert daemon.wait(20) == 1
    assert "event=listen_failed" in daemon.log() and "pick another port" in daemon.log()


def test_http_basics_auth_and_error_shapes(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", port, keys=("secret-key",), extra="max-body-size: 64KiB\n")
    base = f"http://127.0.0.1:{port}"
    with PackydProcess(["serve", "--config", str(config)], home=tmp_path) as daemon:
        daemon.wait_ready()
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.head("/").status_code == 200  # Claude Code's connectivity check, no key
            missing = client.post("/v1/messages", json={})
            assert missing.status_code == 401
            assert missing.json()["error"]["type"] == "authentication_error"
            assert "ANTHROPIC_AUTH_TOKEN" in missing.json()["error"]["message"]
            wrong = client.post("/v1/messages", json={}, headers={"x-api-key": "nope"})
            assert wrong.status_code == 401 and "not in packyd's api-keys" in wrong.json()["error"]["message"]
            bearer = client.post("/v1/messages", content=b"[]", headers={"authorization": "Bearer secret-key"})
            assert bearer.status_code == 400
            assert bearer.json()["error"] == {"type": "invalid_request_error",
                                              "message": "request body must be a JSON object"}
            assert bearer.headers["request-id"].startswith("req_packyd_")
            headers = {"x-api-key": "secret-key"}
            bad = client.post("/v1/messages", content=b'{"model": "x",', headers=headers)
            assert bad.status_code == 400
            assert bad.json()["error"]["message"].startswith("request body is not valid JSON: ")
            unknown = client.get("/v1/nothing-here", headers=headers)
            assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"
            assert unknown.json()["error"]["type"] == "not_found_error"
            wrong_method = client.get("/v1/messages", headers=headers)
            assert wrong_method.status_code == 405
            assert wrong_method.json()["error"]["type"] == "invalid_request_error"
            huge = client.post("/v1/messages", content=b"x" * (70 * 1024), headers=headers)
            assert huge.status_code == 413
            assert huge.json()["error"]["type"] == "request_too_large"
            assert "max-body-size" in huge.json()["error"]["message"]


def test_status_text_cannot_inject_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notify = NotifySocket()
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
        assert systemd.status("reload failed:\nREADY=1 ✓ done")
        message = notify.wait_for("STATUS", timeout=2)
        assert message == {"STATUS": "reload failed: READY=1 done"}
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert systemd.ready("nobody listens") is False
    finally:
        notify.close()
