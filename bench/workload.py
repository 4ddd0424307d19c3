"""Request bodies for the benchmarks: a small streaming request and a realistic Claude Code turn.

The realistic one is built synthetically in the shape Claude Code 2.1.x sends (see
reference/claude-code.md §4): a billing-header system block, an identity line and a long main
prompt; 24 tools named as Claude Code's with JSON Schema 2020-12 input schemas (anyOf+const,
propertyNames, exclusiveMinimum, format: uri, additionalProperties: false) and long
descriptions; a few turns with a tool call, its result, a mid-conversation ``role: system``
message and ``cache_control`` on the last user block. About 90 KB of JSON.
"""

from __future__ import annotations

import json
import random

__all__ = ["small_request", "claude_code_request", "marker"]

TOOL_NAMES = [
    "Agent", "Bash", "CronCreate", "CronDelete", "CronList", "Edit", "EnterWorktree", "ExitWorktree",
    "NotebookEdit", "Read", "ReportFindings", "ScheduleWakeup", "SendMessage", "Skill", "TaskCreate",
    "TaskGet", "TaskList", "TaskOutput", "TaskStop", "TaskUpdate", "WebFetch", "WebSearch", "Workflow", "Write",
]

_WORDS = ("the tool runs a command in the working directory and returns its output; use it when you need "
          "to inspect files, run tests, or change state; prefer dedicated tools for reading and editing "
          "files; quote paths with spaces; never run interactive commands; explain what the command does "
          "in the description field so the user can approve it; output longer than the limit is cut").split()


def _prose(rng: random.Random, size: int) -> str:
    words: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(_WORDS)
        words.append(word)
        total += len(word) + 1
    return " ".join(words)


def marker(**params: object) -> str:
    return "[bench " + " ".join(f"{k}={v}" for k, v in params.items()) + "]"


def _schema(rng: random.Random, name: str) -> dict:
    props: dict[str, dict] = {
        "command": {"type": "string", "description": _prose(rng, 120)},
        "description": {"type": "string", "description": _prose(rng, 80)},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 9007199254740991,
                    "description": "Optional timeout in milliseconds"},
        "status": {"anyOf": [{"type": "string", "const": s} for s in ("pending", "in_progress", "completed")]},
        "metadata": {"type": "object", "propertyNames": {"type": "string", "pattern": "^[a-z_]+$"},
                     "additionalProperties": {"type": "string"}},
        "url": {"type": "string", "format": "uri"},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "path": {"type": "string"}, "line": {"type": "integer", "minimum": 1}},
            "required": ["path"], "additionalProperties": False}},
    }
    chosen = dict(rng.sample(sorted(props.items()), k=rng.randint(3, len(props))))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": chosen,
        "required": sorted(chosen)[:1],
        "additionalProperties": False,
    }


def _tools(rng: random.Random) -> list[dict]:
    tools = []
    for name in TOOL_NAMES:
        size = 14000 if name == "Workflow" else rng.randint(700, 1900)
        tools.append({"name": name, "description": _prose(rng, size), "input_schema": _schema(rng, name)})
    return tools


def claude_code_request(bench: str, *, target_bytes: int = 90_000, stream: bool = True) -> dict:
    """A Claude Code main turn of about ``target_bytes`` whose last user text carries ``bench``."""
    rng = random.Random(7)
    body = {
        "model": "claude-opus-4-8",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nAs you answer the user's questions, you can use the "
                                         "following context:\n# currentDate\nToday's date is 2026-01-01.\n"
                                         "</system-reminder>\n\n"},
                {"type": "text", "text": "Run the tests and tell me what fails."},
            ]},
            {"role": "system", "content": "Available agent types for the Agent tool: " + _prose(rng, 1500)},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I'll run the test suite first."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "Bash",
                 "input": {"command": "pytest -q", "description": "Run the test suite"}},
            ]},
            {"role": "user", "content": [
                {"tool_use_id": "toolu_01A09q90qw90lq917835lq9", "type": "tool_result",
                 "content": _prose(rng, 2500), "is_error": False},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Two tests fail in test_config.py; let me read the file."},
                {"type": "tool_use", "id": "toolu_01B19q90qw90lq917835lq9", "name": "Read",
                 "input": {"file_path": "/home/user/project/tests/test_config.py"}},
            ]},
            {"role": "user", "content": [
                {"tool_use_id": "toolu_01B19q90qw90lq917835lq9", "type": "tool_result",
                 "content": "".join(f"{i}\t{_prose(rng, 60)}\n" for i in range(1, 60))},
                {"type": "text", "text": "Go on. " + bench, "cache_control": {"type": "ephemeral"}},
            ]},
        ],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.330.5a1; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "\nYou are an interactive agent that helps users with software engineering "
                                     "tasks. " + _prose(rng, 5700), "cache_control": {"type": "ephemeral"}},
        ],
        "tools": _tools(rng),
        "metadata": {"user_id": json.dumps({"device_id": "ab" * 32, "account_uuid": "",
                                            "session_id": "5f0c6b8e-3c1e-4f55-9d61-3f1c2c6f8a10"})},
        "max_tokens": 64000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }
    if stream:
        body["stream"] = True
    # pad the main prompt to the target size (tools dominate, as in the real thing)
    size = len(json.dumps(body))
    if size < target_bytes:
        body["system"][2]["text"] += " " + _prose(rng, target_bytes - size - 1)
    return body


def small_request(bench: str, *, stream: bool = True) -> dict:
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "say hi " + bench}],
    }
    if stream:
        body["stream"] = True
    return body
