"""The simulated world: the expert laps every track, lap counting and progress, the vehicle's dynamics
(delay, steering lag, bicycle geometry, step independence), and the sim actuator and camera."""
import math
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

from car.actuators.base import ActuatorFault
from sim2real.sim.adapters import SimActuator, SimCamera
from sim2real.sim.expert import PurePursuitExpert
from sim2real.sim.track import Track
from sim2real.sim.vehicle import Vehicle, VehicleParams
from sim2real.sim.world import Simulator

CLOSED = [name for name in Track.names() if name != "Straight_track"]
# A car whose wheels take the commanded angle at once and turn it as the bicycle geometry says.
INSTANT = VehicleParams(steering_lag_s=0.0, yaw_gain=1.0, speed_gain=1.0)


def drive_expert(sim, expert, max_time, stop_on_lap=True):
    infos = [sim.info]
    while sim.time < max_time:
        info = sim.info
        sim.apply(*expert.act(info.x, info.y, info.yaw, info.speed, sim.vehicle.state.steering_rad))
        infos.append(sim.step())
        if infos[-1].off_track or (stop_on_lap and infos[-1].lap_completed):
            break
    return infos


@pytest.mark.parametrize("name", CLOSED)
def test_expert_completes_a_lap_on_every_closed_track(name):
    track = Track.load(name)
    sim = Simulator(track)
    infos = drive_expert(sim, PurePursuitExpert(track), max_time=60.0)
    last = infos[-1]
    assert last.lap_completed and last.laps == 1
    assert not any(i.off_track for i in infos)
    assert last.progress == 100.0
    # A 1/18 car: between 1 and 2.5 m/s on average, no faster than 2.5 m/s anywhere.
    assert track.length / 2.5 < last.lap_time < track.length / 1.0
    assert max(i.speed for i in infos) < 2.5
    progress = [i.progress for i in infos]
    assert all(b >= a for a, b in pairwise(progress))


def test_expert_reaches_the_end_of_the_open_track():
    track = Track.load("Straight_track")
    sim = Simulator(track)
    infos = drive_expert(sim, PurePursuitExpert(track), max_time=10.0)
    assert infos[-1].lap_completed and infos[-1].progress == 100.0
    assert 2.0 < infos[-1].lap_time < 6.0
    assert all(b.progress >= a.progress for a, b in pairwise(infos))


