"""Failsafe on real drivers: each fault leaves the Maestro (bytes on a real pty) at neutral.

The whole car stack runs with a real camera source (an images folder), a real OpenVINO policy and
the Maestro driver talking to the emulator; faults are injected where they happen on a car.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest

from car.actuators.calibration import FACTORY_DEFAULT
from car.actuators.maestro import MaestroDriver
from car.camera.capture import open_camera
from car.clock import WallClock
from car.graph.stack import CarGraph
from car.policy.bundle import load_bundle, save_bundle
from car.policy.core import PolicyModel
from car.policy.inference import Policy
from car.policy.preprocess import DEEPRACER_SPEC
from car.transport.local import LocalBus
from hw.maestro_emulator import MaestroEmulator
from model_factory import metadata, ov_model

# Factory calibration in quarter-microseconds: ESC (channel 0) and servo (channel 1) at mid.
NEUTRAL = {0: 5784, 1: 5800}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny"
    save_bundle(out, ov_model(), metadata(), DEEPRACER_SPEC).close()
    return out


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((480, 640, 3), 40 + 20 * i, np.uint8))
    return folder


@pytest.fixture
def maestro(tmp_path):
    with MaestroEmulator(tmp_path / "ttyACM0") as emulator:
        yield emulator


def wait_until(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def driving(emulator) -> bool:
    return emulator.positions[0] not in (0, NEUTRAL[0])


def at_neutral(emulator) -> bool:
    return emulator.positions[:2] == [NEUTRAL[0], NEUTRAL[1]]


class Car:
    """`racer car --transport local` as racer.processes.local builds it: the nodes on a spinning LocalBus."""

    def __init__(self, camera, driver, model):
        from racer.processes.local import LocalCar

        bus = LocalBus()
        self.graph = CarGraph(WallClock(), camera, driver, model, bus=bus)
        bus.on_error = self.graph.fault
        self.local = LocalCar(bus, self.graph)

    def command(self, name: str, *args) -> None:
        """A request to control, run on the car's executor as a bus message would be; ValueError when refused."""
        answer: Future[str] = Future()
        self.local.bus.post(lambda: answer.set_result(self.graph.control.request(name, *args)))
        if answer.result(5) != "ok":
            raise ValueError(answer.result())

    def stop(self) -> None:
        self.local.stop()


def start_car(bundle_dir, images, emulator, infer_wrapper=None):
    bundle = load_bundle(bundle_dir)
    infer = Policy(bundle).infer
    model = PolicyModel(infer_wrapper(infer) if infer_wrapper else infer, bundle.spec, bundle.metadata)
    camera = open_camera(f"images:{images}", fps=15)
    runtime = Car(camera, MaestroDriver(FACTORY_DEFAULT, str(emulator.link)), model)
    runtime.local.start()
    runtime.command("set_mode", "autonomous")
    runtime.command("start")
    assert wait_until(lambda: driving(emulator)), "the car never drove"
    return runtime, camera


def test_stale_command_from_a_hung_policy_goes_neutral(bundle_dir, images, maestro):
    release = threading.Event()
    calls = {"n": 0}

    def hanging(infer):
        def wrapped(x):
            calls["n"] += 1
            if calls["n"] > 10:
                release.wait(10)
            return infer(x)
        return wrapped

    runtime, camera = start_car(bundle_dir, images, maestro, hanging)
    try:
        assert wait_until(lambda: calls["n"] > 10)
        assert wait_until(lambda: at_neutral(maestro), 1.0)
        assert runtime.graph.actuator.core.at_neutral
        release.set()  # the policy answers again: the car stays where the fault left it
        # the policy held the graph, so the camera's heartbeat went quiet too: whichever latched first
        stays_stopped_until_start(runtime, maestro, "policy command stale", "camera stale")
    finally:
        release.set()
        runtime.stop()
        camera.close()


def stays_stopped_until_start(runtime, maestro, *reasons: str) -> None:
    """The fault has cleared: the outputs stay at neutral, latched with one of `reasons`, until a user's start."""
    resumed = wait_until(lambda: driving(maestro), 1.5)
    assert not resumed, "the car drove off by itself after the fault cleared"
    assert any(reason in runtime.graph.control.core.state.latch.reason for reason in reasons)
    assert runtime.graph.control.core.diagnostics(runtime.graph.clock.now()).value("start_needed") == "true"
    runtime.command("start")
    assert wait_until(lambda: driving(maestro)), "start did not drive the car again"


