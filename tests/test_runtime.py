"""The real-time car runtime: it drives, latches faults to neutral, and ends at neutral."""
import os
import signal
import threading
import time

import numpy as np

from car.policy.metadata import parse_metadata
from car.policy.core import PolicyModel
from car.policy.preprocess import PreprocessSpec
from sim2real.drive import sim_runtime
from sim2real.sim.adapters import SimActuator, SimCamera
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator

# A policy that always asks for straight ahead at a modest speed: enough to see the car move.
SPEC = PreprocessSpec(width=16, height=12, layout="NCHW", scale=1 / 255)
META = parse_metadata({"action_space": [{"steering_angle": 0, "speed": 1.0}, {"steering_angle": 30, "speed": 1.0}]})


class Driver(SimActuator):
    def __init__(self, sim):
        super().__init__(sim)
        self.log = []

    def set(self, steering, throttle):
        super().set(steering, throttle)
        self.log.append((steering, throttle))

    def neutral(self):
        super().neutral()
        self.log.append((0.0, 0.0))

    def close(self):
        super().close()
        self.log.append("closed")


def make():
    sim = Simulator(Track.load("reinvent_base"))
    driver = Driver(sim)
    model = PolicyModel(lambda x: np.array([1.0, 0.0], np.float32), SPEC, META)
    return sim, driver, sim_runtime(sim, model, driver=driver)


def test_autostart_drives_then_stop_ends_at_neutral_closed():
    sim, driver, runtime = make()
    runtime.command("set_mode", "autonomous")
    runtime.command("start")
    runtime.start()
    time.sleep(1.0)
    runtime.stop()
    assert sim.info.speed > 0.5 and sim.info.progress > 1.0
    # straight ahead, speed 1.0 of max 1.0 -> throttle 1.0, times the default max-speed setting 0.5
    assert (0.0, 0.5) in driver.log
    assert driver.log[-2:] == [(0.0, 0.0), "closed"]


def test_exception_in_the_loop_latches_emergency_stop():
    class FlakyCamera(SimCamera):
        calls = 0

        def read(self):
            FlakyCamera.calls += 1
            if FlakyCamera.calls == 5:
                raise RuntimeError("frame buffer corrupt")
            return super().read()

    _, driver, runtime = make()
    runtime.stack.camera.source = FlakyCamera(runtime.sim)
    at_fault = []
    original = runtime._fault
    runtime._fault = lambda where, exc: (at_fault.append(len(driver.log)), original(where, exc))
    runtime.command("set_mode", "autonomous")
    runtime.command("start")
    runtime.start()
    time.sleep(0.8)
    runtime.stop()
    assert runtime.faults == 1 and "frame buffer corrupt" in runtime.last_fault
    assert runtime.stack.control.core.estopped
    before, after = driver.log[:at_fault[0]], driver.log[at_fault[0]:]
    assert (0.0, 0.5) in before
    assert len(after) > 10 and set(after) == {(0.0, 0.0), "closed"}


def test_sigterm_ends_run_until_signal_at_neutral():
    sim, driver, runtime = make()
    runtime.command("set_mode", "autonomous")
    runtime.command("start")
    threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGTERM)).start()
    runtime.run_until_signal(duration_s=10)
    assert sim.info.speed > 0.1
    assert driver.log[-2:] == [(0.0, 0.0), "closed"]
