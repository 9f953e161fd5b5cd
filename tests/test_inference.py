"""OpenVINO inference: the converted DeepRacer graphs give TensorFlow's numbers; the runtime config holds."""
from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from car.policy.bundle import BundleError, load_bundle, save_bundle
from car.policy.decode import ActionDecoder
from car.policy.inference import CPU_CONFIG, Policy, check_runnable
from car.policy.preprocess import DEEPRACER_SPEC
from model_factory import MODELS, PPO_TAR, SAC_TAR, expected_output, metadata, nan_model, ov_model

TF = np.load(MODELS / "tf_expected.npz")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _outputs(archive, cache) -> np.ndarray:
    with load_bundle(archive, cache) as bundle:
        policy = Policy(bundle, cache / "compiled")
        return np.stack([policy.infer(x.astype(np.float32)) for x in TF["inputs"]])


def test_discrete_ppo_matches_tensorflow(cache):
    got = _outputs(PPO_TAR, cache)
    assert got.shape == TF["discrete_ppo"].shape == (3, 5)
    assert np.abs(got - TF["discrete_ppo"]).max() < 1e-4
    assert list(got.argmax(axis=1)) == list(TF["discrete_ppo"].argmax(axis=1))
    assert len(set(got.argmax(axis=1))) > 1


def test_continuous_sac_matches_tensorflow_and_decodes(cache):
    got = _outputs(SAC_TAR, cache)
    assert got.shape == TF["continuous_sac"].shape == (3, 2)
    assert np.abs(got - TF["continuous_sac"]).max() < 1e-4
    with load_bundle(SAC_TAR, cache) as bundle:
        decode = ActionDecoder(bundle.metadata)
    for ours, theirs in zip(got, TF["continuous_sac"], strict=True):
        assert decode(ours).steering_deg == pytest.approx(30 * np.tanh(theirs[0]), abs=1e-3)


def test_precision_is_pinned_to_f32_and_overrides_apply(tmp_path, cache):
    with save_bundle(tmp_path / "b", ov_model(), metadata(), DEEPRACER_SPEC, cache_dir=cache) as bundle:
        policy = Policy(bundle, cache / "compiled", config={"INFERENCE_NUM_THREADS": "1"})
        assert CPU_CONFIG["INFERENCE_PRECISION_HINT"] == "f32"
        assert policy.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
        assert policy.compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert str(policy.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
        assert policy.compiled.get_property("NUM_STREAMS") == 1
        assert policy.config["CACHE_DIR"] == str(cache / "compiled")
        assert list((cache / "compiled").iterdir())


def test_infer_returns_owned_copies_and_checks_shape(tmp_path, cache):
    with save_bundle(tmp_path / "b", ov_model(), metadata(), DEEPRACER_SPEC, cache_dir=cache) as bundle:
        policy = Policy(bundle, cache / "compiled")
        dark = np.zeros((1, 120, 160, 1), np.float32)
        bright = np.full((1, 120, 160, 1), 255, np.uint8)
        first = policy.infer(dark)
        second = policy.infer(bright)
        np.testing.assert_allclose(first, expected_output(dark, 5), atol=1e-6)
        np.testing.assert_allclose(second, expected_output(bright, 5), atol=1e-6)
        assert first.dtype == np.float32 and not np.allclose(first, second)
        with pytest.raises(ValueError, match=r"policy input must be \(1, 120, 160, 1\), got \(120, 160\)"):
            policy.infer(np.zeros((120, 160), np.float32))


def test_check_runnable_runs_a_blank_frame(tmp_path, cache):
    with save_bundle(tmp_path / "ok", ov_model(), metadata(), DEEPRACER_SPEC, cache_dir=cache) as bundle:
        assert check_runnable(bundle, cache / "compiled") is None
    with save_bundle(tmp_path / "nan", nan_model(), metadata(), DEEPRACER_SPEC, cache_dir=cache) as bundle:
        assert check_runnable(bundle, cache / "compiled") == "model output is not finite on a blank frame"


def test_policy_refuses_an_unrunnable_bundle(tmp_path, cache):
    meta = {**metadata(), "sensor": ["FRONT_FACING_CAMERA", "LIDAR"]}
    with save_bundle(tmp_path / "b", ov_model(), meta, DEEPRACER_SPEC, cache_dir=cache) as bundle:
        with pytest.raises(BundleError, match="needs LIDAR"):
            Policy(bundle, cache / "compiled")
