"""Privacy (FR-005, SC-004): packyd writes no request or response content, and no key, anywhere.

packyd runs as a subprocess, the way systemd runs it, at ``log-level: debug``, with its own
HOME, working directory and TMPDIR. Every request carries a unique canary string in its
system prompt, user text, tool inputs and tool results; the fake upstreams put it in their
answers (text and tool arguments) and in error bodies that echo the prompt. The requests go
through success (streaming and not, both providers) and every failure path: upstream
errors of every shape, errors in the stream, a stream cut, a client that disconnects, a
crash inside packyd while handling the request, invalid client requests, a reload.

Then everything packyd wrote is scanned — its stdout and stderr, every file created or
changed under its HOME, working directory and TMPDIR, and the ``/v0/status``, ``/metrics``
and ``/v1/models`` answers — for the canary and for every configured key: 0 occurrences.
Error messages sent to clients for upstream bodies that echo the prompt are checked too.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml

from tests.fixtures import streams
from tests.support.daemon import ROOT, PackydProcess, free_port
from tests.support.fake_anthropic import FakeAnthropic, anthropic_error_reply, anthropic_text_reply
from tests.support.fake_packycode import (
    Chunk,
    FakePackycode,
    Reply,
    detail_reply,
    encode_sse,
    error_reply,
    sse_reply,
    text_error_reply,
)
from tests.support.inprocess import CLIENT_KEY, UPSTREAM_KEY, packyd_config, parse_sse

CANARY = "CANARY-" + uuid.uuid4().hex
RELAY_KEY = "sk-ant-privacy-relay-5e0c2a91d7"
MANAGEMENT_KEY = "mgmt-privacy-key-0b7d51f3"
KEYS = (UPSTREAM_KEY, RELAY_KEY, CLIENT_KEY, MANAGEMENT_KEY)


def body(stream: bool, **extra: Any) -> dict[str, Any]:
    """A Claude Code-like turn with the canary in every kind of content."""
    return {
        "model": "claude-opus-4-8",
        "max_tokens": 512,
        "stream": stream,
        "system": [{"type": "text", "text": f"You are helpful. {CANARY} system"}],
        "tools": [{"name": "Bash", "description": "Run a command",
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": f"please run the {CANARY} user prompt"},
            {"role": "assistant", "content": [
                {"type": "text", "text": f"running {CANARY} assistant text"},
                {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": f"echo {CANARY}"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": f"{CANARY} tool output", "is_error": True},
                {"type": "text", "text": f"and now {CANARY} again"},
            ]},
        ],
        **extra,
    }


def answer_events() -> list[dict[str, Any]]:
    """An upstream answer with the canary in its reasoning summary, text and tool arguments."""
    text = streams.reasoning_text_stream(parts=[f"thinking about {CANARY}"], text=f"Here is {CANARY} output")
    calls = streams.parallel_calls_stream(calls=[("Bash", "call_1", f'{{"command": "cat {CANARY}"}}')],
                                          with_reasoning=False)
    return [*text[:-1], *[e for e in calls if e["type"].startswith("response.output_item")
                          or e["type"].startswith("response.function_call")], text[-1]]


def failed(code: str | None, message: str) -> dict[str, Any]:
    return {"type": "response.failed", "response": {"status": "failed", "error": {"code": code, "message": message}}}


def head() -> list[dict[str, Any]]:
    return streams.text_stream()[:2]


def text_prefix() -> list[dict[str, Any]]:
    return streams.failed_stream("server_error", after_text=True)[:-1]


#: (what Packycode does, whether the client-facing message may be checked for echoes)
CRASH_EVENT = "x-packyd-test-crash"
#: Loaded by the packyd subprocess as ``sitecustomize``: a stand-in for a bug in packyd, raised
#: from packyd's own code with content in the exception, which must never reach the log.
CRASH_HOOK = f"""
from packyd.translate import stream as _stream

_feed = _stream.StreamTranslator.feed


def feed(self, payload):
    if payload.get("type") == {CRASH_EVENT!r}:
        raise RuntimeError("simulated bug while holding " + str(payload.get("text")))
    return _feed(self, payload)


