"""Tiny policies and real tar archives for the bundle, inference and CLI tests.

The tiny models compute softmax/identity of (mean(input) * W + b), so their outputs are known in
closed form and any input shape or output count can be built in milliseconds.
"""
from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import openvino.opset13 as ops
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "tests" / "fixtures" / "models"
# Real DeepRacer data carried by the repo (tests/fixtures/deepracer/PROVENANCE.md).
DEEPRACER_FIXTURES = REPO / "tests" / "fixtures" / "deepracer"
PPO_TAR = MODELS / "deepracer_discrete_ppo.tar.gz"
SAC_TAR = MODELS / "deepracer_continuous_sac.tar.gz"
METADATA_DIR = DEEPRACER_FIXTURES / "model_metadata"
FRAMES_DIR = DEEPRACER_FIXTURES / "images" / "sim_160x120_episode"
DISCRETE = "drfc_default_discrete_ppo_v5.json"
CONTINUOUS = "drfc_default_continuous_sac_v4.json"


def metadata(name: str = DISCRETE) -> dict:
    return json.loads((METADATA_DIR / name).read_text())


def weights(outputs: int) -> tuple[np.ndarray, np.ndarray]:
    w = np.linspace(-1.0, 1.0, outputs, dtype=np.float32) / 100.0
    b = np.linspace(0.5, -0.5, outputs, dtype=np.float32)
    return w, b


def expected_output(x: np.ndarray, outputs: int, softmax: bool = True) -> np.ndarray:
    w, b = weights(outputs)
    z = x.astype(np.float64).mean() * w + b
    return np.exp(z) / np.exp(z).sum() if softmax else z


def ov_model(shape: tuple[int, ...] = (1, 120, 160, 1), outputs: int = 5, softmax: bool = True) -> ov.Model:
    x = ops.parameter(list(shape), np.float32, name="image")
    flat = ops.reshape(x, ops.constant(np.array([1, -1], dtype=np.int64)), special_zero=False)
    mean = ops.reduce_mean(flat, ops.constant(np.array([1], dtype=np.int64)), keep_dims=True)
    w, b = weights(outputs)
    z = ops.add(ops.multiply(mean, ops.constant(w[None])), ops.constant(b[None]))
    out = ops.softmax(z, 1) if softmax else z
    out.output(0).set_names({"policy"})
    return ov.Model([out], [x], "tiny")


def nan_model(outputs: int = 5) -> ov.Model:
    x = ops.parameter([1, 120, 160, 1], np.float32, name="image")
    flat = ops.reshape(x, ops.constant(np.array([1, -1], dtype=np.int64)), special_zero=False)
    first = ops.slice(flat, ops.constant(np.array([0])), ops.constant(np.array([outputs])), ops.constant(np.array([1])),
                      ops.constant(np.array([1])))
    out = ops.sqrt(ops.subtract(first, ops.constant(np.float32(1.0))))
    return ov.Model([out], [x], "nan")


def onnx_model(path: Path, shape: tuple[int, ...] = (1, 120, 160, 1), outputs: int = 5) -> Path:
    w, b = weights(outputs)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Mul", ["mean", "w"], ["scaled"]),
            helper.make_node("Add", ["scaled", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["policy"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("policy", TensorProto.FLOAT, [1, outputs])],
        [numpy_helper.from_array(w[None], "w"), numpy_helper.from_array(b[None], "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def ir_files(model: ov.Model, work: Path) -> dict[str, bytes]:
    """model.xml/model.bin bytes of `model`, for putting into archives."""
    work.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, work / "model.xml", compress_to_fp16=False)
    return {"model.xml": (work / "model.xml").read_bytes(), "model.bin": (work / "model.bin").read_bytes()}


def pb_bytes(archive: Path = PPO_TAR) -> bytes:
    """The frozen graph inside a fixture archive."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".pb"))
        return tar.extractfile(member).read()


def write_tar(path: Path, files: dict[str, bytes], special: Sequence[tarfile.TarInfo] = ()) -> Path:
    """A real .tar.gz with `files` as regular members, then any hand-made `special` members."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in special:
            tar.addfile(info)
    return path


def metadata_bytes(data: dict | None = None) -> bytes:
    return json.dumps(metadata() if data is None else data).encode()
