"""The car's failure warning: its monitor score (the domain-shift score's excess over the training
world's level, or a modular model's uncertainty) averaged over the last 2 s, on /diagnostics, the
same window racer eval scores laps with."""
import numpy as np
import pytest

from car.messages import Header, Image, Time
from car.policy.core import PolicyCore, PolicyModel
from car.policy.decode import ActionDecoder
from car.policy.metadata import parse_metadata
from car.policy.preprocess import Preprocessor, PreprocessSpec
from car.policy.shift import TRAINING_LEVEL, excess, region_statistics
from car.policy.warning import WINDOW_S, Caution, WarningLevel
from sim2real.gap import MONITOR_WINDOW_S, monitor_peak

DT = 1.0 / 15.0


def test_the_warning_is_the_mean_of_the_last_two_seconds():
    level = WarningLevel()
    assert level.value is None
    # 15 Hz: after 30 frames of 1.0, the window holds exactly those 30
    for i in range(30):
        assert level.add(i * DT, 1.0) == pytest.approx(1.0)
    # the next 15 frames of 4.0 push out the first 15: mean (15 x 1 + 15 x 4) / 30
    for i in range(30, 45):
        value = level.add(i * DT, 4.0)
    assert value == pytest.approx(2.5)
    # 15 more: the window is all 4.0
    for i in range(45, 60):
        value = level.add(i * DT, 4.0)
    assert value == pytest.approx(4.0)


