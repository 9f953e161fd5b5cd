"""Imitation of the privileged pure-pursuit expert with DAgger: the fast default trainer.

DAgger rolls out a mix of expert and learner, labels every visited frame with what the expert
would do there, and retrains on everything seen so far, so the learner learns to recover from
its own mistakes. Frames are preprocessed with the bundle's own spec; rollouts decode the
learner's output exactly as the car does.
"""
from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from car.decode import ActionDecoder, speed_for_throttle
from car.metadata import ModelMetadata, parse_metadata
from car.preprocess import PreprocessSpec, frame_features
from sim2real.augment import Augmenter
from sim2real.camera_matching import camera_from_info
from sim2real.network import DrivingNet
from sim2real.randomize import DomainSimulator, Randomization
from sim2real.sim.expert import PurePursuitExpert
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator

# The bundled model's action space: continuous, DeepRacer units (degrees, m/s). Speeds reach the
# AWS console's 4 m/s so that at max-speed 1.0 the slowest action (0.5 m/s: throttle 0.26 through
# the navigation node's parabola) is 1.07 m/s of car speed, below the expert's corner speeds; with
# 2 m/s it was 1.98 m/s and every speed label clipped to it.
ACTION_SPACE = {
    "action_space": {"steering_angle": {"low": -30.0, "high": 30.0}, "speed": {"low": 0.5, "high": 4.0}},
    "action_space_type": "continuous",
    "training_algorithm": "clipped_ppo",
    "sensor": ["FRONT_FACING_CAMERA"],
    "neural_network": "RACER_SMALL_CNN",
    "version": "5",
}
SPEC = PreprocessSpec(width=80, height=60, crop_top=12, grey_weights=(0.114, 0.587, 0.299), scale=1 / 255.0,
                      offset=0.0, frame_stack=2, layout="NCHW", interpolation="area", input_name="image")


@dataclass
class ImitationConfig:
    """DAgger settings. `randomization` (a preset name or YAML file) draws a new domain for every
    episode; `augmentation` (a preset name) augments the frames stored for training, while the
    learner drives on the clean frame; `camera_info` (a ROS camera_info YAML) sets the sim camera's
    lens, which randomization then leaves as measured. All three default to off, which is the plain simulator."""

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


@dataclass
class TrainingHistory:
    iterations: list[dict[str, float]] = field(default_factory=list)


class Dataset:
    """Growing store of preprocessed frames (float16) and expert targets in action units [-1, 1]."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self._x.append(x.astype(np.float16))
        self._y.append(y.astype(np.float32))

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


def to_tensor(spec: PreprocessSpec, x: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) preprocessed frames -> the network's NCHW batch."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))


class Learner:
    def __init__(self, net: DrivingNet, spec: PreprocessSpec, meta: ModelMetadata, max_speed_setting: float):
        self.net, self.spec = net, spec
        self.decoder = ActionDecoder(meta)
        self.max_speed_setting = max_speed_setting

    @torch.no_grad()
    def act(self, features: np.ndarray) -> tuple[float, float]:
        out = self.net(to_tensor(self.spec, features[None]))[0].numpy()
        d = self.decoder(out)
        return d.steering, d.throttle * self.max_speed_setting


def collect(cfg: ImitationConfig, spec: PreprocessSpec, meta: ModelMetadata, learner: Learner | None, beta: float,
            rng: np.random.Generator, data: Dataset, progress: tqdm | None = None) -> dict[str, float]:
    """Roll out (expert with probability beta, else learner) and label every frame with the expert."""
    steps = offs = 0
    sims = training_simulators(cfg, rng)
    experts = {name: PurePursuitExpert(sim.track, sim.vehicle.params) for name, sim in sims.items()}
    augment = Augmenter(cfg.augmentation, int(rng.integers(2**31))) if cfg.augmentation else None
    while steps < cfg.steps_per_iteration:
        sim = sims[cfg.tracks[int(rng.integers(len(cfg.tracks)))]]
        expert = experts[sim.track.name]
        if cfg.randomization:
            sim.randomize()
            expert.vehicle = sim.vehicle.params
        sim.reset(start_index=int(rng.integers(sim.track.waypoint_count)),
                  offset=float(rng.uniform(-cfg.start_offset_m, cfg.start_offset_m)),
                  yaw_offset=math.radians(float(rng.uniform(-cfg.start_yaw_deg, cfg.start_yaw_deg))))
        frames: deque[np.ndarray] = deque(maxlen=spec.frame_stack)
        for _ in range(min(cfg.episode_steps, cfg.steps_per_iteration - steps)):
            frame = sim.render()
            if not frames:
                frames.extend([frame] * (spec.frame_stack - 1))
            frames.append(frame)
            features = stacked_features(spec, list(frames))
            st = sim.vehicle.state
            steering, throttle = expert.act(st.x, st.y, st.yaw, st.speed, st.steering_rad)
            stored = features if augment is None else stacked_features(spec, augment_together(augment, list(frames)))
            data.add(stored, expert_targets(meta, steering, throttle, cfg.max_speed_setting))
            if learner is not None and rng.random() >= beta:
                steering, throttle = learner.act(features)
            sim.apply(steering, throttle)
            info = sim.step()
            steps += 1
            if progress is not None:
                progress.update(1)
            if info.off_track:
                offs += 1
                break
    return {"steps": steps, "off_track_episodes": offs}


def stacked_features(spec: PreprocessSpec, frames: list[np.ndarray]) -> np.ndarray:
    """The last `spec.frame_stack` BGR frames (oldest first) -> (H, W, C) features, stacked on the
    channel axis as the car's `Preprocessor` stacks them."""
    return np.concatenate([frame_features(spec, f) for f in frames[-spec.frame_stack:]], axis=2)


