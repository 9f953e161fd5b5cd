"""The gymnasium environment, its DeepRacer params and rewards, and the wrappers on a foreign env."""
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from car.policy.preprocess import Preprocessor
from sim2real.envs import (
    ENV_ID,
    ActionDelay,
    AugmentObservation,
    DeepRacerEnv,
    DomainRandomization,
    PreprocessObservation,
    make,
)
from sim2real.imitation import SPEC
from sim2real.randomize import Randomization
from sim2real.reward import ParamsBuilder, RewardFunctionError, follow_centre_line, load_reward_function, reward
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator

PARAM_KEYS = {"all_wheels_on_track", "x", "y", "heading", "progress", "steps", "speed", "steering_angle",
              "track_width", "track_length", "distance_from_center", "is_left_of_center", "waypoints",
              "closest_waypoints", "is_offtrack", "is_reversed", "projection_distance", "is_crashed",
              "closest_objects", "objects_location", "objects_left_of_center", "object_in_camera",
              "objects_speed", "objects_heading", "objects_distance", "objects_distance_from_center"}


class ChaseDot(gym.Env):
    """A foreign image env: an RGB 48x64 frame with a red dot; it records the actions it receives."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = spaces.Box(0, 255, (48, 64, 3), np.uint8)
        self.action_space = spaces.Discrete(3)
        self.received = []

    def _frame(self):
        frame = np.full((48, 64, 3), 90, np.uint8)
        frame[20:28, 28:36] = (255, 0, 0)
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._frame(), {}

    def step(self, action):
        self.received.append(int(action))
        return self._frame(), 1.0, False, False, {}


def test_registered_env_passes_the_gymnasium_checker():
    env = gym.make(ENV_ID, track="reinvent_base", max_steps=50)
    assert env.observation_space.shape == (120, 160, 3)
    check_env(env.unwrapped, skip_render_check=True)


def test_step_gives_deepracer_params_to_the_reward_function():
    seen = []

    def my_reward(params):
        seen.append(params)
        return 2.0 if params["all_wheels_on_track"] else 0.0

    env = DeepRacerEnv("reinvent_base", reward_function=my_reward, random_start=False)
    obs, info = env.reset(seed=1)
    assert obs.shape == (120, 160, 3) and set(info["params"]) == PARAM_KEYS
    obs, value, terminated, truncated, info = env.step(np.array([0.0, 0.0], np.float32))
    params = seen[-1]
    assert set(params) == PARAM_KEYS and value == 2.0 and not terminated and not truncated
    assert params["steps"] == 1 and params["steering_angle"] == pytest.approx(0.0)
    assert params["speed"] == pytest.approx(2.25)  # the action's speed: midpoint of 0.5..4.0 m/s
    assert params["track_width"] == pytest.approx(2 * env.sim.track.half_width[0], rel=0.05)
    assert params["closest_waypoints"] in ([0, 1], [1, 2]) and len(params["waypoints"]) == env.sim.track.waypoint_count
    assert params["distance_from_center"] < 0.01 and -180 <= params["heading"] <= 180
    assert not params["is_offtrack"] and not params["is_reversed"]


def test_driving_off_the_track_ends_the_episode_with_the_offtrack_flag():
    env = DeepRacerEnv("reinvent_base", random_start=False)
    env.reset(seed=0)
    for _ in range(300):
        _, value, terminated, truncated, info = env.step(np.array([1.0, 1.0], np.float32))
        if terminated:
            break
    assert terminated and info["params"]["is_offtrack"] and value == pytest.approx(1e-3)
    assert not info["params"]["all_wheels_on_track"]


def test_truncation_and_discrete_actions():
    space = {"action_space": [{"steering_angle": -20, "speed": 1.0}, {"steering_angle": 0, "speed": 1.0},
                              {"steering_angle": 20, "speed": 1.0}]}
    env = DeepRacerEnv("reinvent_base", action_space=space, max_steps=3, random_start=False)
    assert env.action_space == spaces.Discrete(3)
    env.reset(seed=0)
    results = [env.step(1) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]
    assert results[0][4]["params"]["steering_angle"] == 0 and results[0][4]["params"]["speed"] == 1.0


def test_params_wheels_and_sides():
    track = Track.load("reinvent_base")
    sim = Simulator(track)
    build = ParamsBuilder(track)
    near_edge = track.half_width[0] - 0.05  # centre on track, outer wheels past the border
    info = sim.reset(start_index=0, offset=near_edge)
    params = build(info, 0, 0.0, 0.0)
    assert params["is_left_of_center"] and not params["is_offtrack"] and not params["all_wheels_on_track"]
    info = sim.reset(start_index=0, offset=-0.1)
    params = build(info, 0, 0.0, 0.0)
    assert not params["is_left_of_center"] and params["all_wheels_on_track"]
    assert params["distance_from_center"] == pytest.approx(0.1, abs=1e-6)
    assert follow_centre_line(params) == 0.5


def test_user_reward_files(tmp_path):
    good = tmp_path / "reward.py"
    good.write_text("import math\n\n\ndef reward_function(params):\n"
                    "    return math.exp(-params['distance_from_center'])\n")
    assert load_reward_function(good)({"distance_from_center": 0.0}) == 1.0
    cases = {"missing.py": None, "empty.py": "x = 1\n", "broken.py": "def reward_function(params)\n",
             "raises.py": "raise RuntimeError('no')\n"}
    messages = {"missing.py": "no such reward file", "empty.py": "defines no reward_function",
                "broken.py": "failed to load: SyntaxError", "raises.py": "failed to load: RuntimeError: no"}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(RewardFunctionError, match=messages[name]):
            load_reward_function(tmp_path / name)
    with pytest.raises(RewardFunctionError, match="returned 'fast'; expected a finite number"):
        reward(lambda p: "fast", {})
    with pytest.raises(RewardFunctionError, match="returned nan"):
        reward(lambda p: math.nan, {})


def test_wrappers_work_on_a_foreign_image_env():
    env = ActionDelay(ChaseDot(), steps=2)
    env.reset(seed=0)
    for action in (1, 2, 1, 2):
        env.step(action)
    assert env.unwrapped.received == [0, 0, 1, 2]

    randomized = DomainRandomization(ChaseDot(), Randomization({"sensor_noise": (8.0, 8.0)}), seed=0)
    obs, _ = randomized.reset(seed=0)
    assert np.std(obs[:10, :10].astype(float)) == pytest.approx(8.0, rel=0.25)
    assert randomized.domain.values == {"sensor_noise": 8.0}

    augmented = AugmentObservation(ChaseDot(), "strong", seed=1)
    frames = [augmented.reset(seed=0)[0]] + [augmented.step(0)[0] for _ in range(5)]
    assert any(not np.array_equal(f, ChaseDot()._frame()) for f in frames)

    pre = PreprocessObservation(ChaseDot(), SPEC, colour_order="rgb")
    obs, _ = pre.reset(seed=0)
    expected = Preprocessor(SPEC)(ChaseDot()._frame()[..., ::-1].copy())[0]
    assert obs.shape == pre.observation_space.shape == SPEC.input_shape()[1:] == (2, 48, 80)
    np.testing.assert_allclose(obs, expected, atol=1e-6)


def test_wrapper_errors():
    flat = gym.make("CartPole-v1")
    for wrapper in (lambda e: DomainRandomization(e), lambda e: AugmentObservation(e),
                    lambda e: PreprocessObservation(e, SPEC)):
        with pytest.raises(ValueError, match="needs HxWx3 uint8 image observations"):
            wrapper(flat)
    with pytest.raises(ValueError, match="0 or more steps"):
        ActionDelay(ChaseDot(), steps=-1)
    with pytest.raises(ValueError, match="colour_order must be 'bgr' or 'rgb'"):
        PreprocessObservation(ChaseDot(), SPEC, colour_order="grb")
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        DeepRacerEnv(max_steps=0)


def test_randomization_wrapper_drives_our_simulator():
    env = make("reinvent_base", randomization="strong", augmentation="light", spec=SPEC, seed=4, max_steps=20)
    obs, _ = env.reset(seed=0)
    assert obs.shape == SPEC.input_shape()[1:] and obs.dtype == np.float32 and 0.0 <= obs.min() and obs.max() <= 1.0
    sim = env.unwrapped.sim
    domain = sim.domain
    assert domain.values and sim.vehicle.params.delay_s == pytest.approx(domain.values["delay_ms"] / 1000)
    env.reset(seed=0)
    assert sim.domain != domain
    assert math.isfinite(env.step(env.action_space.sample())[1])
