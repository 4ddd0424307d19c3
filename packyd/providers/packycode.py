"""The Packycode provider: Anthropic request → Responses API over HTTP → Anthropic events.

The translation itself is pure and lives in ``packyd.translate``; this module is the I/O
around it: one ``POST {base-url}/responses`` per attempt through the process-wide httpx
client, the SSE parsed as bytes arrive, and every upstream read turned into one batch.

Timeouts are enforced here with trio deadlines rather than left to httpx, because the three
limits measure different things (reference/stack.md §2):

* ``connect``: TCP + TLS, httpx's own connect timeout;
* ``first-byte``: from sending the request until the first upstream *event* (not merely the
  headers: the ChatGPT-style backends hold headers until output starts, others send headers
  at once and then stay silent);
* ``idle``: the longest silence between two reads once events flow (reasoning models can be
  quiet for minutes; the streaming body sends pings meanwhile).

Before the first batch is released, lifecycle-only events (``response.created``,
``in_progress``, ``queued``) are held back: relays report overload as a ``response.failed``
right after ``response.created`` under HTTP 200, and holding those events keeps that case
retryable (nothing has reached the client yet).

Concurrency is bounded by ``services.limiter`` (the httpx pool is unbounded on purpose,
httpcore#1093). The limiter token is borrowed on behalf of a per-request object, not the
current task, because the first batch is produced in the handler's task and the rest in the
streaming body's reader task.

Privacy: the key only ever goes into the ``authorization`` header; logs carry status codes,
error types and upstream error codes, never bodies.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any, AsyncIterator

import httpx
import trio

from .. import logs
from ..config import LoadResult, PackycodeConfig
from ..errors import ApiError, Overloaded, PackydError, UpstreamTimeout
from ..sse import SSEEvent, SSEParser
from ..tokens import estimate_request_tokens
from ..translate.errors import classify_http_error, is_reasoning_rejected
from ..translate.request import identity_headers, translate_request
from ..translate.settings import ModelRoute, TranslationSettings
from ..translate.stream import StreamTranslator
from .base import Batch, mark

if TYPE_CHECKING:
    from ..routing import RequestContext
    from ..services import Services
    from ..translate.messages import MessagesRequest

__all__ = ["PackycodeProvider", "translation_settings", "LIFECYCLE_EVENTS"]

PROVIDER_LABEL = "Packycode"
#: upstream events that say "working on it" but carry nothing for the client
LIFECYCLE_EVENTS = frozenset({"response.created", "response.in_progress", "response.queued"})
#: how much of an error body is read to classify it (bodies are reduced to a short reason)
ERROR_BODY_LIMIT = 64 * 1024
#: after the terminal event, how long to wait for the body's end so the connection is reused
DRAIN_AFTER_TERMINAL = 0.25
WRITE_TIMEOUT = 30.0


def translation_settings(config: PackycodeConfig) -> TranslationSettings:
    """The translators' view of the ``packycode`` block (they never see the config itself)."""
    return TranslationSettings(
        default_model=config.defaults.model,
        default_effort=config.defaults.model_reasoning_effort,
        default_summary=config.defaults.model_reasoning_summary,
        model_map=tuple(ModelRoute(pattern, model, effort) for pattern, model, effort in config.model_map),
        models=tuple(config.models),
        identity=config.identity,
        verbosity=config.defaults.model_verbosity,
    )


