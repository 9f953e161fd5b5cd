"""The modular model: free segmentation labels, a tiny perception + DAgger run exported as one
bundle whose policy sees the frame only through the segmentation, run by the car with OpenVINO,
its uncertainty on /diagnostics and the console's /api/status."""
import json
import shutil

import numpy as np
import onnx
import openvino as ov
import openvino.opset13 as ops
import pytest
import torch

from browser.harness import start_car
from car.messages import Header, Image, Time
from car.policy.bundle import load_bundle, save_bundle
from car.policy.bundle_layout import BundleError
from car.policy.core import PolicyCore
from car.policy.inference import Policy
from car.policy.preprocess import frame_features
from car.policy.shift import excess
from model_factory import CONTINUOUS, metadata
from racer.laptop.api import Status
from sim2real.checkpoint import load_checkpoint, save_checkpoint
from sim2real.export import export_bundle
from sim2real.gap import VARIANTS, variant_config
from sim2real.imitation import ImitationConfig, sample_frames
from sim2real.modular import ModularConfig, ModularExport, ModularNet, label_size, train_modular
from sim2real.sim.labels import CLASSES, LabelCamera
from sim2real.sim.render import CameraParams
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator
from sim2real.training_defaults import ACTION_SPACE, SPEC


@pytest.mark.parametrize("camera", [CameraParams(), CameraParams(hfov_deg=120.0, distortion=(-0.2,), roll_deg=3.0)],
                         ids=["aws", "wide-distorted-rolled"])
def test_labels_lie_on_the_frame(camera):
    sim = Simulator(Track.load("reinvent_base"), camera=camera)
    width, height, crop = label_size(SPEC)
    labels = LabelCamera(sim.track, width, height, crop)
    road, line, background = [], [], []
    for i in range(6):
        sim.reset(start_index=i * 23, offset=0.15 * (i % 3 - 1))
        # the frame as the car's preprocessing sees it, area-averaged down to the label grid
        grey = frame_features(SPEC, sim.render())[..., 0]
        grey = grey.reshape(height - crop, 2, width, 2).mean(axis=(1, 3))
        st = sim.vehicle.state
        classes = labels.render(sim.camera, sim.scene, st.x, st.y, st.yaw)
        assert classes.shape == (height - crop, width) and classes.dtype == np.uint8
        road.append(grey[classes == CLASSES.index("road")])
        line.append(grey[classes == CLASSES.index("line")])
        background.append(grey[classes == CLASSES.index("background")])
    road, line, background = (np.concatenate(v) for v in (road, line, background))
    # the AWS world: road dark blue-grey (grey 0.22), border paint white (0.83), floor green (0.54), walls dark
    assert min(len(road), len(line), len(background)) > 100
    assert np.median(road) < 0.3 and np.median(line) > np.median(road) + 0.25
    assert np.mean(np.abs(road - 0.22) < 0.05) > 0.9


@pytest.fixture(scope="module")
def modular(tmp_path_factory):
    """A tiny modular training (perception and DAgger on reinvent_base), exported through the gate."""
    cfg = ModularConfig(tracks=("reinvent_base",), iterations=2, steps_per_iteration=200, episode_steps=200, epochs=1,
                        perception_steps=300, perception_epochs=2, randomization="default", augmentation="light")
    net, history, perception = train_modular(cfg, show_progress=False)
    frames = sample_frames(SPEC, cfg.tracks, 1000, seed=5)
    out = tmp_path_factory.mktemp("modular") / "bundle"
    bundle, report = export_bundle(net, SPEC, ACTION_SPACE, frames, out, {"trainer": "modular"})
    bundle.close()
    return {"net": net, "history": history, "perception": perception, "bundle": out, "report": report,
            "frames": frames}


