"""The official tracks: lengths and directions, projection onto the centre line, on/off track, the
start pose, and agreement with real DeepRacer simtraces."""
import csv
import math
from pathlib import Path

import numpy as np
import pytest

from sim2real.sim.track import TRACKS_DIR, Track

SIMTRACE = Path(__file__).resolve().parent / "fixtures" / "deepracer" / "simtrace"

# Centre-line length (m) and direction, from tests/fixtures/deepracer/PROVENANCE.md section 2.
OFFICIAL = {
    "reinvent_base": (17.71, "ccw"),
    "Oval_track": (19.55, "ccw"),
    "Straight_track": (5.71, "ccw"),
    "Bowtie_track": (17.43, "ccw"),
    "reInvent2019_track": (23.12, "ccw"),
    "2024_reinvent_champ_ccw": (25.11, "ccw"),
    "2024_reinvent_champ_cw": (25.11, "cw"),
    "Spain_track": (60.00, "cw"),
    "Tokyo_Training_track": (22.63, "ccw"),
}


def test_all_nine_tracks_load_with_official_length_and_direction():
    assert Track.names() == sorted(OFFICIAL)
    for name, (length, orientation) in OFFICIAL.items():
        track = Track.load(name)
        assert track.length == pytest.approx(length, abs=0.01), name
        assert track.orientation == orientation, name
        assert track.closed == (name != "Straight_track"), name


def test_reinvent_base_geometry():
    track = Track.load("reinvent_base")
    assert track.length == pytest.approx(17.709, abs=0.001)
    rows = np.load(TRACKS_DIR / "reinvent_base.npy")
    assert track.waypoint_count == len(rows) - 1  # the repeated closing point is dropped
    assert not np.array_equal(track.centre[0], track.centre[-1])
    assert track.centre.shape == track.inner.shape == track.outer.shape == (118, 2)
    assert track.half_width.min() == pytest.approx(0.378, abs=0.001)
    assert track.half_width.max() == pytest.approx(0.381, abs=0.001)


def test_open_track_keeps_every_waypoint():
    track = Track.load("Straight_track")
    assert track.waypoint_count == len(np.load(TRACKS_DIR / "Straight_track.npy"))
    assert track.length == pytest.approx(np.linalg.norm(track.centre[-1] - track.centre[0]), abs=1e-3)


def test_load_by_path_equals_load_by_name():
    by_path = Track.load(TRACKS_DIR / "Spain_track.npy")
    by_name = Track.load("Spain_track")
    assert by_path.name == "Spain_track"
    np.testing.assert_array_equal(by_path.centre, by_name.centre)


def test_unknown_track_lists_the_available_ones():
    with pytest.raises(ValueError, match="reinvent_base") as err:
        Track.load("no_such_track")
    assert "Spain_track" in str(err.value)


def test_project_known_points_on_the_first_straight():
    track = Track.load("reinvent_base")  # starts heading east along y = 0.683
    index, s, lateral, heading = track.project(3.5, 0.9)
    assert index == 2
    assert s == pytest.approx(3.5 - track.centre[0, 0], abs=0.005)
    assert lateral == pytest.approx(0.9 - 0.683, abs=0.005)  # north of an eastward line is left
    assert heading == pytest.approx(0.0, abs=0.01)
    assert track.project(3.5, 0.5)[2] == pytest.approx(0.5 - 0.683, abs=0.005)


def test_project_sign_follows_the_direction_of_travel_on_cw_and_ccw_tracks():
    for name in ("Spain_track", "Oval_track"):
        track = Track.load(name)
        for i in range(0, track.waypoint_count, 17):
            x, y, yaw = track.start_pose(i, 0.2)
            index, s, lateral, heading = track.project(x, y)
            assert lateral == pytest.approx(0.2, abs=0.01), (name, i)  # a bend's vertex can be nearer
            wrapped = (s - track.waypoint_s[i] + track.length / 2) % track.length - track.length / 2
            assert wrapped == pytest.approx(0.0, abs=0.05), (name, i)
            assert math.cos(heading - yaw) > 0.95
            assert track.project(*track.start_pose(i, -0.2)[:2])[2] == pytest.approx(-0.2, abs=0.01)


def test_project_accepts_arrays():
    track = Track.load("reinvent_base")
    xs = track.centre[:10, 0]
    ys = track.centre[:10, 1]
    index, s, lateral, heading = track.project(xs, ys)
    assert index.shape == s.shape == lateral.shape == heading.shape == (10,)
    np.testing.assert_allclose(s, track.waypoint_s[:10], atol=1e-9)
    np.testing.assert_allclose(lateral, 0.0, atol=1e-9)
    one = track.project(float(xs[7]), float(ys[7]))
    assert (int(index[7]), float(s[7])) == (one[0], one[1])