class PackycodeProvider:
    """Serves requests from Packycode's Responses API (see the module docstring)."""

    name = "packycode"

    def __init__(self, config: PackycodeConfig, *, key: str | None, key_source: str, services: "Services") -> None:
        self.config = config
        self.settings = translation_settings(config)
        self.url = config.base_url.rstrip("/") + "/responses"
        self._key = key
        self._key_source = key_source
        self._services = services

    @classmethod
    def from_load(cls, load: LoadResult, services: "Services") -> "PackycodeProvider":
        assert load.config is not None
        return cls(load.config.packycode, key=load.packycode_key, key_source=load.packycode_key_source,
                   services=services)

    def __repr__(self) -> str:  # never show the key
        return f"PackycodeProvider(url={self.url!r}, identity={self.config.identity!r})"

    # ------------------------------------------------------------------ request

    def headers(self, conversation: str, request_id: str) -> dict[str, str]:
        """Upstream headers: the identity profile, auth, then ``packycode.headers`` overrides."""
        headers = identity_headers(self.config.identity, conversation, request_id, self._services.version,
                                   self.settings)
        headers["accept-encoding"] = "identity"  # SSE must not sit behind a decompressor
        if self.config.requires_openai_auth and self._key:
            headers["authorization"] = f"Bearer {self._key}"
        for name, value in self.config.headers:
            headers[name.lower()] = value
        return headers

    async def events(self, request: "MessagesRequest", ctx: "RequestContext") -> AsyncIterator[Batch]:
        estimate = estimate_request_tokens(request)
        attempt = self._attempt(request, ctx, estimate, include_reasoning=True)
        try:
            first = await attempt.__anext__()
        except StopAsyncIteration:
            return
        except PackydError as error:
            if not is_reasoning_rejected(error):
                raise
            # Reasoning blobs from another account or channel cannot be decrypted upstream;
            # the conversation still works without them (the model just re-thinks), so retry
            # once without replaying them rather than failing the user's turn.
            logs.log("info", "reasoning_replay_dropped", request_id=ctx.request_id, provider="packycode")
            attempt = self._attempt(request, ctx, estimate, include_reasoning=False)
            try:
                first = await attempt.__anext__()
            except StopAsyncIteration:
                return
        async with contextlib.aclosing(attempt):
            yield first
            async for batch in attempt:
                yield batch

    async def _attempt(self, request: "MessagesRequest", ctx: "RequestContext", estimate: int, *,
                       include_reasoning: bool) -> AsyncIterator[Batch]:
        """One upstream exchange for ``request``."""
        upstream = translate_request(request, self.settings, session_id=ctx.session_id,
                                     include_reasoning=include_reasoning)
        ctx.upstream_model = upstream.upstream_model
        if upstream.dropped:
            logs.log("debug", "features_not_forwarded", request_id=ctx.request_id, features=upstream.dropped)
        translator = StreamTranslator(requested_model=request.model, names=upstream.names, input_estimate=estimate,
                                      provider=PROVIDER_LABEL, context_window=self.settings.context_window,
                                      stop_sequences=request.stop_sequences)
        body = json.dumps(upstream.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        http = self._services.http
        if http is None:
            raise ApiError("packyd's upstream client is not running (is the daemon shutting down?)")
        timeouts = self.config.timeouts
        httpx_request = http.build_request(
            "POST", self.url, content=body, headers=self.headers(upstream.conversation_id, ctx.request_id),
            # trio deadlines below enforce first-byte and idle; httpx's read timeout is a backstop
            timeout=httpx.Timeout(connect=timeouts.connect, read=max(timeouts.first_byte, timeouts.idle) + 5.0,
                                  write=WRITE_TIMEOUT, pool=timeouts.connect),
        )
        limiter = self._services.limiter
        borrower = object()
        await limiter.acquire_on_behalf_of(borrower)
        try:
            ctx.attempts += 1
            # aclosing: when this generator is closed at a yield, the exchange (and its
            # upstream connection) is closed right there, not by the garbage collector
            async with contextlib.aclosing(self._exchange(http, httpx_request, translator, ctx, estimate)) as batches:
                async for batch in batches:
                    yield batch
        finally:
            limiter.release_on_behalf_of(borrower)

    async def _exchange(self, http: httpx.AsyncClient, httpx_request: httpx.Request, translator: StreamTranslator,
                        ctx: "RequestContext", estimate: int) -> AsyncIterator[Batch]:
        timeouts = self.config.timeouts
        started = trio.current_time()
        first_event_deadline = started + timeouts.first_byte
        response: httpx.Response | None = None
        try:
            try:
                with trio.move_on_at(first_event_deadline):
                    response = await http.send(httpx_request, stream=True)
            except httpx.HTTPError as error:
                raise self._transport_error(error, ctx, before_first_event=True) from None
            if response is None:
                raise self._timeout(ctx, timeouts.first_byte, first=True)
            logs.log("debug", "upstream_response", request_id=ctx.request_id, status=response.status_code,
                     ms=round((trio.current_time() - started) * 1000))
            if response.status_code != 200:
                raise await self._http_error(response, ctx, estimate, first_event_deadline)
            if "html" in response.headers.get("content-type", ""):
                # a web frontend answering in place of the API: a base-url without /v1 does that
                failure = mark(ApiError(f"{PROVIDER_LABEL} answered with a web page instead of an event stream; "
                                        "check that packycode.base-url is the API address ending in /v1",
                                        headers={"x-should-retry": "false"}),  # a config error: retrying won't help
                               retryable=False)
                self._log_failure(ctx, failure, in_stream=False, upstream_status=200)
                raise failure

            reads = response.aiter_bytes()
            parser = SSEParser()
            pending: Batch = []  # translated, not yet sent
            releasable = False  # an event beyond the lifecycle ones has arrived
            sent_first = False
            seen_event = False
            while True:
                if translator.done:
                    deadline = trio.current_time() + DRAIN_AFTER_TERMINAL
                elif seen_event:
                    deadline = trio.current_time() + timeouts.idle
                else:
                    deadline = first_event_deadline
                chunk = await self._read(reads, deadline, ctx, seen_event=seen_event)
                if translator.done:
                    if not chunk:
                        break  # the body ended after the terminal event (or dawdles: not worth waiting)
                    continue
                if chunk is None:
                    raise self._timeout(ctx, timeouts.idle if seen_event else timeouts.first_byte,
                                        first=not seen_event, answering=sent_first)
                failure: PackydError | None = None
                for event in parser.feed(chunk) if chunk else parser.close():
                    seen_event = True
                    payload = _decode(event)
                    try:
                        pending.extend(translator.feed(payload) if payload is not None else translator.feed_sse(event))
                    except PackydError as error:
                        failure = error
                        break
                    if payload is None or payload.get("type") not in LIFECYCLE_EVENTS:
                        releasable = True
                if not chunk and failure is None and not translator.done:
                    try:
                        translator.finish()  # always raises: EOF before a terminal event
                    except PackydError as error:
                        failure = error
                if failure is not None:
                    self._log_failure(ctx, failure, in_stream=sent_first)
                    if sent_first and pending:
                        yield pending  # what arrived before the failure; the error event follows
                    raise failure
                if translator.done:
                    self._record_usage(ctx, translator)
                elif releasable and pending:
                    yield pending
                    pending = []
                    sent_first = True
            if pending:
                yield pending
        finally:
            if response is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await response.aclose()

    async def _read(self, reads: AsyncIterator[bytes], deadline: float, ctx: "RequestContext", *,
                    seen_event: bool) -> bytes | None:
        """The next piece of the body; ``b""`` at its end, None when ``deadline`` passed first."""
        with trio.move_on_at(deadline):
            try:
                return await reads.__anext__()
            except StopAsyncIteration:
                return b""
            except httpx.HTTPError as error:
                raise self._transport_error(error, ctx, before_first_event=not seen_event) from None
        return None

    # ------------------------------------------------------------------ failures

    async def _http_error(self, response: httpx.Response, ctx: "RequestContext", estimate: int,
                          deadline: float) -> PackydError:
        body = bytearray()
        with trio.move_on_at(deadline):
            try:
                async for piece in response.aiter_bytes():
                    body += piece
                    if len(body) >= ERROR_BODY_LIMIT:
                        break
            except httpx.HTTPError:
                pass  # classify what arrived
        error = classify_http_error(
            response.status_code, response.headers, bytes(body[:ERROR_BODY_LIMIT]), provider=PROVIDER_LABEL,
            key_source=self._key_source, model=ctx.upstream_model, available_models=self.settings.models,
            input_tokens=estimate or None, context_window=self.settings.context_window,
        )
        self._log_failure(ctx, error, in_stream=False, upstream_status=response.status_code)
        return error

    def _transport_error(self, error: httpx.HTTPError, ctx: "RequestContext", *, before_first_event: bool) -> PackydError:
        kind = type(error).__name__
        if isinstance(error, httpx.ConnectTimeout):
            failure: PackydError = Overloaded(
                f"{PROVIDER_LABEL} did not accept a connection within {self.config.timeouts.connect:g}s "
                "(packycode.timeouts.connect); check packycode.base-url and the network")
        elif isinstance(error, (httpx.ConnectError, httpx.UnsupportedProtocol)):
            failure = Overloaded(f"{PROVIDER_LABEL} is unreachable ({kind}); check packycode.base-url and the network")
        elif isinstance(error, httpx.TimeoutException):
            failure = UpstreamTimeout(f"{PROVIDER_LABEL} stopped answering ({kind})")
        elif before_first_event:
            failure = ApiError(f"{PROVIDER_LABEL} closed the connection before answering ({kind})")
        else:
            failure = ApiError(f"{PROVIDER_LABEL}'s connection broke before the response was complete ({kind})")
        mark(failure, retryable=True)
        self._log_failure(ctx, failure, in_stream=not before_first_event, transport=kind)
        return failure

    def _timeout(self, ctx: "RequestContext", seconds: float, *, first: bool, answering: bool = False) -> PackydError:
        if first:
            failure = UpstreamTimeout(f"{PROVIDER_LABEL} sent nothing within {seconds:g}s "
                                      "(packycode.timeouts.first-byte)")
        elif answering:
            failure = UpstreamTimeout(f"{PROVIDER_LABEL} went silent for {seconds:g}s mid-answer "
                                      "(packycode.timeouts.idle)")
        else:  # it acknowledged the request (response.created) and then said nothing
            failure = UpstreamTimeout(f"{PROVIDER_LABEL} accepted the request, then went silent for {seconds:g}s "
                                      "(packycode.timeouts.idle)")
        mark(failure, retryable=True)
        self._log_failure(ctx, failure, in_stream=not first)
        return failure

    @staticmethod
    def _log_failure(ctx: "RequestContext", error: PackydError, *, in_stream: bool, **extra: Any) -> None:
        logs.log("warning", "upstream_failure", request_id=ctx.request_id, provider="packycode",
                 error_type=error.error_type, client_status=error.status, code=getattr(error, "upstream_code", None),
                 retryable=getattr(error, "retryable", None), in_stream=in_stream, **extra)

    @staticmethod
    def _record_usage(ctx: "RequestContext", translator: StreamTranslator) -> None:
        if translator.usage:
            ctx.usage = dict(translator.usage)


def _decode(event: SSEEvent) -> dict[str, Any] | None:
    """The event's JSON object (``type`` taken from the ``event:`` line when the payload lacks
    it); None when it is not a JSON object, which the translator then reports as malformed."""
    try:
        payload = json.loads(event.data)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    if "type" not in payload and event.event:
        payload["type"] = event.event
    return payload
