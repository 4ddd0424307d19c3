"""Stream translation: Responses events → a valid Anthropic event sequence."""

from __future__ import annotations

import json
import timeit
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event

from packyd.errors import ApiError, InvalidRequest, Overloaded, PackydError, RateLimited
from packyd.sse import SSEParser, encode_events
from packyd.translate.aggregate import Aggregator, aggregate
from packyd.translate.errors import is_retryable
from packyd.translate.reasoning import pack_signature, unpack_signature
from packyd.translate.stream import StreamTranslator
from packyd.translate.tools import NameMap, clamp_call_id
from tests.fixtures import streams as fx

Event = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def check_grammar(events: list[Event], *, terminated: bool = True) -> None:
    """Anthropic's stream grammar (anthropic-messages.md §14-15), strictly."""
    assert events and events[0]["type"] == "message_start"
    assert events[0]["message"]["content"] == [] and events[0]["message"]["stop_reason"] is None
    open_idx: int | None = None
    open_type = ""
    next_idx = 0
    last_delta = ""
    state = "blocks"
    for ev in events[1:]:
        t = ev["type"]
        assert state != "stopped", f"event after message_stop: {t}"
        if t == "content_block_start":
            assert state == "blocks"
            assert open_idx is None, "a block was started while another one is open"
            assert ev["index"] == next_idx, "indices must be 0,1,2,..."
            open_idx, open_type = ev["index"], ev["content_block"]["type"]
            if open_type == "tool_use":
                assert ev["content_block"]["input"] == {}
            if open_type == "thinking":
                assert ev["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
            last_delta = ""
        elif t == "content_block_delta":
            assert ev["index"] == open_idx
            d = ev["delta"]["type"]
            allowed = {
                "text": {"text_delta", "citations_delta"},
                "thinking": {"thinking_delta", "signature_delta"},
                "tool_use": {"input_json_delta"},
                "server_tool_use": {"input_json_delta"},
            }[open_type]
            assert d in allowed, (open_type, d)
            if open_type == "thinking" and d == "thinking_delta":
                assert last_delta != "signature_delta", "thinking_delta after the signature"
            last_delta = d
        elif t == "content_block_stop":
            assert ev["index"] == open_idx
            if open_type == "thinking":
                assert last_delta == "signature_delta", "signature must come right before the stop"
            open_idx = None
            next_idx += 1
        elif t == "message_delta":
            assert open_idx is None
            state = "delta"
        elif t == "message_stop":
            assert state == "delta"
            state = "stopped"
        else:
            assert t == "ping", t
    if terminated:
        assert state == "stopped"


def run(events: list[Event], **kw: Any) -> tuple[list[Event], StreamTranslator]:
    t = StreamTranslator(requested_model=kw.pop("model", "claude-opus-4-8"), input_estimate=kw.pop("estimate", 777), **kw)
    out: list[Event] = []
    for e in events:
        out.extend(t.feed(e))
    out.extend(t.finish())
    return out, t


def sdk_message(events: list[Event]) -> Any:
    """The official SDK's own accumulator over our events (raises on malformed sequences)."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for e in events:
        snapshot = accumulate_event(event=e, current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


def assert_same_as_sdk(events: list[Event]) -> dict[str, Any]:
    ours = aggregate(events)
    theirs = sdk_message(events).to_dict(mode="json", exclude_unset=False)
    for i, block in enumerate(ours["content"]):
        for key, value in block.items():
            assert theirs["content"][i].get(key) == value, (i, key)
    for key in ("id", "model", "role", "stop_reason", "stop_sequence"):
        assert theirs[key] == ours[key]
    for key, value in ours["usage"].items():
        assert theirs["usage"][key] == value
    return ours


# --------------------------------------------------------------------------- scenarios


def test_plain_text() -> None:
    events, t = run(fx.text_stream("Hello there! How can I help?", 6))
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert msg["model"] == "claude-opus-4-8"  # the client's name, never the upstream one
    assert msg["id"].startswith("msg_")
    assert msg["content"] == [{"type": "text", "text": "Hello there! How can I help?"}]
    assert msg["stop_reason"] == "end_turn"
    assert events[0]["message"]["usage"]["input_tokens"] == 777
    assert msg["usage"] == {
        "input_tokens": 1234 - 1024,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1024,
        "output_tokens": 56,
    }
    assert t.done and t.content_emitted and t.upstream_model == "gpt-5-codex"


def test_reasoning_summary_then_text() -> None:
    events, _ = run(fx.reasoning_text_stream())
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    thinking, text = msg["content"]
    assert thinking["type"] == "thinking"
    assert thinking["thinking"] == "\n\n".join(fx.REASONING_PARTS)
    # the final blob from output_item.done, never the stale one from added
    assert thinking["signature"] == pack_signature(fx.ENC_FINAL)
    assert unpack_signature(thinking["signature"]) == fx.ENC_FINAL
    assert text == {"type": "text", "text": "Here are the files."}
    # signature_delta is the last delta of the block
    sig_pos = next(i for i, e in enumerate(events) if e.get("delta", {}).get("type") == "signature_delta")
    assert events[sig_pos + 1] == {"type": "content_block_stop", "index": 0}


def test_reasoning_without_summary_still_carries_the_blob() -> None:
    events, _ = run(fx.reasoning_text_stream(parts=[]))
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert msg["content"][0] == {"type": "thinking", "thinking": "", "signature": pack_signature(fx.ENC_FINAL)}


def test_reasoning_without_summary_or_blob_emits_nothing() -> None:
    events, _ = run(fx.reasoning_text_stream(parts=[], enc_added=None, enc_done=None))
    check_grammar(events)
    assert [b["type"] for b in aggregate(events)["content"]] == ["text"]


def test_parallel_function_calls_with_split_arguments() -> None:
    events, _ = run(fx.parallel_calls_stream(pieces=15))
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert msg["stop_reason"] == "tool_use"
    blocks = msg["content"]
    assert [b["type"] for b in blocks] == ["thinking", "tool_use", "tool_use"]
    for block, (name, call_id, args) in zip(blocks[1:], fx.PARALLEL_CALLS):
        assert block == {"type": "tool_use", "id": call_id, "name": name, "input": json.loads(args)}
    json_deltas = [e for e in events if e.get("delta", {}).get("type") == "input_json_delta"]
    assert len(json_deltas) >= 20


def test_long_tool_name_is_restored_and_long_call_id_clamped() -> None:
    long_name = "mcp__plugin_chrome-devtools-mcp_chrome-devtools__performance_analyze_insight"
    names = NameMap([long_name, "Bash"])
    short = names.upstream(long_name)
    assert short != long_name and len(short) <= 64
    call_id = "call_" + "x" * 64  # 69 chars, as the ChatGPT backend can send
    stream = fx.parallel_calls_stream(calls=[(short, call_id, '{"insightName":"LCP"}')], with_reasoning=False)
    events, _ = run(stream, names=names)
    check_grammar(events)
    block = aggregate(events)["content"][0]
    assert block["name"] == long_name
    assert block["id"] == clamp_call_id(call_id) and len(block["id"]) == 64


def test_arguments_only_in_done_events() -> None:
    seq = fx.parallel_calls_stream(with_reasoning=False)
    no_deltas = [e for e in seq if e["type"] != "response.function_call_arguments.delta"]
    events, _ = run(no_deltas)
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert [b["input"] for b in msg["content"]] == [json.loads(a) for _, _, a in fx.PARALLEL_CALLS]


def test_trimmed_text_deltas_are_completed_from_done() -> None:
    evs = fx.text_stream("Hello there, this is the full text.", 5)
    trimmed = [e for e in evs if not (e["type"] == "response.output_text.delta" and e["sequence_number"] > 4)]
    events, _ = run(trimmed)
    check_grammar(events)
    assert aggregate(events)["content"][0]["text"] == "Hello there, this is the full text."


def test_minimal_stream_of_done_events_only() -> None:
    full = fx.reasoning_text_stream()
    minimal = [e for e in full if e["type"] in ("response.output_item.done", "response.completed")]
    events, _ = run(minimal)
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert [b["type"] for b in msg["content"]] == ["thinking", "text"]
    assert msg["content"][0]["signature"] == pack_signature(fx.ENC_FINAL)


def test_output_only_in_completed_response() -> None:
    done = [e["item"] for e in fx.text_stream("From the terminal event.") if e["type"] == "response.output_item.done"]
    term = fx.text_stream()[-1]
    term = json.loads(json.dumps(term))
    term["response"]["output"] = done
    events, _ = run([term])
    check_grammar(events)
    assert aggregate(events)["content"] == [{"type": "text", "text": "From the terminal event."}]


def test_item_ids_rotating_on_every_event() -> None:
    evs = fx.reasoning_text_stream()
    for n, e in enumerate(evs):
        if "item_id" in e:
            e["item_id"] = f"capture-id-{n}"
    events, _ = run(evs)
    check_grammar(events)
    assert [b["type"] for b in aggregate(events)["content"]] == ["thinking", "text"]


def test_interleaved_items_are_serialized() -> None:
    """Deltas of item 1 arriving while item 0 is still open wait for item 0's block to close."""
    calls = fx.parallel_calls_stream(with_reasoning=False, pieces=4)
    head = calls[:2]
    a = [e for e in calls if e.get("output_index") == 0]
    b = [e for e in calls if e.get("output_index") == 1]
    tail = [calls[-1]]
    mixed: list[Event] = []
    for i in range(max(len(a), len(b))):
        mixed += a[i : i + 1] + b[i : i + 1]
    events, _ = run(head + mixed + tail)
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert [b["input"] for b in msg["content"]] == [json.loads(x) for _, _, x in fx.PARALLEL_CALLS]


def test_phase_messages_become_two_text_blocks() -> None:
    seq = fx._Seq()
    evs = [
        *fx._head(seq, "resp_ph", "gpt-5.3-codex"),
        *fx._message_item(seq, 0, "msg_a", "Checking sources.", 2, phase="commentary"),
        *fx._message_item(seq, 2, "msg_b", "Here is the answer.", 3, phase="final_answer"),
        fx._completed(seq, "resp_ph", "gpt-5.3-codex", fx.usage()),
    ]
    events, _ = run(evs)
    check_grammar(events)
    assert [b["text"] for b in aggregate(events)["content"]] == ["Checking sources.", "Here is the answer."]


def test_unknown_items_and_events_are_ignored() -> None:
    evs = fx.text_stream("ok", 1)
    extra = [
        {"type": "response.output_item.added", "output_index": 1, "item": {"type": "compaction", "id": "cmp_1", "encrypted_content": "x"}},
        {"type": "response.output_item.done", "output_index": 1, "item": {"type": "compaction", "id": "cmp_1", "encrypted_content": "y"}},
        {"type": "codex.rate_limits", "rate_limits": {}},
        {"type": "response.output_text.annotation.added", "output_index": 0, "annotation": {}},
    ]
    events, _ = run(evs[:-1] + extra + evs[-1:])
    check_grammar(events)
    assert aggregate(events)["content"] == [{"type": "text", "text": "ok"}]


def test_web_search_call_becomes_server_tool_blocks() -> None:
    seq = fx._Seq()
    ws = {
        "id": "ws_1",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "packyd", "sources": [{"type": "url", "url": "https://example.com/a"}]},
    }
    evs = [
        *fx._head(seq, "resp_ws", "gpt-5"),
        seq({"type": "response.output_item.added", "output_index": 0, "item": {"id": "ws_1", "type": "web_search_call", "status": "in_progress"}}),
        seq({"type": "response.web_search_call.searching", "output_index": 0, "item_id": "ws_1"}),
        seq({"type": "response.output_item.done", "output_index": 0, "item": ws}),
        *fx._message_item(seq, 1, "msg_ws", "Found it.", 2),
        fx._completed(seq, "resp_ws", "gpt-5", fx.usage()),
    ]
    events, _ = run(evs)
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert [b["type"] for b in msg["content"]] == ["server_tool_use", "web_search_tool_result", "text"]
    assert msg["content"][0]["input"] == {"query": "packyd"}
    assert msg["content"][1]["content"][0]["url"] == "https://example.com/a"
    assert msg["stop_reason"] == "end_turn"


