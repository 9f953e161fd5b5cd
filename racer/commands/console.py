"""The device console from the laptop (`racer discover|upload|teleop|status`, `racer calibrate
--car`) and on the car (`racer passwd`; the console that `racer car --console` starts is
`racer.processes.console`).

Imports of the web stack stay inside the functions so that `racer --help` stays quick.
"""
from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import queue
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from racer.commands import fail
from racer.laptop.keys import Axes, terminal_keys

if TYPE_CHECKING:
    from racer.laptop.api import ConsoleApi, Status

TELEOP_HZ = 20.0


def _car_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--car", required=required, metavar="HOST",
                        help="the car's console: HOST[:PORT] or https://HOST:PORT (see racer discover)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the console password from the first line of stdin when a login is needed")
    parser.add_argument("--fingerprint", metavar="SHA256",
                        help="on first contact, accept only this certificate fingerprint (as the car printed it)")


def add_car_calibration(parser: argparse.ArgumentParser) -> None:
    """`racer calibrate --car HOST`: the hardware module's calibrate parser calls this."""
    _car_arguments(parser, required=False)
    parser.set_defaults(func=run_calibrate)


def register(sub: argparse._SubParsersAction) -> None:
    discover = sub.add_parser("discover", help="list the racer cars on the local network (mDNS)",
                              description="Listens for racer cars that announce their console over mDNS "
                                          "(_racer._tcp) and prints name, address and certificate fingerprint.")
    discover.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default 3)")
    discover.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    discover.set_defaults(func=run_discover)

    upload = sub.add_parser("upload", help="upload a model bundle to a car and load it",
                            description="Uploads an AWS DeepRacer export or a racer bundle (.tar.gz, or a bundle "
                                        "directory, packed on the fly), waits until the car has checked, "
                                        "converted and installed it, then loads it.")
    upload.add_argument("bundle", type=Path, metavar="BUNDLE",
                        help="an AWS DeepRacer export .tar.gz, or a racer bundle (.tar.gz or directory)")
    _car_arguments(upload)
    upload.add_argument("--no-load", action="store_true", help="install only; keep the loaded model")
    upload.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    upload.set_defaults(func=run_upload)

    teleop = sub.add_parser("teleop", help="drive a car from the terminal keyboard",
                            description="Hold w/s or up/down: faster/slower, a/d or left/right: steer (a "
                                        "terminal has no key-up: a key acts while it repeats, and the car "
                                        "lets go when it stops), space: neutral, e: emergency stop, q: quit. "
                                        "Leaving, or losing the connection, puts the car at neutral. Needs a "
                                        "terminal.")
    _car_arguments(teleop)
    teleop.set_defaults(func=run_teleop)

    status = sub.add_parser("status", help="a car's mode, model, fps, latency, watchdog",
                            description="Asks a car's console once for its mode, model, camera rate, latency, "
                                        "last command, watchdog and battery.")
    _car_arguments(status)
    status.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    status.set_defaults(func=run_status)

    passwd = sub.add_parser("passwd", help="set the console password (read from stdin)",
                            description="Sets the console password from stdin (asked twice on a terminal). "
                                        "Ends all sessions and revokes every API token.")
    passwd.add_argument("--state-dir", type=Path, help="the car's state dir (default: as racer car)")
    passwd.set_defaults(func=run_passwd)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _console(args: argparse.Namespace) -> ConsoleApi:
    from racer.laptop.api import ConsoleApi
    from racer.laptop.client import CarAddress, CarClient, ClientError

    def password() -> str:
        if args.password_stdin:
            line = sys.stdin.readline()
            if not line:
                raise ClientError("--password-stdin: stdin is empty")
            return line.rstrip("\r\n")
        if sys.stdin.isatty():
            return getpass.getpass(f"console password for {args.car}: ")
        raise ClientError("this car needs a login: pass --password-stdin and pipe the password")

    return ConsoleApi(CarClient(CarAddress.parse(args.car), password, _say, expect_fingerprint=args.fingerprint,
                                token_name=f"{getpass.getuser()}@{socket.gethostname()}"))


