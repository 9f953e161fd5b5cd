"""Training with randomization and augmentation, export of what it trained on, camera matching,
PPO on a user's reward file, and the `racer train` flags (tests/test_console_training.py has the rest of PPO)."""
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from calibration.camera import CameraInfo, save_camera_info
from car.console.uploads import folder_for
from car.policy.bundle import load_bundle
from car.policy.inference import Policy
from car.policy.preprocess import Preprocessor, PreprocessSpec
from car.policy.warning import Caution
from racer.cli import main
from racer.commands.train import done_line
from sim2real.camera_matching import camera_from_info
from sim2real.checkpoint import load_checkpoint, save_checkpoint
from sim2real.export import export_checkpoint
from sim2real.imitation import (
    Dataset,
    ImitationConfig,
    Rollouts,
    expert_targets,
    fit,
    imitation_loss,
    train_imitation,
    training_simulators,
)
from sim2real.modular import ModularNet
from sim2real.network import DrivingNet, to_tensor
from sim2real.ppo import PPOConfig, train_ppo
from sim2real.sim.expert import ExpertParams
from sim2real.sim.render import CameraParams, ground_rays
from sim2real.sim.track import TRACKS_DIR, Track
from sim2real.sim.world import Simulator
from sim2real.training_defaults import ACTION_SPACE, SPEC, spec_at

REWARD = '''
def reward_function(params):
    """A DeepRacer console example, unchanged: stay near the centre, keep all wheels on."""
    if not params["all_wheels_on_track"] or params["is_offtrack"]:
        return 1e-3
    marker = 0.25 * params["track_width"]
    return 1.0 if params["distance_from_center"] <= marker else 0.3
'''


def test_randomized_augmented_training_exports_its_statistics_through_the_gate(tmp_path):
    cfg = ImitationConfig(tracks=("reinvent_base",), iterations=2, steps_per_iteration=150, epochs=1, seed=5,
                          randomization="default", augmentation="default", episode_steps=50)
    net, _, history, data = train_imitation(cfg, show_progress=False)
    assert [h["samples"] for h in history.iterations] == [150, 300]
    x, _ = data.arrays()
    plain = train_imitation(ImitationConfig(tracks=("reinvent_base",), iterations=1, steps_per_iteration=150,
                                            epochs=1, seed=5, episode_steps=50), show_progress=False)[3].arrays()[0]

    def brightness(frames: np.ndarray) -> float:
        return frames.mean(axis=(1, 2, 3)).std()

    assert brightness(x[:150]) > 2 * brightness(plain)  # three domains and augmentation, not one world

    checkpoint = save_checkpoint(tmp_path / "policy.pt", net, SPEC, ACTION_SPACE, cfg, history.iterations)
    bundle, report = export_checkpoint(checkpoint, tmp_path / "bundle")
    assert report.frames == 1000 and report.max_abs_error < 1e-4
    racer_json = json.loads((tmp_path / "bundle" / "racer.json").read_text())
    assert racer_json["model"]["config"]["randomization"] == "default"
    assert racer_json["model"]["config"]["augmentation"] == "default"
    assert racer_json["stats"]["frames"] == 1000 and len(racer_json["stats"]["regions"]["mean"]) == 12
    bundle.close()


def test_the_default_training_path_is_unchanged():
    cfg = ImitationConfig(tracks=("reinvent_base",), iterations=1, steps_per_iteration=120, epochs=1, seed=2)
    assert (cfg.randomization, cfg.augmentation, cfg.camera_info) == (None, None, None)
    a = train_imitation(cfg, show_progress=False)[3].arrays()
    b = train_imitation(cfg, show_progress=False)[3].arrays()
    np.testing.assert_array_equal(a[0], b[0])


