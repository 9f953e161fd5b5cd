"""End to end: the bundled model drives the simulator through the car stack, from the command line."""
import contextlib
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from car.config import DEFAULT_MODEL
from test_console_cli import stderr_lines

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
    (["--transport", "dds"], "leave out --transport"),
    (["--foxglove", "127.0.0.1:8765"], "with nothing to watch: leave out --foxglove"),
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
    foxglove = report["foxglove"]  # the same pipeline, a Foxglove client connected and not
    for name in ("without_client", "with_client"):
        assert 0 < foxglove[name]["p50_ms"] <= foxglove[name]["p99_ms"] and foxglove[name]["n"] == 120
    assert foxglove["client_messages"] > 0 and foxglove["view_messages"] > 0
    assert report["sim"]["steps_per_s"] > 0 and report["sim"]["width"] == 160
    assert report["sim"]["randomized"]["steps_per_s"] > 0
    assert report["augment"]["images_per_s"] > 0
    train = report["train"]
    assert train["in_process"] > 0 and set(train["frames_per_s"]) == {"1", "2"}
    assert all(rate > 0 for rate in train["frames_per_s"].values())
    # PPO with the console's network and defaults: the quick run's 200 steps in float32 and in bfloat16,
    # updates included
    assert train["ppo_steps"] == 200 and train["ppo_iterations"] >= 1 and train["ppo_env_steps_per_s"] > 0
    assert train["ppo_env_steps_per_s"] == pytest.approx(200 / train["ppo_wall_s"], rel=0.05)
    assert set(train["ppo_time"]) == {"collect_s", "update_s", "eval_s"} and train["ppo_bf16_env_steps_per_s"] > 0
    for name in ("dds", "pipeline_multiprocess", "ros", "pipeline_multiprocess_ros"):
        assert 0 < report[name]["p50_ms"] <= report[name]["p99_ms"], report[name]
    safety = report["safety"]
    for transport in ("local", "dds", "ros"):  # the console on each, as `racer car --transport T --console` runs it
        assert 0 < safety["flood_neutral_ms"][transport] and 0 < safety["flood_estop_ms"][transport], safety
        assert safety["flood_connections"][transport] > 0
    assert set(safety["console_kill_neutral_ms"]) == {"dds", "ros"}  # the console is a process of its own there
    assert all(0 < ms < 5000 for ms in safety["console_kill_neutral_ms"].values()), safety
    assert isinstance(report["machine"], str) and report["machine"]
    progress = [line for line in proc.stderr.splitlines() if line.startswith("racer bench: measuring ")]
    assert len(progress) == 8 and progress[0].endswith("(1/8)") and progress[-1].endswith("(8/8)")
    assert "Token authentication" not in proc.stderr  # Ray's notice about its own default, on every start
    # the flood's refused logins and the latches it causes are the scenario, not news on stderr
    assert "login refused" not in proc.stderr and "latched:" not in proc.stderr