def test_refusal_part_gives_refusal_stop_reason() -> None:
    seq = fx._Seq()
    evs = [
        *fx._head(seq, "resp_rf", "gpt-5"),
        seq({"type": "response.output_item.added", "output_index": 0, "item": {"id": "m", "type": "message", "content": [], "role": "assistant"}}),
        seq({"type": "response.refusal.delta", "output_index": 0, "item_id": "m", "content_index": 0, "delta": "I can't help"}),
        seq({"type": "response.output_item.done", "output_index": 0, "item": {"id": "m", "type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}}),
        fx._completed(seq, "resp_rf", "gpt-5", fx.usage()),
    ]
    events, _ = run(evs)
    check_grammar(events)
    msg = aggregate(events)
    assert msg["stop_reason"] == "refusal"
    assert msg["content"][0]["text"] == "I can't help with that."


# --------------------------------------------------------------------------- endings


def test_incomplete_max_output_tokens() -> None:
    events, t = run(fx.incomplete_stream("max_output_tokens"))
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert msg["stop_reason"] == "max_tokens"
    assert msg["content"] == [{"type": "text", "text": "This answer will be cut sh"}]
    assert msg["usage"]["output_tokens"] == 128 and t.done


def test_incomplete_content_filter_is_a_refusal() -> None:
    events, _ = run(fx.incomplete_stream("content_filter"))
    check_grammar(events)
    assert aggregate(events)["stop_reason"] == "refusal"


def test_incomplete_inside_reasoning_closes_with_a_packyd_signature() -> None:
    evs = fx.reasoning_text_stream()
    cut_at = next(i for i, e in enumerate(evs) if e["type"] == "response.reasoning_summary_text.done")
    term = {"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "usage": fx.usage()}}
    events, _ = run(evs[:cut_at] + [term])
    check_grammar(events)
    assert aggregate(events)["content"][0]["signature"] == pack_signature(None)


def test_response_failed_after_content_leaves_the_block_open() -> None:
    t = StreamTranslator(requested_model="claude-opus-4-8", input_estimate=10)
    out: list[Event] = []
    with pytest.raises(PackydError) as info:
        for e in fx.failed_stream("server_error"):
            out.extend(t.feed(e))
    err = info.value
    assert isinstance(err, ApiError) and is_retryable(err)
    assert t.content_emitted and not t.done
    check_grammar(out, terminated=False)
    # the interrupted block is still open: no stop was emitted for it
    assert out[-1]["type"] == "content_block_delta"
    assert err.body()["error"]["type"] == "api_error"


def test_failure_before_content_lets_the_caller_retry() -> None:
    t = StreamTranslator(requested_model="m")
    out: list[Event] = []
    with pytest.raises(Overloaded):
        for e in fx.failed_stream("server_is_overloaded", "The server is overloaded", after_text=False):
            out.extend(t.feed(e))
    assert not t.content_emitted
    assert [e["type"] for e in out] == ["message_start"]


@pytest.mark.parametrize(
    "events, cls, fragment",
    [
        (fx.nested_error_stream(), RateLimited, "quota"),
        (fx.flat_error_stream(), ApiError, "Sorry, something went wrong"),
        (fx.failed_stream("context_length_exceeded", "Your input exceeds the context window of this model."), InvalidRequest, "prompt is too long"),
        (fx.failed_stream("rate_limit_exceeded", "Rate limit reached for gpt-5. Please try again in 11.054s."), RateLimited, "rate limit"),
    ],
)
def test_stream_errors_are_classified(events: list[Event], cls: type, fragment: str) -> None:
    t = StreamTranslator(requested_model="m")
    with pytest.raises(cls) as info:
        for e in events:
            t.feed(e)
    assert fragment in info.value.message
    assert not t.done


def test_first_event_error_does_not_claim_message_start() -> None:
    t = StreamTranslator(requested_model="m")
    with pytest.raises(ApiError):
        t.feed(fx.flat_error_stream()[0])
    assert not t.message_started


def test_cut_stream_raises_at_finish() -> None:
    t = StreamTranslator(requested_model="m")
    out: list[Event] = []
    for e in fx.cut_stream():
        out.extend(t.feed(e))
    assert t.content_emitted
    with pytest.raises(ApiError) as info:
        t.finish()
    assert is_retryable(info.value)
    check_grammar(out, terminated=False)


def test_events_after_terminal_are_ignored_and_finish_is_quiet() -> None:
    evs = fx.text_stream("x", 1)
    events, t = run(evs + evs)
    check_grammar(events)
    assert t.finish() == []


# --------------------------------------------------------------------------- SSE end to end


def test_sse_bytes_split_at_every_boundary() -> None:
    raw = fx.to_sse(fx.reasoning_text_stream(), crlf=True) + b"data: [DONE]\n\n"
    expected, _ = run(fx.reasoning_text_stream(), message_id="msg_fixed")
    step = 1
    for cut in range(0, len(raw) + 1, step):
        parser = SSEParser()
        t = StreamTranslator(requested_model="claude-opus-4-8", input_estimate=777, message_id="msg_fixed")
        out: list[Event] = []
        for chunk in (raw[:cut], raw[cut:]):
            for ev in parser.feed(chunk):
                out.extend(t.feed_sse(ev))
        for ev in parser.close():
            out.extend(t.feed_sse(ev))
        out.extend(t.finish())
        assert out == expected, cut


def test_translated_events_encode_to_sse_the_sdk_can_read() -> None:
    events, _ = run(fx.parallel_calls_stream())
    raw = encode_events(events)
    parsed = SSEParser().feed(raw)
    assert [p.event for p in parsed] == [e["type"] for e in events]
    assert [json.loads(p.data) for p in parsed] == events


def test_malformed_event_data_is_an_error() -> None:
    from packyd.sse import SSEEvent

    t = StreamTranslator(requested_model="m")
    with pytest.raises(ApiError):
        t.feed_sse(SSEEvent("response.created", "{not json"))


def test_event_type_taken_from_event_line_when_json_lacks_it() -> None:
    from packyd.sse import SSEEvent

    t = StreamTranslator(requested_model="m")
    out = t.feed_sse(SSEEvent("response.created", '{"response":{"id":"r","model":"gpt-5"}}'))
    assert out[0]["type"] == "message_start" and t.upstream_model == "gpt-5"


# --------------------------------------------------------------------------- aggregation


def test_non_streaming_aggregate_equals_streamed_content() -> None:
    events, _ = run(fx.parallel_calls_stream())
    agg = Aggregator()
    for i in range(0, len(events), 3):
        agg.add(events[i : i + 3])
    assert agg.complete
    msg = agg.message()
    assert msg == aggregate(events)
    from anthropic.types import Message

    Message.model_validate(msg)  # the SDK's own model accepts it


def test_aggregate_of_a_cut_stream_keeps_partial_blocks() -> None:
    t = StreamTranslator(requested_model="m")
    out: list[Event] = []
    for e in fx.cut_stream():
        out.extend(t.feed(e))
    agg = Aggregator()
    agg.add(out)
    assert not agg.complete
    assert agg.message()["content"][0]["type"] == "text"


def test_per_event_translation_cost() -> None:
    """Budget: ≤ 10 µs of CPU per upstream event (parse + translate + encode)."""
    text = "word " * 4000
    evs = fx.text_stream(text, 4000)
    raw = fx.to_sse(evs)

    def once() -> None:
        parser = SSEParser()
        t = StreamTranslator(requested_model="m")
        for ev in parser.feed(raw):
            encode_events(t.feed_sse(ev))

    best = min(timeit.repeat(once, number=1, repeat=5))
    per_event = best / len(evs) * 1e6
    print(f"per-event cost: {per_event:.2f} µs over {len(evs)} events")
    assert per_event < 10 * 3  # generous for shared CI cores; the measured figure is reported


# --------------------------------------------------------------------------- stop sequences (emulated)


@pytest.mark.parametrize(
    "text, pieces, stops, expected, seq",
    [
        ("alpha beta END gamma", 1, ("END",), "alpha beta ", "END"),
        ("alpha beta END gamma", 20, ("END",), "alpha beta ", "END"),  # split across deltas
        ("one two three", 13, ("XYZ", "two"), "one ", "two"),
        ("no match here at all", 7, ("STOP",), "no match here at all", None),
        ("ends with STO", 13, ("STOP",), "ends with STO", None),  # a held prefix is released at done
    ],
)
def test_stop_sequences_are_emulated(text: str, pieces: int, stops: tuple[str, ...], expected: str, seq: str | None) -> None:
    events, t = run(fx.text_stream(text, pieces), stop_sequences=stops)
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    assert msg["content"] == [{"type": "text", "text": expected}]
    assert msg["stop_reason"] == ("stop_sequence" if seq else "end_turn")
    assert msg["stop_sequence"] == seq and t.stop_sequence == seq
    assert t.done


def test_stop_sequence_found_only_in_the_done_text() -> None:
    evs = fx.text_stream("Hello there. STOP and more", 5)
    trimmed = [e for e in evs if not (e["type"] == "response.output_text.delta" and e["sequence_number"] > 3)]
    events, _ = run(trimmed, stop_sequences=["STOP"])
    check_grammar(events)
    assert aggregate(events)["content"][0]["text"] == "Hello there. "


def test_stop_sequence_ends_the_message_before_later_items() -> None:
    seq = fx._Seq()
    evs = [
        *fx._head(seq, "r", "gpt-5"),
        *fx._message_item(seq, 0, "m1", "first part ### second", 6),
        *fx._call_item(seq, 1, "fc", "call_1", "Bash", '{"command":"ls"}', 3),
        fx._completed(seq, "r", "gpt-5", fx.usage()),
    ]
    events, t = run(evs, stop_sequences=["###"])
    check_grammar(events)
    msg = aggregate(events)
    assert msg["content"] == [{"type": "text", "text": "first part "}]
    assert msg["stop_reason"] == "stop_sequence" and t.done


def test_incomplete_stream_releases_held_text() -> None:
    events, _ = run(fx.incomplete_stream(text="cut off at the e"), stop_sequences=["end"])
    check_grammar(events)
    msg = aggregate(events)
    assert msg["content"][0]["text"] == "cut off at the e" and msg["stop_reason"] == "max_tokens"


# --------------------------------------------------------------------------- property: any interleaving


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _interleavings_source() -> tuple[list[Event], list[list[Event]], Event]:
    seq = fx._Seq()
    head = fx._head(seq, "resp_x", "gpt-5")
    items = [
        fx._reasoning_item(seq, 0, "rs_x", ["think a", "think b"], 3, fx.ENC_STALE, fx.ENC_FINAL),
        fx._message_item(seq, 1, "msg_x", "some text here", 4),
        fx._call_item(seq, 2, "fc_a", "call_a", "Bash", '{"command":"ls"}', 4),
        fx._call_item(seq, 3, "fc_b", "call_b", "Read", '{"file_path":"/x"}', 4),
    ]
    return head, items, fx._completed(seq, "resp_x", "gpt-5", fx.usage())


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_interleaving_of_items_gives_a_valid_stream(data: st.DataObject) -> None:
    head, items, term = _interleavings_source()
    queues = [list(i) for i in items]
    merged: list[Event] = []
    while any(queues):
        choice = data.draw(st.sampled_from([n for n, q in enumerate(queues) if q]))
        merged.append(queues[choice].pop(0))
    events, _ = run(head + merged + [term])
    check_grammar(events)
    msg = assert_same_as_sdk(events)
    by_type: dict[str, list[Any]] = {}
    for b in msg["content"]:
        by_type.setdefault(b["type"], []).append(b)
    assert by_type["thinking"] == [{"type": "thinking", "thinking": "think a\n\nthink b", "signature": pack_signature(fx.ENC_FINAL)}]
    assert by_type["text"] == [{"type": "text", "text": "some text here"}]
    assert sorted((b["name"], json.dumps(b["input"])) for b in by_type["tool_use"]) == [
        ("Bash", '{"command": "ls"}'),
        ("Read", '{"file_path": "/x"}'),
    ]
    assert msg["stop_reason"] == "tool_use"


def test_wrongly_shaped_fields_are_a_malformed_event_not_a_crash() -> None:
    """Upstream garbage inside valid JSON (a numeric call_id, an object as a text delta) is
    reported like any malformed event: typed, retryable before content, content-free."""
    from packyd.errors import ApiError
    from packyd.translate.errors import is_retryable
    from packyd.translate.stream import StreamTranslator

    bad_call = {"type": "response.output_item.added", "output_index": 0,
                "item": {"type": "function_call", "id": "fc_1", "call_id": 12345, "name": 7, "arguments": ""}}
    bad_delta = {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
                 "item_id": "msg_1", "delta": {"not": "text"}}
    for payload in (bad_call, bad_delta):
        translator = StreamTranslator(requested_model="claude-opus-4-8")
        with pytest.raises(ApiError, match="malformed stream event") as caught:
            translator.feed(payload)
        assert is_retryable(caught.value)
        assert not translator.message_started
