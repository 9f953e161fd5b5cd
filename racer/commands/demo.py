"""`racer demo`: the car stack drives the simulator on the bundled model."""
from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

from car.config import DEFAULT_MODEL
from racer.commands import fail


def register(sub: argparse._SubParsersAction) -> None:
    from sim2real.sim.track import Track

    p = sub.add_parser("demo", help="drive simulated laps with the car stack and a model bundle",
                       description="Runs the car stack (camera, policy, control, actuator) against the "
                                   "simulator and reports lap times. In real time the device console stays "
                                   "up after the laps until Ctrl-C.")
    p.add_argument("--track", default="reinvent_base",
                   help=f"track name: {', '.join(Track.names())} (default: %(default)s; Straight_track is "
                        "open: one run to its end)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model bundle: directory or .tar.gz "
                                                               "(default: the bundled model)")
    p.add_argument("--laps", type=int, default=3, help="laps to drive, 0 = until interrupted (default: %(default)s)")
    p.add_argument("--max-speed", type=float, default=0.5, help="max-speed setting 0..1 (default: %(default)s)")
    p.add_argument("--headless", action="store_true", help="run as fast as possible instead of in real time, "
                                                           "without the console; ends after the laps (an AWS "
                                                           "export drives under the AWS simulator's rules, as in "
                                                           "racer eval)")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    p.add_argument("--console", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="serve the device console while driving in real time (default: %(default)s; "
                        "'off' to disable)")
    p.add_argument("--state-dir", type=Path, help="console state (password, uploaded models); "
                                                  "default: the console's own state dir")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from car.policy.bundle import BundleError, load_bundle
    from car.policy.inference import Policy
    from sim2real.drive import DriveResult, run_laps
    from sim2real.sim.rules import aws_rules, is_aws_export
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
    if not track.closed and args.laps != 1:
        # An open track has one run to its end; a second "lap" would start off its end.
        print(f"racer demo: {track.name} is open: one run to its end", file=sys.stderr)
        args.laps = 1
    if not args.headless:
        return run_live(args, track, bundle)
    model = Policy(bundle).model()
    sim = Simulator(track)
    sim.reset()
    # An AWS export drives as in the AWS simulator (action speeds x the setting, its off-track
    # rule), as `racer eval` drives it.
    driver = aws_rules(sim, bundle, args.max_speed) if is_aws_export(bundle) else None
    rules = ", AWS simulator's rules" if driver else ""
    print(f"racer demo: {track.name} ({track.length:.2f} m), model {bundle.name}, max speed {args.max_speed:.2f}, "
          f"headless{rules}{'' if args.laps else ', until Ctrl-C'}", file=sys.stderr)
    driven = DriveResult(track.name)  # filled lap by lap, so an interrupted run still has its summary

    def on_lap(number: int, lap) -> None:
        driven.laps.append(lap)
        _print_lap(number, lap)

    try:
        run_laps(sim, model, laps=args.laps or 10**9, max_speed=args.max_speed, on_lap=on_lap, driver=driver)
    except KeyboardInterrupt:
        print(f"racer demo: interrupted after {len(driven.laps)} lap(s)", file=sys.stderr)
        return _finish(args, driven, bundle.name, interrupted=True)
    return _finish(args, driven, bundle.name)


def _print_lap(number: int, lap) -> None:
    if lap.completed:
        print(f"  lap {number}: {lap.time_s:6.2f} s", file=sys.stderr)
    else:
        why = "off track" if lap.off_track else "lap timeout"
        print(f"  stopped: {why} at {lap.progress:.1f}% after {lap.time_s:.2f} s", file=sys.stderr)


