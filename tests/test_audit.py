"""Audit events (FR-007): one structured, content-free line per event, from a real daemon.

packyd runs as a subprocess and is taken through its life: start, traffic with a failing
Packycode (fallback, circuit opened, then closed by a probe), the runtime switch, a reload
that disables a provider and moves a setting's source, a reload that fails, and stop. Every
audit line is ``level=info event=audit action=<what> key=value…`` (logfmt) and carries no
request content.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml

from tests.fixtures import streams
from tests.support.daemon import PackydProcess, free_port
from tests.support.fake_anthropic import FakeAnthropic, anthropic_text_reply
from tests.support.fake_packycode import FakePackycode, error_reply, sse_reply
from tests.support.inprocess import CLIENT_KEY, packyd_config

CANARY = "CANARY-audit-" + uuid.uuid4().hex
BODY = {"model": "claude-opus-4-8", "max_tokens": 64, "messages": [{"role": "user", "content": f"hi {CANARY}"}]}
_PAIR = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|\S+)')


def audit_lines(log: str) -> list[dict[str, str]]:
    """Every audit line as a dict; asserts each is well-formed logfmt."""
    found = []
    for line in log.splitlines():
        if "event=audit" not in line:
            continue
        fields = dict(_PAIR.findall(line))
        assert " ".join(f"{key}={value}" for key, value in fields.items()) == line, f"not logfmt: {line}"
        assert fields["level"] == "info" and fields["event"] == "audit" and fields["action"], line
        found.append({key: value.strip('"') for key, value in fields.items()})
    return found


def actions(lines: list[dict[str, str]], action: str, **match: str) -> list[dict[str, str]]:
    return [line for line in lines
            if line["action"] == action and all(line.get(key) == value for key, value in match.items())]


async def test_every_audit_event_appears_once_per_occurrence(nursery: trio.Nursery, tmp_path: Path) -> None:
    packy, relay = FakePackycode(), FakeAnthropic()
    await nursery.start(packy.serve)
    await nursery.start(relay.serve)
    relay.default = anthropic_text_reply(f"relay {CANARY}", model=BODY["model"])
    port = free_port()
    relay_entry = {"name": "claude-relay", "type": "anthropic", "base-url": relay.url, "api-key": "sk-ant-audit-01"}
    config = packyd_config(packy.url, port=port, packycode={"retries": {"max-attempts": 1},
                                                            "defaults": {"model": "gpt-5-codex"}},
                           providers=[relay_entry],
                           routing={"fallback": ["packycode", "claude-relay"],
                                    "circuit-breaker": {"failures": 2, "window": "60s", "cooldown": "1s"}})
    config_path = tmp_path / "config.yaml"

    def write(document: Any) -> None:
        config_path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
        os.chmod(config_path, 0o600)

    write(config)
    daemon = PackydProcess(["serve", "--config", str(config_path)], home=tmp_path).start()
    assert daemon.notify is not None
    try:
        await trio.to_thread.run_sync(daemon.wait_ready)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": CLIENT_KEY},
                                     timeout=10) as client:
            # two failures: both served by the relay (fallback), and the circuit opens
            packy.default = error_reply(500, f"down {CANARY}", code="server_error")
            for _ in range(2):
                response = await client.post("/v1/messages", json=BODY)
                assert response.headers["x-packyd-provider"] == "claude-relay"
            # after the cooldown the probe succeeds: the circuit closes
            await trio.sleep(1.1)
            packy.default = sse_reply(streams.text_stream(f"ok {CANARY}"))
            response = await client.post("/v1/messages", json=BODY)
            assert response.headers["x-packyd-provider"] == "packycode"
            # the runtime switch
            assert (await client.post("/v0/providers/packycode/disable")).status_code == 200
            assert (await client.post("/v0/providers/packycode/enable")).status_code == 200

        # a reload that disables the relay and drops defaults.model (config.yaml → default)
        changed = packyd_config(packy.url, port=port, packycode={"retries": {"max-attempts": 1}},
                                providers=[{**relay_entry, "enabled": False}],
                                routing={"fallback": ["packycode", "claude-relay"]})
        write(changed)
        daemon.signal(signal.SIGHUP)
        await trio.to_thread.run_sync(lambda: daemon.notify.wait_for("READY", "1"))
        # a reload that fails: the previous configuration stays
        write("host: [unclosed\n")
        daemon.signal(signal.SIGHUP)
        await trio.to_thread.run_sync(lambda: daemon.notify.wait_for("READY", "1"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            metrics = (await client.get("/metrics", headers={"x-api-key": CLIENT_KEY})).text
        assert "\npackyd_config_last_reload_successful 0\n" in metrics
        assert '\npackyd_reloads_total{result="ok"} 1\n' in metrics
    finally:
        await trio.to_thread.run_sync(daemon.stop)

    log = daemon.log()
    lines = audit_lines(log)
    assert len(actions(lines, "start")) == 1
    assert len(actions(lines, "provider_enabled", provider="packycode", by="config")) == 1
    assert len(actions(lines, "provider_enabled", provider="claude-relay", by="config")) == 1
    fallbacks = actions(lines, "fallback_used", served_by="claude-relay", failed="packycode")
    assert len(fallbacks) == 2 and fallbacks[0]["error_type"] == "api_error" and fallbacks[0]["status"] == "500"
    assert len(actions(lines, "circuit_opened", provider="packycode")) == 1
    assert len(actions(lines, "circuit_closed", provider="packycode")) == 1
    assert len(actions(lines, "provider_disabled", provider="packycode", by="runtime-switch")) == 1
    assert len(actions(lines, "provider_enabled", provider="packycode", by="runtime-switch")) == 1
    reloads = actions(lines, "reload")
    assert len(reloads) == 1 and reloads[0]["generation"] == "2"
    disabled = actions(lines, "provider_disabled", provider="claude-relay", by="config")
    assert len(disabled) == 1 and disabled[0]["reason"] == "enabled is false"
    moved = actions(lines, "config_source_changed", setting="packycode.defaults.model")
    assert len(moved) == 1 and moved[0]["source_was"] == "config.yaml" and moved[0]["source_now"] == "default"
    failed = actions(lines, "reload_failed")
    assert len(failed) == 1 and int(failed[0]["problems"]) >= 1
    assert len(actions(lines, "stopping")) == 1 and len(actions(lines, "stop")) == 1
    # circuit and switch changes in order: opened before closed, disabled before enabled
    order = [line["action"] for line in lines]
    assert order.index("circuit_opened") < order.index("circuit_closed")
    # content-free and secret-free
    audit_text = "\n".join(line for line in log.splitlines() if "event=audit" in line)
    for secret in (CANARY, "sk-ant-audit-01", CLIENT_KEY, "sk-test-packycode-9f3a7c1e5b2d"):
        assert secret not in audit_text
