"""Upstream failures → the ``PackydError`` that makes Claude Code do the right thing (DESIGN §6).

The status and type are chosen for Claude Code's measured reactions (claude-code.md §9):
it retries 401/429/5xx about ten times and 529 three times, gives up at once on 400/403,
compacts on a 400 whose message starts with "prompt is too long", and stops retrying on
``x-should-retry: false``. So quota exhaustion is a 429 with ``x-should-retry: false`` (no
three-minute retry storm), a key the upstream rejects is a 403 (a 401 would make Claude Code
blame the user's own token and hide the message), and context overflow is a 400 in
Anthropic's own wording.

Privacy: upstream error messages can echo the prompt (``Invalid value: '…'``). Only a short
reason survives: the first line, cut before the first quote or ``": "``, capped, with anything
key-like masked. Request content never enters a message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from packyd.errors import (
    ApiError,
    InvalidRequest,
    Overloaded,
    PackydError,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
)

__all__ = [
    "classify_http_error",
    "classify_stream_error",
    "stream_cut_error",
    "is_retryable",
    "upstream_code",
    "is_reasoning_rejected",
    "short_reason",
    "prompt_too_long",
]

_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "usage_limit_reached",
        "usage_not_included",
        "quota_exceeded",
        "billing_hard_limit_reached",
        "billing_not_active",
        "daily_limit_exceeded",
        "monthly_limit_exceeded",
    }
)
_QUOTA_WORDS = re.compile(r"quota|usage limit|credit|balance|billing|额度|余额|配额|用量|套餐", re.IGNORECASE)
_IDENTITY_WORDS = re.compile(r"official client|codex (cli|client)|only allows|client not allowed|instructions are not valid", re.IGNORECASE)
_CONTEXT_CODES = frozenset({"context_length_exceeded", "context_window_exceeded", "string_above_max_length_input"})
_CONTEXT_WORDS = re.compile(r"context (window|length)|maximum context|too many tokens|prompt is too long", re.IGNORECASE)
_MODEL_CODES = frozenset({"model_not_found", "unsupported_model", "model_not_supported"})
_MODEL_WORDS = re.compile(r"model .{0,80}(not (supported|found|exist)|does not exist|unknown)|unknown model|no such model", re.IGNORECASE)
_OVERLOAD_CODES = frozenset({"server_is_overloaded", "slow_down", "overloaded", "engine_overloaded"})
_REASONING_CODES = frozenset({"invalid_encrypted_content", "thinking_signature_invalid"})
_SAFETY_CODES = frozenset({"invalid_prompt", "cyber_policy", "bio_policy", "content_policy_violation", "content_filter"})
_TRY_AGAIN = re.compile(r"try again in\s*(\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)
_KEYLIKE = re.compile(r"\b(sk|pk|rk|ak)-[A-Za-z0-9_\-]{6,}")
_CUT = re.compile(r"""['"`\u2018\u2019\u201c\u201d]|:\s|[{\[<]""")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_MAX_REASON = 120
_CODE_OK = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


# --------------------------------------------------------------------------- marks


def _mark(err: PackydError, *, retryable: bool, code: str | None = None, reasoning: bool = False) -> PackydError:
    err.retryable = retryable  # type: ignore[attr-defined]
    err.upstream_code = code  # type: ignore[attr-defined]
    err.reasoning_rejected = reasoning  # type: ignore[attr-defined]
    return err


def is_retryable(err: BaseException) -> bool:
    """Whether packyd itself may retry (before the first byte) or fall back to another
    provider. Errors not made here: retry only the transient classes."""
    flag = getattr(err, "retryable", None)
    if flag is not None:
        return bool(flag)
    return isinstance(err, (ApiError, Overloaded)) or getattr(err, "status", 0) in (408, 409, 504)


def upstream_code(err: BaseException) -> str | None:
    return getattr(err, "upstream_code", None)


def is_reasoning_rejected(err: BaseException) -> bool:
    """The upstream refused a replayed reasoning blob (another channel's, or damaged): the
    request can be retried once with ``translate_request(..., include_reasoning=False)``."""
    return bool(getattr(err, "reasoning_rejected", False))


# --------------------------------------------------------------------------- text hygiene


def short_reason(message: Any, *, cut: bool = True, limit: int = _MAX_REASON) -> str:
    """A single-line, capped reason that cannot carry prompt text.

    ``cut`` stops at the first quote, colon-space or bracket, where upstream messages start
    quoting input (``Invalid value: '…'``); quota messages, which never quote the prompt but
    are the only place the reset time is stated, are passed with ``cut=False``.
    """
    if message is None:
        return ""
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    text = message.strip().splitlines()[0] if message.strip() else ""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = _KEYLIKE.sub(lambda m: m.group(1) + "-…", text)
    if cut:
        m = _CUT.search(text)
        if m:
            text = text[: m.start()]
    text = " ".join(text.split()).rstrip(" ,;:-(")
    if len(text) > limit:
        text = text[: limit - 1].rsplit(" ", 1)[0] + "…"
    return text


def _code(value: Any) -> str | None:
    return value if isinstance(value, str) and _CODE_OK.match(value) else None


def _parse_body(body: bytes) -> tuple[str | None, str | None, Any, dict[str, Any], str]:
    """(code, type, message, extra fields, kind) from any of the three body shapes."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None, None, None, {}, "empty"
    if text[:1] in "{[":
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            err = doc.get("error")
            if isinstance(err, dict):
                code = _code(err.get("code")) or _code(err.get("type"))
                return code, _code(err.get("type")), err.get("message"), err, "json"
            if isinstance(err, str):
                return None, None, err, doc, "json"
            if "detail" in doc:
                detail = doc["detail"]
                if isinstance(detail, dict):
                    code = _code(detail.get("code")) or _code(detail.get("type"))
                    return code, _code(detail.get("type")), detail.get("message", detail), detail, "detail"
                return None, None, detail, doc, "detail"
            if "message" in doc:
                return _code(doc.get("code")), _code(doc.get("type")), doc.get("message"), doc, "json"
    if text[:1] == "<" or "<html" in text[:200].lower():
        m = _TITLE.search(body)
        title = m.group(1).decode("utf-8", "replace") if m else None
        return None, None, title, {}, "html"
    return None, None, text, {}, "text"


def _retry_after(headers: Mapping[str, str], message: Any) -> str | None:
    for key in ("retry-after", "Retry-After"):
        value = headers.get(key)
        if value:
            return value.strip()
    if isinstance(message, str):
        m = _TRY_AGAIN.search(message)
        if m:
            secs = float(m.group(1)) / (1000 if m.group(2).lower() == "ms" else 1)
            return str(max(1, math.ceil(secs)))
    return None


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m {s}s"
    return f"{s}s"


def _reset_hint(extra: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    secs = extra.get("resets_in_seconds")
    if isinstance(secs, (int, float)) and not isinstance(secs, bool):
        return f"; resets in {_duration(secs)}"
    at = extra.get("resets_at")
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        import datetime as _dt

        stamp = _dt.datetime.fromtimestamp(at, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return f"; resets at {stamp}"
    if isinstance(at, str) and len(at) <= 40:
        return f"; resets at {short_reason(at, cut=False, limit=40)}"
    for key in ("x-codex-primary-reset-after-seconds", "x-ratelimit-reset-requests"):
        value = headers.get(key)
        if value:
            try:
                return f"; resets in {_duration(float(value))}"
            except ValueError:
                pass
    return ""


def prompt_too_long(input_tokens: int | None = None, context_window: int | None = None, code: str | None = None) -> InvalidRequest:
    """Anthropic's overflow wording, which Claude Code matches to start compaction."""
    if input_tokens and context_window:
        msg = f"prompt is too long: {input_tokens} tokens > {context_window} maximum"
    else:
        msg = "prompt is too long: the conversation exceeds the upstream model's context window"
    if code:
        msg += f" (Packycode: {code})"
    return _mark(InvalidRequest(msg), retryable=False, code=code)  # type: ignore[return-value]


def _quota(code: str | None, message: Any, extra: Mapping[str, Any], headers: Mapping[str, str], provider: str) -> PackydError:
    label = code or "quota exhausted"
    reason = short_reason(message, cut=False, limit=200)
    msg = f"{provider} usage quota exhausted ({label})" + _reset_hint(extra, headers)
    if reason:
        msg += f": {reason}"
    return _mark(RateLimited(msg, headers={"x-should-retry": "false"}), retryable=False, code=code)


def _model_error(model: str | None, available: Sequence[str], code: str | None, provider: str) -> PackydError:
    name = f"'{model}'" if model else "the requested model"
    msg = f"{provider} does not serve model {name}"
    if available:
        msg += "; available: " + ", ".join(available[:20])
    msg += " (map the client's model name to one of them in packycode.model-map)"
    return _mark(InvalidRequest(msg), retryable=False, code=code or "model_not_found")


def _with_reason(prefix: str, code: str | None, message: Any) -> str:
    reason = short_reason(message)
    inner = "; ".join(x for x in (code, reason) if x)
    return f"{prefix} ({inner})" if inner else prefix


# --------------------------------------------------------------------------- HTTP


def classify_http_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str = "Packycode",
    key_source: str = "unknown",
    model: str | None = None,
    available_models: Sequence[str] = (),
    input_tokens: int | None = None,
    context_window: int | None = None,
) -> PackydError:
    """The error to give the client for a non-2xx upstream answer received before streaming."""
    code, etype, message, extra, kind = _parse_body(body)
    low_msg = message.lower() if isinstance(message, str) else ""
    text_for_words = message if isinstance(message, str) else ""

    if code in _CONTEXT_CODES or (status in (400, 413, 422) and _CONTEXT_WORDS.search(text_for_words)):
        return prompt_too_long(input_tokens, context_window, code or "context_length_exceeded")
    if code in _REASONING_CODES:
        err = InvalidRequest(f"{provider} rejected replayed reasoning from an earlier turn ({code})")
        return _mark(err, retryable=False, code=code, reasoning=True)
    if code in _QUOTA_CODES or etype in _QUOTA_CODES or (
        status in (402, 403, 429) and _QUOTA_WORDS.search(text_for_words) and "rate limit" not in low_msg
    ):
        return _quota(code or etype, message, extra, headers, provider)
    if status == 401:
        # 403, not 401: Claude Code answers a 401 with "Invalid API key · Fix external API
        # key" (pointing at the user's own token, and hiding this message) after retrying
        # eleven times; a 403 shows the message at once. The key at fault is packyd's.
        err = PermissionDenied(
            f"{provider} rejected the key; check packycode.credentials (source: {key_source})",
            headers={"x-should-retry": "false"},
        )
        return _mark(err, retryable=False, code=code)
    if status == 403:
        if _IDENTITY_WORDS.search(text_for_words):
            msg = _with_reason(
                f"{provider} refused this client identity; try another packycode.identity", code, message
            )
            return _mark(PermissionDenied(msg), retryable=False, code=code)
        err = PermissionDenied(
            f"{provider} rejected the key; check packycode.credentials (source: {key_source})"
            + (f" ({code})" if code else "")
        )
        return _mark(err, retryable=False, code=code)
    if code in _MODEL_CODES or (status in (400, 404) and _MODEL_WORDS.search(text_for_words)):
        return _model_error(model, available_models, code, provider)
    if status == 429:
        retry_after = _retry_after(headers, message)
        hdrs = {"retry-after": retry_after} if retry_after else {}
        msg = _with_reason(f"{provider} rate limit reached", code, message)
        return _mark(RateLimited(msg, headers=hdrs), retryable=True, code=code)
    if status == 413:
        return _mark(RequestTooLarge(f"{provider} refused the request as too large"), retryable=False, code=code)
    if status in (408, 409):
        return _mark(ApiError(_with_reason(f"{provider} answered {status}", code, message)), retryable=True, code=code)
    if status >= 500 or kind == "html":
        if kind == "html":
            title = short_reason(message) or "an HTML page"
            msg = f"{provider}'s gateway answered {status} with an HTML page ({title})"
        else:
            msg = _with_reason(f"{provider} server error {status}", code, message)
        overloaded = status in (502, 503, 529) or code in _OVERLOAD_CODES
        err = Overloaded(msg) if overloaded else ApiError(msg)
        return _mark(err, retryable=True, code=code)
    if code in _SAFETY_CODES:
        return _mark(InvalidRequest(f"{provider} refused the request for safety reasons ({code})"), retryable=False, code=code)
    if _IDENTITY_WORDS.search(text_for_words):
        msg = _with_reason(f"{provider} refused this client identity; try another packycode.identity", code, message)
        return _mark(InvalidRequest(msg), retryable=False, code=code)
    # any other 4xx: the request shape was rejected; retrying the same body cannot help
    return _mark(
        InvalidRequest(_with_reason(f"{provider} rejected the request with {status}", code, message)),
        retryable=False,
        code=code,
    )


