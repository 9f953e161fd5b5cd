"""`racer demo`: the car stack drives the simulator on the bundled model."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="drive simulated laps with the car stack and a model bundle",
                       description="Runs the car stack (camera, policy, control, actuator) against the "
                                   "simulator and reports lap times.")
    p.add_argument("--track", default="reinvent_base", help="track name (default: %(default)s)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model bundle: directory or .tar.gz "
                                                               "(default: the bundled model)")
    p.add_argument("--laps", type=int, default=3, help="laps to drive, 0 = until interrupted (default: %(default)s)")
    p.add_argument("--max-speed", type=float, default=0.5, help="max-speed setting 0..1 (default: %(default)s)")
    p.add_argument("--headless", action="store_true", help="run as fast as possible instead of in real time")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from car.bundle import BundleError, load_bundle
    from car.inference import Policy
    from car.stack import PolicyModel
    from sim2real.drive import run_laps
    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    if args.laps < 0:
        print("racer demo: --laps must be 0 or more", file=sys.stderr)
        return 2
    try:
        track = Track.load(args.track)
        bundle = load_bundle(args.model)
    except (ValueError, BundleError) as exc:
        print(f"racer demo: {exc}", file=sys.stderr)
        return 2
    model = PolicyModel(Policy(bundle).infer, bundle.spec, bundle.metadata)
    sim = Simulator(track)
    sim.reset()
    laps = args.laps or 10**9
    print(f"racer demo: {track.name} ({track.length:.2f} m), model {bundle.name}, "
          f"max speed {args.max_speed:.2f}, {'headless' if args.headless else 'real time'}", file=sys.stderr)

    def report(info, stack) -> None:
        if info.lap_completed:
            print(f"  lap {info.laps}: {info.lap_time:6.2f} s", file=sys.stderr)

    result = run_laps(sim, model, laps=laps, max_speed=args.max_speed, realtime=not args.headless, on_step=report)
    failed = [lap for lap in result.laps if lap.off_track or lap.progress < 100]
    for lap in failed:
        why = "off track" if lap.off_track else "lap timeout"
        print(f"  stopped: {why} at {lap.progress:.1f}% after {lap.time_s:.2f} s", file=sys.stderr)
    if args.json:
        print(json.dumps({"track": track.name, "laps": [lap.to_json() for lap in result.laps],
                          "completed_laps": result.completed_laps, "model": bundle.name}))
    return 0 if not failed else 1
