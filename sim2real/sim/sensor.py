"""What the camera's sensor and encoder do to the rendered picture: exposure, motion blur, noise, JPEG.

These act in image space after rendering, in a real camera's order (optics, exposure, read-out
noise, compression), and cost tens of microseconds a frame: noise comes from a bank of patterns
drawn once, not from the random generator on every frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

NOISE_BANK = 4


@dataclass(frozen=True)
class SensorParams:
    """`exposure_ev` in stops (gain 2**ev); `noise_std` in grey levels; `motion_blur_px` the streak
    length in pixels at `blur_angle_deg` (0 = horizontal); `jpeg_quality` 1..100, 100 = no codec."""

    exposure_ev: float = 0.0
    noise_std: float = 0.0
    motion_blur_px: float = 0.0
    blur_angle_deg: float = 0.0
    jpeg_quality: float = 100.0

    def __post_init__(self) -> None:
        if self.noise_std < 0 or self.motion_blur_px < 0:
            raise ValueError("sensor: noise_std and motion_blur_px must be >= 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"sensor: jpeg_quality must be 1..100, got {self.jpeg_quality}")


class Sensor:
    """Applies `SensorParams` to frames of one size; deterministic from `seed`."""

    def __init__(self, params: SensorParams, width: int, height: int, seed: int = 0) -> None:
        self.params = params
        self._rng = np.random.default_rng(seed)
        self._gain = 2.0 ** params.exposure_ev
        self._kernel = _streak(params.motion_blur_px, params.blur_angle_deg) if params.motion_blur_px >= 1.0 else None
        self._brighten: list[np.ndarray] = []
        self._darken: list[np.ndarray] = []
        if params.noise_std > 0:
            noise = self._rng.standard_normal((NOISE_BANK, height, width, 3), dtype=np.float32)
            noise = np.clip(np.round(noise * params.noise_std), -255, 255)
            self._brighten = list(np.maximum(noise, 0).astype(np.uint8))
            self._darken = list(np.maximum(-noise, 0).astype(np.uint8))
        self._jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(round(params.jpeg_quality))] if params.jpeg_quality < 100 else None

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The frame as this camera would deliver it (a new array unless nothing applies)."""
        if self._kernel is not None:
            frame = cv2.filter2D(frame, -1, self._kernel, borderType=cv2.BORDER_REPLICATE)
        if self._gain != 1.0:
            frame = cv2.convertScaleAbs(frame, alpha=self._gain)
        if self._brighten:
            i = int(self._rng.integers(NOISE_BANK))
            frame = cv2.subtract(cv2.add(frame, self._brighten[i]), self._darken[i])
        if self._jpeg is not None:
            _, encoded = cv2.imencode(".jpg", frame, self._jpeg)
            frame = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        return frame


def _streak(length_px: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel `length_px` long: the smear of a short exposure while turning."""
    size = int(math.ceil(length_px)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = (size - 1) / 2.0
    dx, dy = math.cos(math.radians(angle_deg)), -math.sin(math.radians(angle_deg))
    half = (length_px - 1.0) / 2.0
    start = (round((c - half * dx) * 16), round((c - half * dy) * 16))
    end = (round((c + half * dx) * 16), round((c + half * dy) * 16))
    cv2.line(kernel, start, end, 1.0, 1, cv2.LINE_AA, 4)
    return kernel / kernel.sum()
