"""Subcommands beyond serve/check-config/version; each module defines ``register(commands)``
taking argparse's subparsers object (see ``packyd.cli``)."""
