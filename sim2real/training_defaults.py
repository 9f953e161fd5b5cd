"""What `racer train` (DAgger) trains by default: the bundled model's action space and input preprocessing.

DAgger, the modular model, the gap evaluation and the Ray workers start from these unless told otherwise;
PPO uses the console's own (`sim2real.network.CONSOLE_SPEC` and the custom_files' model_metadata.json).
"""
from __future__ import annotations

from dataclasses import replace

from car.policy.preprocess import PreprocessSpec

# The bundled model's action space: continuous, DeepRacer units (degrees, m/s). Speeds reach the
# AWS console's 4 m/s so that at max-speed 1.0 the slowest action (0.5 m/s: throttle 0.26 through
# the navigation node's parabola) is 1.07 m/s of car speed, below the expert's corner speeds; with
# 2 m/s it was 1.98 m/s and every speed label clipped to it.
ACTION_SPACE = {
    "action_space": {"steering_angle": {"low": -30.0, "high": 30.0}, "speed": {"low": 0.5, "high": 4.0}},
    "action_space_type": "continuous",
    "training_algorithm": "clipped_ppo",
    "sensor": ["FRONT_FACING_CAMERA"],
    "neural_network": "RACER_SMALL_CNN",
    "version": "5",
}
SPEC = PreprocessSpec(width=80, height=60, crop_top=12, grey_weights=(0.114, 0.587, 0.299), scale=1 / 255.0,
                      offset=0.0, frame_stack=2, layout="NCHW", interpolation="area", input_name="image")

# `racer train --input-size`, smallest and largest. The floor is a conservative one for the driving
# network's convolutions; the ceiling is the simulator's 160x120 frame, beyond which training would see
# enlarged copies of its frames (nothing new), bundles outgrow the console's upload limit and the
# default 64,000 samples outgrow a 24 GiB machine.
INPUT_SIZES = ((64, 48), (160, 120))


def spec_at(width: int, height: int) -> PreprocessSpec:
    """SPEC with the frame resized to width x height pixels and about the same share cropped off the top:
    a fifth, rounded down to even rows (12 of 60, 18 of 90), since the modular model's segmentation is
    at half size. Raises ValueError outside INPUT_SIZES or for an odd width or height."""
    (least_w, least_h), (most_w, most_h) = INPUT_SIZES
    if not (least_w <= width <= most_w and least_h <= height <= most_h):
        raise ValueError(f"the input size must be from {least_w}x{least_h} to {most_w}x{most_h}, "
                         f"got {width}x{height}")
    if width % 2 or height % 2:
        raise ValueError(f"the input size must be even in both directions, got {width}x{height}")
    return replace(SPEC, width=width, height=height, crop_top=2 * (height // 10))
