"""The honest held-out test (sim2real/heldout.yaml): beyond the training ranges on tracks training
never drives, refused by training, with enough laps for a 3-point interval; and the statistics
`racer eval` prints with it."""
import math

import numpy as np
import pytest
import yaml

from racer.cli import main
from racer.commands.train import TRAIN_TRACKS
from sim2real.gap import held_out_tracks
from sim2real.heldout import TEST_FILE, DomainsFileError, TestDistribution as Distribution, load_domains
from sim2real.imitation import ImitationConfig
from sim2real.randomize import Randomization, RandomizationError
from sim2real.sim.generated_track import generate_track
from sim2real.stats import MIN_INTERVAL_GROUP, auroc, auroc_interval, mcnemar_exact, wilson_interval


@pytest.fixture(scope="module")
def test_distribution():
    return Distribution.load()


def test_every_random_domain_lies_beyond_training_in_several_groups(test_distribution):
    training = Randomization.preset(test_distribution.training)
    assert test_distribution.training == "default" and test_distribution.beyond >= 3
    random = test_distribution.domains()[:test_distribution.episodes]
    assert len(random) == test_distribution.episodes >= 300
    group_of = {knob: g for g, knobs in test_distribution.groups.items() for knob in knobs}
    assert set(test_distribution.groups) == {"lighting", "floor", "paint_wear", "lens_and_mount",
                                             "dynamics_and_delay", "distractors"}
    for domain in random:
        beyond = training.outside(domain.values)
        assert len({group_of[knob] for knob in beyond}) == test_distribution.beyond, domain.name
        assert domain.pool == test_distribution.name and len(domain.episodes) == 1
    # the seed fixes every draw: each model meets the same episodes
    assert Distribution.load().domains() == test_distribution.domains()


def test_the_test_tracks_are_none_of_the_training_tracks(test_distribution):
    for trained in (ImitationConfig().tracks, tuple(TRAIN_TRACKS.split(","))):
        assert set(test_distribution.tracks) <= set(held_out_tracks(trained))
    episodes = [e for d in test_distribution.domains() for e in d.episodes]
    assert {e.track for e in episodes} == set(test_distribution.tracks)


def test_named_domains_include_wide_distorted_lenses(test_distribution):
    named = test_distribution.domains()[test_distribution.episodes:]
    wide = [d for d in named if d.values.get("camera_hfov_deg", 0) >= 120 and d.values.get("lens_fisheye", 0) > 0]
    assert len(named) >= 6 and len(wide) >= 2
    assert all(len(d.episodes) == test_distribution.starts * len(test_distribution.tracks) for d in named)


def test_training_refuses_the_test_distribution(tmp_path, capsys):
    with pytest.raises(RandomizationError, match="held-out test distribution 'honest-1'; training never draws"):
        Randomization.load(TEST_FILE)
    assert main(["train", "--randomization", str(TEST_FILE), "--out", str(tmp_path / "run")]) == 2
    assert "training never draws from it" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_band_that_overlaps_training_is_refused(tmp_path):
    doc = yaml.safe_load(TEST_FILE.read_text())
    doc["groups"]["lighting"]["light"] = [[0.4, 0.8]]  # the default preset draws light in 0.75..1.3
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(DomainsFileError, match=r"lighting: light band \[0.4, 0.8\] overlaps the default training"):
        load_domains(path)


def test_track_files_are_found_beside_the_test_file(tmp_path, monkeypatch):
    (tmp_path / "set" / "tracks").mkdir(parents=True)
    np.save(tmp_path / "set" / "tracks" / "gen1.npy", generate_track(1))
    np.save(tmp_path / "elsewhere.npy", generate_track(2))
    doc = {**yaml.safe_load(TEST_FILE.read_text()), "episodes": 3,
           "tracks": ["tracks/gen1.npy", str(tmp_path / "elsewhere.npy"), "Oval_track"]}
    path = tmp_path / "set" / "test.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path)
    domains = load_domains(path)
    assert [d.episodes[0].track for d in domains[:3]] == [
        str(tmp_path / "set" / "tracks" / "gen1.npy"), str(tmp_path / "elsewhere.npy"), "Oval_track"]


