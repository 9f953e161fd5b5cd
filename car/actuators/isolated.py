"""A hardware driver in a process of its own, with its own watchdog.

In the single-process car (`--transport local`) the console's web server shares the process with
the graph. A flood of connections could use up that process's file descriptors or starve its
threads, so the device handles and a last watchdog live in a child process instead, as the stock
DeepRacer runs its servo node apart from its web server: the child opens the device (neutral
first, outputs enabled after), obeys commands from the graph over a pipe, and puts the outputs at
neutral by itself when no command has come for `timeout_s` while driving, or when the graph's
process dies or closes the pipe. `IsolatedDriver` is the graph's side: an ordinary `Driver`.
"""
from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from car.actuators.base import ActuatorFault
from car.actuators.pulse import ActuatorCalibration

REPLY_TIMEOUT_S = 1.0
START_TIMEOUT_S = 20.0
POLL_S = 0.01


def _serve(conn: Connection, spec: str, calibration: ActuatorCalibration, timeout_s: float) -> None:
    """The child: open the driver, answer every request with ("ok",) or ("fault", reason)."""
    from car.actuators.open import open_actuator
    from car.process import PARENT_ENV, StopSignals, die_with_parent

    stop = StopSignals()  # Ctrl-C reaches the whole process group: end at neutral
    stop.install()
    parent = multiprocessing.parent_process()
    assert parent is not None  # this runs only as the actuator's child process
    die_with_parent({PARENT_ENV: str(parent.pid)})
    try:
        driver = open_actuator(spec, calibration)
    except (ActuatorFault, OSError, ValueError) as exc:
        conn.send(("fault", str(exc)))
        return
    conn.send(("ok",))
    driving, last = False, time.monotonic()
    try:
        while not stop.is_set():
            if conn.poll(POLL_S):
                request = conn.recv()
                name = request[0]
                try:
                    if name == "set":
                        driver.set(*request[1:])
                        driving, last = request[1:] != (0.0, 0.0), time.monotonic()
                    elif name == "neutral":
                        driver.neutral()
                        driving = False
                    elif name == "calibration":
                        driver.calibration = request[1]
                    elif name == "close":
                        break
                    conn.send(("ok",))
                except (ActuatorFault, ValueError) as exc:  # a device error, or a command outside [-1, 1]
                    conn.send(("fault", f"{spec}: {exc}"))
            elif driving and time.monotonic() - last > timeout_s:
                driver.neutral()  # the graph went quiet: its process may be flooded or hung
                driving = False
    except (EOFError, OSError):
        pass  # the graph's process is gone
    finally:
        try:
            driver.close()
        finally:
            try:
                conn.send(("ok",))
            except (OSError, ValueError):
                pass


class IsolatedDriver:
    """The `Driver` for hardware named by `spec`, run in a child process (see the module doc).

    Every call waits for the child's answer; a child that does not answer within REPLY_TIMEOUT_S,
    or is gone, is an ActuatorFault (and the child's watchdog has already put the outputs at neutral).
    """

    def __init__(self, spec: str, calibration: ActuatorCalibration, timeout_s: float = 0.25):
        self.name = spec
        self._calibration = calibration
        self._lock = threading.Lock()
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, spec, calibration, timeout_s),
                                       name=f"actuator {spec}", daemon=True)
        self.process.start()
        child.close()
        self._closed = False
        self._ask(None, START_TIMEOUT_S)

    @property
    def calibration(self) -> ActuatorCalibration:
        return self._calibration

    @calibration.setter
    def calibration(self, value: ActuatorCalibration) -> None:
        self._ask(("calibration", value))
        self._calibration = value

    def _ask(self, request: tuple[Any, ...] | None, timeout: float = REPLY_TIMEOUT_S) -> None:
        with self._lock:
            if self._closed:
                raise ActuatorFault(f"{self.name}: closed")
            try:
                if request is not None:
                    self._conn.send(request)
                if not self._conn.poll(timeout):
                    raise ActuatorFault(f"{self.name}: the actuator process did not answer within {timeout:g} s")
                reply = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise ActuatorFault(f"{self.name}: the actuator process is gone ({exc or type(exc).__name__})") \
                    from None
        if reply[0] == "fault":
            raise ActuatorFault(reply[1])

    def set(self, steering: float, throttle: float) -> None:
        self._ask(("set", float(steering), float(throttle)))

    def neutral(self) -> None:
        self._ask(("neutral",))

    def close(self) -> None:
        """Neutral and outputs off in the child, then it exits; idempotent."""
        if self._closed:
            return
        try:
            self._ask(("close",))
        except ActuatorFault:
            pass  # the child closes the device on its own way out
        finally:
            self._closed = True
            self._conn.close()
            self.process.join(timeout=2.0)
            if self.process.is_alive():
                self.process.terminate()
