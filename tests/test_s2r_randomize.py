"""Domain randomization: documented knobs, presets, determinism, YAML config, and each knob's effect."""
import math

import cv2
import numpy as np
import pytest

from sim2real.randomize import (
    KNOBS,
    PRESETS,
    Domain,
    DomainSimulator,
    Randomization,
    RandomizationError,
    bench_sim_randomized,
    knob_named,
)
from sim2real.sim.render import CameraParams, SceneParams, draw_track_texture, ground_rays
from sim2real.sim.sensor import Sensor, SensorParams
from sim2real.sim.track import Track
from sim2real.sim.vehicle import VehicleParams
from sim2real.sim.world import Simulator


@pytest.fixture(scope="module")
def track():
    return Track.load("reinvent_base")


def test_every_knob_is_documented_with_unit_nominal_and_ranges():
    assert len(KNOBS) >= 30
    for knob in KNOBS.values():
        assert knob.group in ("visual", "camera", "dynamics") and knob.unit and len(knob.doc) > 15, knob.name
        low, high = knob.limits
        assert low <= knob.nominal <= high, knob.name
        for preset in (knob.default, knob.strong):
            assert low <= preset[0] <= preset[1] <= high, knob.name
        # strong never narrows default
        assert knob.strong[0] <= knob.default[0] and knob.default[1] <= knob.strong[1], knob.name
    assert {k.group for k in KNOBS.values()} == {"visual", "camera", "dynamics"}
    assert KNOBS["delay_ms"].strong == (0.0, 120.0)
    # Nominal values are the simulator's own.
    assert KNOBS["steering_lag_ms"].nominal == pytest.approx(1000 * VehicleParams().steering_lag_s)
    assert KNOBS["camera_forward_m"].nominal == CameraParams().forward_m
    assert KNOBS["camera_hfov_deg"].nominal == CameraParams().hfov_deg
    # The real car's lens is sold as 120 deg: the strong preset reaches it.
    assert KNOBS["camera_hfov_deg"].strong[1] >= 120.0 and KNOBS["lens_k1"].strong[0] < 0.0


def test_every_knob_changes_the_simulation():
    base = Domain()

    def parts(d: Domain) -> tuple:
        return d.scene(SceneParams()), d.camera(CameraParams()), d.vehicle(VehicleParams()), d.sensor()

    for knob in KNOBS.values():
        value = knob.strong[1] if knob.strong[1] != knob.nominal else knob.strong[0]
        assert parts(Domain({knob.name: value})) != parts(base), knob.name


def test_presets():
    assert PRESETS == ("none", "default", "strong")
    assert Randomization.preset("none").ranges == {}
    assert Randomization.preset("default").ranges == {k.name: k.default for k in KNOBS.values()}
    assert Randomization.preset("strong").ranges == {k.name: k.strong for k in KNOBS.values()}
    assert Randomization.preset("default").nominal_share == Randomization.preset("strong").nominal_share == 0.25
    assert Randomization.load("none").nominal_share == 0.0
    with pytest.raises(RandomizationError, match="unknown randomization preset 'wild'"):
        Randomization.preset("wild")


