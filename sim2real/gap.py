"""The sim-to-real gap, measured: bundles drive laps through the car stack in held-out domains
(worlds, cameras and cars outside the training ranges), and a table says how often they finish.

The comparison that matters is between training variants: none, randomization only,
augmentation only, and both, each over several seeds. A domains file is a YAML list of named
domains, each a mapping from knob names to fixed values::

    - name: dim_room
      light: 0.5
      exposure_ev: -0.6
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from car.policy.bundle import load_bundle
from car.policy.core import PolicyCore
from car.policy.inference import Policy
from car.policy.racer_json import RACER_FILE, training_tracks
from car.policy.warning import WINDOW_S
from sim2real.checkpoint import save_checkpoint
from sim2real.drive import run_laps
from sim2real.export import export_checkpoint
from sim2real.heldout import Episode, NamedDomain, TestDistribution, first_repeat
from sim2real.imitation import ImitationConfig, train_imitation
from sim2real.modular import ModularConfig, ModularNet, train_modular
from sim2real.network import DrivingNet
from sim2real.randomize import DomainSimulator, Randomization
from sim2real.sim.rules import aws_rules, is_aws_export
from sim2real.sim.track import Track
from sim2real.stats import auroc, auroc_interval, mcnemar_exact, rate
from sim2real.training_defaults import ACTION_SPACE, SPEC

# Training variant -> (randomization preset, augmentation preset): the end-to-end network, and with
# MODULAR before the name the modular model (`sim2real.modular`) trained the same way.
MODULAR = "modular-"
_TRAINING: dict[str, tuple[str | None, str | None]] = {
    "none": (None, None),
    "randomization": ("default", None),
    "augmentation": (None, "default"),
    "both": ("default", "default"),
}
VARIANTS = {**_TRAINING, **{MODULAR + name: presets for name, presets in _TRAINING.items()}}


# The plain simulator: the AWS DeepRacer simulator's world, as AWS-trained models saw it.
NOMINAL = NamedDomain("nominal", {})
# Seconds of the car's monitor score averaged before it can warn (`monitor_peak`): the car's own window.
MONITOR_WINDOW_S = WINDOW_S
# Seconds ahead of an off-track a warning must come to count in the monitor's lead AUROC: the
# 2 s window ending at the off-track also sees the car leaving, which is no forecast.
MONITOR_LEAD_S = 1.0


def default_domains(episodes: int | None = None) -> list[NamedDomain]:
    """`racer eval`'s default: the honest held-out test (`heldout.yaml`), its first `episodes` random domains."""
    return TestDistribution.load().domains(episodes)


def outside_training(domain: NamedDomain, preset: str = "default") -> list[str]:
    return Randomization.preset(preset).outside(domain.values)


@dataclass(frozen=True)
class EvalConfig:
    """Laps per (model, domain) = tracks x starts; each lap starts at rest on the centre line.
    Empty `tracks` means every closed track the model did not train on (see `held_out_tracks`)."""

    tracks: tuple[str, ...] = ()
    starts: int = 2
    max_speed: float = 0.5
    lap_timeout_s: float = 60.0


def track_shape(name: str) -> frozenset[tuple[float, float]]:
    """A track's centre line to the millimetre, as a set: the same for a track driven either way round.
    ValueError or OSError for a track this machine cannot load."""
    return frozenset(map(tuple, np.round(Track.load(name).centre, 3).tolist()))


def trained_shapes(trained: Sequence[str]) -> set[frozenset[tuple[float, float]]]:
    """The shapes (`track_shape`) of the tracks a bundle trained on. A trained track this machine
    cannot load (an outline file left on the training machine, a name this racer does not know)
    is left out: it matches no track."""
    seen = set()
    for name in trained:
        try:
            seen.add(track_shape(name))
        except (ValueError, OSError):
            continue
    return seen


def held_out_tracks(trained: Sequence[str]) -> tuple[str, ...]:
    """The built-in closed tracks that differ in shape from every track in `trained` (`trained_shapes`)."""
    return builtin_tracks_unlike(trained_shapes(trained))


