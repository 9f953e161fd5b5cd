"""Occlusion sensitivity: which pixels of a model input change the policy's decision.

A grey patch (the input's mean) slides over the model input; at each position the policy runs once
more, and the change of its decision is added to every pixel the patch covered, then averaged per
pixel. Only forward passes are needed (OpenVINO, no gradients), so it works on any bundle.
Decision change: discrete, the total-variation distance between the two action distributions
(0..1); continuous, the largest change of the normalised steering or speed (0..2).
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from car.policy.decode import squash
from car.policy.metadata import ModelMetadata

PATCH = 16
STRIDE = 8


def decision_change(metadata: ModelMetadata) -> Callable[[np.ndarray, np.ndarray], float]:
    """How far policy output `b` is from `a`, in the units above."""
    if metadata.discrete:
        return lambda a, b: float(0.5 * np.abs(a - b).sum())
    return lambda a, b: float(np.abs(squash(a, metadata) - squash(b, metadata)).max())


def occlusion_map(infer: Callable[[np.ndarray], np.ndarray], x: np.ndarray, layout: str,
                  change: Callable[[np.ndarray, np.ndarray], float], patch: int = PATCH,
                  stride: int = STRIDE) -> np.ndarray:
    """Per-pixel mean decision change (H, W) float32 for model input `x` (1xHxWxC or 1xCxHxW)."""
    hwc = x[0] if layout == "NHWC" else x[0].transpose(1, 2, 0)
    height, width = hwc.shape[:2]
    base = infer(x)
    fill = hwc.mean(axis=(0, 1))
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.float64)
    rows = list(range(0, max(height - patch, 0) + 1, stride))
    cols = list(range(0, max(width - patch, 0) + 1, stride))
    for top in rows:
        for left in cols:
            occluded = hwc.copy()
            occluded[top:top + patch, left:left + patch] = fill
            probe = occluded[None] if layout == "NHWC" else occluded.transpose(2, 0, 1)[None]
            total[top:top + patch, left:left + patch] += change(base, infer(np.ascontiguousarray(probe)))
            count[top:top + patch, left:left + patch] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def heatmap_image(bgr: np.ndarray, heat: np.ndarray, scale: float | None = None) -> np.ndarray:
    """The picture with `heat` (any HxW, resized to it) blended on top as a JET colour map.

    `scale` is the heat value shown as full red (default: the map's own maximum).
    """
    top = scale if scale is not None else float(heat.max())
    level = np.clip(heat / top, 0.0, 1.0) if top > 0 else np.zeros_like(heat)
    colours = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.resize(colours, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(bgr, 0.5, colours, 0.5, 0.0)