def test_camera_info_reproduces_the_calibrated_lens(tmp_path):
    k = CameraParams(hfov_deg=100.0).intrinsics(640, 480)
    k[0, 2] += 12.0
    path = tmp_path / "camera.yaml"
    save_camera_info(CameraInfo(640, 480, k, np.array([-0.02, 0.001, 0.0, 0.0, 0.0])), path)
    camera = camera_from_info(path, CameraParams(pitch_deg=20.0))
    assert camera.hfov_deg == pytest.approx(100.0) and camera.pitch_deg == 20.0
    assert camera.distortion == pytest.approx((-0.02, 0.001, 0.0, 0.0, 0.0))
    np.testing.assert_allclose(camera.intrinsics(640, 480), k, atol=1e-9)
    np.testing.assert_allclose(camera.intrinsics(160, 120)[0, 2], (k[0, 2] + 0.5) / 4 - 0.5, atol=0.01)
    # A ground point seen through OpenCV's model of the calibrated camera lands where we render it.
    points, _ = ground_rays(camera, 640, 480)
    pitch = np.radians(camera.pitch_deg)
    for ahead, left in ((0.5, 0.2), (0.8, -0.3), (0.4, 0.0), (1.5, 0.6)):
        forward, down = ahead - camera.forward_m, camera.height_m
        ray = np.array([[-left, -forward * np.sin(pitch) + down * np.cos(pitch),
                         forward * np.cos(pitch) + down * np.sin(pitch)]])
        pixel, _ = cv2.projectPoints(ray, np.zeros(3), np.zeros(3), k, np.array(camera.distortion))
        u, v = np.round(pixel[0, 0]).astype(int)
        assert points[v, u] == pytest.approx([ahead, left], abs=0.03 * ahead)


