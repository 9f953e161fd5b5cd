"""`racer demo`: the car stack drives the simulator on the bundled model."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from racer.commands import fail

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
    p.add_argument("--console", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="serve the device console while driving in real time (default: %(default)s; "
                        "'off' to disable)")
    p.add_argument("--state-dir", type=Path, help="console state (password, uploaded models); "
                                                  "default: the console's own state dir")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from car.bundle import BundleError, load_bundle
    from car.inference import Policy
    from sim2real.drive import run_laps
    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    if args.laps < 0:
        return fail("demo", "--laps must be 0 or more")
    if not 0.0 < args.max_speed <= 1.0:
        return fail("demo", "--max-speed must be in (0, 1]")
    try:
        track = Track.load(args.track)
        bundle = load_bundle(args.model)
    except (ValueError, BundleError) as exc:
        return fail("demo", str(exc))
    if not args.headless:
        return run_live(args, track, bundle)
    model = Policy(bundle).model()
    sim = Simulator(track)
    sim.reset()
    laps = args.laps or 10**9
    print(f"racer demo: {track.name} ({track.length:.2f} m), model {bundle.name}, "
          f"max speed {args.max_speed:.2f}, headless", file=sys.stderr)
    result = run_laps(sim, model, laps=laps, max_speed=args.max_speed, on_lap=_print_lap)
    return _finish(args, result, bundle.name)


def _print_lap(number: int, lap) -> None:
    if lap.completed:
        print(f"  lap {number}: {lap.time_s:6.2f} s", file=sys.stderr)
    else:
        why = "off track" if lap.off_track else "lap timeout"
        print(f"  stopped: {why} at {lap.progress:.1f}% after {lap.time_s:.2f} s", file=sys.stderr)


def _finish(args: argparse.Namespace, result, model_name: str) -> int:
    """The JSON summary when asked; exit 1 when a lap did not complete."""
    if args.json:
        print(json.dumps(result.to_json(model_name)))
    return 0 if result.completed_laps == len(result.laps) else 1


class _LapReporter:
    """Wraps the simulator for the real-time runtime: prints laps, ends the run after N of them."""

    def __init__(self, sim, laps: int, stop) -> None:
        from sim2real.drive import DriveResult, LapCounter

        self.sim, self.laps, self.stop = sim, laps, stop
        self.dt = sim.dt
        self.result = DriveResult(sim.track.name)
        self.counter = LapCounter(self.result, sim.time)

    def step(self):
        info = self.sim.step()
        lap = self.counter.observe(info)
        if lap is not None:
            _print_lap(len(self.result.laps), lap)
            if not lap.completed or (self.laps and len(self.result.laps) >= self.laps):
                self.stop.set()
        return info


def run_live(args: argparse.Namespace, track, bundle) -> int:
    """Real time through the same runtime as `racer car --sim`, with the console on loopback."""
    import threading

    from car.config import load_params
    from car.inference import Policy
    from racer.commands.console import start_car_console
    from sim2real.drive import sim_runtime
    from sim2real.sim.world import Simulator

    params = load_params()
    sim = Simulator(track)
    stop = threading.Event()
    reporter = _LapReporter(sim, args.laps, stop)
    runtime = sim_runtime(sim, Policy(bundle).model(), params, stepper=reporter, stop=stop)
    stack = runtime.stack
    if args.console != "off":
        console_args = argparse.Namespace(console=args.console, state_dir=args.state_dir, calibration=None)
        try:
            start_car_console(console_args, params, runtime, bundle.name, model_path=bundle.source)
        except (OSError, ValueError) as exc:
            return fail("demo", f"console not started: {exc}")
        print(f"racer demo: console on http://{args.console}/ (Ctrl-C to stop)", file=sys.stderr)
    runtime.call(stack.control.core.set_max_speed, args.max_speed)
    runtime.command("set_mode", "autonomous")
    runtime.command("start")
    runtime.run_until_signal()
    return _finish(args, reporter.result, bundle.name)
