"""Simtrace reading and the steering-lag fit to a real AWS console evaluation, replayed open loop."""
import math
from pathlib import Path

import numpy as np
import pytest

from sim2real.dynamics_fit import fit_speed, fit_steering, lagged_mean, replay_yaw_rate, vehicle_from_fits
from sim2real.sim.vehicle import VehicleParams
from sim2real.simtrace import Simtrace, SimtraceError

SIMTRACE = Path(__file__).resolve().parent / "fixtures" / "deepracer" / "simtrace"
CONSOLE = SIMTRACE / "console_eval_reinvent_base_0-iteration.csv"


@pytest.fixture(scope="module")
def console():
    return Simtrace.load(CONSOLE)


def test_simtrace_rows_episodes_and_motion(console):
    assert len(console.x) == 737 and [r.stop - r.start for r in console.episodes()] == [247, 244, 246]
    dt, speed, yaw_rate = console.motion(console.episodes()[0])
    assert len(dt) == 246 and np.median(dt) == pytest.approx(1 / 15, abs=0.001)
    # The console evaluation drives at its 1 m/s actions.
    assert np.median(speed) == pytest.approx(1.07, abs=0.05)
    assert np.abs(yaw_rate).max() < 5.0
    assert console.steer.max() == pytest.approx(math.radians(30.0))


def test_a_file_that_is_not_a_simtrace(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SimtraceError, match="not a DeepRacer simtrace"):
        Simtrace.load(path)


def test_lagged_mean_of_a_step():
    dt = np.full(3, 0.5)
    out = lagged_mean(np.ones(3), dt, 0.5)
    # Mean of 1 - exp(-t / tau) over [0, tau] is exp(-1), then the lag carries on from 1 - exp(-1).
    assert out[0] == pytest.approx(math.exp(-1.0))
    assert out[1] == pytest.approx(1.0 - math.exp(-1.0) * (1.0 - math.exp(-1.0)))
    np.testing.assert_array_equal(lagged_mean(np.ones(3), dt, 0.0), np.ones(3))


def test_steering_lag_fitted_to_the_console_evaluation(console):
    fit = fit_steering(console)
    assert fit.tau_s == pytest.approx(0.49, abs=0.02)
    assert fit.gain == pytest.approx(0.61, abs=0.02)
    assert fit.r2 >= 0.94
    instant = fit_steering(console, tau=0.0)
    assert instant.r2 < 0.3 < fit.r2 - 0.6


def test_nominal_car_is_the_fitted_one(console):
    steering, speed = fit_steering(console), fit_speed(console)
    nominal = VehicleParams()
    assert nominal.steering_lag_s == pytest.approx(steering.tau_s, abs=0.005)
    assert nominal.yaw_gain == pytest.approx(steering.gain, abs=0.005)
    assert nominal.speed_time_constant_s == pytest.approx(speed.tau_s, abs=0.005)
    assert nominal.speed_gain == pytest.approx(speed.gain, abs=0.005)
    assert vehicle_from_fits(steering, speed).delay_s == 0.0


def test_replaying_the_commands_open_loop_reproduces_the_yaw_rate(console):
    # The bar: R^2 of at least 0.9 with the nominal car, against 0.13 with instant steering.
    assert replay_yaw_rate(console, VehicleParams()) >= 0.9
    instant = VehicleParams(steering_lag_s=0.0, yaw_gain=1.0, delay_s=0.05)
    assert replay_yaw_rate(console, instant) < 0.3