def _finish(args: argparse.Namespace, result, model_name: str, interrupted: bool = False) -> int:
    """The laps' summary on stderr, the JSON one on stdout when asked. Exit 1 when a lap did not
    complete (said on stderr), 130 when interrupted before the laps asked for (with --laps 0 an
    interruption is the expected end)."""
    times = [lap.time_s for lap in result.laps if lap.completed]
    if times:
        print(f"racer demo: {len(times)} lap(s) completed, best {min(times):.2f} s, "
              f"mean {sum(times) / len(times):.2f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(model_name)))
    if result.completed_laps != len(result.laps):
        print(f"racer demo: exit status 1: {len(result.laps) - result.completed_laps} lap(s) not completed",
              file=sys.stderr)
        return 1
    return 130 if interrupted and args.laps and len(result.laps) < args.laps else 0


class _LapReporter:
    """Wraps the simulator for the real-time runtime: prints laps; after N of them (or a failed one)
    calls `done` once and stops counting, so the summary is the run the user asked for."""

    def __init__(self, sim, laps: int, done) -> None:
        from sim2real.drive import DriveResult, LapCounter

        self.sim, self.laps, self.done = sim, laps, done
        self.dt = sim.dt
        self.result = DriveResult(sim.track.name)
        self.counter = LapCounter(self.result, sim.time)
        self.finished = False

    def step(self):
        info = self.sim.step()
        if self.finished:
            return info
        lap = self.counter.observe(info)
        if lap is not None:
            _print_lap(len(self.result.laps), lap)
            if not lap.completed or (self.laps and len(self.result.laps) >= self.laps):
                self.finished = True
                self.done()
        return info


def run_live(args: argparse.Namespace, track, bundle) -> int:
    """Real time through the same runtime as `racer car --sim`, with the console on loopback. After the
    laps the car stops and the console stays up until Ctrl-C; without a console the demo ends."""
    import threading

    from car.config import load_params
    from car.policy.inference import Policy
    from sim2real.drive import sim_runtime
    from sim2real.sim.world import Simulator

    params = load_params()
    sim = Simulator(track)
    stop = threading.Event()
    console = args.console != "off"

    def laps_done() -> None:  # called in the simulation loop, which holds the runtime's (re-entrant) lock
        if not console:
            stop.set()
            return
        runtime.command("stop")
        print(f"racer demo: laps done, car stopped; the console stays on http://{args.console}/ "
              "(drive it from there; Ctrl-C to end)", file=sys.stderr, flush=True)

    reporter = _LapReporter(sim, args.laps, laps_done)
    runtime = sim_runtime(sim, Policy(bundle).model(), params, stepper=reporter, stop=stop)
    if console:
        started = _start_console(args, params, runtime, bundle)
        if started:
            return started
    runtime.call(runtime.stack.control.core.set_max_speed, args.max_speed)
    runtime.command("set_mode", "autonomous")
    runtime.command("start")
    runtime.run_until_signal()
    return _finish(args, reporter.result, bundle.name, interrupted=not reporter.finished)


def _start_console(args: argparse.Namespace, params, runtime, bundle) -> int:
    """Start the demo's console; 0, or the exit code of a one-line error (a busy port says what to do)."""
    from car.console.auth import first_password_file
    from car.console.server import parse_address
    from car.console.state import StateDir, default_state_dir
    from racer.processes.console import start_car_console

    state = StateDir(args.state_dir or default_state_dir())
    had_password = state.password.is_file()
    console_args = argparse.Namespace(console=args.console, state_dir=args.state_dir, calibration=None)
    try:
        if _in_use(*parse_address(args.console)):  # before the console makes a password it could not show
            return fail("demo", f"console not started: {args.console} is in use (another racer demo?); "
                                "pass --console 127.0.0.1:8081, or --console off", 1)
        start_car_console(console_args, params, runtime, bundle.name, model_path=bundle.source)
    except OSError as exc:
        return fail("demo", f"console not started: {exc}", 1)
    except ValueError as exc:
        return fail("demo", f"console not started: {exc}")
    print(f"racer demo: console on http://{args.console}/ (Ctrl-C to stop)", file=sys.stderr)
    if had_password:
        print(f"racer demo: log in with the console's password (a generated one stays in "
              f"{first_password_file(state)} until you set your own); forgot it? "
              f"racer passwd --state-dir {state.root}", file=sys.stderr)
    return 0


def _in_use(host: str, port: int) -> bool:
    """Whether another process listens on HOST:PORT (bound the way the console binds)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False
