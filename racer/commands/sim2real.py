"""`racer augment preview`, `racer randomization` and `racer eval`: the sim2real tools around training."""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from racer.commands import fail
from racer.commands.train import TRAIN_TRACKS, add_worker_options, worker_options_error, workers

DEFAULT_EVAL_DIR = Path("runs") / "gap"
# `--model`'s own default: the grid's directory holds the grid's gap.json and plot, which a report on
# other bundles would overwrite (and the grid later overwrite it).
DEFAULT_MODELS_EVAL_DIR = Path("runs") / "eval"
# The gap table trains each variant with these seeds unless --seeds says otherwise.
DEFAULT_SEEDS = "0,1,2"


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("augment", help="training image augmentation tools",
                       description="Preview the training-only augmentation pipeline on simulator frames.")
    asub = a.add_subparsers(dest="augment_command", metavar="ACTION")
    asub.required = True
    p = asub.add_parser("preview", help="write a PNG grid of augmented frames",
                        description="Each row is one simulator frame: the original, then augmented versions.")
    p.add_argument("--out", required=True, type=Path, help="PNG file to write")
    p.add_argument("--preset", default="default", help="none, light, default or strong (default: %(default)s)")
    p.add_argument("--rows", type=int, default=4, help="frames (default: %(default)s)")
    p.add_argument("--cols", type=int, default=5, help="columns, the first is the original (default: %(default)s)")
    p.add_argument("--track", default="reinvent_base", help="track to take frames from (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.set_defaults(func=run_preview)

    r = sub.add_parser("randomization", help="list the domain randomization knobs, or write a config",
                       description="Prints every knob with its unit, nominal value and the range --preset draws it "
                                   "from; --write saves a preset as an editable YAML config for --randomization.")
    r.add_argument("--preset", default="default", help="none, default or strong (default: %(default)s)")
    r.add_argument("--write", type=Path, metavar="FILE", help="write the preset as YAML to FILE")
    r.add_argument("--json", action="store_true", help="print the knobs as one JSON object")
    r.set_defaults(func=run_randomization)

    e = sub.add_parser("eval", help="measure the sim-to-real gap on the honest held-out test",
                       description="Drives bundles through the car stack in held-out domains and reports lap "
                                   "completion with its 95% interval and number of laps, progress, and the AUROC of "
                                   "the car's warning score for laps that left the track, with its 95% bootstrap "
                                   "interval once each side has 10 laps (at the off-track, and a second before it). "
                                   "The default domains are the honest held-out test (sim2real/heldout.yaml: random "
                                   "domains beyond the training ranges on unseen tracks, plus named real-world "
                                   "domains). Without --model it trains "
                                   "(or reuses, in --out) the variants none / randomization / augmentation / both for "
                                   "each seed.")
    e.add_argument("--domains", type=Path, metavar="FILE|nominal",
                   help="a test distribution YAML (as sim2real/heldout.yaml) or a YAML list of named domains, or "
                        "'nominal' for the plain simulator alone (default: the honest held-out test)")
    e.add_argument("--episodes", type=int, metavar="N",
                   help="only the first N random domains of the test distribution (a reduced test; its named "
                        "domains are all kept)")
    e.add_argument("--model", action="append", type=Path, metavar="BUNDLE",
                   help="evaluate this bundle (repeatable) instead of training the variants; two or more are "
                        "also compared lap by lap on the laps they both drove (exact McNemar test)")
    e.add_argument("--seeds", help=f"training seeds, comma-separated (default: {DEFAULT_SEEDS}; not with --model)")
    e.add_argument("--variants",
                   help="training variants, comma-separated: none, randomization, augmentation, both (end-to-end), "
                        "and each with modular- before it (racer train --model modular) (default: all eight; not "
                        "with --model)")
    e.add_argument("--out", type=Path, help=f"run directory (default: {DEFAULT_EVAL_DIR}, or {DEFAULT_MODELS_EVAL_DIR} "
                                           "with --model); with --trials the DRfC model folder that gets "
                                           "evaluation-YYYYMMDDHHMMSS/evaluation-simtrace/0-iteration.csv (default: "
                                           "the racer PPO run the model came from, else "
                                           f"{DEFAULT_MODELS_EVAL_DIR}/NAME)")
    e.add_argument("--tracks", default="",
                   help="evaluation tracks, comma-separated: built-in names or .npy waypoint files (default: every "
                        "closed track the model did not train on, as its bundle records)")
    e.add_argument("--train-tracks", default=TRAIN_TRACKS,
                   help="variant training: training tracks (default: %(default)s)")
    e.add_argument("--max-speed", type=float, metavar="X",
                   help="the console's max-speed setting the laps are driven at, (0, 1] (default: 0.5; with "
                        "--trials 1.0, the model's own speeds as the console evaluates)")
    e.add_argument("--trials", type=int, metavar="N",
                   help="instead: evaluate one --model like the DeepRacer console, N trials of one lap from the "
                        "start line of --track: per trial the time, %% completed, off-tracks and their penalty, "
                        "and the average time of the completed laps")
    e.add_argument("--track", default="reinvent_base", help="with --trials: the track (default: %(default)s)")
    e.add_argument("--off-track-penalty", type=float, default=5.0, metavar="S",
                   help="with --trials: seconds added per off-track, as DRfC (default: %(default)s)")
    e.add_argument("--starts", type=int, default=2,
                   help="laps per track of a domain without its own episodes, from spread start points "
                        "(default: %(default)s)")
    e.add_argument("--iterations", type=int, default=5,
                   help="variant training: DAgger iterations (default: %(default)s)")
    e.add_argument("--steps", type=int, default=3000,
                   help="variant training: steps per iteration (default: %(default)s)")
    e.add_argument("--epochs", type=int, default=3,
                   help="variant training: epochs per iteration (default: %(default)s)")
    e.add_argument("--perception-steps", type=int, default=6000,
                   help="modular variants: labelled frames the perception trains on (default: %(default)s)")
    e.add_argument("--perception-epochs", type=int, default=4,
                   help="modular variants: epochs over them (default: %(default)s)")
    e.add_argument("--compare", nargs="+", type=Path, metavar="RUN",
                   help="instead: compare the bundles of finished runs (each an --out directory or its gap.json) "
                        "lap by lap, as two --model in one run are: runs at other max-speed settings too, but on "
                        "the same domains")
    e.add_argument("--lap-times", action="store_true",
                   help="instead: each --model's lap times in the nominal simulator next to the privileged "
                        "expert's, 2 laps from rest per track (default tracks: every closed one)")
    add_worker_options(e, "the grid's trainings and each (model, domain) drive")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.set_defaults(func=run_eval)
    e.set_defaults(eval_defaults=vars(e.parse_args([])))


def run_preview(args: argparse.Namespace) -> int:
    from sim2real.augment import AugmentationError, preview_grid

    try:
        preview_grid(args.preset, args.out, args.rows, args.cols, args.seed, args.track)
    except (ValueError, AugmentationError) as exc:
        return fail("augment preview", str(exc))
    print(f"racer augment preview: wrote {args.out}", file=sys.stderr)
    return 0


def run_randomization(args: argparse.Namespace) -> int:
    from sim2real.randomize import KNOBS, PRESETS, Randomization, RandomizationError

    try:
        chosen = Randomization.preset(args.preset)
    except RandomizationError as exc:
        return fail("randomization", str(exc))
    if args.write:
        chosen.save(args.write)
        print(f"racer randomization: wrote {args.write}", file=sys.stderr)
        return 0
    # the chosen preset's range per knob; None: the knob stays at its nominal value
    ranges = {name: chosen.ranges.get(name) for name in KNOBS}
    if args.json:
        print(json.dumps({k.name: {"group": k.group, "unit": k.unit, "nominal": k.nominal, "preset": args.preset,
                                   "range": ranges[k.name], "default": k.default, "strong": k.strong,
                                   "limits": k.limits, "doc": k.doc} for k in KNOBS.values()}))
        return 0
    drawn = "every knob stays at its nominal value" if not chosen.ranges else \
        "each episode draws every knob uniformly in its range"
    if chosen.ranges and chosen.nominal_share:
        drawn += f", but {chosen.nominal_share:.0%} of episodes keep every knob at its nominal value"
    print(f"preset {args.preset}: {drawn} (other presets: {', '.join(p for p in PRESETS if p != args.preset)})")
    print(f"{'knob':20s} {'group':9s} {'unit':12s} {'nominal':>8s} {args.preset + ' range':>16s}  meaning")
    for k in KNOBS.values():
        drawn_range = ranges[k.name]
        shown = "nominal" if drawn_range is None else _range(drawn_range)
        print(f"{k.name:20s} {k.group:9s} {k.unit:12s} {k.nominal:8g} {shown:>16s}  {k.doc}")
    return 0


def _range(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:g}..{bounds[1]:g}"


def _lap_times(args: argparse.Namespace, tracks: tuple[str, ...]) -> int:
    from sim2real.laptimes import lap_time_table
    from sim2real.sim.track import Track

    if not args.model:
        return fail("eval", "--lap-times needs at least one --model")
    tracks = tracks or tuple(name for name in Track.names() if Track.load(name).closed)
    report = {"max_speed": args.max_speed, "models": []}
    for path in args.model:
        rows = lap_time_table(path, tracks, args.max_speed)
        report["models"].append({"model": str(path), "tracks": rows})
        print(f"{path}: lap times (s) at max-speed {args.max_speed}, model vs expert", file=sys.stderr)
        print(f"  {'track':26s} {'model':>16s} {'expert':>16s}  model/expert", file=sys.stderr)
        for row in rows:
            ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
            print(f"  {row['track']:26s} {_laps(row['model']):>16s} {_laps(row['expert']):>16s}  {ratio}",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    return 0


def _laps(times: list[float | None]) -> str:
    return ", ".join("off" if t is None else f"{t:.2f}" for t in times)


def _eval_models(args: argparse.Namespace, domains: list, cfg: Any, train_tracks: tuple[str, ...], seeds: list[int],
                 variants: list[str], log: Callable[[str], None], on_workers: bool) -> list[dict[str, Any]]:
    """Each --model, or each trained variant x seed, with its results per domain; on Ray workers
    when `on_workers`."""
    from car.policy.bundle_layout import bundle_name
    from sim2real.gap import evaluate, run_gap_evaluation
    from sim2real.modular import ModularConfig

    if args.model:
        if on_workers:
            from sim2real.distributed import evaluate_on_workers

            results = evaluate_on_workers(args.model, domains, cfg)
        else:
            results = []
            for path in args.model:
                log(f"evaluating {path} in {len(domains)} domains")
                results.append(evaluate(path, domains, cfg, log))
        names = [bundle_name(path) for path in args.model]
        return [{"name": name, "variant": name, "seed": None, "bundle": str(path), "results": r}
                for name, path, r in zip(names, args.model, results, strict=True)]
    base = ModularConfig(tracks=train_tracks, iterations=args.iterations, steps_per_iteration=args.steps,
                         epochs=args.epochs, max_speed_setting=args.max_speed, perception_steps=args.perception_steps,
                         perception_epochs=args.perception_epochs)
    if on_workers:
        from sim2real.distributed import run_gap_evaluation_on_workers

        return run_gap_evaluation_on_workers(args.out, seeds, domains, base, cfg, variants, log)
    return run_gap_evaluation(args.out, seeds, domains, base, cfg, variants, log)


def _trials(args: argparse.Namespace) -> int:
    from sim2real.sim.track import Track
    from sim2real.trials import run_trials, summary

    if not args.model or len(args.model) != 1:
        return fail("eval", "--trials evaluates one --model")
    if args.trials < 1:
        return fail("eval", f"--trials must be at least 1, got {args.trials}")
    if args.off_track_penalty < 0:
        return fail("eval", f"--off-track-penalty must be 0 or more, got {args.off_track_penalty:g}")
    max_speed = 1.0 if args.max_speed is None else args.max_speed
    if not 0.0 < max_speed <= 1.0:
        return fail("eval", f"--max-speed must be in (0, 1], got {max_speed}")
    model = args.model[0]
    if not model.exists():
        return fail("eval", f"no bundle at {model}")
    try:
        Track.load(args.track)
    except ValueError as exc:
        return fail("eval", str(exc))
    from car.policy.bundle_layout import BundleError

    out = args.out or trials_log_folder(model)
    if out.exists() and not out.is_dir():
        return fail("eval", f"{out} is not a directory")
    try:
        evaluation = run_trials(model, args.track, args.trials, max_speed, args.off_track_penalty)
    except BundleError as exc:
        return fail("eval", f"{model}: {exc}")
    trials = evaluation.trials
    simtrace = evaluation.write_log(out)
    report = {"model": str(model), "track": args.track, "max_speed": max_speed,
              "off_track_penalty_s": args.off_track_penalty, **summary(trials), "simtrace": str(simtrace)}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{model} on {args.track} at max-speed {max_speed}", file=sys.stderr)
    print(f"  {'trial':>5s}  {'time (s)':>9s}  {'completed':>9s}  {'off-track':>9s}  {'penalty (s)':>11s}  status",
          file=sys.stderr)
    for t in trials:
        print(f"  {t.trial:5d}  {t.time_s:9.2f}  {t.progress:8.1f}%  {t.off_track:9d}  {t.penalty_s:11.1f}  {t.status}",
              file=sys.stderr)
    average = report["average_lap_time_s"]
    print(f"  {report['completed_laps']} of {len(trials)} laps completed; average lap time "
          + (f"{average:.2f} s" if average is not None else "- (no lap completed)"), file=sys.stderr)
    print(f"  simtrace: {simtrace}", file=sys.stderr)
    return 0


PAIRS_HEADING = ("the same laps, bundle against bundle (a small p: the difference is unlikely to be chance, for "
                 "these two bundles; another training of either may differ)")


def _compare(args: argparse.Namespace) -> int:
    """--compare: the lap-by-lap pairs (`sim2real.gap.paired_laps`) of finished runs' bundles."""
    from sim2real.gap import format_pairs, paired_laps, runs_models
    from sim2real.heldout import first_repeat

    given = [f"--{name.replace('_', '-')}" for name, default in args.eval_defaults.items()
             if name not in ("compare", "json", "func", "eval_defaults") and getattr(args, name) != default]
    if given:
        return fail("eval", f"--compare reads finished runs as they were driven and writes nothing: leave out "
                            f"{', '.join(given)}")
    paths = [run / "gap.json" if run.is_dir() else run for run in args.compare]
    if (twice := first_repeat(path.resolve() for path in paths)) is not None:
        return fail("eval", f"--compare is given the run {args.compare[twice]} twice")
    reports = []
    for run, path in zip(args.compare, paths, strict=True):
        try:
            reports.append((str(run), json.loads(path.read_text())))
        except FileNotFoundError:
            return fail("eval", f"no report at {path} (racer eval --out DIR writes DIR/gap.json)")
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: not JSON, not UTF-8, a huge integer
            return fail("eval", f"{path}: not a racer eval report ({type(exc).__name__}: {exc})"[:400])
    try:
        models = runs_models(reports)
    except ValueError as exc:
        return fail("eval", str(exc))
    if len(models) < 2:
        return fail("eval", f"--compare needs two bundles or more in all, got {len(models)}")
    pairs = paired_laps(models)
    runs = [{"run": label, "max_speed": next(m["max_speed"] for m in models if m["run"] == label),
             "models": [m["name"] for m in models if m["run"] == label]} for label, _ in reports]
    for run in runs:
        print(f"{run['run']}: {', '.join(run['models'])} at max-speed {run['max_speed']:g}", file=sys.stderr)
    print(f"{PAIRS_HEADING}\n{format_pairs(pairs)}", file=sys.stderr)
    if args.json:
        print(json.dumps({"runs": runs, "paired": pairs}))
    if not any(pair["paired_laps"] for pair in pairs):
        return fail("eval", "no two bundles drove a lap in common (each trained on the tracks the other drove?)",
                    code=1)
    return 0


def trials_log_folder(model: Path) -> Path:
    """Where an evaluation's DRfC logs go by default: the racer PPO run the model was exported in
    (RUN/bundle or RUN/NAME.tar.gz, beside RUN/training-simtrace), as DRfC keeps evaluations in the
    model's folder; else runs/eval/<the model's name>."""
    run = model.resolve().parent
    if (run / "training-simtrace").is_dir():
        return run
    name = model.name.removesuffix(".tar.gz").removesuffix(".tgz") or "model"
    return DEFAULT_MODELS_EVAL_DIR / name


def _name_clash(bundles: list[Path]) -> str | None:
    """Why some --model bundles cannot be told apart in the report (its rows and pairs go by name), or
    None. A bundle is named after its folder or archive (`bundle_name`), a link after its target."""
    from car.policy.bundle_layout import bundle_name

    by_name: dict[str, list[Path]] = {}
    for path in bundles:
        by_name.setdefault(bundle_name(path), []).append(path)
    clashes = []
    for name, paths in by_name.items():
        if len(paths) == 1:
            continue
        if len({path.resolve() for path in paths}) == 1:
            clashes.append(f"{paths[0]} is given {len(paths)} times")
        else:
            clashes.append(f"{' and '.join(map(str, paths))} would {'both' if len(paths) == 2 else 'all'} be "
                           f"reported as {name!r}")
    if not clashes:
        return None
    return ("; ".join(clashes) + ": give each --model bundle once, under its own folder or archive name "
            "(a link is named after its target)")


def run_eval(args: argparse.Namespace) -> int:
    from sim2real.gap import (
        MONITOR_LEAD_S,
        NOMINAL,
        VARIANTS,
        EvalConfig,
        default_domains,
        format_pairs,
        format_table,
        outside_training,
        paired_laps,
        pools,
        summarize,
    )
    from sim2real.heldout import DomainsFileError, first_repeat, load_domains
    from sim2real.plots import gap_plot
    from sim2real.sim.track import Track

    if args.compare is not None:
        return _compare(args)
    if args.trials is not None:
        return _trials(args)
    if args.max_speed is None:
        args.max_speed = 0.5
    if args.model and (args.seeds is not None or args.variants is not None):
        return fail("eval", "--seeds and --variants choose what the gap table trains; --model evaluates its "
                            "bundles as they are: leave them out")
    try:
        seeds = [int(s) for s in (DEFAULT_SEEDS if args.seeds is None else args.seeds).split(",") if s.strip()]
    except ValueError:
        return fail("eval", f"--seeds must be comma-separated integers, got {args.seeds!r}")
    tracks = tuple(t for t in args.tracks.split(",") if t)
    train_tracks = tuple(t for t in args.train_tracks.split(",") if t)
    if (twice := first_repeat(tracks)) is not None:
        return fail("eval", f"--tracks names {tracks[twice]} twice (its laps would be driven and counted twice)")
    try:
        if args.episodes is not None and args.episodes < 0:
            raise ValueError(f"--episodes must be 0 or more, got {args.episodes}")
        if args.episodes is not None and args.domains is not None:
            raise ValueError("--episodes reduces the default test; a --domains file says its own episodes")
        domains = default_domains(args.episodes) if args.domains is None else [NOMINAL] \
            if str(args.domains) == "nominal" else load_domains(args.domains)
        for name in tracks + train_tracks:
            Track.load(name)
    except (DomainsFileError, ValueError) as exc:
        return fail("eval", str(exc))
    variants = [v for v in args.variants.split(",") if v] if args.variants is not None else list(VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        return fail("eval", f"unknown variant(s) {', '.join(unknown)}; variants: {', '.join(VARIANTS)}")
    if not seeds or not train_tracks or args.starts < 1 or \
            min(args.iterations, args.steps, args.epochs, args.perception_steps, args.perception_epochs) < 1:
        return fail("eval", "--seeds and --train-tracks need at least one entry; --starts, --iterations, --steps, "
                             "--epochs, --perception-steps and --perception-epochs at least 1")
    if not 0.0 < args.max_speed <= 1.0:
        return fail("eval", f"--max-speed must be in (0, 1], got {args.max_speed}")
    missing = [str(m) for m in args.model or [] if not m.exists()]
    if missing:
        return fail("eval", f"no bundle at {', '.join(missing)}")
    if error := worker_options_error(args):
        return fail("eval", error)
    cfg = EvalConfig(tracks=tracks, starts=args.starts, max_speed=args.max_speed)
    if args.lap_times:
        return _lap_times(args, tracks)
    if error := _name_clash(args.model or []):
        return fail("eval", error)

    def log(message: str) -> None:  # stderr, also under --json: a grid takes hours
        print(f"racer eval: {message}", file=sys.stderr, flush=True)

    from sim2real.distributed import ClusterError

    if args.out is None:
        args.out = DEFAULT_MODELS_EVAL_DIR if args.model else DEFAULT_EVAL_DIR
    started = time.monotonic()
    try:
        with workers(args) as on_workers:
            models = _eval_models(args, domains, cfg, train_tracks, seeds, variants, log, on_workers)
    except ClusterError as exc:
        return fail("eval", str(exc))
    duration_s = round(time.monotonic() - started, 1)
    summary = summarize(models, domains)
    pairs = paired_laps(models) if args.model else []
    args.out.mkdir(parents=True, exist_ok=True)
    plot = gap_plot(summary, pools(domains), args.out / "gap.png")
    report = {
        "test": next((d.pool for d in domains if d.pool != d.name), None),
        "domains_file": None if args.domains is None else str(args.domains),
        "domains": [{"name": d.name, "group": d.pool, "values": d.values, "outside_training": outside_training(d),
                     **({"episodes": [[e.track, e.start] for e in d.episodes]} if d.episodes else {})}
                    for d in domains],
        "eval": {"tracks": list(tracks) or "held out per model", "starts": args.starts, "max_speed": cfg.max_speed},
        "models": models, "summary": summary, "paired": pairs, "plot": str(plot), "duration_s": duration_s,
    }
    (args.out / "gap.json").write_text(json.dumps(report, indent=1))
    print(f"lap completion % [95% interval] n=laps at max-speed {cfg.max_speed:g}; the monitor's AUROC "
          f"[95% interval] (off-track vs completed laps), at the off-track and {MONITOR_LEAD_S:g} s before it\n"
          + format_table(summary, domains), file=sys.stderr)
    if pairs:
        print(f"{PAIRS_HEADING}\n{format_pairs(pairs)}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    took = f"{duration_s / 60:.1f} min" if duration_s >= 60 else f"{duration_s:.1f} s"
    print(f"racer eval: done in {took}; wrote {args.out / 'gap.json'} and {plot}", file=sys.stderr)
    if not any(result["laps"] for model in models for result in model["results"].values()):
        return fail("eval", "no lap was driven: every lap was left out (its track not among --tracks, or one "
                            "the model trained on)", code=1)
    return 0
