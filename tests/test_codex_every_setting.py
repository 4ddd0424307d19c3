"""SC-006: every key of the ``packycode`` block is read by the code and has an effect a test shows.

One test per setting, each contrasting values where it can, against a real packyd on
127.0.0.1 and a fake Packycode that records what it was sent. :data:`EFFECTS` maps every
leaf of the block to its test, and :func:`test_every_setting_has_an_effect_test` fails as
soon as a setting is added without one — no declared-but-ignored settings.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
import trio

from packyd.config import load_config
from packyd.config.schema import PackycodeConfig, walk_settings
from tests.conftest import Stack
from tests.fixtures.streams import text_stream
from tests.support.daemon import ROOT, PackydProcess, free_port
from tests.support.fake_packycode import FakePackycode, error_reply, sse_reply, stall_reply
from tests.support.inprocess import UPSTREAM_KEY, packyd_config, start_packyd
from tests.test_faults import NeverAccepts

StartStack = Callable[..., Awaitable[Stack]]
LIMIT = 20


def body(model: str = "packyd-unmapped", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}], **extra}


async def ask(stack: Stack, payload: dict[str, Any] | None = None) -> httpx.Response:
    stack.fake.default = sse_reply(text_stream("ok"))
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers, timeout=LIMIT) as client:
        with trio.fail_after(LIMIT):
            return await client.post("/v1/messages", json=payload or body())


async def sent(start_stack: StartStack, payload: dict[str, Any] | None = None, **packycode: Any) -> dict[str, Any]:
    """Start packyd with these packycode settings, send one request, return what upstream got."""
    stack = await start_stack(packycode=packycode)
    before = len(stack.upstream_requests)
    response = await ask(stack, payload)
    assert response.status_code == 200, response.text
    recorded = stack.upstream_requests[before:]
    assert len(recorded) == 1
    return {"headers": recorded[0].headers, "body": recorded[0].json}


# ----------------------------------------------------------------------------- settings


async def test_enabled(start_stack: StartStack) -> None:
    off = await start_stack(packycode={"enabled": False})
    refused = await ask(off)
    assert refused.status_code == 503 and "packycode.enabled is false" in refused.json()["error"]["message"]
    assert off.upstream_requests == []
    on = await start_stack(packycode={"enabled": True})
    assert (await ask(on)).status_code == 200 and len(on.upstream_requests) == 1


async def test_import_codex_cli(tmp_path: Path, fake_packycode: FakePackycode) -> None:
    """A served request uses the Codex CLI's base URL and key only when the setting says so."""
    from tests.test_codex_serve import documented_codex_home

    codex = documented_codex_home(tmp_path / "codex", fake_packycode.url)
    fake_packycode.default = sse_reply(text_stream("ok"))
    for wanted in (False, True):
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(f"port: {port}\npackycode:\n  import-codex-cli: {str(wanted).lower()}\n")
        daemon = PackydProcess(["serve", "--config", str(config)], home=tmp_path, env={"CODEX_HOME": str(codex)})
        with daemon:
            await trio.to_thread.run_sync(daemon.wait_ready)
            async with httpx.AsyncClient(timeout=LIMIT) as client:
                answer = await client.post(f"http://127.0.0.1:{port}/v1/messages", json=body())
        assert answer.status_code == (200 if wanted else 503), answer.text
    [recorded] = fake_packycode.upstream_requests
    assert recorded.headers["authorization"].startswith("Bearer sk-packy-")


async def test_base_url(nursery: trio.Nursery, start_stack: StartStack) -> None:
    other = FakePackycode(default=sse_reply(text_stream("from the other one")))
    await nursery.start(other.serve)
    stack = await start_stack(packycode={"base-url": other.url})
    response = await ask(stack)
    assert response.json()["content"][0]["text"] == "from the other one"
    assert [r.path for r in other.upstream_requests] == ["/v1/responses"] and stack.fake.requests == []


