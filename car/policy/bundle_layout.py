"""A bundle's layout: where its model file is, how it is named, and the one-line BundleError.

A bundle is a folder (or a .tar.gz of one) holding one model file (`*.pb` with an optional IR
beside it, OpenVINO IR, or ONNX), `model_metadata.json` (`car.policy.metadata`) and, for a racer
export, `racer.json` (`car.policy.racer_json`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from car.policy.archive import is_os_litter


class BundleError(ValueError):
    """The bundle cannot be used; str() is the one-line reason shown to the user."""


def bundle_name(source: Path) -> str:
    """A bundle's name: its folder's, or its archive's without `.tar.gz`; the `bundle` folder of a
    `racer train` run (RUN/bundle beside RUN/policy.pt) is named after the run, as its archive is."""
    path = source.resolve()
    if path.name == "bundle" and (path.parent / "policy.pt").is_file():
        return path.parent.name
    return re.sub(r"\.(tar\.gz|tgz)$", "", path.name)


@dataclass(frozen=True)
class ModelFiles:
    """The model inside a bundle; racer bundles may carry ONNX beside the IR (for benchmarks), and
    a `.pb` may come with the IR a stock car, DREM or racer converted it to (`shipped_ir`)."""

    kind: str
    path: Path
    onnx: Path | None = None
    shipped_ir: Path | None = None


def _files(root: Path, pattern: str) -> list[Path]:
    """Matching files, skipping hidden ones and operating-system litter such as macOS `._model.pb`."""
    return sorted(p for p in root.glob(pattern)
                  if p.is_file() and not p.name.startswith(".") and not is_os_litter(p.relative_to(root).as_posix()))


def _openvino_ir(path: Path) -> bool:
    """Whether an .xml file is OpenVINO IR (its root element is <net>), not another tool's XML such
    as a ROS package.xml in a folder given by mistake."""
    with path.open("rb") as f:
        return re.search(rb"<net\b", f.read(4096)) is not None


def find_model(root: Path) -> ModelFiles:
    """The one model in `root`: `*.pb` (root or agent/, model.pb preferred), IR, or ONNX."""
    pbs = _files(root, "*.pb") + _files(root, "agent/*.pb")
    xmls, onnxs = [p for p in _files(root, "*.xml") if _openvino_ir(p)], _files(root, "*.onnx")

    def listed(paths: list[Path]) -> str:
        return f"{len(paths)} model files ({', '.join(p.relative_to(root).as_posix() for p in paths)})"

    if pbs and (onnxs or len(xmls) > 1):
        raise BundleError(f"{listed(pbs + xmls + onnxs)}; a bundle holds one model")
    if pbs:
        chosen = [p for p in pbs if p.name == "model.pb"] or pbs
        if len(chosen) > 1:
            raise BundleError(f"{listed(chosen)}; keep one, or name the one to run model.pb")
        return ModelFiles("tensorflow", chosen[0], shipped_ir=xmls[0] if xmls else None)
    if len(xmls) > 1 or len(onnxs) > 1:
        raise BundleError(f"{listed(xmls + onnxs)}; a bundle holds one model")
    if xmls:
        weights = xmls[0].with_suffix(".bin")
        if not weights.is_file():
            raise BundleError(f"{xmls[0].name} has no {weights.name} beside it")
        return ModelFiles("openvino", xmls[0], onnxs[0] if onnxs else None)
    if onnxs:
        return ModelFiles("onnx", onnxs[0])
    raise BundleError("no model file (model.pb, model.xml + model.bin, or model.onnx)")


def content_root(root: Path) -> Path:
    """Step into a single top-level folder, as left by `tar czf x.tar.gz folder/` (a Mac's tar adds
    `._folder` beside it; unpacked folders may hold `__MACOSX/` or `.DS_Store`)."""
    entries = [p for p in root.iterdir() if not is_os_litter(p.name)]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name != "agent":
        return entries[0]
    return root
