"""Imitation of the privileged pure-pursuit expert with DAgger: the fast default trainer.

DAgger rolls out a mix of expert and learner, labels every visited frame with what the expert
would do there, and retrains on everything seen so far, so the learner learns to recover from
its own mistakes. Frames are preprocessed with the bundle's own spec; rollouts decode the
learner's output exactly as the car does.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from car.policy.decode import ActionDecoder, speed_for_throttle
from car.policy.metadata import ModelMetadata, parse_metadata
from car.policy.preprocess import PreprocessSpec
from sim2real.episode import EpisodeWorld, make_simulator
from sim2real.network import DrivingNet, to_tensor
from sim2real.sim.expert import ExpertParams, PurePursuitExpert
from sim2real.sim.labels import LabelCamera
from sim2real.sim.world import Simulator
from sim2real.training_defaults import ACTION_SPACE, SPEC


@dataclass
class ImitationConfig:
    """DAgger settings. `randomization` (a preset name or YAML file) draws a new domain for every
    episode; `augmentation` (a preset name) augments the frames stored for training, while the
    learner drives on the clean frame; `camera_info` (a ROS camera_info YAML) sets the sim camera's
    lens, which randomization then leaves as measured. All three default to off, which is the plain simulator.
    `expert_lateral_accel_mps2` caps the expert's speed in corners (`ExpertParams.lateral_accel_mps2`,
    m/s^2, > 0; None: its default, 3.5); a lower cap is a more careful teacher.
    `max_speed_low` (None: every episode at `max_speed_setting`) draws each episode's max-speed setting
    uniformly from [max_speed_low, max_speed_setting], as an owner moves the console's slider: the
    learner drives as the car does at that episode's setting (its throttle scaled by it), the
    expert's throttle is capped at it, and the expert's labels stay those of `max_speed_setting`.
    A fixed setting below 1 caps the expert too, as the car would be.
    `road_width` (None: the tracks as they are) narrows or widens each episode's road about its centre
    line by a factor drawn from [low, high] (`sim2real.episode.EpisodeWorld`), and the start's offset
    from the centre line with it; the expert drives the centre line as before and the car leaves a
    narrower road sooner.
    `corner_weight` (>= 0; 0: every frame alike) weights each frame's loss by 1 + corner_weight x |the
    expert's steering| (action units, 0..1), as a weighted mean over the batch: frames in tight corners,
    where a late turn leaves the road, count up to 1 + corner_weight times as much as straights."""

    tracks: tuple[str, ...] = ("reinvent_base", "Spain_track", "Tokyo_Training_track")
    iterations: int = 6
    steps_per_iteration: int = 6000
    episode_steps: int = 600
    epochs: int = 4
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    max_speed_setting: float = 1.0
    start_offset_m: float = 0.2
    start_yaw_deg: float = 15.0
    flip: bool = True
    threads: int = 1
    randomization: str | None = None
    augmentation: str | None = None
    camera_info: str | None = None
    expert_lateral_accel_mps2: float | None = None
    max_speed_low: float | None = None
    road_width: tuple[float, float] | None = None
    corner_weight: float = 0.0

    def draw_max_speed(self, rng: np.random.Generator) -> float:
        """One episode's max-speed setting: `max_speed_setting`, or a uniform draw from the range
        (which consumes one draw of `rng` only for a range wider than one setting, so fixed-setting
        runs, `--max-speed-low` equal to `--max-speed` included, keep their episodes).
        ValueError for a lowest setting outside (0, max_speed_setting]."""
        if self.max_speed_low is None:
            return self.max_speed_setting
        if not 0.0 < self.max_speed_low <= self.max_speed_setting:
            raise ValueError(f"the lowest max-speed setting must be in (0, {self.max_speed_setting}], "
                             f"got {self.max_speed_low}")
        if self.max_speed_low == self.max_speed_setting:
            return self.max_speed_setting
        return float(rng.uniform(self.max_speed_low, self.max_speed_setting))

    def expert_params(self) -> ExpertParams:
        """The expert's settings for these rollouts. ValueError for a cap that is not above 0."""
        if self.expert_lateral_accel_mps2 is None:
            return ExpertParams()
        if not self.expert_lateral_accel_mps2 > 0.0:
            raise ValueError(f"the expert's lateral acceleration must be above 0 m/s^2, "
                             f"got {self.expert_lateral_accel_mps2}")
        return ExpertParams(lateral_accel_mps2=self.expert_lateral_accel_mps2)


