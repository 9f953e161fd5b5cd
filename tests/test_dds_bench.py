"""The transport figures `racer bench` reports, on Cyclone DDS and on real rclpy: image latency between two
processes, camera -> /drive across node processes."""
import pytest

import ros_support  # noqa: F401  (the ros figures need `make ros`; without it this says so)
from dds_support import driving_model, loopback_domain
from racer.bench.dds import bench_dds, bench_multiprocess

TRANSPORTS = ("dds", "ros")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_image_latency_between_two_processes(transport):
    with loopback_domain():
        report = bench_dds(messages=30, transport=transport)
    assert report["n"] == 30 and report["bytes"] == 160 * 120 * 3 and report["rate_hz"] == 30.0
    assert 0 < report["p50_ms"] <= report["p99_ms"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_camera_to_drive_latency_across_node_processes(transport):
    model = driving_model()
    with loopback_domain():
        report = bench_multiprocess(model, frames=15, transport=transport)
    assert report["n"] == 15 and 0 < report["p50_ms"] <= report["p99_ms"]