def test_the_car_and_racer_eval_average_the_same_frames():
    scores = np.random.default_rng(3).uniform(0, 5, 200)
    scores[-10:] += 5.0  # the lap ends as the score climbs
    level = WarningLevel()
    shown = [level.add(i * DT, s) for i, s in enumerate(scores)]
    window = round(MONITOR_WINDOW_S / DT)
    assert MONITOR_WINDOW_S == WINDOW_S and window == 30
    full = np.convolve(scores, np.ones(window), "valid") / window
    # once a whole window has passed, the car shows what racer eval averages
    np.testing.assert_allclose(shown[window - 1:], full, rtol=1e-9)
    assert max(shown[window - 1:]) == pytest.approx(monitor_peak(scores.tolist(), window))
    # a second before the end: the highest the car had shown by then
    lead = round(1.0 / DT)
    assert max(shown[window - 1:len(scores) - lead]) == pytest.approx(monitor_peak(scores.tolist(), window, lead))
    assert monitor_peak(scores.tolist(), window, lead) < monitor_peak(scores.tolist(), window) - 1.0
    for frames in (1, lead // 2 + 1, lead - 1, lead):  # the lap was over before that
        assert monitor_peak(scores[:frames].tolist(), window, lead) is None
    assert monitor_peak(scores[:lead + 1].tolist(), window, lead) == pytest.approx(scores[0])  # one frame left


def test_a_camera_that_restarts_its_clock_starts_a_new_window():
    level = WarningLevel()
    for i in range(10):
        level.add(100.0 + i * DT, 3.0)
    assert level.add(0.0, 1.0) == 1.0


@pytest.mark.parametrize("window", [0.0, -1.0, float("nan")])
def test_a_window_must_be_positive(window):
    with pytest.raises(ValueError, match="warning window must be positive"):
        WarningLevel(window)


class Scores:
    """A stand-in for the shift monitor with scores chosen per frame."""

    def __init__(self, values):
        self.values = iter(values)

    def score(self, tensor):
        return next(self.values)


def image(t):
    return Image(Header(Time.from_seconds(t), "camera"), np.zeros((24, 32, 3), np.uint8))


SPEC = PreprocessSpec(width=32, height=24, scale=1 / 255.0)
METADATA = parse_metadata({"action_space": {"steering_angle": {"low": -30, "high": 30},
                                            "speed": {"low": 0.5, "high": 4}}, "action_space_type": "continuous"})


def core_with(shift=None, uncertainty=None, caution=None):
    return PolicyCore(lambda t: np.zeros(2, np.float32), Preprocessor(SPEC), ActionDecoder(METADATA), 0.5, 4.0,
                      shift=shift, uncertainty=uncertainty, caution=caution)


def test_the_score_is_the_shift_beyond_the_training_level():
    assert TRAINING_LEVEL == 1.0
    assert [excess(s) for s in (0.0, 0.5, 1.0, 1.25, 3.5)] == [0.0, 0.0, 0.0, 0.25, 2.5]
    core = core_with(Scores([0.4, 3.5]))
    assert core.monitor_score() is None  # no frame yet
    core.on_image(image(0.0))
    assert (core.domain_shift, core.monitor_score()) == (0.4, 0.0)
    core.on_image(image(DT))
    assert (core.domain_shift, core.monitor_score()) == (3.5, 2.5)
    assert core.warning.value == pytest.approx(1.25)
    assert core_with().monitor_score() is None  # a bundle without statistics has no score


def test_a_model_with_its_own_uncertainty_adds_it_to_the_shift():
    readings = iter([0.2, 0.6, None])
    core = core_with(Scores([5.0, 0.5, 2.0]), uncertainty=lambda: next(readings))
    core.on_image(image(0.0))
    assert core.monitor_score() == pytest.approx(4.0 + 0.2)
    core.on_image(image(DT))
    assert core.monitor_score() == pytest.approx(0.0 + 0.6) and core.warning.value == pytest.approx(2.4)
    core.on_image(image(2 * DT))
    assert core.monitor_score() == pytest.approx(1.0)  # a model that says nothing of a frame: the shift alone
    alone = core_with(uncertainty=lambda: 0.3)  # no training statistics: its uncertainty alone
    alone.on_image(image(0.0))
    assert alone.monitor_score() == 0.3
    stats = {"regions": region_statistics(np.random.default_rng(0).random((8, 24, 32, 1), np.float32))}
    assert PolicyCore.monitor_key(PolicyModel(core.infer, SPEC, METADATA, uncertainty=lambda: 0.6)) == "uncertainty"
    assert PolicyCore.monitor_key(PolicyModel(core.infer, SPEC, METADATA, stats, lambda: 0.6)) == \
        "domain_shift_excess+uncertainty"
    assert PolicyCore.monitor_key(PolicyModel(core.infer, SPEC, METADATA, stats)) == "domain_shift_excess"
    assert PolicyCore.monitor_key(PolicyModel(core.infer, SPEC, METADATA)) == ""


def test_policy_diagnostics_carry_the_warning_and_a_new_model_clears_it():
    core = core_with(Scores([1.0, 2.0, 6.0]))
    values = {}
    for i in range(3):
        assert core.on_image(image(10.0 + i * DT)).error is None
        values = {kv.key: kv.value for kv in core.diagnostics().values}
    # excesses 0, 1 and 5 over the last 2 s
    assert (values["domain_shift"], values["warning"]) == ("6.000", "2.0000")
    core.shift = Scores([])  # a frame the monitor fails on is a policy error: the warning keeps its frames
    assert core.on_image(image(10.0 + 3 * DT)).error is not None
    assert {kv.key: kv.value for kv in core.diagnostics().values}["warning"] == "2.0000"
    core.load(PolicyModel(lambda t: np.zeros(2, np.float32), SPEC, METADATA))
    assert {kv.key: kv.value for kv in core.diagnostics().values}["warning"] == ""


# The zero output's action: steering 0, speed 2.25 m/s of 0.5..4, on the navigation node's parabola
# 0.8578 of full throttle, times 4 m/s.
FULL_SPEED = (-1.2 / 16 * 2.25**2 + 2.2 / 4 * 2.25) * 4.0


def caution_state(core):
    return {kv.key: kv.value for kv in core.diagnostics().values}[PolicyCore.CAUTION]


def test_a_bundle_with_caution_slows_while_the_warning_is_above_its_level():
    # the warning is the 2 s mean of the uncertainty: 0.25 (not above), 0.3, 0.2, then 0.45
    readings = iter([0.25, 0.35, 0.0, 1.2])
    core = core_with(uncertainty=lambda: next(readings), caution=Caution(0.25, 0.8))
    speeds, states = [], []
    for i in range(4):
        drive = core.on_image(image(i * DT)).drive
        speeds.append(drive.drive.speed)
        states.append(caution_state(core))
        assert drive.drive.steering_angle == 0.0  # caution never steers
    assert speeds == pytest.approx([FULL_SPEED, 0.8 * FULL_SPEED, FULL_SPEED, 0.8 * FULL_SPEED])
    assert states == ["off", "slowing", "off", "slowing"]


def test_without_a_warning_or_a_caution_the_car_drives_at_the_policys_speed():
    # a high warning, but the bundle asks for no caution
    plain = core_with(uncertainty=lambda: 5.0)
    assert plain.on_image(image(0.0)).drive.drive.speed == pytest.approx(FULL_SPEED)
    assert caution_state(plain) == ""
    # a caution, but no monitor to warn: nothing to slow for
    blind = core_with(caution=Caution(0.25, 0.5))
    assert blind.on_image(image(0.0)).drive.drive.speed == pytest.approx(FULL_SPEED)
    assert caution_state(blind) == "off"


def test_a_new_model_brings_its_own_caution_and_a_fresh_warning():
    core = core_with(uncertainty=lambda: 1.0, caution=Caution(0.25, 0.5))
    assert core.on_image(image(0.0)).drive.drive.speed == pytest.approx(0.5 * FULL_SPEED)
    core.load(PolicyModel(lambda t: np.zeros(2, np.float32), SPEC, METADATA, uncertainty=lambda: 1.0))
    assert caution_state(core) == ""
    assert core.on_image(image(DT)).drive.drive.speed == pytest.approx(FULL_SPEED)
    core.load(PolicyModel(lambda t: np.zeros(2, np.float32), SPEC, METADATA, uncertainty=lambda: 0.1,
                          caution=Caution(0.25, 0.5)))
    assert caution_state(core) == "off"  # the last model's warning of 1.0 is gone with it
    assert core.on_image(image(2 * DT)).drive.drive.speed == pytest.approx(FULL_SPEED)


def test_a_warning_that_is_not_a_number_slows_the_car():
    # a NaN score (a broken monitor) spoils the 2 s mean; the caution takes the safe side
    readings = iter([0.0, float("nan")])
    core = core_with(uncertainty=lambda: next(readings), caution=Caution(0.25, 0.8))
    assert core.on_image(image(0.0)).drive.drive.speed == pytest.approx(FULL_SPEED)
    assert core.on_image(image(DT)).drive.drive.speed == pytest.approx(0.8 * FULL_SPEED)
    assert caution_state(core) == "slowing"
    assert Caution(0.25, 0.8).active(float("nan")) and not Caution(0.25, 0.8).active(None)


@pytest.mark.parametrize("warning, scale, reason", [
    (0.0, 0.8, "caution warning must be above 0"),
    (float("nan"), 0.8, "caution warning must be a finite number"),
    (0.25, 1.01, r"caution speed_scale must be in \(0, 1\]"),
    (0.25, -0.5, r"caution speed_scale must be in \(0, 1\]"),
    (0.25, float("inf"), "caution speed_scale must be a finite number"),
    (None, 0.8, "caution warning must be a finite number"),
])
def test_a_caution_out_of_range_is_refused(warning, scale, reason):
    with pytest.raises(ValueError, match=reason):
        Caution(warning, scale)