@dataclass
class TrainingHistory:
    iterations: list[dict[str, float]] = field(default_factory=list)


class Dataset:
    """Growing store of preprocessed frames (float16) and expert targets in action units [-1, 1];
    with `encode`, frames are stored as what `encode` makes of them (a modular model's abstraction)."""

    def __init__(self, shape: tuple[int, ...], encode: Callable[[np.ndarray], np.ndarray] | None = None):
        self.shape = shape
        self.encode = encode
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []

    def extend(self, xs: np.ndarray, ys: np.ndarray) -> None:
        """Frames and targets stacked on the first axis, in order; an episode's arrays are float16 and
        float32 already, so its rows are kept as they are."""
        if self.encode is not None:
            xs = self.encode(xs)
        self._x.extend(xs.astype(np.float16, copy=False))
        self._y.extend(ys.astype(np.float32, copy=False))

    def __len__(self) -> int:
        return len(self._x)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.stack(self._x), np.stack(self._y)


def expert_targets(meta: ModelMetadata, steering: float, throttle: float, max_speed_setting: float) -> np.ndarray:
    """Expert's normalised command -> the action-space outputs that decode back to it on the car."""
    steer_deg = steering * meta.max_steering_deg
    speed = speed_for_throttle(max(throttle, 0.0), meta.max_speed, max_speed_setting)
    unit = [_to_unit(steer_deg, meta.steering.low, meta.steering.high),
            _to_unit(speed, meta.speed.low, meta.speed.high)]
    return np.clip(np.asarray(unit, dtype=np.float32), -1.0, 1.0)


def _to_unit(value: float, low: float, high: float) -> float:
    return 2.0 * (value - low) / (high - low) - 1.0


@dataclass
class Student:
    """What DAgger trains. `driver` maps the spec's input tensor to the action: it drives the rollouts
    and is what gets exported; `fit` updates `trained` on the stored frames as `encode` makes them
    (end-to-end: the driver itself on the frames; modular: the policy on the perception's output)."""

    driver: torch.nn.Module
    trained: torch.nn.Module
    encode: Callable[[np.ndarray], np.ndarray] | None = None


class Learner:
    def __init__(self, net: torch.nn.Module, spec: PreprocessSpec, meta: ModelMetadata):
        self.net, self.spec = net, spec
        self.decoder = ActionDecoder(meta)

    @torch.no_grad()
    def act(self, features: np.ndarray, max_speed_setting: float) -> tuple[float, float]:
        """(steering, throttle) normalised, decoded as the car does at that max-speed setting."""
        out = self.net(to_tensor(self.spec, features[None]))[0].numpy()
        d = self.decoder(out)
        return d.steering, d.throttle * max_speed_setting


@dataclass
class Episode:
    """One DAgger episode's stored frames (T, H, W, C) float16 and expert targets (T, 2) float32, and
    with a `LabelCamera` the newest frame's class map per step (T, h, w) uint8 (`sim.labels`)."""

    features: np.ndarray
    targets: np.ndarray
    off_track: bool
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.targets)


def episode_rng(seed: int, iteration: int, index: int) -> np.random.Generator:
    """The random stream of one episode: its track, domain, start, augmentation and the expert/learner
    choices all come from (seed, iteration, episode number), so an episode is the same on any worker."""
    return np.random.default_rng([seed, iteration, index])


