"""PPO like the DeepRacer console: a DRfC custom_files folder read unchanged (and refused in one line
when the console would refuse it), the reward function's contract, the AWS-shaped model, the logs
deepracer-utils reads, the reward graph and the best model, and the step budget."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from car.policy.bundle import load_bundle
from car.policy.decode import ActionDecoder
from car.policy.inference import Policy
from car.policy.preprocess import DEEPRACER_SPEC, Preprocessor
from racer.cli import main
from sim2real.custom_files import DEFAULT_METADATA, Hyperparameters, parse_hyperparameters
from sim2real.ppo import PPOConfig, train_ppo
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator

# The keys the AWS simulator passes (docs/training.md, simapp's RewardParam).
PARAMS_KEYS = {"all_wheels_on_track", "x", "y", "heading", "distance_from_center", "projection_distance", "progress",
               "steps", "speed", "steering_angle", "track_width", "track_length", "waypoints", "closest_waypoints",
               "is_left_of_center", "is_reversed", "closest_objects", "objects_location", "objects_left_of_center",
               "object_in_camera", "objects_speed", "objects_heading", "objects_distance_from_center",
               "objects_distance", "is_crashed", "is_offtrack"}

# Small enough for seconds per run: the console's smallest batch and epochs, 5 episodes per update.
FAST = {"batch_size": 32, "num_epochs": 3, "lr": 0.0003, "beta_entropy": 0.01, "discount_factor": 0.99,
        "loss_type": "huber", "num_episodes_between_training": 5}
CONTINUOUS = {"action_space": {"steering_angle": {"low": -30, "high": 30}, "speed": {"low": 0.5, "high": 1.0}},
              "sensor": ["FRONT_FACING_CAMERA"], "neural_network": "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
              "training_algorithm": "clipped_ppo", "action_space_type": "continuous", "version": "5"}
CENTRE = (Path(__file__).parents[1] / "sim2real" / "rewards" / "centre_line.py").read_text()


def custom_files(folder: Path, metadata: dict | None = None, hyper: dict | None = None,
                 reward: str = CENTRE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reward_function.py").write_text(reward)
    (folder / "model_metadata.json").write_text(json.dumps(metadata or DEFAULT_METADATA))
    (folder / "hyperparameters.json").write_text(json.dumps(FAST if hyper is None else hyper))
    return folder


def train(tmp_path: Path, capsys, *args: str, folder: Path | None = None) -> tuple[int, dict, str]:
    folder = folder or custom_files(tmp_path / "custom_files")
    code = main(["train", "--algo", "ppo", "--custom-files", str(folder), "--out", str(tmp_path / "run"),
                 "--json", *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else {}), captured.err


# -- a bad folder: one line naming the file and the field, nothing written --------------------------------

def _actions(n: int, speed: float = 1.0, steering: float = 0.0) -> list[dict]:
    return [{"steering_angle": steering, "speed": speed}] * n


@pytest.mark.parametrize("file, change, words", [
    ("model_metadata.json", {"action_space": _actions(1)}, "action_space: 1 actions; the console allows 2-30"),
    ("model_metadata.json", {"action_space": _actions(31)}, "action_space: 31 actions; the console allows 2-30"),
    ("model_metadata.json", {"action_space": _actions(3, speed=4.5)},
     "action_space[0].speed: 4.5 m/s is outside 0.1..4 m/s"),
    ("model_metadata.json", {"action_space": _actions(3, speed=0.05)}, "action_space[0].speed: 0.05 m/s is outside"),
    ("model_metadata.json", {"action_space": _actions(3, steering=31)},
     "action_space[0].steering_angle: 31 deg is outside -30..30 deg"),
    ("model_metadata.json", {**CONTINUOUS, "action_space": {"steering_angle": {"low": -30, "high": 30},
                                                            "speed": {"low": 0.4, "high": 1}}},
     "action_space.speed.low: 0.4 m/s is outside 0.5..4 m/s"),
    ("model_metadata.json", {**CONTINUOUS, "action_space": {"steering_angle": {"low": -35, "high": 30},
                                                            "speed": {"low": 1, "high": 2}}},
     "action_space.steering_angle.low: -35 deg is outside -30..30 deg"),
    ("model_metadata.json", {"neural_network": "RESNET"}, "neural_network: 'RESNET' is not one of"),
    ("model_metadata.json", {"training_algorithm": "sac"}, "training_algorithm: 'sac' is not trained here"),
    ("model_metadata.json", {"sensor": ["STEREO_CAMERAS"]}, "sensor: ['STEREO_CAMERAS'] is not"),
    ("hyperparameters.json", {"batch_size": 100}, "batch_size: 100 is not one of 32, 64, 128, 256, 512"),
    ("hyperparameters.json", {"num_epochs": 11}, "num_epochs: 11 is not a whole number in 3-10"),
    ("hyperparameters.json", {"num_epochs": 2}, "num_epochs: 2 is not a whole number in 3-10"),
    ("hyperparameters.json", {"lr": 0.01}, "lr: 0.01 is not a number in 1e-08-0.001"),
    ("hyperparameters.json", {"lr": 1e-9}, "lr: 1e-09 is not a number in 1e-08-0.001"),
    ("hyperparameters.json", {"beta_entropy": 1.5}, "beta_entropy: 1.5 is not a number in 0-1"),
    ("hyperparameters.json", {"discount_factor": -0.1}, "discount_factor: -0.1 is not a number in 0-1"),
    ("hyperparameters.json", {"loss_type": "l1"}, "loss_type: 'l1' is not huber or mean squared error"),
    ("hyperparameters.json", {"num_episodes_between_training": 4},
     "num_episodes_between_training: 4 is not a whole number in 5-100"),
    ("hyperparameters.json", {"num_episodes_between_training": 101}, "num_episodes_between_training: 101"),
    ("hyperparameters.json", {"stack_size": 3}, "stack_size: 3 is not 1"),
    ("hyperparameters.json", {"lerning_rate": 0.001}, "lerning_rate: not a console hyperparameter"),
])
def test_a_field_out_of_the_consoles_range_is_refused_in_one_line(tmp_path, capsys, file, change, words):
    metadata = {**DEFAULT_METADATA, **change} if file == "model_metadata.json" else None
    hyper = {**FAST, **change} if file == "hyperparameters.json" else None
    folder = custom_files(tmp_path / "custom_files", metadata, hyper)
    code, _, err = train(tmp_path, capsys, folder=folder)
    assert code == 2
    assert err.strip() == f"racer train: {folder / file}: {words}" or \
        (err.count("\n") == 1 and err.startswith(f"racer train: {folder / file}: {words}"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("missing", ["reward_function.py", "model_metadata.json", "hyperparameters.json"])
def test_a_missing_file_is_named(tmp_path, capsys, missing):
    folder = custom_files(tmp_path / "custom_files")
    (folder / missing).unlink()
    code, _, err = train(tmp_path, capsys, folder=folder)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"racer train: {folder / missing}: missing")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("body, line, words", [
    ("    return 1 / 0\n", 3, "reward_function raised ZeroDivisionError: division by zero"),
    ("    x = params['no_such_key']\n    return 1.0\n", 3, "reward_function raised KeyError: 'no_such_key'"),
    ("    if params['steps'] > 0:\n        return None\n    return 1.0\n", 4, "reward_function returned None"),
    ("    return float('nan')\n", 3, "reward_function returned nan"),
    ("    return 'fast'\n", 3, "reward_function returned 'fast'"),
    ("    return True\n", 3, "reward_function returned True"),
])
def test_a_reward_that_fails_is_located_and_nothing_is_written(tmp_path, capsys, body, line, words):
    folder = custom_files(tmp_path / "custom_files", reward=f"\ndef reward_function(params):\n{body}")
    code, _, err = train(tmp_path, capsys, folder=folder)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"racer train: {folder / 'reward_function.py'}:{line}: {words}")
    assert not (tmp_path / "run").exists()


def test_a_reward_that_fails_later_stops_training_with_file_line_and_value(tmp_path, capsys):
    reward = "def reward_function(params):\n    if params['steps'] == 4:\n        return [1.0]\n    return 1.0\n"
    folder = custom_files(tmp_path / "custom_files", reward=reward)
    code, _, err = train(tmp_path, capsys, "--timesteps", "50", folder=folder)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last == (f"racer train: {folder / 'reward_function.py'}:3: reward_function returned [1.0]; "
                    "expected a finite number")


# -- the reward contract ------------------------------------------------------------------------------------

STATEFUL = f'''
import math
import numpy as np

calls = {{"n": 0}}
KEYS = {PARAMS_KEYS!r}


def reward_function(params):
    missing = KEYS - set(params)
    if missing:
        raise KeyError(sorted(missing))
    calls["n"] += 1
    return float(calls["n"])
'''


def test_the_reward_gets_every_param_at_15_steps_per_second_and_keeps_its_state(tmp_path):
    reward = tmp_path / "reward_function.py"
    reward.write_text(STATEFUL)
    cfg = PPOConfig(reward_file=str(reward), hyperparameters=FAST, timesteps=40, cars=1, eval_episodes=0)
    from sim2real.runlog import RunLog

    run = RunLog(tmp_path / "run")
    run.start(cfg.metadata, cfg.hyperparameters, reward)
    train_ppo(cfg, run, show_progress=False)
    rows = (tmp_path / "run" / "training-simtrace" / "0-iteration.csv").read_text().splitlines()[1:]
    rewards = [float(r.split(",")[8]) for r in rows]
    statuses = [r.split(",")[15] for r in rows]
    # one module for the whole run: the count goes on across episodes (an off-track step's reward is 1e-8)
    counted = [r for r, s in zip(rewards, statuses, strict=True) if s != "off_track"]
    assert counted == sorted(counted) and counted[-1] == len(rewards)
    steps = [int(r.split(",")[1]) for r in rows]
    stamps = [float(r.split(",")[14]) for r in rows]
    assert all(math.isclose(t, s / 15.0, abs_tol=1e-3) for s, t in zip(steps, stamps, strict=True))


def test_hyperparameters_take_the_consoles_names_and_defaults():
    assert parse_hyperparameters({}) == Hyperparameters(batch_size=64, num_epochs=10, lr=3e-4, beta_entropy=0.01,
                                                         discount_factor=0.99, loss_type="huber",
                                                         num_episodes_between_training=20)
    simtrace = Path(__file__).parent / "fixtures" / "deepracer" / "simtrace"
    drfc = json.loads((simtrace / "drfc1_hyperparameters.json").read_text())
    parsed = parse_hyperparameters(drfc)
    assert (parsed.batch_size, parsed.num_epochs, parsed.discount_factor,
            parsed.term_cond_max_episodes) == (64, 3, 0.95, 5000)
    assert parse_hyperparameters({"loss_type": "mean_squared_error"}).loss_type == "mean squared error"


# -- a run: AWS-shaped model, DRfC logs, reward graph, best model, step budget ------------------------------

@pytest.mark.parametrize("metadata", [DEFAULT_METADATA, CONTINUOUS], ids=["discrete", "continuous"])
def test_a_drfc_folder_trains_unchanged_into_an_aws_shaped_model(tmp_path, capsys, metadata):
    folder = custom_files(tmp_path / "custom_files", metadata)
    code, summary, err = train(tmp_path, capsys, "--timesteps", "91", "--eval-episodes", "2", "--cars", "3",
                               folder=folder)
    assert code == 0
    assert "PPO" in err and "iteration 0" in err  # --json keeps the progress on stderr
    history = summary["history"]
    # exactly the budget, though 3 cars step together: the last step takes 1
    assert history[-1]["timesteps"] == 91 and summary["stopped_by"] == "timesteps"
    run = tmp_path / "run"
    with load_bundle(run / "bundle") as bundle:
        # what the car feeds an AWS export: 160x120 8-bit grey, raw 0..255, NHWC
        assert bundle.spec.layout == "NHWC" and bundle.spec.grey_8bit and bundle.spec.interpolation == "linear"
        assert (bundle.spec.width, bundle.spec.height, bundle.spec.scale) == (160, 120, 1.0)
        assert bundle.metadata.raw["action_space"] == metadata["action_space"]
        assert bundle.metadata.neural_network == "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW"
        sim = Simulator(Track.load("reinvent_base"))
        x = Preprocessor(bundle.spec)(sim.render())
        assert x.shape == (1, 120, 160, 1) and x.max() > 1.0
        out = Policy(bundle).infer(x)
        if metadata is DEFAULT_METADATA:
            assert out.shape == (10,) and out.sum() == pytest.approx(1.0, abs=1e-5)  # a softmax, as AWS exports
        else:
            assert out.shape == (2,)
        decoded = ActionDecoder(bundle.metadata)(out)
        assert -30.0 <= decoded.steering_deg <= 30.0
    assert (run / "training_curve.png").stat().st_size > 10_000
    assert json.loads((run / "history.json").read_text()) == history


def test_deepracer_utils_reads_the_run_and_counts_what_racer_counts(tmp_path):
    pytest.importorskip("deepracer")
    from deepracer.logs import AnalysisUtils, DeepRacerLog

    from sim2real.runlog import RunLog

    cfg = PPOConfig(hyperparameters=FAST, timesteps=260, cars=3, eval_episodes=1)
    run = RunLog(tmp_path)
    run.start(cfg.metadata, cfg.hyperparameters, Path(cfg.reward_file))
    history = train_ppo(cfg, run, show_progress=False).history
    assert len(history) >= 2
    log = DeepRacerLog(model_folder=str(tmp_path))
    log.load_training_trace()
    episodes = AnalysisUtils.simulation_agg(log.dataframe())
    assert len(episodes) == sum(h["episodes"] for h in history)
    for h in history:
        mine = episodes[episodes["iteration"] == h["iteration"]]
        assert len(mine) == h["episodes"]
        assert mine["progress"].mean() == pytest.approx(h["mean_progress"], abs=1e-3)
        assert (mine["progress"] >= 100.0).sum() == h["laps"]
        assert mine["reward"].mean() == pytest.approx(h["mean_reward"], rel=1e-4)
        assert np.allclose(mine["time"], (mine["steps"] - 1) / 15.0, atol=2e-3)  # 15 steps per simulated second
    assert log.hyperparameters()["batch_size"] == 32 and log.action_space() == cfg.metadata["action_space"]
    metrics = json.loads((tmp_path / "metrics" / "TrainingMetrics.json").read_text())["metrics"]
    phases = [m["phase"] for m in metrics]
    assert phases.count("training") == len(episodes) and phases.count("evaluation") == len(history)
    assert set(metrics[0]) >= {"reward_score", "metric_time", "start_time", "elapsed_time_in_milliseconds",
                               "episode", "trial", "phase", "completion_percentage", "episode_status"}


def test_bfloat16_updates_train_the_float32_network():
    import torch

    from sim2real.ppo import new_network

    cfg = PPOConfig(hyperparameters=FAST, timesteps=40, cars=2, eval_episodes=0, precision="bf16")
    before = new_network(cfg).state_dict()
    result = train_ppo(cfg, show_progress=False)
    after = result.last.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values())
    assert all(not torch.equal(before[k], after[k]) for k in after if k.endswith("weight"))
    assert math.isfinite(result.history[0]["policy_loss"]) and math.isfinite(result.history[0]["value_loss"])


def test_the_best_model_by_evaluation_progress_is_kept(tmp_path):
    cfg = PPOConfig(hyperparameters=FAST, timesteps=200, cars=2, eval_episodes=2)
    seen = []
    result = train_ppo(cfg, show_progress=False, on_iteration=lambda row, r: seen.append(
        {k: v.clone() for k, v in r.best.state_dict().items()}))
    history = result.history
    best = max(range(len(history)), key=lambda i: (history[i]["eval_mean_progress"], history[i]["eval_mean_reward"]))
    assert [h["best"] for h in history].index(True) == 0 and history[best]["best"]
    for name, value in result.best.state_dict().items():
        assert np.array_equal(value.numpy(), seen[best][name].numpy())


# -- clone ----------------------------------------------------------------------------------------------------

def aws_export(sample_model: Path, checkpoint: int, into: Path) -> Path:
    """An AWS console export of a sample checkpoint: model.pb and model_metadata.json at the archive root."""
    import tarfile

    archive = into / f"model_{checkpoint}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sample_model / "model" / f"model_{checkpoint}.pb", "model.pb")
        tar.add(sample_model / "model" / "model_metadata.json", "model_metadata.json")
    return archive


@pytest.mark.parametrize("checkpoint", [15, 30, 48])
def test_a_clone_of_an_aws_export_computes_what_its_graph_computes(sample_model, tmp_path, checkpoint):
    import cv2
    import openvino as ov
    import torch

    from car.policy.metadata import load_metadata
    from sim2real.clone import load_clone
    from sim2real.network import ConsoleNet

    meta = load_metadata(sample_model / "model" / "model_metadata.json")
    net = ConsoleNet(meta.neural_network, meta.output_size(), meta.discrete)
    load_clone(net, aws_export(sample_model, checkpoint, tmp_path), meta)
    core = ov.Core()
    graph = core.compile_model(core.read_model(sample_model / "model" / f"model_{checkpoint}.pb"), "CPU",
                               {"INFERENCE_PRECISION_HINT": "f32"})
    for picture in sorted((sample_model / "pictures").glob("*.png")):
        x = Preprocessor(DEEPRACER_SPEC)(cv2.imread(str(picture)))
        theirs = graph(x)[0][0]
        with torch.no_grad():
            ours = net(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_clone_trains_on_from_an_aws_export_and_from_a_run(sample_model, tmp_path, capsys):
    archive = aws_export(sample_model, 15, tmp_path)
    metadata = json.loads((sample_model / "model" / "model_metadata.json").read_text())
    folder = custom_files(tmp_path / "custom_files", metadata)
    code, summary, _ = train(tmp_path, capsys, "--clone", str(archive), "--timesteps", "40", "--eval-episodes", "1",
                             "--no-export", folder=folder)
    assert code == 0 and summary["history"][-1]["timesteps"] == 40
    first = tmp_path / "run"
    # a racer run clones on, weights and all
    import torch

    from sim2real.clone import load_clone
    from sim2real.custom_files import check_metadata
    from sim2real.network import ConsoleNet

    meta = check_metadata(metadata)
    net = ConsoleNet(meta.neural_network, meta.output_size(), True)
    load_clone(net, first, meta)
    saved = torch.load(first / "policy.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(net.state_dict()[k], v) for k, v in saved.items())
    code = main(["train", "--algo", "ppo", "--custom-files", str(folder), "--clone", str(first), "--timesteps", "20",
                 "--eval-episodes", "0", "--no-export", "--out", str(tmp_path / "second"), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["history"][-1]["timesteps"] == 20


def test_a_clone_that_does_not_fit_is_refused_in_one_line(sample_model, tmp_path, capsys):
    archive = aws_export(sample_model, 15, tmp_path)
    code, _, err = train(tmp_path, capsys, "--clone", str(archive))  # the default action space has 10 actions
    assert code == 2 and err.count("\n") == 1
    assert err.strip() == (f"racer train: {archive}: 12 discrete actions, the new action space has 10 discrete "
                           "actions; a clone keeps their number")
    deep = custom_files(tmp_path / "deep",
                        {**metadata_of(sample_model), "neural_network": "DEEP_CONVOLUTIONAL_NETWORK"})
    code, _, err = train(tmp_path, capsys, "--clone", str(archive), folder=deep)
    assert code == 2 and "network DEEP_CONVOLUTIONAL_NETWORK_SHALLOW differs" in err
    import tarfile

    empty = tmp_path / "no_model.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(sample_model / "model" / "model_metadata.json", "model_metadata.json")
    code, _, err = train(tmp_path, capsys, "--clone", str(empty))
    assert code == 2 and err.strip() == (f"racer train: {empty}: no model file (model.pb, model.xml + model.bin, "
                                         "or model.onnx)")
    assert not (tmp_path / "run").exists()


def metadata_of(sample_model: Path) -> dict:
    return json.loads((sample_model / "model" / "model_metadata.json").read_text())


# -- evaluate like the console ----------------------------------------------------------------------------------

def test_an_off_track_puts_the_car_back_keeping_clock_and_progress():
    sim = Simulator(Track.load("reinvent_base"))
    sim.reset(start_index=0)
    for _ in range(60):
        sim.apply(1.0, 0.25)
        info = sim.step()
        if info.off_track:
            break
    assert info.off_track
    placed = sim.place(int(sim.track.project(info.x, info.y)[0]))
    assert not placed.off_track and placed.time == info.time
    assert placed.progress == pytest.approx(info.progress, abs=0.5)
    assert sim.vehicle.state.speed == 0.0


def test_console_trials_report_and_log_what_deepracer_utils_reads(sample_model, tmp_path, capsys):
    pytest.importorskip("deepracer")
    from deepracer.logs import AnalysisUtils, DeepRacerLog

    # model_15 leaves the track twice a lap at max-speed 1.0: resets, penalties and pause rows to log
    archive = aws_export(sample_model, 15, tmp_path)
    out = tmp_path / "model-folder"
    assert main(["eval", "--model", str(archive), "--trials", "2", "--track", "reinvent_base", "--out", str(out),
                 "--off-track-penalty", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    trials = report["trials"]
    assert [t["trial"] for t in trials] == [1, 2]
    for t in trials:
        assert t["off_track_penalty_s"] == 2.0 * t["off_track"] and t["status"] in ("Lap complete", "Time up")
        assert (t["progress"] == 100.0) == (t["status"] == "Lap complete")
    done = [t["time_s"] for t in trials if t["status"] == "Lap complete"]
    assert report["completed_laps"] == len(done) and report["off_track"] == sum(t["off_track"] for t in trials) > 0
    assert report["average_lap_time_s"] == (round(sum(done) / len(done), 3) if done else None)
    # DRfC's layout: OUT/evaluation-YYYYMMDDHHMMSS/evaluation-simtrace/0-iteration.csv, read by deepracer-utils
    simtrace = Path(report["simtrace"])
    assert simtrace.parent.parent.parent == out and simtrace.parent.parent.name.startswith("evaluation-")
    log = DeepRacerLog(model_folder=str(out))
    log.load_evaluation_trace()
    assert log.action_space() == metadata_of(sample_model)["action_space"]
    df = log.dataframe()
    episodes = AnalysisUtils.simulation_agg(df, firstgroup="stream", is_eval=True)
    assert list(episodes["episode"]) == [t["trial"] - 1 for t in trials]
    assert list(episodes["progress"].round(2)) == [t["progress"] for t in trials]
    assert list(episodes["complete"]) == [int(t["status"] == "Lap complete") for t in trials]
    assert list(episodes["off_track"]) == [t["off_track"] for t in trials]
    # the time stamps run on the trial's clock, penalties included (the lap ends within the last step)
    assert np.allclose(episodes["time"], [t["time_s"] for t in trials], atol=1 / 15 + 1e-3)
    pauses = df[df["episode_status"] == "pause"]
    assert len(pauses) == 30 * report["off_track"] and pauses["pause_duration"].min() == 0.0
    offs = df[df["episode_status"] == "off_track"]
    assert (offs["pause_duration"] == 2.0).all() and not offs["on_track"].any()
    # a trial out of time ends on a time_up row; a second evaluation goes beside the first, as DRfC keeps them
    from sim2real.trials import run_trials

    evaluation = run_trials(archive, "reinvent_base", trials=1, timeout_s=1.0)
    assert [t.status for t in evaluation.trials] == ["Time up"]
    second = evaluation.write_log(out)
    assert second.parent.parent != simtrace.parent.parent and len(list(out.glob("evaluation-*"))) == 2
    assert second.read_text().splitlines()[-1].split(",")[9:16:6] == ["True", "time_up"]


@pytest.mark.parametrize("args, words", [
    (["--trials", "0"], "--trials must be at least 1, got 0"),
    (["--trials", "3", "--model", "b"], "--trials evaluates one --model"),
    (["--trials", "3", "--track", "moon"], "moon"),
    (["--trials", "3", "--max-speed", "2"], "--max-speed must be in (0, 1], got 2.0"),
])
def test_trial_flags_refuse_bad_input(tmp_path, capsys, args, words):
    (tmp_path / "a").mkdir()
    assert main(["eval", "--model", str(tmp_path / "a"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_trials_refuse_a_log_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "logs").write_text("mine")
    assert main(["eval", "--model", str(tmp_path / "a"), "--trials", "1", "--out", str(tmp_path / "logs")]) == 2
    assert capsys.readouterr().err.strip() == f"racer eval: {tmp_path / 'logs'} is not a directory"
    assert (tmp_path / "logs").read_text() == "mine"


@pytest.mark.parametrize("network, convs, dense", [
    ("DEEP_CONVOLUTIONAL_NETWORK_SHALLOW", [(32, 8, 4), (64, 4, 2), (64, 3, 1)], [11264, 512]),
    ("DEEP_CONVOLUTIONAL_NETWORK", [(32, 5, 2), (32, 3, 1), (64, 3, 2), (64, 3, 1)], [56000, 64, 512]),
])
def test_the_consoles_networks_and_a_short_run_on_each(tmp_path, network, convs, dense):
    import torch

    from sim2real.network import ConsoleNet

    net = ConsoleNet(network, 10, True)
    layers = [m for m in net.embedder if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in layers] == convs
    assert all(m.padding == (0, 0) for m in layers)  # valid padding
    linears = [m for m in net.middleware if isinstance(m, torch.nn.Linear)]
    assert [m.in_features for m in linears] + [linears[-1].out_features] == dense
    with torch.no_grad():
        probabilities = net(torch.full((2, 120, 160, 1), 255.0))
    assert probabilities.shape == (2, 10) and torch.allclose(probabilities.sum(1), torch.ones(2))
    cfg = PPOConfig(metadata={**DEFAULT_METADATA, "neural_network": network}, hyperparameters=FAST, timesteps=30,
                    cars=2, eval_episodes=0)
    assert train_ppo(cfg, show_progress=False).history[-1]["timesteps"] == 30


@pytest.mark.parametrize("example", ["centre_line.py", "two_borders.py", "progress_per_step.py"])
def test_the_example_rewards_pay_for_driving_well(example):
    from sim2real.console_car import ConsoleCar
    from sim2real.custom_files import check_metadata
    from sim2real.network import CONSOLE_SPEC
    from sim2real.ppo import EXAMPLE_REWARDS
    from sim2real.reward import RewardCaller

    meta = check_metadata(DEFAULT_METADATA)
    car = ConsoleCar("reinvent_base", meta, RewardCaller(EXAMPLE_REWARDS / example), CONSOLE_SPEC)
    car.reset(0, 0.0, np.random.default_rng(0))
    straight = [car.step(7)[1] for _ in range(10)]  # action 7: 0 deg at 1 m/s, along the first straight
    if example == "progress_per_step.py":
        assert min(straight[1:]) > 1.0  # about 0.4% of the lap per step, x10
    else:
        assert straight == [1.0] * 10  # the top band: centred, all wheels on
    car.reset(1, 0.0, np.random.default_rng(1))
    done = False
    while not done:  # action 9: full left lock at 1 m/s, until the car leaves the track
        _, value, done, row = car.step(9)
    assert row.status == "off_track" and value == 1e-8  # the simulator's reward for an off-track step
