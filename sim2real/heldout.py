"""The honest held-out test: a distribution of worlds, cameras and cars beyond the training ranges,
written down with its seed (`heldout.yaml`, `racer eval`'s default), and the named real-world
domains beside it.

A test distribution file is a mapping::

    test_distribution: NAME    # marks the file; training refuses it (`Randomization.load`)
    seed: 2126                 # the draws below, so every model meets the same episodes
    training: default          # the randomization preset the test lies beyond
    base: {KNOB: [low, high]}  # the ranges every knob is first drawn in
    episodes: 400              # random domains, one lap each
    beyond: 3                  # groups per domain drawn beyond the training range, one knob each
    starts: 4                  # laps per track of each named domain, from spread points
    tracks: [Oval_track, ...]  # closed tracks, none of them a training track: built-in names or
                               # .npy outlines (`racer sim generate-track`), relative to this file
    groups: {GROUP: {KNOB: [[low, high], ...]}}   # bands, each outside the training range
    named: [{name: NAME, KNOB: value, ...}, ...]
"""
from __future__ import annotations

import zlib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from car.yamlfile import read_yaml
from sim2real.randomize import KNOBS, Domain, Randomization, RandomizationError, check_value, knob_named
from sim2real.sim.track import Track

TEST_FILE = Path(__file__).with_name("heldout.yaml")
MARK = "test_distribution"
KEYS = {MARK, "seed", "training", "base", "episodes", "beyond", "starts", "tracks", "groups", "named"}


class DomainsFileError(ValueError):
    """A domains or test distribution file that does not make sense, or a test that overlaps training."""


@dataclass(frozen=True)
class Episode:
    """One lap on `track` from the point `start` (0..1) of the way round it, at rest on the centre line."""

    track: str
    start: float


@dataclass(frozen=True)
class NamedDomain:
    """A world of an evaluation: `values` per knob (the rest nominal), its layout `seed` (default:
    from the name, so every model meets the same world), the `group` its laps are pooled in (a
    test distribution's random domains share one; default: its own name) and its laps
    (`episodes`; empty: every evaluation track from the evaluation's starts)."""

    name: str
    values: dict[str, float]
    seed: int | None = None
    group: str | None = None
    episodes: tuple[Episode, ...] = ()

    @property
    def pool(self) -> str:
        return self.group or self.name

    def domain(self) -> Domain:
        return Domain(self.values, zlib.crc32(self.name.encode()) if self.seed is None else self.seed)


def load_domains(path: str | Path) -> list[NamedDomain]:
    """A test distribution file's domains, or a YAML list of named domains (`name` plus knob values)."""
    doc = read_yaml(path, DomainsFileError)
    if isinstance(doc, dict) and MARK in doc:
        return TestDistribution.from_document(doc, str(path)).domains()
    if not isinstance(doc, list) or not doc:
        raise DomainsFileError(f"{path}: expected a non-empty YAML list of domains or a test distribution")
    try:
        return [NamedDomain(name, values) for name, values in _named(doc)]
    except (RandomizationError, ValueError) as exc:
        raise DomainsFileError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class TestDistribution:
    name: str
    seed: int
    training: str
    base: Randomization
    episodes: int
    beyond: int
    starts: int
    tracks: tuple[str, ...]
    groups: Mapping[str, Mapping[str, tuple[tuple[float, float], ...]]]
    named: tuple[tuple[str, Mapping[str, float]], ...] = field(default=())

    @classmethod
    def load(cls, path: str | Path = TEST_FILE) -> TestDistribution:
        return cls.from_document(read_yaml(path, DomainsFileError), str(path))

    @classmethod
    def from_document(cls, doc: Any, source: str) -> TestDistribution:
        if not isinstance(doc, dict) or MARK not in doc:
            raise DomainsFileError(f"{source}: not a test distribution (no '{MARK}' key)")
        unknown = sorted(set(map(str, doc)) - KEYS)
        if unknown:
            raise DomainsFileError(f"{source}: unknown key(s) {', '.join(unknown)}")
        try:
            base = doc.get("base") or {}
            if not isinstance(base, dict):
                raise ValueError("base: expected a mapping of knob -> [low, high]")
            dist = cls(name=str(doc[MARK]), seed=_integer(doc, "seed", 0), training=str(doc.get("training", "default")),
                       base=Randomization({str(k): tuple(v) if isinstance(v, list) else (v, v)
                                           for k, v in base.items()}),
                       episodes=_integer(doc, "episodes", 0), beyond=_integer(doc, "beyond", 1),
                       starts=_integer(doc, "starts", 1), tracks=_tracks(doc.get("tracks"), source),
                       groups=_groups(doc.get("groups")), named=_named(doc.get("named") or []))
            dist.check()
        except (RandomizationError, TypeError, ValueError, OSError) as exc:
            raise DomainsFileError(f"{source}: {exc}") from None
        return dist

    def check(self) -> None:
        """ValueError unless every band lies outside the training range and the tracks are closed."""
        training = Randomization.preset(self.training)
        if not self.tracks:
            raise ValueError("tracks: at least one closed track")
        for name in self.tracks:
            if not Track.load(name).closed:
                raise ValueError(f"tracks: {name} is not a closed track")
        if self.episodes and not 1 <= self.beyond <= len(self.groups):
            raise ValueError(f"beyond: {self.beyond} groups, but the file has {len(self.groups)}")
        for group, knobs in self.groups.items():
            for knob, bands in knobs.items():
                low, high = training.ranges.get(knob, (KNOBS[knob].nominal,) * 2)
                for band in bands:
                    if not (band[1] < low or band[0] > high):
                        raise ValueError(f"groups: {group}: {knob} band {list(band)} overlaps the "
                                         f"{self.training} training range [{low:g}, {high:g}]")

    def domains(self, episodes: int | None = None) -> list[NamedDomain]:
        """The first `episodes` (default: all) random domains, then the named ones."""
        count = self.episodes if episodes is None else min(episodes, self.episodes)
        return self._random()[:count] + [
            NamedDomain(name, dict(values),
                        episodes=tuple(Episode(t, k / self.starts) for t in self.tracks for k in range(self.starts)))
            for name, values in self.named]

    def _random(self) -> list[NamedDomain]:
        rng = np.random.default_rng(self.seed)
        groups = list(self.groups)
        out = []
        for i in range(self.episodes):
            base = self.base.sample(rng)
            values = dict(base.values)
            for g in rng.choice(len(groups), self.beyond, replace=False):
                knobs = self.groups[groups[g]]
                knob = list(knobs)[rng.integers(len(knobs))]
                bands = knobs[knob]
                widths = np.array([b[1] - b[0] for b in bands], float) + 1e-9
                low, high = bands[rng.choice(len(bands), p=widths / widths.sum())]
                values[knob] = KNOBS[knob].draw(rng, low, high)
            track = self.tracks[i % len(self.tracks)]
            out.append(NamedDomain(f"{self.name}-{i:03d}", values, base.seed, self.name,
                                   (Episode(track, float(rng.uniform())),)))
        return out


