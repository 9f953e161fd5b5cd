"""Real AWS-trained DeepRacer models (deepracer-utils==1.5.6 sample-model, fetched by tests/aws_models.py).

Each checkpoint is packed as the AWS console exports it (model.pb + model_metadata.json at the
archive root) and converted once per session into a shared cache; the commands run as a user runs
them. The TensorFlow reference (tools/make_aws_reference.py) holds TensorFlow's softmax on the three
pictures, preprocessed as the stock car does.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from aws_models import CHECKPOINTS, PICTURES
from car.policy.bundle import load_bundle
from car.policy.inference import Policy
from car.policy.preprocess import DEEPRACER_AREA_SPEC, DEEPRACER_SPEC, Preprocessor
from model_factory import MODELS, write_tar

REFERENCE = np.load(MODELS / "aws_sample_tf.npz")
# The 12 actions of the sample model's model_metadata.json, in output order.
ACTIONS = [(-30, 1.0), (-20, 1.0), (-20, 2.0), (-10, 1.0), (-10, 2.0), (0, 1.0), (0, 2.0), (10, 1.0), (10, 2.0),
           (20, 1.0), (20, 2.0), (30, 1.0)]


@pytest.fixture(scope="session")
def aws(sample_model, tmp_path_factory):
    """{checkpoint: archive}, the shared conversion cache and the pictures."""
    work = tmp_path_factory.mktemp("aws")
    meta = (sample_model / "model" / "model_metadata.json").read_bytes()
    archives = {c: write_tar(work / f"model_{c}.tar.gz",
                             {"model.pb": (sample_model / "model" / f"model_{c}.pb").read_bytes(),
                              "model_metadata.json": meta}) for c in CHECKPOINTS}
    return {"archives": archives, "cache": work / "cache",
            "pictures": [sample_model / "pictures" / p for p in PICTURES], "work": work}


def racer(aws, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RACER_CACHE_DIR": str(aws["cache"])}
    return subprocess.run([sys.executable, "-m", "racer.cli", "model", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_reference_inputs_are_the_stock_cars_preprocessing(aws):
    for bgr_path, stored in zip(aws["pictures"], REFERENCE["inputs"], strict=True):
        ours = Preprocessor(DEEPRACER_SPEC)(cv2.imread(str(bgr_path)))
        assert ours.shape == (1, 120, 160, 1) and ours.dtype == np.float32
        assert np.array_equal(ours, stored.astype(np.float32))


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_check_inspect_convert_a_real_model(aws, checkpoint, tmp_path):
    archive = str(aws["archives"][checkpoint])
    checked = racer(aws, "check", archive, "--json")
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    assert json.loads(checked.stdout) == {
        "ok": True, "name": f"model_{checkpoint}", "kind": "tensorflow",
        "input": {"name": "main_level/agent/main/online/network_0/FRONT_FACING_CAMERA/FRONT_FACING_CAMERA",
                  "shape": [1, 120, 160, 1]},
        "output": {"name": "main_level/agent/main/online/network_1/ppo_head_0/policy", "size": 12}}

    inspected = json.loads(racer(aws, "inspect", archive, "--json").stdout)
    assert inspected["precision"] == "f32" and inspected["metadata"]["sensor"] == ["FRONT_FACING_CAMERA"]
    assert [(a["index"], a["steering_angle"], a["speed"]) for a in inspected["metadata"]["action_space"]] == [
        (i, float(s), v) for i, (s, v) in enumerate(ACTIONS)]
    human = racer(aws, "inspect", archive)
    assert human.stdout == "" and "      11   +30.0 deg   1.00 m/s\n" in human.stderr

    out = tmp_path / "converted.tar.gz"
    converted = racer(aws, "convert", archive, "--out", str(out), "--json")
    assert converted.returncode == 0, converted.stderr
    with load_bundle(out, aws["cache"]) as bundle:
        input_name = json.loads(checked.stdout)["input"]["name"]
        assert bundle.kind == "openvino" and bundle.spec == dataclasses.replace(DEEPRACER_SPEC, input_name=input_name)
        policy = Policy(bundle, aws["cache"] / "compiled")
        got = np.stack([policy.infer(x.astype(np.float32)) for x in REFERENCE["inputs"]])
    want = REFERENCE[f"model_{checkpoint}"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


def test_predict_equals_tensorflow_on_three_models_and_pictures(aws):
    pictures = [str(p) for p in aws["pictures"]]
    for checkpoint in CHECKPOINTS:
        done = racer(aws, "predict", str(aws["archives"][checkpoint]), *pictures, "--json")
        assert done.returncode == 0 and done.stderr == "", done.stderr
        result = json.loads(done.stdout)
        assert list(result) == ["model", "predictions"] and result["model"] == f"model_{checkpoint}"
        want = REFERENCE[f"model_{checkpoint}"]
        for entry, picture, expected in zip(result["predictions"], pictures, want, strict=True):
            assert list(entry) == ["image", "output", "action", "steering_deg", "speed_mps"]
            assert entry["image"] == picture
            assert np.abs(np.array(entry["output"]) - expected).max() < 1e-5
            assert entry["action"] == int(expected.argmax())
            assert (entry["steering_deg"], entry["speed_mps"]) == ACTIONS[entry["action"]]


def test_area_preset_moves_the_probabilities_but_not_the_choice(aws):
    """The measurement behind the stock-car default (car/policy/preprocess.py DEEPRACER_SPEC)."""
    frames = [cv2.imread(str(p)) for p in aws["pictures"]]
    moved = []
    for checkpoint in CHECKPOINTS:
        with load_bundle(aws["archives"][checkpoint], aws["cache"]) as bundle:
            policy = Policy(bundle, aws["cache"] / "compiled")
            for bgr, stock in zip(frames, REFERENCE[f"model_{checkpoint}"], strict=True):
                area = policy.infer(Preprocessor(DEEPRACER_AREA_SPEC)(bgr))
                assert area.argmax() == stock.argmax()
                moved.append(float(np.abs(area - stock).max()))
    assert 0.01 < max(moved) < 0.05


def test_predict_area_preset_and_explain(aws, tmp_path):
    picture = aws["pictures"][0]
    explain = tmp_path / "explain"
    done = racer(aws, "predict", str(aws["archives"][48]), str(picture), "--preprocess", "area", "--explain",
                 str(explain), "--json")
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)["predictions"]
    stock = REFERENCE["model_48"][0]
    assert entry["action"] == int(stock.argmax()) and np.abs(np.array(entry["output"]) - stock).max() > 0.01
    assert entry["explain"] == str(explain / "dr-demo-1.explain.png")
    heat = cv2.imread(entry["explain"])
    original = cv2.imread(str(picture))
    assert heat.shape == original.shape
    # Blended colours everywhere, and not one uniform colour: some regions matter more than others.
    assert np.abs(heat.astype(int) - original.astype(int)).mean() > 10
    assert heat.reshape(-1, 3).std(axis=0).max() > 10


def test_the_car_stack_drives_the_simulator_with_each_model(aws):
    from sim2real.drive import run_laps
    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    for checkpoint in CHECKPOINTS:
        with load_bundle(aws["archives"][checkpoint], aws["cache"]) as bundle:
            sim = Simulator(Track.load("reinvent_base"))
            result = run_laps(sim, Policy(bundle, aws["cache"] / "compiled").model(), laps=1, lap_timeout_s=10.0)
        [lap] = result.laps
        assert lap.progress > 0.5, (checkpoint, lap)


def test_int8_of_a_real_model_passes_the_gate_and_says_so(aws, tmp_path):
    out = tmp_path / "int8"
    done = racer(aws, "convert", str(aws["archives"][48]), "--int8", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    gate = result["int8_gate"]
    assert result["precision"] == "int8" and gate["passed"] and gate["frames"] == 1000 and gate["agreement"] >= 0.99
    assert "INT8 chooses the f32 action on" in done.stderr
    assert json.loads((out / "racer.json").read_text())["model"]["int8_gate"] == gate
    assert json.loads(racer(aws, "inspect", str(out), "--json").stdout)["precision"] == "int8"
    predicted = json.loads(racer(aws, "predict", str(out), *map(str, aws["pictures"]), "--json").stdout)
    for entry, want in zip(predicted["predictions"], REFERENCE["model_48"], strict=True):
        assert abs(sum(entry["output"]) - 1) < 1e-3 and np.abs(np.array(entry["output"]) - want).max() < 0.1
