"""The simulator's camera: frame shape, where the border lines land, determinism, walls and sky, the
track texture, and `racer sim render` / `fit-dynamics` on good and bad input."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from sim2real.sim.render import CameraParams, Renderer, SceneParams, draw_track_texture, field_bounds
from sim2real.sim.track import Track

SCENE = SceneParams()


@pytest.fixture(scope="module")
def track():
    return Track.load("reinvent_base")


@pytest.fixture(scope="module")
def small(track):
    return Renderer(track, 160, 120)


def near(pixel, colour, tol=25):
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tol))


def is_yellow(pixel):
    b, g, r = (int(c) for c in pixel)
    return r > b + 50 and g > b + 25


def ground_pixel(camera, width, height, ahead, left):
    """Where a ground point (car frame, metres) lands in the image, from first principles."""
    pitch = math.radians(camera.pitch_deg)
    forward, down = ahead - camera.forward_m, camera.height_m
    z = forward * math.cos(pitch) + down * math.sin(pitch)
    y = -forward * math.sin(pitch) + down * math.cos(pitch)
    f = (width / 2) / math.tan(math.radians(camera.hfov_deg) / 2)
    return (height - 1) / 2 + f * y / z, (width - 1) / 2 - f * left / z


@pytest.mark.parametrize("size", [(160, 120), (640, 480)])
def test_frame_shape_and_type(track, size):
    frame = Renderer(track, *size).render(*track.start_pose(0))
    assert frame.shape == (size[1], size[0], 3)
    assert frame.dtype == np.uint8


def test_centre_line_view(small, track):
    frame = small.render(*track.start_pose(0))
    # Just ahead of the bumper, either side of the centre dash: dark track surface.
    for col in (60, 100):
        assert near(frame[-2, col], SCENE.track_bgr), frame[-2, col]
    # The yellow dashed centre line runs up the middle of the image.
    yellow_rows = [row for row in range(50, 120) if any(is_yellow(frame[row, c]) for c in range(76, 84))]
    assert len(yellow_rows) >= 10
    assert not any(is_yellow(p) for p in frame[60:, :40].reshape(-1, 3))
    # The top of the image is the sky above the far wall.
    assert near(frame[0, 80], SCENE.sky_bgr, tol=3)


@pytest.mark.parametrize("offset", [0.25, -0.25])
def test_border_line_lands_where_the_camera_geometry_says(track, offset):
    width, height = 640, 480
    camera = CameraParams()
    renderer = Renderer(track, width, height, camera)
    frame = renderer.render(*track.start_pose(0, offset))
    # On the first straight both borders are 0.38 m from the centre line; the white strips lie
    # inside them, 7.62 cm wide.
    strip = math.copysign(track.half_width[0] - SCENE.border_line_m / 2, offset)
    border_left = strip - offset
    for ahead in (0.6, 0.8, 1.2):
        row, col = ground_pixel(camera, width, height, ahead, border_left)
        row, col = round(row), round(col)
        assert near(frame[row, col], SCENE.border_bgr, tol=30), (ahead, frame[row, col])
        # 10 cm further towards the centre line is track surface again.
        _, inside = ground_pixel(camera, width, height, ahead, border_left - math.copysign(0.1, offset))
        assert near(frame[row, round(inside)], SCENE.track_bgr), (ahead, frame[row, round(inside)])


def test_offset_towards_a_border_shows_it_on_that_side(small, track):
    left = small.render(*track.start_pose(0, 0.3))
    right = small.render(*track.start_pose(0, -0.3))
    white = np.all(np.abs(left.astype(int) - SCENE.border_bgr) < 40, axis=2)
    assert white[60:, :80].sum() > 50 and white[60:, 80:].sum() == 0
    white = np.all(np.abs(right.astype(int) - SCENE.border_bgr) < 40, axis=2)
    assert white[60:, 80:].sum() > 50 and white[60:, :80].sum() == 0


def test_rendering_is_deterministic_and_depends_on_the_pose(small, track):
    pose = track.start_pose(30, 0.1)
    first = small.render(*pose)
    again = Renderer(track, 160, 120).render(*pose)
    np.testing.assert_array_equal(first, small.render(*pose))
    np.testing.assert_array_equal(first, again)
    turned = small.render(pose[0], pose[1], pose[2] + 0.2)
    assert np.abs(first.astype(int) - turned).mean() > 5


def test_render_into_a_given_buffer(small, track):
    out = np.zeros((120, 160, 3), np.uint8)
    result = small.render(*track.start_pose(0), out=out)
    assert result is out and out.any()


def test_walls_stand_around_the_field_with_the_sky_above(small, track):
    x_min, y_min, x_max, y_max = field_bounds(track, SCENE)
    # reinvent_base's field as measured in the AWS simulator's world, to the centimetre.
    assert (x_min, y_min, x_max, y_max) == pytest.approx((-0.587, -0.613, 8.575, 5.795), abs=0.015)
    # Between the track and the east wall, 0.5 m from it, facing it: the lit wall fills the view
    # above the grass; the sky is above the wall's top, out of sight.
    frame = small.render(x_max - 0.5, 2.6, 0.0)
    assert near(frame[-1, 80], SCENE.floor_bgr, tol=2)
    assert near(frame[0, 80], SCENE.wall_bgr, tol=2)
    # Facing the far (west) wall from there, 8.5 m away: its top is 5.8 deg up, below the top of
    # the image (11.8 deg up), so the sky shows above the unlit wall, and the grass below it.
    frame = small.render(x_max - 0.5, 2.6, math.pi)
    assert near(frame[0, 80], SCENE.sky_bgr, tol=2)
    wall_rows = [row for row in range(120) if near(frame[row, 80], SCENE.wall_shade_bgr, tol=2)]
    camera = CameraParams()
    f = 80 / math.tan(math.radians(camera.hfov_deg / 2))
    distance = x_max - 0.5 - camera.forward_m - x_min
    up = math.atan((SCENE.wall_height_m - camera.height_m) / distance) + math.radians(camera.pitch_deg)
    top = 59.5 - f * math.tan(up)
    assert wall_rows and abs(wall_rows[0] - top) <= 1.5
    assert near(frame[wall_rows[-1] + 3, 80], SCENE.floor_bgr, tol=6)


def test_texture_paints_the_track_where_the_geometry_is(track):
    texture = draw_track_texture(track, SCENE)

    def pixel(point):
        col = round((point[0] - texture.x0) / texture.metres_per_px)
        row = round((texture.y0 - point[1]) / texture.metres_per_px)
        return texture.image[row, col]

    for i in range(0, track.waypoint_count, 7):
        for border in (track.inner[i], track.outer[i]):
            strip = border + (track.centre[i] - border) * (SCENE.border_line_m / 2) / np.linalg.norm(
                track.centre[i] - border)
            assert near(pixel(strip), SCENE.border_bgr, tol=5)
            outside = border - (track.centre[i] - border) * 0.03 / np.linalg.norm(track.centre[i] - border)
            assert near(pixel(outside), SCENE.floor_bgr, tol=5)
        between = 0.5 * (track.inner[i] + track.centre[i])
        assert near(pixel(between), SCENE.track_bgr, tol=5)


def run_racer(*argv):
    from racer.cli import main

    return main(list(argv))


def test_render_command_writes_the_camera_frame(tmp_path, capsys, track):
    out = tmp_path / "view.png"
    assert run_racer("sim", "render", "reinvent_base", "--pose", "5.009,0.592,0.011", "--out", str(out), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"track": "reinvent_base", "pose": [5.009, 0.592, 0.011], "size": [160, 120], "out": str(out),
                      "beside": None}
    written = cv2.imread(str(out), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(written, Renderer(track).render(5.009, 0.592, 0.011))
    big = tmp_path / "big.png"
    assert run_racer("sim", "render", "reinvent_base", "--pose", "5,0.6,0", "--size", "640x480", "--out", str(big)) == 0
    assert cv2.imread(str(big)).shape == (480, 640, 3)


def test_render_command_beside_a_picture(tmp_path, track):
    picture = tmp_path / "gazebo.png"
    cv2.imwrite(str(picture), np.full((48, 64, 3), 200, np.uint8))
    out = tmp_path / "pair.png"
    assert run_racer("sim", "render", "reinvent_base", "--pose", "5,0.6,0", "--beside", str(picture),
                     "--out", str(out)) == 0
    pair = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert pair.shape == (48, 128, 3) and (pair[:, :64] == 200).all()
    np.testing.assert_array_equal(pair[:, 64:], Renderer(track, 64, 48).render(5.0, 0.6, 0.0))


@pytest.mark.parametrize("args, message", [
    (["moon", "--pose", "1,2,0"], "unknown track 'moon'"),
    (["reinvent_base", "--pose", "1,2"], "--pose must be X,Y,YAW"),
    (["reinvent_base", "--pose", "1,2,0", "--size", "big"], "--size must be WxH"),
    (["reinvent_base", "--pose", "1,2,0", "--beside", "no/such.png"], "cannot read an image"),
])
def test_render_command_refuses_bad_input(tmp_path, capsys, args, message):
    assert run_racer("sim", "render", *args, "--out", str(tmp_path / "x.png")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_fit_dynamics_command(capsys):
    trace = Path(__file__).resolve().parent / "fixtures" / "deepracer" / "simtrace" / \
        "console_eval_reinvent_base_0-iteration.csv"
    assert run_racer("sim", "fit-dynamics", str(trace), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steering"]["tau_s"] == pytest.approx(0.49, abs=0.02)
    assert report["steering"]["r2"] >= 0.94 and report["replay_yaw_rate_r2"] >= 0.9
    assert run_racer("sim", "fit-dynamics", str(trace.with_name("drfc1_hyperparameters.json"))) == 1