def test_bench_without_nncf_leaves_out_the_int8_figure_and_says_why():
    """`make train` without the bench extra: the policy figures are measured, INT8 says what to install."""
    code = """
import sys
sys.modules["nncf"] = None  # as if the int8 extra were not installed
from racer.bench.figures import bench_policy
from racer.commands.bench import policy_lines
print("\\n".join(policy_lines(bench_policy(rounds=2, block=5, gate_frames=50))))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = dict(line.split(maxsplit=2)[1:] for line in proc.stdout.splitlines())
    assert rows["openvino_int8"] == "NNCF is not installed: pip install -e '.[bench]' in the repository " \
                                    "(make train brings it)"
    assert rows["openvino"].startswith("p50 ") and rows["onnxruntime"].startswith("p50 ")


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
    from car.policy.bundle import load_bundle
    from car.policy.inference import Policy
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
    assert bundle.info["steering_scale"] == 1.5  # the card's export command
    assert bundle.caution is not None and (bundle.caution.warning, bundle.caution.speed_scale) == (0.25, 0.8)
    assert sum(results.values()) >= MIN_LAPPED, results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_ready(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/server_ready", timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return None


def wait_for_line(lines: queue.Queue, needle: str, timeout: float = 180) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
        if needle in seen[-1]:
            return seen
    raise AssertionError(f"no {needle!r} in {seen}")


def live_demo(*args: str) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen([*RACER, "demo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, stderr_lines(proc)


def interrupt(proc: subprocess.Popen) -> str:
    """Ctrl-C, and the process's stdout once it ended (stderr stays with live_demo's reader: communicate()
    would race it for the last lines)."""
    proc.send_signal(signal.SIGINT)
    out: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: out.append(stdout.read()), daemon=True)
    reader.start()
    proc.wait(timeout=60)
    reader.join(timeout=10)
    return out[0] if out else ""


def test_live_demo_keeps_the_console_up_after_the_laps_until_ctrl_c(tmp_path):
    port = free_port()
    state = tmp_path / "state"
    proc, lines = live_demo("--laps", "1", "--json", "--console", f"127.0.0.1:{port}", "--state-dir", str(state))
    try:
        seen = wait_for_line(lines, "laps done, car stopped; the console stays on")
        password_file = state / "console" / "first-password"
        assert any(f"written to {password_file}" in line for line in seen)
        assert password_file.read_text().strip() not in "".join(seen)
        assert any("lap 1:" in line for line in seen)
        time.sleep(1.0)  # a user opening the printed address a while after the laps
        assert proc.poll() is None
        assert server_ready(port) == {"success": True}
        out = interrupt(proc)
    finally:
        proc.kill()
    assert proc.returncode == 0
    summary = json.loads(out)
    assert summary["completed_laps"] == 1 and summary["laps"][0]["off_track"] is False
    assert list(state.iterdir())  # the console kept its state where it was told

    # The second start of the same console: no new password, but where to get one.
    proc, lines = live_demo("--laps", "1", "--console", f"127.0.0.1:{port}", "--state-dir", str(state))
    try:
        seen = wait_for_line(lines, "console on")
        hint = wait_for_line(lines, "password")[-1]
        assert f"racer passwd --state-dir {state}" in hint
        assert not any("first-password" in line for line in seen)
        interrupt(proc)
    finally:
        proc.kill()


@pytest.mark.parametrize("transport", ["dds", "ros"])
def test_live_demo_drives_its_lap_on_a_process_per_node(transport):
    """The same nodes as `racer car --transport T --sim`: the supervisor counts the simulator node's laps."""
    if transport == "ros":
        import ros_support  # noqa: F401  (without `make ros` it says so)
    from dds_support import loopback_domain

    with loopback_domain():
        proc = racer("demo", "--laps", "1", "--json", "--console", "off", "--transport", transport, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["completed_laps"] == 1 and summary["laps"][0]["off_track"] is False
    assert "lap 1:" in proc.stderr and "Traceback" not in proc.stderr


def test_a_live_demo_whose_car_control_latches_ends_with_the_lap_it_was_on():
    """The policy node's process is frozen (SIGSTOP) after the first lap: control's watchdog latches the car
    stopped, and the demo ends there, exit 1, with the lap in progress not completed, instead of waiting
    for laps a stopped car never drives."""
    import psutil

    from dds_support import loopback_domain

    with loopback_domain():
        proc, lines = live_demo("--laps", "3", "--json", "--console", "off", "--transport", "dds")
    try:
        wait_for_line(lines, "lap 1:")
        time.sleep(3.0)  # into the second lap
        policy, = [child for child in psutil.Process(proc.pid).children(recursive=True)
                   if "racer.cli node policy" in " ".join(child.cmdline())]
        policy.suspend()
        try:
            proc.wait(timeout=30)
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):  # the demo's supervisor ended it
                policy.resume()
        out = proc.stdout.read()
    finally:
        proc.kill()
    assert proc.returncode == 1
    summary = json.loads(out)
    assert summary["completed_laps"] == 1 and len(summary["laps"]) == 2
    second = summary["laps"][1]
    assert second["off_track"] is False and 0 < second["progress"] < 100 and second["time_s"] > 2.0
    seen = wait_for_line(lines, "lap(s) not completed", timeout=10)
    assert any("stopped: control latched a stop (policy command stale" in line for line in seen), seen


