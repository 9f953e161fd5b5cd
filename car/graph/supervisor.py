"""Runs the graph as one process per node: starts them, restarts any that dies, reports it on /diagnostics.

A node that dies is restarted after a backoff that doubles with each quick failure, unless it keeps
failing the same way at start-up (the same exit status, GIVE_UP_AFTER times in a row, each within
STABLE_S of its start): a missing package or a bad parameter does not heal by restarting, so the
supervisor reports it and stops trying, rather than printing the same error forever. While a node
is down the rest of the graph keeps the car safe by itself (control times out a silent policy or
camera, the actuator's deadline catches a silent control); a dead actuator process cannot, so
each process may carry an `on_exit` hook, which for the actuator puts the hardware at neutral.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from car.clock import EPOCH_ENV, WallClock, epoch
from car.messages import DIAGNOSTICS_TOPIC, ERROR, OK, DiagnosticArray, DiagnosticStatus, Header, KeyValue, Time
from car.process import PARENT_ENV
from car.transport import NodeBus

log = logging.getLogger("racer.supervisor")

POLL_S = 0.05
DIAGNOSTICS_PERIOD_S = 1.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0
STABLE_S = 10.0
GIVE_UP_AFTER = 3
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class ProcessSpec:
    """A node process; `restart_argv` (default `argv`) starts it again after it died, so a one-time
    action such as `--autostart` is not repeated by a restart (a restarted node never resumes driving)."""

    name: str
    argv: Sequence[str]
    on_exit: Callable[[], None] | None = None
    restart_argv: Sequence[str] | None = None


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    last_exit: str = ""
    same_start_failures: int = 0  # start-up failures in a row with the same exit status; GIVE_UP_AFTER ends them

    @property
    def given_up(self) -> bool:
        return self.same_start_failures >= GIVE_UP_AFTER


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Supervisor:
    def __init__(self, specs: Sequence[ProcessSpec], bus: NodeBus, env: Mapping[str, str]):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be unique: {names}")
        self.bus = bus
        self.env = {**env, PARENT_ENV: str(os.getpid()), EPOCH_ENV: str(epoch())}  # one clock for the car's nodes
        self.children = [_Child(spec) for spec in specs]
        self._diagnostics = bus.publisher(DIAGNOSTICS_TOPIC)
        self.clock = WallClock()
        bus.timer(POLL_S, self.poll, self.clock)
        bus.timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics, self.clock)

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        argv = spec.restart_argv if child.restarts and spec.restart_argv is not None else spec.argv
        child.proc = subprocess.Popen(list(argv), env=self.env)
        child.started = time.monotonic()
        log.info("%s started (pid %d)", child.spec.name, child.proc.pid)

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def poll(self) -> None:
        """Reap dead nodes (report at once, run their on_exit hook) and restart those whose backoff is over."""
        now = time.monotonic()
        changed = False
        for child in self.children:
            if child.proc is None:
                if not child.given_up and now >= child.next_start:
                    child.restarts += 1
                    self._spawn(child)
                    changed = True
                continue
            returncode = child.proc.poll()
            if returncode is None:
                continue
            child.proc = None
            exit_text, quick = describe_exit(returncode), now - child.started < STABLE_S
            if quick and returncode > 0:  # a signal comes from outside (a kill, the OOM killer), a status from the node
                child.same_start_failures = child.same_start_failures + 1 if exit_text == child.last_exit else 1
            else:
                child.same_start_failures = 0
            child.last_exit = exit_text
            child.failures = child.failures + 1 if quick else 1
            delay = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (child.failures - 1))
            child.next_start = now + delay
            if child.given_up:
                log.error("%s %s at start-up %d times in a row: not restarting it (its error is above)",
                          child.spec.name, child.last_exit, child.same_start_failures)
            else:
                log.error("%s %s; restarting in %.1f s", child.spec.name, child.last_exit, delay)
            if child.spec.on_exit is not None:
                child.spec.on_exit()
            changed = True
        if changed:
            self.publish_diagnostics()

    def status(self, child: _Child) -> DiagnosticStatus:
        running = child.proc is not None
        if running:
            message = "running"
        elif child.given_up:
            message = f"{child.last_exit} at start-up {child.same_start_failures} times in a row; not restarted"
        else:
            message = f"{child.last_exit}; restarting in {max(0.0, child.next_start - time.monotonic()):.1f} s"
        return DiagnosticStatus(
            level=OK if running else ERROR, name=f"supervisor/{child.spec.name}", message=message,
            values=(KeyValue("pid", str(child.proc.pid) if child.proc is not None else ""),
                    KeyValue("restarts", str(child.restarts)),
                    KeyValue("last_exit", child.last_exit)))

    def publish_diagnostics(self) -> None:
        self._diagnostics(DiagnosticArray(Header(Time.from_seconds(self.clock.now())),
                                          tuple(self.status(c) for c in self.children)))

    def stop(self) -> None:
        """SIGTERM every node (each ends at neutral on its own), then SIGKILL what is still there after the grace."""
        alive = [(c, c.proc) for c in self.children if c.proc is not None]
        for _, proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child, proc in alive:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within %.0f s: killed", child.spec.name, STOP_GRACE_S)
                proc.kill()
                proc.wait()
                if child.spec.on_exit is not None:
                    child.spec.on_exit()
            child.proc = None

    def run_until_signal(self, duration_s: float | None = None) -> None:
        """Start everything, supervise until SIGTERM/SIGINT (or `duration_s`), then stop the nodes."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.bus.stop())
        if duration_s is not None:
            self.bus.timer(duration_s, self.bus.stop, WallClock())
        try:
            self.start()
            self.bus.spin()
        finally:
            self.stop()
            self.bus.close()