def test_ppo_on_a_users_reward_file_names_the_run_and_exports(tmp_path, capsys):
    reward_file = tmp_path / "reward.py"
    reward_file.write_text(REWARD)
    out = tmp_path / "run"
    assert main(["train", "--algo", "ppo", "--reward-function", str(reward_file), "--timesteps", "60",
                 "--eval-episodes", "1", "--seed", "1", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [h["timesteps"] for h in summary["history"]][-1] == 60
    # the console lists an upload under its archive's name: the run's, not "bundle"
    assert summary["tar"] == str(out / "run.tar.gz") and folder_for((out / "run.tar.gz").name) == "run"
    # the last line's commands run as printed (upload needs --car)
    line = done_line(out, summary, "run")
    assert line.endswith(f"racer upload {out / 'run.tar.gz'} --car HOST (racer discover lists cars)")
    assert parse_racer(line.split("with: ")[-1].split(" (")[0].replace("HOST", "mycar")).car == "mycar"
    bundle = load_bundle(out / "bundle")
    assert bundle.info["trainer"] == "ppo" and bundle.info["config"]["reward_file"] == str(reward_file)
    assert (out / "reward_function.py").read_text() == REWARD
    bundle.close()


def parse_racer(command: str):
    """The arguments `racer` would parse from a printed command line (argparse exits 2 on a bad one)."""
    from racer.cli import build_parser

    words = command.split()
    assert words[0] == "racer"
    return build_parser().parse_args(words[1:])


@pytest.mark.parametrize("args, message", [
    (["--randomization", "wild"], "neither a preset"),
    (["--augmentation", "wild"], "unknown augmentation preset 'wild'"),
    (["--reward-function", "r.py"], "--reward-function needs --algo ppo"),
    (["--minutes", "3"], "--minutes needs --algo ppo"),
    (["--clone", "x.tar.gz"], "--clone needs --algo ppo"),
    (["--precision", "bf16"], "--precision needs --algo ppo"),
    (["--algo", "ppo", "--reward-function", "missing.py"], "missing.py: no such reward file"),
    (["--algo", "ppo", "--minutes", "0"], "--minutes must be positive, got 0"),
    (["--algo", "ppo", "--max-speed", "0.5"], "--max-speed is dagger's"),
    (["--algo", "ppo", "--clone", "nowhere"], "nowhere: no such run, checkpoint or model"),
    (["--algo", "ppo", "--custom-files", "nowhere"], "nowhere: no such custom_files folder"),
    (["--camera-info", "missing.yaml"], "no camera_info file at missing.yaml"),
    (["--algo", "ppo", "--timesteps", "0"], "--timesteps must be at least 1, got 0"),
    (["--name", "my model"], "model name 'my model' must be 1-64 letters"),
    (["--model", "modular", "--algo", "ppo"], "--model modular trains by DAgger"),
    (["--model", "modular", "--workers", "2"], "--model modular runs its rollouts in this process"),
    (["--model", "modular", "--perception-epochs", "0"], "--perception-steps and --perception-epochs must be at"),
    (["--max-speed-low", "0"], "--max-speed-low must be in (0, 1] (--max-speed), got 0"),
    (["--max-speed", "0.5", "--max-speed-low", "0.7"], "--max-speed-low must be in (0, 0.5] (--max-speed), got 0.7"),
    (["--algo", "ppo", "--max-speed-low", "0.5"], "--max-speed-low is dagger's"),
    (["--expert-lateral-accel", "0"], "--expert-lateral-accel must be above 0 m/s^2, got 0.0"),
    (["--expert-lateral-accel", "nan"], "--expert-lateral-accel must be above 0 m/s^2, got nan"),
    (["--algo", "ppo", "--expert-lateral-accel", "3"], "--expert-lateral-accel is dagger's"),
    (["--algo", "ppo", "--road-width", "0.7,1.1"], "--road-width is dagger's"),
    (["--algo", "ppo", "--input-size", "120x90"], "--input-size is dagger's"),
    (["--corner-weight=-1"], "--corner-weight must be from 0 to 100, got -1.0"),
    (["--corner-weight", "nan"], "--corner-weight must be from 0 to 100, got nan"),
    (["--corner-weight", "inf"], "--corner-weight must be from 0 to 100, got inf"),
    (["--corner-weight", "100.5"], "--corner-weight must be from 0 to 100, got 100.5"),
    (["--algo", "ppo", "--corner-weight", "2"], "--corner-weight is dagger's"),
])
def test_train_flags_refuse_bad_input(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", str(tmp_path / "run"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--road-width", "0.7", "'0.7' is not two numbers LOW,HIGH (for example 0.7,1.1)"),
    ("--road-width", "0.7,x", "'0.7,x' is not two numbers"),
    ("--road-width", "0.7,0.9,1.1", "is not two numbers"),
    ("--road-width", "1.1,0.7", "'1.1,0.7': the factors must be from 0.3 to 1.3, LOW <= HIGH"),
    ("--road-width", "0.7,1.4", "from 0.3 to 1.3"),
    ("--road-width", "0.2,1", "from 0.3 to 1.3"),
    ("--road-width", "0.7,nan", "from 0.3 to 1.3"),
    ("--input-size", "120", "'120' is not WIDTHxHEIGHT in pixels (for example 120x90)"),
    ("--input-size", "120x", "is not WIDTHxHEIGHT"),
    ("--input-size", "120x90x2", "is not WIDTHxHEIGHT"),
    ("--input-size", "1.5x90", "is not WIDTHxHEIGHT"),
    ("--input-size", "62x48", "the input size must be from 64x48 to 160x120, got 62x48"),
    ("--input-size", "162x120", "from 64x48 to 160x120"),
    ("--input-size", "160x122", "from 64x48 to 160x120"),
    ("--input-size", "-80x60", "from 64x48 to 160x120"),
    ("--input-size", "121x90", "the input size must be even in both directions, got 121x90"),
])
def test_range_flags_refuse_what_they_cannot_parse_or_is_out_of_range(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--out", str(tmp_path / "run"), f"{flag}={value}"])
    assert exited.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_input_size_keeps_the_default_crop_share_in_even_rows():
    assert spec_at(80, 60) == SPEC
    assert [spec_at(w, h).crop_top for w, h in ((64, 48), (120, 90), (160, 120), (100, 74))] == [8, 18, 24, 14]


def test_an_input_size_trains_both_models_at_it_and_the_car_runs_their_bundle(tmp_path, capsys):
    tiny = ["--tracks", "reinvent_base", "--iterations", "1", "--steps", "100", "--epochs", "1", "--no-export",
            "--json", "--input-size", "64X48"]
    assert main(["train", *tiny, "--out", str(tmp_path / "driver")]) == 0
    assert main(["train", *tiny, "--model", "modular", "--perception-steps", "100", "--perception-epochs", "1",
                 "--out", str(tmp_path / "watcher")]) == 0
    small = replace(SPEC, width=64, height=48, crop_top=8)
    for run, kind in (("driver", "DrivingNet"), ("watcher", "ModularNet")):
        net, spec, *_ = load_checkpoint(tmp_path / run / "policy.pt")
        assert spec == small and type(net).__name__ == kind
    driver, watcher = tmp_path / "driver" / "policy.pt", tmp_path / "watcher" / "policy.pt"
    assert main(["export", str(driver), "--monitor", str(watcher), "--out", str(tmp_path / "bundle")]) == 0
    with load_bundle(tmp_path / "bundle") as bundle:
        assert bundle.spec == small
        policy = Policy(bundle)
        frame = Simulator(Track.load("reinvent_base")).render()  # the camera's 160x120, as on the car
        features = Preprocessor(bundle.spec)(frame)
        assert features.shape == (1, 2, 40, 64)
        assert np.all(np.isfinite(policy.infer(features))) and policy.uncertainty() > 0.0
    capsys.readouterr()
    default = modular_checkpoint(tmp_path, "default")
    assert main(["export", str(driver), "--monitor", str(default), "--out", str(tmp_path / "refused")]) == 2
    assert ("its preprocessing is not the driving network's (80x60 from row 12, 2 frame(s) against 64x48 from row 8, "
            "2 frame(s))") in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_a_road_width_range_narrows_or_widens_each_episode_about_the_same_centre_line():
    cfg = ImitationConfig(tracks=("reinvent_base",), seed=1, randomization="default", augmentation="default",
                          road_width=(0.7, 1.1))
    label_size = (80, 60, 12)
    rollouts, plain = Rollouts(cfg, label_size=label_size), Rollouts(replace(cfg, road_width=None))
    sim, plain_sim = rollouts.worlds["reinvent_base"].sim, plain.worlds["reinvent_base"].sim
    base = plain_sim.track
    factors = []
    for index in range(4):
        rollouts.episode(0, index, 1.0, 5)
        plain.episode(0, index, 1.0, 5)
        ratio = sim.track.half_width / base.half_width
        np.testing.assert_allclose(ratio, ratio[0])
        assert 0.7 <= ratio[0] <= 1.1
        factors.append(ratio[0])
        np.testing.assert_array_equal(sim.track.centre, base.centre)
        assert sim.domain == plain_sim.domain  # the width is drawn after the domain and the augmenter
        assert rollouts.labels is not None and rollouts.labels["reinvent_base"].track is sim.track
    assert max(factors) - min(factors) > 0.1


def test_on_a_narrowed_road_the_starts_narrow_with_it(monkeypatch):
    # the modular perception's 0.35 m starts on a road 0.3 times reinvent_base's 0.38 m half-width: unscaled,
    # about half of them would begin off the road and end after one frame
    cfg = ImitationConfig(tracks=("reinvent_base",), seed=2, start_offset_m=0.35, road_width=(0.3, 0.3))
    rollouts = Rollouts(cfg)
    sim = rollouts.worlds["reinvent_base"].sim
    offsets = []
    reset = sim.reset

    def record(**kwargs):
        offsets.append(kwargs["offset"])
        return reset(**kwargs)

    monkeypatch.setattr(sim, "reset", record)
    lengths = [len(rollouts.episode(0, index, 1.0, 20)) for index in range(8)]
    assert all(abs(offset) <= 0.35 * 0.3 for offset in offsets) and max(map(abs, offsets)) > 0.05
    assert min(lengths) > 1, lengths  # every start on the road (with 15 deg of heading error some leave it soon)


def test_train_refuses_an_out_directory_the_console_cannot_name(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "my run")]) == 2
    assert capsys.readouterr().err.strip().endswith("starting with a letter or digit; pass --name")
    assert not (tmp_path / "my run").exists()


