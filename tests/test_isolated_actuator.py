"""The actuator in a process of its own (`car.actuators.isolated`), on the Maestro emulator's real pty.

What the graph's process does cannot hold the outputs: the child has its own watchdog, and it ends
at neutral when the graph's process runs out of file descriptors, stalls, or dies.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from car.actuators.base import ActuatorFault
from car.actuators.calibration import FACTORY_DEFAULT, wizard_ranges
from car.actuators.core import ActuatorCore
from car.actuators.isolated import IsolatedDriver
from test_failsafe import NEUTRAL, driving, maestro, wait_until  # noqa: F401  (maestro is a fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_child_obeys_and_its_own_watchdog_ends_a_silent_drive(maestro):
    driver = IsolatedDriver(f"maestro:{maestro.link}", FACTORY_DEFAULT, timeout_s=0.25)
    try:
        assert wait_until(lambda: maestro.positions[:2] == [NEUTRAL[0], NEUTRAL[1]])
        sent = time.monotonic()
        driver.set(0.5, 0.5)
        assert wait_until(lambda: driving(maestro) and maestro.positions[1] > NEUTRAL[1])
        assert wait_until(lambda: maestro.positions[:2] == [NEUTRAL[0], NEUTRAL[1]], 2.0)
        assert time.monotonic() - sent >= 0.25  # not before the timeout: a driving car is not cut short
        with pytest.raises(ValueError):
            FACTORY_DEFAULT.motor.pulse_ns(2.0)
        with pytest.raises(ActuatorFault, match="outside"):
            driver.set(0.0, 2.0)  # the child's own refusal reaches the graph as an actuator fault
    finally:
        driver.close()
    assert maestro.positions[:2] == [0, 0]  # outputs off after neutral
    with pytest.raises(ActuatorFault, match="closed"):
        driver.set(0.0, 0.0)


def test_a_child_gone_before_the_graph_is_built_is_a_fault_not_a_crash(maestro):
    """Ctrl-C reaches the whole process group: the child may end (outputs off) before the graph applies
    its calibration tables. That is an actuator fault the graph latches, not an exception out of the start
    (which once left the camera's reader thread running and the process aborting in C++ teardown)."""
    driver = IsolatedDriver(f"maestro:{maestro.link}", FACTORY_DEFAULT)
    try:
        os.kill(driver.process.pid, signal.SIGINT)
        driver.process.join(10)
        assert driver.process.exitcode == 0
        assert maestro.positions[:2] == [0, 0]  # the child ended at neutral with its outputs off
        core = ActuatorCore(driver, max_steering_rad=0.5, max_speed_mps=1.0)
        assert "gone" in (core.fault or "")
        core.set_calibrations(FACTORY_DEFAULT, wizard_ranges(FACTORY_DEFAULT))
        assert "gone" in (core.fault or "") and not core.at_neutral and core.profile == "car"
    finally:
        driver.close()


def test_a_spec_that_cannot_open_is_one_clear_fault(tmp_path):
    with pytest.raises(ActuatorFault, match="ttyACM9"):
        IsolatedDriver(f"maestro:{tmp_path / 'ttyACM9'}", FACTORY_DEFAULT)


GRAPH = textwrap.dedent("""
    import os, resource, sys, time
    from car.actuators.calibration import FACTORY_DEFAULT
    from car.actuators.isolated import IsolatedDriver

    driver = IsolatedDriver(sys.argv[1], FACTORY_DEFAULT, timeout_s=0.25)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    hoard = []
    try:
        while True:
            hoard.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        print("exhausted", exc.errno, flush=True)
    driver.set(0.0, 0.5)  # the pipe was open before the flood: commands still reach the device
    print("driving", flush=True)
    time.sleep(60)
""")


def graph_process(spec: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", GRAPH, spec], stdout=subprocess.PIPE, text=True, env=env)


def test_a_graph_process_out_of_descriptors_still_drives_then_dies_and_the_child_stops(maestro):
    proc = graph_process(f"maestro:{maestro.link}")
    try:
        assert proc.stdout.readline().split()[:2] == ["exhausted", "24"]  # EMFILE
        assert proc.stdout.readline().strip() == "driving"
        assert wait_until(lambda: driving(maestro))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert wait_until(lambda: not driving(maestro), 2.0)
        assert wait_until(lambda: maestro.positions[:2] == [0, 0], 5.0)  # the child closed: outputs off
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
