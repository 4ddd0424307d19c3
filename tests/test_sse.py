"""SSE parser and encoder: framing edge cases and chunking invariance."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from packyd.sse import SSEEvent, SSEParser, encode, encode_comment, encode_events


def parse_all(chunks: list[bytes]) -> list[SSEEvent]:
    p = SSEParser()
    out: list[SSEEvent] = []
    for c in chunks:
        out.extend(p.feed(c))
    out.extend(p.close())
    return out


def test_basic_frames_and_fields() -> None:
    raw = b"event: a\ndata: {\"x\":1}\nid: 7\nretry: 1500\n\nevent: b\ndata: two\n\n"
    evs = parse_all([raw])
    assert evs == [SSEEvent("a", '{"x":1}', "7", 1500), SSEEvent("b", "two", "7", None)]


def test_crlf_cr_and_lf_line_endings_are_equivalent() -> None:
    lf = b"event: e\ndata: 1\n\ndata: 2\n\n"
    assert parse_all([lf.replace(b"\n", b"\r\n")]) == parse_all([lf])
    assert parse_all([lf.replace(b"\n", b"\r")]) == parse_all([lf])
    assert [e.data for e in parse_all([lf])] == ["1", "2"]


def test_crlf_split_between_chunks_does_not_create_an_empty_line() -> None:
    # "data: a\r" | "\ndata: b\r\n\r\n" must be one event "a\nb", not two events.
    evs = parse_all([b"data: a\r", b"\ndata: b\r\n\r\n"])
    assert evs == [SSEEvent(None, "a\nb")]


def test_comments_multiline_data_and_no_space_after_colon() -> None:
    raw = b": keep-alive\n\nevent:x\ndata:line1\ndata: line2\ndata\n\n"
    evs = parse_all([raw])
    assert evs == [SSEEvent("x", "line1\nline2\n")]


def test_unknown_fields_ignored_and_bad_retry_ignored() -> None:
    evs = parse_all([b"foo: bar\nretry: soon\ndata: d\n\n"])
    assert evs == [SSEEvent(None, "d", None, None)]


def test_event_without_data_is_not_dispatched() -> None:
    assert parse_all([b"event: lonely\n\n"]) == []


def test_no_trailing_blank_line_is_flushed_by_close() -> None:
    p = SSEParser()
    assert p.feed(b"event: last\ndata: {}") == []
    assert p.close() == [SSEEvent("last", "{}")]


def test_done_sentinel_dropped_unless_asked() -> None:
    raw = b"data: {\"a\":1}\n\ndata: [DONE]\n\n"
    assert [e.data for e in parse_all([raw])] == ['{"a":1}']
    p = SSEParser(keep_done=True)
    assert [e.data for e in p.feed(raw)] == ['{"a":1}', "[DONE]"]


def test_split_inside_utf8_character() -> None:
    raw = "event: t\ndata: {\"t\":\"héllo – 你好 🎉\"}\n\n".encode()
    for i in range(len(raw) + 1):
        evs = parse_all([raw[:i], raw[i:]])
        assert evs == [SSEEvent("t", '{"t":"héllo – 你好 🎉"}')], i


def test_u2028_inside_data_is_not_a_line_break() -> None:
    raw = 'data: {"t":"a\u2028b\u0085c"}\n\n'.encode()
    assert parse_all([raw])[0].data == '{"t":"a\u2028b\u0085c"}'


STREAM = (
    b"event: response.created\r\ndata: {\"type\":\"response.created\"}\r\n\r\n"
    b": ping\n\n"
    b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"caf\xc3\xa9 \xf0\x9f\x8e\x89\"}\n\n"
    b"data: {\"type\":\"no-event-line\"}\r\r"
    b"event: multi\ndata: part1\ndata: part2\nid: 42\n\n"
    b"data: [DONE]\n\n"
    b"event: response.completed\ndata: {\"type\":\"response.completed\"}"
)


def test_every_byte_boundary_split_gives_the_same_events() -> None:
    whole = parse_all([STREAM])
    assert len(whole) == 5
    for i in range(len(STREAM) + 1):
        assert parse_all([STREAM[:i], STREAM[i:]]) == whole, i
    assert parse_all([bytes([b]) for b in STREAM]) == whole


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_chunking_gives_the_same_events(data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(STREAM)), max_size=40)))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
    assert parse_all(chunks) == parse_all([STREAM])


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b.c", "message_start"]), texts), max_size=8), st.data())
def test_encoded_events_round_trip_through_the_parser(evs: list[tuple[str, str]], data: st.DataObject) -> None:
    payloads = [{"type": name, "text": t} for name, t in evs]
    raw = encode_events(payloads)
    assert raw == b"".join(encode(p["type"], p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    parsed = parse_all(chunks)
    assert [(e.event, json.loads(e.data)) for e in parsed] == [(p["type"], p) for p in payloads]


def test_encoder_is_compact_and_keeps_unicode() -> None:
    frame = encode("ping", {"type": "ping", "t": "é"})
    assert frame == 'event: ping\ndata: {"type":"ping","t":"é"}\n\n'.encode()
    assert encode_comment("a\nb") == b":a b\n\n"
    assert parse_all([encode_comment("x")]) == []