class Rollouts:
    """One simulator per training track, with the expert on each, and the learner to mix in: runs DAgger
    episodes by number. Serial training drives one; `sim2real.distributed` gives each worker its own."""

    def __init__(self, cfg: ImitationConfig, spec: PreprocessSpec = SPEC, action_space: dict[str, Any] = ACTION_SPACE,
                 label_size: tuple[int, int, int] | None = None):
        """`label_size` (width, height, crop_top): also render each step's segmentation labels there."""
        self.cfg, self.spec = cfg, spec
        self.meta = parse_metadata(action_space)
        self.worlds = {name: EpisodeWorld(sim, spec, cfg.augmentation, cfg.road_width)
                       for name, sim in training_simulators(cfg).items()}
        self.experts = {name: PurePursuitExpert(w.sim.track, w.sim.vehicle.params, cfg.expert_params())
                        for name, w in self.worlds.items()}
        self.labels = {name: LabelCamera(w.sim.track, *label_size) for name, w in self.worlds.items()} \
            if label_size else None
        self.learner: Learner | None = None

    def set_learner(self, net: DrivingNet | None) -> None:
        """The policy that drives when the expert does not (None: the expert always drives)."""
        self.learner = None if net is None else Learner(net, self.spec, self.meta)

    def episode(self, iteration: int, index: int, beta: float, max_steps: int) -> Episode:
        """Episode `index` of `iteration`: at most `max_steps` steps (stopping early only shortens it:
        its first steps are the same for any `max_steps`), the expert driving with probability beta.
        The learner drives on the clean frames; the augmented ones are stored for training."""
        cfg = self.cfg
        rng = episode_rng(cfg.seed, iteration, index)
        track = cfg.tracks[int(rng.integers(len(cfg.tracks)))]  # a name or a .npy path, as given
        world, expert = self.worlds[track], self.experts[track]
        sim = world.sim
        world.begin(rng)
        expert.vehicle = sim.vehicle.params
        if self.labels is not None and self.labels[track].track is not sim.track:  # a new road width
            self.labels[track] = replace(self.labels[track], track=sim.track)
        # a start's offset from the centre line narrows and widens with the road, so it starts on it
        sim.reset(start_index=int(rng.integers(sim.track.waypoint_count)),
                  offset=float(rng.uniform(-cfg.start_offset_m, cfg.start_offset_m)) * world.road_factor,
                  yaw_offset=math.radians(float(rng.uniform(-cfg.start_yaw_deg, cfg.start_yaw_deg))))
        setting = cfg.draw_max_speed(rng)
        xs, ys, labels, off_track = [], [], [], False
        for _ in range(max_steps):
            features, stored = world.observe()
            st = sim.vehicle.state
            if self.labels is not None:
                labels.append(self.labels[track].render(sim.camera, sim.scene, st.x, st.y, st.yaw))
            steering, throttle = expert.act(st.x, st.y, st.yaw, st.speed, st.steering_rad)
            xs.append(stored.astype(np.float16))
            # Labelled at the top setting whatever this episode's: the car scales the policy's speed by
            # the setting it cannot see, so one state must get one label.
            ys.append(expert_targets(self.meta, steering, throttle, cfg.max_speed_setting))
            # the car cannot go faster than its setting, whoever drives
            throttle = min(throttle, setting)
            if self.learner is not None and rng.random() >= beta:
                steering, throttle = self.learner.act(features, setting)
            sim.apply(steering, throttle)
            if sim.step().off_track:
                off_track = True
                break
        return Episode(np.stack(xs), np.stack(ys), off_track, np.stack(labels) if labels else None)

    def episodes(self, iteration: int, beta: float, budget: int) -> Iterator[Episode]:
        """Episodes 0, 1, 2... of `iteration` in order, the last one cut at `budget` steps in all."""
        steps = index = 0
        while steps < budget:
            episode = self.episode(iteration, index, beta, min(self.cfg.episode_steps, budget - steps))
            steps += len(episode)
            index += 1
            yield episode


class EpisodeSource(Protocol):
    """Where DAgger's episodes come from: `Rollouts` here, or workers (`sim2real.distributed`)."""

    def set_learner(self, net: DrivingNet | None) -> None: ...

    def episodes(self, iteration: int, beta: float, budget: int) -> Iterator[Episode]: ...


def collect(cfg: ImitationConfig, source: EpisodeSource, iteration: int, beta: float, data: Dataset,
            progress: tqdm | None = None) -> dict[str, float]:
    """Add `cfg.steps_per_iteration` frames from the source's episodes, in episode order, to `data`;
    an episode counts as off track only if it left the track within the budget."""
    steps = offs = 0
    episodes = source.episodes(iteration, beta, cfg.steps_per_iteration)
    for episode in episodes:
        take = min(len(episode), cfg.steps_per_iteration - steps)
        data.extend(episode.features[:take], episode.targets[:take])
        steps += take
        offs += int(episode.off_track and take == len(episode))
        if progress is not None:
            progress.update(take)
        if steps >= cfg.steps_per_iteration:
            break
    episodes.close()
    return {"steps": steps, "off_track_episodes": offs}


