"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: HTTP in, routed events out.

The body is decoded and parsed once, into the typed request that every later stage uses.
Streaming and non-streaming run the same provider events: the first batch is awaited
*before* any byte goes to the client, so that upstream failures up to that point (after
packyd's retries and fallback) become a proper HTTP error that Claude Code's own retry logic
understands; after it, failures become an SSE ``error`` event (see :mod:`.streaming`).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import trio
from quart import Request, Response

from .. import logs
from ..errors import ApiError, InvalidRequest, PackydError
from ..routing import RequestContext, route_events
from ..services import Services
from ..tokens import count_request_tokens
from ..translate.aggregate import Aggregator
from ..translate.messages import parse_messages_request
from .streaming import EventStreamBody, ping_interval_for

__all__ = ["create_message", "count_tokens", "decode_json_object"]

_STREAM_HEADERS = {
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx in front must not buffer SSE
}


def decode_json_object(body: bytes) -> dict[str, Any]:
    """Decode the request body; errors name the position, never quote the content."""
    if not body:
        raise InvalidRequest("request body is empty; send a JSON object (Content-Type: application/json)")
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not UTF-8 text; send a JSON object") from None
    except json.JSONDecodeError as error:
        raise InvalidRequest(
            f"request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    return payload


async def create_message(services: Services, request: Request) -> Response:
    from .app import json_response

    started = time.monotonic()
    runtime = services.holder.current
    request_id: str = request.packyd_id  # type: ignore[attr-defined]
    payload = decode_json_object(await request.get_data(cache=False))
    parsed = parse_messages_request(payload)
    # payload: the anthropic passthrough provider forwards the client's body as it came
    ctx = RequestContext.from_http(request_id, request.headers, parsed, payload)

    def finish(outcome: str) -> None:
        logs.log("info", "request", request_id=request_id, model=parsed.model, upstream_model=ctx.upstream_model,
                 provider=ctx.provider, stream=parsed.stream, outcome=outcome, attempts=ctx.attempts,
                 ms=round((time.monotonic() - started) * 1000), input_tokens=ctx.usage.get("input_tokens"),
                 output_tokens=ctx.usage.get("output_tokens"))

    events = route_events(services, runtime, parsed, ctx)
    try:
        first = await events.__anext__()
    except StopAsyncIteration:
        finish("error:api_error")
        raise ApiError("the upstream answered with nothing; see packyd's log") from None
    except PackydError as error:
        finish(f"error:{error.error_type}")
        raise
    headers = {"request-id": request_id, "x-packyd-provider": ctx.provider or "",
               "x-packyd-upstream-model": ctx.upstream_model or ""}
    if parsed.stream:
        body = EventStreamBody(
            first, events,
            ping_interval=ping_interval_for(runtime.config.packycode.timeouts.idle),
            draining=services.draining,
            drain_timeout=runtime.config.drain_timeout,
            request_id=request_id,
            on_finish=finish,
        )
        response = Response(body, status=200, headers={**_STREAM_HEADERS, **headers},
                            content_type="text/event-stream; charset=utf-8")
        response.timeout = None
        return response
    # Non-streaming: the same events, folded into one Message as they arrive.
    folded = Aggregator()
    folded.add(first)
    try:
        async with contextlib.aclosing(events):
            async for batch in events:
                folded.add(batch)
    except PackydError as error:
        finish(f"error:{error.error_type}")
        raise
    finish("ok")
    return json_response(folded.message(), 200, headers)


async def count_tokens(services: Services, request: Request) -> Response:
    from .app import json_response

    payload = decode_json_object(await request.get_data(cache=False))
    parsed = parse_messages_request(payload, count_tokens=True)
    # Tokenizing a large uncached prompt takes milliseconds: keep it off the event loop.
    count = await trio.to_thread.run_sync(count_request_tokens, parsed, abandon_on_cancel=True)
    return json_response({"input_tokens": count})
