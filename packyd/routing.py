"""Choosing providers for a request, and moving on to the next one before the first byte.

A provider turns a parsed Anthropic request into batches of Anthropic stream events
(:class:`packyd.providers.base.Provider`). Routing walks ``routing.fallback`` in order and
yields the first provider's events; a provider may fail (a :class:`PackydError`) only up to
its first batch for routing to try the next one, because after that bytes have reached the
client. Retries and the circuit breaker plug in here too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping, Sequence

from .errors import ApiError, PackydError, Unavailable
from .runtime import Runtime
from .services import Services

__all__ = ["RequestContext", "route_events", "NOT_CONFIGURED"]

Batch = Sequence[dict]

NOT_CONFIGURED = "packyd has no usable provider: "


@dataclass
class RequestContext:
    """Per-request metadata, filled in as the request travels (never content)."""

    request_id: str
    session_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    provider: str | None = None
    upstream_model: str | None = None
    attempts: int = 0
    usage: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_http(cls, request_id: str, headers: Mapping[str, str], parsed: Any) -> "RequestContext":
        from .translate.request import extract_session_id

        session = extract_session_id(headers, parsed.metadata_user_id)
        kept = {name: headers[name] for name in ("anthropic-version", "anthropic-beta", "user-agent")
                if name in headers}
        return cls(request_id=request_id, session_id=session, headers=kept)


def _chain(services: Services, runtime: Runtime) -> list[Any]:
    disabled: set[str] = services.extras.get("disabled_providers", set())
    chain = []
    for name in runtime.config.routing.fallback:
        provider = runtime.providers.get(name)
        if provider is not None and name not in disabled:
            chain.append(provider)
    return chain


async def route_events(services: Services, runtime: Runtime, request: Any,
                       ctx: RequestContext) -> AsyncIterator[Batch]:
    """Batches of the first provider in the chain that answers.

    Each provider's generator is closed deterministically (``aclosing``): when the client
    goes away or the stream ends, the upstream connection is released right there, not
    whenever the garbage collector finalizes the generator.
    """
    chain = _chain(services, runtime)
    if not chain:
        reason = runtime.load.packycode_reason or "no provider is enabled"
        raise Unavailable(NOT_CONFIGURED + reason)
    last_error: PackydError | None = None
    for provider in chain:
        ctx.provider = provider.name
        async with contextlib.aclosing(provider.events(request, ctx)) as events:
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                continue
            except PackydError as error:
                last_error = error
                continue
            yield first
            async for batch in events:
                yield batch
            return
    raise last_error or ApiError("no provider produced an answer")