def test_sampling_is_deterministic_from_the_seed_and_stays_in_range():
    r = Randomization.preset("default")
    a = [r.sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    assert r.sample(np.random.default_rng(8)) != a[0]
    rng = np.random.default_rng(1)
    for _ in range(50):
        domain = r.sample(rng)
        for name, value in domain.values.items():
            low, high = r.ranges[name]
            assert low <= value <= high
            if KNOBS[name].count:
                assert value == int(value)


def test_yaml_round_trip_and_overrides(tmp_path):
    strong = Randomization.preset("strong")
    assert Randomization.load(strong.save(tmp_path / "strong.yaml")) == strong
    path = tmp_path / "mine.yaml"
    path.write_text("preset: default\nknobs:\n  light: [0.6, 1.4]\n  delay_ms: 80\n")
    mine = Randomization.load(path)
    assert mine.ranges["light"] == (0.6, 1.4)
    assert mine.ranges["delay_ms"] == (80.0, 80.0)
    assert mine.ranges["camera_pitch_deg"] == KNOBS["camera_pitch_deg"].default
    assert Randomization.load("none") == Randomization()


def test_a_nominal_share_leaves_that_share_of_domains_at_the_base_world(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text("preset: default\nnominal_share: 0.25\n")
    mixed = Randomization.load(path)
    assert mixed.ranges == Randomization.preset("default").ranges and mixed.nominal_share == 0.25
    assert Randomization.load(mixed.save(tmp_path / "again.yaml")) == mixed
    assert mixed.for_calibrated_lens().nominal_share == 0.25
    rng = np.random.default_rng(3)
    domains = [mixed.sample(rng) for _ in range(2000)]
    nominal = sum(1 for d in domains if not d.values)
    assert 440 <= nominal <= 560  # 500 expected; binomial sd 19
    assert all(len(d.values) == len(mixed.ranges) for d in domains if d.values)
    # without a share the draws are the ones every earlier run made: the knobs in order, then the layout seed
    plain = Randomization(Randomization.preset("default").ranges)
    assert plain.nominal_share == 0.0
    rng = np.random.default_rng(9)
    values = {name: KNOBS[name].draw(rng, low, high) for name, (low, high) in plain.ranges.items()}
    assert plain.sample(np.random.default_rng(9)) == Domain(values, int(rng.integers(2**31)))


@pytest.mark.parametrize("text, message", [
    ("knobs:\n  lightness: [0.5, 1]\n", "unknown randomization knob 'lightness'"),
    ("knobs:\n  light: [1.5, 0.5]\n", r"knob light: range \[1.5, 0.5\] is empty"),
    ("knobs:\n  delay_ms: [0, 900]\n", "knob delay_ms: 900 is outside 0.0..500.0 ms"),
    ("knobs:\n  light: [0.5, 1, 2]\n", r"knob light: a range is \[low, high\]"),
    ("knobs:\n  light: bright\n", "knob light: expected a number"),
    ("preset: wild\n", "unknown randomization preset 'wild'"),
    ("presets: default\n", "unknown key\\(s\\) presets"),
    ("- light\n", "expected a mapping"),
    ("knobs: [light]\n", "knobs must map"),
    ("knobs: {light: [0.5\n", "not valid YAML"),
    ("preset: default\nnominal_share: 1.5\n", r"nominal_share must be a number in \[0, 1\], got 1.5"),
    ("nominal_share: yes\n", r"nominal_share must be a number in \[0, 1\], got True"),
    ("nominal_share: some\n", r"nominal_share must be a number in \[0, 1\], got 'some'"),
])
def test_bad_configs_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RandomizationError, match=message) as err:
        Randomization.load(path)
    assert str(path) in str(err.value)


def test_bad_names_and_values():
    with pytest.raises(RandomizationError, match="neither a preset"):
        Randomization.load("no/such/file.yaml")
    with pytest.raises(RandomizationError, match="unknown randomization knob 'fog'"):
        Domain({"fog": 1.0})
    with pytest.raises(RandomizationError, match="unknown randomization knob 'fog'"):
        knob_named("fog")
    with pytest.raises(RandomizationError, match="knob light: expected a number"):
        Domain({"light": float("nan")})
    with pytest.raises(RandomizationError, match="knob jpeg_quality: 0 is outside"):
        Domain({"jpeg_quality": 0})


def test_domain_simulator_none_matches_the_plain_simulator(track):
    plain, randomized = Simulator(track), DomainSimulator(track, Randomization.preset("none"), seed=3)
    randomized.randomize()
    for sim in (plain, randomized):
        sim.reset(start_index=10)
    np.testing.assert_array_equal(plain.render(), randomized.render())
    assert randomized.vehicle.params == VehicleParams()


def test_domain_simulator_is_deterministic_and_varies(track):
    frames = []
    for seed in (5, 5, 6):
        sim = DomainSimulator(track, Randomization.preset("default"), seed=seed)
        sim.randomize()
        sim.reset(start_index=20)
        frames.append(sim.render())
    np.testing.assert_array_equal(frames[0], frames[1])
    assert np.abs(frames[0].astype(int) - frames[2]).mean() > 3


def test_light_knob_darkens_and_spots_and_shadows_change_the_floor(track):
    nominal = draw_track_texture(track, SceneParams()).image.astype(float)
    dim = draw_track_texture(track, Domain({"light": 0.5}).scene(SceneParams())).image.astype(float)
    assert dim.mean() == pytest.approx(0.5 * nominal.mean(), rel=0.03)
    lit = draw_track_texture(track, Domain({"light_spots": 4, "spot_gain": 0.8}, seed=1).scene(SceneParams()))
    shaded = draw_track_texture(track, Domain({"shadows": 4, "shadow_depth": 0.6}, seed=1).scene(SceneParams()))
    assert lit.image.astype(float).mean() > nominal.mean() + 1
    darker = (shaded.image.astype(float).mean(axis=2) < 0.6 * nominal.mean(axis=2)).mean()
    assert 0.01 < darker < 0.5


def test_wear_removes_paint_and_distractors_and_grain_mark_the_floor(track):

    def white(img: np.ndarray) -> float:
        return (img.min(axis=2) > 180).mean()

    nominal = draw_track_texture(track, SceneParams()).image
    worn = draw_track_texture(track, Domain({"line_wear": 0.4}).scene(SceneParams())).image
    assert white(worn) == pytest.approx(0.6 * white(nominal), rel=0.15)
    messy = draw_track_texture(track, Domain({"distractors": 20}, seed=2).scene(SceneParams())).image
    assert (np.abs(messy.astype(int) - nominal).max(axis=2) > 30).sum() > 1000
    grainy = draw_track_texture(track, Domain({"texture_noise": 10}).scene(SceneParams())).image
    field = (slice(200, 250), slice(200, 250))  # grass inside the walls
    assert np.std(grainy[field].astype(float) - nominal[field]) == pytest.approx(10, rel=0.35)


def test_roll_tilts_the_horizon_and_the_lens_bends_it():
    def horizon(camera):
        points, _ = ground_rays(camera, 160, 120)
        ground = np.isfinite(points[..., 0])
        return [int(np.argmax(ground[:, col])) for col in (10, 150)]

    left, right = horizon(CameraParams(roll_deg=5.0))
    assert right < left - 5  # leaning right raises the horizon on the right
    flat = horizon(CameraParams())
    assert abs(flat[0] - flat[1]) <= 1
    pincushion = horizon(CameraParams(distortion=(0.1, 0.0, 0.0, 0.0, 0.0)))
    assert pincushion[0] != flat[0]


def test_an_f_theta_lens_puts_each_ray_at_its_angle():
    camera = CameraParams(hfov_deg=96.0, fisheye=1.0, pitch_deg=20.0, height_m=0.112)
    k = camera.intrinsics(640, 480)
    assert k[0, 0] == pytest.approx(320 / math.radians(48.0))  # radius = f * theta
    # 4:3, 96 deg across: the corners are 60 deg off the axis, a 120 deg diagonal lens, which
    # squeezes them to 0.60 of the pinhole radius (barrel distortion)
    corner = math.hypot(320, 240) / k[0, 0]
    assert math.degrees(camera.off_axis(np.array(corner))) == pytest.approx(60.0)
    assert corner / math.tan(math.radians(60.0)) == pytest.approx(0.605, abs=0.001)
    points, _ = ground_rays(camera, 640, 480)
    for row in (300, 400, 470):  # the centre column: a ray (row - cy) / f below the axis
        theta = (row + 0.0 - k[1, 2]) / k[1, 1]
        ahead = camera.forward_m + camera.height_m / math.tan(math.radians(20.0) + theta)
        assert points[row, 320] == pytest.approx([ahead, 0.0], abs=1e-6 + 1e-3 * ahead)
    assert np.isnan(camera.off_axis(np.array([2.0]))).all()  # beyond 90 deg off the axis: no ray


def test_training_covers_the_real_cars_wide_lens_and_renders_it(track):
    default = Randomization.preset("default").ranges
    assert default["camera_hfov_deg"][0] <= KNOBS["camera_hfov_deg"].nominal and default["camera_hfov_deg"][1] >= 130
    assert default["lens_fisheye"] == (0.0, 1.0)  # up to f-theta: as barrelled as a 120 deg diagonal lens
    assert default["camera_height_m"][0] <= 0.105 and default["camera_pitch_deg"][1] >= 22.0
    assert default["camera_roll_deg"][1] >= 2.0
    sim = DomainSimulator(track)
    sim.reset()
    pinhole = cv2.cvtColor(sim.render(), cv2.COLOR_BGR2GRAY)
    wide = {"camera_hfov_deg": 130.0, "lens_fisheye": 0.85, "camera_height_m": 0.105, "camera_pitch_deg": 22.0}
    sim.set_domain(Domain(wide))
    frame = cv2.cvtColor(sim.render(), cv2.COLOR_BGR2GRAY)
    # both see the road and its border lines; the wide lens sees the floor far more widely, and
    # bends the straight horizon
    for image in (pinhole, frame):
        assert (image > 180).sum() > 200 and (np.abs(image.astype(int) - 53) < 8).sum() > 2000
    points, _ = ground_rays(sim.camera, 160, 120)
    nominal, _ = ground_rays(CameraParams(), 160, 120)
    def widest_within_a_metre(p):
        near = np.isfinite(p[..., 0]) & (p[..., 0] < 1.0)
        return np.abs(p[near][:, 1]).max()

    assert widest_within_a_metre(points) > 2.0 * widest_within_a_metre(nominal)
    first_ground = [int(np.argmax(np.isfinite(points[:, col, 0]))) for col in (0, 80)]
    assert first_ground[0] > first_ground[1] + 3


def test_dynamics_knobs_reach_the_car(track):
    sim = DomainSimulator(track)
    sim.set_domain(Domain({"delay_ms": 120, "steering_trim": 0.1, "wheelbase_m": 0.18}))
    assert sim.vehicle.params.delay_s == pytest.approx(0.12)
    sim.reset()
    yaw = sim.vehicle.state.yaw
    sim.apply(0.0, 0.3)
    for _ in range(30):
        sim.step()
    assert sim.vehicle.state.yaw - yaw > math.radians(5)  # trim pulls left on a straight command


def test_sensor_effects():
    frame = np.full((120, 160, 3), 100, np.uint8)
    frame[:, 80:] = 160
    assert Sensor(SensorParams(exposure_ev=1.0), 160, 120).apply(frame)[0, 0, 0] == 200
    noisy = Sensor(SensorParams(noise_std=6.0), 160, 120, seed=1).apply(frame).astype(float)
    assert np.std(noisy[:, :70] - 100) == pytest.approx(6.0, rel=0.1)
    blurred = Sensor(SensorParams(motion_blur_px=5.0), 160, 120).apply(frame)
    assert 100 < blurred[60, 80, 0] < 160 and blurred[60, 20, 0] == 100
    jpeg = Sensor(SensorParams(jpeg_quality=20), 160, 120).apply(frame)
    assert jpeg.shape == frame.shape and not np.array_equal(jpeg, frame)
    with pytest.raises(ValueError, match="jpeg_quality must be 1..100"):
        SensorParams(jpeg_quality=0)


def test_bench_sim_randomized_reports_steps_per_second():
    result = bench_sim_randomized(seconds=0.3)
    assert result["steps_per_s"] > 100 and result["preset"] == "default" and result["domains"] >= 1
