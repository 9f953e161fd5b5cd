"""Training-only image augmentation (albumentations 2.0.8, the last MIT release).

It acts on the camera's BGR frames before the shared preprocessing (`car.policy.preprocess`), which the
car runs unchanged, so augmentation can never leak into what the car does. Presets scale one
recipe: a colour change (jitter, brightness/contrast or hue/saturation), blur, sensor noise,
shadows, a small shift or perspective change, and JPEG re-compression. Probabilities favour the
cheap transforms of each kind, so the default preset stays above 2,000 images/s on one core. Geometric changes are
small and replicate the border, so steering labels stay right and no black edges appear that the
car never sees.
"""
from __future__ import annotations

import os
import time
from typing import Any

import cv2
import numpy as np

# albumentations asks pypi.org for a newer release on import unless told not to: training stays offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A

STRENGTH = {"none": 0.0, "light": 0.5, "default": 1.0, "strong": 1.6}
PRESETS = tuple(STRENGTH)


class AugmentationError(ValueError):
    """An unknown preset."""


def pipeline(preset: str = "default", seed: int | None = None) -> A.Compose:
    """The albumentations pipeline for `preset`, reproducible when `seed` is given."""
    if preset not in STRENGTH:
        raise AugmentationError(f"unknown augmentation preset {preset!r}; presets: {', '.join(PRESETS)}")
    s = STRENGTH[preset]
    if s == 0.0:
        return A.Compose([], seed=seed)
    edge = cv2.BORDER_REPLICATE
    return A.Compose([
        A.OneOf([
            A.RandomBrightnessContrast(brightness_limit=0.3 * s, contrast_limit=0.3 * s, p=1.0),
            A.ColorJitter(brightness=0.25 * s, contrast=0.25 * s, saturation=0.3 * s, hue=0.03 * s, p=0.15),
            A.HueSaturationValue(hue_shift_limit=8 * s, sat_shift_limit=25 * s, val_shift_limit=25 * s, p=0.25),
        ], p=min(1.0, 0.8 * s)),
        A.OneOf([
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2 * s), p=1.0),
            A.MotionBlur(blur_limit=(3, 5), p=0.3),
        ], p=0.15 * s),
        A.GaussNoise(std_range=(0.01, 0.04 * s), noise_scale_factor=0.5, p=0.1 * s),
        A.RandomShadow(shadow_roi=(0.0, 0.35, 1.0, 1.0), num_shadows_limit=(1, 1 + int(s >= 1.5)),
                       shadow_dimension=4, shadow_intensity_range=(0.2, min(0.9, 0.5 * s)), p=0.06 * s),
        A.OneOf([
            A.Affine(translate_percent={"x": (-0.03 * s, 0.03 * s), "y": (-0.02 * s, 0.02 * s)}, border_mode=edge,
                     p=1.0),
            A.Perspective(scale=(0.01, 0.03 * s), border_mode=edge, p=0.5),
        ], p=min(1.0, 0.15 * s)),
        A.ImageCompression(quality_range=(max(10, int(90 - 40 * s)), 95), p=0.2 * s),
    ], seed=seed)


class Augmenter:
    """BGR uint8 frame -> augmented frame of the same size; deterministic from `seed`."""

    def __init__(self, preset: str = "default", seed: int | None = 0) -> None:
        self.preset = preset
        self._compose = pipeline(preset, seed)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"augment: expected an HxWx3 uint8 image, got {frame.shape} {frame.dtype}")
        return self._compose(image=frame)["image"]


def sample_frames(count: int, track: str = "reinvent_base", width: int = 160, height: int = 120) -> list[np.ndarray]:
    """Camera frames spread around a track, from the simulator, for previews and benchmarks."""
    from sim2real.sim.track import Track
    from sim2real.sim.world import Simulator

    sim = Simulator(Track.load(track), width, height)
    frames = []
    for i in range(count):
        sim.reset(start_index=i * sim.track.waypoint_count // count, offset=0.15 * ((i % 3) - 1))
        frames.append(sim.render())
    return frames


LABEL_BAND = 18  # pixels above the grid for the column titles (with room for descenders)


def preview_grid(preset: str, out: str | os.PathLike[str], rows: int = 4, cols: int = 5, seed: int = 0,
                 track: str = "reinvent_base") -> np.ndarray:
    """A PNG grid: each row one simulator frame, the original first, then augmented versions.

    A white band of `LABEL_BAND` pixels on top titles the columns: "original" over the first,
    "augmented (<preset>)" over the others. Returns the BGR image, shape
    (LABEL_BAND + rows*(h+2) - 2, cols*(w+2) - 2, 3). Raises ValueError for a grid smaller than
    1 x 2 or an unwritable `out`, AugmentationError for an unknown preset."""
    if rows < 1 or cols < 2:
        raise ValueError("preview needs at least 1 row and 2 columns")
    augment = Augmenter(preset, seed)
    frames = sample_frames(rows, track)
    gap = 2
    h, w = frames[0].shape[:2]
    top = LABEL_BAND
    grid = np.full((top + rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for r, frame in enumerate(frames):
        y = top + r * (h + gap)
        for c in range(cols):
            tile = frame if c == 0 else augment(frame)
            grid[y:y + h, c * (w + gap):c * (w + gap) + w] = tile
    for x, title in ((2, "original"), (w + gap + 2, f"augmented ({preset})")):
        cv2.putText(grid, title, (x, top - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(out), grid):
        raise ValueError(f"cannot write {out}")
    return grid


def bench_augment(seconds: float = 2.0, preset: str = "default", width: int = 160, height: int = 120) -> dict[str, Any]:
    """Augmented images per second on one core: OpenCV single-threaded, this thread pinned to one CPU."""
    frames = sample_frames(32, width=width, height=height)
    augment = Augmenter(preset, seed=0)
    threads = cv2.getNumThreads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cv2.setNumThreads(1)
    if affinity:
        os.sched_setaffinity(0, {min(affinity)})
    try:
        for frame in frames:
            augment(frame)
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            augment(frames[count % len(frames)])
            count += 1
        elapsed = time.perf_counter() - t0
    finally:
        cv2.setNumThreads(threads)
        if affinity:
            os.sched_setaffinity(0, affinity)
    return {"images_per_s": round(count / elapsed, 1), "preset": preset, "width": width, "height": height}
