"""A fake Anthropic-compatible upstream (Anthropic itself, or a Claude relay) for fallback tests.

It is the same real HTTP/1.1 server as :mod:`tests.support.fake_packycode` (scripted replies,
recorded requests, cuts, stalls, resets, the ``/_fake/*`` control API) — only the wire format
of the replies differs: Anthropic Messages SSE and Anthropic's error body
``{"type": "error", "error": {"type", "message"}}``. Its base URL has no ``/v1``: packyd posts
to ``{base-url}/v1/messages``, as for api.anthropic.com.

    fake = FakeAnthropic(default=anthropic_text_reply("hello from the fallback"))
    base_url = await nursery.start(fake.serve)        # "http://127.0.0.1:PORT"
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .fake_packycode import Chunk, FakePackycode, RecordedRequest, Reply, _json_reply

__all__ = [
    "FakeAnthropic",
    "anthropic_events",
    "anthropic_sse",
    "anthropic_text_reply",
    "anthropic_error_reply",
]


def anthropic_sse(events: Iterable[Mapping[str, Any]]) -> bytes:
    """Anthropic events as an SSE body: ``event: <type>`` and one compact ``data:`` line each."""
    import json

    out = []
    for event in events:
        out.append(f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'), ensure_ascii=False)}\n\n")
    return "".join(out).encode("utf-8")


def anthropic_events(text: str, *, model: str = "claude-opus-4-8", message_id: str = "msg_fake_01",
                     input_tokens: int = 12, output_tokens: int = 5) -> list[dict[str, Any]]:
    """The event sequence of a one-block text answer, as api.anthropic.com sends it."""
    half = max(1, len(text) // 2)
    return [
        {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[:half]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[half:]}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": output_tokens}},
        {"type": "message_stop"},
    ]


def anthropic_text_reply(text: str, *, per_event: bool = False, delay: float = 0.0, end: str = "finish",
                         events: list[dict[str, Any]] | None = None, **kwargs: Any) -> Reply:
    """A 200 SSE reply carrying ``events`` (default: :func:`anthropic_events` of ``text``)."""
    events = events if events is not None else anthropic_events(text, **kwargs)
    if per_event:
        chunks = tuple(Chunk(anthropic_sse([event]), delay if i else 0.0) for i, event in enumerate(events))
    else:
        chunks = (Chunk(anthropic_sse(events)),)
    return Reply(headers=(("content-type", "text/event-stream; charset=utf-8"), ("request-id", "req_fake_upstream")),
                 chunks=chunks, end=end)


def anthropic_error_reply(status: int, error_type: str, message: str,
                          headers: Iterable[tuple[str, str]] = ()) -> Reply:
    """Anthropic's error body with ``status``."""
    return _json_reply(status, {"type": "error", "error": {"type": error_type, "message": message}}, headers)


class FakeAnthropic(FakePackycode):
    """The fake server answering ``POST /v1/messages``; see the module docstring."""

    @property
    def url(self) -> str:
        assert self.port is not None, "the fake is not serving yet"
        return f"http://127.0.0.1:{self.port}"

    @property
    def upstream_requests(self) -> list[RecordedRequest]:
        """Requests to ``/v1/messages`` only."""
        return [r for r in self.requests if r.path.split("?")[0].endswith("/v1/messages")]

