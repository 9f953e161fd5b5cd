"""The on-car domain-shift monitor: statistics at export, a per-frame score, policy diagnostics."""
import numpy as np
import pytest

from car.messages import Header, Image, Time
from car.policy.core import PolicyCore
from car.policy.decode import ActionDecoder
from car.policy.metadata import parse_metadata
from car.policy.preprocess import Preprocessor, PreprocessSpec
from car.policy.shift import GRID, ShiftMonitor, region_means
from sim2real.export import image_stats
from sim2real.imitation import ACTION_SPACE, SPEC, sample_frames
from sim2real.randomize import Domain, DomainSimulator
from sim2real.sim.track import Track


@pytest.fixture(scope="module")
def training():
    features = sample_frames(SPEC, ("reinvent_base",), 300, seed=2)
    return features, image_stats(features)


def tensor(spec, frame):
    return Preprocessor(spec)(frame)


def frames_in(domain, count=20):
    sim = DomainSimulator(Track.load("reinvent_base"))
    sim.set_domain(domain)
    out = []
    for i in range(count):
        sim.reset(start_index=i * 7 % sim.track.waypoint_count, offset=0.1 * (i % 3 - 1))
        out.append(sim.render())
    return out


def test_stats_carry_region_statistics(training):
    features, stats = training
    regions = stats["regions"]
    assert regions["grid"] == list(GRID) and len(regions["mean"]) == len(regions["std"]) == GRID[0] * GRID[1]
    assert regions["mean"] == pytest.approx(np.mean([region_means(f) for f in features], axis=0).tolist(), abs=1e-5)
    assert regions["contrast_mean"] > 0 and regions["contrast_std"] > 0


def test_score_is_low_in_the_training_world_and_high_in_a_dark_room(training):
    _, stats = training
    monitor = ShiftMonitor(stats, SPEC)
    home = [monitor.score(tensor(SPEC, f)) for f in frames_in(Domain())]
    dark = [monitor.score(tensor(SPEC, f)) for f in frames_in(Domain({"light": 0.4, "exposure_ev": -0.5}))]
    assert np.median(home) < 2.0
    # The expert's racing line (near the edges in corners) spreads the training frames' regions,
    # so a dark room scores about 5x the training world here (2.8 against 0.5), not 8x.
    assert np.median(dark) > 2.5 and np.median(dark) > 4.0 * np.median(home)


def test_score_reads_the_newest_frame_in_either_layout():
    spec = PreprocessSpec(width=32, height=24, scale=1 / 255.0, frame_stack=2, layout="NHWC")
    rng = np.random.default_rng(0)
    features = np.clip(0.5 + 0.02 * rng.standard_normal((100, 24, 32, 1)), 0, 1).astype(np.float32)
    monitor = ShiftMonitor(image_stats(features), spec)
    normal, dark = np.full((24, 32, 1), 0.5, np.float32), np.zeros((24, 32, 1), np.float32)
    newest_normal = np.concatenate([dark, normal], axis=2)[None]
    newest_dark = np.concatenate([normal, dark], axis=2)[None]
    assert monitor.score(newest_normal) < 2.0 < 10.0 < monitor.score(newest_dark)
    nchw = ShiftMonitor(image_stats(features), PreprocessSpec(width=32, height=24, scale=1 / 255.0, frame_stack=2,
                                                              layout="NCHW"))
    assert nchw.score(newest_normal.transpose(0, 3, 1, 2)) == pytest.approx(monitor.score(newest_normal))


def test_bundles_without_region_statistics_have_no_monitor():
    assert ShiftMonitor.from_stats(None, SPEC) is None
    assert ShiftMonitor.from_stats({"mean": 0.3, "std": 0.1}, SPEC) is None
    with pytest.raises(ValueError, match="no 'regions' statistics"):
        ShiftMonitor({"mean": 0.3}, SPEC)
    with pytest.raises(ValueError, match="malformed 'regions' statistics"):
        ShiftMonitor({"regions": {"grid": [3, 4]}}, SPEC)
    with pytest.raises(ValueError, match="regions need 12 means and stds"):
        ShiftMonitor({"regions": {"grid": [3, 4], "mean": [0.1], "std": [0.1], "contrast_mean": 0.1,
                                  "contrast_std": 0.1}}, SPEC)


def test_policy_diagnostics_report_the_score(training):
    _, stats = training
    decoder = ActionDecoder(parse_metadata(ACTION_SPACE))
    frame = frames_in(Domain(), 1)[0]
    msg = Image(Header(Time.from_seconds(1.0), "camera"), frame)
    values = {}
    for name, shift in (("with", ShiftMonitor(stats, SPEC)), ("without", None)):
        core = PolicyCore(lambda t: np.zeros(2, np.float32), Preprocessor(SPEC), decoder, 0.5, 4.0, shift=shift)
        assert core.on_image(msg).error is None
        values[name] = {kv.key: kv.value for kv in core.diagnostics().values}
    assert 0.0 <= float(values["with"]["domain_shift"]) < 3.0
    assert values["without"]["domain_shift"] == ""
