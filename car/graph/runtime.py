"""Runs the in-process car graph in real time: camera frames, timers, signals, faults.

One lock serialises everything that touches the graph (frames, timers, console commands), so
the cores stay single-threaded. Any exception in the loop latches an emergency stop; SIGTERM and
SIGINT end the run with the actuator at neutral and its outputs disabled.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from car.graph.stack import LocalStack
from car.process import StopSignals

log = logging.getLogger("racer.car")


class Stepper(Protocol):
    """Advances a simulated world one camera period (the simulator in `racer car --sim`)."""

    dt: float

    def step(self) -> Any: ...


class CarRuntime:
    def __init__(self, stack: LocalStack, tick_hz: float = 50.0, diagnostics_hz: float = 1.0,
                 sim: Stepper | None = None, on_sim_time: Callable[[float], None] | None = None,
                 stop_event: threading.Event | None = None):
        self.stack = stack
        self.lock = threading.RLock()
        self.stop_event = stop_event or threading.Event()
        self.tick_period = 1.0 / tick_hz
        self.diagnostics_period = 1.0 / diagnostics_hz
        self.sim = sim
        self.on_sim_time = on_sim_time
        self.faults = 0
        self.last_fault = ""
        self._threads: list[threading.Thread] = []

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn` on the graph under the lock (console and teleop use this)."""
        with self.lock:
            return fn(*args)

    def command(self, name: str, *args: Any) -> Any:
        """A control command by name (start, stop, set_mode, emergency_stop, calibrate), published at once."""
        control = self.stack.control
        return self.call(control.command, getattr(control.core, name), *args)

    def _fault(self, where: str, exc: BaseException) -> None:
        """Called with the lock held, so no other thread can publish between the fault and the stop."""
        self.faults += 1
        self.last_fault = f"{where}: {type(exc).__name__}: {exc}"
        log.error("fault in %s, emergency stop: %s", where, self.last_fault)
        try:
            with self.lock:
                self.stack.control.command(self.stack.control.core.emergency_stop)
                self.stack.actuator.core.neutral()
        except Exception:  # the graph itself is broken: still reach the hardware
            self.stack.actuator.core.driver.neutral()

    def _camera_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                frame, stamp = self.stack.camera.source.read()
            except Exception as exc:  # camera loss: the control watchdog puts the car at neutral
                self.last_fault = f"camera: {exc}"
                self.stop_event.wait(0.05)
                continue
            with self.lock:
                try:
                    self.stack.camera.publish_frame(frame, stamp)
                except Exception as exc:
                    self._fault("camera frame", exc)

    def _sim_loop(self) -> None:
        assert self.sim is not None
        t0 = time.monotonic()
        steps = 0
        while not self.stop_event.is_set():
            with self.lock:
                try:
                    self.stack.frame()
                    info = self.sim.step()
                    if self.on_sim_time is not None:
                        self.on_sim_time(info.time)
                except Exception as exc:
                    self._fault("simulation", exc)
            steps += 1
            self.stop_event.wait(max(0.0, t0 + steps * self.sim.dt - time.monotonic()))

    def _timer_loop(self) -> None:
        next_diag = time.monotonic()
        while not self.stop_event.wait(self.tick_period):
            with self.lock:
                try:
                    self.stack.control.tick()  # the actuator has its own watchdog loop
                    if time.monotonic() >= next_diag:
                        self.stack.publish_diagnostics()
                        next_diag += self.diagnostics_period
                except Exception as exc:
                    self._fault("timer", exc)

    def _actuator_watchdog_loop(self) -> None:
        """Outside the graph lock: a hung policy or control cannot keep the car driving."""
        actuator = self.stack.actuator
        while not self.stop_event.wait(self.tick_period):
            actuator.tick()

    def start(self) -> None:
        loops = [self._sim_loop if self.sim is not None else self._camera_loop, self._timer_loop,
                 self._actuator_watchdog_loop]
        for loop in loops:
            thread = threading.Thread(target=loop, name=loop.__name__.strip("_"), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)
        with self.lock:
            self.stack.close()
        close_camera = getattr(self.stack.camera.source, "close", None)
        if close_camera is not None:
            close_camera()

    def run_until_signal(self, duration_s: float | None = None, signals: StopSignals | None = None) -> None:
        """Start, wait for SIGTERM/SIGINT (or `duration_s`), then stop at neutral. `signals`: handlers the
        caller installed for its start-up, on this runtime's stop event (default: installed here)."""
        signals = signals or StopSignals(self.stop_event)
        previous = signals.install()
        try:
            self.start()
            signals.wait(duration_s)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
