"""A tiny DAgger run, exported through the equivalence gate, loads and drives as a car bundle."""
import copy
import json

import numpy as np
import pytest
import torch

from car.policy.bundle import load_bundle
from car.policy.decode import ActionDecoder
from car.policy.inference import Policy
from car.policy.metadata import parse_metadata
from sim2real.export import ExportGateError, check_equivalence, export_bundle, with_uncertainty
from sim2real.imitation import ImitationConfig, expert_targets, sample_frames, train_imitation
from sim2real.network import MirrorExport
from sim2real.sim.vehicle import VehicleParams
from sim2real.training_defaults import ACTION_SPACE, SPEC


def test_expert_targets_decode_back_to_the_expert_command():
    meta = parse_metadata(ACTION_SPACE)
    decoder = ActionDecoder(meta)
    for steering, throttle in [(0.0, 0.3), (0.5, 0.45), (-1.0, 0.25), (0.2, 0.5)]:
        d = decoder(expert_targets(meta, steering, throttle, 0.5))
        assert d.steering == pytest.approx(steering, abs=1e-6)
        assert d.throttle * 0.5 == pytest.approx(throttle, abs=1e-6)


def test_the_experts_speeds_at_full_max_speed_are_actions():
    # At max-speed 1.0 the expert drives 1.3-2 m/s (Tokyo's hairpin is its slowest corner); each
    # speed must be an action of its own, not clipped to the slowest one (with speeds 0.5..2.0 m/s
    # the slowest action was 1.98 m/s of car speed, so a model could not brake for a corner).
    meta = parse_metadata(ACTION_SPACE)
    decoder = ActionDecoder(meta)
    car = VehicleParams()
    speed_units = []
    for speed in (1.1, 1.5, 2.0):
        target = expert_targets(meta, 0.0, car.throttle_for_speed(speed), 1.0)
        assert -1.0 < target[1] < 1.0, speed
        assert car.target_speed(decoder(target).throttle) == pytest.approx(speed, abs=1e-6)
        speed_units.append(target[1])
    assert speed_units == sorted(speed_units)


def test_tiny_training_exports_a_bundle_that_matches_torch(tmp_path):
    cfg = ImitationConfig(tracks=("reinvent_base",), iterations=2, steps_per_iteration=300, epochs=1, seed=3)
    net, meta, history, data = train_imitation(cfg, show_progress=False)
    assert [h["samples"] for h in history.iterations] == [300, 600]
    assert all(np.isfinite(h["loss"]) for h in history.iterations)
    frames = sample_frames(SPEC, cfg.tracks, 1000, seed=4)
    assert frames.shape == (1000, SPEC.out_height, SPEC.width, SPEC.channels)
    bundle, report = export_bundle(net, SPEC, ACTION_SPACE, frames, tmp_path / "bundle", {"test": True})
    assert report.frames == 1000 and report.max_abs_error < 1e-4
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == [
        "model.bin", "model.onnx", "model.xml", "model_metadata.json", "racer.json"]
    racer_json = json.loads((tmp_path / "bundle" / "racer.json").read_text())
    assert racer_json["preprocess"] == SPEC.to_json()
    assert 0.0 < racer_json["stats"]["mean"] < 1.0 and racer_json["stats"]["frames"] == 1000
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.spec == SPEC and not loaded.metadata.discrete
    out = Policy(loaded).infer(frames[:1].transpose(0, 3, 1, 2).copy())
    assert out.shape == (2,) and np.all(np.isfinite(out))


