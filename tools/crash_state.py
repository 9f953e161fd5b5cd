"""Crash consistency of the car's state dir, long mode (issue 22): kill -9 during every state-changing
operation of the console, then its start-up, and check the state dir (racer/uptime/crash.py says what).
Prints one JSON object: {"kills", "kills_per_operation", "finished_before_kill", "outcomes",
"inconsistent_states", "defects", "seconds", "machine"}.

    .venv/bin/python tools/crash_state.py --kills 1000 --seed 1 > crash.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from racer.uptime.crash import OPERATIONS, Harness


def progress(report) -> None:
    print(f"{sum(report.kills.values())} kills, {len(report.inconsistent)} inconsistent", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000, help="kills in all, spread evenly over the operations")
    parser.add_argument("--seed", type=int, default=0, help="the random kill moments' seed")
    parser.add_argument("--operations", nargs="+", choices=OPERATIONS, default=list(OPERATIONS))
    parser.add_argument("--work", type=Path, help="keep the state dir here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="racer-crash-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        report = Harness(work, seed=args.seed).run(args.kills, tuple(args.operations), progress).to_json()
    report["machine"] = f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f} at the end"
    json.dump(report, sys.stdout, indent=1)
    print()
    return 1 if report["inconsistent_states"] else 0


if __name__ == "__main__":
    sys.exit(main())