def test_a_stop_latched_just_after_a_lap_is_a_lap_not_completed():
    """The simulator's report of a lap's end carries that lap's 100%: a latch before its next report
    stops the next lap at its start, not completed (it counted as a second completed lap)."""
    from car.messages import OK, DiagnosticStatus, KeyValue
    from racer.commands.demo import _Laps

    laps = _Laps("reinvent_base", 3)
    laps.observe(DiagnosticStatus(OK, "simulator", values=(
        KeyValue("time", "19.900"), KeyValue("lap_times", "19.850"), KeyValue("progress", "100.00"),
        KeyValue("off_track", "false"))))
    assert laps.latched("policy command stale") and not laps.latched("again")
    assert [lap.to_json() for lap in laps.result.laps] == [
        {"time_s": 19.85, "progress": 100.0, "off_track": False}, {"time_s": 0.05, "progress": 0.0, "off_track": False}]
    assert laps.result.completed_laps == 1


def test_the_demo_starts_the_car_once_the_policy_has_driven_frames_for_a_whole_report():
    """Started while the other nodes still load, the car met a pause longer than control's watchdog and
    latched at once (seen under load on ros): the start waits for two policy reports with frames between."""
    from car.messages import OK, DiagnosticStatus, KeyValue
    from racer.commands.demo import _Starter

    sent = []
    starter = _Starter(sent.append, 0.5)

    def policy(frames: int) -> DiagnosticStatus:
        return DiagnosticStatus(OK, "policy", values=(KeyValue("frames", str(frames)),))

    for report in (policy(0), policy(0), policy(3)):
        starter.on_policy(report)
        starter.tick()
    assert sent == []
    starter.on_policy(policy(18))
    starter.tick()
    assert [json.loads(text)["id"] for text in sent] == ["demo-speed", "demo-mode", "demo-start"]
    starter.on_control(DiagnosticStatus(OK, "control", values=(KeyValue("command_id", "demo-start"),
                                                               KeyValue("command_result", "ok"))))
    starter.tick()
    assert len(sent) == 3  # never again after the start was answered


def test_live_demo_on_a_busy_port_says_what_to_do(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = racer("demo", "--console", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"racer demo: console not started: 127.0.0.1:{port} is in use (another racer demo?); "
        "pass --console 127.0.0.1:8081, or --console off")


def test_open_track_is_one_run_to_its_end():
    proc = racer("demo", "--track", "Straight_track", "--headless", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["completed_laps"] == 1 and len(summary["laps"]) == 1
    assert "Straight_track is open: one run to its end" in proc.stderr


def test_endless_headless_demo_ends_on_ctrl_c_with_its_summary():
    proc, lines = live_demo("--laps", "0", "--headless", "--json")
    try:
        wait_for_line(lines, "lap 1:")
        out = interrupt(proc)
    finally:
        proc.kill()
    assert proc.returncode == 0
    summary = json.loads(out)
    assert summary["completed_laps"] >= 1 and summary["completed_laps"] == len(summary["laps"])
    times = [lap["time_s"] for lap in summary["laps"]]
    last = wait_for_line(lines, "lap(s) completed")[-1].strip()
    assert last == (f"racer demo: {len(times)} lap(s) completed, best {min(times):.2f} s, "
                    f"mean {sum(times) / len(times):.2f} s")


def test_a_training_runs_bundle_is_named_after_the_run_and_a_failed_lap_is_exit_1_said(tmp_path):
    from browser.harness import STRAIGHT, racer_bundle

    run = tmp_path / "mine"
    racer_bundle(run, "bundle", STRAIGHT)  # never steers: off at the first bend
    (run / "policy.pt").write_bytes(b"")  # what makes RUN/bundle a training run's
    proc = racer("demo", "--model", str(run / "bundle"), "--headless", "--json", "--laps", "1")
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["model"] == "mine" and summary["completed_laps"] == 0
    assert proc.stderr.strip().splitlines()[-1] == "racer demo: exit status 1: 1 lap(s) not completed"


def test_demo_help_lists_the_tracks():
    proc = racer("demo", "--help")
    assert "Tokyo_Training_track" in proc.stdout and "Straight_track" in proc.stdout
