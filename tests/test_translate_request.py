"""Request translation: Anthropic Messages → Responses body, field by field."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from packyd.errors import InvalidRequest
from packyd.translate.aggregate import aggregate
from packyd.translate.messages import parse_messages_request
from packyd.translate.reasoning import pack_signature
from packyd.translate.request import (
    TOOL_ERROR_PREFIX,
    conversation_id,
    extract_session_id,
    identity_headers,
    translate_request,
)
from packyd.translate.settings import TranslationSettings
from packyd.translate.stream import StreamTranslator
from packyd.translate.tools import clamp_call_id
from tests.fixtures import requests as rq
from tests.fixtures import streams as fx

SETTINGS = TranslationSettings()
NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
FORBIDDEN = {
    "max_output_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "metadata",
    "previous_response_id",
    "user",
    "truncation",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
}


def translate(body: dict[str, Any], settings: TranslationSettings = SETTINGS, **kw: Any):  # type: ignore[no-untyped-def]
    req = parse_messages_request(body)
    sid = extract_session_id({}, req.metadata_user_id)
    return translate_request(req, settings, session_id=sid, **kw)


def assert_no_ids(value: Any) -> None:
    if isinstance(value, dict):
        assert "id" not in value, value
        for v in value.values():
            assert_no_ids(v)
    elif isinstance(value, list):
        for v in value:
            assert_no_ids(v)


def check_invariants(body: dict[str, Any]) -> None:
    assert not FORBIDDEN & set(body), FORBIDDEN & set(body)
    assert body["store"] is False and body["stream"] is True
    assert body["include"] == ["reasoning.encrypted_content"]
    assert isinstance(body["prompt_cache_key"], str) and body["prompt_cache_key"]
    for tool in body["tools"]:
        if tool["type"] == "function":
            assert NAME_RE.match(tool["name"]), tool["name"]
            assert tool["parameters"]["type"] == "object"
    for item in body["input"]:
        assert_no_ids(item)
        if item.get("role") == "system":
            raise AssertionError("system-role input items are rejected by relays")
        if item["type"] in ("function_call", "function_call_output"):
            assert len(item["call_id"]) <= 64
        if item["type"] == "function_call":
            assert NAME_RE.match(item["name"])
    json.dumps(body)  # serializable as is


def test_first_turn_codex_cli_layout() -> None:
    up = translate(rq.first_turn())
    body = up.body
    check_invariants(body)
    assert list(body) == [
        "model",
        "stream",
        "input",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "store",
        "include",
        "prompt_cache_key",
    ]
    assert "instructions" not in body
    assert body["model"] == "gpt-5-codex" and up.upstream_model == "gpt-5-codex"
    assert up.requested_model == "claude-opus-4-8"
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    dev, user, sysmsg = body["input"]
    # billing header dropped, the rest kept byte for byte as separate parts
    assert dev == {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": t["text"]} for t in rq.SYSTEM[1:]],
    }
    assert user["role"] == "user" and [p["text"] for p in user["content"]][1] == "list the files"
    assert sysmsg["role"] == "developer" and sysmsg["content"][0]["text"].startswith("Available agent types")
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert "stop_sequences" not in up.dropped


def test_tools_are_sanitized_and_long_names_shortened() -> None:
    up = translate(rq.first_turn())
    tools = {t["name"]: t for t in up.body["tools"]}
    short = up.names.upstream(rq.LONG_MCP_TOOL)
    assert short in tools and len(short) <= 64 and short.startswith("mcp__") and "performance_analyze_insight" in short
    assert up.names.client(short) == rq.LONG_MCP_TOOL
    bash = tools["Bash"]
    assert bash == {
        "type": "function",
        "name": "Bash",
        "description": "Executes a given bash command.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": rq.BASH_TOOL["input_schema"]["properties"],
            "required": ["command"],
            "additionalProperties": False,
        },
    }
    read = tools["Read"]["parameters"]["properties"]["limit"]
    assert read == {"type": "integer", "exclusiveMinimum": 0}
    status = tools["TaskUpdate"]["parameters"]["properties"]["status"]
    assert status == {"enum": ["pending", "completed"], "type": "string"}
    assert "propertyNames" not in tools["TaskUpdate"]["parameters"]["properties"]["metadata"]
    assert "format" not in tools["WebFetch"]["parameters"]["properties"]["url"]
    # the client's body is not modified
    assert rq.TOOLS[1]["input_schema"]["properties"]["limit"]["maximum"] == 9007199254740991


def test_translation_is_deterministic_for_caching() -> None:
    a = translate(rq.first_turn()).body
    b = translate(rq.first_turn()).body
    assert json.dumps(a) == json.dumps(b)
    body = rq.first_turn()
    body["system"][0]["text"] = "x-anthropic-billing-header: cc_version=2.1.197.68e; cc_entrypoint=sdk-cli;"
    assert json.dumps(translate(body).body) == json.dumps(a)


def test_prompt_cache_key_is_stable_per_session() -> None:
    a = translate(rq.first_turn())
    b = translate(rq.tool_turn(pack_signature(fx.ENC_FINAL)))
    assert a.body["prompt_cache_key"] == b.body["prompt_cache_key"] == a.conversation_id
    other = rq.first_turn()
    other["metadata"]["user_id"] = json.dumps({"session_id": "another"})
    assert translate(other).body["prompt_cache_key"] != a.body["prompt_cache_key"]


def test_tool_turn_history_results_errors_and_images() -> None:
    up = translate(rq.tool_turn(pack_signature(fx.ENC_FINAL)))
    body = up.body
    check_invariants(body)
    items = body["input"][3:]
    kinds = [i["type"] for i in items]
    assert kinds == ["reasoning", "message", "function_call", "function_call", "function_call_output", "function_call_output"]
    reasoning, text, call_a, call_b, out_a, out_b = items
    assert reasoning == {"type": "reasoning", "summary": [], "encrypted_content": fx.ENC_FINAL}
    assert text == {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]}
    assert call_a == {"type": "function_call", "call_id": "toolu_01A", "name": "Bash", "arguments": '{"command":"ls","description":"list"}'}
    assert call_b["name"] == up.names.upstream(rq.LONG_MCP_TOOL)
    assert out_a == {"type": "function_call_output", "call_id": "toolu_01A", "output": TOOL_ERROR_PREFIX + "This command requires approval"}
    assert out_b["call_id"] == "toolu_01B"
    assert out_b["output"] == [
        {"type": "input_text", "text": "screenshot attached"},
        {"type": "input_image", "image_url": "data:image/png;base64," + rq.PNG_1PX},
    ]


def test_text_only_tool_result_list_becomes_a_string() -> None:
    up = translate(rq.tool_turn(pack_signature(fx.ENC_FINAL), image_result=False))
    assert up.body["input"][-1]["output"] == "screenshot attached"


def test_thinking_round_trip_through_the_stream_translator() -> None:
    """Stream → thinking block with signature → next request → reasoning item, same blob."""
    first = translate(rq.first_turn())
    t = StreamTranslator(requested_model="claude-opus-4-8", names=first.names)
    events = []
    for e in fx.parallel_calls_stream():
        events.extend(t.feed(e))
    answer = aggregate(events)
    thinking = answer["content"][0]
    assert thinking["type"] == "thinking"
    # the client echoes the assistant turn verbatim, then sends the results
    body = rq.first_turn()
    body["messages"].append({"role": "assistant", "content": answer["content"]})
    body["messages"].append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": b["id"], "content": "ok"} for b in answer["content"][1:]]}
    )
    second = translate(body).body
    reasoning = [i for i in second["input"] if i["type"] == "reasoning"]
    assert reasoning == [{"type": "reasoning", "summary": [], "encrypted_content": fx.ENC_FINAL}]
    calls = [i for i in second["input"] if i["type"] == "function_call"]
    assert [c["call_id"] for c in calls] == [c for _, c, _ in fx.PARALLEL_CALLS]


def test_foreign_and_redacted_thinking_are_dropped() -> None:
    body = rq.tool_turn("EqQBCkYIBxgCKkDnot-a-packyd-signature")
    body["messages"][2]["content"].insert(0, {"type": "redacted_thinking", "data": "opaque"})
    up = translate(body)
    assert not [i for i in up.body["input"] if i["type"] == "reasoning"]
    assert "thinking:unreplayable" in up.dropped
    assert not [i for i in translate(rq.tool_turn(pack_signature(fx.ENC_FINAL)), include_reasoning=False).body["input"] if i["type"] == "reasoning"]


def test_long_call_ids_are_clamped_identically_on_both_sides() -> None:
    long_id = "call_" + "z" * 70
    body = rq.tool_turn(pack_signature(None))
    body["messages"][2]["content"][2]["id"] = long_id
    body["messages"][3]["content"][0]["tool_use_id"] = long_id
    items = translate(body).body["input"]
    call = next(i for i in items if i["type"] == "function_call")
    out = next(i for i in items if i["type"] == "function_call_output")
    assert call["call_id"] == out["call_id"] == clamp_call_id(long_id) and len(call["call_id"]) == 64


def test_images_documents_and_urls() -> None:
    body = rq.first_turn()
    body["messages"][0]["content"] += [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "document", "title": "spec.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": rq.PDF_B64}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {"type": "document", "title": "notes", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}},
    ]
    parts = translate(body).body["input"][1]["content"]
    assert parts[2:] == [
        {"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/AAAA"},
        {"type": "input_image", "image_url": "https://example.com/cat.png"},
        {"type": "input_file", "filename": "spec.pdf", "file_data": "data:application/pdf;base64," + rq.PDF_B64},
        {"type": "input_file", "file_url": "https://example.com/a.pdf"},
        {"type": "input_text", "text": "notes\n\nhello"},
    ]


def test_string_content_and_string_system() -> None:
    body = {"model": "gpt-5", "max_tokens": 10, "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]}
    up = translate(body)
    assert up.body["input"] == [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ]
    assert up.body["tools"] == [] and up.body["parallel_tool_calls"] is False
    assert up.body["model"] == "gpt-5"


@pytest.mark.parametrize(
    "choice, expected, parallel",
    [
        ({"type": "auto"}, "auto", True),
        ({"type": "any"}, "required", True),
        ({"type": "none"}, "none", True),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "name": "Bash"}, True),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any, parallel: bool) -> None:
    body = rq.first_turn()
    body["tool_choice"] = choice
    up = translate(body)
    assert up.body["tool_choice"] == expected
    assert up.body["parallel_tool_calls"] is parallel


def test_forced_long_tool_name_uses_the_short_name() -> None:
    body = rq.first_turn()
    body["tool_choice"] = {"type": "tool", "name": rq.LONG_MCP_TOOL}
    up = translate(body)
    assert up.body["tool_choice"] == {"type": "function", "name": up.names.upstream(rq.LONG_MCP_TOOL)}


def test_output_format_becomes_text_format() -> None:
    body = rq.first_turn()
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"], "additionalProperties": False}
    body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    body["thinking"] = {"type": "disabled"}
    up = translate(body)
    assert up.body["text"] == {"format": {"type": "json_schema", "name": "output", "schema": schema, "strict": True}}
    loose = copy.deepcopy(body)
    loose["output_config"]["format"]["schema"] = {"type": "object", "properties": {"title": {"type": "string"}}}
    assert translate(loose).body["text"]["format"]["strict"] is False


def test_web_search_server_tool_maps_to_hosted_tool() -> None:
    body = rq.first_turn()
    body["tools"].append(
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 8, "allowed_domains": ["example.com"], "blocked_domains": ["x.com"]}
    )
    up = translate(body)
    assert up.body["tools"][-1] == {"type": "web_search", "filters": {"allowed_domains": ["example.com"]}}
    assert {"web_search.blocked_domains", "web_search.max_uses"} <= set(up.dropped)


def test_unsupported_server_tools_and_mcp_servers_are_reported() -> None:
    body = rq.first_turn()
    body["tools"].append({"type": "code_execution_20250522", "name": "code_execution"})
    with pytest.raises(InvalidRequest, match=r"tools\.5\.type: .*code_execution"):
        translate(body)
    body = rq.first_turn()
    body["mcp_servers"] = [{"type": "url", "url": "https://mcp.example.com", "name": "x"}]
    with pytest.raises(InvalidRequest, match="mcp_servers"):
        translate(body)


def test_sampling_parameters_are_dropped_and_recorded() -> None:
    body = rq.first_turn(model="claude-haiku-4-5-20251001")
    body.update(temperature=1, top_p=0.9, stop_sequences=["END"], thinking={"type": "disabled"})
    up = translate(body)
    check_invariants(up.body)
    assert "temperature" in up.dropped and "stop_sequences" not in up.dropped  # emulated by the stream side
    assert "stop" not in up.body
    assert up.body["model"] == "gpt-5-codex-mini"


def test_codex_legacy_layout_uses_instructions() -> None:
    up = translate(rq.first_turn(), TranslationSettings(identity="codex-legacy"))
    body = up.body
    check_invariants(body)
    assert list(body)[:3] == ["model", "instructions", "input"]
    assert body["instructions"] == "\n\n".join(t["text"] for t in rq.SYSTEM[1:])
    assert body["input"][0]["role"] == "user"


def test_verbosity_setting() -> None:
    up = translate(rq.first_turn(), TranslationSettings(verbosity="low"))
    assert up.body["text"] == {"verbosity": "low"}


# --------------------------------------------------------------------------- session & identity


def test_extract_session_id_sources() -> None:
    meta = json.dumps({"device_id": "d", "account_uuid": "", "session_id": rq.SESSION_ID})
    assert extract_session_id({"x-claude-code-session-id": "hdr"}, meta) == "hdr"
    assert extract_session_id({}, meta) == rq.SESSION_ID
    legacy = "user_" + "a" * 64 + "_account__session_" + rq.SESSION_ID
    assert extract_session_id({}, legacy) == rq.SESSION_ID
    assert extract_session_id({}, "opaque") is None
    assert extract_session_id({}, "{not json") is None
    assert extract_session_id({}, None) is None


def test_conversation_id_without_session_is_stable_across_turns() -> None:
    a = parse_messages_request(rq.first_turn())
    b = parse_messages_request(rq.tool_turn(pack_signature(None)))
    assert conversation_id(None, a) == conversation_id(None, b)
    assert conversation_id("s1", a) != conversation_id("s2", a)


def test_identity_headers_per_profile() -> None:
    conv = "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000"
    cli = identity_headers("codex-cli", conv, "req_1", "0.1.0")
    assert cli["originator"] == "codex_exec"
    assert re.match(r"^codex_exec/\d+\.\d+\.\d+ \(.+\) \S+ \(codex_exec; \d+\.\d+\.\d+\)$", cli["user-agent"])
    assert cli["session-id"] == cli["thread-id"] == cli["x-client-request-id"] == conv
    assert not any(k.lower() == "openai-beta" for k in cli)
    assert "authorization" not in {k.lower() for k in cli}
    legacy = identity_headers("codex-legacy", conv, "req_1", "0.1.0")
    assert legacy["session_id"] == legacy["conversation_id"] == conv
    assert legacy["originator"] == "codex_cli_rs" and legacy["user-agent"].startswith("codex_cli_rs/0.58.0 (")
    plain = identity_headers("plain", conv, "req_1", "0.1.0")
    assert plain["user-agent"] == "packyd/0.1.0" and "originator" not in plain
    with pytest.raises(ValueError):
        identity_headers("custom", conv, "r", "v")
