"""The car's nodes in one process (`racer car --transport local --sim`): they drive, latch any exception on
the executor as an emergency stop, and end at neutral."""
import os
import signal
import threading
import time

import numpy as np
import pytest

from car.config import CarConfig
from car.messages import DRIVE_TOPIC
from car.policy.core import PolicyModel
from car.policy.metadata import parse_metadata
from car.policy.preprocess import PreprocessSpec
from racer.processes.local import sim_car
from sim2real.sim.track import Track

# A policy that always asks for straight ahead at a modest speed: enough to see the car move.
SPEC = PreprocessSpec(width=16, height=12, layout="NCHW", scale=1 / 255)
META = parse_metadata({"action_space": [{"steering_angle": 0, "speed": 1.0}, {"steering_angle": 30, "speed": 1.0}]})


class Driver:
    """The sim-link driver, logging each command and the close."""

    def __init__(self, driver):
        self.driver = driver
        self.log = []

    def set(self, steering, throttle):
        self.driver.set(steering, throttle)
        self.log.append((steering, throttle))

    def neutral(self):
        self.driver.neutral()
        self.log.append((0.0, 0.0))

    def close(self):
        self.driver.close()
        self.log.append("closed")


def make():
    drivers = []

    def wrap(driver):
        drivers.append(Driver(driver))
        return drivers[0]

    model = PolicyModel(lambda x: np.array([1.0, 0.0], np.float32), SPEC, META)
    car = sim_car(Track.load("reinvent_base"), model, CarConfig(autostart=True), "straight", wrap_driver=wrap)
    return car.world.sim, drivers[0], car


def test_autostart_drives_then_stop_ends_at_neutral_closed():
    sim, driver, car = make()
    car.start()
    time.sleep(1.5)
    car.stop()
    assert sim.info.speed > 0.5 and sim.info.progress > 1.0
    # straight ahead, speed 1.0 of max 1.0 -> throttle 1.0, times the default max-speed setting 0.5
    assert (0.0, 0.5) in driver.log
    assert driver.log[-2:] == [(0.0, 0.0), "closed"]


def failing_drive_subscriber(car, at: int) -> dict:
    """A /drive subscriber that raises on the `at`-th command; returns its count of commands seen."""
    drives = {"n": 0}

    def flaky(msg):
        drives["n"] += 1
        if drives["n"] == at:
            raise RuntimeError("a node's bug")

    car.bus.subscribe(DRIVE_TOPIC, flaky)
    return drives


def test_an_exception_on_the_executor_latches_an_emergency_stop(caplog):
    sim, driver, car = make()
    failing_drive_subscriber(car, 60)
    car.start()
    time.sleep(1.5)
    car.stop()
    assert car.graph.faults == 1 and "a node's bug" in car.graph.last_fault
    assert car.graph.control.core.estopped
    latches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("latched")]
    assert latches == ["latched: emergency stop"]  # the car's log says why it stopped, once
    at_fault = max(i for i, entry in enumerate(driver.log) if entry == (0.0, 0.5))
    assert at_fault > 0
    assert len(driver.log) - at_fault > 10 and set(driver.log[at_fault + 1:]) == {(0.0, 0.0), "closed"}


def test_sigterm_ends_run_until_signal_at_neutral():
    sim, driver, car = make()
    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    car.run_until_signal(duration_s=10)
    assert sim.info.speed > 0.1
    assert driver.log[-2:] == [(0.0, 0.0), "closed"]


def test_a_closer_that_raises_still_leaves_the_car_at_neutral_closed():
    """The console (or recorder) closes first; its failure must not keep the actuator from neutral."""
    sim, driver, car = make()

    def broken_console_stop():
        raise OSError("the console's socket is gone")

    car.closers.append(broken_console_stop)
    car.start()
    time.sleep(1.0)
    with pytest.raises(OSError, match="socket is gone"):  # raised, after every other closer ran
        car.stop()
    assert sim.info.speed > 0.1
    assert driver.log[-2:] == [(0.0, 0.0), "closed"]


def test_a_fault_control_cannot_hold_ends_run_until_signal_with_the_reason():
    """`racer car` and `racer demo` fail with this reason (exit 1) instead of reporting a clean stop."""
    sim, driver, car = make()
    drives = failing_drive_subscriber(car, 30)

    def refuse(name, *args):
        raise RuntimeError("control is broken too")

    car.graph.control.request = refuse
    stopped = car.run_until_signal(duration_s=10)
    assert stopped == ("stopped at neutral: control could not hold the emergency stop after "
                       "posted work: RuntimeError: a node's bug")
    assert sim.info.progress > 0.1 and drives["n"] == 30  # it drove, and nothing reached /drive after the fault
    assert driver.log[-2:] == [(0.0, 0.0), "closed"]
