"""The AWS DeepRacer frozen TensorFlow graph (`model.pb`): where its camera input and policy output
are, by the names the DeepRacer training stack (Intel Coach) gives them, and its conversion to an
`openvino.Model` with OpenVINO's own TensorFlow frontend (no TensorFlow on the car)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import openvino as ov
from openvino.frontend import FrontEndManager

from car.policy.bundle_layout import BundleError
from car.policy.metadata import ModelMetadata
from car.policy.native_stderr import native_logs_silenced
from car.policy.openvino_model import error_line
from car.policy.preprocess import PreprocessSpec

PPO_SCOPE = "main_level/agent/main/online"
SAC_SCOPE = "main_level/agent/policy/online"
PPO_OUTPUT = f"{PPO_SCOPE}/network_1/ppo_head_0/policy"
SAC_OUTPUT = f"{SAC_SCOPE}/network_0/sac_policy_head_0/policy"


def tensor_node(tensor_name: str) -> str:
    """A TensorFlow tensor's node: `name:0` -> `name`."""
    return re.sub(r":0$", "", tensor_name)


def graph_io_names(metadata: ModelMetadata) -> tuple[tuple[str, ...], str]:
    """The DeepRacer input nodes (current, then very old) and policy output node for this metadata.

    A file without `sensor` (OBSERVATION) is an old model, whose graph names its camera
    `observation`, or one whose tool left the key out: FRONT_FACING_CAMERA is its second guess.
    """
    sac = metadata.training_algorithm == "sac"
    scope = SAC_SCOPE if sac else PPO_SCOPE
    sensor = metadata.camera_sensor
    names = ("observation", "FRONT_FACING_CAMERA") if sensor == "OBSERVATION" else (sensor, "observation")
    return tuple(f"{scope}/network_0/{n}/{n}" for n in names), SAC_OUTPUT if sac else PPO_OUTPUT


@dataclass(frozen=True)
class GraphIO:
    """How to cut a frozen graph: input tensor and its batch-1 shape, policy output tensor."""

    input: str
    shape: tuple[int, ...]
    output: str

    def key(self) -> str:
        """The cut as text, for the IR cache's key."""
        return f"{self.input}\n{self.shape}\n{self.output}"


def frozen_graph_io(pb: Path, metadata: ModelMetadata, spec: PreprocessSpec) -> GraphIO:
    """Find the camera input and policy output by their DeepRacer names, without converting."""
    try:
        with native_logs_silenced():
            graph = FrontEndManager().load_by_framework("tf").load(str(pb))
    except Exception as exc:
        raise BundleError(f"{pb.name} is not a TensorFlow frozen graph: {error_line(exc)}") from None
    inputs = {name: place for place in graph.get_inputs() for name in place.get_names()}
    wanted, output = graph_io_names(metadata)
    found = [f"{node}:0" for node in wanted if f"{node}:0" in inputs]
    if found:
        tensor = found[0]
    elif len(graph.get_inputs()) == 1:
        tensor = graph.get_inputs()[0].get_names()[0]
    else:
        raise BundleError(f"{pb.name} has inputs {sorted(tensor_node(n) for n in inputs)}, none is {wanted[0]}")
    placeholder = graph.get_partial_shape(inputs[tensor])
    expected = spec.input_shape()
    if placeholder.rank.is_static and len(placeholder) == len(expected):
        shape = tuple(d.get_length() if d.is_static else e for d, e in zip(placeholder, expected, strict=True))
    else:
        shape = expected
    if graph.get_place_by_tensor_name(f"{output}:0") is not None:
        out_tensor = f"{output}:0"
    elif len(graph.get_outputs()) == 1:
        out_tensor = graph.get_outputs()[0].get_names()[0]
    else:
        raise BundleError(f"{pb.name} has no {output} output")
    return GraphIO(tensor, shape, out_tensor)


def convert_frozen_graph(pb: Path, io: GraphIO) -> ov.Model:
    """OpenVINO's TensorFlow frontend on the .pb itself: no TensorFlow needed on the car."""
    try:
        with native_logs_silenced():
            return ov.convert_model(str(pb), input=[(io.input, list(io.shape), ov.Type.f32)], output=io.output)
    except Exception as exc:
        raise BundleError(f"OpenVINO cannot convert {pb.name}: {error_line(exc)}") from None
