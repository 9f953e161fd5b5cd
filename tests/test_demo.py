"""End to end: the bundled model drives the simulator through the car stack, from the command line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from racer.commands.demo import DEFAULT_MODEL

RACER = [sys.executable, "-m", "racer.cli"]


def racer(*args, timeout=300):
    return subprocess.run([*RACER, *args], capture_output=True, text=True, timeout=timeout)


def test_demo_two_laps_headless_json():
    proc = racer("demo", "--track", "reinvent_base", "--laps", "2", "--headless", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["track"] == "reinvent_base"
    assert summary["model"] == DEFAULT_MODEL.name
    assert summary["completed_laps"] == 2
    assert [lap["off_track"] for lap in summary["laps"]] == [False, False]
    assert all(lap["progress"] == 100.0 and 4.0 < lap["time_s"] < 60.0 for lap in summary["laps"])
    assert "lap 1:" in proc.stderr and "lap 2:" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--track", "Monaco"], "unknown track"),
    (["--model", "/nonexistent/model.tar.gz"], "/nonexistent/model.tar.gz"),
    (["--laps", "-1"], "--laps must be 0 or more"),
])
def test_demo_bad_input_is_a_clear_error(args, message):
    proc = racer("demo", "--headless", "--json", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert message.lower() in proc.stderr.lower()
    assert "Traceback" not in proc.stderr


def test_bench_reports_every_figure():
    proc = racer("bench", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for runtime in ("openvino", "onnxruntime"):
        fig = report["policy"][runtime]
        assert 0 < fig["p50_ms"] <= fig["p99_ms"]
    assert report["policy"]["max_abs_diff"] < 1e-4  # same network, same input, same answer
    assert 0 < report["pipeline"]["p50_ms"] <= report["pipeline"]["p99_ms"]
    assert report["sim"]["steps_per_s"] > 0 and report["sim"]["width"] == 160
    assert isinstance(report["machine"], str) and report["machine"]


def test_help_lists_commands():
    proc = racer("--help")
    assert proc.returncode == 0
    for command in ("demo", "model", "bench", "train", "export"):
        assert command in proc.stdout
