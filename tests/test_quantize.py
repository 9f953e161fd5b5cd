"""INT8: the equivalence gate's numbers, the simulator frames it uses, and refusals that write nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from car.policy.bundle import save_bundle
from car.policy.metadata import parse_metadata
from car.policy.preprocess import DEEPRACER_SPEC
from model_factory import PPO_TAR, SAC_TAR, metadata
from racer.model.quantize import GATE_FRAMES, equivalence_gate, simulator_inputs

DISCRETE = parse_metadata({"action_space": [{"steering_angle": s, "speed": 1} for s in (-30, 0, 30)]})
SPACE = {"steering_angle": {"low": -30, "high": 30}, "speed": {"low": 1, "high": 2}}


def _replay(outputs: np.ndarray):
    """A 'policy' that returns the next row of `outputs` on each call."""
    rows = iter(outputs)
    return lambda x: next(rows)


@pytest.mark.parametrize("flipped, agreement, passed", [(10, 0.99, True), (11, 0.989, False), (0, 1.0, True)])
def test_discrete_gate_counts_changed_actions(flipped, agreement, passed):
    f32 = np.tile(np.array([0.2, 0.5, 0.3], np.float32), (GATE_FRAMES, 1))
    int8 = f32.copy()
    int8[:flipped] = [0.5, 0.2, 0.3]
    report = equivalence_gate(_replay(f32), _replay(int8), [None] * GATE_FRAMES, DISCRETE)
    assert (report.frames, report.agreement, report.passed) == (GATE_FRAMES, agreement, passed)
    assert report.to_json()["bound"] == {"min_agreement": 0.99}


CONTINUOUS_CASES = [
    ("ppo steering moves", "clipped_ppo", [0.2, 0.5], [0.06, 0.0], 0.06, False),
    ("ppo beyond the clip", "clipped_ppo", [0.2, 1.5], [0.0, 0.5], 0.0, True),
    ("sac through tanh", "sac", [0.2, 1.5], [0.0, 0.3], float(np.tanh(1.8) - np.tanh(1.5)), True),
]


@pytest.mark.parametrize("algorithm, out, shift, max_error, passed", [c[1:] for c in CONTINUOUS_CASES],
                         ids=[c[0] for c in CONTINUOUS_CASES])
def test_continuous_gate_bounds_the_decoded_change(algorithm, out, shift, max_error, passed):
    meta = parse_metadata({"action_space": SPACE, "action_space_type": "continuous", "training_algorithm": algorithm})
    f32 = np.tile(np.array(out, np.float32), (100, 1))
    int8 = f32 + np.array(shift, np.float32)
    report = equivalence_gate(_replay(f32), _replay(int8), [None] * 100, meta)
    assert report.max_error == pytest.approx(max_error, abs=1e-6)
    assert report.p99_error == pytest.approx(max_error, abs=1e-6)
    assert (report.passed, report.agreement) == (passed, None)


def test_simulator_inputs_follow_the_spec_and_the_seed():
    a = simulator_inputs(DEEPRACER_SPEC, 20, seed=1)
    assert len(a) == 20 and all(x.shape == (1, 120, 160, 1) and x.dtype == np.float32 for x in a)
    assert all(np.array_equal(x, x.round()) and x.min() >= 0 and x.max() <= 255 for x in a)  # 8-bit grey
    assert all(np.array_equal(x, y) for x, y in zip(a, simulator_inputs(DEEPRACER_SPEC, 20, seed=1), strict=True))
    other = simulator_inputs(DEEPRACER_SPEC, 20, seed=2)
    assert not any(np.array_equal(x, y) for x in a for y in other)
    assert len({x.tobytes() for x in a}) == 20


def _convert(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "RACER_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "racer.cli", "model", "convert", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_a_weightless_model_is_written_only_as_int8_or_refused_with_nothing_written(tmp_path):
    """softmax(mean(image) + b): NNCF may quantize only the input (a FakeQuantize) or keep it all f32
    (which one depends on the calibration frames); either way the outcome is whole."""
    x = ops.parameter([1, 120, 160, 1], np.float32, name="image")
    mean = ops.reduce_mean(x, ops.constant(np.array([1, 2, 3], dtype=np.int64)), keep_dims=False)
    logits = ops.add(ops.reshape(mean, ops.constant(np.array([1, 1], dtype=np.int64)), special_zero=False),
                     ops.constant(np.linspace(0.5, -0.5, 5, dtype=np.float32)[None]))
    out = ops.softmax(logits, 1)
    out.output(0).set_names({"policy"})
    save_bundle(tmp_path / "tiny", ov.Model([out], [x], "weightless"), metadata(), DEEPRACER_SPEC,
                cache_dir=tmp_path / "cache").close()
    written = tmp_path / "out.tar.gz"
    done = _convert(str(tmp_path / "tiny"), "--int8", "--out", str(written), "--json", cache=tmp_path / "cache")
    result = json.loads(done.stdout)
    if done.returncode == 0:
        assert result["precision"] == "int8" and result["int8_gate"]["passed"] and written.is_file()
    else:
        assert result == {"ok": False,
                          "reason": "NNCF kept every layer in f32 to hold the decisions; no INT8 model written"}
        assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_int8_into_a_non_empty_directory_fails_before_quantizing(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    done = _convert(str(PPO_TAR), "--int8", "--out", str(tmp_path / "out"), "--json", cache=tmp_path / "cache")
    assert done.returncode == 1 and "racer model convert: rendering" not in done.stderr
    assert json.loads(done.stdout)["reason"] == f"{tmp_path / 'out'} exists and is not an empty directory"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep"]


def test_continuous_int8_reports_its_error_bound_and_writes_only_when_it_holds(tmp_path):
    out = tmp_path / "sac-int8"
    done = _convert(str(SAC_TAR), "--int8", "--out", str(out), "--json", cache=tmp_path / "cache")
    result = json.loads(done.stdout)
    if done.returncode == 0:
        gate = result["int8_gate"]
        assert (gate["frames"], gate["agreement"], gate["bound"]) == (1000, None, {"max_error": 0.05})
        assert gate["passed"] and 0 < gate["p99_error"] <= gate["max_error"] <= 0.05
        assert result["precision"] == "int8"
        assert json.loads((out / "racer.json").read_text())["model"]["int8_gate"] == gate
        assert f"INT8 moves steering/speed by at most {gate['max_error']:.4f}" in done.stderr
    else:
        assert result["reason"].startswith("INT8 moves steering/speed by at most ")
        assert result["reason"].endswith("fails the equivalence gate; no INT8 model written") and not out.exists()
