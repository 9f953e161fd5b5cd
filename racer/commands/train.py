"""`racer train` and `racer export`: imitation training in the simulator, export to a bundle."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from racer.commands import fail

TRAIN_TRACKS = "reinvent_base,Spain_track,Tokyo_Training_track"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a policy in the simulator: imitation (DAgger) or PPO on your reward",
                       description="Trains a camera policy in the simulator, by DAgger from the privileged "
                                   "pure-pursuit expert (the default), or with --algo ppo by reinforcement learning "
                                   "on a DeepRacer reward function (--reward-function); writes a checkpoint, a "
                                   "training curve, and exports a bundle.")
    p.add_argument("--out", required=True, type=Path, help="run directory (created; must be new or empty)")
    p.add_argument("--tracks", default=TRAIN_TRACKS, help="comma-separated training tracks (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=8, help="DAgger iterations (default: %(default)s)")
    p.add_argument("--steps", type=int, default=8000, help="simulator steps per iteration (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=4, help="epochs over all data per iteration (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--max-speed", type=float, default=1.0, metavar="X",
                   help="the console's max-speed setting (0..1] the policy learns to drive at (default: %(default)s)")
    p.add_argument("--randomization", metavar="PRESET|FILE",
                   help="domain randomization: none, default, strong or a YAML config (default: none)")
    p.add_argument("--augmentation", metavar="PRESET",
                   help="image augmentation preset: none, light, default, strong (default: none)")
    p.add_argument("--camera-info", type=Path, metavar="FILE",
                   help="ROS camera_info YAML: train with the calibrated camera's lens")
    p.add_argument("--algo", choices=("dagger", "ppo"), default="dagger",
                   help="dagger: imitation of the expert (default); ppo: RL on a DeepRacer reward function")
    p.add_argument("--reward-function", type=Path, metavar="FILE",
                   help="ppo: a DeepRacer reward .py defining reward_function(params) "
                        "(default: follow the centre line)")
    p.add_argument("--timesteps", type=int, default=200_000, help="ppo: environment steps (default: %(default)s)")
    add_worker_options(p, "dagger: the rollouts; ppo: the environments (one per track)")
    p.add_argument("--name", help="model name: the archive is OUT/NAME.tar.gz, the name the car's console lists "
                                   "after upload (default: the --out directory's name)")
    p.add_argument("--no-export", action="store_true", help="stop after the checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    p.set_defaults(func=run_train)

    e = sub.add_parser("export", help="export a training checkpoint to an uploadable model bundle",
                       description="Torch -> ONNX -> OpenVINO IR, gated on OpenVINO agreeing with torch on "
                                   "at least 1,000 simulator frames.")
    e.add_argument("checkpoint", type=Path, help="policy.pt written by racer train")
    e.add_argument("--out", required=True, type=Path, help="bundle directory to create")
    e.add_argument("--tar", type=Path, help="also pack the bundle as this .tar.gz")
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
    from sim2real.imitation import ImitationConfig, save_checkpoint, train_imitation, SPEC, ACTION_SPACE
    from sim2real.plots import reward_curve, training_curve
    from sim2real.randomize import Randomization, RandomizationError
    from sim2real.sim.track import Track

    tracks = tuple(t for t in args.tracks.split(",") if t)
    try:
        for name in tracks:
            Track.load(name)
        if args.randomization:
            Randomization.load(args.randomization)
        if args.augmentation:
            pipeline(args.augmentation)
    except (ValueError, RandomizationError, AugmentationError) as exc:
        return fail("train", str(exc))
    if args.iterations < 1 or args.steps < 1 or args.epochs < 1 or args.timesteps < 1:
        return fail("train", "--iterations, --steps, --epochs and --timesteps must be at least 1")
    if not 0.0 < args.max_speed <= 1.0:
        return fail("train", f"--max-speed must be in (0, 1], got {args.max_speed}")
    if args.camera_info is not None and not args.camera_info.is_file():
        return fail("train", f"no camera_info file at {args.camera_info}")
    if args.reward_function is not None and args.algo != "ppo":
        return fail("train", "--reward-function needs --algo ppo")
    if error := worker_options_error(args):
        return fail("train", error)
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
    randomization = args.randomization if args.randomization != "none" else None
    augmentation = args.augmentation if args.augmentation != "none" else None
    camera_info = str(args.camera_info) if args.camera_info else None
    from sim2real.distributed import ClusterError
    from sim2real.reward import RewardFunctionError, load_reward_function

    reward_file = str(args.reward_function) if args.reward_function else None
    if reward_file:
        try:
            load_reward_function(reward_file)
        except RewardFunctionError as exc:
            return fail("train", str(exc))
    try:
        with workers(args) as on_workers:
            args.out.mkdir(parents=True, exist_ok=True)
            if args.algo == "ppo":
                from sim2real.ppo import PPOConfig, train_ppo

                cfg = PPOConfig(reward_file=reward_file, tracks=tracks, timesteps=args.timesteps, seed=args.seed,
                                randomization=randomization, augmentation=augmentation, camera_info=camera_info,
                                max_speed_setting=args.max_speed)
                env = None
                if on_workers:
                    from sim2real.distributed import worker_vec_env
                    from sim2real.ppo import env_factories

                    env = worker_vec_env(env_factories, cfg, args.workers)
                net, history = train_ppo(cfg, show_progress=not args.json, env=env)
                trainer = "ppo"
            else:
                cfg = ImitationConfig(tracks=tracks, iterations=args.iterations, steps_per_iteration=args.steps,
                                      epochs=args.epochs, seed=args.seed, randomization=randomization,
                                      augmentation=augmentation, camera_info=camera_info,
                                      max_speed_setting=args.max_speed)
                source = None
                if on_workers:
                    from sim2real.distributed import WorkerRollouts

                    source = WorkerRollouts(cfg, args.workers)
                net, _, trained, _ = train_imitation(cfg, show_progress=not args.json, source=source)
                history, trainer = trained.iterations, "dagger"
    except ClusterError as exc:
        return fail("train", str(exc))
    except RewardFunctionError as exc:  # it loaded, then returned something that is not a reward
        return fail("train", f"{reward_file}: {exc}", 1)
    checkpoint = save_checkpoint(args.out / "policy.pt", net, SPEC, ACTION_SPACE, cfg, history, trainer=trainer)
    plot = reward_curve if trainer == "ppo" else training_curve
    curve = plot(history, args.out / "training_curve.png")
    (args.out / "history.json").write_text(json.dumps(history, indent=1))
    summary = {"checkpoint": str(checkpoint), "training_curve": str(curve), "history": history}
    if not args.no_export:
        export = _export(checkpoint, args.out / "bundle", args.out / f"{name}.tar.gz", 1000)
        summary.update(export)
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


def _export(checkpoint: Path, out: Path, tar: Path | None, frames: int) -> dict:
    from car.policy.bundle import pack_bundle
    from sim2real.export import export_checkpoint

    bundle, report = export_checkpoint(checkpoint, out, frames)
    result = {"bundle": str(out), "equivalence": report.to_json()}
    if tar is not None:
        result["tar"] = str(pack_bundle(out, tar))
    bundle.close()
    return result


def run_export(args: argparse.Namespace) -> int:
    from sim2real.export import ExportGateError

    if not args.checkpoint.is_file():
        return fail("export", f"no checkpoint at {args.checkpoint}")
    try:
        result = _export(args.checkpoint, args.out, args.tar, args.frames)
    except (ValueError, ExportGateError) as exc:
        return fail("export", str(exc))
    print(json.dumps(result) if args.json else f"racer export: wrote {args.out} "
          f"(max abs error {result['equivalence']['max_abs_error']:.2e} on {args.frames} frames)")
    return 0
