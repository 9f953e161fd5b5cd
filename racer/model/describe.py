"""What `racer model inspect` shows of a loaded bundle, and `check` and `convert` quote: one
JSON-ready object (the human form is the command's)."""
from __future__ import annotations

from typing import Any

from car.policy.bundle import Bundle


def describe(bundle: Bundle) -> dict[str, Any]:
    """The bundle's files, runnability, resolved input and output, preprocessing, metadata, statistics
    and caution (None when it asks for none)."""
    meta = bundle.metadata
    if meta.discrete:
        space: Any = [{"index": i, "steering_angle": a.steering_deg, "speed": a.speed}
                      for i, a in enumerate(meta.actions)]
    else:
        steering, speed = meta.steering, meta.speed
        assert steering is not None and speed is not None  # parse_metadata gives a continuous space both ranges
        space = {"steering_angle": {"low": steering.low, "high": steering.high},
                 "speed": {"low": speed.low, "high": speed.high}}
    sig = bundle.signature
    return {
        "name": bundle.name,
        "source": str(bundle.source),
        "kind": bundle.kind,
        "model_file": bundle.files.path.relative_to(bundle.root).as_posix(),
        "onnx_file": bundle.files.onnx.relative_to(bundle.root).as_posix() if bundle.files.onnx else None,
        "shipped_ir": _shipped_ir(bundle),
        "runnable": bundle.unrunnable is None,
        "reason": bundle.unrunnable,
        "input": {"name": sig.input_name if sig else None, "shape": list(sig.input_shape) if sig else None},
        "output": {"name": sig.output_name if sig else None, "size": sig.output_size if sig else None},
        "precision": bundle.precision,
        "preprocess": bundle.spec.to_json(),
        "metadata": {
            "action_space_type": meta.action_space_type,
            "training_algorithm": meta.training_algorithm,
            "sensor": list(meta.sensors),
            "neural_network": meta.neural_network,
            "version": meta.version,
            "action_space": space,
            "max_steering_deg": meta.max_steering_deg,
            "max_speed": meta.max_speed,
        },
        "stats": bundle.stats,
        "info": bundle.info,
        "caution": bundle.caution.to_json() if bundle.caution else None,
    }


def _shipped_ir(bundle: Bundle) -> dict[str, Any] | None:
    xml = bundle.files.shipped_ir
    if xml is None:
        return None
    return {"file": xml.relative_to(bundle.root).as_posix(), "used": bundle.model_file == xml,
            "reason": bundle.shipped_ir_reason}