def test_expert_recovers_from_off_centre_starts():
    # From rest, 0.15 m off the centre line and turned 10 deg either way, at 6 points of each
    # training track, it rejoins the line it drives from a centred start (it cuts corners, so
    # not the centre) within 4 s. Pointed away from the line in Tokyo's hairpin it can leave the
    # track (the expert before the racing line did too, at other points): 1 miss in 20 allowed.
    recovered, misses = 0, []
    for name in ("reinvent_base", "Spain_track", "Tokyo_Training_track"):
        track = Track.load(name)
        expert = PurePursuitExpert(track)
        sim = Simulator(track)
        for start in range(0, track.waypoint_count, track.waypoint_count // 5):
            sim.reset(start)
            line = drive_expert(sim, expert, max_time=4.0)[-1]
            for offset, yaw_deg in ((0.15, 10.0), (0.15, -10.0), (-0.15, 10.0), (-0.15, -10.0)):
                sim.reset(start, offset, math.radians(yaw_deg))
                infos = drive_expert(sim, expert, max_time=4.0)
                if (not any(i.off_track for i in infos) and abs(infos[-1].lateral - line.lateral) < 0.1
                        and infos[-1].progress / 100.0 * track.length > 4.0):
                    recovered += 1
                else:
                    misses.append((name, start, offset, yaw_deg))
    assert recovered >= 19 * len(misses), misses
    assert all(name == "Tokyo_Training_track" for name, *_ in misses), misses


@pytest.mark.parametrize("name", ["2024_reinvent_champ_ccw", "Bowtie_track", "Oval_track", "reInvent2019_track"])
def test_expert_laps_a_worn_car_it_takes_for_the_nominal_one(name):
    # A camera policy cannot see the car's delay or servo: the expert's line and speed must hold
    # when it does not know them either (the `tired_car` held-out domain's car, full speed).
    track = Track.load(name)
    worn = replace(VehicleParams(), delay_s=0.12, steering_trim=0.05, steering_gain=0.87, throttle_gain=1.12)
    sim = Simulator(track, vehicle=worn)
    expert = PurePursuitExpert(track, VehicleParams())
    for start in (0, track.waypoint_count // 2):
        sim.reset(start)
        infos = drive_expert(sim, expert, max_time=60.0)
        assert infos[-1].lap_completed and not any(i.off_track for i in infos), (name, start, infos[-1].progress)


def test_reset_places_the_car_at_the_start():
    track = Track.load("reinvent_base")
    sim = Simulator(track)
    info = sim.reset(10, 0.1, 0.2)
    x, y, yaw = track.start_pose(10, 0.1)
    assert (info.x, info.y, info.yaw) == pytest.approx((x, y, yaw + 0.2))
    assert info.time == 0.0 and info.speed == 0.0 and info.progress == 0.0 and info.laps == 0
    assert info.s == pytest.approx(track.waypoint_s[10], abs=0.01)
    assert info.lateral == pytest.approx(0.1, abs=1e-6)
    assert not info.off_track


def test_time_advances_by_dt_and_the_latched_command_holds():
    sim = Simulator(Track.load("reinvent_base"), dt=0.05)
    sim.apply(0.0, 0.25)
    for _ in range(40):
        info = sim.step()
    assert info.time == pytest.approx(2.0) and sim.time == info.time
    assert info.speed == pytest.approx(0.25 * 4.0 * VehicleParams().speed_gain, rel=1e-3)


def test_driving_straight_on_a_curve_goes_off_track():
    track = Track.load("reinvent_base")
    sim = Simulator(track)
    sim.apply(0.0, 0.4)
    infos = [sim.step() for _ in range(150)]
    first_off = next(i for i in infos if i.off_track)
    assert 3.0 < first_off.s < 6.0  # past the first straight, into the first corner
    assert not any(i.lap_completed for i in infos)


def test_two_laps_are_counted_with_plausible_lap_times():
    track = Track.load("Oval_track")
    sim = Simulator(track)
    infos = drive_expert(sim, PurePursuitExpert(track), max_time=40.0, stop_on_lap=False)
    laps = [i for i in infos if i.lap_completed]
    assert len(laps) >= 2 and [i.laps for i in laps[:2]] == [1, 2]
    first, second = laps[0].lap_time, laps[1].lap_time
    assert second < first < second + 1.0  # the second lap starts at speed
    # The lap time is where the line was crossed, not the step after it.
    assert laps[0].time - sim.dt < laps[0].lap_time < laps[0].time - 1e-6
    after = infos[infos.index(laps[0]) + 1]
    assert after.progress < 2.0 and after.lap_time < 2 * sim.dt


def test_reversing_over_the_start_line_is_not_a_lap():
    track = Track.load("reinvent_base")
    sim = Simulator(track)
    sim.apply(0.0, -0.3)
    backward = [sim.step() for _ in range(30)]
    assert backward[-1].s > track.length - 2.0  # behind the start line now
    sim.apply(0.0, 0.3)
    forward = [sim.step() for _ in range(45)]
    assert forward[-1].s < 2.0  # back over the line, forwards
    assert all(i.laps == 0 and not i.lap_completed for i in backward + forward)
    assert max(i.progress for i in backward + forward) < 10.0


def test_progress_never_decreases_within_a_lap_when_the_car_backs_up():
    sim = Simulator(Track.load("reinvent_base"))
    sim.reset(5)
    sim.apply(0.0, 0.4)
    ahead = [sim.step() for _ in range(15)]
    sim.apply(0.0, -0.4)
    back = [sim.step() for _ in range(15)]
    assert back[-1].s < ahead[-1].s - 0.5
    progress = [i.progress for i in ahead + back]
    assert all(b >= a for a, b in pairwise(progress))
    assert progress[-1] == pytest.approx(max(progress)) and progress[-1] > 5.0


def test_actuation_delay_measurably_delays_the_yaw_response():
    track = Track.load("reinvent_base")
    yaws = {}
    for delay in (0.0, 0.2):
        sim = Simulator(track, vehicle=replace(INSTANT, delay_s=delay))
        sim.apply(0.0, 0.3)
        for _ in range(15):
            sim.step()
        start_yaw = sim.info.yaw
        sim.apply(1.0, 0.3)
        yaws[delay] = np.array([sim.step().yaw - start_yaw for _ in range(10)])
    assert yaws[0.0][0] > 0.1
    np.testing.assert_allclose(yaws[0.2][:2], 0.0, atol=1e-12)
    # 0.2 s is three control periods: the delayed car turns the same way, three steps later.
    np.testing.assert_allclose(yaws[0.2][3:], yaws[0.0][:-3], atol=1e-3)


@pytest.mark.parametrize("params, tolerance", [(replace(INSTANT, delay_s=0.03), 1e-9),
                                               (VehicleParams(delay_s=0.03), 1e-4)])
def test_integration_does_not_depend_on_the_step(params, tolerance):
    # Exact for instant steering; the lagging wheels are integrated in sub-steps of 10 ms.
    coarse, fine = Vehicle(params), Vehicle(params)
    for car in (coarse, fine):
        car.reset(0.0, 0.0, 0.0)
        car.command(0.7, 0.5)
    coarse.advance(1.0)
    for _ in range(1000):
        fine.advance(0.001)
    assert (coarse.state.x, coarse.state.y, coarse.state.yaw) == pytest.approx(
        (fine.state.x, fine.state.y, fine.state.yaw), abs=tolerance
    )


def test_wheels_follow_the_command_through_the_steering_lag():
    car = Vehicle(VehicleParams())
    car.reset(0.0, 0.0, 0.0)
    car.command(1.0, 0.25)
    tau = car.params.steering_lag_s
    car.advance(tau)
    # One time constant: 1 - 1/e of the way.
    assert car.state.steering_rad == pytest.approx((1 - math.exp(-1)) * car.params.max_steering_rad, rel=1e-9)
    car.advance(4 * tau)
    assert car.state.steering_rad == pytest.approx(car.params.max_steering_rad, rel=0.02)


@pytest.mark.parametrize("params", [INSTANT, VehicleParams()])
def test_steady_turn_follows_the_bicycle_geometry(params):
    car = Vehicle(replace(params, delay_s=0.0))
    car.reset(0.0, 0.0, 0.0)
    car.command(1.0, 0.25)
    car.advance(12.0)  # long enough for the wheels and the speed to settle
    points = []
    for _ in range(40):
        car.advance(0.05)
        points.append((car.state.x, car.state.y))
    points = np.array(points)
    # The car turns `yaw_gain` times as tightly as the wheel angle alone says.
    rear_radius = params.wheelbase_m / (params.yaw_gain * math.tan(params.max_steering_rad))
    centre_radius = math.hypot(rear_radius, params.wheelbase_m / 2)
    # Least-squares circle: x^2 + y^2 = 2 a x + 2 b y + c, radius^2 = c + a^2 + b^2.
    design = np.column_stack([2 * points, np.ones(len(points))])
    (a, b, c), *_ = np.linalg.lstsq(design, (points**2).sum(axis=1), rcond=None)
    assert math.sqrt(c + a * a + b * b) == pytest.approx(centre_radius, rel=1e-6)
    assert np.linalg.norm(points - (a, b), axis=1) == pytest.approx(centre_radius, rel=1e-6)
    assert car.state.speed == pytest.approx(1.0 * params.speed_gain, rel=1e-6)


def test_domain_randomization_parameters_change_the_response():
    base = Vehicle(INSTANT)
    trimmed = Vehicle(replace(base.params, steering_trim=0.1, throttle_gain=0.5))
    for car in (base, trimmed):
        car.reset(0.0, 0.0, 0.0)
        car.command(0.0, 0.5)
        car.advance(1.0)
    assert base.state.yaw == 0.0 and trimmed.state.yaw > 0.05
    assert trimmed.state.speed == pytest.approx(0.5 * base.state.speed, rel=1e-3)


def test_commands_must_be_finite():
    sim = Simulator(Track.load("reinvent_base"))
    with pytest.raises(ValueError):
        sim.apply(float("nan"), 0.0)


def test_sim_actuator_is_a_driver():
    sim = Simulator(Track.load("reinvent_base"))
    actuator = SimActuator(sim)
    actuator.set(0.0, 0.5)
    for _ in range(30):
        sim.step()
    assert sim.info.speed == pytest.approx(2.0 * sim.vehicle.params.speed_gain, rel=0.01)
    actuator.neutral()
    for _ in range(30):
        sim.step()
    assert abs(sim.info.speed) < 0.01
    actuator.close()
    with pytest.raises(ActuatorFault):
        actuator.set(0.0, 0.5)


def test_sim_camera_frames_are_stamped_with_sim_time():
    sim = Simulator(Track.load("reinvent_base"))
    camera = SimCamera(sim)
    frame, stamp = camera.read()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8 and stamp == 0.0
    sim.apply(0.3, 0.3)
    for _ in range(10):
        sim.step()
    moved, stamp = camera.read()
    assert stamp == pytest.approx(10 / 15)
    assert np.abs(moved.astype(int) - frame).mean() > 1.0


def test_a_new_track_is_drawn_from_the_next_reset():
    track = Track.load("reinvent_base")
    sim = Simulator(track)
    sim.reset(start_index=0)
    wide = sim.render()
    sim.set_track(track.with_width(0.7))
    sim.reset(start_index=0)
    narrow = sim.render()
    fresh = Simulator(track.with_width(0.7))
    fresh.reset(start_index=0)
    np.testing.assert_array_equal(narrow, fresh.render())  # drawn as a simulator made for it draws it
    assert np.abs(narrow.astype(float) - wide.astype(float)).mean() > 5.0  # borders 0.11 m further in
