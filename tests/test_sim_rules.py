"""The AWS simulator's rules: where an episode goes off track, action speed times the max-speed
setting, and AWS exports evaluated and demoed under them."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from car.policy.bundle import load_bundle
from car.policy.decode import throttle_for
from car.policy.inference import Policy
from model_factory import PPO_TAR
from sim2real.drive import run_laps
from sim2real.gap import EvalConfig, NamedDomain, evaluate
from sim2real.sim.rules import AWS_OFF_TRACK_M, ActionSpeedActuator, aws_rules, is_aws_export
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator

SIMTRACE = Path(__file__).resolve().parent / "fixtures" / "deepracer" / "simtrace"


def beyond_the_edge(track, x, y):
    """How far (m) a point lies outside the road; negative inside."""
    outside = -cv2.pointPolygonTest(track.outline, (x, y), True)
    if track.hole is not None:
        outside = max(outside, cv2.pointPolygonTest(track.hole, (x, y), True))
    return outside


def test_off_track_distance_is_where_the_simtraces_end_episodes():
    ends = []
    for name, track in (("drfc1_training_reinvent_base_0-iteration.csv", "reinvent_base"),
                        ("droa_eval_spain_0-iteration.csv", "Spain_track"),
                        ("legacy2019_training_reInvent2019_continuous.csv", "reInvent2019_track")):
        track = Track.load(track)
        with open(SIMTRACE / name, newline="") as f:
            ends += [beyond_the_edge(track, float(r["X"]), float(r["Y"])) for r in csv.DictReader(f)
                     if r["episode_status"] == "off_track"]
    assert len(ends) >= 20
    # The AWS simulator never ended an episode with the car's centre nearer the road than this.
    assert min(ends) - 0.005 <= AWS_OFF_TRACK_M <= min(ends)


def test_aws_rules_let_the_centre_leave_the_road_further():
    track = Track.load("reinvent_base")
    sim = Simulator(track)
    x, y, _ = track.start_pose(0, track.half_width[0] + 0.1)
    sim.vehicle.reset(x, y, 0.0)
    assert sim.step().off_track
    with load_bundle(PPO_TAR) as bundle:
        aws_rules(sim, bundle, 1.0)
    sim.vehicle.reset(x, y, 0.0)
    assert not sim.step().off_track


@pytest.mark.parametrize("action_speed, setting", [(1.0, 1.0), (2.0, 1.0), (1.0, 0.5), (0.5, 0.8)])
def test_action_speed_is_the_wheel_speed_times_the_setting(action_speed, setting):
    sim = Simulator(Track.load("reinvent_base"))
    actuator = ActionSpeedActuator(sim, model_max_speed=2.0, max_speed_setting=setting)
    # What the car stack sends for this action: the navigation node's parabola x the setting.
    actuator.set(0.0, throttle_for(action_speed, 2.0) * setting)
    for _ in range(45):
        sim.step()
    assert sim.info.speed == pytest.approx(action_speed * setting * sim.vehicle.params.speed_gain, rel=1e-3)
    with pytest.raises(ValueError):
        ActionSpeedActuator(sim, model_max_speed=2.0, max_speed_setting=0.0)


def test_an_aws_export_is_evaluated_under_the_aws_rules(tmp_path):
    with load_bundle(PPO_TAR) as bundle:
        assert is_aws_export(bundle)
    results = evaluate(PPO_TAR, [NamedDomain("nominal", {})],
                       EvalConfig(tracks=("reinvent_base",), starts=1, max_speed=1.0, lap_timeout_s=3.0))
    assert results["nominal"]["laps"] == 1 and results["nominal"]["tracks"] == ["reinvent_base"]


def test_headless_demo_drives_an_aws_export_under_the_aws_rules():
    proc = subprocess.run([sys.executable, "-m", "racer.cli", "demo", "--model", str(PPO_TAR), "--track",
                           "reinvent_base", "--laps", "1", "--headless", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert "AWS simulator's rules" in proc.stderr
    demo = json.loads(proc.stdout)["laps"]
    expected = {}
    with load_bundle(PPO_TAR) as bundle:
        model = Policy(bundle).model()
        for rules in (True, False):
            sim = Simulator(Track.load("reinvent_base"))
            sim.reset()
            driver = aws_rules(sim, bundle, 0.5) if rules else None
            expected[rules] = run_laps(sim, model, laps=1, max_speed=0.5, driver=driver).to_json("")["laps"]
    # This fixture model leaves the road either way, later under the AWS rules (0.15 m of grace,
    # half its action speeds): the demo's lap is that one.
    assert expected[True] != expected[False]
    assert demo == expected[True]
