"""What the policy saw and what it answered, as bus messages for a visualiser (Foxglove) and the recorder.

`/policy/input` is the model's input tensor exactly as the policy fed it (after resize, crop, grey,
scale and offset), as a 32FC1 image; `/policy/output` the model's output vector as the model gave it.
The decoded choice (steering and speed) is /policy/drive.
"""
from __future__ import annotations

import numpy as np

from car.messages import Float32MultiArray, MultiArrayDimension

# The label of /policy/output's one dimension says what its values are.
DISCRETE_LABEL = "action"  # one probability per action of model_metadata.json's action_space, in its order
CONTINUOUS_LABEL = "steering_speed"  # the raw continuous head (SAC: pre-tanh mean; PPO: before the clip)


def input_image(tensor: np.ndarray, layout: str) -> np.ndarray:
    """A (1, C, H, W) or (1, H, W, C) model input -> (H, W * C) float32: each channel one tile, left to right
    (a frame stack oldest first, as the channels are stacked)."""
    planes = tensor[0] if layout == "NCHW" else np.moveaxis(tensor[0], -1, 0)
    channels, height, width = planes.shape
    return np.ascontiguousarray(planes.transpose(1, 0, 2).reshape(height, channels * width), np.float32)


def output_array(output: np.ndarray, discrete: bool) -> Float32MultiArray:
    """The model's output as one labelled dimension (DISCRETE_LABEL or CONTINUOUS_LABEL)."""
    values = np.asarray(output, np.float32).reshape(-1)
    label = DISCRETE_LABEL if discrete else CONTINUOUS_LABEL
    return Float32MultiArray((MultiArrayDimension(label, values.size, values.size),), tuple(values.tolist()))
