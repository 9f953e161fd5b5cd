"""The AWS DeepRacer simulator's rules, for models trained in it (AWS exports).

Two rules differ from racer's own car, which drives open loop (throttle x the ESC's top speed) and
leaves the track when its centre does (docs/simulator.md):

- speed: the action's speed is the target wheel speed in m/s. racer keeps the console's max-speed
  setting as a linear scale on it, so 1.0 is exactly the AWS simulator and 0.5 drives every
  action at half its speed, as the car's setting scales its throttle.
- off track: only when all four wheel centres are off the road. With the wheel track not in the
  facts, the rule is taken as the car's centre lying `AWS_OFF_TRACK_M` beyond the road's edge:
  the smallest such distance at which the public simtraces' `off_track` rows end an episode
  (legacy 0.151 m, drfc1 0.173 m, DRoA 0.302 m; `tests/test_sim_rules.py` measures it).
"""
from __future__ import annotations

import math

from car.actuators.base import Driver
from car.policy.bundle import Bundle
from car.policy.decode import speed_for_throttle

from .adapters import SimActuator
from .world import Simulator

AWS_OFF_TRACK_M = 0.15


def is_aws_export(bundle: Bundle) -> bool:
    """A model trained under the AWS simulator's rules: a frozen TensorFlow graph, a bundle converted
    from one, or racer's console PPO (`sim2real.ppo`, which trains under these rules)."""
    return (bundle.kind == "tensorflow" or bundle.info.get("source_kind") == "tensorflow"
            or bundle.info.get("trainer") == "ppo")


class ActionSpeedActuator(SimActuator):
    """The simulated car driven with the AWS simulator's speed rule: the normalised throttle the car
    stack sends (the navigation node's parabola x the max-speed setting) is turned back into the
    action's speed, and the wheels aim for that speed x the setting."""

    def __init__(self, sim: Simulator, model_max_speed: float, max_speed_setting: float) -> None:
        if model_max_speed <= 0.0 or not 0.0 < max_speed_setting <= 1.0:
            raise ValueError("action speeds need a positive model max speed and a max-speed setting in (0, 1]")
        self._model_max_speed = model_max_speed
        self._setting = max_speed_setting
        super().__init__(sim)

    def set(self, steering: float, throttle: float) -> None:
        # The parabola passes 1 at 5/6 of the model's max speed and is clipped there, so a full
        # throttle is the max speed itself.
        if abs(throttle) >= self._setting:
            speed = math.copysign(self._model_max_speed, throttle)
        else:
            speed = speed_for_throttle(throttle, self._model_max_speed, self._setting)
        super().set(steering, speed * self._setting / self._sim.vehicle.params.max_speed_mps)


def aws_rules(sim: Simulator, bundle: Bundle, max_speed_setting: float) -> Driver:
    """Put `sim` under the AWS simulator's rules for `bundle`: its off-track test, and the actuator
    (to hand to the car stack) that drives at action speeds."""
    sim.off_track_tolerance = AWS_OFF_TRACK_M
    return ActionSpeedActuator(sim, bundle.metadata.max_speed, max_speed_setting)