def test_a_calibrated_lens_stays_as_measured_under_randomization(tmp_path):
    k = CameraParams(hfov_deg=120.0).intrinsics(640, 480)
    path = tmp_path / "camera.yaml"
    save_camera_info(CameraInfo(640, 480, k, np.array([-0.3, 0.08, 0.0, 0.0, 0.0])), path)
    cfg = ImitationConfig(tracks=("reinvent_base",), randomization="default", camera_info=str(path))
    sim = training_simulators(cfg)["reinvent_base"]
    pitches = set()
    for seed in range(3):
        sim.set_domain(sim.randomization.sample(np.random.default_rng(seed)))
        assert sim.camera.hfov_deg == pytest.approx(120.0) and sim.camera.distortion[0] == pytest.approx(-0.3)
        assert sim.camera.fisheye == 0.0  # the calibration's plumb_bob model is the lens, not the fisheye knob
        pitches.add(sim.camera.pitch_deg)
    assert len(pitches) == 3  # the mounting still varies


def test_ppo_progress_counts_to_the_steps_it_runs(capsys):
    cfg = PPOConfig(timesteps=60, cars=2, eval_episodes=0,
                    hyperparameters={"batch_size": 32, "num_epochs": 3, "num_episodes_between_training": 5})
    assert train_ppo(cfg).history[-1]["timesteps"] == 60  # exactly the steps asked for
    assert "60/60" in capsys.readouterr().err  # the bar ends at its total, not past it


def tiny_checkpoint(folder: Path, name: str, seed: int, flip: bool = True, action_space: dict = ACTION_SPACE,
                    tracks: tuple[str, ...] = ("reinvent_base",), spec: PreprocessSpec = SPEC) -> Path:
    """`folder/name/policy.pt`: an end-to-end DAgger run of 100 steps."""
    cfg = ImitationConfig(tracks=tracks, iterations=1, steps_per_iteration=100, epochs=1, seed=seed, flip=flip,
                          episode_steps=50)
    net, _, history, _ = train_imitation(cfg, spec, show_progress=False)
    (folder / name).mkdir()
    return save_checkpoint(folder / name / "policy.pt", net, spec, action_space, cfg, history.iterations)