async def test_wire_api(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("packycode:\n  wire-api: responses\n")
    assert load_config(str(config), env={}).ok
    config.write_text("packycode:\n  wire-api: chat\n")
    [problem] = load_config(str(config), env={}).errors
    assert problem.path == "packycode.wire-api" and "responses" in problem.fix


async def test_requires_openai_auth(start_stack: StartStack) -> None:
    assert (await sent(start_stack, **{"requires-openai-auth": True}))["headers"]["authorization"] == \
        f"Bearer {UPSTREAM_KEY}"
    assert "authorization" not in (await sent(start_stack, **{"requires-openai-auth": False}))["headers"]


async def test_credentials_openai_api_key(start_stack: StartStack) -> None:
    got = await sent(start_stack, credentials={"openai-api-key": "sk-another-key-for-this-test-01"})
    assert got["headers"]["authorization"] == "Bearer sk-another-key-for-this-test-01"


async def test_credentials_openai_api_key_file(tmp_path: Path, start_stack: StartStack) -> None:
    key_file = tmp_path / "packycode.key"
    key_file.write_text("sk-key-from-a-file-0000000002\n")
    key_file.chmod(0o600)
    got = await sent(start_stack, credentials={"openai-api-key": None, "openai-api-key-file": str(key_file)})
    assert got["headers"]["authorization"] == "Bearer sk-key-from-a-file-0000000002"


async def test_privacy_disable_response_storage(start_stack: StartStack) -> None:
    for value in (True, False):
        stack = await start_stack(packycode={"privacy": {"disable-response-storage": value}})
        await ask(stack)
        assert stack.upstream_requests[-1].json["store"] is False, "never stored, whatever the setting says"
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers) as client:
            problems = (await client.get("/v0/status")).json()["problems"]
        noted = [p for p in problems if p["key"] == "packycode.privacy.disable-response-storage"]
        assert bool(noted) is (value is False), "false is reported as having no effect"


async def test_defaults_model(start_stack: StartStack) -> None:
    assert (await sent(start_stack, defaults={"model": "gpt-5.1-codex"}))["body"]["model"] == "gpt-5.1-codex"
    assert (await sent(start_stack, defaults={"model": "gpt-5"}))["body"]["model"] == "gpt-5"


async def test_defaults_model_reasoning_effort(start_stack: StartStack) -> None:
    for effort in ("low", "medium"):
        got = await sent(start_stack, defaults={"model": "gpt-5", "model-reasoning-effort": effort})
        assert got["body"]["reasoning"]["effort"] == effort


async def test_defaults_model_reasoning_summary(start_stack: StartStack) -> None:
    detailed = await sent(start_stack, defaults={"model-reasoning-summary": "detailed"})
    assert detailed["body"]["reasoning"]["summary"] == "detailed"
    none = await sent(start_stack, defaults={"model-reasoning-summary": "none"})
    assert "summary" not in none["body"]["reasoning"]


async def test_defaults_model_verbosity(start_stack: StartStack) -> None:
    assert (await sent(start_stack, defaults={"model-verbosity": "low"}))["body"]["text"] == {"verbosity": "low"}
    assert "text" not in (await sent(start_stack))["body"], "unset: nothing sent, as Codex does"


async def test_models(start_stack: StartStack) -> None:
    stack = await start_stack(packycode={"models": ["my-relay-model"]})
    async with httpx.AsyncClient(base_url=stack.url, headers={"x-api-key": stack.client_key}) as client:
        listed = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert listed[0] == "my-relay-model" and "gpt-5" not in listed
    await ask(stack, body("my-relay-model"))
    assert stack.upstream_requests[-1].json["model"] == "my-relay-model", "a listed model is served as named"
    plain = await sent(start_stack, body("my-relay-model"))
    assert plain["body"]["model"] == "gpt-5", "not listed: the default model"


async def test_model_map(start_stack: StartStack) -> None:
    got = await sent(start_stack, body("claude-opus-4-8"), **{"model-map": {"claude-*": "gpt-5.1-codex-max(xhigh)"}})
    assert (got["body"]["model"], got["body"]["reasoning"]["effort"]) == ("gpt-5.1-codex-max", "xhigh")
    default = await sent(start_stack, body("claude-opus-4-8"))
    assert (default["body"]["model"], default["body"]["reasoning"]["effort"]) == ("gpt-5-codex", "high")


async def test_identity(start_stack: StartStack) -> None:
    codex = await sent(start_stack, identity="codex-cli")
    assert codex["headers"]["originator"] == "codex_exec" and "session-id" in codex["headers"]
    plain = await sent(start_stack, identity="plain")
    assert "originator" not in plain["headers"] and plain["headers"]["user-agent"].startswith("packyd/")


async def test_headers(start_stack: StartStack) -> None:
    got = await sent(start_stack, headers={"X-Relay-Team": "blue", "originator": "codex_vscode"})
    assert got["headers"]["x-relay-team"] == "blue"
    assert got["headers"]["originator"] == "codex_vscode", "headers override the identity's"


async def test_timeouts_connect(nursery: trio.Nursery) -> None:
    wedged = NeverAccepts()
    try:
        server = await start_packyd(nursery, packyd_config(
            f"http://127.0.0.1:{wedged.port}/v1",
            packycode={"timeouts": {"connect": "0.5s"}, "retries": {"max-attempts": 1}}))
        began = trio.current_time()
        async with httpx.AsyncClient(base_url=server.url, headers=server.client_headers, timeout=LIMIT) as client:
            response = await client.post("/v1/messages", json=body())
        elapsed = trio.current_time() - began
    finally:
        wedged.close()
    assert "packycode.timeouts.connect" in response.json()["error"]["message"]
    assert 0.4 < elapsed < 3