# --------------------------------------------------------------------------- in-stream


def classify_stream_error(
    payload: Mapping[str, Any],
    *,
    provider: str = "Packycode",
    model: str | None = None,
    available_models: Sequence[str] = (),
    input_tokens: int | None = None,
    context_window: int | None = None,
) -> PackydError:
    """The error for a ``response.failed`` event or an ``error`` event (top-level or nested
    shape, ``code`` possibly null)."""
    err: Any
    if payload.get("type") == "response.failed" or "response" in payload:
        response = payload.get("response")
        err = response.get("error") if isinstance(response, Mapping) else None
        if not isinstance(err, Mapping):
            err = {}
    else:
        nested = payload.get("error")
        err = nested if isinstance(nested, Mapping) else payload
    code = _code(err.get("code")) or None
    etype = _code(err.get("type"))
    if etype == "error":
        etype = None
    message = err.get("message")
    any_code = code or etype
    text = message if isinstance(message, str) else ""
    if any_code in _CONTEXT_CODES or _CONTEXT_WORDS.search(text):
        return prompt_too_long(input_tokens, context_window, any_code or "context_length_exceeded")
    if any_code in _QUOTA_CODES or etype in _QUOTA_CODES:
        return _quota(any_code, message, err, {}, provider)
    if any_code in _REASONING_CODES:
        e = InvalidRequest(f"{provider} rejected replayed reasoning from an earlier turn ({any_code})")
        return _mark(e, retryable=False, code=any_code, reasoning=True)
    if any_code == "rate_limit_exceeded":
        retry_after = _retry_after({}, message)
        msg = _with_reason(f"{provider} rate limit reached", any_code, message)
        return _mark(RateLimited(msg, headers={"retry-after": retry_after} if retry_after else {}), retryable=True, code=any_code)
    if any_code in _OVERLOAD_CODES:
        return _mark(Overloaded(f"{provider} is overloaded ({any_code})"), retryable=True, code=any_code)
    if any_code in _MODEL_CODES:
        return _model_error(model, available_models, any_code, provider)
    if any_code in _SAFETY_CODES:
        return _mark(
            InvalidRequest(f"{provider} refused the request for safety reasons ({any_code})"),
            retryable=False,
            code=any_code,
        )
    if any_code == "invalid_request_error":
        return _mark(InvalidRequest(_with_reason(f"{provider} rejected the request", any_code, message)), retryable=False, code=any_code)
    return _mark(ApiError(_with_reason(f"{provider} stream failed", any_code, message)), retryable=True, code=any_code)


def stream_cut_error(provider: str = "Packycode") -> PackydError:
    """Upstream ended without a terminal event (Codex: "stream closed before
    response.completed"): transient, and Claude Code recovers by retrying without streaming."""
    return _mark(ApiError(f"{provider} closed the stream before the response was complete"), retryable=True)
