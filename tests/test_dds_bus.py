"""DdsBus, the executor every node process spins: config, domain, timers, posted work, the /drive deadline."""
import threading
import time

import pytest
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from car.clock import WallClock
from car.messages import CAMERA_TOPIC, DRIVE_TOPIC, Time, drive_msg
from car.transport import open_bus
from car.transport.dds import SHIPPED_CONFIG, DdsBus, TimeWentBackwards, cyclone_environment, domain_id
from car.transport.wire import CLOCK_TOPIC, DRIVE, dds_topic_name
from dds_support import loopback_domain


def test_cyclone_config_is_honoured_when_set_and_the_loopback_one_otherwise():
    mine = "file:///etc/cyclonedds/car.xml"
    assert cyclone_environment({"CYCLONEDDS_URI": mine})["CYCLONEDDS_URI"] == mine
    for unset in ({}, {"CYCLONEDDS_URI": ""}):
        assert cyclone_environment(unset)["CYCLONEDDS_URI"] == SHIPPED_CONFIG.as_uri()
    shipped = SHIPPED_CONFIG.read_text()
    assert '<NetworkInterface address="127.0.0.1"/>' in shipped
    assert "<AllowMulticast>false</AllowMulticast>" in shipped and '<Peer address="127.0.0.1"/>' in shipped


@pytest.mark.parametrize("raw, message", [("seven", "must be an integer"), ("233", "must be 0..232"),
                                          ("-1", "must be 0..232")])
def test_bad_ros_domain_id_is_a_clear_error(raw, message):
    with pytest.raises(ValueError, match=message):
        domain_id({"ROS_DOMAIN_ID": raw})
    assert domain_id({}) == 0 and domain_id({"ROS_DOMAIN_ID": "42"}) == 42


def test_unknown_transport_for_a_node_process():
    with pytest.raises(ValueError, match="expected dds or ros"):
        open_bus("local", "camera")


@pytest.fixture
def buses():
    with loopback_domain():
        made = []

        def make(name):
            made.append(DdsBus(name))
            return made[-1]
        yield make
        for bus in made:
            bus.close()


def spin_until(buses, predicate, what, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for bus in buses:
            bus.spin_once(0.01)


def test_messages_cross_between_participants_and_work_is_posted_to_the_spinning_thread(buses):
    a, b = buses("a"), buses("b")
    got, threads = [], []
    b.subscribe(DRIVE_TOPIC, got.append)
    publish = a.publisher(DRIVE_TOPIC)
    a.timer(0.02, lambda: publish(drive_msg(Time(3, 4), 0.1, 1.0)), WallClock())
    spin_until([a, b], lambda: got, "a /drive sample")
    assert got[0].header.stamp == Time(3, 4) and got[0].drive.speed == 1.0
    poster = threading.Thread(target=lambda: b.post(lambda: threads.append(threading.current_thread())))
    poster.start()
    poster.join()
    spin_until([b], lambda: threads, "posted work")
    assert threads == [threading.current_thread()]


def test_timers_follow_sim_time_and_a_backwards_jump_is_an_error(buses):
    sim, node = buses("sim"), buses("node")
    clock = node.node_clock(sim_time=True)
    ticks = []
    node.timer(0.1, lambda: ticks.append(clock.now()), clock)
    publish = sim.publisher(CLOCK_TOPIC)
    for step in range(1, 11):
        publish(Time.from_seconds(step * 0.05))
        spin_until([node], lambda s=step: clock.now() >= s * 0.05 - 1e-9, f"/clock {step}")
    assert ticks == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])  # one tick per 0.1 s of sim time, whatever the wall
    publish(Time.from_seconds(0.2))
    with pytest.raises(TimeWentBackwards, match="went back from 0.500 s to 0.200 s"):
        spin_until([node], lambda: False, "the jump", timeout_s=5)


def test_deadline_fires_only_when_drive_stops_and_only_for_writers_that_promise_one(buses):
    control, actuator = buses("control"), buses("actuator")
    missed, got = [], []
    actuator.watch_deadline(DRIVE_TOPIC, 0.2, lambda: missed.append(time.monotonic()))
    actuator.subscribe(DRIVE_TOPIC, lambda msg: got.append(time.monotonic()))
    with pytest.raises(ValueError, match="before subscribing"):
        actuator.watch_deadline(DRIVE_TOPIC, 0.2, lambda: None)
    publish = control.publisher(DRIVE_TOPIC)
    for i in range(40):  # 50 Hz for 0.8 s, as the control node's tick
        publish(drive_msg(Time(0, i), 0.0, 1.0))
        end = time.monotonic() + 0.02
        while time.monotonic() < end:
            actuator.spin_once(0.005)
    assert len(got) > 30 and missed == []
    spin_until([actuator], lambda: missed, "the deadline")
    assert missed[0] - got[-1] >= 0.2 - 0.01  # never early
    rogue = DomainParticipant(domain_id())  # a tool publishing /drive without a deadline promise
    writer = DataWriter(rogue, Topic(rogue, dds_topic_name(DRIVE_TOPIC), DRIVE.idl))
    count = len(got)
    for _ in range(20):
        writer.write(DRIVE.idl.deserialize(DRIVE.encode(drive_msg(Time(9, 9), 0.3, 3.0))))
        actuator.spin_once(0.01)
    assert len(got) == count  # not matched: it cannot drive the car


@pytest.mark.parametrize("topic, period, message", [
    (DRIVE_TOPIC, 0.01, "at least the 0.05 s its writers promise"),
    (CAMERA_TOPIC, 0.2, "has no deadline"),
])
def test_deadline_that_cannot_match_is_refused(buses, topic, period, message):
    with pytest.raises(ValueError, match=message):
        buses("x").watch_deadline(topic, period, lambda: None)


def test_a_test_domain_is_one_nobody_else_answers_on(monkeypatch):
    """What keeps the tests apart from another run, or a graph left running, on the same machine."""
    import dds_support

    with loopback_domain():
        taken = DdsBus("someone_else", 57)
        picks = iter([57, 57, 58])
        monkeypatch.setattr(dds_support.random, "randint", lambda a, b: next(picks))
        try:
            assert dds_support.free_domain() == 58
        finally:
            taken.close()


def test_a_signal_after_close_is_harmless():
    """Ctrl-C reaches a node twice (the terminal's SIGINT and the supervisor's SIGTERM): the second may come
    while the node is closing, and its handler's stop() must find nothing left to wake, not a missing guard."""
    with loopback_domain():
        bus = DdsBus("closing")
        bus.stop()
        bus.close()
        bus.stop()
        assert bus._stopping.is_set()
