"""Hardware faults on repeat: the camera vanishing and returning, the Maestro's serial port closing
(its writes failing with EIO) and coming back, cycle after cycle on the whole local car; and the PWM
sysfs attributes failing writes with EIO, 100 cycles on the actuator core.

Real parts as in test_failsafe (an images camera, an OpenVINO policy, the Maestro driver on a pty to
the emulator). Each cycle: the car drives; the fault; the Maestro's channels at neutral, control
latched with the reason on its /diagnostics status; the fault cleared and the car still stopped;
a user's start drives it again. Nothing may grow across cycles: open descriptors and threads are
counted after the first cycle and after the last. RACER_FAULT_CYCLES sets the count (the suite
runs 3; the long run is `RACER_FAULT_CYCLES=100 pytest tests/test_fault_cycles.py`).
"""
from __future__ import annotations

import errno
import os
import threading

from car.actuators.calibration import FACTORY_DEFAULT
from car.actuators.core import ActuatorCore
from car.actuators.pwm_sysfs import PwmSysfsDriver
from car.messages import AckermannDrive, AckermannDriveStamped, Header, Time
from hw.maestro_emulator import MaestroEmulator
from hw.sysfs import PwmSysfsModel
from test_failsafe import NEUTRAL, at_neutral, bundle_dir, driving, images, maestro, start_car, wait_until  # noqa: F401

CYCLES = int(os.environ.get("RACER_FAULT_CYCLES", "3"))


def resources() -> tuple[int, int]:
    return len(os.listdir("/proc/self/fd")), threading.active_count()


def no_growth(first: tuple[int, int]) -> None:
    """Descriptors and threads are no more than after the first cycle (one may be closed for a reopen). A leak
    stays; a frame file the camera has open for the moment of its read does not, so one sample within 2 s
    that is back to the first cycle's counts passes."""
    seen = []

    def back() -> bool:
        seen.append(resources())
        return seen[-1][0] <= first[0] and seen[-1][1] == first[1]
    assert wait_until(back, 2.0), f"descriptors {first[0]} -> {seen[-1][0]}, threads {first[1]} -> {seen[-1][1]}"


def refill(images, frames: dict[str, bytes]) -> None:
    """The camera back: each frame renamed in whole, as a device node appears (a half-written file
    would be a corrupt frame, another fault)."""
    for name, data in frames.items():
        staged = images.parent / f"{name}.staged"
        staged.write_bytes(data)
        os.replace(staged, images / name)


def latched_with(runtime, *reasons: str) -> str:
    """The reason control latched with, as its /diagnostics status reports it, once it is one of `reasons`."""
    graph = runtime.graph
    status = {}

    def reported() -> bool:
        status["control"] = graph.control.core.diagnostics(graph.clock.now())
        return status["control"].value("start_needed") == "true" and \
            any(r in status["control"].value("latched") for r in reasons)
    assert wait_until(reported, 2.0), graph.control.core.last_reason
    return status["control"].value("latched")


def start_again(runtime, emulator) -> None:
    """Stopped until a user acts, then a start (refused while the fault is still present) drives."""
    assert not wait_until(lambda: driving(emulator), 0.3), "the car drove off by itself after the fault cleared"

    def started() -> bool:
        try:
            runtime.command("start")
        except ValueError:
            return False
        return True
    assert wait_until(started, 3.0), "start was refused after the fault cleared"
    assert wait_until(lambda: driving(emulator), 3.0), \
        f"start did not drive the car again: {runtime.graph.control.core.last_reason}"


def run_cycles(runtime, camera, one_cycle) -> None:
    """`one_cycle(n)` injects the fault, checks neutral and the latch, clears the fault and returns the
    Maestro that must then stay stopped until a start drives it; then the car is stopped and closed."""
    try:
        for cycle in range(CYCLES):
            start_again(runtime, one_cycle(cycle))
            if cycle == 0:
                first = resources()
        no_growth(first)
    finally:
        runtime.stop()
        camera.close()


