"""The gap evaluation, in a tiny version: domains files, variant training and reuse, the table,
the plot, and `racer eval`."""
import json
import shutil

import numpy as np
import pytest
import yaml

from car.policy.bundle import load_bundle
from car.policy.core import PolicyCore
from car.policy.racer_json import training_tracks
from model_factory import REPO
from s2r_cli import racer_s2r
from sim2real.gap import (
    EvalConfig,
    NamedDomain,
    evaluate,
    format_pairs,
    format_table,
    held_out_tracks,
    paired_laps,
    run_gap_evaluation,
    summarize,
)
from sim2real.heldout import TEST_FILE, DomainsFileError, load_domains
from sim2real.imitation import ImitationConfig
from sim2real.plots import gap_plot
from sim2real.randomize import KNOBS
from sim2real.sim.generated_track import generate_track

TINY = ImitationConfig(tracks=("reinvent_base",), iterations=1, steps_per_iteration=100, epochs=1, threads=1)
QUICK = EvalConfig(tracks=("reinvent_base",), starts=1, lap_timeout_s=5.0)
DARK = NamedDomain("dark", {"light": 0.5})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gap")
    models = run_gap_evaluation(out, [0], [DARK], TINY, QUICK, variants=("none", "both"))
    return out, models


def test_domains_file(tmp_path):
    path = tmp_path / "domains.yaml"
    path.write_text("- name: dim\n  light: 0.5\n  exposure_ev: -0.5\n- name: laggy\n  delay_ms: 140\n")
    domains = load_domains(path)
    assert [d.name for d in domains] == ["dim", "laggy"]
    assert domains[0].values == {"light": 0.5, "exposure_ev": -0.5}
    assert domains[0].domain() == domains[0].domain()  # the same world for every model


@pytest.mark.parametrize("text, message", [
    ("- name: foggy\n  fog: 0.3\n", "domain 'foggy': unknown randomization knob 'fog'"),
    ("- name: hot\n  light: 50\n", "domain 'hot': knob light: 50 is outside"),
    ("name: dim\nlight: 0.5\n", "expected a non-empty YAML list of domains or a test distribution"),
    ("[]\n", "expected a non-empty YAML list"),
    ("- light: 0.5\n", "domain 1: expected a mapping with a 'name'"),
    ("- name: a\n- name: a\n", "domain 'a' appears twice"),
    ("- name: [a\n", "not valid YAML"),
])
def test_bad_domains_files(tmp_path, text, message):
    path = tmp_path / "domains.yaml"
    path.write_text(text)
    with pytest.raises(DomainsFileError, match=message):
        load_domains(path)
    with pytest.raises(DomainsFileError, match="cannot read"):
        load_domains(tmp_path / "missing.yaml")


def test_variants_train_evaluate_and_are_reused(tiny_run):
    out, models = tiny_run
    assert [(m["variant"], m["seed"]) for m in models] == [("none", 0), ("both", 0)]
    for m in models:
        result = m["results"]["dark"]
        assert result["laps"] == 1 and result["completed"] in (0, 1)
        assert 0.0 <= result["mean_progress"] <= 100.0
        [(track, start, completed, off_track, monitor, ahead)] = result["episodes"]
        assert (track, start, completed) == ("reinvent_base", 0.0, result["completed"] == 1)
        # the car's score: the domain-shift excess, 0 while the frames look like training
        assert isinstance(monitor, float) and monitor >= 0.0 and off_track in (True, False)
        # a lap that stayed on has no off-track to forecast: the lead score is the lap's own
        assert ahead == monitor if not off_track else ahead is None or ahead >= 0.0
    both = json.loads((out / "both-s0" / "bundle" / "racer.json").read_text())["model"]["config"]
    assert (both["randomization"], both["augmentation"]) == ("default", "default")
    stamp = (out / "none-s0" / "bundle" / "model.xml").stat().st_mtime_ns
    again = run_gap_evaluation(out, [0], [DARK], TINY, QUICK, variants=("none",))
    assert (out / "none-s0" / "bundle" / "model.xml").stat().st_mtime_ns == stamp
    assert again[0]["results"] == models[0]["results"]  # the same model in the same world drives the same


