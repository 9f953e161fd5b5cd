"""Runs the sim2real subcommands in-process, exactly as `racer` does once racer/cli.py lists
racer.commands.sim2real (the lead wires it there)."""
from __future__ import annotations

import argparse

from racer.commands import sim2real


def racer_s2r(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="racer")
    sub = parser.add_subparsers(dest="command")
    sim2real.register(sub)
    args = parser.parse_args(list(argv))
    return int(args.func(args) or 0)