def run_status(args: argparse.Namespace) -> int:
    from racer.laptop.client import ClientError

    try:
        status = _console(args).status()
    except ClientError as exc:
        return fail("status", str(exc), 1)
    if args.json:
        print(json.dumps(status.body))
        return 0
    latency = f"{status.latency_ms:.1f} ms" if status.latency_ms is not None else "-"
    print(f"mode      {mode_line(status)}, max speed {status.max_speed:.2f}")
    print(f"model     {status.model}")
    loading = status.loading
    if loading.job and loading.state in ("loading", "error"):
        what = f"{loading.job} of {loading.model}"
        print(f"{'job':9} {what}: " + (f"failed: {loading.reason}" if loading.state == "error"
                                       else f"{loading.stage} ({loading.progress}%)"))
    print(f"camera    {status.camera}, {status.fps:.1f} fps, latency {latency}")
    print(f"command   steering {status.steering:+.2f}, throttle {status.throttle:+.2f}")
    print(f"watchdog  {status.watchdog}; {status.reason}")
    for score, label in ((status.battery_level, "battery"), (status.domain_shift, "shift"),
                         (status.uncertainty, "uncertain"), (status.warning, "warning")):
        if score is not None:
            print(f"{label:9} {score}")
    if status.caution is not None:
        print(f"{'caution':9} {status.caution}")
    return 0


def mode_line(status: Status) -> str:
    """The mode and what it is doing: start/stop is autonomous mode's; manual drives while teleop does."""
    if status.mode == "autonomous":
        return f"autonomous ({'running' if status.running else 'stopped'})"
    if status.mode == "manual":
        return f"manual ({'driven by teleop' if status.driven_by == 'teleop' else 'waiting for teleop'})"
    return status.mode


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * done // max(total, 1):3d}%"


def run_upload(args: argparse.Namespace) -> int:
    if args.bundle.is_dir():
        from car.policy.bundle import pack_bundle
        from car.policy.bundle_layout import BundleError, bundle_name

        with tempfile.TemporaryDirectory(prefix="racer-upload-") as work:
            try:
                archive = pack_bundle(args.bundle, Path(work) / f"{bundle_name(args.bundle)}.tar.gz")
            except BundleError as exc:
                return fail("upload", str(exc), 2)
            return _upload(args, archive)
    if not args.bundle.is_file():
        return fail("upload", f"{args.bundle}: no such file or directory", 2)
    return _upload(args, args.bundle)


def _upload(args: argparse.Namespace, archive: Path) -> int:
    from racer.laptop.client import ClientError

    try:
        console = _console(args)
    except ClientError as exc:
        return fail("upload", str(exc), 1)
    human = sys.stderr.isatty()
    stop = threading.Event()

    def progress(sent: int, total: int) -> None:
        if human:
            print(f"\rupload  {_bar(sent, total)} {sent / 1e6:.1f}/{total / 1e6:.1f} MB", end="", file=sys.stderr)
        if sent >= total:
            threading.Thread(target=watch, daemon=True).start()

    def watch() -> None:
        if human:
            print(file=sys.stderr)
        shown = ""
        while not stop.wait(0.3):
            try:
                loading = console.is_model_loading()
            except ClientError:
                return
            if loading.state == "loading" and loading.stage and loading.stage != shown:
                _say(f"car     {loading.stage} ({loading.progress}%)")
                shown = loading.stage

    try:
        console.server_ready()
        folder = console.upload_model(archive, progress)
    except ClientError as exc:
        return fail("upload", str(exc), 1)
    finally:
        stop.set()
    _say(f"installed {folder}")
    loaded = False
    if not args.no_load:
        try:
            console.load_model(next(m for m in console.models() if m.folder == folder))
        except (ClientError, StopIteration) as exc:
            return fail("upload", f"installed, but loading failed: {exc}", 1)
        loaded = True
        _say(f"loaded {folder}: the car is stopped; start it from the console")
    if args.json:
        print(json.dumps({"model": folder, "installed": True, "loaded": loaded}))
    return 0


