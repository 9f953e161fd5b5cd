"""Training and the gap evaluation on Ray workers: DAgger rollouts, PPO's cars and the
variant x seed grid, on this machine or on a cluster started with `ray start`.

Every result is the serial one: DAgger episodes are numbered and seeded by (seed, iteration,
episode number) and gathered in order, PPO's cars step in their fixed order, and each grid
cell trains and drives exactly as the serial evaluation does. Workers need racer's dependencies
(`pip install 'racer[train]'`) and nothing else: racer's code, the built-in tracks and the user's
files named in a config (randomization YAML, camera_info, reward function) are shipped with the work.
Ray is imported only here, and only when workers are asked for.
"""
from __future__ import annotations

import importlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from car.policy.preprocess import PreprocessSpec
from car.policy.racer_json import RACER_FILE
from sim2real.imitation import Episode, ImitationConfig, Rollouts
from sim2real.network import DrivingNet
from sim2real.training_defaults import ACTION_SPACE, SPEC

# The config fields that may name a file on the driver's machine.
FILE_FIELDS = ("randomization", "camera_info", "reward_file")
CONNECT_TIMEOUT_S = 5.0

Config = TypeVar("Config")


class ClusterError(RuntimeError):
    """The Ray cluster cannot be reached or started; the message is one line."""


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when nothing answers at `address` ('HOST:PORT' or 'ray://HOST:PORT');
    Ray itself retries an unreachable cluster for minutes. 'auto' is left to Ray."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"Ray address must be HOST:PORT (as `ray start --head` prints) or 'auto', got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = f"no answer in {timeout_s:g} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({reason.lower()}); "
                           "start its head with `ray start --head` and pass the address it prints") from None


