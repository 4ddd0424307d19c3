"""The ``packyd`` command line.

Subcommands import what they need lazily, so ``packyd version`` and ``packyd --help``
answer in milliseconds and ``check-config`` does not pay for the web stack.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from . import __version__

__all__ = ["main", "build_parser"]

DESCRIPTION = """\
packyd serves Claude Code (the Anthropic Messages API) from Packycode's Codex relay
(the OpenAI Responses API). Point Claude Code at it:

  export ANTHROPIC_BASE_URL=http://127.0.0.1:8317 ANTHROPIC_AUTH_TOKEN=<one of api-keys>

(any token works while api-keys is empty, as with no config file). A Codex CLI user with
Packycode in ~/.codex needs no configuration: run `packyd serve --packycode`.

Configuration: --config FILE, else $PACKYD_CONFIG, else /etc/packyd/config.yaml, else
./config.yaml, else built-in defaults (which read the Codex CLI's ~/.codex files).
"""

EXIT_CODES = """\
exit codes: 0 valid, 1 invalid (every problem is printed), 2 file unreadable,
3 valid but the --online check failed
"""


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="config.yaml to use (default: $PACKYD_CONFIG, /etc/packyd/config.yaml, ./config.yaml)")
    parser.add_argument("--no-config", action="store_true",
                        help="read no config file: built-in defaults, PACKYD_PACKYCODE_* variables and ~/.codex")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="packyd", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"packyd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the daemon (the default command)",
                                description="Run packyd in the foreground (systemd runs it this way).")
    _add_config_argument(serve)
    serve.add_argument("--host", help="listen address (overrides config.yaml's host)")
    serve.add_argument("--port", type=int, help="listen port (overrides config.yaml's port)")
    serve.add_argument("--packycode", action="store_true",
                       help="make Packycode mandatory: enable it from any source (config.yaml, environment, "
                            "~/.codex), refuse to start unless it is usable, register its models")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check-config", help="validate a config file and print every problem",
                                description="Validate the configuration the way every start and reload does.\n"
                                            "Without --online it never contacts the network.",
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("file", nargs="?", help="config file (default: as for serve)")
    _add_config_argument(check)
    check.add_argument("--packycode", action="store_true",
                       help="check as `serve --packycode` would: Packycode must be usable")
    check.add_argument("--online", action="store_true",
                       help="also send one tiny request to Packycode and say whether it accepts the key, quota and "
                            "model (exit 3 when it does not)")
    check.set_defaults(handler=_check_config)

    _register_command_modules(commands)
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=lambda _args: print(f"packyd {__version__}") or 0)
    return parser


def _register_command_modules(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Further subcommands live in ``packyd/commands/<name>.py``, each with ``register(commands)``.

    Discovery keeps this file stable as commands are added, and each command's module is only
    imported to build the parser (its heavy imports stay inside its handler).
    """
    import importlib
    import pkgutil

    from . import commands as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda item: item.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        module.register(commands)


def _config_path(args: argparse.Namespace, explicit: str | None = None) -> str | None:
    from .config import default_config_path

    if args.no_config:
        return None
    return explicit or args.config or default_config_path(os.environ)


def _serve(args: argparse.Namespace) -> int:
    import trio

    from . import logs
    from .daemon import ServeOptions, load_for, serve_forever

    logs.configure("info")
    options = ServeOptions(_config_path(args), args.host, args.port, args.packycode)
    try:
        load = load_for(options)
    except OSError as error:
        logs.log("error", "config_unreadable", file=options.config_path, error=error.strerror)
        return 2
    if load.config is not None:
        logs.configure(load.config.log_level)
    if not load.ok:
        for problem in load.problems:
            logs.log("error" if problem.severity == "error" else "warning", "config_problem",
                     where=problem.where, key=problem.path, problem=problem.what, fix=problem.fix)
        logs.log("error", "not_started", problems=len(load.errors),
                 hint=f"run: packyd check-config {options.config_path or ''}".strip())
        return 1
    return trio.run(serve_forever, options, load)


def _check_config(args: argparse.Namespace) -> int:
    from .config import load_config
    from .config.codex import read_codex_layer

    path = _config_path(args, args.file)
    try:
        load = load_config(path, require_packycode=args.packycode, codex_layer=read_codex_layer)
    except OSError as error:
        print(f"{path}: cannot read: {error.strerror}", file=sys.stderr)
        return 2
    shown = path or "(built-in defaults)"
    for problem in load.problems:
        label = "error" if problem.severity == "error" else "warning"
        print(f"{label}: {problem}")
    if not load.ok:
        print(f"{shown}: {len(load.errors)} problem(s); packyd would not start with this file", file=sys.stderr)
        return 1
    state = "Packycode is usable" if load.packycode_usable else f"Packycode is off: {load.packycode_reason}"
    print(f"{shown}: valid. {state}.")
    if args.online:
        from .online_check import run_online

        return run_online(load)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0].startswith("-") and arguments[0] not in {"-h", "--help", "--version"}:
        arguments.insert(0, "serve")  # `packyd` alone, or `packyd --config X`, means serve
    args = parser.parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
