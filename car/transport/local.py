"""In-process transport: the `NodeBus` of the process transports, for single-process runs and tests.

One executor, as a single-threaded ROS 2 executor: the thread that calls `spin` runs the timers,
the posted work and every delivery. A publish on that thread delivers at once, synchronously (a
camera frame runs the whole chain before the next); a publish from any other thread (a camera
reader, the console's web server) is posted to it, so the nodes' cores stay single-threaded. Until
something spins, a publish delivers at once on the caller's thread, so a graph can also be stepped
by hand (the simulator's fast drives, tests).

A deadline watch (`watch_deadline`) runs on a thread of its own while the bus spins: a hung
callback on the executor cannot keep the actuator driving, as a DDS deadline in another process cannot.
An exception in a callback goes to `on_error` (the car's emergency stop) when one is set, else out of `spin`.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from car.clock import Clock, SimClock, WallClock

CLOCK_TOPIC = "/clock"  # car.transport.wire's; the in-process bus does not import the wire format
MAX_WAIT_S = 0.5


class _Deadline:
    """Calls `on_missed` (on its own thread) every `period_s` of wall time in which no message came."""

    def __init__(self, topic: str, period_s: float, on_missed: Callable[[], None]):
        self.topic, self.period_s, self.on_missed = topic, period_s, on_missed
        self.last = time.monotonic()
        self.thread: threading.Thread | None = None

    def run(self, stopping: threading.Event) -> None:
        while not stopping.wait(self.period_s / 4):
            if time.monotonic() - self.last > self.period_s:
                self.last = time.monotonic()
                self.on_missed()


class _Timer:
    def __init__(self, period_s: float, callback: Callable[[], None], clock: Clock):
        self.period_s, self.callback, self.clock = period_s, callback, clock
        self.due = clock.now() + period_s


class LocalBus:
    def __init__(self, on_error: Callable[[str, BaseException], None] | None = None) -> None:
        self.on_error = on_error
        self._subs: dict[str, list[Callable[[Any], None]]] = defaultdict(list)
        self._deadlines: dict[str, _Deadline] = {}
        self._timers: list[_Timer] = []
        self._posted: deque[Callable[[], None]] = deque()
        self._wake = threading.Condition(threading.RLock())  # re-entrant: `stop` may run in a signal handler
        self._stopping = threading.Event()
        self._executor: int | None = None

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        self._subs[topic].append(callback)

    def publisher(self, topic: str) -> Callable[[Any], None]:
        subscribers = self._subs[topic]

        def deliver(msg: Any) -> None:
            deadline = self._deadlines.get(topic)
            if deadline is not None:
                deadline.last = time.monotonic()
            for callback in list(subscribers):
                callback(msg)

        def publish(msg: Any) -> None:
            if self._executor is None or self._executor == threading.get_ident():
                deliver(msg)
            else:
                self.post(lambda: deliver(msg))
        return publish

    def watch_deadline(self, topic: str, period_s: float, on_missed: Callable[[], None]) -> None:
        """`on_missed` runs on a watchdog thread whenever `period_s` of wall time passes without a message."""
        self._deadlines[topic] = _Deadline(topic, period_s, on_missed)

    def timer(self, period_s: float, callback: Callable[[], None], clock: Clock) -> None:
        """Run `callback` every `period_s` of `clock` while the bus spins; missed periods are skipped."""
        if not period_s > 0:
            raise ValueError(f"timer period must be positive, got {period_s}")
        with self._wake:
            self._timers.append(_Timer(period_s, callback, clock))
            self._wake.notify()

    def node_clock(self, sim_time: bool) -> Clock:
        """Wall time, or the simulator's /clock (as a ROS node with use_sim_time)."""
        if not sim_time:
            return WallClock()
        clock = SimClock()
        self.subscribe(CLOCK_TOPIC, lambda stamp: clock.set(max(clock.now(), stamp.to_seconds())))
        return clock

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the executor (safe from any thread)."""
        with self._wake:
            self._posted.append(fn)
            self._wake.notify()

    def _run(self, where: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            if self.on_error is None:
                raise
            self.on_error(where, exc)

    def spin(self) -> None:
        """Run the executor on this thread until `stop`."""
        self._executor = threading.get_ident()
        for deadline in self._deadlines.values():
            deadline.last = time.monotonic()
            deadline.thread = threading.Thread(target=deadline.run, args=(self._stopping,),
                                               name=f"deadline {deadline.topic}", daemon=True)
            deadline.thread.start()
        while not self._stopping.is_set():
            self.spin_once()

    def spin_once(self, max_wait_s: float = MAX_WAIT_S) -> None:
        with self._wake:
            if not self._posted and not self._stopping.is_set():
                wait = min([max_wait_s, *(t.due - t.clock.now() for t in self._timers)])
                if wait > 0:
                    self._wake.wait(wait)
            posted, self._posted = self._posted, deque()
        for fn in posted:
            if self._stopping.is_set():  # after `stop` (a fault's included) nothing more is delivered
                return
            self._run("posted work", fn)
        self._run_timers()

    def _run_timers(self) -> None:
        for timer in list(self._timers):
            if self._stopping.is_set():
                return
            now = timer.clock.now()
            if now >= timer.due:
                timer.due += timer.period_s
                if timer.due <= now:  # missed periods (a stall, a jump of sim time) are skipped, not replayed
                    timer.due = now + timer.period_s
                self._run("timer", timer.callback)

    def stop(self) -> None:
        """Make `spin` return (safe from any thread and from signal handlers)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()

    def close(self) -> None:
        self.stop()
        for deadline in self._deadlines.values():
            if deadline.thread is not None and deadline.thread is not threading.current_thread():
                deadline.thread.join(timeout=1.0)