def modular_checkpoint(folder: Path, name: str, spec: PreprocessSpec = SPEC) -> Path:
    """`folder/name/policy.pt`: an untrained modular model (its perception's weights as initialised)."""
    (folder / name).mkdir()
    return save_checkpoint(folder / name / "policy.pt", ModularNet(spec, 2), spec, ACTION_SPACE,
                           ImitationConfig(tracks=("reinvent_base",)), [], trainer="modular")


def test_several_checkpoints_export_as_one_ensemble_and_misfits_are_refused(tmp_path, capsys):
    def checkpoint(name: str, seed: int, **kwargs):
        return tiny_checkpoint(tmp_path, name, seed, **kwargs)

    first, second = checkpoint("first", 5), checkpoint("second", 6)
    assert main(["export", str(first), str(second), "--out", str(tmp_path / "ensemble")]) == 0
    with load_bundle(tmp_path / "ensemble") as bundle:
        model = json.loads((tmp_path / "ensemble" / "racer.json").read_text())["model"]
        assert model["seeds"] == [5, 6] and model["checkpoints"] == ["first/policy.pt", "second/policy.pt"]
        assert Policy(bundle).has_uncertainty
    faster = {**ACTION_SPACE, "action_space": {**ACTION_SPACE["action_space"], "speed": {"low": 0.5, "high": 3.0}}}
    modular = modular_checkpoint(tmp_path, "modular")
    misfits = [([first, first], "the same checkpoint is named twice"),
               ([first, checkpoint("unflipped", 7, flip=False)], "unflipped/policy.pt: it was trained without "
                "mirrored frames, which the uncertainty (its disagreement with its mirror) needs"),
               ([first, checkpoint("faster", 8, action_space=faster)],
                "faster/policy.pt: its action space is not the first checkpoint's"),
               ([first, checkpoint("finer", 10, spec=spec_at(120, 90))],
                "finer/policy.pt: its preprocessing is not the first checkpoint's (120x90 from row 18, 2 frame(s) "
                "against 80x60 from row 12, 2 frame(s))"),
               ([first, checkpoint("oval", 9, tracks=("Oval_track",))],
                "oval/policy.pt: its tracks ['Oval_track'] is not the first checkpoint's ['reinvent_base']"),
               ([modular, first], "modular/policy.pt: it holds a ModularNet; ensembles and monitors need "
                "end-to-end DAgger networks (DrivingNet)")]
    capsys.readouterr()
    for paths, message in misfits:
        with pytest.raises(ValueError, match=re.escape(message)):
            export_checkpoint(paths, tmp_path / "refused")
        assert main(["export", *map(str, paths), "--out", str(tmp_path / "refused")]) == 2
        assert message in capsys.readouterr().err
    assert main(["export", str(first), str(tmp_path / "nowhere.pt"), "--out", str(tmp_path / "refused")]) == 2
    assert capsys.readouterr().err.strip() == f"racer export: no checkpoint at {tmp_path / 'nowhere.pt'}"
    assert not (tmp_path / "refused").exists()


