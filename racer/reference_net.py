"""The DeepRacer reference network (SHALLOW: conv [32,8,4], [64,4,2], [64,3,1], dense 512) as ONNX.

Built directly with the ONNX helper API and fixed random weights, so the benchmark runs the same
graph under every runtime without a training framework installed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from car.metadata import ModelMetadata, parse_metadata
from car.preprocess import DEEPRACER_SPEC, PreprocessSpec

INPUT_SHAPE = (1, 1, 120, 160)
ACTIONS = 5
STEERING_DEG = (-30.0, -15.0, 0.0, 15.0, 30.0)
CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
DENSE = 512


def reference_spec() -> PreprocessSpec:
    """The stock-car DeepRacer preprocessing in the network's NCHW layout."""
    return dataclasses.replace(DEEPRACER_SPEC, layout="NCHW")


def reference_metadata() -> ModelMetadata:
    """Five discrete actions at 1 m/s, one per output."""
    return parse_metadata({"action_space": [{"steering_angle": s, "speed": 1.0} for s in STEERING_DEG]})


def build_reference_onnx(path: Path, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(np.array(255.0, np.float32), "c255")]
    nodes = [helper.make_node("Div", ["input", "c255"], ["x0"])]
    x, channels, h, w = "x0", INPUT_SHAPE[1], INPUT_SHAPE[2], INPUT_SHAPE[3]
    for i, (out, k, s) in enumerate(CONVS):
        wgt = rng.standard_normal((out, channels, k, k)).astype(np.float32) * np.float32(np.sqrt(2.0 / (channels * k * k)))
        inits += [numpy_helper.from_array(wgt, f"conv{i}_w"), numpy_helper.from_array(np.zeros(out, np.float32), f"conv{i}_b")]
        nodes += [helper.make_node("Conv", [x, f"conv{i}_w", f"conv{i}_b"], [f"conv{i}"], kernel_shape=[k, k], strides=[s, s]),
                  helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"])]
        x, channels, h, w = f"relu{i}", out, (h - k) // s + 1, (w - k) // s + 1
    flat = channels * h * w
    for name, (n_in, n_out) in (("fc", (flat, DENSE)), ("head", (DENSE, ACTIONS))):
        inits += [numpy_helper.from_array(rng.standard_normal((n_in, n_out)).astype(np.float32) * np.float32(np.sqrt(1.0 / n_in)), f"{name}_w"),
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
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