def _integer(doc: dict, key: str, minimum: int) -> int:
    value = doc.get(key, minimum)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}: expected an integer of at least {minimum}, got {value!r}")
    return value


def first_repeat(items: Iterable[Hashable]) -> int | None:
    """The index of the first item equal to an earlier one (a track, a run or a bundle named twice,
    whose laps would be driven or counted twice), or None."""
    seen: set[Hashable] = set()
    for index, item in enumerate(items):
        if item in seen:
            return index
        seen.add(item)
    return None


def _tracks(doc: Any, source: str) -> tuple[str, ...]:
    """The file's tracks: built-in names as written, a relative `.npy` path taken from the file's folder."""
    if doc is not None and not isinstance(doc, list):
        raise ValueError("tracks: expected a list of track names or .npy files")
    folder = Path(source).parent
    names = [str(name) for name in doc or ()]
    if (twice := first_repeat(names)) is not None:
        raise ValueError(f"tracks: {names[twice]} is listed twice (its laps would be driven and counted twice)")
    return tuple(str(folder / name) if name.endswith(".npy") and not Path(name).is_absolute() else name
                 for name in names)


def _groups(doc: Any) -> dict[str, dict[str, tuple[tuple[float, float], ...]]]:
    if not isinstance(doc, dict):
        raise ValueError("groups: expected a mapping of group -> knob -> [[low, high], ...]")
    out: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {}
    for group, knobs in doc.items():
        if not isinstance(knobs, dict) or not knobs:
            raise ValueError(f"groups: {group}: expected a mapping of knob -> [[low, high], ...]")
        out[str(group)] = {}
        for knob, bands in knobs.items():
            knob_named(str(knob))
            if not isinstance(bands, list) or not bands or \
                    not all(isinstance(b, list) and len(b) == 2 for b in bands):
                raise ValueError(f"groups: {group}: {knob}: expected a list of [low, high] bands")
            checked = tuple((check_value(knob, b[0]), check_value(knob, b[1])) for b in bands)
            if any(low > high for low, high in checked):
                raise ValueError(f"groups: {group}: {knob}: a band's low is above its high")
            out[str(group)][str(knob)] = checked
    return out


def _named(doc: Any) -> tuple[tuple[str, dict[str, float]], ...]:
    if not isinstance(doc, list):
        raise ValueError("named: expected a list of domains")
    out, seen = [], set()
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(f"domain {i + 1}: expected a mapping with a 'name'")
        name = entry["name"]
        if name in seen:
            raise ValueError(f"domain {name!r} appears twice")
        seen.add(name)
        values = {str(k): v for k, v in entry.items() if k != "name"}
        try:
            out.append((name, dict(Domain(values).values)))
        except RandomizationError as exc:
            raise ValueError(f"domain {name!r}: {exc}") from None
    return tuple(out)
