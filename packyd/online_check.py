"""``packyd check-config --online``: one tiny upstream request, and what its answer means.

Validation alone cannot tell a typo in the key from a working one, nor a model the plan does
not include from one it does. This check sends the smallest request packyd would really send
— built by the same translator and provider headers, so it passes or fails for the same
reasons real traffic would — and classifies the answer: accepted, bad key, quota or usage
limit, unknown model, client identity refused, request shape rejected (with the upstream's
short reason, sanitized), rate limited, upstream error, or unreachable / TLS failure.

The prompt is a fixed word of packyd's own, never user content; reading stops at the first
sign of output so the call costs almost nothing. The key is never printed: only
``sk-…last4`` and where it came from.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TextIO

import httpx

from . import __version__
from .config import LoadResult, mask_secret

__all__ = ["OnlineResult", "check_online", "run_online", "EXIT_FAILED"]

#: ``check-config`` exit code when the file is valid but the upstream refused or was unreachable.
EXIT_FAILED = 3
#: longest wait for the first event, whatever ``timeouts.first-byte`` says (this is a probe)
PROBE_FIRST_EVENT = 60.0
#: events that prove the request was accepted and the model is producing output (an item
#: merely *added* does not: relays have failed the response right after that)
_OUTPUT_EVENTS = ("response.output_text.delta", "response.reasoning_summary_text.delta",
                  "response.function_call_arguments.delta", "response.output_item.done", "response.completed")
_FAILED_EVENTS = ("response.failed", "error", "response.incomplete")


@dataclass(frozen=True)
class OnlineResult:
    #: accepted | bad-key | identity-refused | quota | unknown-model | rejected | rate-limited |
    #: upstream-error | unreachable | tls | timeout | not-configured
    outcome: str
    message: str
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "accepted"


def _probe_body(load: LoadResult) -> tuple[dict[str, Any], dict[str, str], str]:
    """(body, headers, model) exactly as the provider would build them for a one-word prompt."""
    from .providers.packycode import PackycodeProvider
    from .translate.messages import parse_messages_request
    from .translate.request import translate_request

    assert load.config is not None
    packycode = load.config.packycode
    provider = PackycodeProvider(packycode, key=load.packycode_key, key_source=load.packycode_key_source,
                                 services=SimpleNamespace(version=__version__))
    model = packycode.defaults.model
    # The lowest effort the model accepts (translation clamps it): the probe should be cheap.
    request = parse_messages_request({
        "model": f"{model}(minimal)", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Reply with the single word: ok"}],
    })
    upstream = translate_request(request, provider.settings, session_id=f"packyd-online-check-{uuid.uuid4()}")
    headers = provider.headers(upstream.conversation_id, "req_packyd_check_" + uuid.uuid4().hex[:12])
    return upstream.body, headers, upstream.upstream_model


def check_online(load: LoadResult) -> OnlineResult:
    """Make the call; never raises for anything the network or the upstream does."""
    from .translate.errors import classify_http_error, classify_stream_error

    if load.config is None:
        return OnlineResult("not-configured", "the configuration is not valid; fix the problems above first")
    if not load.packycode_usable:
        return OnlineResult("not-configured", f"Packycode is not usable: {load.packycode_reason}")
    packycode = load.config.packycode
    body, headers, model = _probe_body(load)
    url = packycode.base_url.rstrip("/") + "/responses"
    first_event = min(packycode.timeouts.first_byte, PROBE_FIRST_EVENT)
    timeout = httpx.Timeout(connect=packycode.timeouts.connect, read=first_event, write=30.0,
                            pool=packycode.timeouts.connect)
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    try:
        with httpx.Client(timeout=timeout) as client:
            with client.stream("POST", url, content=content, headers=headers) as response:
                if response.status_code != 200:
                    raw = b""
                    for piece in response.iter_bytes():
                        raw += piece
                        if len(raw) > 64 * 1024:
                            break
                    error = classify_http_error(response.status_code, response.headers, raw,
                                                key_source=load.packycode_key_source, model=model)
                    return _classified(error, response.status_code)
                return _read_stream(response, model, first_event, classify_stream_error)
    except httpx.TimeoutException as error:
        what = "connecting" if isinstance(error, (httpx.ConnectTimeout, httpx.PoolTimeout)) else "waiting for an answer"
        return OnlineResult("timeout", f"no answer from {url} ({what} timed out); check the network, a proxy, or "
                                       "packycode.timeouts")
    except httpx.ConnectError as error:
        if _is_tls(error):
            return OnlineResult("tls", f"TLS handshake with {url} failed ({_tls_reason(error)}); check the system "
                                       "clock and CA certificates, or a proxy that intercepts TLS")
        return OnlineResult("unreachable", f"cannot connect to {url} ({_short(error)}); check packycode.base-url, "
                                           "DNS and the network")
    except httpx.HTTPError as error:
        return OnlineResult("unreachable", f"{url} broke the connection ({type(error).__name__}); "
                                           "check packycode.base-url")


def _read_stream(response: httpx.Response, model: str, first_event: float, classify_stream_error: Any) -> OnlineResult:
    from .sse import SSEParser

    parser = SSEParser()
    deadline = time.monotonic() + first_event
    for piece in response.iter_bytes():
        for event in parser.feed(piece):
            try:
                payload = json.loads(event.data)
            except ValueError:
                continue
            kind = payload.get("type") if isinstance(payload, dict) else None
            if kind in _OUTPUT_EVENTS:
                return OnlineResult("accepted", f"Packycode accepted the key and answers with model {model}",
                                    200)
            if kind in _FAILED_EVENTS:
                if kind == "response.incomplete":
                    return OnlineResult("accepted", f"Packycode accepted the key; model {model} started answering",
                                        200)
                return _classified(classify_stream_error(payload, model=model), 200)
        if time.monotonic() > deadline:
            break
    return OnlineResult("upstream-error", "Packycode answered 200 but sent no output event before the stream "
                                          "ended; is packycode.base-url a Responses API (ending in /v1)?", 200)


def _classified(error: Any, status: int) -> OnlineResult:
    """Turn the provider's own error classification into an outcome (one vocabulary for both)."""
    from .errors import AuthenticationFailed, InvalidRequest, PermissionDenied, RateLimited
    from .translate.errors import upstream_code

    message = error.message
    code = upstream_code(error)
    if isinstance(error, AuthenticationFailed):
        outcome = "bad-key"
    elif isinstance(error, PermissionDenied):
        outcome = "identity-refused" if "identity" in message else "bad-key"
    elif isinstance(error, RateLimited):
        outcome = "quota" if error.headers.get("x-should-retry") == "false" else "rate-limited"
    elif isinstance(error, InvalidRequest) and (code in {"model_not_found", "unsupported_model",
                                                         "model_not_supported"} or "does not serve model" in message):
        outcome = "unknown-model"
    elif isinstance(error, InvalidRequest):
        outcome = "rejected"
    else:
        outcome = "upstream-error"
    return OnlineResult(outcome, message, status)


