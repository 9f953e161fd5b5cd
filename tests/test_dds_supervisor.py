"""The supervisor: restarts a dying node with a growing backoff, runs its exit hook, reports it on /diagnostics."""
import sys
import time

import pytest

from car.graph import supervisor
from car.graph.supervisor import ProcessSpec, Supervisor, describe_exit
from car.messages import DIAGNOSTICS_TOPIC, ERROR, OK
from car.transport.dds import DdsBus
from dds_support import loopback_domain


def test_exit_descriptions():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with status 3"


def test_names_must_be_unique():
    with loopback_domain():
        bus = DdsBus("supervisor")
        with pytest.raises(ValueError, match="unique"):
            Supervisor([ProcessSpec("a", ["true"]), ProcessSpec("a", ["true"])], bus, {})
        bus.close()


def supervise(specs, until, env, timeout_s=30):
    """Run a Supervisor over `specs` on a loopback DdsBus until `until(sup)`; returns (sup, /diagnostics statuses)."""
    reports = []
    bus = DdsBus("supervisor")
    bus.subscribe(DIAGNOSTICS_TOPIC, lambda a: reports.extend(a.status))
    sup = Supervisor(specs, bus, env)
    sup.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not until(sup, reports) and time.monotonic() < deadline:
            sup.poll()
            bus.spin_once(0.01)
    finally:
        sup.stop()
        bus.close()
    return sup, reports


def test_a_crashing_node_is_restarted_with_backoff_then_given_up_when_it_fails_the_same_way(monkeypatch):
    monkeypatch.setattr(supervisor, "FIRST_BACKOFF_S", 0.05)
    delays = []
    with loopback_domain() as env:
        crash = ProcessSpec("crash", [sys.executable, "-c", "raise SystemExit(3)"],
                            on_exit=lambda: delays.append(sup.children[0].next_start - time.monotonic()))
        steady = ProcessSpec("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
        sup = None

        def given_up(s, reports):
            nonlocal sup
            sup = s
            return any(r.name == "supervisor/crash" and "not restarted" in r.message for r in reports) and \
                any(r.name == "supervisor/steady" for r in reports)

        sup, reports = supervise([crash, steady], given_up, env)
    crashed, steady_child = sup.children
    assert crashed.restarts == supervisor.GIVE_UP_AFTER - 1 and crashed.last_exit == "exited with status 3"
    assert crashed.given_up and crashed.proc is None
    assert delays == pytest.approx([0.05, 0.1, 0.2], abs=0.01)  # quick failures in a row: each wait doubles
    assert steady_child.restarts == 0 and steady_child.proc is None  # stopped with the rest
    down = [s for s in reports if s.name == "supervisor/crash" and s.level == ERROR]
    assert down[0].message.startswith("exited with status 3; restarting in")
    assert down[-1].message == "exited with status 3 at start-up 3 times in a row; not restarted"
    assert any(s.name == "supervisor/steady" and s.level == OK and s.message == "running" for s in reports)


def test_a_node_that_fails_differently_or_is_killed_keeps_being_restarted(monkeypatch, tmp_path):
    """Only the same exit status at start-up, again and again, ends the restarts: not a kill, not a new fault."""
    monkeypatch.setattr(supervisor, "FIRST_BACKOFF_S", 0.01)
    monkeypatch.setattr(supervisor, "MAX_BACKOFF_S", 0.01)
    runs = tmp_path / "runs"
    # status 3 twice, then a SIGKILL, status 3 twice, then status 4, and again: never 3 times the same in a row
    script = (f"import os, pathlib, signal; p = pathlib.Path({str(runs)!r}); "
              "n = len(p.read_text()) if p.exists() else 0; "
              "p.write_text('x' * (n + 1)); step = n % 6; os.kill(os.getpid(), signal.SIGKILL) if step == 2 else None; "
              "raise SystemExit(4 if step == 5 else 3)")
    with loopback_domain() as env:
        sup, _ = supervise([ProcessSpec("flaky", [sys.executable, "-c", script])],
                           lambda s, r: s.children[0].restarts >= 8, env)
    (child,) = sup.children
    assert child.restarts >= 8 and not child.given_up and child.same_start_failures < supervisor.GIVE_UP_AFTER
