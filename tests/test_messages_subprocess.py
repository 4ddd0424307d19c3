"""packyd exactly as systemd runs it (``python -m packyd serve``, readiness on a notify socket),
serving the official SDK from the fake Packycode run as its own process too.

This is also the reference for the fake's subprocess mode, which daemon and end-to-end tests
use: ``--script`` for the first replies, the ``/_fake/*`` control API afterwards.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
import subprocess
import sys
from pathlib import Path

import anthropic
import httpx
import yaml

from tests.fixtures import streams
from tests.support.checks import check_message, check_upstream_request, usage
from tests.support.daemon import ROOT, PackydProcess, free_port
from tests.support.fake_packycode import RecordedRequest, Reply, detail_reply, error_reply, sse_reply
from tests.support.inprocess import CLIENT_KEY, packyd_config

MODEL = "claude-sonnet-4-8"


def _recorded(control: str) -> list[RecordedRequest]:
    rows = httpx.get(f"{control}/_fake/requests", timeout=5).json()
    return [RecordedRequest(r["method"], r["path"], r["headers"], r["body"].encode(), r["received_at"],
                            r["disconnected_at"], r["finished_at"]) for r in rows]


def test_daemon_subprocess_serves_the_sdk_from_a_fake_subprocess(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({
        "replies": [sse_reply(streams.reasoning_text_stream(), per_event=True, delay=0.01).to_json()],
        "default": sse_reply(streams.text_stream("default answer")).to_json(),
    }))
    fake = subprocess.Popen([sys.executable, "-m", "tests.support.fake_packycode", "--port", "0",
                             "--script", str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        banner = fake.stdout.readline()
        assert banner.startswith("listening on http://127.0.0.1:"), banner
        upstream = banner.split()[-1]
        control = upstream.removesuffix("/v1")
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(packyd_config(upstream, port=port)))
        os.chmod(config, 0o600)
        with PackydProcess(["serve", "--config", str(config)], home=tmp_path) as daemon, ExitStack() as stack:
            daemon.wait_ready()
            # closed before the daemon stops: an idle keep-alive connection would hold its shutdown
            client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=CLIENT_KEY, max_retries=0)
            stack.callback(client.close)
            with client.messages.stream(model=MODEL, max_tokens=256,
                                        messages=[{"role": "user", "content": "list the files"}]) as stream:
                streamed = stream.get_final_message()
            check_message(streamed, content=[
                {"type": "thinking", "thinking": "\n\n".join(streams.REASONING_PARTS),
                 "signature": "pky1:" + streams.ENC_FINAL},
                {"type": "text", "text": "Here are the files."},
            ], stop_reason="end_turn", usage=usage(5120, 4096, 312), model=MODEL)

            created = client.messages.create(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "hi"}])
            assert created.content[0].text == "default answer"

            # replies pushed to the running fake over its control API
            pushed = [detail_reply(400, "Unsupported parameter: service_tier")]  # not retried
            httpx.post(f"{control}/_fake/replies", json=[r.to_json() for r in pushed], timeout=5).raise_for_status()
            try:
                client.messages.create(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "again"}])
            except anthropic.BadRequestError as error:
                assert "400" in error.message
            else:
                raise AssertionError("the pushed error was not played")

            recorded = _recorded(control)
            assert len(recorded) == 3
            for request in recorded:
                sent = check_upstream_request(request)  # sonnet maps to gpt-5-codex(medium)
                assert sent["reasoning"]["effort"] == "medium"
            assert "list the files" not in daemon.log()  # the daemon's own log has no content
    finally:
        fake.terminate()
        fake.wait(10)


def test_reply_json_round_trip() -> None:
    """Scripts written for the subprocess mode replay byte for byte."""
    for reply in (sse_reply(streams.text_stream("é漢字"), chunk_size=3, delay=0.01, end="cut"),
                  error_reply(503, "busy", headers=[("retry-after", "1")]),
                  Reply(head_delay=float("inf"))):
        assert Reply.from_json(json.loads(json.dumps(reply.to_json()))) == reply
