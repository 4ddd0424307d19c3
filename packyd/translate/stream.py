"""Responses stream events → Anthropic stream events: a pure state machine.

Contract (for the provider):

* ``feed(payload)`` takes one decoded upstream event (``feed_sse`` takes an ``SSEEvent``) and
  returns the Anthropic events it produces, in order, as dicts (event name = ``["type"]``).
  The first call returns ``message_start`` first.
* ``finish()`` is called at upstream EOF: it returns nothing when a terminal event was seen,
  and raises the classified ``PackydError`` when the stream was cut.
* ``response.failed`` and ``error`` events raise the classified ``PackydError`` from ``feed``.
  Nothing of that event has been emitted, and the currently open block is deliberately left
  open: the caller sends ``error.body()`` as an SSE ``error`` event at once (Claude Code then
  retries the turn without streaming; a block closed before the error makes it give up).
* ``content_emitted`` turns true with the first ``content_block_start``; until then the caller
  may retry upstream (with a fresh translator) without the client noticing.

Rules it keeps (anthropic-messages.md §14-15): blocks are indexed 0, 1, 2… in emission order,
exactly one block is open at a time (events of a later upstream item that arrive while another
item's block is open are deferred until that item is done), a thinking block's signature is
sent just before its ``content_block_stop`` and packs the item's final ``encrypted_content``
(only ``output_item.done`` carries the valid one), a tool call starts with ``input: {}`` and
the name/call id of ``output_item.added``, and content that arrives only in ``.done`` events
(terse relays, trimmed deltas) is reconciled there. Items are tracked by ``output_index``
because some relays rotate ``item_id`` on every event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Final

from packyd.errors import ApiError, PackydError
from packyd.sse import SSEEvent
from packyd.translate.errors import classify_stream_error, stream_cut_error
from packyd.translate.reasoning import pack_signature
from packyd.translate.tools import NameMap, clamp_call_id

__all__ = ["StreamTranslator", "new_message_id"]

_THINKING: Final = 1
_TEXT: Final = 2
_TOOL: Final = 3
_OTHER: Final = 4


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


class _Item:
    """Per upstream output item: what kind it is and what has been emitted for it."""

    __slots__ = ("kind", "block", "parts", "summary_index", "name", "call_id", "done", "args_done", "refusal", "hold")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.block = -1  # Anthropic index while its block is open / after it was emitted
        self.parts: list[str] = []  # emitted text/arguments, for reconciliation at done
        self.summary_index = -1
        self.name: str | None = None
        self.call_id: str | None = None
        self.done = False
        self.args_done: str | None = None
        self.refusal = False
        self.hold = ""  # text withheld while it could still be the start of a stop sequence


_KINDS = {"reasoning": _THINKING, "message": _TEXT, "function_call": _TOOL}


class StreamTranslator:
    __slots__ = (
        "requested_model",
        "names",
        "input_estimate",
        "message_id",
        "provider",
        "context_window",
        "_index",
        "_open",
        "_open_item",
        "_items",
        "_deferred",
        "_started",
        "_terminal",
        "_tool_used",
        "_refused",
        "_handlers",
        "content_emitted",
        "upstream_model",
        "response_id",
        "usage",
        "stop_reason",
        "stop_sequence",
        "_stops",
        "_stop_keep",
    )

    def __init__(
        self,
        *,
        requested_model: str,
        names: NameMap | None = None,
        input_estimate: int = 0,
        message_id: str | None = None,
        provider: str = "Packycode",
        context_window: int | None = None,
        stop_sequences: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.requested_model = requested_model
        self.names = names if names is not None else NameMap()
        self.input_estimate = input_estimate
        self.message_id = message_id or new_message_id()
        self.provider = provider
        self.context_window = context_window
        self._index = 0
        self._open: _Item | None = None
        self._open_item = -1  # output_index owning the open block
        self._items: dict[int, _Item] = {}
        self._deferred: list[Mapping[str, Any]] = []
        self._started = False
        self._terminal = False
        self._tool_used = False
        self._refused = False
        self.content_emitted = False
        self.upstream_model: str | None = None
        self.response_id: str | None = None
        self.usage: dict[str, int] | None = None
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        # Responses has no stop sequences (relays reject ``stop``): they are emulated here by
        # holding back the last len(longest)-1 characters of text until they cannot start one.
        self._stops = tuple(x for x in stop_sequences if x)
        self._stop_keep = max((len(x) for x in self._stops), default=1) - 1
        self._handlers = {
            "response.output_text.delta": self._text_delta,
            "response.function_call_arguments.delta": self._args_delta,
            "response.reasoning_summary_text.delta": self._summary_delta,
            "response.reasoning_text.delta": self._summary_delta,
            "response.refusal.delta": self._refusal_delta,
            "response.output_item.added": self._item_added,
            "response.output_item.done": self._item_done,
            "response.function_call_arguments.done": self._args_done,
            "response.reasoning_summary_part.added": self._summary_part,
            "response.created": self._created,
            "response.in_progress": self._created,
            "response.completed": self._completed,
            "response.incomplete": self._completed,
            "response.failed": self._failed,
            "error": self._failed,
        }

    # ------------------------------------------------------------------ public API

    @property
    def done(self) -> bool:
        """A terminal event was translated (``message_stop`` has been returned)."""
        return self._terminal

    @property
    def message_started(self) -> bool:
        return self._started

    def feed_sse(self, event: SSEEvent) -> list[dict[str, Any]]:
        try:
            payload = json.loads(event.data)
        except ValueError:
            raise self._malformed() from None
        if not isinstance(payload, dict):
            raise self._malformed()
        if "type" not in payload and event.event:
            payload["type"] = event.event
        return self.feed(payload)

    def feed(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self._terminal:
            return []
        handler = self._handlers.get(payload.get("type"))  # type: ignore[arg-type]
        if handler is None:
            # unknown and display-only events (web_search_call.*, *.done, annotations, ...)
            return self._start() if not self._started else []
        was_started = self._started
        out: list[dict[str, Any]] = [] if was_started else self._start()
        try:
            handler(payload, out)
        except (TypeError, KeyError, AttributeError, ValueError, IndexError):
            # A field of the wrong shape (a call_id that is a number, a delta that is an
            # object): the upstream broke the protocol, which is a malformed event, not a bug.
            self._started = was_started  # message_start was not delivered with this event
            raise self._malformed() from None
        except BaseException:
            self._started = was_started
            raise
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Upstream EOF. Raises when the stream ended without a terminal event."""
        if self._terminal:
            return []
        raise stream_cut_error(self.provider)

    # ------------------------------------------------------------------ helpers

    def _malformed(self) -> PackydError:
        err = ApiError(f"{self.provider} sent a malformed stream event")
        err.retryable = True  # type: ignore[attr-defined]
        return err

    def _start(self) -> list[dict[str, Any]]:
        self._started = True
        return [
            {
                "type": "message_start",
                "message": {
                    "id": self.message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.requested_model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": self.input_estimate,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            }
        ]

    def _item(self, oi: int, kind: int) -> _Item:
        item = self._items.get(oi)
        if item is None:
            item = self._items[oi] = _Item(kind)
        return item

    def _busy(self, oi: int) -> bool:
        """Another item's block is open: this event must wait."""
        return self._open is not None and self._open_item != oi

    def _open_block(self, oi: int, item: _Item, block: dict[str, Any], out: list[dict[str, Any]]) -> None:
        item.block = self._index
        self._open = item
        self._open_item = oi
        self.content_emitted = True
        out.append({"type": "content_block_start", "index": self._index, "content_block": block})

    def _close_block(self, out: list[dict[str, Any]]) -> None:
        item = self._open
        if item is None:
            return
        out.append({"type": "content_block_stop", "index": item.block})
        self._open = None
        self._open_item = -1
        self._index += 1
        if self._deferred:
            pending, self._deferred = self._deferred, []
            for ev in pending:
                if self._terminal:
                    break  # a stop sequence ended the message
                self._handlers[ev["type"]](ev, out)

    def _defer(self, ev: Mapping[str, Any]) -> None:
        self._deferred.append(ev)

    # ------------------------------------------------------------------ text

    def _text_delta(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        oi = ev.get("output_index", 0)
        item = self._open
        delta = _delta(ev)
        if item is None or self._open_item != oi:
            if item is not None:
                self._defer(ev)
                return
            item = self._item(oi, _TEXT)
            if item.done or not delta:
                return  # an empty text block would come back as an invalid history block
            self._open_block(oi, item, {"type": "text", "text": ""}, out)
        if self._stops:
            self._stop_text(item, delta, out)
            return
        item.parts.append(delta)
        out.append({"type": "content_block_delta", "index": item.block, "delta": {"type": "text_delta", "text": delta}})

    def _stop_text(self, item: _Item, delta: str, out: list[dict[str, Any]], *, final: bool = False) -> None:
        """Text through the stop-sequence filter: emits what can no longer start a sequence;
        at the first match ends the message with ``stop_reason: stop_sequence``."""
        buf = item.hold + delta
        found = -1
        match = None
        for seq in self._stops:
            i = buf.find(seq)
            if i >= 0 and (found < 0 or i < found):
                found, match = i, seq
        if match is not None:
            if found:
                out.append({"type": "content_block_delta", "index": item.block, "delta": {"type": "text_delta", "text": buf[:found]}})
            item.parts.append(delta)  # counts as seen, so done-reconciliation adds nothing
            item.hold = ""
            self._stop_early(match, out)
            return
        keep = 0 if final else min(self._stop_keep, len(buf))
        emit = buf[: len(buf) - keep]
        item.hold = buf[len(buf) - keep :]
        item.parts.append(delta)
        if emit:
            out.append({"type": "content_block_delta", "index": item.block, "delta": {"type": "text_delta", "text": emit}})

    def _stop_early(self, seq: str, out: list[dict[str, Any]]) -> None:
        self._open = None  # its remaining events are irrelevant now
        self._open_item = -1
        item_block = self._index
        out.append({"type": "content_block_stop", "index": item_block})
        self._index += 1
        self._deferred = []
        self.stop_reason = "stop_sequence"
        self.stop_sequence = seq
        self.usage = self._usage(None)
        out.append({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": seq}, "usage": self.usage})
        out.append({"type": "message_stop"})
        self._terminal = True

    def _flush_hold(self, item: _Item, out: list[dict[str, Any]]) -> None:
        if item.hold and item.block >= 0 and not self._terminal:
            self._stop_text(item, "", out, final=True)

    def _refusal_delta(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        self._refused = True
        oi = ev.get("output_index", 0)
        item = self._items.get(oi)
        if item is not None:
            item.refusal = True
        self._text_delta(ev, out)

    # ------------------------------------------------------------------ reasoning

    def _summary_part(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        # Separation between summary parts is emitted with the first delta of the next part.
        return None

    def _summary_delta(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        oi = ev.get("output_index", 0)
        item = self._open
        if item is None or self._open_item != oi:
            if item is not None:
                self._defer(ev)
                return
            item = self._item(oi, _THINKING)
            if item.done:
                return
            self._open_block(oi, item, {"type": "thinking", "thinking": "", "signature": ""}, out)
        delta = _delta(ev)
        sidx = ev.get("summary_index", ev.get("content_index", 0))
        if sidx != item.summary_index:
            if item.summary_index >= 0:
                delta = "\n\n" + delta
            item.summary_index = sidx
        item.parts.append(delta)
        out.append(
            {"type": "content_block_delta", "index": item.block, "delta": {"type": "thinking_delta", "thinking": delta}}
        )

    # ------------------------------------------------------------------ function calls

    def _args_delta(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        oi = ev.get("output_index", 0)
        item = self._open
        if item is None or self._open_item != oi:
            if item is not None:
                self._defer(ev)
                return
            item = self._item(oi, _TOOL)
            if item.done:
                return
            if item.name is None:
                # no name known yet (terse relay): keep the pieces for output_item.done
                item.parts.append(_delta(ev))
                return
            self._open_tool(oi, item, out)
        delta = _delta(ev)
        if not delta:
            return
        item.parts.append(delta)
        out.append(
            {"type": "content_block_delta", "index": item.block, "delta": {"type": "input_json_delta", "partial_json": delta}}
        )

    def _args_done(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        item = self._items.get(ev.get("output_index", 0))
        if item is not None:
            args = ev.get("arguments")
            if isinstance(args, str):
                item.args_done = args

    def _open_tool(self, oi: int, item: _Item, out: list[dict[str, Any]]) -> None:
        self._tool_used = True
        block = {
            "type": "tool_use",
            "id": clamp_call_id(item.call_id or ""),
            "name": self.names.client(item.name or ""),
            "input": {},
        }
        self._open_block(oi, item, block, out)
        # arguments that arrived before the block could open
        if item.parts:
            pending = "".join(item.parts)
            if pending:
                out.append(
                    {"type": "content_block_delta", "index": item.block, "delta": {"type": "input_json_delta", "partial_json": pending}}
                )

    # ------------------------------------------------------------------ items

    def _item_added(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        raw = ev.get("item")
        if not isinstance(raw, Mapping):
            return
        oi = ev.get("output_index", 0)
        kind = _KINDS.get(raw.get("type"), _OTHER)  # type: ignore[arg-type]
        item = self._item(oi, kind)
        if kind != _TOOL:
            return
        item.name = raw.get("name") or item.name
        item.call_id = raw.get("call_id") or item.call_id
        if item.name and item.block < 0 and not self._busy(oi):
            self._open_tool(oi, item, out)
        elif item.block < 0 and self._busy(oi):
            self._defer(ev)

    def _item_done(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        raw = ev.get("item")
        if not isinstance(raw, Mapping):
            return
        oi = ev.get("output_index", 0)
        kind = _KINDS.get(raw.get("type"), _OTHER)  # type: ignore[arg-type]
        if self._busy(oi):
            self._defer(ev)
            return
        item = self._item(oi, kind)
        if item.done:
            return
        if kind == _THINKING:
            self._reasoning_done(oi, item, raw, out)
        elif kind == _TEXT:
            self._message_done(oi, item, raw, out)
            if self._terminal:
                return
        elif kind == _TOOL:
            self._call_done(oi, item, raw, out)
        elif raw.get("type") == "web_search_call":
            item.done = True
            self._web_search(raw, out)
        else:
            item.done = True  # compaction, custom tools, ...: nothing the client can use
        if item.done and self._open is item:
            self._close_block(out)

    def _reasoning_done(self, oi: int, item: _Item, raw: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        item.done = True
        enc = raw.get("encrypted_content")
        texts = [s.get("text") or "" for s in (raw.get("summary") or ()) if isinstance(s, Mapping)]
        text = "\n\n".join(t for t in texts if t)
        if item.block < 0:
            if not text and not enc:
                return  # nothing to show and nothing to replay
            self._open_block(oi, item, {"type": "thinking", "thinking": "", "signature": ""}, out)
        else:
            # deltas may have been trimmed: only the missing tail is sent
            emitted = "".join(item.parts)
            text = text[len(emitted) :] if text.startswith(emitted) else ""
        if text:
            item.parts.append(text)
            out.append(
                {"type": "content_block_delta", "index": item.block, "delta": {"type": "thinking_delta", "thinking": text}}
            )
        out.append(
            {
                "type": "content_block_delta",
                "index": item.block,
                "delta": {"type": "signature_delta", "signature": pack_signature(enc if isinstance(enc, str) else None)},
            }
        )

    def _message_done(self, oi: int, item: _Item, raw: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        item.done = True
        final_parts = []
        for part in raw.get("content") or ():
            if not isinstance(part, Mapping):
                continue
            if part.get("type") == "output_text":
                final_parts.append(part.get("text") or "")
            elif part.get("type") == "refusal":
                self._refused = True
                final_parts.append(part.get("refusal") or "")
        final = "".join(final_parts)
        emitted = "".join(item.parts)
        rest = final[len(emitted) :] if final.startswith(emitted) else ""
        if rest and item.block < 0:
            self._open_block(oi, item, {"type": "text", "text": ""}, out)
        if self._stops:
            if rest or item.hold:
                self._stop_text(item, rest, out, final=True)
        elif rest:
            out.append({"type": "content_block_delta", "index": item.block, "delta": {"type": "text_delta", "text": rest}})

    def _call_done(self, oi: int, item: _Item, raw: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        item.done = True
        item.name = raw.get("name") or item.name
        item.call_id = raw.get("call_id") or item.call_id
        args = raw.get("arguments")
        if not isinstance(args, str):
            args = item.args_done if item.args_done is not None else "".join(item.parts)
        if item.block < 0:
            if not item.name:
                return  # a call without a name cannot be answered; never emit it broken
            item.parts = []
            self._open_tool(oi, item, out)
        emitted = "".join(item.parts)
        rest = args[len(emitted) :] if args.startswith(emitted) else ""
        if rest:
            item.parts.append(rest)
            out.append(
                {"type": "content_block_delta", "index": item.block, "delta": {"type": "input_json_delta", "partial_json": rest}}
            )

    def _web_search(self, raw: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        action = raw.get("action")
        if not isinstance(action, Mapping) or action.get("type") != "search":
            return  # open_page / find_in_page have no Anthropic counterpart
        tool_id = clamp_call_id("srvtoolu_" + str(raw.get("id") or self._index))
        query = action.get("query") or ""
        start = {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {}}
        self.content_emitted = True
        idx = self._index
        out.append({"type": "content_block_start", "index": idx, "content_block": start})
        out.append(
            {
                "type": "content_block_delta",
                "index": idx,
                "delta": {"type": "input_json_delta", "partial_json": json.dumps({"query": query}, ensure_ascii=False)},
            }
        )
        out.append({"type": "content_block_stop", "index": idx})
        results = [
            {"type": "web_search_result", "url": s.get("url"), "title": s.get("title") or s.get("url"), "encrypted_content": "", "page_age": None}
            for s in (action.get("sources") or ())
            if isinstance(s, Mapping) and s.get("url")
        ]
        out.append(
            {
                "type": "content_block_start",
                "index": idx + 1,
                "content_block": {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": results},
            }
        )
        out.append({"type": "content_block_stop", "index": idx + 1})
        self._index = idx + 2

    # ------------------------------------------------------------------ lifecycle

    def _created(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        response = ev.get("response")
        if isinstance(response, Mapping):
            self.response_id = response.get("id") or self.response_id
            self.upstream_model = response.get("model") or self.upstream_model

    def _failed(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        raise classify_stream_error(
            ev, provider=self.provider, input_tokens=self.input_estimate or None, context_window=self.context_window
        )

    def _completed(self, ev: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        response = ev.get("response")
        if not isinstance(response, Mapping):
            response = {}
        self._created(ev, out)
        # Items that only the terminal event describes (relays that skip output_item events).
        if not self._items:
            for oi, raw in enumerate(response.get("output") or ()):
                if isinstance(raw, Mapping):
                    self._item_done({"type": "response.output_item.done", "output_index": oi, "item": raw}, out)
        self._finish_open(out)
        if self._terminal:
            return
        while self._deferred:  # items still waiting behind a block that never got its done
            pending, self._deferred = self._deferred, []
            for d in pending:
                if not self._terminal:
                    self._handlers[d["type"]](d, out)
            self._finish_open(out)
            if self._terminal:
                return
        # A call whose name only arrived late and never got an output_item.done.
        for oi, item in sorted(self._items.items()):
            if not item.done and item.kind == _TOOL and item.block < 0 and item.name:
                self._call_done(oi, item, {}, out)
                self._close_block(out)
        status = response.get("status")
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        if self._tool_used:
            stop = "tool_use"
        elif ev.get("type") == "response.incomplete" or status == "incomplete":
            stop = "refusal" if reason == "content_filter" else "max_tokens"
        elif self._refused:
            stop = "refusal"
        else:
            stop = "end_turn"
        if self._tool_used and reason == "max_output_tokens":
            stop = "max_tokens"  # a call cut short must not be executed
        self.stop_reason = stop
        self.usage = self._usage(response.get("usage"))
        out.append(
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": self.usage}
        )
        out.append({"type": "message_stop"})
        self._terminal = True

    def _finish_open(self, out: list[dict[str, Any]]) -> None:
        """Close the open block of an item that never got its ``output_item.done``
        (incomplete responses), completing what the block type requires."""
        item = self._open
        if item is None:
            return
        if item.hold:
            self._flush_hold(item, out)
            if self._terminal:
                return
        if not item.done:
            if item.kind == _TOOL:
                self._call_done(self._open_item, item, {}, out)
            elif item.kind == _THINKING:
                item.done = True
                out.append(
                    {"type": "content_block_delta", "index": item.block, "delta": {"type": "signature_delta", "signature": pack_signature(None)}}
                )
        self._close_block(out)

    def _usage(self, usage: Any) -> dict[str, int]:
        if not isinstance(usage, Mapping):
            return {
                "input_tokens": self.input_estimate,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            }
        total_in = _int(usage.get("input_tokens"))
        details = usage.get("input_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
        cached = min(cached, total_in)
        return {
            "input_tokens": total_in - cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": _int(usage.get("output_tokens")),
        }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _delta(ev: Mapping[str, Any]) -> str:
    """An event's text ``delta``; anything but a string is a malformed event (see ``feed``)."""
    delta = ev.get("delta") or ""
    if type(delta) is not str:
        raise TypeError("delta is not a string")
    return delta