@pytest.mark.parametrize("change, message", [
    ({"tracks": ["Straight_track"]}, "Straight_track is not a closed track"),
    ({"tracks": "Oval_track"}, "tracks: expected a list"),
    ({"tracks": ["gone.npy"]}, "gone.npy"),
    ({"tracks": ["text.npy"]}, "text.npy': cannot read a waypoint array"),
    ({"tracks": ["moon"]}, "unknown track 'moon'"),
    ({"tracks": ["Oval_track", "Bowtie_track", "Oval_track"]}, "tracks: Oval_track is listed twice"),
    ({"episodes": -5}, "episodes: expected an integer of at least 0"),
    ({"beyond": 9}, "beyond: 9 groups, but the file has 6"),
    ({"colour": 1}, "unknown key(s) colour"),
    ({"base": {"fog": [0, 1]}}, "unknown randomization knob 'fog'"),
])
def test_bad_test_distributions(tmp_path, change, message):
    doc = {**yaml.safe_load(TEST_FILE.read_text()), **change}
    (tmp_path / "text.npy").write_text("centre x, centre y, ...\n")
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(DomainsFileError, match=f"^{path}: .*{message.replace('(', '.').replace(')', '.')}"):
        load_domains(path)


def test_enough_episodes_for_a_three_point_interval(test_distribution):
    n = test_distribution.episodes
    for p in (0.9, 0.95, 0.99):
        low, high = wilson_interval(round(p * n), n)
        assert (high - low) / 2 <= 0.03, p


@pytest.mark.parametrize("successes, trials, expected", [
    (81, 263, (0.2553, 0.3662)),  # Newcombe 1998, Statistics in Medicine 17:857, table II
    (15, 148, (0.0624, 0.1605)),
    (0, 10, (0.0, 0.2775)),
    (10, 10, (0.7225, 1.0)),
])
def test_wilson_interval_of_known_counts(successes, trials, expected):
    assert wilson_interval(successes, trials) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("successes, trials", [(1, 0), (-1, 5), (6, 5)])
def test_wilson_interval_refuses_impossible_counts(successes, trials):
    with pytest.raises(ValueError, match="0 <= successes <= trials"):
        wilson_interval(successes, trials)


def test_auroc():
    assert auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auroc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auroc([0.9, 0.4], [0.5, 0.1]) == 0.75
    assert auroc([1.0, 1.0], [1.0]) == 0.5  # ties count half
    assert auroc([2.0], []) is None
    assert math.isclose(auroc([5, 1, 3], [2, 2, 4, 0]), 8 / 12)


def test_auroc_interval():
    rng = np.random.default_rng(7)
    # scores of N(1, 1) against N(0, 1): the true AUROC is Phi(1 / sqrt 2) = 0.760
    failed, completed = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 300)
    low, high = auroc_interval(failed, completed)
    assert low < auroc(failed, completed) < high and low < 0.760 < high and high - low < 0.12
    assert auroc_interval(failed, completed) == (low, high)  # seeded: the same report twice
    assert auroc_interval(failed[:20], completed[:30])[1] - auroc_interval(failed[:20], completed[:30])[0] > high - low
    # groups that never overlap: every resample gives 1.0, no interval to be had
    assert auroc(range(10, 20), range(10)) == 1.0 and auroc_interval(range(10, 20), range(10)) is None
    # too few on a side for the bootstrap to say anything
    assert auroc_interval(failed[:MIN_INTERVAL_GROUP - 1], completed) is None
    assert auroc_interval(failed[:MIN_INTERVAL_GROUP], completed) is not None
    with pytest.raises(ValueError, match="NaN"):  # it would sort as the highest score
        auroc([float("nan"), 1.0], [0.5])


@pytest.mark.parametrize("only_a, only_b, expected", [
    (0, 5, 2 / 2**5),  # every discordant lap one way: twice the chance of 5 heads in 5
    (1, 9, 2 * (1 + 10) / 2**10),  # twice P(X <= 1), X ~ Binomial(10, 1/2): C(10, 0) + C(10, 1) of 2^10
    (9, 1, 2 * (1 + 10) / 2**10),  # the test is two-sided: A and B swapped give the same p
    (3, 3, 1.0),
    (0, 0, 1.0),  # no lap tells them apart
])
def test_mcnemar_exact(only_a, only_b, expected):
    assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_exact_refuses_negative_counts():
    with pytest.raises(ValueError, match="cannot be negative"):
        mcnemar_exact(-1, 4)