def test_models_are_evaluated_on_tracks_they_did_not_train_on(tiny_run):
    out, models = tiny_run
    # The reversed 2024 track is the same shape as the 2024 track.
    assert held_out_tracks(("reinvent_base", "Spain_track", "2024_reinvent_champ_cw")) == (
        "Bowtie_track", "Oval_track", "Tokyo_Training_track", "reInvent2019_track")
    with load_bundle(out / "none-s0" / "bundle") as bundle:
        assert training_tracks(bundle.info) == ("reinvent_base",)
    assert "reinvent_base" not in held_out_tracks(("reinvent_base",))
    # The shipped recipe trains on three shapes and leaves five tracks.
    assert held_out_tracks(ImitationConfig().tracks) == (
        "2024_reinvent_champ_ccw", "2024_reinvent_champ_cw", "Bowtie_track", "Oval_track", "reInvent2019_track")
    assert models[0]["results"]["dark"]["tracks"] == ["reinvent_base"]  # QUICK names its track


def test_a_trained_track_this_machine_lacks_matches_no_held_out_track(tmp_path):
    # A bundle trained on an outline file elsewhere, or hand-edited, must not stop racer eval.
    gone = str(tmp_path / "my_track.npy")
    assert held_out_tracks(("no_such_track", gone, "Spain_track")) == held_out_tracks(("Spain_track",))
    assert held_out_tracks((gone,)) == held_out_tracks(())


def _result(completed, laps, progress, monitors=()):
    """A domain's result with `completed` of `laps` laps; `monitors` are (score, completed) or
    (score, completed, score 1 s before the off-track) per lap."""
    episodes = [["t", 0.0, m[1], not m[1], m[0], m[2] if len(m) > 2 else m[0]] for m in monitors]
    return {"laps": laps, "completed": completed, "mean_progress": progress, "episodes": episodes}


def test_summary_pools_laps_with_their_interval_and_the_monitors_auroc(tmp_path):
    models = [{"variant": "none", "seed": 0, "results": {"a": _result(4, 10, 60.0, [(3.0, False, 0.5), (1.0, True)]),
                                                         "b": _result(1, 2, 50.0, [(9.0, False, None)])}},
              {"variant": "none", "seed": 1, "results": {"a": _result(10, 10, 100.0, [(2.0, False, 2.0), (2.5, True)]),
                                                         "b": _result(2, 2, 100.0)}},
              {"variant": "bundle", "seed": None, "results": {"a": _result(95, 100, 99.0), "b": _result(0, 2, 10.0)}}]
    domains = [NamedDomain("a", {}), NamedDomain("b", {})]
    summary = summarize(models, domains)
    # 14 of 20 laps: Wilson 95% interval 48.1-85.5%
    assert summary["none"]["domains"]["a"] == {"completed": 14, "laps": 20, "completion_pct": 70.0,
                                               "ci95": [48.1, 85.5], "mean_progress": 80.0}
    assert summary["none"]["completion_by_seed"] == [41.7, 100.0]
    assert (summary["none"]["completed"], summary["none"]["laps"], summary["none"]["completion_pct"]) == (17, 24, 70.8)
    # off-track laps scored 3.0, 9.0 and 2.0, completed ones 1.0 and 2.5: 5 of 6 pairs ordered right;
    # a second before the off-track they scored 0.5 and 2.0 (the third left sooner): 1 of 4
    # too few laps for a bootstrap interval (`test_s2r_heldout.py` has them)
    assert summary["none"]["monitor"] == {"score": PolicyCore.MONITOR, "window_s": 2.0, "off_track_laps": 3,
                                          "completed_laps": 2, "auroc": 0.833, "auroc_ci95": None,
                                          "lead_s": 1.0, "lead_off_track_laps": 2, "lead_auroc": 0.25,
                                          "lead_auroc_ci95": None}
    assert summary["bundle"]["monitor"]["auroc"] is None  # no lap says what the score was
    assert summary["bundle"]["monitor"]["auroc_ci95"] is None
    table = format_table(summary, domains).splitlines()
    assert table[0].split() == ["variant", "a", "b", "all", "laps", "monitor", "AUROC", "1", "s", "ahead", "seeds"]
    assert table[1].startswith("none") and "70.0 [48.1, 85.5] n=20" in table[1]
    assert table[1].endswith(" 0.833" + " " * 17 + "0.250  0,1")
    # 95 of 100 laps: Wilson 88.8-97.8%; 0 of 2: 0.0-65.8%
    assert "95.0 [88.8, 97.8] n=100" in table[2] and "0.0 [0.0, 65.8] n=2" in table[2]
    assert table[2].endswith(" -" + " " * 21 + "-  -")  # no AUROC, and a given bundle has no training seed
    path = gap_plot(summary, ["a", "b"], tmp_path / "gap.png")
    assert path.stat().st_size > 10_000