def test_camera_loss_goes_neutral_and_its_return_does_not_restart_the_car(bundle_dir, images, maestro):
    runtime, camera = start_car(bundle_dir, images, maestro)
    try:
        frames = {f.name: f.read_bytes() for f in images.iterdir()}
        for f in images.iterdir():
            f.unlink()
        assert wait_until(lambda: at_neutral(maestro), 2.0)
        # no frames, so the policy went quiet too: whichever of the two latched first
        assert wait_until(lambda: "camera stale" in runtime.graph.control.core.last_reason
                          or "policy command stale" in runtime.graph.control.core.last_reason, 2.0)
        assert wait_until(lambda: "camera stale" in "; ".join(runtime.graph.control.core.watchdog.faults(
            runtime.graph.clock.now()).values()), 2.0)
        with pytest.raises(ValueError, match="cannot start: camera stale"):
            runtime.command("start")
        for name, data in frames.items():  # the case: the folder refilled after 2 s
            (images / name).write_bytes(data)
        stays_stopped_until_start(runtime, maestro, "camera stale", "policy command stale")
    finally:
        runtime.stop()
        camera.close()


def test_the_end_of_a_replayed_recording_is_a_lost_camera(bundle_dir, maestro, tmp_path):
    """`--camera bag:PATH` on a car: the car drives the recording, then stops at neutral at its end,
    latched, and a start is refused while there is no camera."""
    from car.camera.capture import open_camera
    from car.clock import SimClock
    from car.graph.recorder import BagRecorder
    from car.messages import CAMERA_TOPIC, Header, Image, Time
    from car.transport.local import LocalBus

    bus, clock = LocalBus(), SimClock()
    recorder = BagRecorder(bus, clock, tmp_path / "drive")
    for i in range(30):  # two seconds at 15 Hz
        clock.set(i / 15)
        bus.publisher(CAMERA_TOPIC)(Image(Header(Time.from_seconds(clock.now()), "camera"),
                                          np.full((480, 640, 3), 40 + i, np.uint8)))
    recorder.close()
    camera = open_camera(f"bag:{recorder.path}", fps=15)
    runtime = Car(camera, MaestroDriver(FACTORY_DEFAULT, str(maestro.link)), Policy(load_bundle(bundle_dir)).model())
    runtime.local.start()
    runtime.command("set_mode", "autonomous")
    runtime.command("start")
    try:
        assert wait_until(lambda: driving(maestro)), "the car never drove"
        assert wait_until(camera.ended.is_set, 5.0)
        assert wait_until(lambda: at_neutral(maestro), 2.0)
        assert wait_until(lambda: "camera stale" in "; ".join(runtime.graph.control.core.watchdog.faults(
            runtime.graph.clock.now()).values()), 2.0)
        with pytest.raises(ValueError, match="cannot start: camera stale"):
            runtime.command("start")
        assert not wait_until(lambda: driving(maestro), 1.0)
        assert "the recording ended after" in runtime.graph.camera.fault
    finally:
        runtime.stop()
        camera.close()


def test_a_policy_error_that_clears_does_not_restart_the_car(bundle_dir, images, maestro):
    failing = {"left": 0, "armed": False}

    def flaky(infer):
        def wrapped(x):
            if failing["left"] > 0:
                failing["left"] -= 1
                raise RuntimeError("inference failed")
            return infer(x)
        return wrapped

    runtime, camera = start_car(bundle_dir, images, maestro, flaky)
    try:
        failing["left"] = 3
        assert wait_until(lambda: at_neutral(maestro), 2.0)
        assert wait_until(lambda: failing["left"] == 0)
        stays_stopped_until_start(runtime, maestro, "inference failed")
    finally:
        runtime.stop()
        camera.close()


def test_exception_in_control_loop_goes_neutral_and_latches(bundle_dir, images, maestro):
    runtime, camera = start_car(bundle_dir, images, maestro)
    core = runtime.graph.control.core
    original = core.tick
    boom = {"armed": True}

    def tick(now):
        if boom["armed"]:
            boom["armed"] = False
            raise RuntimeError("control bug")
        return original(now)

    core.tick = tick
    try:
        assert wait_until(lambda: not boom["armed"])
        assert wait_until(lambda: at_neutral(maestro), 1.0)
        time.sleep(0.3)
        assert at_neutral(maestro) and core.estopped  # latched: frames keep coming, the car stays
        assert "control bug" in runtime.graph.last_fault
    finally:
        runtime.stop()
        camera.close()
    assert maestro.positions[:2] == [0, 0]  # outputs off after the stop