def augment_together(augment: Augmenter, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames of one stack augmented as one picture, so they change alike and the motion
    between them survives."""
    return np.split(augment(np.concatenate(frames, axis=0)), len(frames), axis=0)


def training_simulators(cfg: ImitationConfig, rng: np.random.Generator) -> dict[str, Simulator]:
    """One simulator per training track: plain, or drawing domains from `cfg.randomization` (seeded
    from `rng` only then, so the plain run's random stream is unchanged)."""
    camera = camera_from_info(cfg.camera_info) if cfg.camera_info else None
    if not cfg.randomization:
        return {name: Simulator(Track.load(name), camera=camera) for name in cfg.tracks}
    randomization = Randomization.load(cfg.randomization)
    if camera is not None:
        randomization = randomization.for_calibrated_lens()
    return {name: DomainSimulator(Track.load(name), randomization, int(rng.integers(2**31)), camera=camera)
            for name in cfg.tracks}


def fit(net: DrivingNet, spec: PreprocessSpec, data: Dataset, cfg: ImitationConfig, rng: np.random.Generator) -> float:
    """A few epochs over all data so far; horizontal flips (steering negated) double the data."""
    x, y = data.arrays()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    weights = torch.tensor([2.0, 1.0])
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
            loss = ((net(xb) - yb) ** 2 * weights).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach())
            batches += 1
    net.eval()
    return loss_sum / max(batches, 1)


def train_imitation(cfg: ImitationConfig, spec: PreprocessSpec = SPEC, action_space: dict[str, Any] = ACTION_SPACE,
                    show_progress: bool = True,
                    on_iteration: Callable[[int, DrivingNet, dict[str, float]], None] | None = None
                    ) -> tuple[DrivingNet, ModelMetadata, TrainingHistory, Dataset]:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    meta = parse_metadata(action_space)
    net = DrivingNet(spec, meta.output_size())
    net.eval()
    data = Dataset(spec.input_shape())
    history = TrainingHistory()
    total = cfg.iterations * cfg.steps_per_iteration
    with tqdm(total=total, desc="DAgger", unit="step", disable=not show_progress) as bar:
        for it in range(cfg.iterations):
            beta = 1.0 if it == 0 else 0.5 ** it
            learner = None if it == 0 else Learner(net, spec, meta, cfg.max_speed_setting)
            stats = collect(cfg, spec, meta, learner, beta, rng, data, bar)
            stats["loss"] = fit(net, spec, data, cfg, rng)
            stats.update(iteration=it, beta=beta, samples=len(data))
            history.iterations.append(stats)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", samples=len(data))
            if on_iteration is not None:
                on_iteration(it, net, stats)
    return net, meta, history, data


def config_json(cfg: Any) -> dict[str, Any]:
    """A trainer's config dataclass as JSON-ready values."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def save_checkpoint(path: Path, net: DrivingNet, spec: PreprocessSpec, action_space: dict[str, Any],
                    cfg: Any, history: list[dict[str, Any]], trainer: str = "dagger") -> Path:
    """`cfg` is the trainer's config (ImitationConfig or PPOConfig); export reads its tracks, seed,
    randomization and augmentation."""
    torch.save({"state_dict": net.state_dict(), "spec": spec.to_json(), "action_space": action_space,
                "config": config_json(cfg), "history": history, "trainer": trainer}, path)
    return path


def load_checkpoint(path: Path) -> tuple[DrivingNet, PreprocessSpec, dict[str, Any], dict[str, Any]]:
    """(net, spec, action_space, everything else) from a `racer train` checkpoint."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    spec = PreprocessSpec.from_json(data["spec"])
    meta = parse_metadata(data["action_space"])
    net = DrivingNet(spec, meta.output_size())
    net.load_state_dict(data["state_dict"])
    net.eval()
    return net, spec, data["action_space"], data


def sample_frames(spec: PreprocessSpec, tracks: tuple[str, ...], count: int, seed: int,
                  randomization: str | None = None, augmentation: str | None = None,
                  camera_info: str | None = None) -> np.ndarray:
    """Preprocessed frames from expert drives, for the export gate and the image statistics; pass
    the training run's randomization and augmentation so the statistics describe what it saw."""
    cfg = ImitationConfig(tracks=tracks, steps_per_iteration=count, seed=seed, randomization=randomization,
                          augmentation=augmentation, camera_info=camera_info)
    data = Dataset(spec.input_shape())
    collect(cfg, spec, parse_metadata(ACTION_SPACE), None, 1.0, np.random.default_rng(seed), data)
    return data.arrays()[0].astype(np.float32)
