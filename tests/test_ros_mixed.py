"""One car graph over two DDS vendors: racer's own nodes on Cyclone DDS and real rclpy nodes on Fast DDS.

The launch file's command lines, with the simulator, the policy and the actuator moved to `--transport dds`:
every hop of the drive then crosses vendors, both ways (images sim -> camera -> policy, drive commands
policy -> control -> actuator, the last one under the actuator's /drive deadline), and a monitor on each
side hears the other side's diagnostics. A control node killed on Fast DDS trips the Cyclone actuator's
deadline.
"""
import os
import signal
import time

import pytest

import ros_support  # noqa: F401  (first: without `make ros` it says so)
from car.messages import CAMERA_TOPIC, DIAGNOSTICS_TOPIC, DRIVE_TOPIC, POLICY_TOPIC
from dds_support import Monitor, assert_it_drives, driving_model, loopback_domain, wait_for
from test_launch import command_lines, launch, load_launch_file, run_nodes, stop_nodes

pytestmark = pytest.mark.timeout(240)
ON_CYCLONE = ("sim", "policy", "actuator")
BUDGET_S = 0.25


def statuses_by_name(monitor: Monitor) -> set[str]:
    return {s.name for array in monitor.received(DIAGNOSTICS_TOPIC) for s in array.status}


def test_cyclone_and_fast_dds_nodes_drive_the_car_together(monkeypatch, tmp_path):
    nodes = launch(load_launch_file(monkeypatch), sim="reinvent_base", autostart="true", model=str(driving_model()))
    lines = command_lines(nodes, tmp_path)
    for name in ON_CYCLONE:
        argv = lines[name]
        argv[argv.index("--transport") + 1] = "dds"
    with loopback_domain():
        on_fast_dds = Monitor((DIAGNOSTICS_TOPIC, CAMERA_TOPIC, POLICY_TOPIC), "ros")
        on_cyclone = Monitor((DIAGNOSTICS_TOPIC, DRIVE_TOPIC), "dds")
        procs = run_nodes(lines, tmp_path)
        try:
            assert_it_drives(on_fast_dds, 150, traced_share=0.5)  # images and commands crossed every way to get here
            # each node reports once a second: wait for a report from every one, both ways
            wait_for(lambda: {"simulator", "policy", "actuator"} <= statuses_by_name(on_fast_dds), 10,
                     "Cyclone nodes' diagnostics on Fast DDS")
            wait_for(lambda: {"camera", "control"} <= statuses_by_name(on_cyclone), 10,
                     "Fast DDS nodes' diagnostics on Cyclone")
            assert any(m.drive.speed > 0 for m in on_cyclone.received(DRIVE_TOPIC))

            assert_it_drives(on_fast_dds, 60, traced_share=0.5)  # again, if a stale input latched a stop meanwhile
            since = time.monotonic()
            os.kill(procs["control"].pid, signal.SIGKILL)
            neutral = wait_for(lambda: next((s for _, s in on_fast_dds.statuses("actuator", since)
                                             if s.message == "neutral"), None), 20, "the actuator at neutral")
            assert float(neutral.value("drive_age_ms")) <= BUDGET_S * 1000
        finally:
            codes = stop_nodes(procs, tmp_path)
            on_fast_dds.close()
            on_cyclone.close()
    assert codes == {**dict.fromkeys(procs, 0), "control": -signal.SIGKILL}