def training_simulators(cfg: ImitationConfig) -> dict[str, Simulator]:
    """One simulator per training track: plain, or taking each episode's domain from `cfg.randomization`."""
    return {name: make_simulator(name, cfg.randomization, cfg.camera_info) for name in cfg.tracks}


# The loss's weights of steering and speed errors: steering counts twice.
ACTION_WEIGHTS = torch.tensor([2.0, 1.0])


def imitation_loss(predicted: torch.Tensor, target: torch.Tensor, corner_weight: float = 0.0) -> torch.Tensor:
    """The squared error of (steering, speed) pairs, both (N, 2) in action units, weighted by
    `ACTION_WEIGHTS`; each frame weighted 1 + corner_weight x |its target steering|, as a weighted mean
    (with corner_weight 0, the plain mean)."""
    per_frame = 1.0 + corner_weight * target[:, :1].abs()
    squared = (predicted - target) ** 2 * ACTION_WEIGHTS * per_frame
    return squared.sum() / (per_frame.sum() * target.shape[1])


def fit(net: DrivingNet, spec: PreprocessSpec, data: Dataset, cfg: ImitationConfig, rng: np.random.Generator) -> float:
    """A few epochs over all data so far; horizontal flips (steering negated) double the data; the loss is
    `imitation_loss` with `cfg.corner_weight`."""
    x, y = data.arrays()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    net.train()
    loss_sum = batches = 0.0
    for _ in range(cfg.epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb, yb = to_tensor(spec, x[idx]), torch.from_numpy(y[idx])
            if cfg.flip:
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
                xb[flip] = torch.flip(xb[flip], dims=[3])
                yb = yb.clone()
                yb[flip, 0] = -yb[flip, 0]
            loss = imitation_loss(net(xb), yb, cfg.corner_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach())
            batches += 1
    net.eval()
    return loss_sum / max(batches, 1)


def train_imitation(cfg: ImitationConfig, spec: PreprocessSpec = SPEC, action_space: dict[str, Any] = ACTION_SPACE,
                    show_progress: bool = True,
                    on_iteration: Callable[[int, DrivingNet, dict[str, float]], None] | None = None,
                    source: EpisodeSource | None = None, student: Student | None = None
                    ) -> tuple[DrivingNet, ModelMetadata, TrainingHistory, Dataset]:
    """DAgger: `cfg.iterations` rounds of collecting episodes from `source` (default: `Rollouts`
    here, in this process) and fitting on all frames so far. The result depends on `cfg` alone,
    not on where the episodes ran. `student` (default: a new DrivingNet, end to end) is what learns;
    its driver is returned."""
    source = source or Rollouts(cfg, spec, action_space)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    meta = parse_metadata(action_space)
    if student is None:
        driver = DrivingNet(spec, meta.output_size())
        student = Student(driver, driver)
    net = student.driver
    net.eval()
    data = Dataset(spec.input_shape(), student.encode)
    history = TrainingHistory()
    total = cfg.iterations * cfg.steps_per_iteration
    with tqdm(total=total, desc="DAgger", unit="step", disable=not show_progress) as bar:
        for it in range(cfg.iterations):
            beta = 1.0 if it == 0 else 0.5 ** it
            source.set_learner(None if it == 0 else net)
            stats = collect(cfg, source, it, beta, data, bar)
            stats["loss"] = fit(student.trained, spec, data, cfg, rng)
            stats.update(iteration=it, beta=beta, samples=len(data))
            history.iterations.append(stats)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", samples=len(data))
            if on_iteration is not None:
                on_iteration(it, net, stats)
    return net, meta, history, data


def sample_frames(spec: PreprocessSpec, tracks: tuple[str, ...], count: int, seed: int,
                  randomization: str | None = None, augmentation: str | None = None,
                  camera_info: str | None = None) -> np.ndarray:
    """Preprocessed frames from expert drives, for the export gate and the image statistics; pass
    the training run's randomization and augmentation so the statistics describe what it saw."""
    cfg = ImitationConfig(tracks=tracks, steps_per_iteration=count, seed=seed, randomization=randomization,
                          augmentation=augmentation, camera_info=camera_info)
    data = Dataset(spec.input_shape())
    collect(cfg, Rollouts(cfg, spec), 0, 1.0, data)
    return data.arrays()[0].astype(np.float32)
