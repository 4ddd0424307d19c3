"""Anthropic stream events → one non-streaming Message, with the same content as the stream.

Non-streaming requests run the same state machine as streaming ones (the upstream only
streams anyway), so both answers always agree; this fold is the only difference.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Aggregator", "aggregate"]


class Aggregator:
    """Feed it the translator's output as it comes (``add``), then take ``message()``.

    Keeping only the growing message (not every event) bounds memory by the answer's size.
    """

    __slots__ = ("_message", "_json", "_text", "_stopped")

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._json: dict[int, list[str]] = {}
        self._text: dict[int, list[str]] = {}
        self._stopped = False

    def add(self, events: Iterable[Mapping[str, Any]]) -> None:
        for ev in events:
            self._add(ev)

    def _add(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "message_start":
            self._message = copy.deepcopy(dict(ev["message"]))
            self._message["content"] = []
            return
        msg = self._message
        if msg is None:
            raise ValueError(f"{kind} before message_start")
        if kind == "content_block_delta":
            idx = ev["index"]
            delta = ev["delta"]
            dtype = delta.get("type")
            if dtype == "text_delta":
                self._text.setdefault(idx, []).append(delta["text"])
            elif dtype == "thinking_delta":
                self._text.setdefault(idx, []).append(delta["thinking"])
            elif dtype == "input_json_delta":
                self._json.setdefault(idx, []).append(delta["partial_json"])
            elif dtype == "signature_delta":
                msg["content"][idx]["signature"] = delta["signature"]
        elif kind == "content_block_start":
            if ev["index"] != len(msg["content"]):
                raise ValueError("content block index out of order")
            msg["content"].append(copy.deepcopy(dict(ev["content_block"])))
        elif kind == "content_block_stop":
            self._finish_block(ev["index"])
        elif kind == "message_delta":
            delta = ev.get("delta") or {}
            msg["stop_reason"] = delta.get("stop_reason")
            msg["stop_sequence"] = delta.get("stop_sequence")
            usage = ev.get("usage")
            if isinstance(usage, Mapping):
                msg["usage"] = {**msg.get("usage", {}), **usage}
        elif kind == "message_stop":
            self._stopped = True

    def _finish_block(self, idx: int) -> None:
        assert self._message is not None
        block = self._message["content"][idx]
        pieces = self._text.pop(idx, None)
        if pieces is not None:
            key = "thinking" if block.get("type") == "thinking" else "text"
            block[key] = block.get(key, "") + "".join(pieces)
        raw = self._json.pop(idx, None)
        if raw is not None:
            text = "".join(raw)
            if text:
                try:
                    value = json.loads(text)
                except ValueError:
                    value = {}
                # Anthropic's input is always an object; anything else cannot be executed
                block["input"] = value if isinstance(value, dict) else {}

    @property
    def complete(self) -> bool:
        return self._stopped

    def message(self) -> dict[str, Any]:
        """The Message JSON. Blocks left open (a cut stream) are finished as they are."""
        if self._message is None:
            raise ValueError("no message_start seen")
        for idx in list(self._text) + list(self._json):
            if idx < len(self._message["content"]):
                self._finish_block(idx)
        return self._message


def aggregate(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    agg = Aggregator()
    agg.add(events)
    return agg.message()
