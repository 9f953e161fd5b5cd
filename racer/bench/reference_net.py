"""The DeepRacer reference network (SHALLOW: conv [32,8,4], [64,4,2], [64,3,1], dense 512) as ONNX.

Built directly with the ONNX helper API, so the benchmark runs the same graph under every runtime
without a training framework installed. The convolution and dense weights are fixed random; the
five-action head is fitted by ridge regression on those random features of simulator frames so
the network steers like the simulator's pure-pursuit expert. A head of random weights too left
80% of frames within 0.02 of a tie between two actions (a trained AWS model: 8.5%, this one: 0.1%),
and the INT8 gate's agreement figure on such a network measures ties, not quantization.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import openvino as ov

from car.policy.metadata import ModelMetadata, parse_metadata
from car.policy.preprocess import DEEPRACER_SPEC, Preprocessor, PreprocessSpec
from racer.model.quantize import posed_simulators
from sim2real.sim.expert import PurePursuitExpert

if TYPE_CHECKING:
    import onnx  # the bench extra; imported where a network is built

INPUT_SHAPE = (1, 1, 120, 160)
ACTIONS = 5
STEERING_DEG = (-30.0, -15.0, 0.0, 15.0, 30.0)
CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
DENSE = 512
HEAD_FRAMES = 2000
HEAD_SEED = 7  # frames of their own: the INT8 calibration, validation and gate use seeds 1-3
RIDGE = 0.1


def reference_spec() -> PreprocessSpec:
    """The stock-car DeepRacer preprocessing in the network's NCHW layout."""
    return dataclasses.replace(DEEPRACER_SPEC, layout="NCHW")


def reference_metadata() -> ModelMetadata:
    """Five discrete actions at 1 m/s, one per output."""
    return parse_metadata({"action_space": [{"steering_angle": s, "speed": 1.0} for s in STEERING_DEG]})


def fit_head(features: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Ridge regression of scaled, centred one-hot targets on the dense features: (DENSE, ACTIONS) float32."""
    targets = (np.eye(ACTIONS)[actions] - 1.0 / ACTIONS) * 8.0
    gram = features.T.astype(np.float64) @ features
    ridge = RIDGE * np.trace(gram) / len(gram)
    return np.linalg.solve(gram + ridge * np.eye(len(gram)), features.T @ targets).astype(np.float32)


def expert_frames(count: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Model inputs of simulator frames at random poses, and at each the action (index into
    STEERING_DEG) nearest the pure-pursuit expert's steering."""
    experts: dict[str, PurePursuitExpert] = {}
    inputs, actions = [], []
    for sim in posed_simulators(count, seed):
        inputs.append(Preprocessor(reference_spec())(sim.render()))
        if sim.track.name not in experts:
            experts[sim.track.name] = PurePursuitExpert(sim.track)
        state = sim.vehicle.state
        steering = experts[sim.track.name].act(state.x, state.y, state.yaw, 1.0)[0]  # normalised, + = left
        actions.append(int(np.argmin(np.abs(np.asarray(STEERING_DEG) / 30.0 - steering))))
    return inputs, np.asarray(actions)


def build_reference_onnx(path: Path, seed: int = 0, head_frames: int = HEAD_FRAMES) -> Path:
    """Write the reference network to `path`: input (1, 1, 120, 160) raw 0..255 grey, output the
    softmax over the five actions of `reference_metadata()`, whose head steers like the expert."""
    import onnx
    from onnx import numpy_helper

    model = _random_network(seed)
    inputs, actions = expert_frames(head_frames, HEAD_SEED)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info("fc_relu", onnx.TensorProto.FLOAT, [None, DENSE]))
    probe.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    core = ov.Core()
    trunk = core.compile_model(core.read_model(probe.SerializeToString(), b""), "CPU")
    batch = np.concatenate(inputs)
    features = np.concatenate([trunk({0: batch[i:i + 250]})["fc_relu"] for i in range(0, len(batch), 250)])
    head = fit_head(features, actions)
    for init in model.graph.initializer:
        if init.name == "head_w":
            init.CopyFrom(numpy_helper.from_array(head, "head_w"))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _random_network(seed: int) -> onnx.ModelProto:
    """The network with fixed random weights (He initialisation), head included."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(np.array(255.0, np.float32), "c255")]
    nodes = [helper.make_node("Div", ["input", "c255"], ["x0"])]
    x, channels, h, w = "x0", INPUT_SHAPE[1], INPUT_SHAPE[2], INPUT_SHAPE[3]
    for i, (out, k, s) in enumerate(CONVS):
        he = np.float32(np.sqrt(2.0 / (channels * k * k)))
        wgt = rng.standard_normal((out, channels, k, k)).astype(np.float32) * he
        inits += [numpy_helper.from_array(wgt, f"conv{i}_w"),
                  numpy_helper.from_array(np.zeros(out, np.float32), f"conv{i}_b")]
        nodes += [helper.make_node("Conv", [x, f"conv{i}_w", f"conv{i}_b"], [f"conv{i}"], kernel_shape=[k, k],
                                   strides=[s, s]),
                  helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"])]
        x, channels, h, w = f"relu{i}", out, (h - k) // s + 1, (w - k) // s + 1
    flat = channels * h * w
    for name, (n_in, n_out) in (("fc", (flat, DENSE)), ("head", (DENSE, ACTIONS))):
        wgt = rng.standard_normal((n_in, n_out)).astype(np.float32) * np.float32(np.sqrt(1.0 / n_in))
        inits += [numpy_helper.from_array(wgt, f"{name}_w"),
                  numpy_helper.from_array(np.zeros(n_out, np.float32), f"{name}_b")]
    nodes += [helper.make_node("Flatten", [x], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"]),
              helper.make_node("Relu", ["fc"], ["fc_relu"]),
              helper.make_node("Gemm", ["fc_relu", "head_w", "head_b"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["policy"], axis=1)]
    graph = helper.make_graph(nodes, "deepracer_shallow",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(INPUT_SHAPE))],
                              [helper.make_tensor_value_info("policy", TensorProto.FLOAT, [1, ACTIONS])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
