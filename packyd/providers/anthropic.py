"""The ``anthropic`` provider: passthrough to an Anthropic-compatible Messages API.

For fallback (FR-006): Anthropic itself, or a Claude relay such as Packycode's own Claude
endpoint. packyd's in-process format *is* the Anthropic one, so this provider only forwards:
the client's request body goes to ``{base-url}/v1/messages`` unchanged except that it is
always streamed (``stream: true``; a non-streaming client request is aggregated by the
server from the same events), with the provider's own ``x-api-key``, the client's
``anthropic-version`` / ``anthropic-beta`` and the provider's extra headers.

The answer is parsed with :class:`packyd.sse.SSEParser` and re-batched as event dicts
(upstream ``ping``s are dropped; packyd sends its own). The first batch is held until the
upstream has produced a real event after ``message_start`` (bootstrap buffering): an
``overloaded_error`` right after ``message_start`` is common on busy Claude endpoints, and
holding the batch lets routing retry or fall back instead of committing a 200.

Errors keep Anthropic's own ``error.type`` (the upstream speaks the client's language
already) but the message is rebuilt: it names this provider and the setting to check, and
quotes the upstream's message only through :func:`packyd.translate.errors.short_reason`,
which cuts anything that might echo the prompt.
"""

from __future__ import annotations

import json
import re
from typing import Any, AsyncIterator, Mapping

import httpx
import trio

from .. import __version__
from ..config import ProviderConfig
from ..errors import (
    ApiError,
    InvalidRequest,
    Overloaded,
    PackydError,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamTimeout,
)
from ..sse import SSEParser
from ..translate.errors import short_reason
from .base import Batch, mark

__all__ = ["AnthropicProvider", "classify_anthropic_error", "DEFAULT_ANTHROPIC_VERSION"]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
_MAX_ERROR_BODY = 64 * 1024
#: events after which the upstream has really started answering
_CONTENT_EVENTS = frozenset({"content_block_start", "content_block_delta", "content_block_stop",
                             "message_delta", "message_stop"})
_PROMPT_TOO_LONG = re.compile(r"^prompt is too long: \d+ tokens > \d+ maximum$")
_QUOTA_WORDS = re.compile(r"quota|credit balance|usage limit|billing", re.IGNORECASE)


def _setting(name: str, key: str) -> str:
    return f"providers[{name}].{key}"


def classify_anthropic_error(status: int, headers: Mapping[str, str], error_type: str | None, message: Any,
                             *, provider: str) -> PackydError:
    """The client-facing error for an Anthropic-shaped upstream failure (HTTP or SSE ``error``)."""
    text = message if isinstance(message, str) else ""
    reason = short_reason(text)
    detail = f" ({reason})" if reason else ""
    retry_after = headers.get("retry-after")
    if error_type == "invalid_request_error" and text.startswith("prompt is too long"):
        # Anthropic's own overflow wording is metadata only (two numbers): keep it whole,
        # Claude Code compacts on it.
        kept = text if _PROMPT_TOO_LONG.match(text) else "prompt is too long"
        return mark(InvalidRequest(f"{kept} ({provider})"), retryable=False, code="context_length_exceeded")
    if status == 401 or error_type == "authentication_error":
        # 403, not 401: see translate/errors.py (Claude Code would blame the user's token).
        return mark(PermissionDenied(
            f"{provider} rejected packyd's key; check {_setting(provider, 'api-key')}",
            headers={"x-should-retry": "false"}), retryable=False)
    if error_type == "billing_error" or (status in (400, 402, 403, 429) and _QUOTA_WORDS.search(text)):
        return mark(RateLimited(f"{provider} refused for billing or quota reasons{detail}; "
                                f"check the account behind {_setting(provider, 'api-key')}",
                                headers={"x-should-retry": "false"}), retryable=False, code="quota")
    if status == 403 or error_type == "permission_error":
        return mark(PermissionDenied(f"{provider} does not allow this request with packyd's key{detail}; "
                                     f"check {_setting(provider, 'api-key')}"), retryable=False)
    if status == 404 or error_type == "not_found_error":
        # Never a 404 to the client: Claude Code reads any 404 as "the selected model is broken".
        return mark(InvalidRequest(f"{provider} does not know the requested model or endpoint{detail}; "
                                   f"check the model name and {_setting(provider, 'base-url')}"),
                    retryable=False, code="model_not_found")
    if status == 413 or error_type == "request_too_large":
        return mark(RequestTooLarge(f"{provider} refused the request as too large{detail}"), retryable=False)
    if status == 429 or error_type == "rate_limit_error":
        extra = {"retry-after": retry_after} if retry_after else {}
        return mark(RateLimited(f"{provider} rate limit reached{detail}", headers=extra), retryable=True)
    if status == 529 or error_type == "overloaded_error":
        return mark(Overloaded(f"{provider} is overloaded{detail}"), retryable=True)
    if status == 504 or error_type == "timeout_error":
        return mark(UpstreamTimeout(f"{provider} timed out{detail}"), retryable=True)
    if status >= 500 or error_type == "api_error" or status == 200:
        return mark(ApiError(f"{provider} failed with {'an error event' if status == 200 else status}{detail}"),
                    retryable=True)
    return mark(InvalidRequest(f"{provider} rejected the request with {status}{detail}"), retryable=False)