def test_a_modular_perception_exports_as_an_ensembles_monitor_and_misfits_are_refused(tmp_path, capsys, monkeypatch):
    first, second = tiny_checkpoint(tmp_path, "first", 5), tiny_checkpoint(tmp_path, "second", 6)
    modular = modular_checkpoint(tmp_path, "modular")
    monkeypatch.chdir(tmp_path / "modular")  # named from where it lies, even given as a bare file name
    assert main(["export", str(first), str(second), "--monitor", "policy.pt", "--out", str(tmp_path / "watched")]) == 0
    monkeypatch.chdir(tmp_path)
    assert json.loads((tmp_path / "watched" / "racer.json").read_text())["model"]["monitor"] == "modular/policy.pt"
    export_checkpoint([first, second], tmp_path / "plain")[0].close()
    export_checkpoint(modular, tmp_path / "perception")[0].close()
    frames = np.random.default_rng(4).uniform(0.0, 1.0, (6, *SPEC.input_shape()[1:])).astype(np.float32)
    outputs = {}
    for name in ("watched", "plain", "perception"):
        with load_bundle(tmp_path / name) as bundle:
            policy = Policy(bundle)
            outputs[name] = [(policy.infer(frame[None]).copy(), policy.uncertainty()) for frame in frames]
    for watched, plain, perception in zip(outputs["watched"], outputs["plain"], outputs["perception"], strict=True):
        np.testing.assert_allclose(watched[0], plain[0], atol=1e-6)  # the monitor never touches the action
        # the ensemble's disagreement plus the perception's entropy on the newest frame (the modular bundle's)
        assert watched[1] == pytest.approx(plain[1] + perception[1], abs=1e-5) and perception[1] > 0.5
    capsys.readouterr()
    misfits = [([first], first, "first/policy.pt: it holds a DrivingNet; a monitor is a modular model's perception"),
               ([first], modular_checkpoint(tmp_path, "single", replace(SPEC, frame_stack=1)),
                "single/policy.pt: its preprocessing is not the driving network's (80x60 from row 12, 1 frame(s) "
                "against 80x60 from row 12, 2 frame(s))"),
               ([tiny_checkpoint(tmp_path, "unflipped", 7, flip=False)], modular,
                "unflipped/policy.pt: it was trained without mirrored frames")]
    for paths, monitor, message in misfits:
        with pytest.raises(ValueError, match=re.escape(message)):
            export_checkpoint(paths, tmp_path / "refused", monitor=monitor)
        assert main(["export", *map(str, paths), "--monitor", str(monitor), "--out", str(tmp_path / "refused")]) == 2
        assert message in capsys.readouterr().err
    nowhere = tmp_path / "nowhere.pt"
    assert main(["export", str(first), "--monitor", str(nowhere), "--out", str(tmp_path / "refused")]) == 2
    assert capsys.readouterr().err.strip() == f"racer export: no checkpoint at {nowhere}"
    assert not (tmp_path / "refused").exists()