def _laps(*laps, group="test"):
    """A domain's result from (track, start, completed) laps, pooled in `group`."""
    return {"group": group, "episodes": [[track, start, done, not done, None, None] for track, start, done in laps]}


def test_paired_laps_count_what_each_model_completed_alone_on_the_laps_both_drove():
    a = {"name": "A", "results": {"dim": _laps(("t1", 0.0, True), ("t1", 0.5, True), ("t2", 0.0, False)),
                                  "glare": _laps(("t1", 0.0, False))}}
    # B also drove a lap on t3, which A did not (say A trained on it): it is left out of the pair
    b = {"name": "B", "results": {"dim": _laps(("t1", 0.0, True), ("t1", 0.5, False), ("t2", 0.0, True)),
                                  "glare": _laps(("t1", 0.0, False), ("t3", 0.0, True))}}
    c = {"name": "C", "results": {"dim": _laps(("t1", 0.0, True), ("t1", 0.5, True), ("t2", 0.0, True)),
                                  "glare": _laps(("t1", 0.0, True))}}
    pairs = paired_laps([a, b, c])
    assert pairs[0] == {"a": "A", "b": "B", "paired_laps": 4, "both": 1, "only_a": 1, "only_b": 1, "neither": 1,
                        "unpaired_a": 0, "unpaired_b": 1, "p_value": 1.0}
    # C completes the two laps A leaves and none that A completes: p = 2 x (1/2)^2
    assert pairs[1] == {"a": "A", "b": "C", "paired_laps": 4, "both": 2, "only_a": 0, "only_b": 2, "neither": 0,
                        "unpaired_a": 0, "unpaired_b": 0, "p_value": 0.5}
    assert (pairs[2]["a"], pairs[2]["b"], pairs[2]["paired_laps"], pairs[2]["only_a"], pairs[2]["only_b"],
            pairs[2]["unpaired_a"]) == ("B", "C", 4, 0, 2, 1)
    assert format_pairs(pairs[:2]).splitlines() == [
        "A against B: 4 laps driven by both, 1 completed by A alone, 1 by B alone (exact McNemar p = 1); "
        "1 of B's laps left out, the other did not drive them",
        "A against C: 4 laps driven by both, 0 completed by A alone, 2 by C alone (exact McNemar p = 0.5)"]
    assert paired_laps([a]) == [] and paired_laps([]) == []
    # no lap in common (every track one trained on, the other drove): no p, and said so
    d = {"name": "D", "results": {"dim": _laps(("t9", 0.0, True))}}
    [apart] = paired_laps([a, d])
    assert (apart["paired_laps"], apart["unpaired_a"], apart["unpaired_b"], apart["p_value"]) == (0, 4, 1, None)
    assert format_pairs([apart]) == "A against D: no lap driven by both, not compared"
    # laps in two pools (a test distribution's random domains and a named domain): counted per pool too
    e = {"name": "E", "results": {"r1": _laps(("t1", 0.0, True), group="honest"),
                                  "r2": _laps(("t1", 0.0, True), group="honest"),
                                  "dim": _laps(("t1", 0.0, False), group="dim")}}
    f = {"name": "F", "results": {"r1": _laps(("t1", 0.0, False), group="honest"),
                                  "r2": _laps(("t1", 0.0, True), group="honest"),
                                  "dim": _laps(("t1", 0.0, True), group="dim")}}
    [pair] = paired_laps([e, f])
    assert (pair["paired_laps"], pair["only_a"], pair["only_b"]) == (3, 1, 1)
    assert pair["groups"] == {
        "honest": {"paired_laps": 2, "both": 1, "only_a": 1, "only_b": 0, "neither": 0, "p_value": 1.0},
        "dim": {"paired_laps": 1, "both": 0, "only_a": 0, "only_b": 1, "neither": 0, "p_value": 1.0}}
    assert format_pairs([pair]).splitlines()[1:] == ["  honest: 2 laps, 1 and 0 alone (p = 1)",
                                                     "  dim: 1 lap, 0 and 1 alone (p = 1)"]


