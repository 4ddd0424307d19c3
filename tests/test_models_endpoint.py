"""``GET /v1/models`` and ``/v1/models/{id}``: OpenAI shape by default, Anthropic's with
``anthropic-version``, read by the official SDK the way Claude Code's discovery reads it."""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

import anthropic
import httpx

from packyd.registry import CLAUDE_CODE_MODEL_IDS
from tests.conftest import Stack


async def test_anthropic_sdk_lists_and_retrieves(stack: Stack) -> None:
    async with anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.client_key, max_retries=0) as client:
        page = await client.models.list(limit=1000)
        ids = [model.id async for model in page]
        one = await client.models.retrieve("claude-opus-4-8")
    assert len(ids) == len(set(ids))
    assert {"gpt-5", "gpt-5-codex", "gpt-5.1-codex-max", "codex-mini-latest"} <= set(ids)
    # what Claude Code's discovery keeps: ids matching ^(claude|anthropic)
    claude_ids = [i for i in ids if re.match(r"^(claude|anthropic)", i)]
    assert set(CLAUDE_CODE_MODEL_IDS) <= set(claude_ids)
    assert one.type == "model" and one.id == "claude-opus-4-8" and "gpt-5-codex(high)" in one.display_name


async def test_anthropic_pagination(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers) as client:
        everything = (await client.get("/v1/models", params={"limit": 1000})).json()
        ids = [m["id"] for m in everything["data"]]
        first = (await client.get("/v1/models", params={"limit": 3})).json()
        after = (await client.get("/v1/models", params={"limit": 3, "after_id": first["last_id"]})).json()
        before = (await client.get("/v1/models", params={"limit": 2, "before_id": after["first_id"]})).json()
        default = (await client.get("/v1/models")).json()
        bad_limit = await client.get("/v1/models", params={"limit": "lots"})
        bad_after = await client.get("/v1/models", params={"after_id": "no-such-model"})
    assert everything["has_more"] is False and everything["first_id"] == ids[0] and everything["last_id"] == ids[-1]
    entry = everything["data"][0]
    assert set(entry) >= {"type", "id", "display_name", "created_at"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["created_at"])
    assert [m["id"] for m in first["data"]] == ids[:3] and first["has_more"] is True
    assert [m["id"] for m in after["data"]] == ids[3:6]
    assert [m["id"] for m in before["data"]] == ids[1:3]
    assert len(default["data"]) == min(20, len(ids))
    for bad, word in ((bad_limit, "limit"), (bad_after, "after_id")):
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error" and word in bad.json()["error"]["message"]


async def test_openai_shape_without_anthropic_version(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, headers={"authorization": f"Bearer {stack.client_key}"}) as c:
        listing = (await c.get("/v1/models")).json()
        one = (await c.get("/v1/models/gpt-5")).json()
    assert listing["object"] == "list"
    by_id: dict[str, Any] = {m["id"]: m for m in listing["data"]}
    assert by_id["gpt-5"] == one
    assert one["object"] == "model" and one["owned_by"] == "codex" and isinstance(one["created"], int)
    assert one["context_window"] == 400_000 and one["max_output_tokens"] == 128_000
    assert by_id["claude-haiku-4-5-20251001"]["alias_of"] == "gpt-5-codex-mini(low)"


async def test_unknown_model_is_404_not_found_and_auth_is_required(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        missing = await client.get("/v1/models/gpt-99", headers=stack.client_headers)
        anonymous = await client.get("/v1/models")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["type"] == "not_found_error" and "gpt-99" in error["message"] and "gpt-5" in error["message"]
    assert anonymous.status_code == 401


async def test_disabled_packycode_lists_nothing(start_stack: Callable[..., Awaitable[Stack]]) -> None:
    stack = await start_stack(packycode={"enabled": False})
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.client_headers) as client:
        listing = (await client.get("/v1/models")).json()
        missing = await client.get("/v1/models/gpt-5")
    assert listing == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    assert missing.status_code == 404 and "not configured" in missing.json()["error"]["message"]