async def test_timeouts_first_byte(start_stack: StartStack) -> None:
    stack = await start_stack(packycode={"timeouts": {"first-byte": "1s"}, "retries": {"max-attempts": 1}})
    stack.fake.script(stall_reply(before_headers=True))
    began = trio.current_time()
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers, timeout=LIMIT) as client:
        response = await client.post("/v1/messages", json=body())
    assert response.status_code == 504 and "packycode.timeouts.first-byte" in response.json()["error"]["message"]
    assert 0.9 < trio.current_time() - began < 4


async def test_timeouts_idle(start_stack: StartStack) -> None:
    stack = await start_stack(packycode={"timeouts": {"idle": "1s"}, "retries": {"max-attempts": 1}})
    stack.fake.script(stall_reply(events=text_stream()[:4]))  # created, in_progress, item added, part added
    began = trio.current_time()
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers, timeout=LIMIT) as client:
        response = await client.post("/v1/messages", json=body())
    assert "packycode.timeouts.idle" in response.text
    assert 0.9 < trio.current_time() - began < 4


async def test_retries_max_attempts(start_stack: StartStack) -> None:
    for attempts in (1, 3):
        stack = await start_stack(packycode={"retries": {"max-attempts": attempts, "max-backoff": "0.1s"}})
        before = len(stack.fake.upstream_requests)
        stack.fake.script(*[error_reply(503, "busy")] * attempts)
        stack.fake.default = None
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers, timeout=LIMIT) as client:
            response = await client.post("/v1/messages", json=body())
        assert response.status_code >= 500
        assert len(stack.fake.upstream_requests) - before == attempts


async def test_retries_max_backoff(start_stack: StartStack) -> None:
    """A Retry-After within max-backoff is waited out; a longer one is handed to the client."""
    for backoff, expected_attempts in (("3s", 2), ("0.5s", 1)):
        stack = await start_stack(packycode={"retries": {"max-attempts": 3, "max-backoff": backoff}})
        before = len(stack.fake.upstream_requests)
        stack.fake.script(error_reply(429, "Rate limit reached", code="rate_limit_exceeded",
                                      headers=[("retry-after", "1")]))
        response = await ask(stack)
        assert len(stack.fake.upstream_requests) - before == expected_attempts
        assert response.status_code == (200 if expected_attempts == 2 else 429)


#: every leaf of the packycode block -> the test above that shows its effect
EFFECTS: dict[str, Callable[..., Any]] = {
    "packycode.enabled": test_enabled,
    "packycode.import-codex-cli": test_import_codex_cli,
    "packycode.base-url": test_base_url,
    "packycode.wire-api": test_wire_api,
    "packycode.requires-openai-auth": test_requires_openai_auth,
    "packycode.credentials.openai-api-key": test_credentials_openai_api_key,
    "packycode.credentials.openai-api-key-file": test_credentials_openai_api_key_file,
    "packycode.privacy.disable-response-storage": test_privacy_disable_response_storage,
    "packycode.defaults.model": test_defaults_model,
    "packycode.defaults.model-reasoning-effort": test_defaults_model_reasoning_effort,
    "packycode.defaults.model-reasoning-summary": test_defaults_model_reasoning_summary,
    "packycode.defaults.model-verbosity": test_defaults_model_verbosity,
    "packycode.models": test_models,
    "packycode.model-map": test_model_map,
    "packycode.identity": test_identity,
    "packycode.headers": test_headers,
    "packycode.timeouts.connect": test_timeouts_connect,
    "packycode.timeouts.first-byte": test_timeouts_first_byte,
    "packycode.timeouts.idle": test_timeouts_idle,
    "packycode.retries.max-attempts": test_retries_max_attempts,
    "packycode.retries.max-backoff": test_retries_max_backoff,
}


def test_every_setting_has_an_effect_test() -> None:
    leaves = [path for path, _ in walk_settings(PackycodeConfig, "packycode.")]
    assert sorted(EFFECTS) == sorted(leaves), "add a test above for every new packycode setting"
    module = sys.modules[__name__]
    for test in EFFECTS.values():
        assert getattr(module, test.__name__) is test


def test_every_setting_is_in_the_example_config() -> None:
    from packyd.config.yamlfile import parse_yaml

    document = parse_yaml((ROOT / "config.example.yaml").read_text())
    for path, _ in walk_settings(PackycodeConfig, "packycode."):
        assert path in document.lines, f"{path} is not documented in config.example.yaml"
