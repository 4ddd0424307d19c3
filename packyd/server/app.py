"""The Quart-Trio application: routes, client authentication, limits and error shapes.

Every answer is JSON in Anthropic's error shape, including 404/405/413 and crashes: Claude
Code and the SDKs parse error bodies, and an HTML page or a traceback would reach the user
as noise (or leak details). Routing decisions and upstream work live elsewhere; this module
only turns HTTP into calls and errors into responses.
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .. import logs
from ..errors import (
    ApiError,
    AuthenticationFailed,
    MethodNotAllowed,
    NotFound,
    PackydError,
    RequestTooLarge,
)
from ..services import Services
from . import admin, messages, ops

__all__ = ["create_app", "count_inflight", "json_response", "error_response"]

#: Paths that answer without a key: liveness checks (Claude Code sends ``HEAD /`` at start).
_OPEN_PATHS = frozenset({"/", "/healthz"})


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":"), ensure_ascii=False), status=status, headers=headers, content_type="application/json")


def error_response(error: PackydError, request_id: str | None = None) -> Response:
    headers = dict(error.headers)
    if request_id:
        headers["request-id"] = request_id
    return json_response(error.body(request_id), error.status, headers)


def new_request_id() -> str:
    return "req_packyd_" + secrets.token_hex(12)


def create_app(services: Services) -> QuartTrio:
    app = QuartTrio("packyd")
    config = services.holder.current.config
    # Quart's 60 s RESPONSE_TIMEOUT silently truncates long streams (reference/stack.md §1.5);
    # packyd enforces its own idle and drain limits instead.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 120
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_size
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.packyd = services  # type: ignore[attr-defined]

    @app.before_request
    async def authenticate() -> Response | None:
        request_id = new_request_id()
        request.packyd_id = request_id  # type: ignore[attr-defined]
        # The body limit follows reloads: Quart reads this per request.
        app.config["MAX_CONTENT_LENGTH"] = services.holder.current.config.max_body_size
        if request.path in _OPEN_PATHS:
            return None
        runtime_config = services.holder.current.config
        keys = runtime_config.api_keys
        if request.path.startswith(("/v0/", "/metrics")) and runtime_config.management_key:
            keys = (runtime_config.management_key,)
        if not keys:
            return None
        presented = _presented_keys()
        if not presented:
            return error_response(AuthenticationFailed(
                "packyd needs an API key: send one of the keys in packyd's api-keys setting as "
                "x-api-key or Authorization: Bearer (Claude Code: set ANTHROPIC_AUTH_TOKEN)"), request_id)
        if not any(_constant_time_in(candidate, keys) for candidate in presented):
            return error_response(AuthenticationFailed(
                "packyd did not accept this API key: it is not in packyd's api-keys setting"), request_id)
        return None

    @app.route("/", methods=["GET", "HEAD"])
    async def root() -> Response:
        return json_response({"service": "packyd", "version": services.version, "status": "ok"})

    @app.get("/healthz")
    async def healthz() -> Response:
        runtime = services.holder.current
        return json_response({
            "status": "draining" if services.draining.is_set() else "ok",
            "version": services.version,
            "generation": runtime.generation,
            "packycode": "usable" if runtime.load.packycode_usable else "not configured",
        })

    @app.post("/v1/messages")
    async def create_message() -> Response:
        return await messages.create_message(services, request)

    @app.post("/v1/messages/count_tokens")
    async def count_tokens() -> Response:
        return await messages.count_tokens(services, request)

    admin.register(app, services)
    ops.register(app, services)

    @app.after_request
    async def close_after_unread_body(response: Response) -> Response:
        # An error answered before the body was read (wrong key, body too large) leaves the rest
        # of the body in flight, and Hypercorn stops reading it: a client reusing the connection
        # would wait behind it forever. Such connections are closed once the answer is sent.
        if response.status_code >= 400 and (request.content_length or "transfer-encoding" in request.headers):
            response.headers["connection"] = "close"
        return response

    @app.errorhandler(PackydError)
    async def packyd_error(error: PackydError) -> Response:
        return error_response(error, getattr(request, "packyd_id", None))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        request_id = getattr(request, "packyd_id", None)
        if error.code == 404:
            return error_response(NotFound(f"packyd has no endpoint {request.method} {request.path}; "
                                           "Claude Code talks to /v1/messages"), request_id)
        if error.code == 405:
            return error_response(MethodNotAllowed(
                f"{request.path} does not accept {request.method}"), request_id)
        if error.code == 413:
            limit = services.holder.current.config.max_body_size
            return error_response(RequestTooLarge(
                f"request body is larger than packyd's limit of {_size(limit)} "
                "(max-body-size in config.yaml)"), request_id)
        return error_response(ApiError(f"HTTP {error.code}: {error.name}"), request_id)

    @app.errorhandler(Exception)
    async def crash(error: Exception) -> Response:
        request_id = getattr(request, "packyd_id", None)
        # Type name only: an exception message could quote request content.
        logs.log("error", "handler_crash", request_id=request_id, path=request.path, error=type(error).__name__)
        return error_response(ApiError("packyd hit an internal error; the request id is in packyd's log"),
                              request_id)

    return app


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"


def count_inflight(app: Any, services: Services) -> Any:
    """Wrap the ASGI app so ``services.inflight`` counts HTTP requests until their last byte.

    The count spans the whole ASGI call, which for a stream lasts until its body is sent, so
    shutdown can tell an idle keep-alive connection (safe to close) from a busy one.
    """

    async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        services.inflight += 1
        try:
            await app(scope, receive, send)
        finally:
            services.inflight -= 1
            if not services.inflight and services.draining.is_set():
                services.drained.set()

    return counted


def _presented_keys() -> list[str]:
    keys = []
    if value := request.headers.get("x-api-key"):
        keys.append(value.strip())
    authorization = request.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        keys.append(authorization[7:].strip())
    return keys


def _constant_time_in(candidate: str, keys: tuple[str, ...]) -> bool:
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate.encode(), key.encode())
    return found
