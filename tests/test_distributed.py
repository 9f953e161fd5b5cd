"""Training and the gap evaluation on Ray workers: a private Ray instance on loopback with 2 CPUs,
started once for the module; every parallel result must equal the serial one exactly."""
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from racer.cli import main
from sim2real.distributed import (
    ClusterError,
    WorkerCars,
    WorkerRollouts,
    check_reachable,
    drive_tasks,
    evaluate_on_workers,
    ray_workers,
    run_gap_evaluation_on_workers,
)
from sim2real.gap import EvalConfig, NamedDomain, evaluate, run_gap_evaluation
from sim2real.heldout import Episode
from sim2real.imitation import ImitationConfig, train_imitation
from sim2real.ppo import PPOConfig, train_ppo
from sim2real.randomize import Randomization

REPO = Path(__file__).resolve().parents[1]
QUICK = EvalConfig(tracks=("reinvent_base",), starts=1, lap_timeout_s=5.0)
DOMAINS = [NamedDomain("dark", {"light": 0.5}), NamedDomain("laggy", {"delay_ms": 120.0})]


@pytest.fixture(scope="module")
def ray_local():
    with ray_workers(None, 2):
        import ray

        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights(net: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in net.state_dict().items()}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_dagger_rollouts_on_two_workers_equal_the_serial_ones(ray_local, tmp_path):
    # A randomization YAML on the driver's disk only: the workers get it shipped.
    config = tmp_path / "rooms.yaml"
    Randomization.preset("default").save(config)
    cfg = ImitationConfig(tracks=("reinvent_base", "Spain_track"), iterations=2, steps_per_iteration=90,
                          episode_steps=30, epochs=1, seed=3, randomization=str(config), augmentation="light")
    serial_net, _, serial_history, serial_data = train_imitation(cfg, show_progress=False)
    net, _, history, data = train_imitation(cfg, show_progress=False, source=WorkerRollouts(cfg, 2))
    x, y = data.arrays()
    sx, sy = serial_data.arrays()
    assert len(x) == 180 and y.shape == (180, 2)
    np.testing.assert_array_equal(x, sx)
    np.testing.assert_array_equal(y, sy)
    assert history.iterations == serial_history.iterations
    assert_same_weights(net, serial_net)
    # The second iteration mixed in the learner, shipped to the workers: its frames differ from the expert-only first.
    assert not np.array_equal(x[:90], x[90:])


def test_ppo_cars_on_two_workers_drive_as_in_one_process(ray_local, tmp_path):
    reward = tmp_path / "reward_function.py"
    reward.write_text("calls = [0]\n\ndef reward_function(params):\n    calls[0] += 1\n"
                      "    return 1.0 / calls[0] + (1.0 if params['distance_from_center'] < 0.2 else 0.0)\n")
    cfg = PPOConfig(reward_file=str(reward), tracks=("reinvent_base", "Spain_track"), timesteps=80, cars=3,
                    eval_episodes=1, seed=4, hyperparameters={"batch_size": 32, "num_epochs": 3,
                                                              "num_episodes_between_training": 5})
    serial = train_ppo(cfg, show_progress=False)
    cars = WorkerCars(cfg, 2)
    assert len(cars.actors) == 2
    parallel = train_ppo(cfg, show_progress=False, cars=cars)
    timing = ("seconds", "collect_s", "update_s", "eval_s")

    def untimed(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if k not in timing} for h in history]

    assert parallel.history and untimed(parallel.history) == untimed(serial.history)
    assert_same_weights(parallel.best, serial.best)


def test_gap_grid_on_workers_equals_the_serial_run_and_resumes(ray_local, tmp_path):
    base = ImitationConfig(tracks=("reinvent_base",), iterations=1, steps_per_iteration=60, epochs=1, threads=1)
    variants = ("none", "augmentation")
    serial = run_gap_evaluation(tmp_path / "serial", [0], DOMAINS, base, QUICK, variants)
    log: list[str] = []
    parallel = run_gap_evaluation_on_workers(tmp_path / "ray", [0], DOMAINS, base, QUICK, variants, log.append,
                                             show_progress=False)
    assert [m["name"] for m in parallel] == ["none-s0", "augmentation-s0"]
    assert [m["results"] for m in parallel] == [m["results"] for m in serial]
    assert sorted(log) == ["trained augmentation-s0", "trained none-s0", "training augmentation seed 0",
                           "training none seed 0"]
    bundle = Path(parallel[0]["bundle"])
    assert (bundle / "racer.json").is_file() and (bundle.parent / "policy.pt").is_file()

    log.clear()  # a second run reuses what the first one wrote, and drives it the same
    again = run_gap_evaluation_on_workers(tmp_path / "ray", [0], DOMAINS, base, QUICK, variants, log.append,
                                          show_progress=False)
    assert log == [] and again == parallel
    assert evaluate_on_workers([bundle], DOMAINS, QUICK, show_progress=False) == [evaluate(bundle, DOMAINS, QUICK)]


