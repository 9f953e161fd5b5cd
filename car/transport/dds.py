"""Cyclone DDS transport with ROS 2 wire naming, CDR and QoS: `ros2 topic echo` sees the car without rclpy.

A DdsBus is one node's participant plus a single-threaded executor (as rclpy's): subscription
callbacks, deadline events, timers and work posted from other threads all run on the thread that
spins, so the node cores never see two calls at once.

Samples cross the binding as CDR bytes (its own write/take calls, under the typed DataWriter and
DataReader): `car.transport.wire` encodes them, so a 57 kB image costs one copy rather than a Python object
per pixel. The IDL structs only name and describe the types to DDS. A sample is padded to a whole
number of 4-byte words, as RTPS carries it; rosbags and rmw decoders skip that padding.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedds._clayer import ddspy_take, ddspy_write
from cyclonedds.core import DDSException, DDSStatus, GuardCondition, InstanceState, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from car.clock import Clock, SimClock, WallClock
from car.messages import Time
from car.transport.qos import TOPIC_QOS, TopicQos
from car.transport.wire import CLOCK_TOPIC, WireError, WireType, dds_topic_name, wire_type

log = logging.getLogger("racer.dds")

SHIPPED_CONFIG = Path(__file__).resolve().with_name("cyclonedds.xml")
MAX_WAIT_S = 0.1
TAKE_BATCH = 64
ANY_SAMPLE = SampleState.Any | ViewState.Any | InstanceState.Any


def cyclone_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with CYCLONEDDS_URI set to the shipped loopback config, unless set already."""
    out = dict(os.environ if env is None else env)
    if not out.get("CYCLONEDDS_URI"):
        out["CYCLONEDDS_URI"] = SHIPPED_CONFIG.as_uri()
    return out


def domain_id(env: Mapping[str, str] | None = None) -> int:
    """ROS_DOMAIN_ID, as every ROS 2 process reads it (0 when unset)."""
    raw = (os.environ if env is None else env).get("ROS_DOMAIN_ID", "") or "0"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID must be an integer 0..232, got {raw!r}") from None
    if not 0 <= value <= 232:
        raise ValueError(f"ROS_DOMAIN_ID must be 0..232, got {value}")
    return value


def _cyclone_qos(qos: TopicQos, deadline_s: float | None) -> Qos:
    """The topic's QoS for Cyclone, always plain CDR (XCDR1) as rmw_cyclonedds writes."""
    policies = [
        Policy.Reliability.Reliable(duration(milliseconds=100)) if qos.reliable else Policy.Reliability.BestEffort,
        Policy.History.KeepLast(qos.depth),
        Policy.Durability.Volatile,
        Policy.DataRepresentation(use_cdrv0_representation=True),
    ]
    if deadline_s is not None:
        policies.append(Policy.Deadline(duration(seconds=deadline_s)))
    return Qos(*policies)


class TimeWentBackwards(RuntimeError):
    """/clock jumped back: the simulator restarted, and every age a node holds is now wrong."""


@dataclass
class _Reader:
    topic: str
    reader: DataReader
    wire: WireType
    callback: Callable[[Any], None]
    on_deadline: Callable[[], None] | None


@dataclass
class _Timer:
    period_s: float
    callback: Callable[[], None]
    clock: Clock
    due: float


