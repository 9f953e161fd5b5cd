"""The sim-to-real gap, measured: bundles drive laps through the car stack in held-out domains
(worlds, cameras and cars outside the training ranges), and a table says how often they finish.

The comparison that matters is between training variants: none, randomization only,
augmentation only, and both, each over several seeds. A domains file is a YAML list of named
domains, each a mapping from knob names to fixed values::

    - name: dim_room
      light: 0.5
      exposure_ev: -0.6
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from car.policy.bundle import RACER_FILE, Bundle, load_bundle
from car.policy.inference import Policy
from car.policy.shift import ShiftMonitor
from car.policy.core import PolicyModel
from car.yamlfile import read_yaml
from sim2real.drive import run_laps
from sim2real.export import export_checkpoint
from sim2real.imitation import ACTION_SPACE, SPEC, ImitationConfig, save_checkpoint, train_imitation
from sim2real.modular import ModularConfig, train_modular
from sim2real.randomize import Domain, DomainSimulator, Randomization, RandomizationError
from sim2real.sim.rules import aws_rules, is_aws_export
from sim2real.sim.track import Track

# Training variant -> (randomization preset, augmentation preset): the end-to-end network, and with
# MODULAR before the name the modular model (`sim2real.modular`) trained the same way.
MODULAR = "modular-"
_TRAINING: dict[str, tuple[str | None, str | None]] = {
    "none": (None, None),
    "randomization": ("default", None),
    "augmentation": (None, "default"),
    "both": ("default", "default"),
}
VARIANTS = {**_TRAINING, **{MODULAR + name: presets for name, presets in _TRAINING.items()}}


@dataclass(frozen=True)
class NamedDomain:
    name: str
    values: dict[str, float]

    def domain(self) -> Domain:
        """The same world for every model: the layout seed comes from the name."""
        return Domain(self.values, zlib.crc32(self.name.encode()))


# Each lies outside the `default` training ranges in at least one knob (see `outside_training`).
HELD_OUT: tuple[NamedDomain, ...] = (
    NamedDomain("dim_room", {"light": 0.55, "exposure_ev": -0.5, "background_shade": 0.4}),
    NamedDomain("bright_glare", {"light": 1.45, "light_spots": 5, "spot_gain": 0.7, "exposure_ev": 0.5}),
    NamedDomain("grey_carpet", {"floor_hue_deg": 70.0, "floor_shade": 1.45, "surface_shade": 0.65,
                                "texture_noise": 10.0}),
    NamedDomain("worn_tape", {"line_wear": 0.3, "line_width": 0.8, "line_shade": 0.72}),
    NamedDomain("knocked_camera", {"camera_pitch_deg": 18.0, "camera_roll_deg": 2.8, "camera_height_m": 0.115}),
    NamedDomain("cheap_camera", {"sensor_noise": 6.0, "motion_blur_px": 3.5, "jpeg_quality": 45.0, "lens_k1": 0.07}),
    NamedDomain("tired_car", {"delay_ms": 120.0, "steering_trim": 0.05, "steering_gain": 0.87, "throttle_gain": 1.12}),
    NamedDomain("messy_floor", {"distractors": 12, "shadows": 5, "shadow_depth": 0.55, "background_clutter": 8}),
)


# The plain simulator: the AWS DeepRacer simulator's world, as AWS-trained models saw it.
NOMINAL = NamedDomain("nominal", {})


class DomainsFileError(ValueError):
    """A domains file that is not a list of named knob mappings."""


def load_domains(path: str | Path) -> list[NamedDomain]:
    doc = read_yaml(path, DomainsFileError)
    if not isinstance(doc, list) or not doc:
        raise DomainsFileError(f"{path}: expected a non-empty YAML list of domains")
    domains, seen = [], set()
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise DomainsFileError(f"{path}: domain {i + 1}: expected a mapping with a 'name'")
        name = entry["name"]
        if name in seen:
            raise DomainsFileError(f"{path}: domain {name!r} appears twice")
        seen.add(name)
        values = {str(k): v for k, v in entry.items() if k != "name"}
        try:
            Domain(values)
        except RandomizationError as exc:
            raise DomainsFileError(f"{path}: domain {name!r}: {exc}") from None
        domains.append(NamedDomain(name, values))
    return domains


def outside_training(domain: NamedDomain, preset: str = "default") -> list[str]:
    return Randomization.preset(preset).outside(domain.values)


@dataclass(frozen=True)
class EvalConfig:
    """Laps per (model, domain) = tracks x starts; each lap starts at rest on the centre line.
    Empty `tracks` means every closed track the model did not train on (see `held_out_tracks`)."""

    tracks: tuple[str, ...] = ()
    starts: int = 2
    max_speed: float = 0.5
    lap_timeout_s: float = 60.0


def held_out_tracks(trained: Sequence[str]) -> tuple[str, ...]:
    """The built-in closed tracks that differ in shape from every track in `trained` (a track
    driven the other way round is the same shape)."""
    def shape(name: str) -> frozenset[tuple[float, float]]:
        return frozenset(map(tuple, np.round(Track.load(name).centre, 3).tolist()))

    seen = {shape(name) for name in trained}
    return tuple(name for name in Track.names() if Track.load(name).closed and shape(name) not in seen)


def training_tracks(bundle: Bundle) -> tuple[str, ...]:
    """The tracks a racer bundle records it trained on (none known for other bundles)."""
    config = bundle.info.get("config")
    tracks = config.get("tracks") if isinstance(config, dict) else None
    return tuple(str(t) for t in tracks) if isinstance(tracks, list) else ()


def evaluate(bundle_path: str | Path, domains: Sequence[NamedDomain], cfg: EvalConfig = EvalConfig(),
             log: Callable[[str], None] = lambda _: None) -> dict[str, dict[str, Any]]:
    """Per domain: laps driven, laps completed, completion %, mean progress, mean domain-shift score,
    and the model's own mean uncertainty when it has one (a modular model). An AWS export drives
    under the AWS simulator's rules (`sim.rules`). `log` hears of each domain done."""
    results = {}
    with load_bundle(bundle_path) as bundle:
        policy = Policy(bundle)
        monitor = ShiftMonitor.from_stats(bundle.stats, bundle.spec)
        tracks = cfg.tracks or held_out_tracks(training_tracks(bundle))
        for named in domains:
            scores: list[float] = []
            uncertainty: list[float] = []

            def infer(tensor: np.ndarray) -> np.ndarray:
                if monitor is not None:
                    scores.append(monitor.score(tensor))
                action = policy.infer(tensor)
                if policy.has_uncertainty:
                    uncertainty.append(policy.uncertainty())
                return action

            model = PolicyModel(infer, bundle.spec, bundle.metadata)
            progress, completed = [], 0
            for track_name in tracks:
                sim = DomainSimulator(Track.load(track_name))
                sim.set_domain(named.domain())
                for k in range(cfg.starts):
                    sim.reset(start_index=k * sim.track.waypoint_count // cfg.starts)
                    driver = aws_rules(sim, bundle, cfg.max_speed) if is_aws_export(bundle) else None
                    drive = run_laps(sim, model, laps=1, max_speed=cfg.max_speed, lap_timeout_s=cfg.lap_timeout_s,
                                     driver=driver)
                    progress.append(drive.laps[0].progress)
                    completed += drive.completed_laps
            results[named.name] = {
                "tracks": list(tracks), "laps": len(progress), "completed": completed,
                "completion_pct": round(100.0 * completed / len(progress), 2),
                "mean_progress": round(float(np.mean(progress)), 2),
                "domain_shift": round(float(np.mean(scores)), 3) if scores else None,
                "uncertainty": round(float(np.mean(uncertainty)), 4) if uncertainty else None,
            }
            log(f"  {named.name}: {completed} of {len(progress)} laps ({len(results)}/{len(domains)} domains)")
    return results


def run_name(variant: str, seed: int) -> str:
    """The folder of one variant and seed in an evaluation's run directory."""
    return f"{variant}-s{seed}"


def is_whole(bundle: Path) -> bool:
    """An export writes racer.json last, so a bundle that has it is whole and a resumed evaluation reuses it."""
    return (bundle / RACER_FILE).is_file()


def variant_config(base: ImitationConfig, variant: str, seed: int) -> ImitationConfig:
    """The training settings of one variant and seed: `base`'s DAgger settings with the variant's
    presets; a ModularConfig for a modular variant (with `base`'s perception settings if it has them)."""
    randomization, augmentation = VARIANTS[variant]
    settings = {f.name: getattr(base, f.name) for f in fields(ImitationConfig)}
    settings.update(seed=seed, randomization=randomization, augmentation=augmentation)
    if not variant.startswith(MODULAR):
        return ImitationConfig(**settings)
    perception = {f.name: getattr(base, f.name) for f in fields(ModularConfig)
                  if f.name not in settings and hasattr(base, f.name)}
    return ModularConfig(**settings, **perception)


def train_variant(out_dir: Path, variant: str, seed: int, base: ImitationConfig,
                  show_progress: bool = False) -> Path:
    """Train and export one variant and seed into out_dir/<variant>-s<seed>/bundle; an existing
    bundle there is reused, so an interrupted evaluation resumes."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants: {', '.join(VARIANTS)}")
    run = Path(out_dir) / run_name(variant, seed)
    bundle = run / "bundle"
    if is_whole(bundle):
        return bundle
    cfg = variant_config(base, variant, seed)
    if isinstance(cfg, ModularConfig):
        net, history, _ = train_modular(cfg, show_progress=show_progress)
    else:
        net, _, history, _ = train_imitation(cfg, show_progress=show_progress)
    run.mkdir(parents=True, exist_ok=True)
    checkpoint = save_checkpoint(run / "policy.pt", net, SPEC, ACTION_SPACE, cfg, history.iterations,
                                 trainer="modular" if isinstance(cfg, ModularConfig) else "dagger")
    if bundle.exists():
        for stale in bundle.iterdir():
            stale.unlink()
    export_checkpoint(checkpoint, bundle)[0].close()
    return bundle


def summarize(models: Sequence[dict[str, Any]], domains: Sequence[NamedDomain]) -> dict[str, dict[str, Any]]:
    """Per variant: per domain and overall, completion % and progress averaged over its models
    (seeds), with the spread of completion across seeds."""
    summary: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(m["variant"] for m in models):
        mine = [m for m in models if m["variant"] == variant]
        row: dict[str, Any] = {"seeds": [m["seed"] for m in mine], "domains": {}}
        for d in domains:
            completion = [m["results"][d.name]["completion_pct"] for m in mine]
            row["domains"][d.name] = {
                "completion_pct": round(float(np.mean(completion)), 1),
                "completion_std": round(float(np.std(completion)), 1),
                "mean_progress": round(float(np.mean([m["results"][d.name]["mean_progress"] for m in mine])), 1),
            }
        per_seed = [np.mean([m["results"][d.name]["completion_pct"] for d in domains]) for m in mine]
        row["completion_pct"] = round(float(np.mean(per_seed)), 1)
        row["completion_by_seed"] = [round(float(c), 1) for c in per_seed]
        row["mean_progress"] = round(float(np.mean([row["domains"][d.name]["mean_progress"] for d in domains])), 1)
        summary[variant] = row
    return summary


def format_table(summary: dict[str, dict[str, Any]], domains: Sequence[NamedDomain]) -> str:
    """Lap completion % (mean progress %) per variant and domain, the average, and the training seeds
    (`-` for a given bundle, which has none)."""
    names = [d.name for d in domains]
    width = max(14, *(len(n) for n in names)) + 2
    first = max(15, *(len(variant) + 1 for variant in summary))  # a given bundle's name can be long
    lines = [f"{'variant':{first}s}" + "".join(f"{n:>{width}s}" for n in names) + f"{'mean':>{width}s}  seeds"]
    for variant, row in summary.items():
        cells = [_cell(row["domains"][n]) for n in names]
        cells.append(_cell(row))
        lines.append(f"{variant:{first}s}" + "".join(f"{c:>{width}s}" for c in cells)
                     + "  " + (",".join(str(s) for s in row["seeds"] if s is not None) or "-"))
    return "\n".join(lines)


def _cell(result: dict[str, Any]) -> str:
    return f"{result['completion_pct']:5.1f} ({result['mean_progress']:5.1f})"


def run_gap_evaluation(out_dir: Path, seeds: Sequence[int], domains: Sequence[NamedDomain], base: ImitationConfig,
                       cfg: EvalConfig = EvalConfig(), variants: Sequence[str] = tuple(VARIANTS),
                       log: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Train (or reuse) every variant x seed in `out_dir` and evaluate each on `domains`."""
    models = []
    for variant in variants:
        for seed in seeds:
            log(f"training {variant} seed {seed}")
            bundle = train_variant(out_dir, variant, seed, base)
            log(f"evaluating {variant} seed {seed}")
            models.append({"name": run_name(variant, seed), "variant": variant, "seed": seed, "bundle": str(bundle),
                           "results": evaluate(bundle, domains, cfg, log)})
    return models
