"""Action decoding follows the DeepRacer navigation node, so existing models drive as their owners expect."""
from __future__ import annotations

import math

import numpy as np
import pytest

from car.policy.decode import ActionDecoder, speed_parabola, throttle_for
from car.policy.metadata import parse_metadata


def discrete(*actions: tuple[float, float]):
    return parse_metadata({"action_space": [{"steering_angle": s, "speed": v} for s, v in actions]})


def continuous(algorithm: str, steering=(-30, 30), speed=(1, 2)):
    return parse_metadata({
        "action_space_type": "continuous",
        "training_algorithm": algorithm,
        "action_space": {"steering_angle": {"low": steering[0], "high": steering[1]},
                         "speed": {"low": speed[0], "high": speed[1]}},
    })


def test_documented_parabola_for_max_speed_0_8():
    a, b = speed_parabola(0.8)
    assert a == pytest.approx(-1.875) and b == pytest.approx(2.75)


def test_documented_throttles():
    assert throttle_for(0.4, 0.8) == pytest.approx(0.8)
    assert throttle_for(0.2, 0.8) == pytest.approx(0.475)
    assert throttle_for(0.8, 0.8) == pytest.approx(1.0)
    assert throttle_for(0.0, 0.8) == 0.0
    assert throttle_for(0.2, 0.8, max_speed_setting=0.4) == pytest.approx(0.19)


def test_speed_above_the_model_max_is_capped_and_reverse_keeps_its_sign():
    assert throttle_for(1.5, 0.8) == pytest.approx(1.0)
    assert throttle_for(-0.4, 0.8) == pytest.approx(-0.8)


def test_parabola_needs_a_positive_max_speed():
    with pytest.raises(ValueError, match="max speed must be positive"):
        speed_parabola(0.0)


def test_discrete_takes_the_argmax_and_normalises_steering_by_the_largest_angle():
    decode = ActionDecoder(discrete((-30, 0.4), (15, 0.8), (0, 0.4), (30, 0.8)))
    out = decode(np.array([[0.1, 0.6, 0.2, 0.1]], dtype=np.float32))
    assert out.action_index == 1
    assert (out.steering_deg, out.speed) == (15.0, 0.8)
    assert out.steering == pytest.approx(0.5)
    assert out.throttle == pytest.approx(1.0)
    left = decode(np.array([0, 0, 0, 1.0]))
    right = decode(np.array([1.0, 0, 0, 0]))
    assert (left.steering, right.steering) == (1.0, -1.0)
    assert right.throttle == pytest.approx(0.8)


def test_discrete_steering_uses_the_models_own_max_not_30():
    out = ActionDecoder(discrete((-20, 1), (10, 1), (20, 1)))(np.array([0, 1.0, 0]))
    assert out.steering == pytest.approx(0.5)


def test_continuous_ppo_clips_then_rescales():
    decode = ActionDecoder(continuous("clipped_ppo"))
    out = decode(np.array([2.5, -3.0]))
    assert (out.steering_deg, out.speed, out.steering) == (30.0, 1.0, 1.0)
    assert out.throttle == pytest.approx(throttle_for(1.0, 2.0))
    mid = decode(np.array([0.0, 0.0]))
    assert (mid.steering_deg, mid.speed) == (0.0, 1.5)
    assert mid.throttle == pytest.approx(-1.2 / 4 * 2.25 + 2.2 / 2 * 1.5)
    quarter = decode(np.array([-0.5, 0.5]))
    assert (quarter.steering_deg, quarter.speed, quarter.steering) == (-15.0, 1.75, -0.5)
    assert quarter.action_index is None


def test_continuous_sac_applies_tanh():
    decode = ActionDecoder(continuous("sac", speed=(0.5, 1.0)))
    out = decode(np.array([math.atanh(0.5), math.atanh(-1 / 3)]))
    assert out.steering_deg == pytest.approx(15.0)
    assert out.steering == pytest.approx(0.5)
    assert out.speed == pytest.approx(0.5 + (1 - 1 / 3) / 2 * 0.5)
    saturated = decode(np.array([40.0, 40.0]))
    assert saturated.steering_deg == pytest.approx(30.0) and saturated.speed == pytest.approx(1.0)


def test_asymmetric_steering_range_normalises_by_the_largest_magnitude():
    out = ActionDecoder(continuous("clipped_ppo", steering=(-10, 20)))(np.array([-1.0, 0.0]))
    assert out.steering_deg == -10.0 and out.steering == pytest.approx(-0.5)


def test_bad_outputs_are_errors_not_commands():
    decode = ActionDecoder(discrete((-30, 1), (30, 1)))
    with pytest.raises(ValueError, match="not finite"):
        decode(np.array([np.nan, 0.2]))
    with pytest.raises(ValueError, match="policy gave 3 outputs for 2 actions"):
        decode(np.array([0.1, 0.2, 0.7]))
    with pytest.raises(ValueError, match="continuous policy gave 3 outputs, expected 2"):
        ActionDecoder(continuous("sac"))(np.zeros(3))