_stream.StreamTranslator.feed = feed
"""


PACKYCODE_SCRIPT: list[tuple[str, Reply, bool]] = [
    ("answer, streamed", sse_reply(answer_events(), per_event=True), False),
    ("answer, aggregated", sse_reply(answer_events()), False),
    ("400 echoing the prompt", error_reply(400, f"Invalid value: '{CANARY}'. Supported values are: 'a'.",
                                           type="invalid_request_error", code="invalid_value"), True),
    ("detail echoing the prompt", detail_reply(400, f"Unsupported parameter: {CANARY}"), True),
    ("detail object", detail_reply(422, [{"loc": ["body", "input"], "msg": f"bad {CANARY}", "type": "x"}]), True),
    ("plain text error", text_error_reply(400, f"bad request: {CANARY}", content_type="text/plain"), True),
    ("502 html page", text_error_reply(502, f"<html><body><h1>Bad Gateway</h1><p>{CANARY}</p></body></html>"), True),
    ("context overflow echo", error_reply(400, f"This model's maximum context length is 400000 tokens: {CANARY}",
                                          code="context_length_exceeded"), True),
    ("response.failed echo", sse_reply([*head(), failed("invalid_prompt", f"Invalid prompt: {CANARY}")]), True),
    ("error event echo", sse_reply([*head(), {"type": "error", "code": "server_error",
                                             "message": f"Error: '{CANARY}'", "param": None}]), True),
    ("failure mid-stream", Reply(chunks=(Chunk(encode_sse(text_prefix())),
                                         Chunk(encode_sse([failed("server_error", f"oops: {CANARY}")]), 0.05))),
     False),
    ("cut mid-stream", Reply(chunks=(Chunk(encode_sse(answer_events()[:8])),), end="cut"), False),
    ("garbage mid-stream", Reply(chunks=(Chunk(encode_sse(text_prefix())),
                                         Chunk(f"data: {{{CANARY}\n\n".encode(), 0.05))), False),
    # a bug inside packyd while handling the request, before and after the first byte: the
    # subprocess loads CRASH_HOOK, which makes packyd's own stream translator raise an exception
    # whose message carries the canary when it meets this marker event
    ("crash before the first byte", sse_reply([*head(), {"type": CRASH_EVENT, "text": CANARY}]), False),
    ("crash mid-stream", Reply(chunks=(Chunk(encode_sse(streams.text_stream(f"{CANARY} done")[:-1])),
                                       Chunk(encode_sse([{"type": CRASH_EVENT, "text": CANARY}]), 0.05))), False),
]


def reassembled(response: httpx.Response) -> str:
    """The answer's text, thinking and tool input, whether streamed (split into deltas) or not."""
    if not response.headers["content-type"].startswith("text/event-stream"):
        return response.text
    pieces = []
    for _, payload in parse_sse(response.content):
        delta = payload.get("delta") or {}
        pieces.append(delta.get("text") or delta.get("thinking") or delta.get("partial_json") or "")
    return "".join(pieces)


def files_under(*roots: Path) -> dict[Path, bytes]:
    found: dict[Path, bytes] = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                found[path] = path.read_bytes()
    return found


def occurrences(needles: tuple[str, ...], haystacks: dict[str, bytes]) -> list[str]:
    hits = []
    for where, data in haystacks.items():
        for needle in needles:
            if needle.encode() in data:
                hits.append(f"{needle[:12]}… in {where}")
    return hits


