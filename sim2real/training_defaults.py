"""What `racer train` (DAgger) trains by default: the bundled model's action space and input preprocessing.

DAgger, the modular model, the gap evaluation and the Ray workers start from these unless told otherwise;
PPO uses the console's own (`sim2real.network.CONSOLE_SPEC` and the custom_files' model_metadata.json).
"""
from __future__ import annotations

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
