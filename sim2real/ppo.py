"""PPO the way the AWS DeepRacer console trains: a user's reward function, the console's action
space, network and hyperparameters, iterations of whole episodes, evaluation laps between them.

An iteration drives `num_episodes_between_training` episodes (the console's "experience episodes
between policy updates") with the current policy, from round-robin starts 5% of the lap apart as
the AWS trainer places them, on `cars` simulated cars stepped together so one network call serves
them all; then `num_epochs` passes over those steps in minibatches of `batch_size` (clipped PPO,
clip 0.2, GAE lambda 0.95 as the AWS trainer's coach preset; advantages normalised per iteration);
then `eval_episodes` greedy episodes (DRfC's MIN_EVAL_TRIALS) measure the policy, and the best by
evaluation progress (then reward) is kept. How the console's hyperparameters map onto PPO:

| console | here |
|---|---|
| batch_size | minibatch size of each gradient step |
| num_epochs | passes over the iteration's steps |
| lr | Adam's learning rate |
| beta_entropy | the entropy bonus' weight in the loss |
| discount_factor | gamma of the returns and of GAE |
| loss_type | the value head's loss: Huber (delta 1) or squared error, weight 0.5 |
| num_episodes_between_training | whole episodes per iteration (no fixed step count) |

The value head shares the policy's trunk (`sim2real.network.ConsoleNet`). Every random draw comes
from `seed`, episode numbers and the cars' fixed order, so a run repeats exactly, on Ray workers
too (`sim2real.distributed.WorkerCars`).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from car.policy.metadata import ModelMetadata
from sim2real.console_car import MAX_STEPS, ConsoleCar, TraceRow
from sim2real.custom_files import DEFAULT_METADATA, Hyperparameters, check_metadata
from sim2real.network import CONSOLE_SPEC, ConsoleNet
from sim2real.reward import RewardCaller
from sim2real.runlog import RunLog, metric

ROUND_ROBIN_ADVANCE = 0.05
CLIP = 0.2
GAE_LAMBDA = 0.95
VALUE_WEIGHT = 0.5
MAX_GRAD_NORM = 0.5
# The update's forward and backward passes: float32, or bfloat16 autocast (mixed precision: float32
# weights, Adam and losses; the convolutions and dense layers in bfloat16, 1.5-2x faster on CPUs with
# AVX512-BF16 or AMX, docs/training.md "Speed").
PRECISIONS = ("fp32", "bf16")
EXAMPLE_REWARDS = Path(__file__).with_name("rewards")
DEFAULT_REWARD = EXAMPLE_REWARDS / "centre_line.py"


@dataclass
class PPOConfig:
    """One console training run. `reward_file` defaults to the console's first example (follow the
    centre line); `metadata` and `hyperparameters` are the JSON of model_metadata.json and
    hyperparameters.json (checked with `sim2real.custom_files`). Training stops after `minutes` of
    wall time (the console's stop condition), after `timesteps` training steps, or at the
    hyperparameters' term_cond_*, whichever comes first; with none of them it runs 20 minutes.
    `precision` is the update's arithmetic (`PRECISIONS`): the weights, the optimizer and the
    acting network are float32 either way."""

    reward_file: str = str(DEFAULT_REWARD)
    metadata: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_METADATA))
    hyperparameters: dict[str, Any] = field(default_factory=lambda: Hyperparameters().to_json())
    tracks: tuple[str, ...] = ("reinvent_base",)
    minutes: float | None = None
    timesteps: int | None = None
    seed: int = 0
    cars: int = 4
    eval_episodes: int = 5
    max_steps: int = MAX_STEPS
    randomization: str | None = None
    augmentation: str | None = None
    camera_info: str | None = None
    threads: int = 1
    clone: str | None = None
    precision: str = "fp32"

    @property
    def hyper(self) -> Hyperparameters:
        return Hyperparameters(**self.hyperparameters)

    @property
    def meta(self) -> ModelMetadata:
        return check_metadata(self.metadata)


def make_cars(cfg: PPOConfig, indices: Sequence[int]) -> list[ConsoleCar]:
    """Cars number `indices` (car i drives track i mod len(tracks)), each with its own loaded reward module."""
    meta = cfg.meta
    return [ConsoleCar(cfg.tracks[i % len(cfg.tracks)], meta, RewardCaller(cfg.reward_file), CONSOLE_SPEC,
                       cfg.randomization, cfg.augmentation, cfg.camera_info, cfg.max_steps) for i in indices]


class Cars(Protocol):
    """Where episodes run: `LocalCars` here, or `sim2real.distributed.WorkerCars` on Ray workers."""

    count: int

    def reset(self, starts: dict[int, tuple[int, float, int]]) -> dict[int, np.ndarray]: ...

    def step(self, actions: dict[int, Any]) -> dict[int, tuple[np.ndarray, float, bool, TraceRow]]: ...

    def close(self) -> None: ...


class LocalCars:
    """`cfg.cars` cars in this process. `reset({car: (episode, start_fraction, seed)})` starts episodes
    (their domain and augmentation drawn from (seed, episode)); `step({car: action})` steps those cars."""

    def __init__(self, cfg: PPOConfig, indices: Sequence[int] | None = None) -> None:
        indices = list(range(cfg.cars)) if indices is None else list(indices)
        self.cars = dict(zip(indices, make_cars(cfg, indices), strict=True))
        self.count = len(self.cars)

    def reset(self, starts: dict[int, tuple[int, float, int]]) -> dict[int, np.ndarray]:
        return {i: self.cars[i].reset(episode, start, np.random.default_rng([seed, episode]))
                for i, (episode, start, seed) in starts.items()}

    def step(self, actions: dict[int, Any]) -> dict[int, tuple[np.ndarray, float, bool, TraceRow]]:
        return {i: self.cars[i].step(a) for i, a in actions.items()}

    def close(self) -> None:
        self.cars.clear()


@dataclass
class Trajectory:
    """One episode's steps: observations (T, H, W, 1) uint8 grey, actions, log-probabilities and
    values at collection, rewards, the rows; `truncated` when it was cut (a stop or the step cap)
    rather than ended (off track or lap complete), with `last_obs` to bootstrap its value from."""

    episode: int
    obs: list[np.ndarray] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    rows: list[TraceRow] = field(default_factory=list)
    truncated: bool = False
    last_obs: np.ndarray | None = None
    started_ms: int = 0

    @property
    def total_reward(self) -> float:
        return float(sum(self.rewards))

    @property
    def progress(self) -> float:
        return self.rows[-1].progress if self.rows else 0.0

    @property
    def status(self) -> str:
        return self.rows[-1].status if self.rows else "prepare"

    @property
    def duration_s(self) -> float:
        return self.rows[-1].time if self.rows else 0.0


class Policy:
    """The network acting for a batch of cars: sampled actions while training, the argmax or the
    mean when greedy (what the car does). Draws come from `generator` in car order."""

    def __init__(self, net: ConsoleNet, generator: torch.Generator) -> None:
        self.net, self.generator = net, generator

    @torch.no_grad()
    def act(self, obs: np.ndarray, greedy: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, H, W, 1) observations -> (actions, log-probabilities, values)."""
        out, values = self.net.evaluate(torch.from_numpy(obs.astype(np.float32)))
        if self.net.discrete:
            logp_all = torch.log_softmax(out, dim=1)
            if greedy:
                actions = out.argmax(1)
            else:
                actions = torch.multinomial(logp_all.exp(), 1, generator=self.generator)[:, 0]
            logp = logp_all.gather(1, actions[:, None])[:, 0]
            return actions.numpy(), logp.numpy(), values.numpy()
        assert self.net.log_std is not None  # a continuous action space's network has one
        std = self.net.log_std.exp()
        noise = torch.randn(out.shape, generator=self.generator)
        actions = out if greedy else out + noise * std
        logp = torch.distributions.Normal(out, std).log_prob(actions).sum(1)
        return actions.numpy(), logp.numpy(), values.numpy()


class StopRun(Exception):
    """The wall-clock budget ran out in the middle of an iteration."""


def drive(cars: Cars, policy: Policy, episodes: list[tuple[int, float]], seed: int, greedy: bool,
          keep_obs: bool, step_budget: int | None = None, deadline: float | None = None) -> list[Trajectory]:
    """Run `episodes` [(number, start fraction)] on the cars, each car taking the next episode when
    its last one ends, all cars acting in one batch per step. With `step_budget` the run is cut after
    exactly that many steps in all, the last batch taking only the cars the budget has room for (the
    running episodes marked truncated); past `deadline` (monotonic
    seconds) raises StopRun. Returns the trajectories in episode order."""
    queue = list(episodes)
    running: dict[int, Trajectory] = {}
    obs: dict[int, np.ndarray] = {}
    done: list[Trajectory] = []

    def start(car_ids: list[int]) -> None:
        starts = {}
        for car in car_ids:
            if queue:
                number, fraction = queue.pop(0)
                running[car] = Trajectory(number, started_ms=int(time.time() * 1000))
                starts[car] = (number, fraction, seed)
        obs.update(cars.reset(starts))

    start(list(range(min(cars.count, len(queue)))))
    steps = 0
    while running:
        if deadline is not None and time.monotonic() > deadline:
            raise StopRun()
        order = sorted(running)
        if step_budget is not None:
            order = order[:step_budget - steps]  # the budget's last step may take fewer cars than run
        batch = np.stack([obs[car] for car in order])
        actions, logps, values = policy.act(batch, greedy)
        results = cars.step({car: actions[k] for k, car in enumerate(order)})
        ended = []
        for k, car in enumerate(order):
            trajectory = running[car]
            new_obs, reward, finished, row = results[car]
            if keep_obs:
                trajectory.obs.append(batch[k].astype(np.uint8))
            trajectory.actions.append(actions[k])
            trajectory.logps.append(float(logps[k]))
            trajectory.values.append(float(values[k]))
            trajectory.rewards.append(reward)
            trajectory.rows.append(row)
            obs[car] = new_obs
            if finished:
                trajectory.truncated = row.status == "time_up"
                trajectory.last_obs = new_obs
                done.append(running.pop(car))
                ended.append(car)
        steps += len(order)
        if step_budget is not None and steps >= step_budget:
            for car in list(running):
                trajectory = running.pop(car)
                trajectory.truncated, trajectory.last_obs = True, obs[car]
                done.append(trajectory)
            break
        start(ended)
    return sorted(done, key=lambda t: t.episode)


def advantages(trajectories: list[Trajectory], net: ConsoleNet, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE(lambda) advantages and value targets, concatenated in trajectory order; a truncated
    episode bootstraps from the value of the observation it was cut at."""
    advs, targets = [], []
    for t in trajectories:
        values = np.asarray(t.values, dtype=np.float64)
        rewards = np.asarray(t.rewards, dtype=np.float64)
        following = 0.0
        if t.truncated and t.last_obs is not None:
            with torch.no_grad():
                following = float(net.evaluate(torch.from_numpy(t.last_obs[None].astype(np.float32)))[1][0])
        adv = np.zeros_like(rewards)
        running = 0.0
        for i in range(len(rewards) - 1, -1, -1):
            next_value = values[i + 1] if i + 1 < len(values) else following
            delta = rewards[i] + gamma * next_value - values[i]
            running = delta + gamma * GAE_LAMBDA * running
            adv[i] = running
        advs.append(adv)
        targets.append(adv + values)
    return np.concatenate(advs), np.concatenate(targets)


def update(net: ConsoleNet, optimizer: torch.optim.Optimizer, trajectories: list[Trajectory], hyper: Hyperparameters,
           generator: torch.Generator, deadline: float | None = None, precision: str = "fp32") -> dict[str, float]:
    """`num_epochs` passes of clipped PPO over the trajectories' steps in minibatches of `batch_size`,
    the network's passes in `precision` (`PRECISIONS`); past `deadline` (monotonic seconds) raises
    StopRun between minibatches."""
    adv, target = advantages(trajectories, net, hyper.discount_factor)
    obs = torch.from_numpy(np.concatenate([np.stack(t.obs) for t in trajectories]))
    actions = np.concatenate([np.asarray(t.actions) for t in trajectories])
    actions_t = torch.from_numpy(actions.astype(np.int64 if net.discrete else np.float32))
    old_logp = torch.from_numpy(np.concatenate([t.logps for t in trajectories]).astype(np.float32))
    adv_t = torch.from_numpy(((adv - adv.mean()) / (adv.std() + 1e-8)).astype(np.float32))
    target_t = torch.from_numpy(target.astype(np.float32))
    value_loss = F.huber_loss if hyper.loss_type == "huber" else F.mse_loss
    net.train()
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0}
    batches = 0
    for _ in range(hyper.num_epochs):
        order = torch.randperm(len(obs), generator=generator)
        for i in range(0, len(order), hyper.batch_size):
            if deadline is not None and time.monotonic() > deadline:
                raise StopRun()
            idx = order[i:i + hyper.batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out, values = net.evaluate(obs[idx].float())
            out, values = out.float(), values.float()
            if net.discrete:
                logp_all = torch.log_softmax(out, dim=1)
                logp = logp_all.gather(1, actions_t[idx][:, None])[:, 0]
                entropy = -(logp_all.exp() * logp_all).sum(1).mean()
            else:
                assert net.log_std is not None  # a continuous action space's network has one
                dist = torch.distributions.Normal(out, net.log_std.exp())
                logp = dist.log_prob(actions_t[idx]).sum(1)
                entropy = dist.entropy().sum(1).mean()
            ratio = torch.exp(logp - old_logp[idx])
            a = adv_t[idx]
            policy_loss = -torch.min(ratio * a, torch.clamp(ratio, 1 - CLIP, 1 + CLIP) * a).mean()
            v_loss = value_loss(values, target_t[idx])
            loss = policy_loss + VALUE_WEIGHT * v_loss - hyper.beta_entropy * entropy
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            totals["policy_loss"] += policy_loss.item()
            totals["value_loss"] += v_loss.item()
            totals["entropy"] += entropy.item()
            batches += 1
    net.eval()
    return {k: v / max(batches, 1) for k, v in totals.items()}


def probe_reward(cfg: PPOConfig) -> None:
    """One step of the first car with its own load of the reward module, so a reward file that
    raises or returns no number is refused (RewardFunctionError) before a run writes anything; the
    training cars load the module afresh, so a stateful function starts clean."""
    car = make_cars(cfg, [0])[0]
    car.reset(0, 0.0, np.random.default_rng([cfg.seed, 0]))
    car.step(0 if car.meta.discrete else np.zeros(2))


def new_network(cfg: PPOConfig) -> ConsoleNet:
    meta = cfg.meta
    torch.manual_seed(cfg.seed)
    net = ConsoleNet(meta.neural_network, meta.output_size(), meta.discrete)
    if cfg.clone:
        from sim2real.clone import load_clone

        load_clone(net, cfg.clone, meta)
    net.eval()
    return net


@dataclass
class PPOResult:
    """The best network by evaluation (what is exported), the last one, and one history row per
    iteration (see `train_ppo`)."""

    best: ConsoleNet
    last: ConsoleNet
    history: list[dict[str, Any]]
    stopped_by: str


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def train_ppo(cfg: PPOConfig, run: RunLog | None = None, show_progress: bool = True, cars: Cars | None = None,
              on_iteration: Callable[[dict[str, Any], PPOResult], None] | None = None) -> PPOResult:
    """Train until a stop condition; after each iteration `run` gets the iteration's simtrace and
    metrics and `on_iteration(row, result so far)` is called (the CLI saves and plots there).
    History rows: iteration, timesteps (cumulative), episodes, mean_reward, mean_progress, laps (training
    episodes completing their lap), eval_mean_reward, eval_mean_progress, eval_laps, the update's mean
    policy_loss, value_loss and entropy, best, seconds (since the start), and the iteration's wall
    time in collect_s (driving), update_s (the PPO epochs) and eval_s (the evaluation episodes).
    RewardFunctionError when the reward function fails."""
    torch.set_num_threads(cfg.threads)
    hyper = cfg.hyper
    net = new_network(cfg)
    optimizer = torch.optim.Adam(net.parameters(), lr=hyper.lr, fused=True)  # 6x faster on CPU than the default loop
    generator = torch.Generator().manual_seed(cfg.seed)
    policy = Policy(net, generator)
    cars = cars or LocalCars(cfg)
    budget_s = cfg.minutes * 60.0 if cfg.minutes is not None else (None if cfg.timesteps else 20 * 60.0)
    began = time.monotonic()
    deadline = began + budget_s if budget_s is not None else None
    result = PPOResult(copy.deepcopy(net), net, [], "")
    best_key: tuple[float, float] | None = None
    episode = steps = 0
    bar = tqdm(total=cfg.timesteps, desc="PPO", unit="step", disable=not show_progress, dynamic_ncols=True)
    try:
        while True:
            if cfg.timesteps is not None and steps >= cfg.timesteps:
                result.stopped_by = "timesteps"
                break
            if hyper.term_cond_max_episodes is not None and episode >= hyper.term_cond_max_episodes:
                result.stopped_by = "term_cond_max_episodes"
                break
            count = hyper.num_episodes_between_training
            if hyper.term_cond_max_episodes is not None:
                count = min(count, hyper.term_cond_max_episodes - episode)
            plan = [(episode + k, ((episode + k) * ROUND_ROBIN_ADVANCE) % 1.0) for k in range(count)]
            budget = cfg.timesteps - steps if cfg.timesteps is not None else None
            clock = [time.monotonic()]
            try:
                trajectories = drive(cars, policy, plan, cfg.seed, greedy=False, keep_obs=True,
                                     step_budget=budget, deadline=deadline)
                taken = sum(len(t.rows) for t in trajectories)
                bar.update(taken)
                clock.append(time.monotonic())
                losses = update(net, optimizer, trajectories, hyper, generator, deadline, cfg.precision)
                clock.append(time.monotonic())
            except StopRun:  # the time is up: the run is the iterations completed before it
                result.stopped_by = "minutes"
                break
            iteration = len(result.history)
            episode += len(trajectories)
            steps += taken
            evaluation = drive(cars, policy, [(k, k / cfg.eval_episodes) for k in range(cfg.eval_episodes)],
                               cfg.seed + 1, greedy=True, keep_obs=False) if cfg.eval_episodes else []
            clock.append(time.monotonic())
            row = {"iteration": iteration, "timesteps": steps, "episodes": len(trajectories),
                   "mean_reward": _mean([t.total_reward for t in trajectories]),
                   "mean_progress": _mean([t.progress for t in trajectories]),
                   "laps": sum(t.status == "lap_complete" for t in trajectories),
                   "eval_mean_reward": _mean([t.total_reward for t in evaluation]),
                   "eval_mean_progress": _mean([t.progress for t in evaluation]),
                   "eval_laps": sum(t.status == "lap_complete" for t in evaluation),
                   **losses, "seconds": round(time.monotonic() - began, 1),
                   **{f"{part}_s": round(b - a, 2)
                      for part, (a, b) in zip(("collect", "update", "eval"), pairwise(clock), strict=True)}}
            judged = "eval_" if evaluation else ""  # without evaluation episodes, the training ones
            key = (row[f"{judged}mean_progress"] or 0.0, row[f"{judged}mean_reward"] or 0.0)
            row["best"] = best_key is None or key > best_key
            if row["best"]:
                best_key = key
                result.best = copy.deepcopy(net)
            result.history.append(row)
            if run is not None:
                run.iteration(iteration, [r for t in trajectories for r in t.rows],
                              [metric(t.episode, "training", t.total_reward, t.progress, t.status, t.started_ms,
                                      t.duration_s, 0) for t in trajectories]
                              + [metric(t.episode, "evaluation", t.total_reward, t.progress, t.status, t.started_ms,
                                        t.duration_s, t.episode + 1) for t in evaluation])
            bar.set_postfix_str(f"iteration {iteration}: reward {row['mean_reward']:.1f}, "
                                f"progress {row['mean_progress']:.0f}%, eval {row['eval_mean_progress'] or 0:.0f}% "
                                f"({row['eval_laps']}/{len(evaluation)} laps)")
            if on_iteration is not None:
                on_iteration(row, result)
            if hyper.term_cond_avg_score is not None and (row["mean_reward"] or 0.0) >= hyper.term_cond_avg_score:
                result.stopped_by = "term_cond_avg_score"
                break
    finally:
        bar.close()
        cars.close()
    return result