class Unprintable(RuntimeError):
    def __str__(self):
        raise TypeError("no text")


@pytest.mark.parametrize("breakage", ["request raises", "stop refused", "unprintable fault"])
def test_a_control_that_cannot_latch_the_stop_ends_the_car_at_neutral(bundle_dir, images, maestro, breakage):
    """Control's tick raises, and its emergency stop raises, or is refused (a ValueError, which
    `request` turns into a refusal), or the fault cannot even be printed: the handler still reaches
    the Maestro first, and with no latch to rely on it ends the executor instead of driving on."""
    runtime, camera = start_car(bundle_dir, images, maestro)
    graph, core = runtime.graph, runtime.graph.control.core

    def raising(error):
        def broken(*args):
            raise error
        return broken

    core.tick = raising(Unprintable() if breakage == "unprintable fault" else RuntimeError("control bug"))
    if breakage == "request raises":
        graph.control.request = raising(RuntimeError("control bug"))
    else:
        core.emergency_stop = raising(ValueError("refused"))
    try:
        assert wait_until(lambda: not runtime.local._thread.is_alive(), 5.0), "the executor kept spinning"
        assert wait_until(lambda: at_neutral(maestro), 1.0) and not core.estopped
        assert graph.faults == 1 and graph.stopped_by_fault
        assert graph.last_fault == ("timer: Unprintable" if breakage == "unprintable fault"
                                    else "timer: RuntimeError: control bug")
    finally:
        runtime.stop()
        camera.close()
    assert maestro.positions[:2] == [0, 0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_racer_car_at_neutral_then_off(bundle_dir, images, maestro, sig):
    proc = subprocess.Popen([sys.executable, "-m", "racer.cli", "car", "--camera", f"images:{images}",
                             "--actuator", f"maestro:{maestro.link}", "--model", str(bundle_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: at_neutral(maestro), 30), "the car never opened the Maestro"
        assert wait_until(lambda: proc.poll() is None and len(maestro.targets) >= 2)
        sent = len(maestro.targets)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    tail = maestro.targets[sent:]
    assert tail[-4:] == [(0, NEUTRAL[0]), (1, NEUTRAL[1]), (0, 0), (1, 0)]
    assert all(t in ((0, NEUTRAL[0]), (1, NEUTRAL[1]), (0, 0), (1, 0)) for t in tail)


def test_ctrl_c_held_down_ends_racer_car_at_neutral_then_off(bundle_dir, images, maestro):
    """Ctrl-C pressed again and again (or held) reaches the car and its actuator process many times: a
    handler that took a lock could run again inside itself and hang the process with its outputs on."""
    for attempt in range(3):  # a handler interrupted at the wrong instant: try it more than once
        maestro.targets.clear()
        proc = subprocess.Popen([sys.executable, "-m", "racer.cli", "car", "--camera", f"images:{images}",
                                 "--actuator", f"maestro:{maestro.link}", "--model", str(bundle_dir)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert wait_until(lambda: len(maestro.targets) >= 2 and at_neutral(maestro), 30), "never opened the Maestro"
            pressed_until = time.monotonic() + 1.0
            while time.monotonic() < pressed_until:  # the terminal signals the whole group at each press
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:  # all ended already
                    break
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        # 0, or the signal itself once Python has put back its default handlers while exiting
        assert proc.returncode in (0, -signal.SIGINT), (attempt, err)
        assert maestro.targets[-2:] == [(0, 0), (1, 0)]  # outputs off at the end


def test_a_signal_while_the_actuator_node_starts_still_ends_with_the_outputs_off(maestro, tmp_path):
    """SIGTERM as soon as the node has opened the Maestro (before or while it spins): neutral, then off."""
    proc = subprocess.Popen([sys.executable, "-m", "racer.cli", "node", "actuator", "--transport", "dds",
                             "--actuator", f"maestro:{maestro.link}", "--state-dir", str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: maestro.positions[:2] == [NEUTRAL[0], NEUTRAL[1]], 60), "never opened the Maestro"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert maestro.positions[:2] == [0, 0]  # outputs off, not merely at neutral
