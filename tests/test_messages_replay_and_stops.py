"""Two behaviours the provider adds around the pure translators.

* Stop sequences are never sent upstream (the Responses API has no ``stop``); packyd
  emulates them on the way back, so a client that sets them still gets
  ``stop_reason: stop_sequence`` and text cut exactly before the sequence.
* A replayed reasoning blob that the upstream cannot decrypt (another account, another
  channel) is dropped and the turn retried once, instead of failing the user's turn.
"""

from __future__ import annotations

import copy
from typing import Any

import anthropic

from tests.fixtures import streams
from tests.support.fake_packycode import error_reply, sse_reply

MODEL = "claude-opus-4-8"


def simple(prompt: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": prompt}], **fields}


async def test_stop_sequence_is_emulated(stack: Any) -> None:
    stack.fake.script(sse_reply(streams.text_stream("alpha beta END gamma delta", pieces=7), per_event=True))
    async with anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.client_key, max_retries=0) as client:
        async with client.messages.stream(**simple(stop_sequences=["END"])) as stream:
            final = await stream.get_final_message()
    assert [block.text for block in final.content] == ["alpha beta "]
    assert final.stop_reason == "stop_sequence"
    assert final.stop_sequence == "END"
    sent = stack.upstream_requests[0].json
    assert "stop" not in sent and "stop_sequences" not in sent


async def test_rejected_reasoning_replay_is_retried_without_it(stack: Any) -> None:
    signature = "pky1:" + streams.ENC_FINAL
    body = simple("first")
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "plan", "signature": signature},
                                          {"type": "text", "text": "done"}]},
        {"role": "user", "content": "again"},
    ]
    stack.fake.script(
        error_reply(400, "The encrypted content could not be verified.", type="invalid_request_error",
                    code="invalid_encrypted_content"),
        sse_reply(streams.text_stream("Fresh answer.")),
    )
    async with anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.client_key, max_retries=0) as client:
        answer = await client.messages.create(**copy.deepcopy(body))
    assert [block.text for block in answer.content] == ["Fresh answer."]
    first, second = (request.json for request in stack.upstream_requests)
    assert any(item.get("type") == "reasoning" for item in first["input"])
    assert not any(item.get("type") == "reasoning" for item in second["input"])
    assert [item for item in second["input"] if item.get("type") == "message"] == \
        [item for item in first["input"] if item.get("type") == "message"]