def _parse_error_body(body: bytes) -> tuple[str | None, Any]:
    """(error.type, message) from Anthropic's shape, OpenAI's, ``{"detail"}`` or plain text/HTML."""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text) if text[:1] in "{[" else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict):
            kind = error.get("type")
            return (kind if isinstance(kind, str) else None), error.get("message")
        if "detail" in doc:
            return None, doc["detail"]
        return None, doc.get("message")
    if text[:1] == "<":
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        return None, (title.group(1) if title else "an HTML page")
    return None, text


class AnthropicProvider:
    """One configured ``type: anthropic`` entry of ``providers:``."""

    kind = "anthropic"

    def __init__(self, config: ProviderConfig, key: str | None, services: Any) -> None:
        self.name = config.name
        self.config = config
        self._key = key
        self._services = services
        self._url = config.base_url.rstrip("/") + "/v1/messages"

    def _headers(self, ctx: Any) -> dict[str, str]:
        client = getattr(ctx, "headers", {}) or {}
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "anthropic-version": client.get("anthropic-version") or DEFAULT_ANTHROPIC_VERSION,
            "user-agent": f"packyd/{__version__}",
        }
        if client.get("anthropic-beta"):
            headers["anthropic-beta"] = client["anthropic-beta"]
        if self._key:
            headers["x-api-key"] = self._key
        headers.update({name.lower(): value for name, value in self.config.headers})
        return headers

    def _body(self, request: Any, ctx: Any) -> bytes:
        payload = getattr(ctx, "payload", None)
        if not isinstance(payload, Mapping):
            raise mark(ApiError(f"packyd cannot forward this request to {self.name}: the original body "
                                "was not kept (a packyd bug; see its log)"), retryable=False)
        forwarded = dict(payload)
        forwarded["stream"] = True
        return json.dumps(forwarded, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def _timeout(self) -> httpx.Timeout:
        timeouts = self.config.timeouts
        return httpx.Timeout(connect=timeouts.connect, read=timeouts.idle, write=60.0, pool=timeouts.connect)

    async def events(self, request: Any, ctx: Any) -> AsyncIterator[Batch]:
        http: httpx.AsyncClient = self._services.http
        limiter: trio.CapacityLimiter = self._services.limiter
        body = self._body(request, ctx)
        ctx.upstream_model = getattr(request, "model", None)
        ctx.attempts = getattr(ctx, "attempts", 0) + 1
        # The limiter is released from whichever task closes the generator, so borrow it on
        # behalf of a token rather than of the current task.
        token = object()
        await limiter.acquire_on_behalf_of(token)
        response: httpx.Response | None = None
        try:
            first: Batch = []
            parser = SSEParser()
            with trio.move_on_after(self.config.timeouts.first_byte) as first_scope:
                response = await self._send(http, body, ctx)
                chunks = response.aiter_raw()
                while not any(event["type"] in _CONTENT_EVENTS for event in first):
                    chunk = await self._next_chunk(chunks)
                    if chunk is None:
                        raise self._cut()
                    first.extend(self._decode(parser.feed(chunk), ctx))
            if first_scope.cancelled_caught:
                raise mark(UpstreamTimeout(
                    f"{self.name} sent no answer within {self.config.timeouts.first_byte:g}s "
                    f"({_setting(self.name, 'timeouts.first-byte')})"), retryable=True)
            finished = any(event["type"] == "message_stop" for event in first)
            yield first
            while not finished:
                with trio.move_on_after(self.config.timeouts.idle) as idle_scope:
                    chunk = await self._next_chunk(chunks)
                if idle_scope.cancelled_caught:
                    raise mark(UpstreamTimeout(
                        f"{self.name} went silent for {self.config.timeouts.idle:g}s mid-answer "
                        f"({_setting(self.name, 'timeouts.idle')})"), retryable=True)
                if chunk is None:
                    raise self._cut()
                batch = self._decode(parser.feed(chunk), ctx)
                finished = any(event["type"] == "message_stop" for event in batch)
                if batch:
                    yield batch
        finally:
            if response is not None:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(2):
                        await response.aclose()
            limiter.release_on_behalf_of(token)

    async def _send(self, http: httpx.AsyncClient, body: bytes, ctx: Any) -> httpx.Response:
        upstream = http.build_request("POST", self._url, content=body, headers=self._headers(ctx),
                                      timeout=self._timeout())
        try:
            response = await http.send(upstream, stream=True)
        except httpx.TimeoutException as error:
            raise mark(UpstreamTimeout(
                f"{self.name} did not accept the connection within {self.config.timeouts.connect:g}s "
                f"({type(error).__name__}); check {_setting(self.name, 'base-url')} and "
                f"{_setting(self.name, 'timeouts.connect')}"), retryable=True) from None
        except httpx.HTTPError as error:
            raise mark(Overloaded(
                f"{self.name} is unreachable ({type(error).__name__}); check {_setting(self.name, 'base-url')}"),
                retryable=True) from None
        if response.status_code >= 300:
            try:
                raw = await self._read_limited(response)
            finally:
                await response.aclose()
            error_type, message = _parse_error_body(raw)
            raise classify_anthropic_error(response.status_code, response.headers, error_type, message,
                                           provider=self.name)
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            await response.aclose()
            raise mark(ApiError(f"{self.name} answered 200 without an event stream "
                                f"(content-type {short_reason(content_type) or 'missing'}); "
                                f"check {_setting(self.name, 'base-url')}"), retryable=True)
        return response

    @staticmethod
    async def _read_limited(response: httpx.Response) -> bytes:
        data = bytearray()
        async for chunk in response.aiter_raw():
            data += chunk
            if len(data) >= _MAX_ERROR_BODY:
                break
        return bytes(data[:_MAX_ERROR_BODY])

    async def _next_chunk(self, chunks: AsyncIterator[bytes]) -> bytes | None:
        """The next body chunk; None at a clean end. A broken connection is a cut stream."""
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return None
            except httpx.TimeoutException:
                raise mark(UpstreamTimeout(f"{self.name} went silent ({_setting(self.name, 'timeouts.idle')})"),
                           retryable=True) from None
            except httpx.HTTPError as error:
                raise mark(ApiError(f"{self.name} broke the connection mid-answer ({type(error).__name__})"),
                           retryable=True) from None
            if chunk:
                return chunk

    def _cut(self) -> PackydError:
        return mark(ApiError(f"{self.name} closed the stream before the answer was complete"), retryable=True)

    def _decode(self, parsed: list[Any], ctx: Any) -> Batch:
        """SSE events → event dicts; an upstream ``error`` event or non-JSON data raises."""
        batch: Batch = []
        for item in parsed:
            if item.event == "ping":
                continue
            try:
                event = json.loads(item.data)
            except ValueError:
                raise mark(ApiError(f"{self.name} sent data that is not an Anthropic event stream; "
                                    f"check {_setting(self.name, 'base-url')}"), retryable=True) from None
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise mark(ApiError(f"{self.name} sent an event without a type"), retryable=True)
            kind = event["type"]
            if kind == "ping":
                continue
            if kind == "error":
                error = event.get("error") if isinstance(event.get("error"), dict) else {}
                raise classify_anthropic_error(200, {}, error.get("type"), error.get("message"), provider=self.name)
            if kind == "message_start":
                usage = (event.get("message") or {}).get("usage") or {}
                self._usage(ctx, usage)
            elif kind == "message_delta":
                self._usage(ctx, event.get("usage") or {})
            batch.append(event)
        return batch

    @staticmethod
    def _usage(ctx: Any, usage: Mapping[str, Any]) -> None:
        target = getattr(ctx, "usage", None)
        if not isinstance(target, dict):
            return
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and (value > 0 or key not in target):
                target[key] = value



def build_anthropic(entry: ProviderConfig, services: Any) -> AnthropicProvider:
    """Factory for ``providers[].type: anthropic`` (registered in ``packyd.providers``).

    The key comes from ``api-key`` or, re-read at every start and reload, ``api-key-file``.
    An unreadable file is logged and the provider built without a key, so the upstream's 401
    surfaces as a clear error naming the setting instead of the whole config failing."""
    from .. import logs

    key = entry.api_key
    if not key and entry.api_key_file:
        try:
            with open(entry.api_key_file, encoding="utf-8") as handle:
                key = handle.read().strip() or None
        except OSError as error:
            logs.log("error", "provider_key_unreadable", provider=entry.name, file=entry.api_key_file,
                     error=error.strerror)
    return AnthropicProvider(entry, key, services)
