"""`racer train` and `racer export`: imitation training in the simulator, export to a bundle."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from racer.commands import caution_option, fail

if TYPE_CHECKING:
    from car.policy.preprocess import PreprocessSpec
    from car.policy.warning import Caution

TRAIN_TRACKS = "reinvent_base,Spain_track,Tokyo_Training_track"
PPO_TRACKS = "reinvent_base"
# --corner-weight's ceiling: a full-lock frame then counts 101 times a straight one, far past any use,
# and float32 weights stay far from overflow.
MAX_CORNER_WEIGHT = 100.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train",
                       help="train a policy in the simulator: DAgger imitation, or PPO like the DeepRacer console",
                       description="dagger (default): imitation of the privileged pure-pursuit expert. ppo: "
                                   "reinforcement learning on a DeepRacer reward function with the AWS console's "
                                   "action space, network and hyperparameters, read from a DRfC custom_files "
                                   "folder; logs in DRfC's layout. Both write a checkpoint, a training curve, and "
                                   "export a bundle.")
    p.add_argument("--out", required=True, type=Path, help="run directory (created; must be new or empty)")
    p.add_argument("--tracks", help=f"comma-separated training tracks: built-in names or .npy waypoint files "
                                    f"(default: dagger {TRAIN_TRACKS}; ppo {PPO_TRACKS})")
    p.add_argument("--iterations", type=int, default=8, help="dagger: iterations (default: %(default)s)")
    p.add_argument("--steps", type=int, default=8000,
                   help="dagger: simulator steps per iteration (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=4,
                   help="dagger: epochs over all data per iteration (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--max-speed", type=float, metavar="X",
                   help="dagger: the console's max-speed setting (0..1] the policy learns to drive at (default: 1.0; "
                        "ppo drives at the action space's speeds, as the AWS simulator)")
    p.add_argument("--max-speed-low", type=float, metavar="LO",
                   help="dagger: draw each episode's max-speed setting uniformly from [LO, --max-speed], so one "
                        "policy drives wherever the owner sets the console's slider (default: every episode at "
                        "--max-speed)")
    p.add_argument("--expert-lateral-accel", type=float, metavar="A",
                   help="dagger: the expert's cap on lateral acceleration in corners, m/s^2 (default: 3.5); lower "
                        "teaches slower, more careful corners (the lap-time reference in racer eval stays 3.5)")
    p.add_argument("--road-width", type=_road_width, metavar="LOW,HIGH",
                   help="dagger: narrow or widen each episode's road about its centre line by a factor drawn "
                        "uniformly from [LOW, HIGH] (0.3 to 1.3), so the policy meets roads narrower and wider than "
                        "its tracks' own (default: the tracks as they are)")
    p.add_argument("--corner-weight", type=float, default=0.0, metavar="K",
                   help="dagger: weight each frame's loss by 1 + K x |the expert's steering| (0..1), so tight "
                        "corners count up to 1 + K times as much as straights; 0 to 100 (default: %(default)s, every "
                        "frame alike)")
    p.add_argument("--input-size", type=_input_size, metavar="WxH",
                   help="dagger: the network's input, each camera frame resized to W x H pixels (even, from "
                        "64x48 to 160x120, the simulator's frame) with about the top fifth cropped off; larger "
                        "shows the road ahead in more rows and trains and infers slower. An ensemble's members "
                        "and its --monitor need the same (default: 80x60)")
    p.add_argument("--randomization", metavar="PRESET|FILE",
                   help="domain randomization: none, default, strong or a YAML config (default: none)")
    p.add_argument("--augmentation", metavar="PRESET",
                   help="image augmentation preset: none, light, default, strong (default: none)")
    p.add_argument("--camera-info", type=Path, metavar="FILE",
                   help="ROS camera_info YAML: train with the calibrated camera's lens")
    p.add_argument("--algo", choices=("dagger", "ppo"), default="dagger",
                   help="dagger: imitation of the expert (default); ppo: RL on a DeepRacer reward function")
    p.add_argument("--model", choices=("end-to-end", "modular"), default="end-to-end",
                   help="dagger: end-to-end, one network from frame to action (default); modular, a perception "
                        "network segmenting each frame into road, line and background, trained on the simulator's "
                        "labels, and a driving policy that sees only that segmentation, trained by DAgger on the "
                        "perception's output; one bundle, with the perception's uncertainty as a second output")
    p.add_argument("--perception-steps", type=int, default=12000,
                   help="modular: labelled expert-driven frames the perception trains on (default: %(default)s)")
    p.add_argument("--perception-epochs", type=int, default=6,
                   help="modular: epochs over them (default: %(default)s)")
    p.add_argument("--custom-files", type=Path, metavar="DIR",
                   help="ppo: a DRfC custom_files folder (reward_function.py, model_metadata.json, "
                        "hyperparameters.json), read unchanged")
    p.add_argument("--reward-function", type=Path, metavar="FILE",
                   help="ppo without --custom-files: a DeepRacer reward .py defining reward_function(params), with "
                        "the console's default action space and hyperparameters (default: the console's "
                        "follow-the-centre-line example)")
    p.add_argument("--clone", metavar="RUN_OR_MODEL",
                   help="ppo: start from a racer PPO run (its directory or policy.pt) or an AWS DeepRacer export "
                        "(.tar.gz with a frozen .pb); same network and action count")
    p.add_argument("--minutes", type=float, metavar="M",
                   help="ppo: stop after M minutes of training, as the console (default: 20 unless --timesteps)")
    p.add_argument("--timesteps", type=int, metavar="N", help="ppo: stop after exactly N training steps")
    p.add_argument("--cars", type=int, default=4,
                   help="ppo: simulated cars driven together, one network call for all (default: %(default)s)")
    p.add_argument("--eval-episodes", type=int, default=5,
                   help="ppo: evaluation episodes after each iteration, as DRfC's MIN_EVAL_TRIALS "
                        "(default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="ppo: torch threads for the network (default: %(default)s)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="ppo: the updates' arithmetic; bf16 is mixed precision (float32 weights and optimizer), "
                        "faster on CPUs with bfloat16 instructions (default: %(default)s)")
    add_worker_options(p, "dagger: the rollouts; ppo: the cars")
    p.add_argument("--name", help="model name: the archive is OUT/NAME.tar.gz, the name the car's console lists "
                                   "after upload (default: the --out directory's name)")
    p.add_argument("--no-export", action="store_true", help="stop after the checkpoint")
    p.add_argument("--json", action="store_true",
                   help="print one JSON summary object on stdout (progress stays on stderr)")
    p.set_defaults(func=run_train)

    e = sub.add_parser("export", help="export a training checkpoint (or several, as an ensemble) to an uploadable "
                                      "model bundle",
                       description="Torch -> ONNX -> OpenVINO IR, gated on OpenVINO agreeing with torch on "
                                   "at least 1,000 simulator frames. Several checkpoints (continuous end-to-end "
                                   "DAgger runs trained on mirrored frames, racer train's default, on the same "
                                   "tracks: for example one recipe with different --seed) make one "
                                   "ensemble: the car drives their mean action and reads their disagreement as "
                                   "the model's uncertainty. --monitor adds a modular model's perception as a "
                                   "watcher of the frames.")
    e.add_argument("checkpoint", type=Path, nargs="+", metavar="CHECKPOINT",
                   help="policy.pt written by racer train; several: an ensemble")
    e.add_argument("--out", required=True, type=Path, help="bundle directory to create")
    e.add_argument("--tar", type=Path, help="also pack the bundle as this .tar.gz")
    e.add_argument("--monitor", type=Path, metavar="CHECKPOINT",
                   help="a modular model's policy.pt (racer train --model modular) with the CHECKPOINTs' "
                        "preprocessing, to watch them: its perception's entropy on each frame is added to their "
                        "uncertainty and so to the car's warning; the action stays theirs. The CHECKPOINTs must "
                        "then be continuous DAgger runs trained on mirrored frames. The bundled model has one "
                        "(docs/gap.md)")
    e.add_argument("--steering-scale", type=float, default=1.0, metavar="S",
                   help="multiply the steering the car drives by S (0.25 to 4; the car clips it at full lock), for "
                        "networks that turn into corners late; the uncertainty is read before it. Needs continuous "
                        "DAgger checkpoints trained on mirrored frames (racer train's default). The bundled model "
                        "has 1.5 (its model card) (default: %(default)s)")
    e.add_argument("--caution", type=caution_option, metavar="WARNING,SCALE",
                   help="have the car drive at SCALE (above 0, at most 1) of the speed the policy asks for while "
                        "its warning "
                        "(the monitor's 2 s mean, on /diagnostics and the console) is above WARNING: a car that "
                        "doubts what it sees slows down. The bundled model has 0.25,0.8 (its model card) "
                        "(default: none)")
    e.add_argument("--frames", type=int, default=1000, help="frames for the equivalence gate (default: %(default)s)")
    e.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    e.set_defaults(func=run_export)


def add_worker_options(p: argparse.ArgumentParser, work: str) -> None:
    """`--workers N [--ray-address ADDR]`: `work` on Ray workers, with the same result as without."""
    p.add_argument("--workers", type=int, metavar="N",
                   help=f"run {work} on N Ray workers, same result as without (default: in this process, "
                        "without Ray)")
    p.add_argument("--ray-address", metavar="HOST:PORT",
                   help="with --workers: the Ray cluster's head as `ray start --head` prints it, or 'auto' "
                        "(default: a private Ray instance on this machine, loopback only)")


def worker_options_error(args: argparse.Namespace) -> str | None:
    if args.workers is not None and args.workers < 1:
        return f"--workers must be at least 1, got {args.workers}"
    if args.ray_address is not None and args.workers is None:
        return "--ray-address needs --workers"
    return None


@contextmanager
def workers(args: argparse.Namespace) -> Iterator[bool]:
    """Ray for the command's duration when --workers is given (yields True), else nothing (False).
    Raises sim2real.distributed.ClusterError when Ray cannot be reached or started."""
    if args.workers is None:
        yield False
        return
    from sim2real.distributed import ray_workers

    with ray_workers(args.ray_address, args.workers):
        yield True


def run_train(args: argparse.Namespace) -> int:
    from sim2real.augment import AugmentationError, pipeline
    from sim2real.randomize import Randomization, RandomizationError
    from sim2real.sim.track import Track

    ppo = args.algo == "ppo"
    tracks = tuple(t for t in (args.tracks or (PPO_TRACKS if ppo else TRAIN_TRACKS)).split(",") if t)
    try:
        for name in tracks:
            Track.load(name)
        if args.randomization:
            Randomization.load(args.randomization)
        if args.augmentation:
            pipeline(args.augmentation)
    except (ValueError, RandomizationError, AugmentationError) as exc:
        return fail("train", str(exc))
    if args.camera_info is not None and not args.camera_info.is_file():
        return fail("train", f"no camera_info file at {args.camera_info}")
    if not ppo:
        for flag in ("custom_files", "reward_function", "clone", "minutes", "timesteps"):
            if getattr(args, flag) is not None:
                return fail("train", f"--{flag.replace('_', '-')} needs --algo ppo")
        if args.precision != "fp32":
            return fail("train", "--precision needs --algo ppo")
    elif args.model != "end-to-end":
        return fail("train", "--model modular trains by DAgger: leave out --algo ppo")
    if error := worker_options_error(args):
        return fail("train", error)
    if args.model == "modular" and args.workers is not None:
        return fail("train", "--model modular runs its rollouts in this process: leave out --workers")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        return fail("train", f"{args.out} exists and is not empty")
    # the console names an upload after its archive: check the name before hours of training
    from car.console.errors import ApiError
    from car.console.models import check_folder_name

    name = args.name if args.name is not None else args.out.resolve().name
    try:
        check_folder_name(name)
    except ApiError as exc:
        return fail("train", f"{exc.reason}; pass --name" if args.name is None else exc.reason)
    if not args.no_export:
        # load the export code now: a racer updated during the hours of training must not meet the
        # old modules it already loaded at the end (an ImportError after the checkpoint)
        importlib.import_module("sim2real.export")
    options = {"randomization": args.randomization if args.randomization != "none" else None,
               "augmentation": args.augmentation if args.augmentation != "none" else None,
               "camera_info": str(args.camera_info) if args.camera_info else None}
    if ppo:
        return _train_ppo(args, tracks, name, options)
    if args.model == "modular":
        return _train_modular(args, tracks, name, options)
    return _train_dagger(args, tracks, name, options)


def _road_width(text: str) -> tuple[float, float]:
    """`--road-width LOW,HIGH` -> (low, high), each within `sim2real.sim.track.ROAD_WIDTHS`, low <= high."""
    from sim2real.sim.track import ROAD_WIDTHS

    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two numbers LOW,HIGH (for example 0.7,1.1)") from None
    least, most = ROAD_WIDTHS
    if not least <= low <= high <= most:
        raise argparse.ArgumentTypeError(f"{text!r}: the factors must be from {least:g} to {most:g}, LOW <= HIGH")
    return low, high


def _input_size(text: str) -> PreprocessSpec:
    """`--input-size WxH` -> the preprocessing at that size (`sim2real.training_defaults.spec_at`)."""
    from sim2real.training_defaults import spec_at

    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT in pixels (for example 120x90)") from None
    try:
        return spec_at(width, height)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _spec(args: argparse.Namespace) -> PreprocessSpec:
    """The preprocessing the run trains with: --input-size's, else training_defaults.SPEC."""
    from sim2real.training_defaults import SPEC

    return SPEC if args.input_size is None else args.input_size


