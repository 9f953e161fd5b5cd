"""SIGTERM/SIGINT handlers that cannot hang their process (car.process.StopSignals)."""
import subprocess
import sys

# The state a second signal can find: the first handler inside Event.set(), which holds the event's lock.
SCRIPT = """
import os, signal, sys, threading
from car.process import StopSignals

signals = StopSignals(threading.Event())
signals.install()
with signals.event._cond:
    os.kill(os.getpid(), signal.SIG{name})  # its handler runs here, with the lock held by this very thread
    for _ in range(1000):
        pass
print(signals.is_set(), signals.wait(5.0), signals.event.is_set())
"""


def test_a_signal_that_comes_while_the_stop_events_lock_is_held_is_not_lost_and_hangs_nothing():
    for name in ("INT", "TERM"):
        proc = subprocess.run([sys.executable, "-c", SCRIPT.replace("{name}", name)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "True True True\n"


def test_without_a_signal_wait_ends_at_its_timeout_or_when_the_event_is_set():
    import threading

    from car.process import StopSignals

    signals = StopSignals()
    assert signals.wait(0.1) is False and not signals.is_set()
    threading.Timer(0.1, signals.event.set).start()
    assert signals.wait(30) is True