def test_tiny_modular_training_learns_both_parts(modular):
    assert [h["samples"] for h in modular["history"].iterations] == [200, 400]
    assert all(np.isfinite(h["loss"]) for h in modular["history"].iterations)
    epochs = modular["perception"]
    assert len(epochs) == 2 and epochs[1]["loss"] < epochs[0]["loss"]
    assert epochs[1]["pixel_accuracy"] > 0.6
    # torch and OpenVINO agree on the action and on the uncertainty
    assert modular["report"].frames == 1000 and modular["report"].max_abs_error < 1e-4


def test_the_car_runs_the_bundle_with_openvino_and_reads_its_uncertainty(modular):
    bundle = load_bundle(modular["bundle"])
    assert bundle.spec == SPEC and (bundle.signature.input_shape, bundle.signature.output_size) == ((1, 2, 48, 80), 2)
    policy = Policy(bundle)
    model = policy.model()
    assert model.uncertainty is not None and model.uncertainty() is None  # nothing run yet
    x = modular["frames"][:8].transpose(0, 3, 1, 2)
    with torch.no_grad():
        actions, uncertainty = ModularExport(modular["net"])(torch.from_numpy(np.ascontiguousarray(x)))
    for i in range(len(x)):
        out = policy.infer(np.ascontiguousarray(x[i:i + 1]))
        assert out.shape == (2,) and out == pytest.approx(actions[i].numpy(), abs=1e-4)
        assert 0.0 <= model.uncertainty() <= 1.0
        assert model.uncertainty() == pytest.approx(float(uncertainty[i, 0]), abs=1e-4)
    bundle.close()


def _ancestors(graph: onnx.GraphProto, tensor: str, cut: set[str]) -> set[str]:
    """Every tensor `tensor` is computed from, not looking past the tensors in `cut`."""
    producer = {out: node for node in graph.node for out in node.output}
    seen, todo = set(), [tensor]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in producer and name not in cut:
            todo.extend(producer[name].input)
    return seen