def test_racer_train_on_one_worker_writes_the_serial_checkpoint(ray_local, tmp_path):
    args = ["train", "--tracks", "reinvent_base", "--iterations", "2", "--steps", "40", "--epochs", "1", "--no-export",
            "--json", "--input-size", "64x48"]  # the workers resize to the run's size, not the default
    assert main([*args, "--out", str(tmp_path / "serial")]) == 0
    assert main([*args, "--out", str(tmp_path / "ray"), "--workers", "1"]) == 0
    serial, ray = (torch.load(tmp_path / run / "policy.pt", weights_only=True) for run in ("serial", "ray"))
    assert serial["history"] == ray["history"] and serial["config"] == ray["config"]
    assert serial["spec"] == ray["spec"] and ray["spec"]["width"] == 64
    for k, v in serial["state_dict"].items():
        assert torch.equal(v, ray["state_dict"][k]), k


def test_racer_eval_on_workers_prints_the_serial_report(ray_local, tmp_path, capsys):
    args = ["eval", "--model", str(REPO / "models" / "default"), "--domains", "nominal", "--tracks", "reinvent_base",
            "--starts", "1", "--json"]
    reports = []
    for extra in ([], ["--workers", "2"]):
        assert main([*args, "--out", str(tmp_path / str(len(extra))), *extra]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[1]["models"] == reports[0]["models"]
    assert reports[0]["models"][0]["results"]["nominal"]["laps"] == 1


def test_an_unreachable_cluster_is_one_line_at_once(tmp_path, capsys):
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    assert main(["train", "--out", str(tmp_path / "run"), "--workers", "2", "--ray-address", address]) == 2
    assert main(["eval", "--model", str(REPO / "models" / "default"), "--workers", "2", "--ray-address", address,
                 "--out", str(tmp_path / "gap")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"racer {cmd}: cannot reach the Ray cluster at {address} (connection refused); start its head "
                   "with `ray start --head` and pass the address it prints" for cmd in ("train", "eval")]
    assert time.monotonic() - t0 < 60  # not Ray's minutes of retries
    assert not (tmp_path / "run").exists() and not (tmp_path / "gap").exists()


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --workers"),
    (["--workers", "2", "--ray-address", "headnode"], "Ray address must be HOST:PORT"),
])
def test_bad_worker_options(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("address", ["headnode", "headnode:port", ":6379", "ray://headnode"])
def test_a_malformed_ray_address_is_refused_before_any_connection(address):
    with pytest.raises(ClusterError, match=f"Ray address must be HOST:PORT .* got '{address}'"):
        check_reachable(address)


def test_without_workers_nothing_imports_ray(tmp_path):
    code = (
        "import sys\n"
        "from racer.cli import main\n"
        f"assert main(['train', '--out', {str(tmp_path / 'run')!r}, '--iterations', '1', '--steps', '20', "
        "'--epochs', '1', '--no-export', '--json']) == 0\n"
        f"assert main(['eval', '--model', {str(REPO / 'models' / 'default')!r}, '--domains', 'nominal', "
        f"'--tracks', 'reinvent_base', '--starts', '1', '--out', {str(tmp_path / 'gap')!r}, '--json']) == 0\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, timeout=280,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert (tmp_path / "run" / "policy.pt").is_file() and (tmp_path / "gap" / "gap.json").is_file()


def test_drive_tasks_hold_a_few_laps_each():
    one_lap = [NamedDomain(f"t-{i}", {}, i, "t", (Episode("Oval_track", 0.5),)) for i in range(10)]
    twenty = NamedDomain("dark", {"light": 0.5}, episodes=tuple(Episode("Oval_track", k / 20) for k in range(20)))
    chunks = drive_tasks(one_lap + [twenty, NamedDomain("plain", {})])
    assert [[d.name for d in c] for c in chunks] == [[d.name for d in one_lap[:8]], ["t-8", "t-9"], ["dark"], ["plain"]]