def test_the_table_prints_the_aurocs_interval_under_its_heading():
    # 12 laps off the track scored 1..12, 12 completed scored 0.5..11.5: AUROC 78 / 144 pairs ordered
    # right; a second ahead they all scored 0, below every completed lap in every resample: no interval
    laps = [(float(i), False, 0.0) for i in range(1, 13)] + [(i - 0.5, True) for i in range(1, 13)]
    models = [{"variant": "m", "seed": 0, "results": {"a": _result(12, 24, 50.0, laps)}}]
    domains = [NamedDomain("a", {})]
    summary = summarize(models, domains)
    low, high = summary["m"]["monitor"]["auroc_ci95"]
    assert summary["m"]["monitor"]["auroc"] == 0.542 and low < 0.542 < high
    header, row = format_table(summary, domains).splitlines()
    cell = f"0.542 [{low:.3f}, {high:.3f}]"
    assert row.index(cell) + len(cell) == header.index("AUROC") + len("AUROC")
    assert (summary["m"]["monitor"]["lead_auroc"], summary["m"]["monitor"]["lead_auroc_ci95"]) == (0.0, None)
    assert row.endswith(" 0.000  0")


def test_random_domains_pool_into_their_test(tmp_path):
    domains = [NamedDomain("t-000", {}, 1, "t"), NamedDomain("t-001", {}, 2, "t"), NamedDomain("dark", {})]
    models = [{"variant": "m", "seed": None, "results": {"t-000": _result(1, 1, 100.0), "t-001": _result(0, 1, 40.0),
                                                         "dark": _result(3, 4, 90.0)}}]
    summary = summarize(models, domains)
    assert list(summary["m"]["domains"]) == ["t", "dark"]
    assert summary["m"]["domains"]["t"]["laps"] == 2 and summary["m"]["domains"]["t"]["mean_progress"] == 70.0
    assert format_table(summary, domains).splitlines()[0].split()[1:3] == ["t", "dark"]


def test_the_score_comes_from_the_cars_policy_node(tiny_run, monkeypatch):
    out, _ = tiny_run
    monkeypatch.setattr(PolicyCore, "monitor_score", lambda self: 250.0)
    result = evaluate(out / "none-s0" / "bundle", [DARK], QUICK)["dark"]
    assert result["episodes"][0][4] == 250.0
    assert result["episodes"][0][5] in (250.0, None)  # a second ahead: the same score, or none if it left sooner
    assert 0.0 < result["mean_progress"] <= 100.0  # the lap's progress, not a score


