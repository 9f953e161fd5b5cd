"""Occlusion sensitivity: heat where hiding pixels changes the decision, none elsewhere."""
from __future__ import annotations

import numpy as np

from car.policy.metadata import parse_metadata
from racer.model.explain import decision_change, heatmap_image, occlusion_map

DISCRETE = parse_metadata({"action_space": [{"steering_angle": s, "speed": 1} for s in (-30, 30)]})
SAC = parse_metadata({"action_space": {"steering_angle": {"low": -30, "high": 30}, "speed": {"low": 1, "high": 2}},
                      "action_space_type": "continuous", "training_algorithm": "sac"})


def looks_at_the_top_left(x: np.ndarray) -> np.ndarray:
    """Softmax over (brightness of rows 0-15 x cols 0-15, 0.5): only that corner matters."""
    z = np.array([x[0, :16, :16, 0].mean() / 255.0 * 8, 0.5])
    return np.exp(z) / np.exp(z).sum()


def test_heat_lies_only_where_the_policy_looks():
    x = np.zeros((1, 120, 160, 1), np.float32)
    x[0, :16, :16] = 255.0
    heat = occlusion_map(looks_at_the_top_left, x, "NHWC", decision_change(DISCRETE))
    assert heat.shape == (120, 160) and heat.dtype == np.float32
    assert heat[:8, :8].min() > 0.2 and heat[:, 40:].max() == 0 and heat[40:, :].max() == 0


def test_nchw_input_gives_the_same_map():
    x = np.zeros((1, 120, 160, 1), np.float32)
    x[0, :16, :16] = 255.0
    nhwc = occlusion_map(looks_at_the_top_left, x, "NHWC", decision_change(DISCRETE))
    nchw = occlusion_map(lambda t: looks_at_the_top_left(t.transpose(0, 2, 3, 1)), x.transpose(0, 3, 1, 2).copy(),
                         "NCHW", decision_change(DISCRETE))
    assert np.array_equal(nhwc, nchw)


def test_decision_change_units():
    assert decision_change(DISCRETE)(np.array([0.9, 0.1]), np.array([0.4, 0.6])) == 0.5
    assert abs(decision_change(SAC)(np.array([0.0, 0.0]), np.array([0.0, 10.0])) - 1.0) < 1e-6


def test_heatmap_is_the_picture_size_and_red_where_hot():
    picture = np.full((480, 640, 3), 128, np.uint8)
    heat = np.zeros((120, 160), np.float32)
    heat[:, :80] = 1.0
    image = heatmap_image(picture, heat)
    assert image.shape == picture.shape
    left, right = image[:, :300].reshape(-1, 3).mean(axis=0), image[:, 340:].reshape(-1, 3).mean(axis=0)
    assert left[2] > left[0] and right[0] > right[2]  # BGR: red on the hot half, blue on the cold one
