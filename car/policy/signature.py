"""A model's signature as the car uses it: one f32 camera tensor in, of the shape the preprocessing
makes; the policy's output first, of the size the action space needs; at most one more output, the
model's own uncertainty about the frame. A model that differs is refused at load, never on the track."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import openvino as ov

from car.policy.aws_graph import tensor_node
from car.policy.bundle_layout import BundleError
from car.policy.metadata import METADATA_FILE, ModelMetadata
from car.policy.preprocess import PreprocessSpec
from car.policy.racer_json import RACER_FILE

# A model's optional second output: its own uncertainty about the frame, one value, 0 sure and higher
# less so (a modular model's mean per-pixel segmentation entropy, 0..1; an end-to-end model's spread
# of steering views, 0..1, plus a perception monitor's entropy when exported with one). The policy
# node adds it to the on-car failure warning.
UNCERTAINTY_OUTPUT = "uncertainty"


@dataclass(frozen=True)
class Signature:
    """The input tensor's name and batch-1 shape, the policy output's node name and value count, and
    whether the model also outputs its own uncertainty (`UNCERTAINTY_OUTPUT`)."""

    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_size: int
    has_uncertainty: bool = False


def shape_text(shape: Any) -> str:
    return "x".join(str(d) for d in shape)


def _is_uncertainty(port: Any) -> bool:
    shape = port.get_partial_shape()
    return UNCERTAINTY_OUTPUT in port.get_names() and shape.is_static and int(np.prod(shape.to_shape())) == 1


def check_input(model: ov.Model, spec: PreprocessSpec) -> tuple[str, tuple[int, ...]]:
    """(input name, shape): one f32 input of `spec.input_shape()`, named `spec.input_name` if set."""
    if len(model.inputs) != 1:
        raise BundleError(f"model has {len(model.inputs)} inputs; the car feeds one camera tensor")
    port = model.input(0)
    expected = spec.input_shape()
    shape = port.get_partial_shape()
    if shape.is_dynamic or tuple(shape.to_shape()) != expected:
        raise BundleError(f"model input {shape_text(shape)} does not match the preprocessing {shape_text(expected)}")
    if port.get_element_type() != ov.Type.f32:
        raise BundleError(f"model input is {port.get_element_type().get_type_name()}; the car feeds f32")
    wanted = spec.input_name
    if wanted and not {wanted, f"{wanted}:0"} & port.get_names():
        raise BundleError(f"{RACER_FILE} names input {wanted!r}, the model's is {port.get_any_name()!r}")
    return (wanted or port.get_any_name()), expected


def check_output(model: ov.Model, metadata: ModelMetadata) -> tuple[str, int]:
    """(output node, size) of the policy output (the first); a second output is allowed only as the
    model's own `UNCERTAINTY_OUTPUT`, one value per frame (a modular model's perception)."""
    extra = model.outputs[1:]
    if not model.outputs or len(extra) > 1 or (extra and not _is_uncertainty(extra[0])):
        raise BundleError(f"model has {len(model.outputs)} outputs; a policy has one "
                          f"(and at most one more: {UNCERTAINTY_OUTPUT!r}, one value)")
    port = model.output(0)
    shape = port.get_partial_shape()
    if shape.is_dynamic:
        raise BundleError(f"model output shape {shape} is not fixed")
    size = int(np.prod(shape.to_shape()))
    need = metadata.output_size()
    if size != need:
        what = f"{need} discrete actions" if metadata.discrete else "2 (steering, speed) for a continuous action space"
        raise BundleError(f"model gives {size} outputs but {METADATA_FILE} needs {what}")
    return tensor_node(port.get_any_name()), size


def check_signature(model: ov.Model, spec: PreprocessSpec, metadata: ModelMetadata) -> Signature:
    """The model's signature, or BundleError saying how it differs from the spec and the metadata."""
    input_name, input_shape = check_input(model, spec)
    output_name, output_size = check_output(model, metadata)
    # check_output allows a second output only as the uncertainty
    return Signature(input_name, input_shape, output_name, output_size, len(model.outputs) > 1)