def test_eval_command_on_given_bundles(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    domains = tmp_path / "domains.yaml"
    domains.write_text("- name: dim\n  light: 0.6\n")
    code = racer_s2r("eval", "--json", "--model", str(out / "none-s0" / "bundle"), "--domains", str(domains),
                     "--tracks", "reinvent_base", "--starts", "1", "--max-speed", "0.8",
                     "--out", str(tmp_path / "eval"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["domains"] == [{"name": "dim", "group": "dim", "values": {"light": 0.6},
                                  "outside_training": ["light"]}]
    assert report["models"][0]["name"] == "none-s0" and report["models"][0]["results"]["dim"]["laps"] == 1
    assert report["eval"] == {"tracks": ["reinvent_base"], "starts": 1, "max_speed": 0.8}
    assert report["paired"] == []  # one model: nothing to compare it with
    assert set(report["summary"]["none-s0"]) >= {"completion_pct", "mean_progress", "domains", "seeds"}
    assert (tmp_path / "eval" / "gap.png").is_file() and (tmp_path / "eval" / "gap.json").is_file()
    assert "lap completion % [95% interval] n=laps at max-speed 0.8" in captured.err
    # minutes of work say what they do on stderr, --json or not, and how long they took
    assert f"racer eval: evaluating {out / 'none-s0' / 'bundle'} in 1 domains" in captured.err
    assert "racer eval:   dim: " in captured.err and "(1/1 domains)" in captured.err
    assert report["duration_s"] > 0
    assert json.loads((tmp_path / "eval" / "gap.json").read_text())["duration_s"] == report["duration_s"]


def test_eval_command_compares_given_bundles_lap_by_lap(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    bundles = [out / "none-s0" / "bundle", out / "both-s0" / "bundle"]
    code = racer_s2r("eval", "--json", "--model", str(bundles[0]), "--model", str(bundles[1]), "--domains", "nominal",
                     "--tracks", "reinvent_base", "--starts", "3", "--max-speed", "1.0",
                     "--out", str(tmp_path / "eval"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    done = [[lap[2] for lap in model["results"]["nominal"]["episodes"]] for model in report["models"]]
    assert len(done[0]) == len(done[1]) == 3
    only_a = sum(1 for x, y in zip(*done, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(*done, strict=True) if y and not x)
    [pair] = report["paired"]
    assert (pair["a"], pair["b"], pair["paired_laps"], pair["only_a"], pair["only_b"]) == \
        ("none-s0", "both-s0", 3, only_a, only_b)
    assert pair["both"] + pair["neither"] == 3 - only_a - only_b
    assert json.loads((tmp_path / "eval" / "gap.json").read_text())["paired"] == report["paired"]
    assert f"none-s0 against both-s0: 3 laps driven by both, {only_a} completed by none-s0 alone" in captured.err


def test_eval_compare_pairs_finished_runs_as_one_run_pairs_its_bundles(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    bundles = [str(out / "none-s0" / "bundle"), str(out / "both-s0" / "bundle")]
    common = ["--domains", "nominal", "--tracks", "reinvent_base", "--starts", "3", "--max-speed", "1.0"]
    assert racer_s2r("eval", "--json", "--model", bundles[0], "--model", bundles[1], *common,
                     "--out", str(tmp_path / "both")) == 0
    together = json.loads(capsys.readouterr().out)["paired"]
    for i, bundle in enumerate(bundles):
        assert racer_s2r("eval", "--model", bundle, *common, "--out", str(tmp_path / f"run{i}")) == 0
    capsys.readouterr()
    # a run's directory or its gap.json
    assert racer_s2r("eval", "--json", "--compare", str(tmp_path / "run0"), str(tmp_path / "run1" / "gap.json")) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["paired"] == together
    assert report["runs"] == [{"run": str(tmp_path / "run0"), "max_speed": 1.0, "models": ["none-s0"]},
                              {"run": str(tmp_path / "run1" / "gap.json"), "max_speed": 1.0, "models": ["both-s0"]}]
    assert f"{tmp_path / 'run0'}: none-s0 at max-speed 1" in captured.err
    assert "none-s0 against both-s0: 3 laps driven by both" in captured.err
    # one bundle in two runs: each gets its run's name, and the simulator drove it the same both times
    assert racer_s2r("eval", "--json", "--compare", str(tmp_path / "run0"), str(tmp_path / "both")) == 0
    first, *_ = json.loads(capsys.readouterr().out)["paired"]
    assert (first["a"], first["b"]) == (f"none-s0 ({tmp_path / 'run0'})", f"none-s0 ({tmp_path / 'both'})")
    assert (first["paired_laps"], first["only_a"], first["only_b"]) == (3, 0, 0)


def test_eval_compare_refuses_what_it_cannot_pair(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    assert racer_s2r("eval", "--model", str(out / "none-s0" / "bundle"), "--domains", "nominal", "--tracks",
                     "reinvent_base", "--starts", "1", "--out", str(tmp_path / "run")) == 0
    run = str(tmp_path / "run")
    good = json.loads((tmp_path / "run" / "gap.json").read_text())

    def edited(name, change):
        report = json.loads(json.dumps(good))
        change(report)
        (tmp_path / name).write_text(json.dumps(report))
        return str(tmp_path / name)

    def lap(report):
        return report["models"][0]["results"]["nominal"]["episodes"]

    (tmp_path / "garbage.json").write_text("not json {")
    (tmp_path / "huge.json").write_text('{"eval": ' + "9" * 5000 + "}")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "list.json").write_text("[]")
    cases = [
        ([str(tmp_path / "nothing"), run], f"no report at {tmp_path / 'nothing'}"),
        ([str(tmp_path / "garbage.json"), run], f"{tmp_path / 'garbage.json'}: not a racer eval report"),
        ([str(tmp_path / "huge.json"), run], f"{tmp_path / 'huge.json'}: not a racer eval report"),
        ([str(tmp_path / "deep.json"), run], f"{tmp_path / 'deep.json'}: not a racer eval report"),
        ([run, str(tmp_path / "list.json")], f"{tmp_path / 'list.json'}: not a racer eval report (no domains"),
        ([run, edited("speed.json", lambda r: r["eval"].update(max_speed="1.0"))], "max_speed '1.0' is not in (0, 1]"),
        ([run, edited("light.json", lambda r: r["domains"][0].update(values={"light": 0.5}))],
         f"{tmp_path / 'light.json'} drove other laps than {run}"),
        ([run, edited("starts.json", lambda r: r["eval"].update(starts=3))], "drove other laps than"),
        ([edited("here.json", lambda r: r["domains"][0].update(episodes=[["reinvent_base", 0.0]])),
          edited("there.json", lambda r: r["domains"][0].update(episodes=[["Oval_track", 0.0]]))],
         "drove other laps than"),
        ([run, edited("cut.json", lambda r: lap(r).__setitem__(0, [1]))],
         "not a racer eval report (none-s0: a lap in nominal is not [track, start, completed, ...])"),
        ([run, edited("text.json", lambda r: lap(r)[0].__setitem__(2, "false"))], "a lap in nominal is not"),
        ([run, edited("twice.json", lambda r: lap(r).append(lap(r)[0]))],
         "none-s0: nominal has the lap on reinvent_base from 0.0 twice"),
        ([run, edited("elsewhere.json", lambda r: r["models"][0]["results"].update(moon={"episodes": []}))],
         "none-s0 drove 'moon', which the report does not name"),
        ([run, edited("grid.json", lambda r: r["models"][0].update(seed=0))], "is a gap grid"),
        ([run, edited("none.json", lambda r: r.update(models=[]))], "none.json: the run has no bundle to compare"),
        ([run], "--compare needs two bundles or more in all, got 1"),
        ([run, f"{run}/gap.json"], f"--compare is given the run {run}/gap.json twice"),
        ([run, run, "--max-speed", "0.5", "--out", "x"], "and writes nothing: leave out --out, --max-speed"),
        ([run, run, "--trials", "2", "--model", "models/default"], "leave out --model, --trials"),
    ]
    capsys.readouterr()
    for args, message in cases:
        assert racer_s2r("eval", "--compare", *args) == 2, args
        assert message in capsys.readouterr().err, args


def test_eval_compare_fails_when_no_two_bundles_drove_a_lap_in_common(tiny_run, tmp_path, capsys):
    # a second run whose bundle drove its lap on another track (as a bundle trained on reinvent_base would)
    out, _ = tiny_run
    bundle = str(out / "none-s0" / "bundle")
    assert racer_s2r("eval", "--model", bundle, "--domains", "nominal", "--tracks", "reinvent_base", "--starts", "1",
                     "--out", str(tmp_path / "a")) == 0
    report = json.loads((tmp_path / "a" / "gap.json").read_text())
    report["models"][0]["results"]["nominal"]["episodes"][0][0] = "Oval_track"
    report["models"][0]["name"] = "elsewhere"
    (tmp_path / "b.json").write_text(json.dumps(report))
    capsys.readouterr()
    assert racer_s2r("eval", "--json", "--compare", str(tmp_path / "a"), str(tmp_path / "b.json")) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["paired"][0]["p_value"] is None
    assert "none-s0 against elsewhere: no lap driven by both, not compared" in captured.err
    assert "no two bundles drove a lap in common" in captured.err


def test_eval_command_on_a_test_distribution(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    doc = {**yaml.safe_load(TEST_FILE.read_text()), "episodes": 2, "starts": 1, "tracks": ["Oval_track"],
           "named": [{"name": "dim", "light": 0.6}]}
    domains = tmp_path / "test.yaml"
    domains.write_text(yaml.safe_dump(doc))
    code = racer_s2r("eval", "--json", "--model", str(out / "none-s0" / "bundle"), "--domains", str(domains),
                     "--out", str(tmp_path / "eval"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    row = json.loads(captured.out)["summary"]["none-s0"]
    assert {pool: cell["laps"] for pool, cell in row["domains"].items()} == {"honest-1": 2, "dim": 1}
    assert row["laps"] == 3 and len(row["ci95"]) == 2
    header = next(line for line in captured.err.splitlines() if line.startswith("variant"))
    assert header.split()[:3] == ["variant", "honest-1", "dim"]
    assert (tmp_path / "eval" / "gap.png").is_file()


def test_eval_drives_a_test_distributions_own_track_files_and_says_what_it_leaves_out(tiny_run, tmp_path, capsys):
    # A selection set: the test's file with another seed and generated tracks beside it. Its .npy
    # tracks are driven without --tracks; the track the bundle trained on is left out, and said so.
    out, _ = tiny_run
    folder = tmp_path / "selection"
    (folder / "tracks").mkdir(parents=True)
    np.save(folder / "tracks" / "gen3.npy", generate_track(3))
    doc = {**yaml.safe_load(TEST_FILE.read_text()), "test_distribution": "selection", "seed": 7, "episodes": 2,
           "starts": 1, "tracks": ["tracks/gen3.npy", "reinvent_base"], "named": [{"name": "dim", "light": 0.6}]}
    (folder / "sel.yaml").write_text(yaml.safe_dump(doc))
    code = racer_s2r("eval", "--json", "--model", str(out / "none-s0" / "bundle"), "--domains",
                     str(folder / "sel.yaml"), "--out", str(tmp_path / "eval"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    row = json.loads(captured.out)["summary"]["none-s0"]
    assert {pool: cell["laps"] for pool, cell in row["domains"].items()} == {"selection": 1, "dim": 1}
    report = json.loads((tmp_path / "eval" / "gap.json").read_text())
    assert (report["test"], report["domains_file"]) == ("selection", str(folder / "sel.yaml"))
    results = report["models"][0]["results"]
    assert results["selection-000"]["tracks"] == [str(folder / "tracks" / "gen3.npy")]
    assert (results["selection-001"]["laps"], results["selection-001"]["excluded"]) == (0, 1)
    assert (results["dim"]["laps"], results["dim"]["excluded"]) == (1, 1)
    assert "selection-001: 0 of 0 laps, 1 left out (on a track it trained on)" in captured.err
    # Asked for tracks the file does not drive, nothing is driven: that is a failure, not an empty table.
    code = racer_s2r("eval", "--model", str(out / "none-s0" / "bundle"), "--domains", str(folder / "sel.yaml"),
                     "--tracks", "Oval_track", "--out", str(tmp_path / "none"))
    captured = capsys.readouterr()
    assert code == 1
    assert "0 of 0 laps, 1 left out (not among the evaluation tracks)" in captured.err
    assert "racer eval: no lap was driven" in captured.err


def test_eval_of_given_bundles_leaves_the_grids_directory_alone(tiny_run, tmp_path, capsys, monkeypatch):
    out, _ = tiny_run
    monkeypatch.chdir(tmp_path)
    code = racer_s2r("eval", "--model", str(out / "none-s0" / "bundle"), "--domains", "nominal",
                     "--tracks", "reinvent_base", "--starts", "1")
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs" / "eval").iterdir()) == ["gap.json", "gap.png"]
    assert not (tmp_path / "runs" / "gap").exists()


def test_the_table_header_stays_over_its_columns_with_a_long_model_name():
    models = [{"variant": name, "seed": None, "results": {"dark": _result(1, 2, 75.0), "lit": _result(400, 400, 100.0)}}
              for name in ("a-rather-long-model-name-v12", "short")]
    domains = [DARK, NamedDomain("lit", {})]
    header, *rows = format_table(summarize(models, domains), domains).splitlines()
    for line in rows:  # every column ends where its heading does, a gap before it
        for cell, heading in (("50.0 [9.5, 90.5] n=2", "dark"), ("100.0 [99.0, 100.0] n=400", "lit"),
                              ("99.8 [98.6, 100.0] n=402", "all laps")):
            assert line.index(cell) + len(cell) == header.index(heading) + len(heading)
            assert line[line.index(cell) - 2:line.index(cell)] == "  "


def test_eval_command_in_the_nominal_world(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    code = racer_s2r("eval", "--json", "--model", str(out / "none-s0" / "bundle"), "--domains", "nominal",
                     "--tracks", "reinvent_base", "--starts", "1", "--out", str(tmp_path / "eval"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["domains"] == [{"name": "nominal", "group": "nominal", "values": {}, "outside_training": []}]
    assert report["models"][0]["results"]["nominal"]["laps"] == 1


@pytest.mark.parametrize("args, message", [
    (["--seeds", "one"], "--seeds must be comma-separated integers"),
    (["--seeds", ""], "--seeds and --train-tracks need at least one entry"),
    (["--variants", "none,magic"], "unknown variant(s) magic"),
    (["--model", "no/such/bundle"], "no bundle at no/such/bundle"),
    (["--tracks", "moon"], "or a .npy outline file (racer sim generate-track writes one)"),
    (["--tracks", "Oval_track,Bowtie_track,Oval_track"], "--tracks names Oval_track twice"),
    (["--starts", "0"], "--starts"),
    (["--max-speed", "1.5"], "--max-speed must be in (0, 1]"),
    (["--train-tracks", "moon"], "unknown track 'moon'"),
    (["--variants", "modular-magic"], "unknown variant(s) modular-magic"),
    (["--perception-steps", "0"], "--perception-steps and --perception-epochs at least 1"),
    (["--episodes", "-1"], "--episodes must be 0 or more"),
    (["--episodes", "5", "--domains", "nominal"], "--episodes reduces the default test"),
    (["--model", "models/default", "--variants", "both"], "--model evaluates its bundles as they are"),
    (["--model", "models/default", "--seeds", "0"], "--seeds and --variants choose what the gap table trains"),
])
def test_eval_command_refuses_bad_input(tmp_path, capsys, args, message):
    assert racer_s2r("eval", "--out", str(tmp_path / "eval"), *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_eval_command_refuses_two_bundles_it_would_report_under_one_name(tmp_path, capsys):
    # their laps would pool into one row and be paired with themselves
    shutil.copytree(REPO / "models" / "default", tmp_path / "mine" / "default")
    copy = str(tmp_path / "mine" / "default")
    assert racer_s2r("eval", "--out", str(tmp_path / "eval"), "--model", "models/default", "--model", copy) == 2
    assert f"models/default and {copy} would both be reported as 'default'" in capsys.readouterr().err
    assert racer_s2r("eval", "--out", str(tmp_path / "eval"), "--model", copy, "--model", copy + "/") == 2
    assert f"{copy} is given 2 times: give each --model bundle once" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()
    # lap times are reported by path: the same name is no clash there
    assert racer_s2r("eval", "--lap-times", "--model", "models/default", "--model", copy, "--tracks", "reinvent_base",
                     "--max-speed", "1.0") == 0
    err = capsys.readouterr().err
    assert "models/default: lap times (s)" in err and f"{copy}: lap times (s)" in err


def test_eval_command_names_an_unknown_knob(tmp_path, capsys):
    domains = tmp_path / "domains.yaml"
    domains.write_text("- name: foggy\n  fog: 0.3\n")
    assert racer_s2r("eval", "--domains", str(domains), "--out", str(tmp_path / "eval")) == 2
    assert "unknown randomization knob 'fog'" in capsys.readouterr().err


def test_randomization_command(tmp_path, capsys):
    assert racer_s2r("randomization", "--json") == 0
    knobs = json.loads(capsys.readouterr().out)
    assert knobs["delay_ms"]["unit"] == "ms" and knobs["delay_ms"]["strong"] == [0.0, 120.0]
    assert (knobs["delay_ms"]["preset"], knobs["delay_ms"]["range"]) == ("default", knobs["delay_ms"]["default"])
    assert racer_s2r("randomization", "--preset", "strong", "--write", str(tmp_path / "strong.yaml")) == 0
    written = (tmp_path / "strong.yaml").read_text()
    assert "camera_roll_deg: [-5.0, 5.0]" in written and "nominal_share: 0.25" in written
    assert racer_s2r("randomization") == 0
    out = capsys.readouterr().out
    assert "wheelbase_m" in out and "but 25% of episodes keep every knob at its nominal value" in out.splitlines()[0]
    assert racer_s2r("randomization", "--preset", "wild") == 2
    assert "unknown randomization preset 'wild'" in capsys.readouterr().err


RANGE_COLUMN = slice(53, 69)  # after knob, group, unit and nominal in `racer randomization`'s table


@pytest.mark.parametrize("preset", ["default", "strong"])
def test_randomization_shows_the_chosen_preset(preset, capsys):
    assert racer_s2r("randomization", "--preset", preset, "--json") == 0
    delay = json.loads(capsys.readouterr().out)["delay_ms"]
    assert (delay["preset"], delay["range"]) == (preset, delay[preset])
    assert racer_s2r("randomization", "--preset", preset) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"preset {preset}: ") and f"{preset} range" in lines[1]
    row = next(line for line in lines if line.startswith("delay_ms "))
    assert row[RANGE_COLUMN].strip() == f"{delay['range'][0]:g}..{delay['range'][1]:g}"
    assert len(lines) == 2 + len(KNOBS)


def test_randomization_preset_none_keeps_every_knob_nominal(capsys):
    assert racer_s2r("randomization", "--preset", "none", "--json") == 0
    assert {k["range"] for k in json.loads(capsys.readouterr().out).values()} == {None}
    assert racer_s2r("randomization", "--preset", "none") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "every knob stays at its nominal value" in lines[0]
    assert {line[RANGE_COLUMN].strip() for line in lines[2:]} == {"nominal"}


def test_lap_times_have_a_heading_over_every_column(tiny_run, capsys):
    out, _ = tiny_run
    bundle = out / "none-s0" / "bundle"
    assert racer_s2r("eval", "--lap-times", "--model", str(bundle), "--tracks", "reinvent_base") == 0
    title, header, row = capsys.readouterr().err.splitlines()[-3:]
    assert title == f"{bundle}: lap times (s) at max-speed 0.5, model vs expert"
    assert header.split() == ["track", "model", "expert", "model/expert"]
    assert row.split()[0] == "reinvent_base"
    expert_end = header.index("expert") + len("expert")
    assert row[:expert_end].rstrip() == row[:expert_end] and row[expert_end:expert_end + 2] == "  "
