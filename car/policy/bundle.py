"""Model bundles: what the console accepts and the policy node runs, loaded, saved and packed.

Two layouts load the same way (the README's "Will my AWS DeepRacer model run?"): an AWS DeepRacer
export (a frozen TensorFlow graph `*.pb` + `model_metadata.json`, converted with OpenVINO's own
TensorFlow frontend, `car.policy.aws_graph`, and cached as IR, `car.policy.ir_cache`) and a racer
export (OpenVINO IR and/or ONNX + `model_metadata.json` + `racer.json`). Loading resolves and
validates everything the car depends on, so a bad upload is refused with a one-line reason instead
of failing on the track, and a loaded Bundle never changes afterwards.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from car.policy.signature import Signature, check_input, check_output, check_signature
from car.policy.warning import Caution


@dataclass(frozen=True, eq=False)
class Bundle:
    """A loaded bundle, resolved completely by `load_bundle` and never changed afterwards.

    `spec` is the preprocessing the model is fed with (racer.json's, else the stock car's with the
    frozen graph's input name). `model_file` is what `read_model` reads: the bundle's IR or ONNX,
    or for a `.pb` the IR shipped beside it or converted into the cache. `model_file`, `signature`
    and `precision` are None when the bundle was loaded with `validate=False` or cannot drive
    (`unrunnable` says why). An archive is unpacked to a private temp dir kept until close().
    """

    source: Path
    name: str
    root: Path
    files: ModelFiles
    metadata: ModelMetadata
    spec: PreprocessSpec
    stats: dict[str, Any] | None
    info: dict[str, Any]
    is_racer_bundle: bool
    unrunnable: str | None
    cache_dir: Path
    model_file: Path | None = None
    graph_io: GraphIO | None = None
    signature: Signature | None = None
    precision: str | None = None
    shipped_ir_reason: str | None = None
    caution: Caution | None = None
    unpacked: tempfile.TemporaryDirectory | None = dataclasses.field(default=None, repr=False)

    @property
    def kind(self) -> str:
        """"tensorflow" (an AWS DeepRacer .pb), "openvino" (IR) or "onnx"."""
        return self.files.kind

    def with_preprocess(self, preset: str) -> Bundle:
        """This AWS DeepRacer export fed with another DEEPRACER_PRESETS entry ("stock", "area"); the
        presets share the input shape, so the resolved model stays valid.

        racer bundles carry their training's preprocessing in racer.json, so they refuse this.
        """
        if self.is_racer_bundle:
            raise BundleError(f"{self.name} carries its own preprocessing ({RACER_FILE}); "
                              "presets are for AWS DeepRacer exports")
        if preset not in DEEPRACER_PRESETS:
            raise BundleError(f"unknown preprocessing {preset!r}; choose from {', '.join(DEEPRACER_PRESETS)}")
        return dataclasses.replace(self, spec=dataclasses.replace(DEEPRACER_PRESETS[preset],
                                                                  input_name=self.spec.input_name))

    def read_model(self) -> ov.Model:
        """A fresh openvino.Model of `model_file`, the input fixed to the spec's shape where it was dynamic."""
        if self.unrunnable:
            raise BundleError(self.unrunnable)
        if self.model_file is None:
            raise BundleError(f"{self.name} was loaded without validation; load it again to run it")
        path = self.model_file
        if self.graph_io is not None and not path.is_file():  # the IR cache was cleared since load
            path = _cached_ir(self.files.path, self.graph_io, self.cache_dir)
        return read_ov_model(path, self.spec.input_shape())

    def close(self) -> None:
        """Remove the folder an archive was unpacked to (shared with `with_preprocess`'s copies)."""
        if self.unpacked is not None:
            self.unpacked.cleanup()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cached_ir(pb: Path, io: GraphIO, cache_dir: Path) -> Path:
    return cached_ir(pb, io.key(), lambda: convert_frozen_graph(pb, io), cache_dir)


def _shipped_ir(files: ModelFiles, metadata: ModelMetadata, spec: PreprocessSpec) -> tuple[Path | None, str | None]:
    """(the IR shipped beside the .pb, None) if it was converted from this very .pb and passes the
    input/output checks; otherwise (None, why it is not used) or (None, None) when there is none."""
    xml = files.shipped_ir
    if xml is None:
        return None, None
    try:
        model = read_ov_model(xml, spec.input_shape())
        if ir_source_sha256(model) != file_sha256(files.path):
            raise BundleError(f"{xml.name} is not recorded as converted from this {files.path.name}")
        check_input(model, spec)
        check_output(model, metadata)
    except BundleError as exc:
        return None, str(exc)
    return xml, None


def _resolved(bundle: Bundle) -> Bundle:
    """`bundle` with its model file found (a .pb's graph cut, the shipped or cached IR) and checked
    against its spec and metadata: signature, precision, and the ONNX beside the IR agreeing."""
    files, spec = bundle.files, bundle.spec
    model_file, graph_io, shipped_reason = files.path, None, None
    if files.kind == "tensorflow":
        graph_io = frozen_graph_io(files.path, bundle.metadata, spec)
        if not bundle.is_racer_bundle:
            spec = dataclasses.replace(spec, input_name=tensor_node(graph_io.input))
        shipped, shipped_reason = _shipped_ir(files, bundle.metadata, spec)
        model_file = shipped or _cached_ir(files.path, graph_io, bundle.cache_dir)
    model = read_ov_model(model_file, spec.input_shape())
    signature = check_signature(model, spec, bundle.metadata)
    if files.onnx is not None:
        onnx = check_signature(read_ov_model(files.onnx, spec.input_shape()), spec, bundle.metadata)
        if (onnx.input_shape, onnx.output_size) != (signature.input_shape, signature.output_size):
            raise BundleError(f"{files.onnx.name} and {files.path.name} differ in input or output shape")
    return dataclasses.replace(bundle, spec=spec, model_file=model_file, graph_io=graph_io, signature=signature,
                               precision=model_precision(model), shipped_ir_reason=shipped_reason)


def load_bundle(path: str | Path, cache_dir: str | Path | None = None, validate: bool = True) -> Bundle:
    """Open a bundle directory or .tar.gz, resolve its model and validate it against its metadata and spec.

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
        bundle = Bundle(source=source, name=bundle_name(source), root=root, files=files, metadata=metadata,
                        spec=racer.spec if racer else DEEPRACER_SPEC, stats=racer.stats if racer else None,
                        info=racer.info if racer else {}, is_racer_bundle=racer is not None,
                        caution=racer.caution if racer else None,
                        unrunnable=unrunnable_reason(metadata), cache_dir=cache, unpacked=tmp)
        return _resolved(bundle) if validate and bundle.unrunnable is None else bundle
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
                info: Mapping[str, Any] | None = None, cache_dir: str | Path | None = None,
                caution: Caution | None = None) -> Bundle:
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
                                                dict(info or {}), caution).to_json())
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
