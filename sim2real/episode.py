"""The episode pipeline every trainer shares: one simulated car and what its camera gives the policy.

Per episode a domain is drawn (`sim2real.randomize`: world, camera, sensor and car dynamics) and an
augmenter seeded; per step the frame is rendered (the domain's sensor applied), augmented
(training only; the frames of one stack augmented as one picture, so they change alike and the
motion between them survives) and preprocessed with the car's own `frame_features`, so what a
policy learns from is what the car computes. DAgger (`sim2real.imitation`) and PPO
(`sim2real.ppo`) both drive through `EpisodeWorld`.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from car.policy.preprocess import PreprocessSpec, frame_features
from sim2real.augment import Augmenter
from sim2real.camera_matching import camera_from_info
from sim2real.randomize import DomainSimulator, Randomization
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator


def make_simulator(track: str | Track, randomization: str | Randomization | None = None,
                   camera_info: str | None = None) -> Simulator:
    """A plain simulator, or one whose episodes take a domain from `randomization` (a preset name,
    a YAML file or a Randomization); `camera_info` (a ROS camera_info YAML) sets the lens, which
    randomization then leaves as measured."""
    track = track if isinstance(track, Track) else Track.load(track)
    camera = camera_from_info(camera_info) if camera_info else None
    if not randomization:
        return Simulator(track, camera=camera)
    if isinstance(randomization, str):
        randomization = Randomization.load(randomization)
    if camera is not None:
        randomization = randomization.for_calibrated_lens()
    return DomainSimulator(track, randomization, camera=camera)


def stacked_features(spec: PreprocessSpec, frames: list[np.ndarray]) -> np.ndarray:
    """The last `spec.frame_stack` BGR frames (oldest first) -> (H, W, C) features, stacked on the
    channel axis as the car's `Preprocessor` stacks them."""
    return np.concatenate([frame_features(spec, f) for f in frames[-spec.frame_stack:]], axis=2)


def augment_together(augment: Augmenter, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames of one stack augmented as one picture."""
    return np.split(augment(np.concatenate(frames, axis=0)), len(frames), axis=0)


class EpisodeWorld:
    """`sim` (from `make_simulator`) seen through `spec`, with optional training augmentation and
    `road_width`: (low, high) factors (`sim2real.sim.track.ROAD_WIDTHS`) by which each episode's road
    is narrowed or widened about its centre line (`Track.with_width`, drawn uniformly), so a policy
    meets roads narrower and wider than its tracks' own.

    `begin(rng)` draws the episode's domain, augmenter and road width from `rng` (nothing when none is
    configured); then `sim.reset(...)`, and per step `observe()` after each `sim.step()`."""

    def __init__(self, sim: Simulator, spec: PreprocessSpec, augmentation: str | None = None,
                 road_width: tuple[float, float] | None = None) -> None:
        self.sim, self.spec, self.augmentation, self.road_width = sim, spec, augmentation, road_width
        self.track = sim.track
        self.road_factor = 1.0  # this episode's road width over the track's own
        self._augment: Augmenter | None = None
        self._frames: deque[np.ndarray] = deque(maxlen=spec.frame_stack)

    def begin(self, rng: np.random.Generator) -> None:
        """A new episode's domain (randomized simulators), augmenter and road width, drawn from `rng` in
        that order (the road width after the others, so they are those of a run without it)."""
        if isinstance(self.sim, DomainSimulator):
            self.sim.set_domain(self.sim.randomization.sample(rng))
        self._augment = Augmenter(self.augmentation, int(rng.integers(2**31))) if self.augmentation else None
        if self.road_width is not None:
            self.road_factor = float(rng.uniform(*self.road_width))
            self.sim.set_track(self.track.with_width(self.road_factor))
        self._frames.clear()

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        """The camera frame at the car's pose -> (clean, augmented) features, each (H, W, C) float32;
        the augmented one is the clean one when augmentation is off."""
        frame = self.sim.render()
        if not self._frames:
            self._frames.extend([frame] * (self.spec.frame_stack - 1))
        self._frames.append(frame)
        frames = list(self._frames)
        clean = stacked_features(self.spec, frames)
        if self._augment is None:
            return clean, clean
        return clean, stacked_features(self.spec, augment_together(self._augment, frames))