def test_export_records_a_steering_scale_and_refuses_one_out_of_range(tmp_path, capsys):
    single, second = tiny_checkpoint(tmp_path, "single", 5), tiny_checkpoint(tmp_path, "second", 6)
    modular = modular_checkpoint(tmp_path, "modular")
    assert main(["export", str(single), "--steering-scale", "1.5", "--out", str(tmp_path / "scaled")]) == 0
    assert main(["export", str(single), "--out", str(tmp_path / "plain")]) == 0
    assert main(["export", str(single), str(second), "--monitor", str(modular), "--steering-scale", "2",
                 "--out", str(tmp_path / "watched-scaled")]) == 0
    assert main(["export", str(single), str(second), "--monitor", str(modular),
                 "--out", str(tmp_path / "watched")]) == 0
    frames = np.random.default_rng(4).uniform(0.0, 1.0, (6, *SPEC.input_shape()[1:])).astype(np.float32)
    for name, plain_name, scale in (("scaled", "plain", 1.5), ("watched-scaled", "watched", 2.0)):
        assert json.loads((tmp_path / name / "racer.json").read_text())["model"]["steering_scale"] == scale
        assert json.loads((tmp_path / plain_name / "racer.json").read_text())["model"]["steering_scale"] == 1.0
        with load_bundle(tmp_path / name) as scaled, load_bundle(tmp_path / plain_name) as plain:
            ours, theirs = Policy(scaled), Policy(plain)
            for frame in frames:
                action, base = ours.infer(frame[None]).copy(), theirs.infer(frame[None]).copy()
                np.testing.assert_allclose(action, [scale * base[0], base[1]], atol=1e-5)
                assert ours.uncertainty() == pytest.approx(theirs.uncertainty(), abs=1e-5)
    capsys.readouterr()
    refused = [([single], scale, f"the steering scale must be from 0.25 to 4, got {scale}")
               for scale in ("0", "-1.5", "nan", "inf", "4.5", "0.2", "1e-320")]
    needs = "a steering scale needs a continuous end-to-end DAgger network trained on mirrored frames"
    refused += [([tiny_checkpoint(tmp_path, "unflipped", 7, flip=False)], "1.5",
                 f"unflipped/policy.pt: {needs} (racer train's default); it was trained without mirrored frames"),
                ([modular], "1.5", f"modular/policy.pt: {needs} (racer train's default); it holds a ModularNet"),
                ([single, second], "0", "the steering scale must be from 0.25 to 4, got 0.0")]
    for paths, scale, message in refused:
        assert main(["export", *map(str, paths), "--steering-scale", scale, "--out", str(tmp_path / "refused")]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="the steering scale must be from 0.25 to 4, got 5.0"):
        export_checkpoint(single, tmp_path / "refused", steering_scale=5.0)
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(single), "--steering-scale", "much", "--out", str(tmp_path / "refused")])
    assert exit_.value.code == 2 and "invalid float value: 'much'" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_export_writes_a_caution_the_car_loads_and_refuses_a_bad_one(tmp_path, capsys):
    single = tiny_checkpoint(tmp_path, "single", 5)
    assert main(["export", str(single), "--caution", "0.25,0.8", "--out", str(tmp_path / "careful")]) == 0
    assert json.loads((tmp_path / "careful" / "racer.json").read_text())["caution"] == \
        {"warning": 0.25, "speed_scale": 0.8}
    with load_bundle(tmp_path / "careful") as bundle:
        assert Policy(bundle).model().caution == Caution(0.25, 0.8)
    assert main(["export", str(single), "--out", str(tmp_path / "plain")]) == 0
    assert "caution" not in json.loads((tmp_path / "plain" / "racer.json").read_text())
    capsys.readouterr()
    for value, message in (("0.25", "it is not two numbers WARNING,SCALE"),
                           ("0.25,0.8,1", "it is not two numbers WARNING,SCALE"),
                           ("high,0.8", "it is not two numbers WARNING,SCALE"),
                           ("0,0.8", "caution warning must be above 0, got 0.0"),
                           ("0.25,1.2", "caution speed_scale must be in (0, 1], got 1.2"),
                           ("0.25,0", "caution speed_scale must be in (0, 1], got 0.0"),
                           ("nan,0.8", "caution warning must be a finite number, got nan")):
        with pytest.raises(SystemExit) as exit_:
            main(["export", str(single), "--caution", value, "--out", str(tmp_path / "refused")])
        assert exit_.value.code == 2 and f"argument --caution: '{value}': {message}" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_train_loads_the_export_code_before_it_trains(tmp_path):
    # A racer updated during hours of training must not meet, at export, modules older than the export
    # code it then loads: the whole export is loaded before the first step.
    probe = ("import sys; import racer.commands.train as train; train._train_dagger = lambda *args: "
             "print(sorted(m for m in sys.modules if m.startswith('sim2real.ex'))) or 0; "
             f"from racer.cli import main; sys.exit(main(['train', '--out', {str(tmp_path / 'run')!r}]))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['sim2real.export']"


def test_a_lower_expert_lateral_acceleration_teaches_slower_corners():
    # The same episode (same seed, the expert driving throughout) on Tokyo, whose hairpin is the
    # expert's slowest corner: a 2.5 m/s^2 cap labels lower speeds there than the default 3.5.
    def speed_labels(cap):
        cfg = ImitationConfig(tracks=("Tokyo_Training_track",), seed=3, expert_lateral_accel_mps2=cap)
        rollouts = Rollouts(cfg)
        assert rollouts.experts["Tokyo_Training_track"].params == cfg.expert_params()
        return rollouts.episode(0, 0, beta=1.0, max_steps=300).targets[:, 1]

    default, careful = speed_labels(None), speed_labels(2.5)
    assert ImitationConfig().expert_params() == ExpertParams()
    assert careful.mean() < default.mean() - 0.03 and careful.min() < default.min()  # 0.048 and 0.04 lower
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="lateral acceleration must be above 0"):
            ImitationConfig(expert_lateral_accel_mps2=bad).expert_params()


def test_a_corner_weight_counts_each_frame_by_how_hard_the_expert_steers():
    # one frame straight, one at full left lock; the same steering error on one or the other
    target = torch.tensor([[0.0, 0.5], [-1.0, 0.5]])
    on_straight = target + torch.tensor([[0.1, 0.0], [0.0, 0.0]])
    in_corner = target + torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    for predicted in (on_straight, in_corner):  # without the weight: the mean, steering counted twice
        assert float(imitation_loss(predicted, target)) == pytest.approx(2 * 0.1 ** 2 / 4)
    # with 2, the corner frame counts 3 to the straight's 1, normalised by the weights' sum (4 frames' worth)
    assert float(imitation_loss(on_straight, target, 2.0)) == pytest.approx(2 * 0.1 ** 2 * 1 / 8)
    assert float(imitation_loss(in_corner, target, 2.0)) == pytest.approx(2 * 0.1 ** 2 * 3 / 8)
    # fit trains on it: one batch at learning rate 0 reports the weighted loss of the net's own outputs
    rng = np.random.default_rng(0)
    data = Dataset(SPEC.input_shape())  # frames stored (H, W, C), as the preprocessor makes them
    data.extend(rng.random((8, SPEC.out_height, SPEC.width, SPEC.channels)).astype(np.float16),
                rng.uniform(-1, 1, (8, 2)).astype(np.float32))
    torch.manual_seed(0)
    net = DrivingNet(SPEC)
    x, y = data.arrays()
    with torch.no_grad():
        expected = [float(imitation_loss(net(to_tensor(SPEC, x)), torch.from_numpy(y), k)) for k in (0.0, 2.0)]
    reported = [fit(net, SPEC, data, ImitationConfig(epochs=1, learning_rate=0.0, flip=False, corner_weight=k), rng)
                for k in (0.0, 2.0)]
    assert reported == pytest.approx(expected, rel=1e-5) and expected[0] != pytest.approx(expected[1], rel=1e-3)