def test_export_refuses_too_few_frames_and_an_occupied_directory(tmp_path):
    cfg = ImitationConfig(tracks=("reinvent_base",), iterations=1, steps_per_iteration=50, epochs=1)
    net, *_ = train_imitation(cfg, show_progress=False)
    with pytest.raises(ValueError, match="at least 1,000 frames"):
        export_bundle(net, SPEC, ACTION_SPACE, np.zeros((10, 48, 80, 2), np.float32), tmp_path / "b")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty directory"):
        export_bundle(net, SPEC, ACTION_SPACE, np.zeros((1000, 48, 80, 2), np.float32), tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no staging left behind


def test_gate_catches_a_model_that_differs_from_torch(tmp_path):
    cfg = ImitationConfig(tracks=("reinvent_base",), iterations=1, steps_per_iteration=50, epochs=1)
    net, *_ = train_imitation(cfg, show_progress=False)
    frames = sample_frames(SPEC, cfg.tracks, 1000, seed=1)
    bundle, _ = export_bundle(net, SPEC, ACTION_SPACE, frames, tmp_path / "b")
    with torch.no_grad():
        net.head[-1].bias += 0.01  # torch now disagrees with the exported model
    report = check_equivalence(net, Policy(bundle), SPEC, bundle.metadata, frames[:50])
    assert report.max_abs_error == pytest.approx(0.01, rel=1e-3)


@pytest.fixture(scope="module")
def mirror_trained():
    """A tiny DAgger network trained on mirrored frames, steering biased left on every frame (a mirror
    image should have steered right), and 1,000 frames for the export gate."""
    cfg = ImitationConfig(tracks=("reinvent_base",), iterations=1, steps_per_iteration=200, epochs=1, seed=5)
    net, meta, *_ = train_imitation(cfg, show_progress=False)
    with torch.no_grad():
        net.head[-1].bias[0] += 0.5
    return net, meta, sample_frames(SPEC, cfg.tracks, 1000, seed=6)


def views(frames: np.ndarray, *plain: Policy):
    """Each frame as the batch the car feeds, and each plain bundle's action on it and on its mirror image."""
    for x in frames.transpose(0, 3, 1, 2):
        x = np.ascontiguousarray(x[None])
        mirror = np.ascontiguousarray(x[..., ::-1])
        yield x, [p.infer(x) for p in plain], [p.infer(mirror) for p in plain]


def test_a_mirror_trained_bundle_reports_how_far_its_steering_breaks_the_mirror(mirror_trained, tmp_path):
    # The car's uncertainty for an end-to-end model trained on mirrored frames: the bundle's own action
    # output on a frame and on its mirror image, steering clipped as the car decodes it, |s + s'| / 2.
    net, meta, frames = mirror_trained
    plain, _ = export_bundle(net, SPEC, ACTION_SPACE, frames, tmp_path / "plain")
    mirrored, report = export_bundle(with_uncertainty(net, meta, {"flip": True}), SPEC, ACTION_SPACE, frames,
                                     tmp_path / "mirrored")
    assert report.max_abs_error < 1e-4
    reference, policy = Policy(plain), Policy(mirrored)
    assert not reference.has_uncertainty and policy.has_uncertainty
    values = []
    for x, (action,), (mirror_action,) in views(frames[:40], reference):
        np.testing.assert_allclose(policy.infer(x), action, atol=1e-5)
        steering = np.clip(action[0], -1, 1) + np.clip(mirror_action[0], -1, 1)
        assert policy.uncertainty() == pytest.approx(abs(steering) / 2, abs=1e-5)
        values.append(policy.uncertainty())
    assert 0.0 <= min(values) and max(values) <= 1.0 and np.mean(values) > 0.2
    assert with_uncertainty(net, meta, {"flip": False}) is net
    assert with_uncertainty(net, parse_metadata({**ACTION_SPACE, "action_space": [
        {"steering_angle": 0, "speed": 1}], "action_space_type": "discrete"}), {"flip": True}) is net


def test_an_ensemble_bundle_drives_its_members_mean_and_reports_their_disagreement(mirror_trained, tmp_path):
    # Two members that differ only in a steering bias: the car drives their mean action, and the
    # uncertainty is the mean absolute deviation of the four steering views (each member on the frame,
    # and negated on its mirror image) from their mean, all from the plain bundles' own outputs.
    first, _, frames = mirror_trained
    second = copy.deepcopy(first)
    with torch.no_grad():
        second.head[-1].bias[0] -= 0.8
    plain = [Policy(export_bundle(net, SPEC, ACTION_SPACE, frames, tmp_path / name)[0])
             for net, name in ((first, "first"), (second, "second"))]
    ensemble, report = export_bundle(MirrorExport(first, second), SPEC, ACTION_SPACE, frames, tmp_path / "ensemble")
    assert report.max_abs_error < 1e-4
    policy = Policy(ensemble)
    values = []
    for x, actions, mirror_actions in views(frames[:40], *plain):
        np.testing.assert_allclose(policy.infer(x), np.mean(actions, axis=0), atol=1e-5)
        steering = np.clip([a[0] for a in actions] + [-m[0] for m in mirror_actions], -1, 1)
        assert policy.uncertainty() == pytest.approx(np.abs(steering - steering.mean()).mean(), abs=1e-5)
        values.append(policy.uncertainty())
    assert 0.3 < np.mean(values) <= 1.0  # 0.8 apart: at least 0.4 wherever no view is clipped
    with pytest.raises(ValueError, match="at least one network"):
        MirrorExport()


def test_a_steering_scale_multiplies_the_driven_steering_and_nothing_else(mirror_trained, tmp_path):
    # The bundle's own outputs against the same ensemble exported without a scale: the steering it
    # outputs is 4 times as large, past full lock (which the car's decoder clips, as it clips any
    # action; the graph itself must not), and its speed and its uncertainty are unchanged.
    first, meta, frames = mirror_trained
    second = copy.deepcopy(first)
    with torch.no_grad():
        second.head[-1].bias[0] -= 0.3
    plain = Policy(export_bundle(MirrorExport(first, second), SPEC, ACTION_SPACE, frames, tmp_path / "plain")[0])
    scaled, report = export_bundle(MirrorExport(first, second, steering_scale=4.0), SPEC, ACTION_SPACE, frames,
                                   tmp_path / "scaled")
    assert report.max_abs_error < 1e-4
    policy, decoder = Policy(scaled), ActionDecoder(meta)
    raw = []
    for x, *_ in views(frames[:40]):
        action, base = policy.infer(x).copy(), plain.infer(x).copy()
        np.testing.assert_allclose(action, [4.0 * base[0], base[1]], atol=1e-5)
        assert policy.uncertainty() == pytest.approx(plain.uncertainty(), abs=1e-6)
        assert decoder(action).steering == 1.0
        raw.append(action[0])
    assert min(raw) > 1.05  # the tiny network steers left by about 0.27 on every frame
    for scale in (0.0, 0.2, 4.5, float("nan"), float("inf"), -1.5):
        with pytest.raises(ValueError, match=f"the steering scale must be from 0.25 to 4, got {scale}"):
            MirrorExport(first, steering_scale=scale)


class NotANumber(torch.nn.Module):
    """A network whose every output is NaN, in torch and in OpenVINO alike."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * float("nan")


def test_the_gate_refuses_a_graph_that_outputs_nan(mirror_trained, tmp_path):
    net, _, frames = mirror_trained
    with pytest.raises(ExportGateError, match="the exported graph gives NaN on some of 1000 frames"):
        export_bundle(NotANumber(net), SPEC, ACTION_SPACE, frames, tmp_path / "nan")
    assert not (tmp_path / "nan").exists()