class DdsBus:
    """The `car.graph.adapters.Bus` over Cyclone DDS, plus timers, deadlines and an executor to spin."""

    def __init__(self, name: str, domain: int | None = None):
        """`domain` defaults to ROS_DOMAIN_ID, as for any ROS 2 node."""
        os.environ["CYCLONEDDS_URI"] = cyclone_environment()["CYCLONEDDS_URI"]  # Cyclone reads it at domain creation
        self.name = name
        self.participant = DomainParticipant(domain_id() if domain is None else domain)
        self._topics: dict[str, Topic] = {}
        self._writers: dict[str, DataWriter] = {}
        self._readers: list[_Reader] = []
        self._deadlines: dict[str, tuple[float, Callable[[], None]]] = {}
        self._timers: list[_Timer] = []
        self._posted: deque[Callable[[], None]] = deque()
        self._waitset = WaitSet(self.participant)
        self._guard = GuardCondition(self.participant)
        self._waitset.attach(self._guard)
        self._stopping = threading.Event()

    def _topic(self, topic: str) -> tuple[Topic, WireType]:
        wire = wire_type(topic)
        if topic not in self._topics:
            self._topics[topic] = Topic(self.participant, dds_topic_name(topic), wire.idl)
        return self._topics[topic], wire

    def publisher(self, topic: str) -> Callable[[Any], None]:
        dds_topic, wire = self._topic(topic)
        if topic not in self._writers:
            qos = TOPIC_QOS[topic]
            self._writers[topic] = DataWriter(self.participant, dds_topic, _cyclone_qos(qos, qos.deadline_s))
        ref = self._writers[topic]._ref

        def publish(msg: Any) -> None:
            data = wire.encode(msg)
            result = ddspy_write(ref, data + b"\0" * (-len(data) % 4))
            if result < 0:
                raise DDSException(result, f"writing {topic}")
        return publish

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        dds_topic, wire = self._topic(topic)
        deadline = self._deadlines.get(topic)
        qos = _cyclone_qos(TOPIC_QOS[topic], deadline[0] if deadline else None)
        reader = DataReader(self.participant, dds_topic, qos)
        reader.set_status_mask(DDSStatus.DataAvailable | (DDSStatus.RequestedDeadlineMissed if deadline else 0))
        self._waitset.attach(reader)
        self._readers.append(_Reader(topic, reader, wire, callback, deadline[1] if deadline else None))

    def watch_deadline(self, topic: str, period_s: float, on_missed: Callable[[], None]) -> None:
        """Every later subscription to `topic` requests the DDS deadline `period_s`; `on_missed` runs
        whenever no sample came within it.

        DDS matches such a reader only with writers that promise a deadline at least as short, so a
        tool publishing /drive without that promise cannot drive the car."""
        offered = TOPIC_QOS[topic].deadline_s
        if offered is None:
            raise ValueError(f"{topic} has no deadline: its writers promise none")
        if period_s < offered:
            raise ValueError(f"a deadline on {topic} must be at least the {offered} s its writers promise, "
                             f"got {period_s}")
        if any(r.topic == topic for r in self._readers):
            raise ValueError(f"watch the deadline of {topic} before subscribing to it")
        self._deadlines[topic] = (period_s, on_missed)

    def timer(self, period_s: float, callback: Callable[[], None], clock: Clock) -> None:
        """Run `callback` every `period_s` of `clock` (sim time when the node follows /clock)."""
        if not period_s > 0:
            raise ValueError(f"timer period must be positive, got {period_s}")
        self._timers.append(_Timer(period_s, callback, clock, clock.now() + period_s))

    def node_clock(self, sim_time: bool) -> Clock:
        """Wall time, or the simulator's /clock as ROS nodes follow it with use_sim_time."""
        if not sim_time:
            return WallClock()
        clock = SimClock(start=None)

        def on_clock(stamp: Time) -> None:
            t = stamp.to_seconds()
            if t < clock.now():
                raise TimeWentBackwards(f"/clock went back from {clock.now():.3f} s to {t:.3f} s")
            clock.set(t)

        self.subscribe(CLOCK_TOPIC, on_clock)
        return clock

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the spinning thread (safe to call from any thread)."""
        self._posted.append(fn)
        self._guard.set(True)

    def stop(self) -> None:
        """Make spin() return (safe from any thread and from signal handlers)."""
        if self._stopping.is_set():  # already woken, or closed: a second signal during close() finds no guard
            return
        self._stopping.set()
        self._guard.set(True)

    def spin(self) -> None:
        while not self._stopping.is_set():
            self.spin_once()

    def spin_once(self, max_wait_s: float = MAX_WAIT_S) -> None:
        self._waitset.wait(duration(seconds=self._wait_s(max_wait_s)))
        self._guard.set(False)
        while self._posted:
            self._posted.popleft()()
        for entry in self._readers:
            self._dispatch(entry)
        for timer in self._timers:
            now = timer.clock.now()
            if now >= timer.due:
                timer.due += timer.period_s
                if timer.due <= now:  # missed periods (a stall, a jump of sim time) are skipped, not replayed
                    timer.due = now + timer.period_s
                timer.callback()

    def _wait_s(self, max_wait_s: float) -> float:
        if self._posted or self._stopping.is_set():
            return 0.0
        wait = max_wait_s
        for timer in self._timers:
            wait = min(wait, timer.due - timer.clock.now())
        return max(0.0, wait)

    def _dispatch(self, entry: _Reader) -> None:
        if entry.on_deadline is not None and entry.reader.take_status(DDSStatus.RequestedDeadlineMissed):
            entry.on_deadline()
        samples = ddspy_take(entry.reader._ref, ANY_SAMPLE, TAKE_BATCH)
        if isinstance(samples, int):
            raise DDSException(samples, f"taking from {entry.topic}")
        for data, info in samples:
            if not info.valid_data:
                continue  # a writer went away: DDS reports it as a sample without data
            try:
                msg = entry.wire.decode(data)
            except WireError as exc:
                log.warning("%s: dropped a message: %s", self.name, exc)
                continue
            entry.callback(msg)

    def close(self) -> None:
        """Leave the domain now, so peers see this node's writers go at once rather than by lease expiry."""
        self._stopping.set()
        self._timers.clear()
        self._readers.clear()
        self._writers.clear()
        self._topics.clear()
        del self._waitset, self._guard, self.participant  # the binding deletes entities with their last reference