def test_point_at_wraps_on_a_loop_and_walks_the_centre_line():
    track = Track.load("Oval_track")
    x, y, _ = track.point_at(np.array([1.0, 1.0 + track.length]))
    assert x[0] == pytest.approx(x[1]) and y[0] == pytest.approx(y[1])
    s = np.linspace(0.0, track.length, 400)
    px, py, _ = track.point_at(s)
    np.testing.assert_allclose(track.project(px, py)[1][:-1], s[:-1], atol=1e-6)


def test_on_track_inside_and_outside():
    for name in OFFICIAL:
        track = Track.load(name)
        for i in range(track.waypoint_count):
            assert track.on_track(*track.centre[i]), (name, i)
        if not track.closed:
            for i in range(track.waypoint_count):
                for side in (1.0, -1.0):
                    x, y, _ = track.start_pose(i, side * (track.half_width[i] + 0.2))
                    assert not track.on_track(x, y, tolerance=0.0), (name, i, side)
            continue
        # Probe 0.2 m past each border along its normal, towards the inner polygon's inside and
        # the outer polygon's outside (parts of a track can run closer than a metre apart, and
        # some tracks pair border points at a slant to the centre line).
        for border, off_side in ((track.inner, 1.0), (track.outer, -1.0)):
            x, y = border[:, 0], border[:, 1]
            area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
            tangent = np.roll(border, -1, axis=0) - np.roll(border, 1, axis=0)
            left = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
            normal = off_side * np.sign(area) * left / np.linalg.norm(left, axis=1, keepdims=True)
            for i in range(track.waypoint_count):
                assert not track.on_track(*(border[i] + 0.2 * normal[i]), tolerance=0.0), (name, i)


def test_one_metre_outside_is_off_track():
    track = Track.load("reinvent_base")
    for i in range(track.waypoint_count):
        out = track.outer[i] - track.centre[i]
        assert not track.on_track(*(track.outer[i] + out / np.linalg.norm(out))), i


def test_on_track_tolerance_lets_the_centre_sit_on_the_border_line():
    track = Track.load("reinvent_base")
    x, y, _ = track.start_pose(10, track.half_width[10] + 0.03)
    assert not track.on_track(x, y, tolerance=0.0)
    assert track.on_track(x, y, tolerance=0.05)


def test_start_pose_heads_along_the_track():
    track = Track.load("reinvent_base")
    x, y, yaw = track.start_pose(0)
    assert (x, y) == pytest.approx(tuple(track.centre[0]))
    assert yaw == pytest.approx(math.atan2(*(track.centre[1] - track.centre[0])[::-1]))
    with pytest.raises(IndexError):
        track.start_pose(track.waypoint_count)


def _simtrace(name):
    with open(SIMTRACE / name, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "trace, track_name",
    [
        ("drfc1_training_reinvent_base_0-iteration.csv", "reinvent_base"),
        ("droa_eval_spain_0-iteration.csv", "Spain_track"),
        ("legacy2019_training_reInvent2019_continuous.csv", "reInvent2019_track"),
    ],
)
def test_agrees_with_real_deepracer_simtraces(trace, track_name):
    track = Track.load(track_name)
    rows = _simtrace(trace)
    assert float(rows[0]["track_len"]) == pytest.approx(track.length, abs=1e-6)
    on = [r for r in rows if r["all_wheels_on_track"] == "True"]
    off = [r for r in rows if r["episode_status"] == "off_track"]
    assert on and off
    assert all(track.on_track(float(r["X"]), float(r["Y"]), tolerance=0.0) for r in on)
    assert not any(track.on_track(float(r["X"]), float(r["Y"]), tolerance=0.05) for r in off)
    # DeepRacer's closest waypoint is one end of the segment we project onto.
    index, _, _, _ = track.project(np.array([float(r["X"]) for r in rows]), np.array([float(r["Y"]) for r in rows]))
    closest = np.array([int(r["closest_waypoint"]) for r in rows]) % track.waypoint_count
    matches = (closest == index) | (closest == (index + 1) % track.waypoint_count)
    assert matches.mean() > 0.99


def test_a_narrower_road_keeps_its_centre_line_and_judges_off_track_by_its_own_borders():
    track = Track.load("reinvent_base")
    narrow = track.with_width(0.7)
    np.testing.assert_allclose(narrow.half_width, 0.7 * track.half_width)
    np.testing.assert_array_equal(narrow.centre, track.centre)
    assert (narrow.name, narrow.closed, narrow.orientation) == (track.name, True, track.orientation)
    assert narrow.length == track.length
    x, y, _ = track.start_pose(0, offset=0.34)  # inside the 0.38 m half-width, outside 0.27 m + the 0.05 m line
    assert track.on_track(x, y) and not narrow.on_track(x, y)
    wide = track.start_pose(0, offset=0.48)[:2]
    assert track.with_width(1.3).on_track(*wide) and not track.on_track(*wide)
    straight = Track.load("Straight_track").with_width(0.5)  # an open track stays open, its lap as long
    assert not straight.closed and straight.length == Track.load("Straight_track").length
    for bad in (0.29, 1.31, float("nan")):
        with pytest.raises(ValueError, match=r"a road width factor must be from 0.3 to 1.3, got"):
            track.with_width(bad)
