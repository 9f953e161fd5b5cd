"""Domain-shift monitor: how far the camera's frames are from what the model was trained on.

A bundle's racer.json carries training-image statistics (written at export): over a coarse grid
of regions, the mean and std across training frames of each region's mean brightness, plus the
mean and std of each frame's contrast. A frame's score is the root-mean-square of its z-scores
against those, leaving out the two largest (a border line or a lone object passing through a
region is the track, not a new room), on the model's own input tensor, so it costs a few tens of
microseconds: about 1 or less inside the training distribution, several times that in a room the model
never saw (the shipped model: 0.5 in its training world, 2.8 in a dark room).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from car.policy.preprocess import PreprocessSpec

GRID = (3, 4)
IGNORED_REGIONS = 2
# What frames of the training world score at most (about; see the module's docstring).
TRAINING_LEVEL = 1.0


def excess(score: float) -> float:
    """How far a frame's score lies beyond the training world's level (0 within it): the car's warning
    score for a model without its own uncertainty (`PolicyCore.monitor_score`). Frames like training
    add nothing to its 2 s mean, so a stretch of strange frames is not averaged away by ordinary ones
    (picked among transforms of the score on laps in training-range domains: docs/gap.md)."""
    return max(score - TRAINING_LEVEL, 0.0)


def _grey(frame: np.ndarray) -> np.ndarray:
    """An (H, W) float32 image from an (H, W) or (H, W, C) frame, channels averaged."""
    image = np.asarray(frame, np.float32)
    if image.ndim == 3:
        image = image[..., 0] if image.shape[2] == 1 else image.mean(axis=2)
    return np.ascontiguousarray(image)


def region_means(frame: np.ndarray, grid: tuple[int, int] = GRID) -> np.ndarray:
    """Mean of each of rows x cols regions of an (H, W) or (H, W, C) frame, channels averaged."""
    rows, cols = grid
    return cv2.resize(_grey(frame), (cols, rows), interpolation=cv2.INTER_AREA).reshape(-1)


def contrast(frame: np.ndarray) -> float:
    """Std of the frame's pixels, channels averaged."""
    return float(cv2.meanStdDev(_grey(frame))[1][0, 0])


def region_statistics(features: np.ndarray, grid: tuple[int, int] = GRID) -> dict[str, Any]:
    """The monitor's statistics of training frames (N, H, W, C), for racer.json."""
    means = np.stack([region_means(f, grid) for f in features])
    contrasts = np.array([contrast(f) for f in features])
    return {"grid": list(grid), "mean": means.mean(axis=0).round(6).tolist(),
            "std": means.std(axis=0).round(6).tolist(),
            "contrast_mean": round(float(contrasts.mean()), 6), "contrast_std": round(float(contrasts.std()), 6)}


class ShiftMonitor:
    """Scores model input tensors against a bundle's training statistics."""

    def __init__(self, stats: Mapping[str, Any], spec: PreprocessSpec) -> None:
        regions = stats.get("regions")
        if not isinstance(regions, Mapping):
            raise ValueError("stats: no 'regions' statistics (exported before the domain-shift monitor existed)")
        try:
            self.grid = (int(regions["grid"][0]), int(regions["grid"][1]))
            self.mean = np.asarray(regions["mean"], np.float32)
            std = np.asarray(regions["std"], np.float32)
            contrast_mean, contrast_std = float(regions["contrast_mean"]), float(regions["contrast_std"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"stats: malformed 'regions' statistics: {exc}") from None
        if self.mean.shape != (self.grid[0] * self.grid[1],) or std.shape != self.mean.shape:
            raise ValueError(f"stats: regions need {self.grid[0] * self.grid[1]} means and stds")
        # Regions that hardly changed in training (the sky) must not turn small changes into alarms.
        floor = max(0.5 * float(np.median(std)), 1e-6)
        self.std = np.maximum(std, floor)
        self.contrast = (contrast_mean, max(contrast_std, floor))
        self.spec = spec
        self._per_frame = spec.channels // spec.frame_stack

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any] | None, spec: PreprocessSpec) -> ShiftMonitor | None:
        """A monitor, or None when the bundle carries no region statistics (AWS models, old bundles)."""
        if not stats or "regions" not in stats:
            return None
        return cls(stats, spec)

    def score(self, tensor: np.ndarray) -> float:
        """RMS z-score of the newest frame in a model input tensor (1, C, H, W) or (1, H, W, C)."""
        x = tensor[0]
        frame = x[-self._per_frame:].transpose(1, 2, 0) if self.spec.layout == "NCHW" else x[..., -self._per_frame:]
        z = (region_means(frame, self.grid) - self.mean) / self.std
        spread = (contrast(frame) - self.contrast[0]) / self.contrast[1]
        squares = np.sort(np.append(z * z, spread * spread))[:-IGNORED_REGIONS]
        return float(np.sqrt(squares.mean()))