def test_the_camera_vanishing_and_returning_ends_at_neutral_every_time(bundle_dir, images, maestro):
    runtime, camera = start_car(bundle_dir, images, maestro)
    frames = {f.name: f.read_bytes() for f in images.iterdir()}

    def one_cycle(cycle: int) -> MaestroEmulator:
        for f in images.iterdir():
            f.unlink()
        assert wait_until(lambda: at_neutral(maestro), 2.0), f"cycle {cycle}: not at neutral"
        latched_with(runtime, "camera stale", "policy command stale")
        refill(images, frames)
        return maestro
    run_cycles(runtime, camera, one_cycle)


def test_the_maestro_port_closing_and_returning_ends_at_neutral_every_time(bundle_dir, images, tmp_path):
    link = tmp_path / "ttyACM0"
    plugged = [MaestroEmulator(link).start()]
    runtime, camera = start_car(bundle_dir, images, plugged[0])

    def one_cycle(cycle: int) -> MaestroEmulator:
        plugged[0].unplug()  # writes fail with EIO, then the port is gone
        latched_with(runtime, "actuator")
        emulator = plugged[0] = MaestroEmulator(link).start()
        # the first targets the returning Maestro gets are neutral, and it stays there
        assert wait_until(lambda: at_neutral(emulator), 2.0), f"cycle {cycle}: {emulator.positions}"
        assert set(emulator.targets[:2]) == {(0, NEUTRAL[0]), (1, NEUTRAL[1])}, emulator.targets[:4]
        return emulator
    try:
        run_cycles(runtime, camera, one_cycle)
    finally:
        plugged[0].unplug()


class FailingWrites:
    """The PWM sysfs model whose held-open attributes fail every write with EIO while `failing` is set
    (a controller that stops answering on its bus), and work again once it is cleared."""

    def __init__(self, model: PwmSysfsModel) -> None:
        self.model = model
        self.failing = False

    def read(self, path):
        return self.model.read(path)

    def write(self, path, value: str) -> None:
        self.model.write(path, value)

    def open(self, path):
        attribute = self.model.open(path)
        store = attribute.write

        def write(value: str) -> None:
            if self.failing:
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
            store(value)
        attribute.write = write
        return attribute


def test_pwm_writes_failing_with_eio_and_returning_end_at_neutral_duty_every_time(tmp_path):
    """Every cycle: driving (a duty off the mid), writes fail (the fault on the actuator's status), the
    watchdog's neutral goes out as soon as writes work again (both duty files at the mids), then a new
    command drives. 100 cycles on the actuator core, descriptors counted."""
    model = PwmSysfsModel(tmp_path / "sys")
    files = FailingWrites(model)
    core = ActuatorCore(PwmSysfsDriver(FACTORY_DEFAULT, model.pwm_dir, files=files), 0.5236, 4.0)
    mids = (FACTORY_DEFAULT.motor.mid, FACTORY_DEFAULT.servo.mid)
    forward = AckermannDriveStamped(Header(Time.from_seconds(0.0)), AckermannDrive(steering_angle=0.2, speed=1.0))
    now, first = 0.0, None
    for cycle in range(100):
        core.on_drive(forward, now)
        assert model.attribute(0, "duty_cycle") != mids[0] and core.fault is None, cycle
        files.failing = True
        core.on_drive(forward, now + 0.05)
        assert "Input/output error" in core.diagnostics(now + 0.05).message
        core.tick(now + 0.4)  # the watchdog's neutral cannot get out yet
        assert not core.at_neutral
        files.failing = False
        core.tick(now + 0.41)
        assert (model.attribute(0, "duty_cycle"), model.attribute(1, "duty_cycle")) == mids, cycle
        assert core.at_neutral and core.fault is None and model.outputs_enabled()
        now += 1.0
        if cycle == 0:
            first = len(os.listdir("/proc/self/fd"))
    assert len(os.listdir("/proc/self/fd")) <= first
    core.close()
    assert not model.outputs_enabled()