async def test_no_content_and_no_key_is_written_anywhere(nursery: trio.Nursery, tmp_path: Path) -> None:
    packy, relay = FakePackycode(), FakeAnthropic()
    await nursery.start(packy.serve)
    await nursery.start(relay.serve)
    home, work, tmp, conf = (tmp_path / name for name in ("home", "work", "tmp", "conf"))
    for directory in (home, work, tmp, conf):
        directory.mkdir()
    port = free_port()
    config = packyd_config(packy.url, port=port, **{
        "log-level": "debug",
        "management-key": MANAGEMENT_KEY,
        "packycode": {"retries": {"max-attempts": 1}, "timeouts": {"idle": "2s", "first-byte": "3s"}},
        "providers": [{"name": "claude-relay", "type": "anthropic", "base-url": relay.url, "api-key": RELAY_KEY}],
        # every failure path must reach Packycode: keep the breaker from taking it out of rotation
        "routing": {"fallback": ["packycode", "claude-relay"], "circuit-breaker": {"failures": 1000}},
    })
    config_path = conf / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    os.chmod(config_path, 0o600)
    before = files_under(home, work, tmp)

    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(CRASH_HOOK)
    daemon = PackydProcess(["serve", "--config", str(config_path)], home=home, cwd=work,
                           env={"TMPDIR": str(tmp), "PYTHONPATH": f"{inject}{os.pathsep}{ROOT}"}).start()
    client_messages: dict[str, str] = {}
    answers: dict[str, bytes] = {}
    try:
        await trio.to_thread.run_sync(daemon.wait_ready)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"x-api-key": CLIENT_KEY}, timeout=20) as client:
            for index, (label, reply, echo) in enumerate(PACKYCODE_SCRIPT):
                packy.default = reply
                relay.default = anthropic_error_reply(400, "invalid_request_error",
                                                      f"messages.0.content: {CANARY} was rejected")
                with trio.fail_after(20):
                    response = await client.post("/v1/messages", json=body(stream=index % 2 == 0))
                answers[label] = response.content
                if echo:
                    assert response.status_code >= 400, (label, response.text)
                    client_messages[label] = response.json()["error"]["message"]
                if label.startswith("crash"):  # a bug in packyd still ends with a typed, content-free error
                    assert "Traceback" not in response.text
                    if response.status_code == 200:
                        assert parse_sse(response.content)[-1][1]["error"]["type"] == "api_error"
                    else:
                        assert response.json()["error"]["type"] == "api_error"
                if label.startswith("answer"):  # content does reach the client: only packyd keeps none
                    assert CANARY in reassembled(response)

            # the fallback provider, with the canary in its answer and in an echoing error
            packy.default = error_reply(503, f"overloaded: {CANARY}", code="server_is_overloaded")
            relay.default = anthropic_text_reply(f"relay says {CANARY}", model="claude-opus-4-8")
            for stream in (True, False):
                response = await client.post("/v1/messages", json=body(stream=stream))
                assert response.status_code == 200 and response.headers["x-packyd-provider"] == "claude-relay"
            relay.default = anthropic_error_reply(400, "invalid_request_error", f"messages.0: {CANARY} is bad")
            response = await client.post("/v1/messages", json=body(stream=True))
            client_messages["relay 400 echo"] = response.json()["error"]["message"]

            # a client that goes away mid-answer
            packy.default = sse_reply(streams.text_stream(f"slow {CANARY} " * 30, pieces=30), per_event=True,
                                      delay=0.05)
            async with client.stream("POST", "/v1/messages", json=body(stream=True)) as streamed:
                async for line in streamed.aiter_lines():
                    if "content_block_delta" in line:
                        break

            # client mistakes that carry the canary
            bad = [
                ("/v1/messages", f'{{"model": "x", "messages": [{CANARY}]}}'.encode()),
                ("/v1/messages", yaml.safe_dump({"model": CANARY}).encode()),
                ("/v1/messages", httpx.Request("POST", "/", json={**body(True), "max_tokens": CANARY}).content),
                ("/v1/messages", httpx.Request("POST", "/", json={**body(True), "messages": [
                    {"role": CANARY, "content": "x"}]}).content),
                ("/v1/messages/count_tokens", httpx.Request("POST", "/", json={"model": "m",
                                                                               "messages": CANARY}).content),
                ("/v1/messages", b'{"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "'
                 + CANARY.encode() * (1 + 33 * 1024 * 1024 // len(CANARY)) + b'"}]}'),
            ]
            for path, content in bad:
                response = await client.post(path, content=content, headers={"content-type": "application/json"})
                assert 400 <= response.status_code < 500, response.text[:200]
                client_messages[f"client mistake {response.status_code}"] = response.json()["error"]["message"]
            response = await client.post("/v1/messages/count_tokens", json=body(stream=False))
            assert response.status_code == 200
            # a wrong key that is itself a secret-looking string, and the canary as a key
            for wrong in (CANARY, "sk-wrong-" + CANARY):
                response = await client.post("/v1/messages", json=body(True), headers={"x-api-key": wrong})
                assert response.status_code == 401
            await client.post(f"/v0/providers/{CANARY}/disable", headers={"x-api-key": MANAGEMENT_KEY})

            # reload with the same file, then read every operator view
            daemon.signal(signal.SIGHUP)
            assert daemon.notify is not None
            await trio.to_thread.run_sync(lambda: daemon.notify.wait_for("READY", "1"))
            views = {}
            for path in ("/v0/status", "/metrics", "/v1/models"):
                response = await client.get(path, headers={"x-api-key": MANAGEMENT_KEY if path != "/v1/models"
                                                           else CLIENT_KEY})
                assert response.status_code == 200, (path, response.text)
                views[path] = response.content
    finally:
        await trio.to_thread.run_sync(daemon.stop)

    assert CANARY.encode() in b"".join(r.body for r in packy.requests)  # the canary really went through packyd
    written = {"packyd stdout+stderr": daemon.log_path.read_bytes()}
    after = files_under(home, work, tmp)
    written.update({str(path): data for path, data in after.items() if before.get(path) != data})
    written.update(views)
    log = written["packyd stdout+stderr"].decode()
    assert "level=debug" in log and "event=handler_crash" in log and "event=stream_crash" in log, log[-3000:]
    assert "action=fallback_used" in log
    hits = occurrences((CANARY, *KEYS), written)
    assert hits == [], hits
    leaked = {label: message for label, message in client_messages.items() if CANARY in message}
    assert leaked == {}, leaked
