"""Errors packyd reports to its clients, in the Anthropic Messages API's shape.

Every failure a client can see is one of these. The HTTP layer turns one into a JSON
error response before the first byte, and the stream layer into an SSE ``error`` event after
it, so the two paths always agree on type and wording.

Messages are written for the person at the terminal: they say what went wrong and what to
change. They must never quote request or response content: the constructors take only
metadata, and callers reduce any upstream text to a short, prompt-free reason first.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "PackydError",
    "InvalidRequest",
    "AuthenticationFailed",
    "PermissionDenied",
    "NotFound",
    "MethodNotAllowed",
    "RequestTooLarge",
    "RateLimited",
    "ApiError",
    "Overloaded",
    "UpstreamTimeout",
    "Unavailable",
]


class PackydError(Exception):
    """An error with an HTTP status and an Anthropic ``error.type``.

    ``headers`` carries response headers that make the client retry sensibly
    (``retry-after``, ``x-should-retry``).
    """

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        """The JSON body Anthropic's API sends for this error (also the SSE ``error`` payload)."""
        payload: dict[str, Any] = {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
        }
        if request_id:
            payload["request_id"] = request_id
        return payload

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.error_type}, {self.message!r})"


class InvalidRequest(PackydError):
    """The client sent something packyd cannot serve: 400, never retried by clients."""

    status = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(PackydError):
    status = 401
    error_type = "authentication_error"


class PermissionDenied(PackydError):
    status = 403
    error_type = "permission_error"


class NotFound(PackydError):
    status = 404
    error_type = "not_found_error"


class MethodNotAllowed(PackydError):
    status = 405
    error_type = "invalid_request_error"


class RequestTooLarge(PackydError):
    status = 413
    error_type = "request_too_large"


class RateLimited(PackydError):
    status = 429
    error_type = "rate_limit_error"


class ApiError(PackydError):
    status = 500
    error_type = "api_error"


class Unavailable(PackydError):
    """packyd itself cannot serve (no usable provider): sent with ``x-should-retry: false``
    so Claude Code shows the message once instead of retrying for minutes."""

    status = 503
    error_type = "api_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers={"x-should-retry": "false", **(headers or {})})


class UpstreamTimeout(PackydError):
    status = 504
    error_type = "timeout_error"


class Overloaded(PackydError):
    status = 529
    error_type = "overloaded_error"

