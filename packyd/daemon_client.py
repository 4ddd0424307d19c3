"""How ``packyd status`` and ``packyd models`` reach the running daemon.

They read the same configuration the daemon reads, to learn where it listens and which key
it accepts (``management-key``, else the first of ``api-keys``), so an administrator types
``packyd status`` and nothing else. ``--url`` and ``$PACKYD_API_KEY`` override both, for a
config file the current user may not read.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Target", "NotRunning", "DaemonError", "add_target_arguments", "resolve_target", "get_json"]


class NotRunning(Exception):
    """Nothing answers at the address: the daemon is stopped (or listens elsewhere)."""


class DaemonError(Exception):
    """The daemon answered, but not with what was asked for (wrong key, old version…)."""


@dataclass(frozen=True)
class Target:
    url: str
    key: str | None
    #: where the address came from, for messages ("config.yaml", "--url", "built-in defaults")
    source: str
    config: Any = None  # the loaded Config, when one could be read


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="config.yaml to read host, port and key from (default: as for serve)")
    parser.add_argument("--url", help="packyd's base URL, e.g. http://127.0.0.1:8317 (default: from the config)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon (default 5)")


def _connect_host(host: str) -> str:
    """Where to connect for a listen address: a wildcard listens on loopback too."""
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    if host in {"::", "[::]"}:
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def resolve_target(args: argparse.Namespace, *, management: bool = True) -> Target:
    """Address and key of the daemon; raises OSError if the config file cannot be read.

    ``management``: the key is for ``/v0/*`` (``management-key`` when set, else the first of
    ``api-keys``); otherwise for ``/v1/*``, which only ever accepts ``api-keys``.
    """
    from .config import default_config_path, load_config
    from .config.codex import read_codex_layer

    path = args.config or default_config_path(os.environ)
    load = load_config(path, codex_layer=read_codex_layer)
    config = load.config
    key = os.environ.get("PACKYD_API_KEY") or None
    if config is None:
        source = f"{path} (invalid, defaults used)" if path else "built-in defaults"
        host, port = "127.0.0.1", 8317
    else:
        source = path or "built-in defaults"
        host, port = config.host, config.port
        if key is None:
            client_key = config.api_keys[0] if config.api_keys else None
            key = (config.management_key or client_key) if management else client_key
    if args.url:
        return Target(args.url.rstrip("/"), key, "--url", config)
    return Target(f"http://{_connect_host(host)}:{port}", key, source, config)


def get_json(target: Target, path: str, timeout: float, headers: dict[str, str] | None = None) -> Any:
    """GET a JSON document from the daemon (loopback only: no proxies from the environment)."""
    sent = dict(headers or {})
    if target.key:
        sent["x-api-key"] = target.key
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.get(target.url + path, headers=sent)
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        raise NotRunning(f"nothing answers at {target.url} ({type(error).__name__})") from None
    except httpx.HTTPError as error:
        raise DaemonError(f"{target.url} did not answer properly: {type(error).__name__}") from None
    if response.status_code in (401, 403):
        raise DaemonError(f"packyd at {target.url} refused the key (HTTP {response.status_code}): "
                          "set management-key or api-keys in the config this command reads, "
                          "or pass the key in $PACKYD_API_KEY")
    if response.status_code != 200:
        raise DaemonError(f"packyd at {target.url} answered HTTP {response.status_code} for {path}")
    try:
        return response.json()
    except ValueError:
        raise DaemonError(f"{target.url}{path} did not answer JSON; is that packyd?") from None
