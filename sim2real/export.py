"""Export a trained network to a racer bundle (OpenVINO IR + ONNX + metadata + racer.json), gated
on OpenVINO agreeing with the training framework."""
from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from car.policy.bundle import Bundle, load_bundle, save_bundle
from car.policy.inference import Policy
from car.policy.metadata import ModelMetadata, parse_metadata
from car.policy.preprocess import PreprocessSpec
from car.policy.shift import region_statistics
from car.policy.warning import Caution
from sim2real.checkpoint import load_checkpoint
from sim2real.imitation import sample_frames
from sim2real.modular import ModularExport, ModularNet, PerceptionMonitor
from sim2real.network import DrivingNet, MirrorExport, check_steering_scale, to_tensor

MAX_ABS_ERROR = 1e-4
MAX_ARGMAX_DISAGREEMENT = 1e-3


class ExportGateError(RuntimeError):
    """OpenVINO and the training framework disagree beyond the gate."""


@dataclass
class EquivalenceReport:
    frames: int
    max_abs_error: float
    argmax_disagreement: float | None

    def to_json(self) -> dict[str, Any]:
        return {"frames": self.frames, "max_abs_error": self.max_abs_error,
                "argmax_disagreement": self.argmax_disagreement}


def image_stats(features: np.ndarray) -> dict[str, Any]:
    """Training-image statistics for the car's domain-shift monitor (`car.policy.shift`): mean, std, a
    16-bin histogram, and per-region brightness and per-frame contrast statistics."""
    flat = features.astype(np.float32).reshape(-1)
    hist, edges = np.histogram(flat, bins=16, range=(float(flat.min()), float(flat.max()) + 1e-6))
    return {"mean": float(flat.mean()), "std": float(flat.std()),
            "histogram": (hist / hist.sum()).round(6).tolist(), "histogram_edges": edges.round(6).tolist(),
            "frames": int(features.shape[0]), "regions": region_statistics(features.astype(np.float32))}


def exported(net: torch.nn.Module) -> torch.nn.Module:
    """The graph a bundle carries: the network, or for the modular one the network with its uncertainty output."""
    return ModularExport(net) if isinstance(net, ModularNet) else net


def with_uncertainty(net: torch.nn.Module, meta: ModelMetadata, config: dict[str, Any]) -> torch.nn.Module:
    """`net` with an uncertainty output when it can give one: a continuous DrivingNet trained on mirrored
    frames (`config["flip"]`) reports its mirror disagreement (`MirrorExport`); others as they are."""
    return net if mirror_misfit(net, meta, config) else MirrorExport(net)


def mirror_misfit(net: torch.nn.Module, meta: ModelMetadata, config: dict[str, Any]) -> str | None:
    """Why `net` cannot run in a `MirrorExport` (alone or in an ensemble), or None when it can: it must be
    a continuous DrivingNet trained on mirrored frames."""
    if not isinstance(net, DrivingNet):
        return f"it holds a {type(net).__name__}; ensembles and monitors need end-to-end DAgger networks (DrivingNet)"
    if meta.discrete:
        return "its action space is discrete; the export averages continuous actions (its own and its mirror's)"
    if not config.get("flip"):
        return "it was trained without mirrored frames, which the uncertainty (its disagreement with its mirror) needs"
    return None


# What every member of an ensemble must share with the first: the bundle's config is the first's, and
# `racer eval` picks the tracks the model never trained on from it.
ENSEMBLE_ALIKE = ("tracks", "camera_info", "max_speed_setting", "max_speed_low")


def ensemble_misfit(member: tuple[torch.nn.Module, PreprocessSpec, dict[str, Any], dict[str, Any]],
                    first: tuple[torch.nn.Module, PreprocessSpec, dict[str, Any], dict[str, Any]]) -> str | None:
    """Why a loaded checkpoint (`load_checkpoint`'s tuple) cannot join an ensemble whose first member
    is `first`, or None when it can."""
    net, spec, action_space, data = member
    config, first_config = data["config"], first[3]["config"]
    if reason := mirror_misfit(net, parse_metadata(action_space), config):
        return reason
    if spec != first[1]:
        return f"its preprocessing is not the first checkpoint's ({_input(spec)} against {_input(first[1])})"
    if action_space != first[2]:
        return "its action space is not the first checkpoint's"
    for key in ENSEMBLE_ALIKE:
        if config.get(key) != first_config.get(key):
            return f"its {key} {config.get(key)!r} is not the first checkpoint's {first_config.get(key)!r}"
    return None