def calls(monkeypatch, obj, name: str) -> list[tuple[tuple, object]]:
    """Every call of `obj.name` from now on, as (arguments, result), the method still doing its work."""
    method, seen = getattr(obj, name), []

    def record(*args):
        seen.append((args, method(*args)))
        return seen[-1][1]

    monkeypatch.setattr(obj, name, record)
    return seen


def test_a_max_speed_range_drives_each_episode_at_its_own_setting(monkeypatch):
    # The expert drives (beta 1) from rest at full throttle; what reaches the simulator is capped at
    # the episode's setting, drawn from [0.3, 0.8] per episode, as the console's slider caps the car.
    cfg = ImitationConfig(tracks=("reinvent_base",), seed=1, max_speed_setting=0.8, max_speed_low=0.3)
    rollouts = Rollouts(cfg)
    applied = calls(monkeypatch, rollouts.worlds["reinvent_base"].sim, "apply")
    tops = []
    for index in range(4):
        applied.clear()
        rollouts.episode(0, index, beta=1.0, max_steps=60)
        tops.append(max(throttle for (_, throttle), _ in applied))
    assert all(0.3 <= top <= 0.8 for top in tops) and max(tops) - min(tops) > 0.1  # settings differ by episode
    # Labels are the top setting's whatever the episode's: the car scales the policy's speed by a
    # setting the policy cannot see. Through Tokyo's corners the expert asks for less than full throttle.
    tokyo = Rollouts(replace(cfg, tracks=("Tokyo_Training_track",)))
    asked = calls(monkeypatch, tokyo.experts["Tokyo_Training_track"], "act")
    targets = tokyo.episode(0, 0, beta=1.0, max_steps=300).targets
    commands = [command for _, command in asked]
    expected = [expert_targets(tokyo.meta, steering, throttle, 0.8) for steering, throttle in commands]
    np.testing.assert_allclose(targets, expected)
    assert min(throttle for _, throttle in commands) < 0.5  # labels a setting-relative scheme would change
    fixed = Rollouts(ImitationConfig(tracks=("reinvent_base",), seed=1, max_speed_setting=0.5))
    applied = calls(monkeypatch, fixed.worlds["reinvent_base"].sim, "apply")
    fixed.episode(0, 0, beta=1.0, max_steps=60)
    assert max(throttle for (_, throttle), _ in applied) == pytest.approx(0.5)  # a fixed setting caps the expert too
    rng = np.random.default_rng(0)
    assert ImitationConfig(max_speed_setting=0.8, max_speed_low=0.8).draw_max_speed(rng) == 0.8
    assert rng.random() == np.random.default_rng(0).random()  # an empty range takes no draw: a fixed run's episodes
    with pytest.raises(ValueError, match=r"lowest max-speed setting must be in \(0, 0.8\], got 0.9"):
        ImitationConfig(max_speed_setting=0.8, max_speed_low=0.9).draw_max_speed(np.random.default_rng(0))


def test_a_training_track_given_as_a_file_drives_its_episodes_and_labels(tmp_path):
    """`--tracks` takes .npy paths as `Track.load` does: the file's episodes get its world, its
    expert and (modular) its label camera, keyed by the path as given, not by the file's stem."""
    path = tmp_path / "my_track.npy"
    np.save(path, np.load(TRACKS_DIR / "reinvent_base.npy"))
    rollouts = Rollouts(ImitationConfig(tracks=(str(path),), seed=1), label_size=(32, 24, 4))
    episode = rollouts.episode(0, 0, beta=1.0, max_steps=20)
    assert len(episode.targets) == 20 and len(episode.labels) == 20
    assert rollouts.worlds[str(path)].sim.track.name == "my_track"
