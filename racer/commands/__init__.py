"""Subcommands of `racer`; each module exposes register(subparsers)."""
from __future__ import annotations

import sys


def fail(subcommand: str, message: str, code: int = 2) -> int:
    """One line on stderr, `racer SUBCOMMAND: message`, and the exit code (2: usage, 1: it ran and failed)."""
    print(f"racer {subcommand}: {message}", file=sys.stderr)
    return code
