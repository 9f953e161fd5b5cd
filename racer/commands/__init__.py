"""Subcommands of `racer`; each module exposes register(subparsers)."""
from __future__ import annotations

import argparse
import sys

from car.policy.warning import Caution


def fail(subcommand: str, message: str, code: int = 2) -> int:
    """One line on stderr, `racer SUBCOMMAND: message`, and the exit code (2: usage, 1: it ran and failed)."""
    print(f"racer {subcommand}: {message}", file=sys.stderr)
    return code


def caution_option(text: str) -> Caution | None:
    """`--caution WARNING,SCALE` -> the caution racer.json carries (`car.policy.warning.Caution`);
    `none` -> no caution. argparse.ArgumentTypeError naming the text otherwise."""
    if text.strip().lower() == "none":
        return None
    try:
        warning, scale = (float(part) for part in text.split(","))
        return Caution(warning, scale)
    except ValueError as exc:
        why = str(exc) if str(exc).startswith("caution") else "it is not two numbers WARNING,SCALE, nor none"
        raise argparse.ArgumentTypeError(f"{text!r}: {why} (for example 0.25,0.8)") from None