def export_onnx(net: torch.nn.Module, spec: PreprocessSpec, path: Path) -> Path:
    module = exported(net).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(spec.input_shape()),), str(path), dynamo=False, opset_version=17,
                          input_names=[spec.input_name or "image"],
                          output_names=list(getattr(module, "output_names", ("action",))))
    return path


def check_equivalence(net: torch.nn.Module, policy: Policy, spec: PreprocessSpec, meta: ModelMetadata,
                      features: np.ndarray) -> EquivalenceReport:
    """Same frames through torch and OpenVINO; discrete: argmax agreement, continuous: max abs error
    (over the uncertainty output too, when the model has one)."""
    with torch.no_grad():
        outputs = exported(net)(to_tensor(spec, features))
    reference, *own = outputs if isinstance(outputs, tuple) else (outputs,)
    reference = reference.numpy()
    batch = to_tensor(spec, features).numpy()
    ours, uncertainty = [], []
    for i in range(len(batch)):
        ours.append(policy.infer(batch[i:i + 1]))
        uncertainty.append(policy.uncertainty())
    differences = [np.abs(np.stack(ours) - reference).ravel()]
    if own:
        differences.append(np.abs(np.asarray(uncertainty, np.float32) - own[0].numpy()[:, 0]))
    err = float(np.concatenate(differences).max())  # NaN wherever either side gave NaN
    disagreement = None
    if meta.discrete:
        disagreement = float(np.mean(np.stack(ours).argmax(1) != reference.argmax(1)))
    return EquivalenceReport(len(features), err, disagreement)


