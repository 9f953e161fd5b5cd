"""The racer policy network: a small CNN sized for a few hundred microseconds on the car's CPU."""
from __future__ import annotations

import torch
from torch import nn

from car.policy.preprocess import PreprocessSpec


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
