"""The provider interface: an Anthropic request in, batches of Anthropic stream events out.

Every upstream, whatever its wire format, is reduced to one async generator so that routing,
retries, fallback and the HTTP layer never need to know which upstream served a request.

The contract (routing and ``server/`` rely on every point of it):

* ``events(request, ctx)`` is an async generator of **batches**: lists of Anthropic event
  dicts (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``), each
  batch written to the client in one send. A batch holds everything translated from one
  upstream read, so writes follow reads instead of events.
* The **first batch** starts with ``message_start`` and is yielded only once the upstream has
  really answered: response headers with a 2xx status *and* at least one upstream event. Until
  then nothing has reached the client, so any failure is raised as a
  :class:`~packyd.errors.PackydError` from the first ``__anext__``, and routing may retry the
  same provider or fall back to the next one. Whether that makes sense is
  :func:`packyd.translate.errors.is_retryable` (the ``retryable`` attribute the classifiers
  and :func:`mark` set; quota, bad key and client mistakes are not retryable).
* **After the first batch**, a raised ``PackydError`` becomes an SSE ``error`` event, sent at
  once with the interrupted content block left open (``server/streaming.py``). A provider
  never closes a block to "tidy up" before failing, and never raises anything else: an
  unexpected exception is a bug, reported to the client as a generic ``api_error``.
* The last batch of a successful answer ends with ``message_stop``. Ending the generator
  without it (upstream EOF before a terminal event) is a failure the provider must raise.
* Cancellation (a client that went away) may arrive at any ``await``; the provider closes
  its upstream connection at once and releases what it holds. Providers hold no cancel scope
  or nursery across a ``yield`` (the first ``__anext__`` runs in the request handler's task,
  the rest in the streaming body's reader task).
* The provider fills :class:`~packyd.routing.RequestContext` as it learns things:
  ``upstream_model``, ``attempts`` (one per upstream request it sent) and ``usage``
  (``input_tokens``/``output_tokens`` plus the cache fields, from the terminal event).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Protocol, runtime_checkable

from ..errors import PackydError

if TYPE_CHECKING:
    from ..routing import RequestContext
    from ..translate.messages import MessagesRequest

__all__ = ["Batch", "Provider", "mark"]

#: Anthropic stream events translated from one upstream read, sent to the client in one write.
Batch = list[dict[str, Any]]


@runtime_checkable
class Provider(Protocol):
    """An upstream that can answer Anthropic Messages requests (see the module docstring)."""

    #: the name used in ``routing.fallback``, logs, metrics and the ``x-packyd-provider`` header
    name: str

    def events(self, request: "MessagesRequest", ctx: "RequestContext") -> AsyncIterator[Batch]:
        """Serve one request as batches of Anthropic events (an async generator)."""
        ...


def mark(error: PackydError, *, retryable: bool, code: str | None = None) -> PackydError:
    """Record on ``error`` whether routing may retry it, the way ``translate/errors.py``'s
    classifiers do, for errors a provider makes itself (transport failures, timeouts)."""
    error.retryable = retryable  # type: ignore[attr-defined]
    error.upstream_code = code  # type: ignore[attr-defined]
    return error
