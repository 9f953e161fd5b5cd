"""The modular model: perception -> abstraction -> driving policy, in one graph (Müller et al. 2018,
"Driving Policy Transfer via Modularity and Abstraction"; docs/training.md).

Perception maps each camera frame (the car's preprocessed input, one frame of the stack) to a
segmentation at half its resolution: background, road, painted line (`sim.labels`, which the
simulator renders from the same pose through the episode's own camera). It is trained first, on
expert drives through the one episode pipeline (domain, render, augmentation, preprocessing) under
the run's randomization and augmentation. The driving policy sees only the class probabilities of
the stacked frames and is trained by DAgger (`sim2real.imitation`) on the frozen perception's own
output, never on the labels. Exported, the graph has the car's one input and two outputs: the
action, and `uncertainty` (the newest frame's mean per-pixel entropy, 0 sure .. 1 uniform), which
the car reports as its failure warning (`car.policy.inference`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from car.policy.metadata import parse_metadata
from car.policy.preprocess import PreprocessSpec
from sim2real.imitation import ImitationConfig, Rollouts, Student, TrainingHistory, train_imitation
from sim2real.sim.labels import CLASSES
from sim2real.training_defaults import ACTION_SPACE, SPEC

LABEL_FACTOR = 2
# iteration number of the perception's expert drives in `episode_rng` (DAgger's are 0, 1, 2...)
PERCEPTION_ITERATION = 1_000_000


def label_size(spec: PreprocessSpec) -> tuple[int, int, int]:
    """(width, height, crop_top) of the segmentation for frames preprocessed by `spec`: half size."""
    if spec.width % LABEL_FACTOR or spec.height % LABEL_FACTOR or spec.crop_top % LABEL_FACTOR or spec.crop_bottom:
        raise ValueError("modular: the preprocessing's size and top crop must be even, with no bottom crop")
    return spec.width // LABEL_FACTOR, spec.height // LABEL_FACTOR, spec.crop_top // LABEL_FACTOR


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU())


class Perception(nn.Module):
    """A small U-Net: (N, C, H, W) one preprocessed frame -> (N, len(CLASSES), H/2, W/2) logits."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.e1, self.e2, self.e3 = _conv(channels, 12, 2), _conv(12, 24, 2), _conv(24, 32, 2)
        self.d2, self.d1 = _conv(32 + 24, 16), _conv(16 + 12, 12)
        self.head = nn.Conv2d(12, len(CLASSES), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        d2 = self.d2(torch.cat([F.interpolate(e3, size=e2.shape[2:], mode="nearest"), e2], 1))
        d1 = self.d1(torch.cat([F.interpolate(d2, size=e1.shape[2:], mode="nearest"), e1], 1))
        return self.head(d1)


class SegmentationPolicy(nn.Module):
    """The driving policy: (N, frames x classes, h, w) class probabilities -> the action outputs."""

    def __init__(self, channels: int, height: int, width: int, outputs: int):
        super().__init__()
        self.features = nn.Sequential(_conv(channels, 24, 2), _conv(24, 32, 2), _conv(32, 48, 2), nn.Flatten())
        with torch.no_grad():
            flat = self.features(torch.zeros(1, channels, height, width)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, 100), nn.ReLU(), nn.Linear(100, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ModularNet(nn.Module):
    """Perception on every frame of the stack, the policy on their class probabilities; input and
    output are exactly an end-to-end network's (the bundle's NCHW tensor -> the action)."""

    def __init__(self, spec: PreprocessSpec, outputs: int = 2):
        super().__init__()
        if spec.layout != "NCHW":
            raise ValueError("the modular network takes NCHW input")
        width, height, crop = label_size(spec)
        self.frames, self.per_frame = spec.frame_stack, spec.channels // spec.frame_stack
        self.frame_shape = (self.per_frame, spec.out_height, spec.width)
        self.perception = Perception(self.per_frame)
        self.policy = SegmentationPolicy(self.frames * len(CLASSES), height - crop, width, outputs)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) stacked frames -> (N x frames, classes, h, w) logits, oldest frame first."""
        return self.perception(x.reshape(-1, *self.frame_shape))

    def abstraction(self, x: torch.Tensor) -> torch.Tensor:
        """What the policy sees: (N, frames x classes, h, w) class probabilities."""
        probs = torch.softmax(self.segment(x), dim=1)
        return probs.reshape(-1, self.frames * len(CLASSES), *probs.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.policy(self.abstraction(x))


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(N, classes, h, w) class probabilities -> (N, 1) mean per-pixel entropy over log(classes):
    0 sure .. 1 uniform."""
    entropy = -(probs * torch.log(probs.clamp_min(1e-6))).sum(1)
    return entropy.mean(dim=(1, 2)).unsqueeze(1) / math.log(probs.shape[1])


class ModularExport(nn.Module):
    """The exported graph: (action, uncertainty (N, 1)), the policy reading the frame only through
    the perception's softmax, and the uncertainty the newest frame's `mean_entropy`."""

    output_names = ("action", "uncertainty")

    def __init__(self, net: ModularNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seg = self.net.abstraction(x)
        return self.net.policy(seg), mean_entropy(seg[:, -len(CLASSES):])


class PerceptionMonitor(nn.Module):
    """A modular model's perception alone, as another network's failure monitor: the bundle's NCHW
    stacked frames -> (N, 1) the newest frame's `mean_entropy`, what a modular bundle reports as its
    uncertainty (`sim2real.export.export_checkpoint`'s `monitor`)."""

    def __init__(self, net: ModularNet):
        super().__init__()
        self.perception, self.per_frame = net.perception, net.per_frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_entropy(torch.softmax(self.perception(x[:, -self.per_frame:]), dim=1))


@dataclass
class ModularConfig(ImitationConfig):
    """DAgger's settings for the policy, plus the perception's: `perception_steps` expert-driven
    frames (starts spread wider than DAgger's, so it sees the track from off the line) and
    `perception_epochs` over them."""

    perception_steps: int = 12000
    perception_epochs: int = 6
    perception_batch: int = 64
    perception_lr: float = 2e-3
    perception_start_offset_m: float = 0.35
    perception_start_yaw_deg: float = 30.0


def perception_data(cfg: ModularConfig, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """Expert drives in the run's domains: the newest frame of each stored (augmented) input
    (N, H, W, C/frames) float16, and its class map (N, h, w) uint8."""
    drives = replace(cfg, start_offset_m=cfg.perception_start_offset_m, start_yaw_deg=cfg.perception_start_yaw_deg)
    rollouts = Rollouts(drives, spec, label_size=label_size(spec))
    per_frame = spec.channels // spec.frame_stack
    frames, labels = [], []
    for episode in rollouts.episodes(PERCEPTION_ITERATION, 1.0, cfg.perception_steps):
        frames.append(episode.features[..., -per_frame:])
        labels.append(episode.labels)
    return np.concatenate(frames), np.concatenate(labels)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse square-root class frequencies, mean 1: thin lines weigh more than the wide floor."""
    counts = np.bincount(labels.reshape(-1), minlength=len(CLASSES)).astype(np.float64) + 1.0
    weights = 1.0 / np.sqrt(counts / counts.sum())
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def train_perception(net: Perception, frames: np.ndarray, labels: np.ndarray, cfg: ModularConfig,
                     show_progress: bool = False) -> list[dict[str, float]]:
    """Cross-entropy on (frame, class map) pairs, random horizontal flips; per epoch the loss and
    the pixel accuracy."""
    rng = np.random.default_rng([cfg.seed, PERCEPTION_ITERATION])
    weights = class_weights(labels)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.perception_lr)
    history = []
    net.train()
    for epoch in tqdm(range(cfg.perception_epochs), desc="perception", unit="epoch", disable=not show_progress):
        order = rng.permutation(len(frames))
        loss_sum = correct = pixels = 0.0
        for i in range(0, len(order), cfg.perception_batch):
            idx = order[i:i + cfg.perception_batch]
            xb = torch.from_numpy(np.ascontiguousarray(frames[idx].transpose(0, 3, 1, 2), dtype=np.float32))
            yb = torch.from_numpy(labels[idx].astype(np.int64))
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            xb[flip], yb[flip] = torch.flip(xb[flip], dims=[3]), torch.flip(yb[flip], dims=[2])
            logits = net(xb)
            loss = F.cross_entropy(logits, yb, weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += float((logits.argmax(1) == yb).sum())
            pixels += yb.numel()
        history.append({"epoch": epoch, "loss": loss_sum / len(order), "pixel_accuracy": correct / pixels})
    net.eval()
    return history


def abstraction_encoder(net: ModularNet, spec: PreprocessSpec, batch: int = 256):
    """Stored frames (N, H, W, C) -> the frozen perception's output (N, h, w, frames x classes),
    laid out like frames so DAgger's `fit` feeds it to the policy unchanged."""

    @torch.no_grad()
    def encode(xs: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(xs), batch):
            x = torch.from_numpy(np.ascontiguousarray(xs[i:i + batch].transpose(0, 3, 1, 2), dtype=np.float32))
            out.append(net.abstraction(x).numpy().transpose(0, 2, 3, 1).astype(np.float16))
        return np.concatenate(out) if out else np.zeros((0,), np.float16)

    return encode


def train_modular(cfg: ModularConfig, spec: PreprocessSpec = SPEC, action_space: dict[str, Any] = ACTION_SPACE,
                  show_progress: bool = True) -> tuple[ModularNet, TrainingHistory, list[dict[str, float]]]:
    """Perception on labelled expert drives, frozen; then DAgger trains the policy on its output.
    Returns the whole network, DAgger's history and the perception's per-epoch history."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    net = ModularNet(spec, parse_metadata(action_space).output_size())
    frames, labels = perception_data(cfg, spec)
    perception_history = train_perception(net.perception, frames, labels, cfg, show_progress)
    del frames, labels
    for p in net.perception.parameters():
        p.requires_grad_(False)
    student = Student(net, net.policy, abstraction_encoder(net, spec))
    _, _, history, _ = train_imitation(cfg, spec, action_space, show_progress=show_progress, student=student)
    return net, history, perception_history


def segmentation_accuracy(net: ModularNet, cfg: ModularConfig, spec: PreprocessSpec = SPEC) -> float:
    """Pixel accuracy of the perception on fresh labelled expert drives (another seed than training)."""
    frames, labels = perception_data(replace(cfg, seed=cfg.seed + 7919), spec)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32))
        predicted = net.perception(x).argmax(1).numpy()
    return float((predicted == labels).mean())

