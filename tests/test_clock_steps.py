"""A wall-clock step (an NTP correction of hours, either way) while the car drives.

Python code reads CLOCK_REALTIME through `time.time`; these tests step it (the process's own view
of the wall clock, which is what a module that reads it sees after `date -s`; no root needed) while
the whole local car drives on real parts: an images camera, an OpenVINO policy and the Maestro
driver writing to the emulator on a pty. A watchdog that reads the wall clock either trips on a
forward step (a driving car stops) or goes blind on a backward one (its timers wait hours, so a
command that went stale keeps the car moving, and a fault that clears restarts it): the assertions
read the Maestro's channel targets. CLOCK_MONOTONIC, which the kernel never steps, is left alone.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from car.clock import WallClock
from test_failsafe import (  # noqa: F401 (fixtures)
    at_neutral,
    bundle_dir,
    driving,
    images,
    maestro,
    start_car,
    stays_stopped_until_start,
    wait_until,
)

HOURS = 3 * 3600.0
CAR = Path(__file__).resolve().parent.parent / "car"


@pytest.fixture
def wall(monkeypatch):
    """`step(s)` moves this process's CLOCK_REALTIME (as `time.time` reads it) by `s` seconds."""
    real = time.time
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])

    def step(seconds: float) -> None:
        offset[0] += seconds
    return step


def test_the_node_clock_does_not_follow_a_wall_clock_step(wall):
    clock = WallClock()
    before = clock.now()
    assert abs(before - time.time()) < 1.0  # wall time as a ROS stamp is, at the start
    wall(HOURS)
    assert 0.0 <= clock.now() - before < 1.0
    wall(-2 * HOURS)
    assert 0.0 <= clock.now() - before < 1.0
    assert clock.now() - time.time() > HOURS - 1.0  # the module that reads time.time sees the step


def test_steps_of_hours_neither_stop_a_driving_car_nor_keep_a_stale_command_alive(bundle_dir, images, maestro, wall):
    runtime, camera = start_car(bundle_dir, images, maestro)
    try:
        wall(HOURS)  # forward: a watchdog on the wall clock would see every input hours old
        assert not wait_until(lambda: at_neutral(maestro), 1.0), "the car stopped when the wall clock stepped"
        assert runtime.graph.control.core.state.latch is None and driving(maestro)
        wall(-2 * HOURS)  # backward: its timers would wait hours, so nothing would notice the camera go
        assert not wait_until(lambda: at_neutral(maestro), 0.5), "the car stopped when the wall clock stepped"
        frames = {f.name: f.read_bytes() for f in images.iterdir()}
        for f in images.iterdir():
            f.unlink()
        assert wait_until(lambda: at_neutral(maestro), 2.0)
        assert wait_until(lambda: runtime.graph.control.core.state.latch is not None, 2.0), \
            "control's watchdog never saw the stale input"
        for name, data in frames.items():
            (images / name).write_bytes(data)
        stays_stopped_until_start(runtime, maestro, "camera stale", "policy command stale")
    finally:
        runtime.stop()
        camera.close()


# Wall time read on purpose: certificate validity and API-token expiry are calendar dates.
CALENDAR = {"console/tls.py", "console/auth.py"}


def test_the_car_reads_wall_time_only_through_its_clock():
    """Every watchdog, deadman and timer reads `car.clock` or time.monotonic; a new time.time or
    datetime.now elsewhere in car/ would reopen the steps above."""
    pattern = re.compile(r"\btime\.time\(|datetime\.(datetime\.)?now\(|\btime\.time\b(?!_)")
    offenders = [f"{path.relative_to(CAR)}:{n}" for path in sorted(CAR.rglob("*.py"))
                 if path.relative_to(CAR).as_posix() not in CALENDAR | {"clock.py"}
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_a_cars_processes_share_one_clock_epoch(tmp_path):
    """The supervisor hands its epoch to the nodes it starts, so a node restarted after a step stamps
    as its siblings do (a teleop command's age is its stamp against control's clock)."""
    import subprocess
    import sys

    from car.clock import EPOCH_ENV, epoch
    from car.graph.supervisor import Supervisor
    from car.transport.local import LocalBus

    supervisor = Supervisor([], LocalBus(), {})
    assert float(supervisor.env[EPOCH_ENV]) == epoch()
    code = "import time; from car.clock import WallClock; print(WallClock().now() - time.monotonic())"
    child = subprocess.run([sys.executable, "-c", code], env={**supervisor.env, EPOCH_ENV: "1000.5"},
                           capture_output=True, text=True, check=True)
    assert abs(float(child.stdout) - 1000.5) < 0.01
