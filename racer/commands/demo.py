"""`racer demo`: the car stack drives the simulator on the bundled model."""
from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

from car.config import CONSOLE_ADDRESS, DEFAULT_MODEL, CarConfig
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
    p.add_argument("--console", default=CONSOLE_ADDRESS, metavar="HOST:PORT",
                   help="serve the device console while driving in real time (default: %(default)s; "
                        "'off' to disable)")
    p.add_argument("--foxglove", metavar="HOST:PORT",
                   help="in real time: serve the live Foxglove view of the car and the track on HOST:PORT, e.g. "
                        "127.0.0.1:8765 (open it with docs/foxglove/racer.layout.json)")
    p.add_argument("--state-dir", type=Path, help="console state (password, uploaded models); "
                                                  "default: the console's own state dir")
    p.add_argument("--transport", choices=("local", "dds", "ros"), default="local",
                   help="in real time: local = one process; dds = a process per node over Cyclone DDS; ros = rclpy "
                        "nodes (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from car.policy.bundle import load_bundle
    from car.policy.bundle_layout import BundleError
    from car.policy.inference import Policy
    from sim2real.drive import DriveResult, run_laps
    from sim2real.sim.rules import aws_rules, is_aws_export
    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    if args.laps < 0:
        return fail("demo", "--laps must be 0 or more")
    if args.headless and args.transport != "local":
        return fail("demo", "--headless steps the car's nodes by hand in one process: leave out --transport")
    if not 0.0 < args.max_speed <= 1.0:
        return fail("demo", "--max-speed must be in (0, 1]")
    if args.headless and args.foxglove:
        return fail("demo", "--headless drives faster than real time, with nothing to watch: leave out --foxglove")
    if args.foxglove:
        from racer.processes.foxglove import foxglove_address
        try:
            foxglove_address(args.foxglove, args.state_dir)
        except ValueError as exc:
            return fail("demo", f"foxglove not started: {exc}")
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


def _print_lap(number: int, lap, why: str | None = None) -> None:
    """A completed lap's time, or where and why a lap stopped (default: off track, else the lap timeout)."""
    if lap.completed:
        print(f"  lap {number}: {lap.time_s:6.2f} s", file=sys.stderr)
    else:
        why = why or ("off track" if lap.off_track else "lap timeout")
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


class _Laps:
    """The laps the simulator world node reports in its /diagnostics status: prints each; True once the
    laps asked for are driven (or one failed, or control stopped the car), so the summary is the run the
    user asked for."""

    def __init__(self, track_name: str, laps: int) -> None:
        from sim2real.drive import DriveResult

        self.laps = laps
        self.result = DriveResult(track_name)
        self.finished = False
        self.lap_time_s = 0.0  # the lap in progress, as the simulator last reported it
        self.progress = 0.0

    def observe(self, status) -> bool:
        from sim2real.drive import LapResult

        if self.finished:
            return False
        times = [float(t) for t in (status.value("lap_times") or "").split(",") if t]
        new_laps = times[len(self.result.laps):]
        for lap_time in new_laps:
            self._add(LapResult(lap_time, 100.0, False))
        self.lap_time_s = float(status.value("time") or 0.0) - sum(times)
        # a report of a lap's end gives that lap's progress (100): the next lap is at its start
        self.progress = 0.0 if new_laps else float(status.value("progress") or 0.0)
        if status.value("off_track") == "true" and not self.finished:
            self._add(LapResult(self.lap_time_s, self.progress, True))
        return self.finished

    def latched(self, reason: str) -> bool:
        """Control latched a stop (a watchdog, a node's fault) while the laps were driven: the lap in progress
        ends there, not completed, and the run with it (the car stays stopped until a user starts it). True
        if this ended the run."""
        from sim2real.drive import LapResult

        if self.finished:
            return False
        self._add(LapResult(self.lap_time_s, self.progress, False), f"control latched a stop ({reason})")
        self.finished = True
        return True

    def _add(self, lap, why: str | None = None) -> None:
        self.result.laps.append(lap)
        _print_lap(len(self.result.laps), lap, why)
        self.finished = not lap.completed or bool(self.laps and len(self.result.laps) >= self.laps)


class _Starter:
    """The demo's user: max speed, autonomous, start, sent to control over the bus until it answered the
    start (on dds and ros a request sent before discovery is lost); never again after that. It starts only
    once the policy has driven frames through a whole diagnostics period: a start while the other nodes still
    load would meet a pause longer than control's 250 ms watchdog, which latches the car stopped."""

    def __init__(self, publish, max_speed: float) -> None:
        from car.control.requests import control_request_json

        self.publish = publish
        self.requests = [control_request_json("set_max_speed", value=max_speed, id="demo-speed"),
                         control_request_json("set_mode", mode="autonomous", id="demo-mode"),
                         control_request_json("start", id="demo-start")]
        self.first_frames: int | None = None  # the policy's frame count in its first report with frames
        self.ready = False
        self.started = False

    def tick(self) -> None:
        for request in self.requests if self.ready and not self.started else []:
            self.publish(request)

    def on_policy(self, status) -> None:
        frames = int(status.value("frames") or 0)
        if frames and self.first_frames is None:
            self.first_frames = frames
        self.ready = self.ready or (self.first_frames is not None and frames > self.first_frames)

    def on_control(self, status) -> None:
        answer = (status.value("command_id"), status.value("command_result"))
        self.started = self.started or answer == ("demo-start", "ok")


def run_live(args: argparse.Namespace, track, bundle) -> int:
    """Real time through the nodes `racer car --sim` runs on `--transport`, with the console on loopback. After
    the laps the car stops and the console stays up until Ctrl-C; without a console the demo ends."""
    from car.clock import WallClock
    from car.config import resolve_config
    from car.control.requests import control_request_json
    from car.messages import DIAGNOSTICS_TOPIC
    from car.transport.wire import CONTROL_REQUEST_TOPIC

    # `racer car --transport T --sim TRACK --console ...` with the shipped parameter file
    config = resolve_config(model=args.model, console=args.console, transport=args.transport, sim=track.name,
                            state_dir=args.state_dir, foxglove=args.foxglove)
    console = config.console is not None
    laps = _Laps(track.name, args.laps)

    def watch(bus) -> None:
        """On the car's bus (the local one, or the supervisor's): start the car, count the laps, stop it."""
        request = bus.publisher(CONTROL_REQUEST_TOPIC)
        starter = _Starter(request, args.max_speed)

        def end(what: str) -> None:
            if not console:
                bus.stop()
                return
            request(control_request_json("stop"))
            print(f"racer demo: {what}; the console stays on http://{config.console}/ "
                  "(drive it from there; Ctrl-C to end)", file=sys.stderr, flush=True)

        def on_diagnostics(msg) -> None:
            for status in msg.status:
                if status.name == "control":
                    starter.on_control(status)
                    latched = status.value("latched")
                    if starter.started and latched and laps.latched(latched):
                        end("control stopped the car")
                        return
                elif status.name == "policy":
                    starter.on_policy(status)
                elif status.name == "simulator" and laps.observe(status):
                    end("laps done, car stopped")
                    return

        bus.subscribe(DIAGNOSTICS_TOPIC, on_diagnostics)
        bus.timer(0.5, starter.tick, WallClock())
        starter.tick()

    had_password = False
    if config.console is not None:
        try:
            busy = _in_use(*_address(config.console))  # before the console makes a password it could not show
        except ValueError as exc:
            return fail("demo", f"console not started: {exc}")
        if busy:
            return fail("demo", f"console not started: {config.console} is in use (another racer demo?); "
                                "pass --console 127.0.0.1:8081, or --console off", 1)
        had_password = _state(config).password.is_file()
    if config.transport == "local":
        code = _run_local(config, track, bundle, watch, had_password)
    else:
        code = _run_graph(config, watch, had_password)
    return code or _finish(args, laps.result, bundle.name, interrupted=not laps.finished)


def _run_local(config: CarConfig, track, bundle, watch, had_password: bool) -> int:
    from car.policy.inference import Policy
    from racer.processes.local import sim_car

    car = sim_car(track, Policy(bundle).model(), config, bundle.name)
    if config.console:
        started = _start_console(config, car, bundle, had_password)
        if started:
            car.stop()
            return started
    if config.foxglove:
        from racer.processes.foxglove import start_car_foxglove
        try:
            car.closers.insert(0, start_car_foxglove(config.foxglove, config.state_dir, car.bus).close)
        except (ValueError, OSError) as exc:
            car.stop()
            return fail("demo", f"foxglove not started: {exc}")
        print(f"racer demo: Foxglove view on ws://{config.foxglove}", file=sys.stderr)
    watch(car.bus)
    stopped = car.run_until_signal()
    return fail("demo", stopped, 1) if stopped else 0


def _run_graph(config: CarConfig, watch, had_password: bool) -> int:
    """The demo as `racer car --transport dds|ros --sim TRACK --console ...` (the supervisor here watches the laps)."""
    from racer.processes.graph import run_graph

    if config.console:
        _password_notice(config, had_password)
    try:
        return run_graph(config, watch)
    except (ValueError, OSError, RuntimeError) as exc:
        return fail("demo", str(exc))


def _address(text: str) -> tuple[str, int]:
    from car.console.server import parse_address
    return parse_address(text)


def _start_console(config: CarConfig, car, bundle, had_password: bool) -> int:
    """Start the demo's console node on the car's bus; 0, or the exit code of a one-line error."""
    from racer.processes.console import start_car_console

    try:
        server = start_car_console(config, car.bus, car.graph.clock, bundle.name, model_path=bundle.source)
        car.closers.append(server.stop)
    except OSError as exc:
        return fail("demo", f"console not started: {exc}", 1)
    except ValueError as exc:
        return fail("demo", f"console not started: {exc}")
    _password_notice(config, had_password)
    return 0


def _state(config: CarConfig):
    from car.console.state import StateDir, default_state_dir
    return StateDir(config.state_dir or default_state_dir())


def _password_notice(config: CarConfig, had_password: bool) -> None:
    """Where the console is, and, unless the console has just made one (it says so itself), the password's file."""
    from car.console.auth import first_password_file

    state = _state(config)
    print(f"racer demo: console on http://{config.console}/ (Ctrl-C to stop)", file=sys.stderr)
    if had_password:
        print(f"racer demo: log in with the console's password (a generated one stays in "
              f"{first_password_file(state)} until you set your own); forgot it? "
              f"racer passwd --state-dir {state.root}", file=sys.stderr)


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
