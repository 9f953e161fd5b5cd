"""End to end: the bundled model drives the simulator through the car stack, from the command line."""
import json
import subprocess
import sys

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
    for runtime in ("openvino", "openvino_int8", "onnxruntime"):
        fig = report["policy"][runtime]
        assert 0 < fig["p50_ms"] <= fig["p99_ms"]
    gate = report["policy"]["openvino_int8"]["gate"]
    assert gate["frames"] == 200 and 0.5 < gate["agreement"] <= 1 and gate["passed"] == (gate["agreement"] >= 0.99)
    assert report["policy"]["max_abs_diff"] < 1e-4  # same network, same input, same answer
    assert 0 < report["pipeline"]["p50_ms"] <= report["pipeline"]["p99_ms"]
    assert report["sim"]["steps_per_s"] > 0 and report["sim"]["width"] == 160
    assert report["sim"]["randomized"]["steps_per_s"] > 0
    assert report["augment"]["images_per_s"] > 0
    for name in ("dds", "pipeline_multiprocess", "ros", "pipeline_multiprocess_ros"):
        assert 0 < report[name]["p50_ms"] <= report[name]["p99_ms"], report[name]
    safety = report["safety"]
    assert 0 < safety["flood_neutral_ms"] and 0 < safety["flood_estop_ms"] and safety["flood_connections"] > 0
    assert isinstance(report["machine"], str) and report["machine"]


def test_help_lists_commands():
    proc = racer("--help")
    assert proc.returncode == 0
    for command in ("demo", "model", "bench", "train", "export"):
        assert command in proc.stdout


# Closed tracks the bundled model laps at max-speed 1.0 (models/default/MODEL_CARD.md).
MIN_LAPPED = 8
CLOSED_TRACKS = ["reinvent_base", "Oval_track", "Bowtie_track", "reInvent2019_track", "2024_reinvent_champ_ccw",
                 "2024_reinvent_champ_cw", "Spain_track", "Tokyo_Training_track"]


def test_bundled_model_races_the_closed_tracks_at_full_max_speed():
    """The model card's bar at max-speed 1.0, in the AWS simulator's world; training saw at most three tracks."""
    from car.bundle import load_bundle
    from car.inference import Policy
    from sim2real.drive import run_laps
    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    with load_bundle(DEFAULT_MODEL) as bundle:
        model = Policy(bundle).model()
        trained_on = bundle.info["config"]["tracks"]
        results = {}
        for name in CLOSED_TRACKS:
            sim = Simulator(Track.load(name))
            sim.reset()
            results[name] = run_laps(sim, model, laps=1, max_speed=1.0).completed_laps
    assert len(trained_on) <= 3
    assert sum(results.values()) >= MIN_LAPPED, results


def test_live_demo_serves_the_console_while_driving(tmp_path):
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*RACER, "demo", "--laps", "1", "--json", "--console", f"127.0.0.1:{port}",
                             "--state-dir", str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = None
        deadline = time.monotonic() + 60
        while ready is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/server_ready", timeout=1) as r:
                    ready = json.loads(r.read())
            except OSError:
                time.sleep(0.2)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ready is not None and ready.get("success") is True
    assert proc.returncode == 0, err
    password_file = tmp_path / "state" / "console" / "first-password"
    assert f"written to {password_file}" in err and password_file.read_text().strip() not in err
    summary = json.loads(out)
    assert summary["completed_laps"] == 1 and summary["laps"][0]["off_track"] is False
    assert list((tmp_path / "state").iterdir())  # the console kept its state where it was told
