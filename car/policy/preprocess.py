"""The preprocessing spec: one description of camera frame -> model input, shipped in the bundle.

Training and the car both call `Preprocessor`, so the two can never disagree on grey weights,
resize, crop, normalisation or frame stacking (the classic sim-to-real bug).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

# ITU-R BT.601 luma, the weights of cv2.COLOR_BGR2GRAY (what the DeepRacer car uses), in B, G, R order.
BT601_BGR = (0.114, 0.587, 0.299)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a BGR camera frame becomes the model input tensor.

    Steps, in order: resize to (width, height) with `interpolation`; crop rows
    [crop_top, height - crop_bottom); grey with `grey_weights` (B, G, R) or keep BGR when None,
    rounded to 8 bits when `grey_8bit` (OpenCV's COLOR_BGR2GRAY, so BT.601 weights only);
    x * scale + offset; stack the last `frame_stack` frames on the channel axis (newest last).
    `layout` is NCHW or NHWC for the model's single input tensor.
    """

    width: int = 160
    height: int = 120
    crop_top: int = 0
    crop_bottom: int = 0
    grey_weights: tuple[float, float, float] | None = BT601_BGR
    scale: float = 1.0
    offset: float = 0.0
    frame_stack: int = 1
    layout: str = "NHWC"
    interpolation: str = "area"
    input_name: str | None = None
    grey_8bit: bool = False

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"preprocess: resize must be positive, got {self.width}x{self.height}")
        if self.crop_top < 0 or self.crop_bottom < 0 or self.crop_top + self.crop_bottom >= self.height:
            raise ValueError(f"preprocess: crop {self.crop_top}+{self.crop_bottom} leaves no rows of {self.height}")
        if self.grey_weights is not None and len(self.grey_weights) != 3:
            raise ValueError("preprocess: grey_weights needs three values (B, G, R)")
        if self.grey_8bit and tuple(self.grey_weights or ()) != BT601_BGR:
            raise ValueError("preprocess: grey_8bit is OpenCV's COLOR_BGR2GRAY and needs grey_weights BT.601")
        if self.frame_stack < 1:
            raise ValueError(f"preprocess: frame_stack must be >= 1, got {self.frame_stack}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"preprocess: layout must be NCHW or NHWC, got {self.layout!r}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"preprocess: interpolation must be one of {sorted(_INTERPOLATION)}")
        if not np.isfinite(self.scale) or not np.isfinite(self.offset) or self.scale == 0:
            raise ValueError("preprocess: scale must be finite and non-zero, offset finite")

    @property
    def channels(self) -> int:
        return (1 if self.grey_weights is not None else 3) * self.frame_stack

    @property
    def out_height(self) -> int:
        return self.height - self.crop_top - self.crop_bottom

    def input_shape(self) -> tuple[int, int, int, int]:
        if self.layout == "NCHW":
            return (1, self.channels, self.out_height, self.width)
        return (1, self.out_height, self.width, self.channels)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["grey_weights"] = list(self.grey_weights) if self.grey_weights is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreprocessSpec:
        if not isinstance(data, dict):
            raise ValueError("preprocess: expected an object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"preprocess: unknown key(s) {', '.join(unknown)}")
        kwargs = dict(data)
        if kwargs.get("grey_weights") is not None:
            kwargs["grey_weights"] = tuple(float(w) for w in kwargs["grey_weights"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"preprocess: {exc}") from None


_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}

# What the stock AWS DeepRacer car's inference node feeds a frozen-graph model, and so the default
# for AWS exports: the 640x480 frame resized to 160x120 with OpenCV's default INTER_LINEAR, then
# COLOR_BGR2GRAY to 8-bit grey, raw 0..255, NHWC. Owners validated their models on that car, so
# racer makes the same OpenCV calls (its bytes equal tools/make_aws_reference.py's, made with
# another OpenCV release, on the three deepracer-utils pictures). DEEPRACER_AREA_SPEC (INTER_AREA,
# float grey) is the better low-pass filter, offered as `--preprocess area`; on the real AWS
# sample models it moves action probabilities by up to 0.031 (model_48, dr-demo-1) and kept the
# top action on all nine model x picture pairs.
DEEPRACER_SPEC = PreprocessSpec(interpolation="linear", grey_8bit=True)
DEEPRACER_AREA_SPEC = PreprocessSpec(interpolation="area")
DEEPRACER_PRESETS = {"stock": DEEPRACER_SPEC, "area": DEEPRACER_AREA_SPEC}


def frame_features(spec: PreprocessSpec, bgr: np.ndarray) -> np.ndarray:
    """One frame -> float32 (H, W, C) before stacking; the part training can batch."""
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"preprocess: expected HxWx3 uint8 BGR, got {bgr.shape} {bgr.dtype}")
    if bgr.shape[1] != spec.width or bgr.shape[0] != spec.height:
        bgr = cv2.resize(bgr, (spec.width, spec.height), interpolation=_INTERPOLATION[spec.interpolation])
    bgr = bgr[spec.crop_top : spec.height - spec.crop_bottom]
    if spec.grey_8bit:
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)[:, :, None]
    elif spec.grey_weights is not None:
        img = cv2.transform(bgr.astype(np.float32), np.asarray([spec.grey_weights], dtype=np.float32))
        img = img.reshape(img.shape[0], img.shape[1], 1)
    else:
        img = bgr.astype(np.float32)
    if spec.scale != 1.0 or spec.offset != 0.0:
        img = img * np.float32(spec.scale) + np.float32(spec.offset)
    return img


@dataclass
class Preprocessor:
    """Stateful per-stream preprocessing (keeps the frame stack)."""

    spec: PreprocessSpec
    _stack: list[np.ndarray] = field(default_factory=list)

    def reset(self) -> None:
        self._stack.clear()

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        img = frame_features(self.spec, bgr)
        if self.spec.frame_stack > 1:
            if not self._stack:
                self._stack.extend([img] * (self.spec.frame_stack - 1))
            self._stack.append(img)
            del self._stack[: -self.spec.frame_stack]
            img = np.concatenate(self._stack, axis=2)
        if self.spec.layout == "NCHW":
            img = img.transpose(2, 0, 1)
        return np.ascontiguousarray(img[None])