def _drive(console: ConsoleApi, keys: queue.Queue[str]) -> None:
    console.set_drive_mode("manual")
    axes = Axes()
    with console.teleop() as teleop:
        _say("manual mode: hold w/s faster/slower, a/d steer (a key acts while it repeats), space neutral, "
             "e emergency stop, q quit")
        while True:
            try:
                key = keys.get(timeout=1.0 / TELEOP_HZ)
            except queue.Empty:
                key = ""
            if key in ("q", "\x03", "\x04"):
                teleop.drive(0.0, 0.0)
                return
            if key == "e":
                teleop.emergency_stop()
                axes = Axes()
                _say(f"\nemergency stop: the car stays stopped until you press Start on its console page "
                     f"({console.address.scheme}://{console.address.netloc}/)")
                continue
            now = time.monotonic()
            if key and key in " wsad":
                axes.key(key, now)
            if axes.expire(now):
                key = "released"
            teleop.drive(axes.steering, axes.throttle)
            for reason in teleop.notices():  # the deadman, refusals
                _say(f"\ncar: {reason}")
            if key:
                print(f"\rsteering {axes.steering:+.2f}  throttle {axes.throttle:+.2f}  ", end="", file=sys.stderr,
                      flush=True)


def run_teleop(args: argparse.Namespace) -> int:
    from websockets.exceptions import WebSocketException

    from racer.laptop.client import ClientError

    if not sys.stdin.isatty():
        return fail("teleop", "needs a terminal for its keys (stdin is not one): run it in a terminal window", 2)
    try:
        console = _console(args)
        console.server_ready()
        with terminal_keys() as keys:
            _drive(console, keys)
    except (ClientError, WebSocketException, OSError) as exc:
        return fail("teleop", str(exc), 1)
    finally:
        print(file=sys.stderr)
    return 0


def _ask(prompt: str) -> str | None:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    return line.strip() if line else None


def run_calibrate(args: argparse.Namespace) -> int:
    from calibration.wizard import Wizard, WizardError
    from racer.laptop.client import ClientError

    if not args.car:
        return fail("calibrate", "choose what to calibrate: racer calibrate camera ... or racer calibrate --car HOST",
                     2)
    if getattr(args, "target", None):
        return fail("calibrate", "--car calibrates a car's steering and throttle; leave out the target", 2)
    try:
        console = _console(args)
    except ClientError as exc:
        return fail("calibrate", str(exc), 1)
    try:
        console.set_calibration_mode()
        _say("calibration mode: lift the car so its wheels turn freely")
        angle, throttle = Wizard(console, _ask, _say, refused=(ClientError,)).run()
    except (ClientError, WizardError) as exc:
        return fail("calibrate", str(exc), 1)
    finally:
        try:
            console.set_drive_mode("manual")
        except ClientError:
            pass
    _say(f"saved: steering {dataclasses.asdict(angle)}, throttle {dataclasses.asdict(throttle)}")
    return 0


def run_discover(args: argparse.Namespace) -> int:
    from racer.laptop.discovery import discover

    try:
        cars = discover(args.timeout)
    except OSError as exc:
        return fail("discover", f"mDNS is not available here: {exc}", 1)
    if args.json:
        print(json.dumps({"cars": [{"name": c.name, "url": c.url, "host": c.host, "addresses": list(c.addresses),
                                    "fingerprint": c.fingerprint, "verified": False} for c in cars]}))
        return 0
    if not cars:
        _say(f"no racer car answered within {args.timeout:g} s")
    else:
        _say("mDNS is unauthenticated: names and fingerprints below are unverified; compare the fingerprint "
             "with the one the car printed before the first login")
    for car in cars:
        print(f"{car.name:20} {car.url:32} unverified {car.fingerprint or '-'}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    from car.console.auth import PasswordError, set_password
    from car.console.state import StateDir, default_state_dir

    if sys.stdin.isatty():
        password = getpass.getpass("new console password: ")
        if getpass.getpass("again: ") != password:
            return fail("passwd", "the two passwords differ; nothing changed", 2)
    else:
        line = sys.stdin.readline()
        if not line:  # end of input before any line: nothing was piped
            return fail("passwd", "no password on stdin: pipe it as one line (printf '%s\\n' PASSWORD | racer passwd), "
                                  "or run it on a terminal to be asked; nothing changed", 2)
        password = line.rstrip("\r\n")
    state = StateDir(args.state_dir or default_state_dir())
    try:
        set_password(state, password)
    except (PasswordError, OSError) as exc:
        return fail("passwd", f"{exc}; nothing changed", 2)
    _say(f"console password set in {state.root}; sessions ended, API tokens revoked, their sockets closed")
    return 0
