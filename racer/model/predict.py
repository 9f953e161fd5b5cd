"""What a model does on pictures, as DeepRacer owners check in their log-analysis notebooks.

Each picture goes through the bundle's own preprocessing (a fresh frame stack per picture), one
OpenVINO forward pass and the car's action decoding, so the answer is what the car would do on
that camera frame at full max-speed setting.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from car.policy.bundle import BundleError
from car.policy.decode import ActionDecoder
from car.policy.inference import Policy
from car.policy.preprocess import Preprocessor
from racer.model.explain import decision_change, heatmap_image, occlusion_map


def read_picture(path: Path) -> np.ndarray:
    """HxWx3 uint8 BGR (alpha dropped); BundleError with one line when it is not a readable image."""
    if not path.is_file():
        raise BundleError(f"no such picture: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BundleError(f"{path} is not an image OpenCV can read")
    return bgr


def predict(policy: Policy, pictures: list[Path], explain_dir: Path | None = None) -> dict[str, Any]:
    """`{"model", "predictions": [{"image", "output", "action", "steering_deg", "speed_mps"}]}`.

    `output` is the raw policy output (discrete: the softmax), `action` its argmax (None when
    continuous). With `explain_dir`, also writes `<picture stem>.explain.png` there per picture and
    adds its path as `explain`. All pictures are read before anything is written.
    """
    bundle = policy.bundle
    frames = [read_picture(path) for path in pictures]
    decode = ActionDecoder(bundle.metadata)
    change = decision_change(bundle.metadata)
    if explain_dir is not None:
        explain_dir.mkdir(parents=True, exist_ok=True)
    predictions = []
    for path, bgr in zip(pictures, frames, strict=True):
        x = Preprocessor(bundle.spec)(bgr)
        output = policy.infer(x)
        decoded = decode(output)
        entry: dict[str, Any] = {"image": str(path), "output": [float(v) for v in output],
                                 "action": decoded.action_index, "steering_deg": decoded.steering_deg,
                                 "speed_mps": decoded.speed}
        if explain_dir is not None:
            spec = bundle.spec
            heat = np.zeros((spec.height, spec.width), np.float32)
            heat[spec.crop_top:spec.height - spec.crop_bottom] = occlusion_map(policy.infer, x, spec.layout, change)
            out = explain_dir / f"{path.stem}.explain.png"
            if not cv2.imwrite(str(out), heatmap_image(bgr, heat)):
                raise BundleError(f"cannot write {out}")
            entry["explain"] = str(out)
        predictions.append(entry)
    return {"model": bundle.name, "predictions": predictions}
