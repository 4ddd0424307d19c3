"""Multi-step turns through the real CLI: a Bash tool round trip, reasoning carried across turns,
and the model names Claude Code uses when no model variable is set."""

from __future__ import annotations

import json

from tests.e2e.harness import E2E
from tests.fixtures.streams import ENC_FINAL, parallel_calls_stream, text_stream
from tests.support.fake_packycode import RecordedRequest, Reply, sse_reply


def _items(request: dict, kind: str) -> list[dict]:
    return [item for item in request["input"] if item.get("type") == kind]


async def test_bash_tool_round_trip(e2e: E2E) -> None:
    command = "printf 'e2e-%s\\n' tool-output-42 > marker.txt && cat marker.txt"
    args = json.dumps({"command": command, "description": "Write and print a marker"})
    e2e.fake.script(
        sse_reply(parallel_calls_stream([("Bash", "call_e2e_bash_1", args)], pieces=5, with_reasoning=False),
                  per_event=True),
        sse_reply(text_stream("The command printed e2e-tool-output-42.", pieces=4), per_event=True),
    )
    run = await e2e.claude("write the marker file and show it", args=("--allowedTools", "Bash"))
    assert run.returncode == 0, run.describe() + e2e.log_tail()
    assert run.text == "The command printed e2e-tool-output-42."
    assert run.result.get("permission_denials") == []
    assert (e2e.workdir / "project" / "marker.txt").read_text() == "e2e-tool-output-42\n"

    first, second = e2e.upstream_json()
    assert any(tool.get("name") == "Bash" for tool in first["tools"])
    [call] = _items(second, "function_call")
    assert call["call_id"] == "call_e2e_bash_1" and call["name"] == "Bash"
    assert json.loads(call["arguments"])["command"] == command
    [output] = _items(second, "function_call_output")
    assert output["call_id"] == "call_e2e_bash_1"
    text = output["output"] if isinstance(output["output"], str) else json.dumps(output["output"])
    assert "e2e-tool-output-42" in text


async def test_reasoning_round_trips_unchanged(e2e: E2E) -> None:
    """The reasoning item's final encrypted_content reaches upstream again on the next turn."""
    args = json.dumps({"command": "echo thinking-done", "description": "Print a word"})
    e2e.fake.script(
        sse_reply(parallel_calls_stream([("Bash", "call_e2e_think_1", args)], pieces=3, with_reasoning=True),
                  per_event=True),
        sse_reply(text_stream("Done thinking.", pieces=2), per_event=True),
    )
    run = await e2e.claude("think, then run echo", args=("--allowedTools", "Bash"), stream_json=True)
    assert run.returncode == 0, run.describe() + e2e.log_tail()
    assert run.text == "Done thinking."
    thinking = [block for line in run.of_type("assistant") for block in line["message"]["content"]
                if block.get("type") == "thinking"]
    assert thinking, "Claude Code showed no thinking block"
    first, second = e2e.upstream_json()
    assert "reasoning.encrypted_content" in first["include"]
    [reasoning] = _items(second, "reasoning")
    assert reasoning["encrypted_content"] == ENC_FINAL
    # the reasoning comes before the call it led to, as the upstream produced them
    kinds = [item.get("type") for item in second["input"]]
    assert kinds.index("reasoning") < kinds.index("function_call")


async def test_default_model_names_go_through_model_map(e2e: E2E) -> None:
    """No model variables: the main loop runs on Claude Code's default opus name and a haiku
    subagent on its haiku name; model-map sends them to gpt-5-codex and gpt-5-codex-mini."""
    agent_args = json.dumps({"description": "Count to three", "prompt": "Count to three and report.",
                             "subagent_type": "general-purpose", "model": "haiku", "run_in_background": False})

    def respond(record: RecordedRequest) -> Reply | None:
        body = record.json
        if body["model"] == "gpt-5-codex-mini":
            return sse_reply(text_stream("one two three", pieces=2), per_event=True)
        if not any(item.get("type") == "function_call_output" for item in body["input"]):
            return sse_reply(parallel_calls_stream([("Agent", "call_e2e_agent_1", agent_args)], pieces=4,
                                                   with_reasoning=False), per_event=True)
        return sse_reply(text_stream("The subagent counted to three.", pieces=3), per_event=True)

    e2e.fake.responder = respond
    run = await e2e.claude("delegate counting to a haiku agent", stream_json=True,
                           args=("--allowedTools", "Agent"))
    assert run.returncode == 0, run.describe() + e2e.log_tail()
    assert run.text == "The subagent counted to three."
    models = [r.json["model"] for r in e2e.upstream_requests]
    assert "gpt-5-codex" in models and "gpt-5-codex-mini" in models, models
    # what Claude Code asked packyd for, per packyd's log
    log = e2e.packyd.log()
    asked = sorted({part.split("=", 1)[1] for line in log.splitlines() if "event=request" in line
                    for part in line.split() if part.startswith("model=")})
    print("models Claude Code asked for:", asked, "upstream:", models)
    assert any("opus" in name for name in asked) and any("haiku" in name for name in asked), asked