def builtin_tracks_unlike(seen: set[frozenset[tuple[float, float]]]) -> tuple[str, ...]:
    """The built-in closed tracks whose shape (`track_shape`) is none of `seen`."""
    return tuple(name for name in Track.names() if Track.load(name).closed and track_shape(name) not in seen)


def monitor_peak(scores: Sequence[float], window: int, lead: int = 0) -> float | None:
    """The highest mean of the car's monitor score over `window` successive frames of a lap (the
    whole lap if shorter): what an alarm on that running mean would have seen at its worst. For a
    lap that left the track the lap ends there, so this covers the seconds before the off-track.
    `lead` frames at the end are left out first: the alarm as it stood that long before the end.
    None when no frame is left."""
    if lead >= len(scores):
        return None
    x = np.asarray(scores[:len(scores) - lead], float)
    window = max(1, min(window, len(x)))
    sums = np.convolve(x, np.ones(window), "valid")
    return float(sums.max() / window)


def evaluate(bundle_path: str | Path, domains: Sequence[NamedDomain], cfg: EvalConfig = EvalConfig(),
             log: Callable[[str], None] = lambda _: None) -> dict[str, dict[str, Any]]:
    """Per domain: laps driven and completed, mean progress, and per lap `[track, start, completed,
    off_track, monitor, monitor_lead]` (`monitor_peak` of the score the car's policy node computes,
    `PolicyCore.monitor_score`, named in `monitor`; `monitor_lead` the same for a lap that left the
    track with its last `MONITOR_LEAD_S` left out, None if it left sooner). A domain's laps are its
    own `episodes`, else every evaluation track from `cfg.starts` spread points. A lap is left out and
    counted as `excluded` when `cfg.tracks` is given and does not list its track, or when it is not
    given and the bundle trained on its track (a test distribution's own `.npy` tracks are driven).
    An AWS export drives under the AWS simulator's rules (`sim.rules`). `log` hears of each domain done."""
    results = {}
    with load_bundle(bundle_path) as bundle:
        model = Policy(bundle).model()
        trained = trained_shapes(training_tracks(bundle.info))
        tracks = cfg.tracks or builtin_tracks_unlike(trained)
        held_out = dict.fromkeys(tracks, True)
        sims: dict[str, DomainSimulator] = {}
        for named in domains:
            episodes = named.episodes or tuple(Episode(t, k / cfg.starts) for t in tracks for k in range(cfg.starts))
            laps, excluded = [], 0
            for episode in episodes:
                if episode.track not in held_out:
                    held_out[episode.track] = not cfg.tracks and track_shape(episode.track) not in trained
                if not held_out[episode.track]:
                    excluded += 1
                    continue
                sim = sims.get(episode.track) or sims.setdefault(episode.track,
                                                                 DomainSimulator(Track.load(episode.track)))
                sim.set_domain(named.domain())
                sim.reset(start_index=int(episode.start * sim.track.waypoint_count) % sim.track.waypoint_count)
                scores: list[float] = []

                def observe(graph: Any) -> None:
                    score = graph.policy.core.monitor_score()
                    if score is not None:
                        scores.append(score)  # noqa: B023 (run_laps below calls it within this iteration)

                driver = aws_rules(sim, bundle, cfg.max_speed) if is_aws_export(bundle) else None
                lap = run_laps(sim, model, laps=1, max_speed=cfg.max_speed, lap_timeout_s=cfg.lap_timeout_s,
                               driver=driver, on_frame=observe).laps[0]
                window = round(MONITOR_WINDOW_S / sim.dt)
                peak = monitor_peak(scores, window)
                ahead = monitor_peak(scores, window, round(MONITOR_LEAD_S / sim.dt)) if lap.off_track else peak
                laps.append([episode.track, round(episode.start, 4), lap.completed, lap.off_track,
                             *(round(p, 4) if p is not None else None for p in (peak, ahead)),
                             round(lap.progress, 2)])
            completed = sum(1 for lap in laps if lap[2])
            results[named.name] = {
                "group": named.pool, "tracks": list(dict.fromkeys(lap[0] for lap in laps)), "laps": len(laps),
                "completed": completed, "excluded": excluded,
                "completion_pct": round(100.0 * completed / len(laps), 2) if laps else None,
                "mean_progress": round(float(np.mean([lap[-1] for lap in laps])), 2) if laps else None,
                "episodes": [lap[:-1] for lap in laps], "monitor": PolicyCore.monitor_key(model),
            }
            reason = "not among the evaluation tracks" if cfg.tracks else "on a track it trained on"
            left_out = f", {excluded} left out ({reason})" if excluded else ""
            log(f"  {named.name}: {completed} of {len(laps)} laps{left_out} ({len(results)}/{len(domains)} domains)")
    return results


