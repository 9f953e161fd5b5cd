"""The command line's error paths as a new user meets them: each ends in one line that says what
to do, never a traceback."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from racer.cli import INSTALL_TRAINING, TRAINING_EXTRAS

# `racer` in a process where the training extras are not installed (as after `make demo`).
WITHOUT_EXTRAS = (f"import sys; sys.modules.update({{name: None for name in {sorted(TRAINING_EXTRAS)!r}}}); "
                  "from racer.cli import main; sys.exit(main(sys.argv[1:]))")


def racer(*argv: str, code: str = "import sys; from racer.cli import main; sys.exit(main(sys.argv[1:]))",
          timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["train", "--out", "{tmp}/run"],
    ["export", "{tmp}/policy.pt", "--out", "{tmp}/bundle"],
    ["eval", "--out", "{tmp}/gap"],
    ["augment", "preview", "--out", "{tmp}/grid.png"],
    ["bench", "--quick"],
])
def test_a_missing_training_extra_names_the_make_target(argv, tmp_path):
    proc = racer(*(arg.format(tmp=tmp_path) for arg in argv), code=WITHOUT_EXTRAS)
    assert proc.returncode == 2
    line = one_line(proc)
    assert line.startswith(f"racer {argv[0]}: needs the training extras (")
    assert f"run `{INSTALL_TRAINING}`" in line


def test_an_unrelated_missing_module_is_not_blamed_on_the_extras(tmp_path):
    code = "import sys; sys.modules['openvino'] = None; from racer.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = racer("model", "check", str(tmp_path), code=code)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr and INSTALL_TRAINING not in proc.stderr


@pytest.mark.parametrize("argv, message", [
    ([], "racer car: nothing to drive: pass --sim TRACK for the simulator (e.g. --sim reinvent_base), or a car's "
         "--camera v4l2:/dev/video0 and --actuator pwm-sysfs (stock DeepRacer), pca9685:BUS:ADDR or maestro:PORT"),
    (["--camera", "v4l2:/dev/video0"], "racer car: --camera v4l2:/dev/video0 drives a real car: add --actuator "
                                       "pwm-sysfs (stock DeepRacer), pca9685:BUS:ADDR or maestro:PORT "
                                       "(or use --sim TRACK)"),
    (["--actuator", "pwm-sysfs"], "racer car: --actuator pwm-sysfs needs the car's camera: add --camera "
                                  "v4l2:/dev/video0 (or file:VIDEO, images:DIR, bag:PATH)"),
    (["--sim", "reinvent_base", "--calibration", "calibration.json"],
     "racer car: --sim drives the simulated car, which has its own camera and no actuator to calibrate: leave out "
     "--calibration"),
    (["--sim", "reinvent_base", "--camera", "v4l2:/dev/video0", "--actuator", "maestro:/dev/ttyACM0"],
     "racer car: --sim drives the simulated car, which has its own camera and no actuator to calibrate: leave out "
     "--camera and --actuator"),
    (["--camera", "bag:recording", "--transport", "dds"],
     "racer car: replaying a recording without an actuator runs with --transport local (the default); "
     "with a car's --actuator it runs on dds and ros too"),
    (["--autostart", "--camera", "v4l2:/dev/video0", "--actuator", "pwm-sysfs"],
     "racer car: --autostart needs --sim: a real car starts only on a user action"),
    (["--sim-rate", "4", "--camera", "v4l2:/dev/video0", "--actuator", "pwm-sysfs"],
     "racer car: --sim-rate is for the simulator: add --sim TRACK"),
])
def test_car_options_that_cannot_run_together_are_refused_in_the_users_words(argv, message, tmp_path):
    proc = racer("car", *argv, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("transport", ["local", "dds", "ros"])
def test_console_off_is_no_console_on_every_transport(transport):
    from car.config import load_params
    from racer.cli import build_parser
    from racer.commands.car import argument_problem

    args = build_parser().parse_args(["car", "--sim", "reinvent_base", "--transport", transport, "--console", "off"])
    assert argument_problem(args, load_params()) is None


def test_a_recording_replays_on_a_laptop_without_an_actuator(tmp_path):
    """`racer car --camera bag:PATH` alone: the policy drives the recorded frames and --record keeps what it said."""
    from rosbags.highlevel import AnyReader

    from car.clock import SimClock
    from car.graph.recorder import BagRecorder
    from car.messages import CAMERA_TOPIC, POLICY_TOPIC, Header, Image, Time
    from car.transport.local import LocalBus
    from car.transport.rosbag import typestore
    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    sim = Simulator(Track.load("reinvent_base"))
    sim.reset()
    bus, clock = LocalBus(), SimClock(0.0)
    recorder = BagRecorder(bus, clock, tmp_path / "drive")
    times = [Time.from_seconds(i / 15) for i in range(30)]
    for stamp in times:
        clock.set(stamp.to_seconds())
        bus.publisher(CAMERA_TOPIC)(Image(Header(stamp, "camera"), sim.render()))
    recorder.close()

    # no --duration: the replay ends with the recording, and its record holds each frame once
    proc = racer("car", "--camera", f"bag:{recorder.path}", "--record", str(tmp_path / "replay"),
                 "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 0, proc.stderr
    assert "replay without an actuator: nothing moves" in proc.stderr
    assert f"bag:{recorder.path}: the recording ended after 30 frames (bag:{recorder.path}:loop replays it " \
           "in a loop)" in proc.stderr
    (replay,) = [p.parent for p in (tmp_path / "replay").rglob("metadata.yaml")]
    with AnyReader([replay], default_typestore=typestore()) as reader:
        stamps = {c.topic: [] for c in reader.connections}
        for c, _, raw in reader.messages():
            if c.topic in (CAMERA_TOPIC, POLICY_TOPIC):
                stamp = reader.deserialize(raw, c.msgtype).header.stamp
                stamps[c.topic].append((stamp.sec, stamp.nanosec))
    recorded = {(t.sec, t.nanosec) for t in times}
    # the camera may skip a frame it was too slow for, never shows one twice
    assert len(set(stamps[CAMERA_TOPIC])) == len(stamps[CAMERA_TOPIC]) >= 20
    assert set(stamps[CAMERA_TOPIC]) <= recorded
    assert stamps[POLICY_TOPIC]  # the policy decided on the replayed frames


def test_a_failed_start_leaves_no_camera_thread_behind(tmp_path):
    """An actuator that cannot open ends the start with its one-line error; the camera opened before it is
    closed first, so the process never exits with its reader thread inside OpenCV."""
    import argparse
    import threading

    import cv2
    import numpy as np

    from calibration.servo import FACTORY_DEFAULT
    from car.config import load_params
    from racer.processes.local import build_local

    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), 8 * i, np.uint8))
    writer.release()
    args = argparse.Namespace(model=None, sim=None, camera=f"file:{video}", actuator=f"maestro:{tmp_path}/none")
    with pytest.raises(RuntimeError, match="could not open port"):  # ActuatorFault
        build_local(args, load_params(), FACTORY_DEFAULT)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("camera ")]


@pytest.mark.parametrize("target, reason", [("missing/dir/config.yaml", "No such file or directory"),
                                            (".", "Is a directory")])
def test_a_file_that_cannot_be_written_is_one_line_naming_it(target, reason, tmp_path):
    proc = racer("randomization", "--write", target, cwd=tmp_path)
    assert proc.returncode == 1
    assert one_line(proc) == f"racer randomization: {target}: {reason}"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, reason", [(b"not torch at all", r"\((KeyError|UnpicklingError|RuntimeError)\)"),
                                             (None, r"\(no state_dict, spec and action_space\)")])
def test_export_of_a_file_that_is_not_a_checkpoint_is_refused(content, reason, tmp_path):
    checkpoint = tmp_path / "policy.pt"
    if content is None:
        import torch

        torch.save({"weights": [1, 2, 3]}, checkpoint)
    else:
        checkpoint.write_bytes(content)
    proc = racer("export", str(checkpoint), "--out", str(tmp_path / "bundle"))
    assert proc.returncode == 2
    assert re.fullmatch(rf"racer export: {re.escape(str(checkpoint))}: not a racer train checkpoint {reason}",
                        one_line(proc))
    assert not (tmp_path / "bundle").exists()


def test_a_reward_function_that_returns_none_stops_training_with_one_line(tmp_path):
    reward = tmp_path / "reward.py"
    reward.write_text("def reward_function(params):\n    return None\n")
    proc = racer("train", "--algo", "ppo", "--reward-function", str(reward), "--timesteps", "64", "--json",
                 "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and proc.stdout == ""  # refused on its first step, before anything is written
    assert one_line(proc) == f"racer train: {reward}:2: reward_function returned None; expected a finite number"
    assert not (tmp_path / "run").exists()
