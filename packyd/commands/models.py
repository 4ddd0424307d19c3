"""``packyd models``: the models packyd lists, from the running daemon or from the config.

Asking the daemon shows what it registered (the truth after reloads); when it is not running,
the same list is computed from the configuration, and the output says which one it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..daemon_client import add_target_arguments

    parser = commands.add_parser(
        "models", help="list the models packyd registers (from the daemon, or from the config)",
        description="List the models packyd serves: the Packycode models (provider codex) and the Claude-named "
                    "aliases from packycode.model-map. Asks the running daemon; when it is not running, "
                    "computes the list from the configuration.")
    add_target_arguments(parser)
    parser.add_argument("--offline", action="store_true", help="do not ask the daemon; compute from the config")
    parser.add_argument("--packycode", action="store_true",
                        help="with --offline: compute as `serve --packycode` would (Codex CLI files read)")
    parser.add_argument("--json", action="store_true", help="print JSON (OpenAI list shape)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..daemon_client import DaemonError, NotRunning, get_json, resolve_target

    origin = ""
    if not args.offline:
        try:
            target = resolve_target(args, management=False)
            document = get_json(target, "/v1/models", args.timeout)
            models = document.get("data", [])
            origin = f"registered by packyd at {target.url}"
        except NotRunning:
            print("packyd is not running; listing the models this configuration would register", file=sys.stderr)
        except (DaemonError, OSError) as error:
            print(f"{error}; listing the models this configuration would register", file=sys.stderr)
    if not origin:
        computed = _from_config(args)
        if computed is None:
            return 1
        models, origin = computed
    if args.json:
        json.dump({"object": "list", "data": models}, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    print(f"{len(models)} model(s), {origin}")
    for model in models:
        via = f" → {model['alias_of']}" if model.get("alias_of") else ""
        size = (f"  context {model['context_window']:,}, output {model['max_output_tokens']:,}"
                if model.get("context_window") and model.get("max_output_tokens") else "")
        print(f"  {model['id']}{via}  [{model.get('owned_by')}]{size}")
    return 0


def _from_config(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str] | None:
    import os

    from ..config import default_config_path, load_config
    from ..config.codex import read_codex_layer
    from ..registry import ModelRegistry, sync_packycode

    path = args.config or default_config_path(os.environ)
    try:
        load = load_config(path, require_packycode=args.packycode, codex_layer=read_codex_layer)
    except OSError as error:
        print(f"{path}: cannot read: {error.strerror}", file=sys.stderr)
        return None
    if not load.ok:
        for problem in load.errors:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{path or '(built-in defaults)'} is not valid; run `packyd check-config`", file=sys.stderr)
        return None
    registry = ModelRegistry()
    sync_packycode(registry, load)
    origin = f"from {path or 'built-in defaults'}"
    if not load.packycode_usable:
        origin += f" (none: Packycode is not usable: {load.packycode_reason})"
    return [model.openai() for model in registry.models()], origin
