"""The DDS figures `racer bench` reports: image latency between two processes, camera -> /drive across nodes."""
from racer.dds_bench import bench_dds, bench_multiprocess
from tests.dds_support import driving_model, loopback_domain


def test_image_latency_between_two_processes():
    with loopback_domain():
        report = bench_dds(messages=30)
    assert report["n"] == 30 and report["bytes"] == 160 * 120 * 3 and report["rate_hz"] == 30.0
    assert 0 < report["p50_ms"] <= report["p99_ms"]


def test_camera_to_drive_latency_across_node_processes():
    model = driving_model()
    with loopback_domain():
        report = bench_multiprocess(model, frames=15)
    assert report["n"] == 15 and 0 < report["p50_ms"] <= report["p99_ms"]
