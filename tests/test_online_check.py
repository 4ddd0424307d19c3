"""``packyd check-config --online`` against a fake Packycode on 127.0.0.1 (real HTTP).

The command runs as a subprocess; the fake serves in the test's nursery and records the one
request, which must be shaped like real traffic (the provider's own headers and translator).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from tests.fixtures.streams import nested_error_stream, text_stream
from tests.support.daemon import ROOT, free_port
from tests.support.fake_packycode import FakePackycode, Reply, error_reply, sse_reply

KEY = "sk-online-check-key-0123456789abcdef"


async def check_online(tmp_path: Path, base_url: str, *, key: str | None = KEY,
                       extra: str = "") -> tuple[int, str]:
    config = tmp_path / "config.yaml"
    credentials = f"  credentials:\n    openai-api-key: {key}\n" if key else ""
    config.write_text(f"packycode:\n  base-url: {base_url}\n{credentials}{extra}")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PACKYD_", "CODEX_HOME"))}
    environment.update({"PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    result = await trio.run_process([sys.executable, "-m", "packyd", "check-config", str(config), "--online"],
                                    capture_stdout=True, capture_stderr=True, check=False, env=environment)
    output = (result.stdout + result.stderr).decode()
    assert KEY not in output, "the key must never be printed"
    return result.returncode, output


async def test_accepted_and_shaped_like_real_traffic(tmp_path: Path, fake_packycode: FakePackycode) -> None:
    fake_packycode.script(sse_reply(text_stream("ok")))
    code, output = await check_online(tmp_path, fake_packycode.url)
    assert code == 0, output
    assert "online check: accepted — Packycode accepted the key and answers with model gpt-5" in output
    assert f"key sk-…{KEY[-4:]} from config.yaml:4" in output
    [request] = fake_packycode.upstream_requests
    assert request.path == "/v1/responses" and request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["originator"] == "codex_exec"
    body = request.json
    assert body["stream"] is True and body["store"] is False and body["model"] == "gpt-5"
    assert body["reasoning"]["effort"] == "minimal", "the cheapest effort the model accepts"
    assert "max_output_tokens" not in body


@pytest.mark.parametrize(("reply", "outcome", "words"), [
    (error_reply(401, f"Incorrect API key provided: {KEY}", type="invalid_request_error", code="invalid_api_key"),
     "bad-key", ["rejected the key", "packycode.credentials"]),
    (error_reply(429, "You exceeded your current quota, please check your plan and billing details.",
                 type="insufficient_quota", code="insufficient_quota"),
     "quota", ["quota", "wait for the reset"]),
    (error_reply(404, "The model `gpt-5` does not exist or you do not have access to it.", code="model_not_found"),
     "unknown-model", ["does not serve model", "defaults.model"]),
    (error_reply(400, "Unsupported parameter: 'reasoning.summary' is not supported with this model.",
                 type="invalid_request_error", code="unsupported_parameter"),
     "rejected", ["rejected the request with 400", "Unsupported parameter", "packycode.identity"]),
    (error_reply(403, "This account only allows Codex official clients"),
     "identity-refused", ["identity", "codex-legacy"]),
    (error_reply(429, "Rate limit reached, try again in 2s", code="rate_limit_exceeded",
                 headers=[("retry-after", "2")]),
     "rate-limited", ["rate limit", "try again shortly"]),
    (error_reply(502, "bad gateway"), "upstream-error", ["server error 502"]),
    (sse_reply(nested_error_stream("insufficient_quota")), "quota", ["usage quota exhausted"]),
], ids=["bad-key", "quota", "unknown-model", "shape-rejected", "identity", "rate-limited", "5xx", "quota-in-stream"])
async def test_refusals_are_classified(tmp_path: Path, fake_packycode: FakePackycode, reply: Reply, outcome: str,
                                       words: list[str]) -> None:
    fake_packycode.script(reply)
    code, output = await check_online(tmp_path, fake_packycode.url)
    assert code == 3, output
    assert f"online check: {outcome}" in output
    for word in words:
        assert word in output, f"{word!r} missing from:\n{output}"
    assert "'reasoning.summary'" not in output, "only the short reason is quoted, never what follows"
    assert len(fake_packycode.upstream_requests) == 1, "one call, no retries"


async def test_unreachable_and_tls(tmp_path: Path, fake_packycode: FakePackycode) -> None:
    code, output = await check_online(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    assert code == 3 and "online check: unreachable" in output and "packycode.base-url" in output
    # The fake speaks plain HTTP: an https:// client fails in the TLS handshake.
    port = fake_packycode.url.split(":")[2].split("/")[0]
    code, output = await check_online(tmp_path, f"https://127.0.0.1:{port}/v1")
    assert code == 3 and "online check: tls" in output and "TLS handshake" in output


async def test_not_configured_makes_no_call(tmp_path: Path, fake_packycode: FakePackycode) -> None:
    code, output = await check_online(tmp_path, fake_packycode.url, key=None)
    assert code == 3 and "online check: not-configured" in output and "PACKYD_PACKYCODE_API_KEY" in output
    assert fake_packycode.requests == []
