"""Local o200k_base counting: exact, offline, identical on both engines, cached."""

from __future__ import annotations

import socket
import time

import pytest

from packyd import tokens
from packyd.translate.messages import parse_messages_request
from tests.fixtures import requests as rq

KNOWN = "Hello, world! Packyd counts tokens locally: naïve café – 你好世界 🎉\n\tdef f(x): return x**2  # <|endoftext|>"
# o200k_base ids of "hello world", as published with the encoding
HELLO_WORLD_IDS = [24912, 2375]


@pytest.fixture(scope="module")
def engines() -> dict[str, object]:
    return {name: tokens.load_encoder(name)[1] for name in ("tiktoken", "pure")}


def test_pattern_matches_tiktokens_published_one() -> None:
    import inspect

    from tiktoken_ext import openai_public

    # the published definition spells the same alternatives in the same order
    src = inspect.getsource(openai_public.o200k_base)
    for alt in tokens.O200K_PATTERN.split("|"):
        assert alt in src


def test_both_engines_give_identical_tokens(engines: dict) -> None:  # type: ignore[type-arg]
    samples = [KNOWN, "hello world", "", "    leading spaces\r\n\r\nCRLF", "x" * 5000, "数字123456789 and 'quotes' I'm we'll"]
    for text in samples:
        assert engines["tiktoken"](text) == engines["pure"](text), text[:40]
    assert engines["pure"]("hello world") == HELLO_WORLD_IDS


def test_count_equals_tiktoken_o200k_count_to_the_token(engines: dict) -> None:  # type: ignore[type-arg]
    expected = len(engines["tiktoken"](KNOWN))
    assert tokens.count_text(KNOWN) == expected
    assert tokens.count_text("hello world") == 2


def test_counting_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled for this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for engine in ("tiktoken", "pure"):
        name, enc = tokens.load_encoder(engine)
        assert name == engine and len(enc(KNOWN)) > 10
    tokens.cache_clear()
    assert tokens.count_text(KNOWN + " fresh") > 0


def test_request_count_covers_system_messages_tools_and_images() -> None:
    body = rq.tool_turn("pky1:")
    req = parse_messages_request(body)
    total = tokens.count_request_tokens(req)
    no_tools = parse_messages_request({**body, "tools": []})
    no_image = parse_messages_request(rq.tool_turn("pky1:", image_result=False))
    no_system = parse_messages_request({**body, "system": []})
    assert total - tokens.count_request_tokens(no_tools) > 200
    assert total - tokens.count_request_tokens(no_image) == tokens._IMAGE_TOKENS
    system_tokens = sum(tokens.count_text(b["text"]) for b in rq.SYSTEM)
    assert total - tokens.count_request_tokens(no_system) == system_tokens


def test_count_tokens_body_without_max_tokens() -> None:
    req = parse_messages_request({"model": "m", "messages": [{"role": "user", "content": "hello world"}]}, count_tokens=True)
    assert tokens.count_request_tokens(req) == 2 + tokens._PER_MESSAGE


def test_repeated_requests_hit_the_cache() -> None:
    big = "You are Claude Code. " * 5000  # ~100 KB, like Claude Code's system prompt + tools
    body = rq.first_turn()
    body["system"][1]["text"] = big
    tokens.cache_clear()
    first_req = parse_messages_request(body)
    t0 = time.perf_counter()
    first = tokens.count_request_tokens(first_req)
    cold = time.perf_counter() - t0
    again = parse_messages_request(rq.first_turn() | {"system": body["system"]})  # new string objects
    hits_before = tokens.cache_stats()[0]
    t0 = time.perf_counter()
    second = tokens.count_request_tokens(again)
    warm = time.perf_counter() - t0
    assert first == second
    assert tokens.cache_stats()[0] > hits_before
    assert warm < cold


def test_cache_holds_counts_not_texts() -> None:
    tokens.cache_clear()
    text = "payload " * 10_000
    n = tokens.count_text(text)
    assert tokens.count_text(text) == n and tokens.cache_stats()[:2] == (1, 1)
    assert all(isinstance(v, int) for v in tokens._cache._data.values())
    assert not any(isinstance(k, str) for key in tokens._cache._data for k in key)