def _is_tls(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen) or "CERTIFICATE" in str(seen).upper():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _tls_reason(error: BaseException) -> str:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return getattr(seen, "reason", None) or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return _short(error)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())[:160]
    return text or type(error).__name__


_ADVICE = {
    "bad-key": "check packycode.credentials (or PACKYD_PACKYCODE_API_KEY / ~/.codex/auth.json): the key is wrong, "
               "revoked, or for another Packycode line (Codex keys come from the Codex console)",
    "identity-refused": "Packycode wants requests to look like Codex CLI: try packycode.identity: codex-cli "
                        "or codex-legacy",
    "quota": "the plan's quota or usage limit is used up; wait for the reset or top up, the key itself is fine",
    "unknown-model": "set packycode.defaults.model (and model-map targets) to a model your plan includes",
    "rejected": "Packycode refused the request's shape; try another packycode.identity, and report this with the "
                "reason above",
    "rate-limited": "the key works but is being rate limited right now; try again shortly",
    "upstream-error": "Packycode had a server-side problem; try again later",
}


def run_online(load: LoadResult, out: TextIO | None = None) -> int:
    """Print the outcome for ``check-config --online``; returns 0 or :data:`EXIT_FAILED`."""
    out = out or sys.stdout
    result = check_online(load)
    key = load.packycode_key
    message = result.message.replace(key, mask_secret(key)) if key else result.message
    where = load.config.packycode.base_url if load.config is not None else "?"
    key_text = f"key {mask_secret(key)} from {load.packycode_key_source}" if key else "no key"
    status = f" (HTTP {result.status})" if result.status and result.status != 200 else ""
    print(f"online check: {result.outcome}{status} — {message}", file=out)
    print(f"  upstream {where}; {key_text}", file=out)
    if result.outcome in _ADVICE:
        print(f"  fix: {_ADVICE[result.outcome]}", file=out)
    return 0 if result.ok else EXIT_FAILED