def test_the_policy_sees_the_frame_only_through_the_segmentation(modular):
    graph = onnx.load(str(modular["bundle"] / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["action", "uncertainty"]
    softmax = [node for node in graph.node if node.op_type == "Softmax"]
    assert len(softmax) == 1  # the perception's class probabilities: the abstraction
    cut = set(softmax[0].output)
    for output in ("action", "uncertainty"):
        assert "image" in _ancestors(graph, output, set())
        # with the segmentation taken as given, neither output reaches the camera input
        assert "image" not in _ancestors(graph, output, cut), output


def test_the_policy_node_and_the_console_show_the_uncertainty(modular, tmp_path):
    # the policy node's core on a camera frame: the model's uncertainty in its diagnostics
    bundle = load_bundle(modular["bundle"])
    assert bundle.signature.has_uncertainty  # what racer model convert --caution checks for a warning
    policy = Policy(bundle)
    core = PolicyCore.for_model(policy.model(), 0.5, 4.0)
    sim = Simulator(Track.load("reinvent_base"))
    assert core.on_image(Image(Header(Time.from_seconds(1.0), "camera"), sim.render())).error is None
    values = {kv.key: kv.value for kv in core.diagnostics().values}
    assert float(values["uncertainty"]) == pytest.approx(policy.uncertainty(), abs=1e-4)
    # the car's warning score, which racer eval's AUROC reads: the shift's excess plus the model's own uncertainty
    score = excess(core.domain_shift) + policy.uncertainty()
    assert float(values["warning"]) == pytest.approx(score, abs=1e-4)  # one frame's mean
    assert PolicyCore.monitor_key(policy.model()) == "domain_shift_excess+uncertainty"
    assert core.monitor_score() == pytest.approx(score)
    bundle.close()
    # the whole car: /diagnostics from the policy node reaches the console's /api/status over HTTP. The
    # bundle asks for caution above a warning its perception's entropy always exceeds, so the car says it slows.
    careful = tmp_path / "careful"
    shutil.copytree(modular["bundle"], careful)
    racer = json.loads((careful / "racer.json").read_text())
    (careful / "racer.json").write_text(json.dumps({**racer, "caution": {"warning": 1e-6, "speed_scale": 0.5}}))
    car = start_car(tmp_path, careful)
    try:
        status = car.wait_for(lambda: (s := car.status())["warning"] is not None and s, what="warning")
        assert 0.0 <= status["uncertainty"] <= 1.0 and status["domain_shift"] is not None
        assert 0.0 <= status["warning"] <= 1.0  # the uncertainty's 2 s mean
        assert status["warning"] > 1e-6 and status["caution"] == "slowing"
        assert Status.from_json(status).caution == "slowing"  # what `racer status` prints
    finally:
        car.stop()


def test_a_second_output_must_be_one_uncertainty_value(tmp_path):
    spec = SPEC
    meta = metadata(CONTINUOUS)

    def model(extra: list[tuple[str, int]]) -> ov.Model:
        x = ops.parameter(list(spec.input_shape()), np.float32, name="image")
        mean = ops.reduce_mean(x, ops.constant(np.array([1, 2, 3], dtype=np.int64)), keep_dims=False)
        outs = []
        for name, size in [("action", 2)] + extra:
            out = ops.multiply(ops.reshape(mean, ops.constant(np.array([1, 1])), False),
                               ops.constant(np.ones((1, size), np.float32)))
            out.output(0).set_names({name})
            outs.append(out)
        return ov.Model(outs, [x], "two-headed")

    saved = save_bundle(tmp_path / "ok", model([("uncertainty", 1)]), meta, spec)
    policy = Policy(saved)
    assert policy.has_uncertainty
    policy.infer(np.full(spec.input_shape(), 0.25, np.float32))
    assert policy.uncertainty() == pytest.approx(0.25)
    policy.infer(np.full(spec.input_shape(), np.nan, np.float32))
    assert policy.uncertainty() is None  # not a number is no score: nothing for the console to show
    for name, extra in (("other", [("steering_confidence", 1)]), ("wide", [("uncertainty", 3)]),
                        ("three", [("uncertainty", 1), ("more", 1)])):
        with pytest.raises(BundleError, match=r"^model has \d outputs; a policy has one \(and at most one more: "
                                              r"'uncertainty', one value\)$"):
            save_bundle(tmp_path / name, model(extra), meta, spec)
        assert not (tmp_path / name).exists()  # nothing half-written


def test_a_modular_checkpoint_loads_as_the_modular_network(modular, tmp_path):
    cfg = ModularConfig(tracks=("reinvent_base",))
    path = save_checkpoint(tmp_path / "policy.pt", modular["net"], SPEC, ACTION_SPACE, cfg, [], trainer="modular")
    net, spec, _, data = load_checkpoint(path)
    assert isinstance(net, ModularNet) and spec == SPEC and data["config"]["perception_steps"] == cfg.perception_steps
    x = torch.from_numpy(np.ascontiguousarray(modular["frames"][:4].transpose(0, 3, 1, 2)))
    with torch.no_grad():
        assert torch.equal(net(x), modular["net"](x))


def test_gap_variants_train_either_model_with_the_same_presets():
    base = ModularConfig(tracks=("reinvent_base",), iterations=3, perception_steps=123)
    modular = variant_config(base, "modular-both", 4)
    end_to_end = variant_config(base, "both", 4)
    assert type(modular) is ModularConfig and type(end_to_end) is ImitationConfig
    for cfg in (modular, end_to_end):
        assert (cfg.seed, cfg.iterations, cfg.randomization, cfg.augmentation) == (4, 3, "default", "default")
    assert modular.perception_steps == 123
    assert variant_config(ImitationConfig(), "modular-none", 0).perception_steps == ModularConfig.perception_steps
    assert set(VARIANTS) == {prefix + name for prefix in ("", "modular-")
                             for name in ("none", "randomization", "augmentation", "both")}
