"""``packyd disable NAME`` / ``packyd enable NAME``: the runtime provider switch from a shell.

They call the running daemon (``POST /v0/providers/NAME/disable|enable``) at the address and
with the key of the configuration it runs with, found the way ``packyd status`` finds them
(:mod:`packyd.daemon_client`: ``--url``/``--config``, ``$PACKYD_API_KEY``, else
``management-key``, else the first of ``api-keys``). The change takes effect for the next
request and lasts until the opposite command or a restart; for a lasting change set
``enabled: false`` in config.yaml and reload.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]

EPILOG = """\
exit codes: 0 done, 1 the daemon refused (unknown provider, wrong key), 2 the daemon could not be reached
"""


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..daemon_client import add_target_arguments

    for action, verb in (("disable", "take a provider out of routing now"),
                         ("enable", "put a provider back into routing now")):
        parser = commands.add_parser(
            action, help=f"{verb} (runtime switch; lasts until the opposite call or a restart)",
            description=f"{verb[0].upper()}{verb[1:]}: the next request already sees the change. "
                        "For a lasting change, set `enabled` in config.yaml and run `systemctl reload packyd`.",
            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("name", help="provider name: packycode, or a name from providers: in config.yaml")
        add_target_arguments(parser)
        parser.set_defaults(handler=_run, action=action)


def _run(args: argparse.Namespace) -> int:
    import httpx

    from ..daemon_client import resolve_target

    try:
        target = resolve_target(args)
    except OSError as error:
        print(f"packyd: cannot read the config ({error.strerror}); pass --url, and the key in $PACKYD_API_KEY",
              file=sys.stderr)
        return 2
    headers = {"x-api-key": target.key} if target.key else {}
    endpoint = f"{target.url}/v0/providers/{args.name}/{args.action}"
    try:
        # loopback management call: no proxies from the environment
        with httpx.Client(timeout=args.timeout, trust_env=False) as client:
            response = client.post(endpoint, headers=headers)
    except httpx.HTTPError as error:
        print(f"packyd: nothing answers at {target.url} ({type(error).__name__}; address from {target.source}); "
              "is the daemon running? Use --url if it listens elsewhere.", file=sys.stderr)
        return 2
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        detail = body.get("error") if isinstance(body, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else None
        hint = " (set management-key or api-keys in the config, or $PACKYD_API_KEY)" \
            if response.status_code in (401, 403) else ""
        print(f"packyd: {args.action} {args.name} failed (HTTP {response.status_code}): "
              f"{message or response.reason_phrase}{hint}", file=sys.stderr)
        return 1
    state = "enabled" if body.get("enabled") else "disabled"
    routing = ", ".join(body.get("routing") or []) or "no provider (requests fail with 503 until one is enabled)"
    note = "" if body.get("changed") else " (it already was)"
    print(f"{args.name} {state}{note}; routing now: {routing}.")
    print("This lasts until `packyd enable|disable` or a restart; for a lasting change edit config.yaml and reload.")
    return 0