def run_name(variant: str, seed: int) -> str:
    """The folder of one variant and seed in an evaluation's run directory."""
    return f"{variant}-s{seed}"


def is_whole(bundle: Path) -> bool:
    """An export writes racer.json last, so a bundle that has it is whole and a resumed evaluation reuses it."""
    return (bundle / RACER_FILE).is_file()


def variant_config(base: ImitationConfig, variant: str, seed: int) -> ImitationConfig:
    """The training settings of one variant and seed: `base`'s DAgger settings with the variant's
    presets; a ModularConfig for a modular variant (with `base`'s perception settings if it has them)."""
    randomization, augmentation = VARIANTS[variant]
    settings = {f.name: getattr(base, f.name) for f in fields(ImitationConfig)}
    settings.update(seed=seed, randomization=randomization, augmentation=augmentation)
    if not variant.startswith(MODULAR):
        return ImitationConfig(**settings)
    perception = {f.name: getattr(base, f.name) for f in fields(ModularConfig)
                  if f.name not in settings and hasattr(base, f.name)}
    return ModularConfig(**settings, **perception)


def train_variant(out_dir: Path, variant: str, seed: int, base: ImitationConfig,
                  show_progress: bool = False) -> Path:
    """Train and export one variant and seed into out_dir/<variant>-s<seed>/bundle; an existing
    bundle there is reused, so an interrupted evaluation resumes."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants: {', '.join(VARIANTS)}")
    run = Path(out_dir) / run_name(variant, seed)
    bundle = run / "bundle"
    if is_whole(bundle):
        return bundle
    cfg = variant_config(base, variant, seed)
    net: ModularNet | DrivingNet
    if isinstance(cfg, ModularConfig):
        net, history, _ = train_modular(cfg, show_progress=show_progress)
    else:
        net, _, history, _ = train_imitation(cfg, show_progress=show_progress)
    run.mkdir(parents=True, exist_ok=True)
    checkpoint = save_checkpoint(run / "policy.pt", net, SPEC, ACTION_SPACE, cfg, history.iterations,
                                 trainer="modular" if isinstance(cfg, ModularConfig) else "dagger")
    if bundle.exists():
        for stale in bundle.iterdir():
            stale.unlink()
    export_checkpoint(checkpoint, bundle)[0].close()
    return bundle


def pools(domains: Sequence[NamedDomain]) -> list[str]:
    """The table's columns: each domain's pool (a test distribution's random domains share one), in order."""
    return list(dict.fromkeys(d.pool for d in domains))


def summarize(models: Sequence[dict[str, Any]], domains: Sequence[NamedDomain]) -> dict[str, dict[str, Any]]:
    """Per variant, its models' (seeds') laps pooled: per pool and over all laps, the completion
    rate with its 95% Wilson interval and the number of laps, mean progress, each seed's rate, and
    the AUROC of the car's monitor score (`monitor_peak`) for laps that left the track against
    completed laps: at the off-track (`auroc`) and `MONITOR_LEAD_S` before it (`lead_auroc`, over the
    `lead_off_track_laps` that lasted that long), each with its 95% bootstrap interval (`*_ci95`,
    `auroc_interval`)."""
    summary: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(m["variant"] for m in models):
        mine = [m for m in models if m["variant"] == variant]
        row: dict[str, Any] = {"seeds": [m["seed"] for m in mine], "domains": {}}
        for pool in pools(domains):
            names = [d.name for d in domains if d.pool == pool]
            row["domains"][pool] = _pooled([m["results"][n] for m in mine for n in names])
        row.update(_pooled([r for m in mine for r in m["results"].values()]))
        row["completion_by_seed"] = [_pooled(list(m["results"].values()))["completion_pct"] for m in mine]
        laps = [lap for m in mine for r in m["results"].values() for lap in r.get("episodes", [])]
        failed = [lap[4] for lap in laps if lap[3] and lap[4] is not None]
        ahead = [lap[5] for lap in laps if lap[3] and lap[5] is not None]
        completed = [lap[4] for lap in laps if lap[2] and lap[4] is not None]
        keys = [r["monitor"] for m in mine for r in m["results"].values() if "monitor" in r]
        row["monitor"] = {"score": keys[0] if keys else PolicyCore.MONITOR, "window_s": MONITOR_WINDOW_S,
                          "off_track_laps": len(failed), "completed_laps": len(completed),
                          **_separation("auroc", failed, completed),
                          "lead_s": MONITOR_LEAD_S, "lead_off_track_laps": len(ahead),
                          **_separation("lead_auroc", ahead, completed)}
        summary[variant] = row
    return summary


def _separation(key: str, failed: Sequence[float], completed: Sequence[float]) -> dict[str, Any]:
    """`{key: AUROC, key_ci95: [low, high]}`, rounded to 3 places; None where it cannot be had."""
    area, interval = auroc(failed, completed), auroc_interval(failed, completed)
    return {key: round(area, 3) if area is not None else None,
            f"{key}_ci95": [round(bound, 3) for bound in interval] if interval is not None else None}


def _pooled(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    laps = sum(r["laps"] for r in results)
    progress = [r["mean_progress"] * r["laps"] for r in results if r["laps"]]
    return {**rate(sum(r["completed"] for r in results), laps),
            "mean_progress": round(sum(progress) / laps, 1) if laps else None}


def paired_laps(models: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pair of `models` (in their order, by "name"), lap by lap over the laps both drove (the same
    domain, track and start): `{"a", "b", "paired_laps", "both", "only_a", "only_b", "neither",
    "unpaired_a", "unpaired_b", "p_value", "groups"}`, the p-value McNemar's exact test's
    (`stats.mcnemar_exact`, 3 significant figures; None when they drove no lap in common), and `groups`
    the same counts per pool of laps (a test distribution's random domains share one; `pools`) when the
    laps fall in more than one. A lap only one of them drove (a track the other trained on) is left out
    of the pair and counted in its `unpaired_*`."""
    def completed(model: dict[str, Any]) -> dict[tuple[str, str, float], bool]:
        return {(domain, lap[0], lap[1]): bool(lap[2])
                for domain, result in model["results"].items() for lap in result.get("episodes", [])}

    laps = [completed(model) for model in models]
    group = {domain: result.get("group", domain) for model in models for domain, result in model["results"].items()}
    pairs = []
    for i, j in itertools.combinations(range(len(models)), 2):
        shared = [key for key in laps[i] if key in laps[j]]
        pair = {"a": models[i]["name"], "b": models[j]["name"],
                **_discordance([(laps[i][key], laps[j][key]) for key in shared]),
                "unpaired_a": len(laps[i]) - len(shared), "unpaired_b": len(laps[j]) - len(shared)}
        pools_driven = list(dict.fromkeys(group[key[0]] for key in shared))
        if len(pools_driven) > 1:
            pair["groups"] = {pool: _discordance([(laps[i][key], laps[j][key]) for key in shared
                                                  if group[key[0]] == pool]) for pool in pools_driven}
        pairs.append(pair)
    return pairs


def _discordance(outcomes: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    """Laps both, A alone, B alone and neither completed, of (A completed, B completed) per lap, and
    McNemar's p (None for no lap)."""
    counts = {(a, b): outcomes.count((a, b)) for a in (True, False) for b in (True, False)}
    only_a, only_b = counts[True, False], counts[False, True]
    return {"paired_laps": len(outcomes), "both": counts[True, True], "only_a": only_a, "only_b": only_b,
            "neither": counts[False, False],
            "p_value": float(f"{mcnemar_exact(only_a, only_b):.3g}") if outcomes else None}


def runs_models(reports: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The bundles of finished `racer eval --model` runs, `(label, gap.json's report)` each, ready for
    `paired_laps`, each with its run's `label` and `max_speed`; a name shared by bundles of different
    runs becomes "NAME (LABEL)". ValueError, naming the run, for a report that is not a racer eval
    report, a gap grid's (its seeds are draws of recipes, not bundles), a run with no bundle, or one
    that drove other laps than the first (other domains, knob values, tracks or starts), whose laps could
    not be paired lap for lap."""
    models: list[dict[str, Any]] = []
    first: Any = None
    for label, report in reports:
        driven, mine = _report_models(label, report)
        if first is None:
            first = driven
        elif not _same_drive(driven, first):
            raise ValueError(f"{label} drove other laps than {reports[0][0]} (other domains, knob values, tracks or "
                             "starts): their laps cannot be paired")
        models += mine
    names = [m["name"] for m in models]
    models = [{**m, "name": m["name"] if names.count(m["name"]) == 1 else f"{m['name']} ({m['run']})"}
              for m in models]
    if (clash := first_repeat(m["name"] for m in models)) is not None:
        raise ValueError(f"two bundles would both be reported as {models[clash]['name']!r}: rename one of their runs")
    return models


def _same_drive(a: Any, b: Any) -> bool:
    """Whether two runs' (domains, settings) drove the same laps; a domain's episodes count only where
    both reports record them (reports before they were recorded have none)."""
    (domains_a, settings_a), (domains_b, settings_b) = a, b
    return settings_a == settings_b and len(domains_a) == len(domains_b) and all(
        x[:2] == y[:2] and (x[2] is None or y[2] is None or x[2] == y[2])
        for x, y in zip(domains_a, domains_b, strict=True))


def _report_models(label: str, report: Any) -> tuple[Any, list[dict[str, Any]]]:
    """What a run drove (its domains and evaluation settings) and its bundles with their laps checked:
    each lap [track, start, completed, ...] with a text track, a numeric start, a true/false completed,
    once per (domain, track, start) and in a domain the report names."""
    def bad(why: str) -> ValueError:
        return ValueError(f"{label}: not a racer eval report ({why})")

    if not isinstance(report, dict) or not all(isinstance(report.get(k), t) for k, t in
                                               (("domains", list), ("models", list), ("eval", dict))):
        raise bad("no domains, models or eval")
    speed = report["eval"].get("max_speed")
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.0 < speed <= 1.0:
        raise bad(f"max_speed {speed!r} is not in (0, 1]")
    try:
        domains = [(d["name"], d["values"], d.get("episodes")) for d in report["domains"]]
    except (KeyError, TypeError) as exc:
        raise bad("a domain without its name or values") from exc
    if not report["models"]:
        raise ValueError(f"{label}: the run has no bundle to compare")
    mine = []
    for model in report["models"]:
        if not isinstance(model, dict) or not isinstance(model.get("name"), str) or \
                not isinstance(model.get("results"), dict):
            raise bad("a model without its name or results")
        if model.get("seed") is not None:
            raise ValueError(f"{label} is a gap grid (variants x seeds, draws of recipes): --compare pairs bundles "
                             "driven by racer eval --model")
        seen: set[tuple[Any, ...]] = set()
        for domain, result in model["results"].items():
            if domain not in (d[0] for d in domains):
                raise bad(f"{model['name']} drove {domain!r}, which the report does not name")
            episodes = result.get("episodes") if isinstance(result, dict) else None
            if not isinstance(episodes, list):
                raise bad(f"{model['name']}: {domain} has no list of laps")
            for lap in episodes:
                if not (isinstance(lap, list) and len(lap) >= 3 and isinstance(lap[0], str)
                        and isinstance(lap[1], (int, float)) and not isinstance(lap[1], bool)
                        and isinstance(lap[2], bool)):
                    raise bad(f"{model['name']}: a lap in {domain} is not [track, start, completed, ...]")
                if (domain, lap[0], lap[1]) in seen:
                    raise bad(f"{model['name']}: {domain} has the lap on {lap[0]} from {lap[1]} twice")
                seen.add((domain, lap[0], lap[1]))
        mine.append({**model, "run": label, "max_speed": speed})
    settings = {k: report["eval"].get(k) for k in ("tracks", "starts")}
    return (domains, settings), mine


def format_pairs(pairs: Sequence[dict[str, Any]]) -> str:
    """One line per pair of `paired_laps`: laps in common, each one's laps alone, the p-value, and the
    laps left out because only one of the two drove them."""
    return "\n".join(_pair_line(p) for p in pairs)


def _pair_line(p: dict[str, Any]) -> str:
    a, b = p["a"], p["b"]
    if not p["paired_laps"]:
        return f"{a} against {b}: no lap driven by both, not compared"
    left_out = [f"{p[f'unpaired_{side}']} of {name}'s" for side, name in (("a", a), ("b", b))
                if p[f"unpaired_{side}"]]
    by_group = [f"\n  {pool}: {_count(g['paired_laps'])}, {g['only_a']} and {g['only_b']} alone "
                f"(p = {g['p_value']:.3g})" for pool, g in p.get("groups", {}).items() if g["only_a"] or g["only_b"]]
    return (f"{a} against {b}: {_count(p['paired_laps'])} driven by both, {p['only_a']} completed by {a} alone, "
            f"{p['only_b']} by {b} alone (exact McNemar p = {p['p_value']:.3g})"
            + (f"; {' and '.join(left_out)} laps left out, the other did not drive them" if left_out else "")
            + "".join(by_group))


def _count(laps: int) -> str:
    return f"{laps} lap{'' if laps == 1 else 's'}"


def format_table(summary: dict[str, dict[str, Any]], domains: Sequence[NamedDomain]) -> str:
    """Lap completion % [95% interval] and laps per variant and pool, over all laps, the monitor's
    AUROC at the off-track and `MONITOR_LEAD_S` before it, and the training seeds (`-` for a given
    bundle, which has none)."""
    names = pools(domains)
    width = max(len("100.0 [100.0, 100.0] n=1000"), *(len(n) for n in names)) + 2
    first = max(15, *(len(variant) + 1 for variant in summary))  # a given bundle's name can be long
    area_width = len("  1.000 [1.000, 1.000]")
    lines = [f"{'variant':{first}s}" + "".join(f"{n:>{width}s}" for n in names) + f"{'all laps':>{width}s}"
             + f"{'monitor AUROC':>{area_width}s}{f'{MONITOR_LEAD_S:g} s ahead':>{area_width}s}  seeds"]
    for variant, row in summary.items():
        cells = [_cell(row["domains"][n]) for n in names] + [_cell(row)]
        areas = [_area(row["monitor"], key) for key in ("auroc", "lead_auroc")]
        lines.append(f"{variant:{first}s}" + "".join(f"{c:>{width}s}" for c in cells)
                     + "".join(f"{a:>{area_width}s}" for a in areas)
                     + "  " + (",".join(str(s) for s in row["seeds"] if s is not None) or "-"))
    return "\n".join(lines)


def _area(monitor: dict[str, Any], key: str) -> str:
    if monitor[key] is None:
        return "-"
    interval = monitor[f"{key}_ci95"]
    return f"{monitor[key]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _cell(result: dict[str, Any]) -> str:
    if not result["laps"]:
        return "- (n=0)"
    low, high = result["ci95"]
    return f"{result['completion_pct']:5.1f} [{low:.1f}, {high:.1f}] n={result['laps']}"


def run_gap_evaluation(out_dir: Path, seeds: Sequence[int], domains: Sequence[NamedDomain], base: ImitationConfig,
                       cfg: EvalConfig = EvalConfig(), variants: Sequence[str] = tuple(VARIANTS),
                       log: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Train (or reuse) every variant x seed in `out_dir` and evaluate each on `domains`."""
    models = []
    for variant in variants:
        for seed in seeds:
            log(f"training {variant} seed {seed}")
            bundle = train_variant(out_dir, variant, seed, base)
            log(f"evaluating {variant} seed {seed}")
            models.append({"name": run_name(variant, seed), "variant": variant, "seed": seed, "bundle": str(bundle),
                           "results": evaluate(bundle, domains, cfg, log)})
    return models
