"""Subcommands of `racer`; each module exposes register(subparsers)."""
