"""Model bundles: what the console accepts and the policy node runs.

Two layouts load the same way (the README's "Will my AWS DeepRacer model run?"): an AWS DeepRacer
export (a frozen TensorFlow graph `*.pb` + `model_metadata.json`, converted here with OpenVINO's own TensorFlow
frontend and cached as IR) and a racer export (OpenVINO IR and/or ONNX + `model_metadata.json` +
`racer.json`). Loading validates everything the car depends on, so a bad upload is refused with a
one-line reason instead of failing on the track.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import openvino as ov

from car.policy.archive import ArchiveError, extract, write_tar_gz
from car.policy.aws_graph import GraphIO, convert_frozen_graph, frozen_graph_io, tensor_node
from car.policy.bundle_layout import BundleError, ModelFiles, bundle_name, content_root, find_model
from car.policy.ir_cache import cached_ir, default_cache_dir, file_sha256, ir_source_sha256
from car.policy.metadata import (
    METADATA_FILE,
    MetadataError,
    ModelMetadata,
    load_metadata,
    parse_metadata,
    unrunnable_reason,
)
from car.policy.openvino_model import model_precision, read_ov_model
from car.policy.preprocess import DEEPRACER_PRESETS, DEEPRACER_SPEC, PreprocessSpec
from car.policy.racer_json import RACER_FILE, RacerInfo, read_racer_json
from car.policy.signature import check_input, check_output, check_signature


class Bundle:
    """A loaded and validated bundle. Archives are unpacked to a private temp dir kept until close()."""

    def __init__(self, source: Path, root: Path, files: ModelFiles, metadata: ModelMetadata,
                 racer: RacerInfo | None, cache_dir: Path, tmp: tempfile.TemporaryDirectory | None):
        self.source = source
        self.name = bundle_name(source)
        self.root = root
        self.files = files
        self.kind = files.kind
        self.metadata = metadata
        self.spec = racer.spec if racer else DEEPRACER_SPEC
        self.stats = racer.stats if racer else None
        self.info = racer.info if racer else {}
        self.is_racer_bundle = racer is not None
        self.unrunnable = unrunnable_reason(metadata)
        self.cache_dir = cache_dir
        self.input_name: str | None = None
        self.output_name: str | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.output_size: int | None = None
        self.precision: str | None = None
        self._graph_io: GraphIO | None = None
        self._ir: Path | None = None
        self.shipped_ir_reason: str | None = None
        self._tmp = tmp

    def _model_file(self) -> Path:
        if self.kind != "tensorflow":
            return self.files.path
        if self.unrunnable:
            raise BundleError(self.unrunnable)
        if self._graph_io is None:
            self._graph_io = frozen_graph_io(self.files.path, self.metadata, self.spec)
            if not self.is_racer_bundle:
                self.spec = dataclasses.replace(self.spec, input_name=tensor_node(self._graph_io.input))
        if self._ir is None or not self._ir.is_file():
            pb, io = self.files.path, self._graph_io
            self._ir = self._current_shipped_ir() or cached_ir(pb, io.key(), lambda: convert_frozen_graph(pb, io),
                                                               self.cache_dir)
        return self._ir

    def _current_shipped_ir(self) -> Path | None:
        """The IR shipped beside the .pb if it was converted from this very .pb and passes the
        input/output checks; otherwise None, with `shipped_ir_reason` saying why it is not used."""
        xml = self.files.shipped_ir
        if xml is None:
            return None
        try:
            model = self._read(xml)
            if ir_source_sha256(model) != file_sha256(self.files.path):
                raise BundleError(f"{xml.name} is not recorded as converted from this {self.files.path.name}")
            check_input(model, self.spec)
            check_output(model, self.metadata)
        except BundleError as exc:
            self.shipped_ir_reason = str(exc)
            return None
        return xml

    def use_preprocess(self, preset: str) -> None:
        """Feed an AWS DeepRacer export with another DEEPRACER_PRESETS entry ("stock", "area").

        racer bundles carry their training's preprocessing in racer.json, so they refuse this.
        """
        if self.is_racer_bundle:
            raise BundleError(f"{self.name} carries its own preprocessing ({RACER_FILE}); presets are for AWS DeepRacer exports")
        if preset not in DEEPRACER_PRESETS:
            raise BundleError(f"unknown preprocessing {preset!r}; choose from {', '.join(DEEPRACER_PRESETS)}")
        self.spec = dataclasses.replace(DEEPRACER_PRESETS[preset], input_name=self.spec.input_name)

    def read_model(self) -> ov.Model:
        """A fresh openvino.Model with the input fixed to the spec's shape where it was dynamic."""
        return self._read(self._model_file())

    def _read(self, path: Path) -> ov.Model:
        return read_ov_model(path, self.spec.input_shape())

    def _validate(self) -> None:
        model = self.read_model()
        self.precision = model_precision(model)
        sig = check_signature(model, self.spec, self.metadata)
        self.input_name, self.input_shape, self.output_name, self.output_size = (
            sig.input_name, sig.input_shape, sig.output_name, sig.output_size)
        if self.files.onnx is not None:
            onnx = check_signature(self._read(self.files.onnx), self.spec, self.metadata)
            if (onnx.input_shape, onnx.output_size) != (self.input_shape, self.output_size):
                raise BundleError(f"{self.files.onnx.name} and {self.files.path.name} differ in input or output shape")

    def describe(self) -> dict[str, Any]:
        """Everything `racer model inspect` shows, JSON-ready."""
        meta = self.metadata
        if meta.discrete:
            space: Any = [{"index": i, "steering_angle": a.steering_deg, "speed": a.speed}
                          for i, a in enumerate(meta.actions)]
        else:
            space = {"steering_angle": {"low": meta.steering.low, "high": meta.steering.high},
                     "speed": {"low": meta.speed.low, "high": meta.speed.high}}
        return {
            "name": self.name,
            "source": str(self.source),
            "kind": self.kind,
            "model_file": self.files.path.relative_to(self.root).as_posix(),
            "onnx_file": self.files.onnx.relative_to(self.root).as_posix() if self.files.onnx else None,
            "shipped_ir": self._shipped_ir_json(),
            "runnable": self.unrunnable is None,
            "reason": self.unrunnable,
            "input": {"name": self.input_name, "shape": list(self.input_shape) if self.input_shape else None},
            "output": {"name": self.output_name, "size": self.output_size},
            "precision": self.precision,
            "preprocess": self.spec.to_json(),
            "metadata": {
                "action_space_type": meta.action_space_type,
                "training_algorithm": meta.training_algorithm,
                "sensor": list(meta.sensors),
                "neural_network": meta.neural_network,
                "version": meta.version,
                "action_space": space,
                "max_steering_deg": meta.max_steering_deg,
                "max_speed": meta.max_speed,
            },
            "stats": self.stats,
            "info": self.info,
        }

    def _shipped_ir_json(self) -> dict[str, Any] | None:
        xml = self.files.shipped_ir
        if xml is None:
            return None
        return {"file": xml.relative_to(self.root).as_posix(), "used": self._ir == xml, "reason": self.shipped_ir_reason}

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_bundle(path: str | Path, cache_dir: str | Path | None = None, validate: bool = True) -> Bundle:
    """Open a bundle directory or .tar.gz and validate it against its metadata and spec.

    Raises BundleError for anything broken. A model for sensors this car lacks still loads (so it
    can be inspected), with `unrunnable` saying why it cannot drive. `validate=False` checks the
    files and metadata only and leaves OpenVINO out (for a model not yet through car.policy.sandbox).
    """
    source = Path(path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tmp = None
    if source.is_dir():
        root = source
    elif source.is_file():
        tmp = tempfile.TemporaryDirectory(prefix="racer-bundle-")
        try:
            extract(source, tmp.name)
        except ArchiveError as exc:
            tmp.cleanup()
            raise BundleError(str(exc)) from None
        root = Path(tmp.name)
    else:
        raise BundleError(f"no such file or directory: {source}")
    try:
        root = content_root(root)
        files = find_model(root)
        try:
            metadata = load_metadata(root / METADATA_FILE)
        except MetadataError as exc:
            raise BundleError(str(exc)) from None
        racer = read_racer_json(root)
        bundle = Bundle(source, root, files, metadata, racer, cache, tmp)
        if validate and bundle.unrunnable is None:
            bundle._validate()
        return bundle
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")


def save_bundle(out_dir: str | Path, model: ov.Model | str | Path, metadata: Mapping[str, Any] | ModelMetadata,
                spec: PreprocessSpec, stats: Mapping[str, Any] | None = None,
                info: Mapping[str, Any] | None = None, cache_dir: str | Path | None = None) -> Bundle:
    """Write a racer bundle directory and return it loaded, so what is written is known to load.

    `model` is an openvino.Model or a path OpenVINO reads (.onnx, .xml); an .onnx is also copied
    as model.onnx. IR is saved in full f32 (no fp16 compression: outputs must match training).
    `out_dir` must be new or empty; on a validation failure it is left as it was.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not an empty directory")
    raw = metadata.raw if isinstance(metadata, ModelMetadata) else dict(metadata)
    try:
        parse_metadata(raw)
    except MetadataError as exc:
        raise BundleError(f"{METADATA_FILE}: {exc}") from None
    source = None if isinstance(model, ov.Model) else Path(model)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        ov_model = model if source is None else read_ov_model(source)
        ov.save_model(ov_model, out / "model.xml", compress_to_fp16=False)
        if source is not None and source.suffix == ".onnx":
            shutil.copyfile(source, out / "model.onnx")
        _dump_json(out / METADATA_FILE, raw)
        _dump_json(out / RACER_FILE, RacerInfo(spec, dict(stats) if stats is not None else None,
                                                dict(info or {})).to_json())
        return load_bundle(out, cache_dir)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for child in out.iterdir():
                child.unlink()
        raise


def pack_bundle(bundle_dir: str | Path, out_tar_gz: str | Path) -> Path:
    """The bundle directory's files as a reproducible .tar.gz, files at the archive root."""
    root = Path(bundle_dir)
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
    if not files:
        raise BundleError(f"{root} holds no files to pack")
    return write_tar_gz(out_tar_gz, files)
