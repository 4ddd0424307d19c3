"""``packyd status``: what the running daemon uses, and where each setting came from.

Exit codes follow LSB ``status`` conventions so scripts can rely on them: 0 running, 3 not
running, 1 it answered but not usefully (wrong key, not packyd).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "render"]

NOT_RUNNING = 3


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..daemon_client import add_target_arguments

    parser = commands.add_parser(
        "status", help="show the running daemon's state, settings and their sources",
        description="Ask the running packyd (GET /v0/status) what it is using: version, uptime, config "
                    "generation and last reload, every packycode setting with its effective source, "
                    "providers and registered models. Host, port and key come from the config "
                    "(management-key, else the first api-key); $PACKYD_API_KEY overrides the key.",
        epilog="exit codes: 0 running, 3 not running, 1 it answered but not usefully")
    add_target_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the status document as JSON, for scripts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..daemon_client import DaemonError, NotRunning, get_json, resolve_target

    try:
        target = resolve_target(args)
    except OSError as error:
        print(f"cannot read the config to find packyd: {error.strerror} ({error.filename}); "
              "run as a user that can read it (e.g. sudo), or pass --url and $PACKYD_API_KEY", file=sys.stderr)
        return 1
    try:
        document = get_json(target, "/v0/status", args.timeout)
    except NotRunning as error:
        print(f"packyd is not running: {error} (address from {target.source}). Start it with "
              "`sudo systemctl start packyd` or `packyd serve`, or pass --url if it listens elsewhere.",
              file=sys.stderr)
        return NOT_RUNNING
    except DaemonError as error:
        print(str(error), file=sys.stderr)
        return 1
    if args.json:
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print(render(document, target.url))
    return 0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m" if minutes or hours or days else f"{secs}s")
    return " ".join(parts)


def _value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "[]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "{}"
    return str(value)


def _extra(name: str, value: Any) -> str:
    """Other subsystems' per-provider state; the circuit breaker gets a compact line."""
    if name == "circuit" and isinstance(value, dict):
        text = (f"circuit {value.get('state')}: {value.get('recent_failures')}/{value.get('failure_threshold')} "
                f"recent failures, opened {value.get('openings')} time(s)")
        return text + (f", probe in {value['retry_in_s']}s" if value.get("retry_in_s") else "")
    return f"{name}={_value(value)}"


def render(document: dict[str, Any], url: str) -> str:
    """A readable summary of ``/v0/status`` (everything in it is already masked)."""
    lines = [f"packyd {document.get('version')} at {url}: {document.get('state')}, "
             f"up {_duration(document.get('uptime_s', 0))} (since {document.get('started_at')})"]
    lines.append(f"config       {document.get('config_file')} — generation {document.get('generation')}, "
                 f"loaded {document.get('loaded_at')}")
    last = document.get("last_reload") or {}
    reload_line = f"last reload  {last.get('result')} at {last.get('at')}"
    if last.get("problems"):
        reload_line += f", {last['problems']} problem(s): previous config kept"
    if last.get("changed"):
        reload_line += f", changed: {', '.join(last['changed'])}"
    if last.get("restart_needed"):
        reload_line += f" (restart to apply {', '.join(last['restart_needed'])})"
    lines.append(reload_line)
    packycode = document.get("packycode", {})
    state = "usable" if packycode.get("usable") else f"NOT usable: {packycode.get('reason')}"
    key = f"key {packycode.get('key')} from {packycode.get('key_source')}" if packycode.get("key") else "no key"
    lines.append(f"packycode    {state}; {key}")
    settings = packycode.get("settings", {})
    if settings:
        width = max(len(name) for name in settings)
        value_width = min(max(len(_value(entry["value"])) for entry in settings.values()), 48)
        lines.append("")
        lines.append(f"  {'setting':<{width}}  {'value':<{value_width}}  source")
        for name, entry in settings.items():
            text = _value(entry["value"])
            if len(text) > 48:
                text = text[:47] + "…"
            lines.append(f"  {name:<{width}}  {text:<{value_width}}  {entry['source']}")
    for conflict in packycode.get("conflicts", []):
        lines.append(f"  note: {conflict['setting']}: {conflict['winner']} wins over "
                     f"{', '.join(conflict['overridden'])}")
    lines.append("")
    lines.append("providers")
    for provider in document.get("providers", []):
        extra = {k: v for k, v in provider.items()
                 if k not in {"name", "type", "base_url", "enabled", "runtime_disabled", "usable", "reason",
                              "in_routing", "health"}}
        tail = "; ".join(_extra(k, v) for k, v in extra.items())
        reason = f" ({provider['reason']})" if provider.get("reason") and provider.get("health") != "ready" else ""
        lines.append(f"  {provider['name']:<14} {provider['health']}{reason}  {provider.get('base_url')}"
                     + (f"  [{tail}]" if tail else ""))
    models = document.get("models", [])
    lines.append("")
    lines.append(f"models ({len(models)})")
    names = [model["id"] + (f" → {model['alias_of']}" if model.get("alias_of") else "") for model in models]
    width = max((len(name) for name in names), default=0)
    for name, model in zip(names, models):
        size = (f"  context {model['context_window']:,}, output {model['max_output_tokens']:,}"
                if model.get("context_window") and model.get("max_output_tokens") else "")
        lines.append(f"  {name:<{width}}  [{', '.join(model.get('providers', []))}]{size}")
    problems = document.get("problems", [])
    if problems:
        lines.append("")
        lines.append("problems")
        for problem in problems:
            lines.append(f"  {problem['severity']}: {problem['where']}: {problem['key']}: {problem['problem']} — "
                         f"{problem['fix']}")
    return "\n".join(lines)
