"""The lap-time table: the expert held to the max-speed setting, the model beside it."""
import pytest

from car.config import DEFAULT_MODEL
from sim2real.laptimes import expert_laps, lap_time_table
from sim2real.sim.track import Track


def test_the_expert_is_held_to_the_max_speed_setting():
    track = Track.load("Oval_track")
    fast, slow = expert_laps(track, 1, 1.0), expert_laps(track, 1, 0.25)
    assert fast.completed_laps == slow.completed_laps == 1
    # At 0.25 the open-loop ESC tops out at 1.04 m/s, below the expert's 2 m/s plan.
    assert slow.laps[0].time_s > track.length / 1.05 > fast.laps[0].time_s


def test_lap_time_table_puts_the_model_next_to_the_expert():
    (row,) = lap_time_table(DEFAULT_MODEL, ["Oval_track"], 1.0, laps=1)
    assert row["track"] == "Oval_track" and len(row["model"]) == len(row["expert"]) == 1
    model, expert = row["model"][0], row["expert"][0]
    assert model is not None and expert is not None
    assert row["ratio"] == pytest.approx(model / expert, abs=0.002)
    # The model card's bar: within 10 % of the expert.
    assert 0.9 <= row["ratio"] <= 1.1