@contextmanager
def ray_workers(address: str | None = None, workers: int = 2) -> Iterator[None]:
    """Ray for the duration: the cluster at `address`, with racer's code shipped to its workers, or
    (no address) a private instance on this machine with `workers` CPUs, listening on loopback only.
    Usage statistics stay off unless RAY_USAGE_STATS_ENABLED says otherwise. A caller that has
    already connected Ray keeps its connection: nothing is started or shut down then.

    Raises ClusterError when the cluster cannot be reached or the instance cannot start."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is not None:
        check_reachable(address)
    else:
        # Ray's single-machine mode (its default on macOS): every service on 127.0.0.1, no other node joins.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        yield
        return
    # Ray warns at every start of a local instance that it turned token authentication on (its
    # default, which racer keeps) and how to opt out: not news for a racer user.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)

    options: dict[str, Any] = {"include_dashboard": False, "configure_logging": True, "logging_level": "warning"}
    if address is None:
        options.update(address="local", num_cpus=workers)
    else:
        # racer's top-level packages (pyproject.toml) travel with the job: a worker needs only the dependencies
        modules = [importlib.import_module(name) for name in ("car", "calibration", "sim2real", "racer")]
        options.update(address=address, runtime_env={"py_modules": modules})
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ClusterError(f"cannot use {where}: {str(exc).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


def ship_files(cfg: Config) -> dict[str, tuple[str, bytes]]:
    """The files a config names (randomization YAML, camera_info, reward function), read here so a
    worker on another machine gets them: field -> (file name, contents)."""
    shipped = {}
    for f in fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        if f.name in FILE_FIELDS and isinstance(value, str) and Path(value).is_file():
            shipped[f.name] = (Path(value).name, Path(value).read_bytes())
    return shipped


def unpack_files(cfg: Config, shipped: dict[str, tuple[str, bytes]], into: Path) -> Config:
    """The config with each shipped file written under `into` and named by its new path."""
    paths = {}
    for name, (filename, data) in shipped.items():
        path = into / name / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[name] = str(path)
    return replace(cfg, **paths)  # type: ignore[type-var]


class RolloutWorker:
    """A Ray actor's state: its own simulators (`Rollouts`) and its copy of the learner."""

    def __init__(self, cfg: ImitationConfig, shipped: dict[str, tuple[str, bytes]], spec: PreprocessSpec,
                 action_space: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(cfg.threads)
        self._files = tempfile.TemporaryDirectory(prefix="racer-rollouts-")
        self.rollouts = Rollouts(unpack_files(cfg, shipped, Path(self._files.name)), spec, action_space)
        self.outputs = self.rollouts.meta.output_size()

    def set_learner(self, state: dict[str, Any] | None) -> None:
        net = None
        if state is not None:
            net = DrivingNet(self.rollouts.spec, self.outputs)
            net.load_state_dict(state)
            net.eval()
        self.rollouts.set_learner(net)

    def episode(self, iteration: int, index: int, beta: float, max_steps: int) -> Episode:
        return self.rollouts.episode(iteration, index, beta, max_steps)


class WorkerRollouts:
    """DAgger's episodes from `workers` Ray actors (an `EpisodeSource`); call inside `ray_workers`.

    Episode k goes to whichever actor is free, and episodes come back in number order, so the
    dataset is the serial one. An actor starts an episode only while the budget may still need it."""

    def __init__(self, cfg: ImitationConfig, workers: int, spec: PreprocessSpec = SPEC,
                 action_space: dict[str, Any] = ACTION_SPACE) -> None:
        import ray

        self.cfg = cfg
        actor = ray.remote(num_cpus=1)(RolloutWorker)
        shipped = ship_files(cfg)
        self.actors = [actor.remote(cfg, shipped, spec, action_space) for _ in range(workers)]

    def set_learner(self, net: DrivingNet | None) -> None:
        import ray

        state = None if net is None else ray.put({k: v.detach().clone() for k, v in net.state_dict().items()})
        ray.get([a.set_learner.remote(state) for a in self.actors])

    def episodes(self, iteration: int, beta: float, budget: int) -> Iterator[Episode]:
        import ray

        done: dict[int, Episode] = {}
        running: dict[Any, tuple[int, Any]] = {}
        idle = list(self.actors)
        next_index = next_yield = finished = 0  # finished: steps of every episode back so far
        try:
            while True:
                while idle and finished + self.cfg.episode_steps * len(running) < budget:
                    # The episodes before this one are all running or back: it needs at most what they leave.
                    max_steps = min(self.cfg.episode_steps, budget - finished)
                    actor = idle.pop()
                    running[actor.episode.remote(iteration, next_index, beta, max_steps)] = (next_index, actor)
                    next_index += 1
                while next_yield in done:
                    yield done.pop(next_yield)
                    next_yield += 1
                if not running:
                    return
                ready, _ = ray.wait(list(running), num_returns=1)
                index, actor = running.pop(ready[0])
                done[index] = ray.get(ready[0])
                finished += len(done[index])
                idle.append(actor)
        finally:
            ray.get(list(running))  # let the actors finish what they started before the next iteration


def _train_cell(out_name: str, variant: str, seed: int, base: ImitationConfig,
                shipped: dict[str, tuple[str, bytes]]) -> dict[str, bytes]:
    """One grid cell's training on a worker: the run directory's files (checkpoint, bundle)."""
    from sim2real.gap import train_variant

    with tempfile.TemporaryDirectory(prefix="racer-gap-") as tmp:
        cfg = unpack_files(base, shipped, Path(tmp) / "files")
        train_variant(Path(tmp) / "runs", variant, seed, cfg)
        return read_tree(Path(tmp) / "runs" / out_name)


# Laps per drive task, at most, unless one domain has more: a test distribution has hundreds of
# one-lap domains, and each task unpacks and compiles its bundle once.
LAPS_PER_TASK = 8


def _evaluate_cell(run_files: dict[str, bytes], bundle: str, domains: Sequence[Any], cfg: Any) -> dict[str, Any]:
    """One model's drives in a few domains on a worker: `bundle` is the bundle's path among `run_files`."""
    from sim2real.gap import evaluate

    with tempfile.TemporaryDirectory(prefix="racer-gap-") as tmp:
        write_tree(Path(tmp), run_files)
        return evaluate(Path(tmp) / bundle, domains, cfg)


def drive_tasks(domains: Sequence[Any]) -> list[list[Any]]:
    """Successive domains, grouped into tasks of up to `LAPS_PER_TASK` laps (a domain without its
    own episodes counts as one task)."""
    chunks: list[list[Any]] = []
    laps = LAPS_PER_TASK
    for domain in domains:
        size = len(domain.episodes) or LAPS_PER_TASK
        if laps + size > LAPS_PER_TASK:
            chunks.append([])
            laps = 0
        chunks[-1].append(domain)
        laps += size
    return chunks


def wait_all(refs: list[Any], desc: str, show_progress: bool, on_ready: Callable[[Any], None] = lambda _: None
             ) -> None:
    """Wait for every Ray task in `refs`, one progress bar over all workers, `on_ready` as each ends."""
    import ray

    with tqdm(total=len(refs), desc=desc, unit="task", disable=not show_progress) as bar:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            on_ready(ready[0])
            bar.update(1)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`: relative path -> contents."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """`read_tree`'s files under `root`; a bundle's racer.json last, as it marks the bundle complete."""
    for rel in sorted(files, key=lambda r: r.endswith(RACER_FILE)):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])


def run_gap_evaluation_on_workers(out_dir: Path, seeds: Sequence[int], domains: Sequence[Any], base: ImitationConfig,
                                  cfg: Any, variants: Sequence[str], log: Callable[[str], None] = lambda _: None,
                                  show_progress: bool = True) -> list[dict[str, Any]]:
    """`gap.run_gap_evaluation` as Ray tasks, inside `ray_workers`: a training task per grid cell
    not yet in `out_dir`, then a drive per (cell, domain) as soon as its bundle exists. Finished
    bundles are written to `out_dir` as they arrive, so an interrupted run resumes from them; the
    models and their results are the serial run's, in the same order."""
    import ray

    from sim2real.gap import is_whole, run_name

    train = ray.remote(num_cpus=1)(_train_cell)
    drive = ray.remote(num_cpus=1)(_evaluate_cell)
    shipped = ship_files(base)
    cells = [(variant, seed) for variant in variants for seed in seeds]
    trainings: dict[Any, str] = {}
    files: dict[str, Any] = {}
    for variant, seed in cells:
        name = run_name(variant, seed)
        if is_whole(out_dir / name / "bundle"):
            files[name] = ray.put(read_tree(out_dir / name))
        else:
            log(f"training {variant} seed {seed}")
            files[name] = train.remote(name, variant, seed, base, shipped)
            trainings[files[name]] = name
    drives = {name: [drive.remote(files[name], "bundle", task, cfg) for task in drive_tasks(domains)] for name in files}

    def finished(ref: Any) -> None:
        if ref in trainings:
            write_tree(out_dir / trainings[ref], ray.get(ref))
            log(f"trained {trainings[ref]}")

    wait_all(list(trainings) + [r for refs in drives.values() for r in refs], "gap grid", show_progress, finished)
    return [{"name": run_name(v, s), "variant": v, "seed": s, "bundle": str(out_dir / run_name(v, s) / "bundle"),
             "results": _merged(drives[run_name(v, s)])} for v, s in cells]


def _merged(refs: list[Any]) -> dict[str, Any]:
    import ray

    return {name: result for ref in refs for name, result in ray.get(ref).items()}


def evaluate_on_workers(bundles: Sequence[Path], domains: Sequence[Any], cfg: Any, show_progress: bool = True
                        ) -> list[dict[str, dict[str, Any]]]:
    """`gap.evaluate` of each bundle (a directory or .tar.gz) on the domains, a Ray task per bundle and
    a few domains (`LAPS_PER_TASK`), inside `ray_workers`: per bundle, the serial result."""
    import ray

    drive = ray.remote(num_cpus=1)(_evaluate_cell)
    refs = []
    for path in map(Path, bundles):
        files = ray.put(read_tree(path) if path.is_dir() else {path.name: path.read_bytes()})
        where = "." if path.is_dir() else path.name
        refs.append([drive.remote(files, where, task, cfg) for task in drive_tasks(domains)])
    wait_all([r for per in refs for r in per], "gap drives", show_progress)
    return [_merged(per) for per in refs]


class CarWorker:
    """A Ray actor's state: its share of PPO's cars (`sim2real.ppo.LocalCars`), built from the config
    with its files shipped."""

    def __init__(self, cfg: Any, shipped: dict[str, tuple[str, bytes]], indices: list[int]) -> None:
        from sim2real.ppo import LocalCars

        self._files = tempfile.TemporaryDirectory(prefix="racer-cars-")
        self.cars = LocalCars(unpack_files(cfg, shipped, Path(self._files.name)), indices)

    def reset(self, starts: dict[int, tuple[int, float, int]]) -> dict[int, np.ndarray]:
        return self.cars.reset(starts)

    def step(self, actions: dict[int, Any]) -> dict[int, Any]:
        return self.cars.step(actions)


class WorkerCars:
    """PPO's cars on `workers` Ray actors (a `sim2real.ppo.Cars`); call inside `ray_workers`. Car i
    lives on actor i mod workers and is built and seeded as it would be here, so a run's result is
    the in-process one; the network stays in this process and acts for all cars in one batch."""

    def __init__(self, cfg: Any, workers: int) -> None:
        import ray

        self.count = cfg.cars
        self._ray = ray
        actor = ray.remote(num_cpus=1)(CarWorker)
        shipped = ship_files(cfg)
        workers = min(workers, cfg.cars)
        self.home = {car: car % workers for car in range(cfg.cars)}
        self.actors = [actor.remote(cfg, shipped, [c for c in range(cfg.cars) if c % workers == w])
                       for w in range(workers)]

    def _each(self, method: str, per_car: dict[int, Any]) -> dict[int, Any]:
        parts: dict[int, dict[int, Any]] = {}
        for car, value in per_car.items():
            parts.setdefault(self.home[car], {})[car] = value
        refs = [getattr(self.actors[w], method).remote(part) for w, part in parts.items()]
        merged: dict[int, Any] = {}
        for result in self._ray.get(refs):
            merged.update(result)
        return merged

    def reset(self, starts: dict[int, tuple[int, float, int]]) -> dict[int, np.ndarray]:
        return self._each("reset", starts)

    def step(self, actions: dict[int, Any]) -> dict[int, Any]:
        return self._each("step", actions)

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
