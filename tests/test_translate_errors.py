"""Upstream failure classification (DESIGN §6) and the privacy of its messages."""

from __future__ import annotations

import json

import pytest

from packyd.errors import (
    ApiError,
    InvalidRequest,
    Overloaded,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
)
from packyd.translate.errors import (
    classify_http_error,
    classify_stream_error,
    is_reasoning_rejected,
    is_retryable,
    short_reason,
    stream_cut_error,
    upstream_code,
)

SECRET = "MY SECRET PROMPT TEXT"


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def http(status: int, payload: bytes, headers: dict[str, str] | None = None, **kw):  # type: ignore[no-untyped-def]
    return classify_http_error(status, headers or {}, payload, provider="Packycode", key_source="config.yaml", **kw)


def test_bad_key_401_is_a_403_not_retried_and_names_the_source() -> None:
    """A 401 would make Claude Code blame the user's own token and hide this message."""
    err = http(401, body({"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "Incorrect API key provided: sk-abcdef123456"}}))
    assert isinstance(err, PermissionDenied) and err.status == 403
    assert err.message == "Packycode rejected the key; check packycode.credentials (source: config.yaml)"
    assert err.headers["x-should-retry"] == "false" and not is_retryable(err)
    assert "sk-abcdef" not in err.message


def test_403_key_and_identity_gating() -> None:
    err = http(403, b"Forbidden")
    assert isinstance(err, PermissionDenied) and "packycode.credentials (source: config.yaml)" in err.message
    gate = http(403, body({"error": {"message": "This account only allows Codex official clients"}}))
    assert isinstance(gate, PermissionDenied) and "identity" in gate.message
    instr = http(400, body({"detail": "Instructions are not valid"}))
    assert isinstance(instr, InvalidRequest) and "packycode.identity" in instr.message


def test_rate_limit_passes_retry_after() -> None:
    err = http(429, body({"error": {"type": "rate_limit_exceeded", "code": "rate_limit_exceeded", "message": "Rate limit reached"}}), {"Retry-After": "7"})
    assert isinstance(err, RateLimited) and err.headers == {"retry-after": "7"} and is_retryable(err)
    parsed = http(429, body({"error": {"code": "rate_limit_exceeded", "message": "Rate limit reached for gpt-5. Please try again in 11.054s."}}))
    assert parsed.headers == {"retry-after": "12"}
    ms = http(429, body({"error": {"code": "rate_limit_exceeded", "message": "Please try again in 250ms."}}))
    assert ms.headers == {"retry-after": "1"}


def test_quota_is_429_without_retries_naming_quota_and_reset() -> None:
    err = http(429, body({"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached", "plan_type": "plus", "resets_in_seconds": 1234}}))
    assert isinstance(err, RateLimited) and err.status == 429
    assert err.headers == {"x-should-retry": "false"} and not is_retryable(err)
    assert "usage_limit_reached" in err.message and "resets in 20m 34s" in err.message
    at = http(429, body({"error": {"code": "insufficient_quota", "message": "You exceeded your current quota", "resets_at": 1767225600}}))
    assert "resets at 2026-01-01 00:00 UTC" in at.message
    opaque = http(402, "今日额度已用完，请明天再试".encode())
    assert isinstance(opaque, RateLimited) and "额度" in opaque.message and opaque.headers["x-should-retry"] == "false"


def test_context_overflow_is_prompt_too_long() -> None:
    err = http(400, body({"error": {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "Your input exceeds the context window of this model."}}))
    assert isinstance(err, InvalidRequest) and err.message.startswith("prompt is too long")
    exact = http(400, body({"error": {"code": "context_length_exceeded"}}), input_tokens=300000, context_window=272000)
    assert exact.message.startswith("prompt is too long: 300000 tokens > 272000 maximum")
    worded = http(400, body({"detail": "Your input exceeds the context window of this model."}))
    assert worded.message.startswith("prompt is too long")


def test_unknown_model_names_the_model_and_the_alternatives() -> None:
    err = http(400, body({"detail": "The 'gpt-4.1' model is not supported when using Codex with a ChatGPT account."}), model="gpt-4.1", available_models=["gpt-5", "gpt-5-codex"])
    assert isinstance(err, InvalidRequest) and err.status == 400
    assert "'gpt-4.1'" in err.message and "gpt-5, gpt-5-codex" in err.message
    nf = http(404, body({"error": {"code": "model_not_found", "message": "The model `x` does not exist"}}), model="x")
    assert isinstance(nf, InvalidRequest) and upstream_code(nf) == "model_not_found"


def test_server_errors() -> None:
    e500 = http(500, body({"error": {"type": "server_error", "message": "boom"}}))
    assert isinstance(e500, ApiError) and is_retryable(e500)
    e503 = http(503, b"upstream connect error")
    assert isinstance(e503, Overloaded) and e503.status == 529
    html = http(502, b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>")
    assert isinstance(html, Overloaded) and "HTML page (502 Bad Gateway)" in html.message
    overloaded = http(500, body({"error": {"code": "server_is_overloaded", "message": "busy"}}))
    assert isinstance(overloaded, Overloaded)


def test_other_4xx_keep_code_but_not_content() -> None:
    err = http(400, body({"error": {"type": "invalid_request_error", "code": "unsupported_parameter", "param": "temperature", "message": f"Unsupported parameter: '{SECRET}' is not supported"}}))
    assert isinstance(err, InvalidRequest) and not is_retryable(err)
    assert "unsupported_parameter" in err.message and "Unsupported parameter" in err.message
    assert SECRET not in err.message
    detail = http(400, body({"detail": "Store must be set to false"}))
    assert "Store must be set to false" in detail.message
    assert isinstance(http(413, b""), RequestTooLarge)


def test_reasoning_rejection_is_flagged_for_a_retry_without_reasoning() -> None:
    err = http(400, body({"error": {"code": "invalid_encrypted_content", "message": "The encrypted content could not be verified."}}))
    assert isinstance(err, InvalidRequest) and is_reasoning_rejected(err)
    s = classify_stream_error({"type": "response.failed", "response": {"error": {"code": "invalid_encrypted_content", "message": "x"}}})
    assert is_reasoning_rejected(s)


@pytest.mark.parametrize(
    "payload, cls, retry",
    [
        ({"type": "error", "error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "quota", "param": None}}, RateLimited, False),
        ({"type": "error", "code": None, "message": "Sorry, something went wrong.", "param": None}, ApiError, True),
        ({"type": "error", "error": {"type": "server_error", "code": None, "message": "Sorry"}}, ApiError, True),
        ({"type": "response.failed", "response": {"error": {"code": "rate_limit_exceeded", "message": "Please try again in 2s."}}}, RateLimited, True),
        ({"type": "response.failed", "response": {"error": {"code": "server_is_overloaded", "message": "x"}}}, Overloaded, True),
        ({"type": "response.failed", "response": {"error": {"code": "invalid_prompt", "message": f"Invalid prompt: {SECRET}"}}}, InvalidRequest, False),
        ({"type": "response.failed", "response": {"error": None}}, ApiError, True),
        ({"type": "response.failed", "response": {"error": {"code": "context_length_exceeded", "message": "x"}}}, InvalidRequest, False),
    ],
)
def test_stream_errors(payload: dict, cls: type, retry: bool) -> None:  # type: ignore[type-arg]
    err = classify_stream_error(payload)
    assert type(err) is cls and is_retryable(err) is retry
    assert SECRET not in err.message
    if cls is RateLimited and retry:
        assert err.headers == {"retry-after": "2"}


def test_short_reason_privacy() -> None:
    assert short_reason(f"Invalid value: '{SECRET}'") == "Invalid value"
    assert short_reason(f'bad "{SECRET}"') == "bad"
    assert short_reason(f"line one\n{SECRET}") == "line one"
    assert short_reason("key sk-proj-abcdefghijkl leaked") == "key sk-… leaked"
    long = short_reason("word " * 100)
    assert len(long) <= 120 and long.endswith("…")
    assert short_reason({"nested": "x"}) == ""  # JSON gets cut at its first bracket
    assert short_reason(None) == ""


def test_cut_stream_error() -> None:
    err = stream_cut_error()
    assert isinstance(err, ApiError) and is_retryable(err)
    assert err.body()["error"] == {"type": "api_error", "message": "Packycode closed the stream before the response was complete"}
