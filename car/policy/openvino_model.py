"""OpenVINO on the car: one Core per process, a model file read into an `openvino.Model`, the
precision its weights are stored in, and OpenVINO's many-line errors as one line."""
from __future__ import annotations

import functools
from pathlib import Path

import openvino as ov

from car.policy.bundle_layout import BundleError


@functools.cache
def ov_core() -> ov.Core:
    """One OpenVINO Core per process: it owns the plugins and their caches."""
    return ov.Core()


def error_line(exc: BaseException) -> str:
    """The last non-blank line of the exception's message (OpenVINO puts its reason there), at most
    300 characters; the exception's type name when the message is empty."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def read_ov_model(path: Path, input_shape: tuple[int, ...] | None = None) -> ov.Model:
    """IR (model.bin found beside it) or ONNX, with OpenVINO's errors as one BundleError line.

    With `input_shape`, a single input whose shape is dynamic but of that rank is fixed to it (the
    batch-1 NCHW/NHWC shape the preprocessing produces).
    """
    try:
        model = ov_core().read_model(path)
    except Exception as exc:
        raise BundleError(f"cannot read {path.name}: {error_line(exc)}") from None
    if input_shape is not None and len(model.inputs) == 1 and model.input(0).get_partial_shape().is_dynamic:
        shape = model.input(0).get_partial_shape()
        if shape.rank.is_static and len(shape) == len(input_shape):
            model.reshape({model.input(0): ov.PartialShape(list(input_shape))})
    return model


def model_precision(model: ov.Model) -> str:
    """"int8" (quantized: FakeQuantize, or int8 weights), "f16" (weights compressed to fp16) or "f32"."""
    ops = model.get_ops()
    if any(op.get_type_name() == "FakeQuantize" for op in ops):
        return "int8"
    weights = {op.get_element_type() for op in ops if op.get_type_name() == "Constant"}
    if weights & {ov.Type.i8, ov.Type.u8}:
        return "int8"
    return "f16" if ov.Type.f16 in weights else "f32"
