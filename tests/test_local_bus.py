"""The in-process bus is a NodeBus: one executor for deliveries, timers and posted work; a deadline watch
that a hung executor cannot hold; an exception on the executor goes to its error hook."""
import threading
import time

import pytest

from car.clock import WallClock
from car.transport.local import LocalBus


@pytest.fixture
def bus():
    bus = LocalBus()
    spinner = threading.Thread(target=bus.spin, daemon=True)
    yield bus, spinner
    bus.close()
    spinner.join(timeout=2)


def test_a_publish_from_another_thread_is_delivered_on_the_executor(bus):
    bus, spinner = bus
    threads, done = [], threading.Event()
    bus.subscribe("/t", lambda msg: (threads.append((threading.current_thread(), msg)), done.set()))
    publish = bus.publisher("/t")
    spinner.start()
    threading.Thread(target=publish, args=("hello",)).start()
    assert done.wait(2)
    assert threads == [(spinner, "hello")]


def test_before_it_spins_a_publish_is_delivered_at_once():
    bus = LocalBus()
    got = []
    bus.subscribe("/t", got.append)
    bus.publisher("/t")(1)
    assert got == [1]


def test_timers_run_on_the_executor_at_their_period(bus):
    bus, spinner = bus
    ticks = []
    bus.timer(0.02, lambda: ticks.append(threading.current_thread()), WallClock())
    spinner.start()
    time.sleep(0.3)
    assert 5 <= len(ticks) <= 16 and set(ticks) == {spinner}
    with pytest.raises(ValueError, match="positive"):
        bus.timer(0, lambda: None, WallClock())


def test_a_hung_executor_cannot_hold_the_deadline_watch(bus):
    bus, spinner = bus
    missed, release = threading.Event(), threading.Event()
    bus.watch_deadline("/drive", 0.1, missed.set)
    bus.subscribe("/drive", lambda msg: release.wait(5))  # a callback that hangs the executor
    publish = bus.publisher("/drive")
    spinner.start()
    publish("go")
    try:
        assert missed.wait(1.0)
    finally:
        release.set()


def test_an_exception_on_the_executor_goes_to_the_error_hook_and_spinning_goes_on(bus):
    bus, spinner = bus
    errors, after = [], threading.Event()
    bus.on_error = lambda where, exc: errors.append((where, str(exc)))
    bus.post(lambda: 1 / 0)
    bus.post(after.set)
    spinner.start()
    assert after.wait(2)
    assert errors == [("posted work", "division by zero")]


def test_without_an_error_hook_the_exception_ends_spin():
    bus = LocalBus()
    bus.post(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bus.spin()


def test_after_stop_nothing_more_is_delivered():
    """A fault handler that stops the bus from a callback: the rest of that round's posted work and its
    due timers never run, so a node that is still running cannot publish a command after it."""
    bus = LocalBus()
    ran = []
    bus.timer(0.001, lambda: ran.append("timer"), WallClock())
    time.sleep(0.01)  # the timer is due
    bus.post(bus.stop)
    bus.post(lambda: ran.append("posted after stop"))
    bus.spin()
    assert ran == []