def _dagger_settings_error(args: argparse.Namespace) -> str | None:
    if args.iterations < 1 or args.steps < 1 or args.epochs < 1:
        return "--iterations, --steps and --epochs must be at least 1"
    max_speed = 1.0 if args.max_speed is None else args.max_speed
    if not 0.0 < max_speed <= 1.0:
        return f"--max-speed must be in (0, 1], got {max_speed}"
    if args.max_speed_low is not None and not 0.0 < args.max_speed_low <= max_speed:
        return f"--max-speed-low must be in (0, {max_speed:g}] (--max-speed), got {args.max_speed_low:g}"
    if args.expert_lateral_accel is not None and not args.expert_lateral_accel > 0.0:
        return f"--expert-lateral-accel must be above 0 m/s^2, got {args.expert_lateral_accel}"
    if not 0.0 <= args.corner_weight <= MAX_CORNER_WEIGHT:
        return f"--corner-weight must be from 0 to {MAX_CORNER_WEIGHT:g}, got {args.corner_weight}"
    return None


def _dagger_settings(args: argparse.Namespace, tracks: tuple[str, ...], options: dict) -> dict:
    """The ImitationConfig fields the command line sets."""
    return dict(tracks=tracks, iterations=args.iterations, steps_per_iteration=args.steps, epochs=args.epochs,
                seed=args.seed, max_speed_setting=1.0 if args.max_speed is None else args.max_speed,
                max_speed_low=args.max_speed_low, expert_lateral_accel_mps2=args.expert_lateral_accel,
                road_width=args.road_width, corner_weight=args.corner_weight, **options)


