"""The supervisor: restarts a dying node with a growing backoff, runs its exit hook, reports it on /diagnostics."""
import sys
import time

import pytest

from car import supervisor
from car.messages import DIAGNOSTICS_TOPIC, ERROR, OK
from car.supervisor import ProcessSpec, Supervisor, describe_exit
from car.transport.dds import DdsBus
from tests.dds_support import loopback_domain


def test_exit_descriptions():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with status 3"


def test_names_must_be_unique():
    with loopback_domain():
        bus = DdsBus("supervisor")
        with pytest.raises(ValueError, match="unique"):
            Supervisor([ProcessSpec("a", ["true"]), ProcessSpec("a", ["true"])], bus, {})
        bus.close()


def test_a_crashing_node_is_restarted_with_backoff_and_reported(monkeypatch):
    monkeypatch.setattr(supervisor, "FIRST_BACKOFF_S", 0.05)
    delays, reports = [], []
    with loopback_domain() as env:
        bus = DdsBus("supervisor")
        bus.subscribe(DIAGNOSTICS_TOPIC, lambda a: reports.extend(a.status))
        crash = ProcessSpec("crash", [sys.executable, "-c", "raise SystemExit(3)"],
                            on_exit=lambda: delays.append(sup.children[0].next_start - time.monotonic()))
        steady = ProcessSpec("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
        sup = Supervisor([crash, steady], bus, env)
        sup.start()
        try:
            deadline = time.monotonic() + 30
            while sup.children[0].restarts < 3 and time.monotonic() < deadline:
                sup.poll()
                bus.spin_once(0.01)
            while not any(s.name == "supervisor/steady" for s in reports) and time.monotonic() < deadline:
                bus.spin_once(0.01)
        finally:
            sup.stop()
            bus.close()
    crashed, steady_child = sup.children
    assert crashed.restarts == 3 and crashed.last_exit == "exited with status 3"
    assert delays[:3] == pytest.approx([0.05, 0.1, 0.2], abs=0.01)  # quick failures in a row: each wait doubles
    assert steady_child.restarts == 0 and steady_child.proc is None  # stopped with the rest
    down = [s for s in reports if s.name == "supervisor/crash" and s.level == ERROR]
    assert down and down[0].message.startswith("exited with status 3; restarting in")
    assert any(s.name == "supervisor/steady" and s.level == OK and s.message == "running" for s in reports)
