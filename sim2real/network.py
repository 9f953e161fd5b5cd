"""Policy networks: racer's small CNN (DAgger's default) and the AWS console's camera networks
(PPO's), and preprocessed frames as a network batch."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from car.policy.preprocess import DEEPRACER_SPEC, PreprocessSpec


class DrivingNet(nn.Module):
    """Conv stack + MLP head; input is exactly the bundle's preprocessing output (NCHW)."""

    def __init__(self, spec: PreprocessSpec, outputs: int = 2):
        super().__init__()
        if spec.layout != "NCHW":
            raise ValueError("DrivingNet takes NCHW input")
        self.features = nn.Sequential(
            nn.Conv2d(spec.channels, 24, 5, stride=2), nn.ReLU(),
            nn.Conv2d(24, 32, 5, stride=2), nn.ReLU(),
            nn.Conv2d(32, 48, 3, stride=2), nn.ReLU(),
            nn.Conv2d(48, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(spec.input_shape())).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, 100), nn.ReLU(), nn.Linear(100, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# The steering scales an export accepts (`racer export --steering-scale`): beyond 4 the car would steer
# at full lock from a quarter of the network's steering; below 1/4 it would hardly steer at all.
STEERING_SCALES = (0.25, 4.0)


def check_steering_scale(scale: float) -> float:
    """`scale` if it lies within `STEERING_SCALES`, else ValueError saying so (NaN included)."""
    low, high = STEERING_SCALES
    if not low <= scale <= high:
        raise ValueError(f"the steering scale must be from {low:g} to {high:g}, got {scale}")
    return scale


class MirrorExport(nn.Module):
    """The exported graph of continuous networks trained on mirrored frames with negated steering
    (`ImitationConfig.flip`): one network, or several trained the same way as an ensemble
    (Lakshminarayanan et al. 2017). Outputs (action (N, A): the members' mean action on the frame,
    uncertainty (N, 1)). Each member gives two views of the steering: s_i(x) on the frame and
    -s_i(mirror(x)) on its mirror image, clipped to [-1, 1] as the car decodes it (clipped_ppo). The
    uncertainty is the views' mean absolute deviation from their mean, 0 (all agree) .. 1: a frame
    unlike training breaks the symmetry training taught and splits the members (test-time
    augmentation as uncertainty: Ayhan & Berens 2018). For one network it is
    |clip(s(x)) + clip(s(mirror(x)))| / 2.
    A `monitor` (any (N, C, H, W) -> (N, 1) network, for example `sim2real.modular.PerceptionMonitor`)
    adds its output to the uncertainty. `steering_scale` (`STEERING_SCALES`) multiplies the action's steering
    (the car then clips it to [-1, 1]); the uncertainty is read before it. Input NCHW, mirrored on W.
    ValueError for no member or a scale outside `STEERING_SCALES`."""

    output_names = ("action", "uncertainty")

    def __init__(self, *members: nn.Module, monitor: nn.Module | None = None, steering_scale: float = 1.0):
        super().__init__()
        if not members:
            raise ValueError("MirrorExport needs at least one network")
        self.members = nn.ModuleList(members)
        self.monitor = monitor
        self.steering_scale = check_steering_scale(steering_scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        both = torch.cat([x, torch.flip(x, dims=[3])])
        action, mirrored = torch.stack([member(both) for member in self.members]).split(x.shape[0], dim=1)
        views = torch.cat([action[..., :1].clamp(-1.0, 1.0), -mirrored[..., :1].clamp(-1.0, 1.0)])
        uncertainty = (views - views.mean(0)).abs().mean(0)
        mean = action.mean(0)
        if self.steering_scale != 1.0:
            mean = torch.cat([mean[..., :1] * self.steering_scale, mean[..., 1:]], dim=-1)
        return mean, uncertainty if self.monitor is None else uncertainty + self.monitor(x)


# The AWS simulator's camera embedders (simapp `custom_architectures`, facts in docs/training.md):
# (filters, kernel, stride) per convolution, valid padding, the activation, and the dense layers
# after them; both feed the 512-unit dense middleware.
CONSOLE_NETWORKS: dict[str, tuple[tuple[tuple[int, int, int], ...], type[nn.Module], tuple[int, ...]]] = {
    "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW": (((32, 8, 4), (64, 4, 2), (64, 3, 1)), nn.ReLU, ()),
    "DEEP_CONVOLUTIONAL_NETWORK": (((32, 5, 2), (32, 3, 1), (64, 3, 2), (64, 3, 1)), nn.Tanh, (64,)),
}
MIDDLEWARE = 512
# The console's model input and the car's preprocessing for it: 160x120 8-bit grey, raw 0..255, NHWC,
# exactly what the stock car feeds an AWS export.
CONSOLE_SPEC = DEEPRACER_SPEC


class ConsoleNet(nn.Module):
    """The console's camera network for one action space: input (N, 120, 160, 1) raw grey 0..255
    (the AWS export's NHWC input; /255 inside the graph), the embedder, a 512-unit ReLU dense
    middleware, then two heads on it: the policy (`forward`: a softmax over the discrete actions, or
    the continuous steering and speed means in [-1, 1] units, as an AWS export outputs) and the value
    (`evaluate`, training only, dropped at export). A continuous policy also learns a log standard
    deviation per output. Unlike the AWS trainer (coach), which trains a second network of the same
    shape for the value, the value head shares the trunk: half the computation per step."""

    def __init__(self, network: str, outputs: int, discrete: bool, spec: PreprocessSpec = CONSOLE_SPEC):
        super().__init__()
        if network not in CONSOLE_NETWORKS:
            raise ValueError(f"unknown console network {network!r}; known: {', '.join(CONSOLE_NETWORKS)}")
        if spec.layout != "NHWC" or spec.channels != 1:
            raise ValueError("the console network takes NHWC single-channel grey input")
        convs, activation, dense = CONSOLE_NETWORKS[network]
        layers: list[nn.Module] = []
        channels = 1
        for filters, kernel, stride in convs:
            layers += [nn.Conv2d(channels, filters, kernel, stride=stride), activation()]
            channels = filters
        layers.append(nn.Flatten())
        self.network, self.discrete = network, discrete
        self.embedder = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.embedder(torch.zeros(1, 1, spec.out_height, spec.width)).shape[1]
        middle: list[nn.Module] = []
        for units in dense:
            middle += [nn.Linear(flat, units), activation()]
            flat = units
        self.middleware = nn.Sequential(*middle, nn.Linear(flat, MIDDLEWARE), nn.ReLU())
        self.policy = nn.Linear(MIDDLEWARE, outputs)
        self.value = nn.Linear(MIDDLEWARE, 1)
        # a near-uniform first policy: every action tried
        nn.init.orthogonal_(self.policy.weight, 0.01)
        nn.init.zeros_(self.policy.bias)
        self.log_std = None if discrete else nn.Parameter(torch.full((outputs,), -0.7))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 1) raw grey -> (N, 512) middleware features."""
        return self.middleware(self.embedder(x.permute(0, 3, 1, 2) / 255.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """What the car runs: action probabilities (discrete) or the means (continuous)."""
        out = self.policy(self.trunk(x))
        return torch.softmax(out, dim=1) if self.discrete else out

    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: the policy's logits (discrete) or means (continuous), and the value, (N,)."""
        h = self.trunk(x)
        return self.policy(h), self.value(h)[:, 0]


def to_tensor(spec: PreprocessSpec, x: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) preprocessed frames -> the network's batch in the spec's layout."""
    if spec.layout == "NHWC":
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