def _train_modular(args: argparse.Namespace, tracks: tuple[str, ...], name: str, options: dict) -> int:
    from sim2real.checkpoint import save_checkpoint
    from sim2real.modular import ModularConfig, train_modular
    from sim2real.plots import training_curve
    from sim2real.training_defaults import ACTION_SPACE

    if error := _dagger_settings_error(args):
        return fail("train", error)
    if args.perception_steps < 1 or args.perception_epochs < 1:
        return fail("train", "--perception-steps and --perception-epochs must be at least 1")
    cfg = ModularConfig(**_dagger_settings(args, tracks, options), perception_steps=args.perception_steps,
                        perception_epochs=args.perception_epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = _spec(args)
    net, trained, perception = train_modular(cfg, spec, show_progress=not args.json)
    history = trained.iterations
    checkpoint = save_checkpoint(args.out / "policy.pt", net, spec, ACTION_SPACE, cfg, history, trainer="modular")
    curve = training_curve(history, args.out / "training_curve.png")
    (args.out / "history.json").write_text(json.dumps({"dagger": history, "perception": perception}, indent=1))
    return _finish(args, name, {"checkpoint": str(checkpoint), "training_curve": str(curve), "history": history,
                                "perception": perception})


def _train_dagger(args: argparse.Namespace, tracks: tuple[str, ...], name: str, options: dict) -> int:
    from sim2real.checkpoint import save_checkpoint
    from sim2real.distributed import ClusterError
    from sim2real.imitation import ImitationConfig, train_imitation
    from sim2real.plots import training_curve
    from sim2real.training_defaults import ACTION_SPACE

    if error := _dagger_settings_error(args):
        return fail("train", error)
    cfg = ImitationConfig(**_dagger_settings(args, tracks, options))
    spec = _spec(args)
    try:
        with workers(args) as on_workers:
            args.out.mkdir(parents=True, exist_ok=True)
            source = None
            if on_workers:
                from sim2real.distributed import WorkerRollouts

                source = WorkerRollouts(cfg, args.workers, spec)
            net, _, trained, _ = train_imitation(cfg, spec, show_progress=not args.json, source=source)
    except ClusterError as exc:
        return fail("train", str(exc))
    history = trained.iterations
    checkpoint = save_checkpoint(args.out / "policy.pt", net, spec, ACTION_SPACE, cfg, history, trainer="dagger")
    curve = training_curve(history, args.out / "training_curve.png")
    (args.out / "history.json").write_text(json.dumps(history, indent=1))
    return _finish(args, name, {"checkpoint": str(checkpoint), "training_curve": str(curve), "history": history})


def _train_ppo(args: argparse.Namespace, tracks: tuple[str, ...], name: str, options: dict) -> int:
    from sim2real.checkpoint import save_checkpoint
    from sim2real.clone import CloneError, check_clone
    from sim2real.custom_files import DEFAULT_METADATA, CustomFilesError, Hyperparameters, load_custom_files
    from sim2real.distributed import ClusterError
    from sim2real.network import CONSOLE_SPEC
    from sim2real.plots import reward_curve
    from sim2real.ppo import DEFAULT_REWARD, PPOConfig, probe_reward, train_ppo
    from sim2real.reward import RewardFunctionError
    from sim2real.runlog import RunLog

    if args.custom_files is not None and args.reward_function is not None:
        return fail("train", "pass --custom-files or --reward-function, not both "
                             "(the folder holds its reward_function.py)")
    for flag, value in (("--max-speed", args.max_speed), ("--max-speed-low", args.max_speed_low)):
        if value is not None:
            return fail("train", f"{flag} is dagger's: ppo drives at the action space's speeds, as the AWS simulator")
    if args.road_width is not None:
        return fail("train", "--road-width is dagger's: ppo trains on the tracks as the AWS simulator has them")
    if args.input_size is not None:
        return fail("train", "--input-size is dagger's: ppo trains the console's network on its 160x120 input")
    if args.expert_lateral_accel is not None:
        return fail("train", "--expert-lateral-accel is dagger's: ppo learns from a reward function, not an expert")
    if args.corner_weight:
        return fail("train", "--corner-weight is dagger's: ppo learns from a reward function, not an expert's labels")
    if args.minutes is not None and not args.minutes > 0:
        return fail("train", f"--minutes must be positive, got {args.minutes:g}")
    if args.timesteps is not None and args.timesteps < 1:
        return fail("train", f"--timesteps must be at least 1, got {args.timesteps}")
    if args.cars < 1 or args.eval_episodes < 0 or args.threads < 1:
        return fail("train", "--cars and --threads must be at least 1, --eval-episodes at least 0")
    try:
        if args.custom_files is not None:
            files = load_custom_files(args.custom_files)
            reward_file, metadata, hyper = files.reward_file, files.metadata, files.hyperparameters
        else:
            reward_file, metadata, hyper = args.reward_function or DEFAULT_REWARD, DEFAULT_METADATA, Hyperparameters()
        cfg = PPOConfig(reward_file=str(reward_file), metadata=metadata, hyperparameters=hyper.to_json(), tracks=tracks,
                        minutes=args.minutes, timesteps=args.timesteps, seed=args.seed, cars=args.cars,
                        eval_episodes=args.eval_episodes, threads=args.threads, clone=args.clone,
                        precision=args.precision, **options)
        probe_reward(cfg)
        if cfg.clone:
            check_clone(cfg.clone, cfg.meta)
    except (CustomFilesError, RewardFunctionError, CloneError) as exc:
        return fail("train", str(exc))
    out = args.out
    curve = out / "training_curve.png"

    def on_iteration(row: dict, result) -> None:
        history = result.history
        if row["best"]:
            save_checkpoint(out / "policy.pt", result.best, CONSOLE_SPEC, cfg.metadata, cfg, history, trainer="ppo")
        save_checkpoint(out / "last.pt", result.last, CONSOLE_SPEC, cfg.metadata, cfg, history, trainer="ppo")
        reward_curve(history, curve)
        (out / "history.json").write_text(json.dumps(history, indent=1))

    try:
        with workers(args) as on_workers:
            out.mkdir(parents=True, exist_ok=True)
            run = RunLog(out)
            run.start(cfg.metadata, cfg.hyperparameters, Path(cfg.reward_file))
            cars = None
            if on_workers:
                from sim2real.distributed import WorkerCars

                cars = WorkerCars(cfg, args.workers)
            result = train_ppo(cfg, run, show_progress=True, cars=cars, on_iteration=on_iteration)
    except ClusterError as exc:
        return fail("train", str(exc))
    except RewardFunctionError as exc:  # it passed the first step, then failed: the run stops, located
        return fail("train", str(exc), 1)
    if not result.history:
        return fail("train", "stopped before the first iteration ended: give it more --minutes or --timesteps", 1)
    summary = {"checkpoint": str(out / "policy.pt"), "last_checkpoint": str(out / "last.pt"),
               "training_curve": str(curve), "logs": str(out), "stopped_by": result.stopped_by,
               "history": result.history}
    return _finish(args, name, summary)


def _finish(args: argparse.Namespace, name: str, summary: dict) -> int:
    """Export the checkpoint (unless --no-export) and say what was written."""
    checkpoint = Path(summary["checkpoint"])
    if not args.no_export:
        summary.update(_export(checkpoint, args.out / "bundle", args.out / f"{name}.tar.gz", 1000))
    if args.json:
        print(json.dumps(summary))
    elif args.no_export:
        print(f"racer train: wrote {checkpoint}; export it with: racer export {checkpoint} --out DIR", file=sys.stderr)
    else:
        print(done_line(args.out, summary, name), file=sys.stderr)
    return 0


def done_line(out: Path, summary: dict, name: str) -> str:
    """What a training wrote and the commands that use it, as they run when copied."""
    return (f"racer train: wrote {out}; bundle {summary['bundle']} (OpenVINO vs torch max abs error "
            f"{summary['equivalence']['max_abs_error']:.2e}); drive it with: racer demo --model {summary['bundle']}; "
            f"upload it as {name!r} with: racer upload {summary['tar']} --car HOST (racer discover lists cars)")


def _export(checkpoints: Path | list[Path], out: Path, tar: Path | None, frames: int,
            monitor: Path | None = None, steering_scale: float = 1.0, caution: Caution | None = None) -> dict:
    from car.policy.bundle import pack_bundle
    from sim2real.export import export_checkpoint

    bundle, report = export_checkpoint(checkpoints, out, frames, monitor, steering_scale, caution)
    result = {"bundle": str(out), "equivalence": report.to_json()}
    if tar is not None:
        result["tar"] = str(pack_bundle(out, tar))
    bundle.close()
    return result


def run_export(args: argparse.Namespace) -> int:
    from sim2real.export import ExportGateError

    missing = [str(path) for path in [*args.checkpoint, args.monitor] if path is not None and not path.is_file()]
    if missing:
        return fail("export", f"no checkpoint at {', '.join(missing)}")
    try:
        result = _export(args.checkpoint, args.out, args.tar, args.frames, args.monitor, args.steering_scale,
                         args.caution)
    except (ValueError, ExportGateError) as exc:
        return fail("export", str(exc))
    print(json.dumps(result) if args.json else f"racer export: wrote {args.out} "
          f"(max abs error {result['equivalence']['max_abs_error']:.2e} on {args.frames} frames)")
    return 0
