"""`racer soak`: the simulated car and its console under a client loop for minutes or hours, measured."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of minutes")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soak", help="drive the simulated car with its console under a client loop and measure "
                                    "memory, descriptors, threads, state dir and e-stop latency over time",
                       description=(__doc__ or "") + " The client loop uploads, loads and deletes models, teleops, "
                       "runs the calibration wizard, streams the camera, logs in and out and drops connections; "
                       "see docs/operators-guide.md.")
    p.add_argument("--transport", choices=("local", "dds", "ros"), default="local", help="the car's transport")
    p.add_argument("--minutes", type=_minutes, default=15.0, help="how long the client loop runs (default 15)")
    p.add_argument("--track", default="reinvent_base", help="the simulator's track")
    p.add_argument("--out", type=Path, default=Path("soak"),
                   help="folder for the car's state dir and log (soak-TRANSPORT/), the plot (soak-TRANSPORT.png) "
                        "and the report (report-TRANSPORT.json) (default ./soak)")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="seconds between resource samples")
    p.add_argument("--domain", type=int, help="ROS domain id for dds/ros (default: a random one, so parallel soaks "
                                              "stay apart)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from racer.uptime.soak import Soak

    args.out.mkdir(parents=True, exist_ok=True)
    report = Soak(args.transport, args.minutes, args.out.resolve(), args.track, args.sample_seconds, args.domain).run()
    (args.out / f"report-{args.transport}.json").write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        print(summary(report, args.out / f"report-{args.transport}.json"), file=sys.stderr)
    return 0 if report["errors"] == 0 else 1


def summary(report: dict, path: Path) -> str:
    """The human form of a soak `report` (`racer.uptime.soak.Soak.run`) written to `path`: the run, each
    process's memory, descriptors and threads in the baseline window and the last, the state dir in both,
    the e-stop and pipeline latencies, and the first errors, one line each."""
    cycles, errors = report["cycles"], report["errors"]
    lines = [f"soak {report['transport']}: {report['minutes']} min, {cycles} client cycle{'' if cycles == 1 else 's'}, "
             f"{errors} error{'' if errors == 1 else 's'}; a -> b: the baseline window (from {report['baseline_s']} s) "
             "-> the last"]
    for name, proc in report["processes"].items():
        rss, fds, threads = proc["rss_mb"], proc["fds"], proc["threads"]
        lines.append(f"  {name:10s} RSS {rss[0]:.1f} -> {rss[-1]:.1f} MB ({proc['rss_growth_pct']:+.2f}%), "
                     f"descriptors {fds[0]} -> {fds[-1]} (max {proc['fds_max']}), "
                     f"threads {threads[0]} -> {threads[-1]}")
    state = report["state_dir_bytes"]
    lines.append(f"  state dir  {state['baseline']} -> {state['last']} bytes ({state['growth']:+d})")
    for key, name in (("estop_ms", "e-stop"), ("pipeline_ms", "pipeline")):
        figure = report[key]
        lines.append(f"  {name:10s} " + (f"p50 {figure['p50']} ms, p99 {figure['p99']} ms (n {figure['n']})"
                                         if figure["n"] else "not measured"))
    lines += ["  error: " + " ".join(str(error).split()) for error in report["first_errors"]]  # one line each
    lines.append(f"  report {path}, plot {report['plot']}")
    return "\n".join(lines)