def export_bundle(net: torch.nn.Module, spec: PreprocessSpec, metadata: dict[str, Any], features: np.ndarray,
                  out_dir: Path, info: dict[str, Any] | None = None,
                  caution: Caution | None = None) -> tuple[Bundle, EquivalenceReport]:
    """`features` are preprocessed frames (N, H, W, C), at least 1,000, for the gate and the statistics;
    `caution` goes into racer.json for the car (`car.policy.warning.Caution`)."""
    if len(features) < 1000:
        raise ValueError(f"the equivalence gate needs at least 1,000 frames, got {len(features)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir} exists and is not an empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        onnx_path = export_onnx(net, spec, Path(tmp) / "model.onnx")
        staged = save_bundle(Path(tmp) / "bundle", onnx_path, metadata, spec, stats=image_stats(features), info=info,
                             caution=caution)
        report = check_equivalence(net, Policy(staged), spec, staged.metadata, features)
        staged.close()
        failed = report.max_abs_error > MAX_ABS_ERROR if report.argmax_disagreement is None \
            else report.argmax_disagreement >= MAX_ARGMAX_DISAGREEMENT
        if math.isnan(report.max_abs_error):
            raise ExportGateError(f"the exported graph gives NaN on some of {report.frames} frames: {report.to_json()}")
        if failed:
            raise ExportGateError(f"OpenVINO disagrees with torch on {report.frames} frames: {report.to_json()}")
        if out_dir.exists():
            out_dir.rmdir()
        (Path(tmp) / "bundle").rename(out_dir)
    return load_bundle(out_dir), report


def _named(checkpoint: Path) -> str:
    """How racer.json names a checkpoint: its run directory and file, `run/policy.pt`."""
    return f"{checkpoint.resolve().parent.name}/{checkpoint.name}"


def _input(spec: PreprocessSpec) -> str:
    """A network's input in words: "80x60 from row 12, 2 frame(s)"."""
    return f"{spec.width}x{spec.height} from row {spec.crop_top}, {spec.frame_stack} frame(s)"


def perception_monitor(path: Path, spec: PreprocessSpec) -> PerceptionMonitor:
    """The perception of the modular checkpoint at `path` as a monitor for networks fed by `spec`.
    ValueError naming the file when it is not a modular model's or its preprocessing differs."""
    net, monitor_spec, *_ = load_checkpoint(path)
    if not isinstance(net, ModularNet):
        raise ValueError(f"{path}: it holds a {type(net).__name__}; a monitor is a modular model's perception "
                         "(racer train --model modular)")
    if monitor_spec != spec:
        raise ValueError(f"{path}: its preprocessing is not the driving network's ({_input(monitor_spec)} against "
                         f"{_input(spec)})")
    return PerceptionMonitor(net)


def export_checkpoint(checkpoints: Path | Sequence[Path], out_dir: Path, frames: int = 1000,
                      monitor: Path | None = None, steering_scale: float = 1.0,
                      caution: Caution | None = None) -> tuple[Bundle, EquivalenceReport]:
    """`racer train` checkpoints -> bundle, gated and described on frames drawn the way the first one
    trained (same tracks, randomization, augmentation and camera).

    Several checkpoints make one ensemble graph (`MirrorExport`: the mean action, and the members'
    disagreement as the uncertainty); each must be a continuous end-to-end DAgger run trained on
    mirrored frames, with the first one's preprocessing and action space. `monitor`, a modular
    model's checkpoint with the same preprocessing, adds its perception's entropy on the newest frame
    to that uncertainty (`PerceptionMonitor`; docs/gap.md). `steering_scale` (within
    `STEERING_SCALES`, recorded in racer.json) multiplies the steering the car drives (`MirrorExport`), for
    networks that turn into corners late (models/default/MODEL_CARD.md); a scale other than 1 needs
    continuous DrivingNet checkpoints trained on mirrored frames. `caution` has the car slow down while
    its warning is high (`car.policy.warning.Caution`, racer.json's `caution`). ValueError naming the
    checkpoint that does not fit, or the scale.
    """
    paths = [Path(checkpoints)] if isinstance(checkpoints, (str, Path)) else [Path(c) for c in checkpoints]
    if not paths:
        raise ValueError("no checkpoint to export")
    check_steering_scale(steering_scale)
    if len({p.resolve() for p in paths}) < len(paths):
        raise ValueError("the same checkpoint is named twice")
    loaded = [load_checkpoint(path) for path in paths]
    net, spec, action_space, data = loaded[0]
    config = data["config"]
    info: dict[str, Any] = {"trainer": data.get("trainer", "dagger"), "config": config,
                            "steering_scale": steering_scale}
    if len(paths) == 1:
        info["checkpoint"] = paths[0].name
        reason = mirror_misfit(net, parse_metadata(action_space), config)
        if reason and monitor is not None:
            raise ValueError(f"{paths[0]}: {reason}")
        if reason and steering_scale != 1.0:
            raise ValueError(f"{paths[0]}: a steering scale needs a continuous end-to-end DAgger network trained on "
                             f"mirrored frames (racer train's default); {reason}")
    else:
        for path, member in zip(paths, loaded, strict=True):
            if reason := ensemble_misfit(member, loaded[0]):
                raise ValueError(f"{path}: {reason}")
        # the first member's config describes the bundle; the others differ only in their seeds
        info.update(checkpoints=[_named(path) for path in paths],
                    seeds=[d["config"]["seed"] for *_, d in loaded])
    graph: torch.nn.Module
    if monitor is None and steering_scale == 1.0 and len(paths) == 1:
        graph = with_uncertainty(net, parse_metadata(action_space), config)
    else:
        watch = None if monitor is None else perception_monitor(Path(monitor), spec)
        graph = MirrorExport(*(member for member, *_ in loaded), monitor=watch, steering_scale=steering_scale)
    if monitor is not None:
        info["monitor"] = _named(Path(monitor))
    features = sample_frames(spec, tuple(config["tracks"]), frames, seed=int(config["seed"]) + 1,
                             randomization=config.get("randomization"), augmentation=config.get("augmentation"),
                             camera_info=config.get("camera_info"))
    return export_bundle(graph, spec, action_space, features, out_dir, info, caution)
