"""Model bundles: what the console accepts and the policy node runs.

Two layouts load the same way (the README's "Will my AWS DeepRacer model run?"): an AWS DeepRacer
export (a frozen TensorFlow graph `*.pb` + `model_metadata.json`, converted here with OpenVINO's own TensorFlow
frontend and cached as IR) and a racer export (OpenVINO IR and/or ONNX + `model_metadata.json` +
`racer.json`). Loading validates everything the car depends on, so a bad upload is refused with a
one-line reason instead of failing on the track.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from openvino.frontend import FrontEndManager

from car.policy.archive import ArchiveError, extract, is_os_litter, write_tar_gz
from car.policy.metadata import MetadataError, ModelMetadata, parse_metadata
from car.policy.native_stderr import native_logs_silenced
from car.policy.preprocess import DEEPRACER_PRESETS, DEEPRACER_SPEC, PreprocessSpec

METADATA_FILE = "model_metadata.json"
RACER_FILE = "racer.json"
BUNDLE_FORMAT = "racer-bundle"
BUNDLE_VERSION = 1
# Sensors a car with one front camera can feed; LEFT_CAMERA and OBSERVATION are older names for it.
SINGLE_CAMERA = ("FRONT_FACING_CAMERA", "LEFT_CAMERA", "OBSERVATION")

PPO_SCOPE = "main_level/agent/main/online"
SAC_SCOPE = "main_level/agent/policy/online"
PPO_OUTPUT = f"{PPO_SCOPE}/network_1/ppo_head_0/policy"
SAC_OUTPUT = f"{SAC_SCOPE}/network_0/sac_policy_head_0/policy"


class BundleError(ValueError):
    """The bundle cannot be used; str() is the one-line reason shown to the user."""


def default_cache_dir() -> Path:
    """Where converted IR (and compiled blobs) live: $RACER_CACHE_DIR or ~/.cache/racer/ir."""
    env = os.environ.get("RACER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "racer" / "ir"


@functools.cache
def ov_core() -> ov.Core:
    """One OpenVINO Core per process: it owns the plugins and their caches."""
    return ov.Core()


def error_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def read_ov_model(path: Path) -> ov.Model:
    """IR (model.bin found beside it) or ONNX, with OpenVINO's errors as one BundleError line."""
    try:
        return ov_core().read_model(path)
    except Exception as exc:
        raise BundleError(f"cannot read {path.name}: {error_line(exc)}") from None


# A model's optional second output: its own uncertainty about the frame, one value (a modular model's
# mean per-pixel segmentation entropy, 0..1). The policy node shows it as the on-car failure warning.
UNCERTAINTY_OUTPUT = "uncertainty"


def _is_uncertainty(port: Any) -> bool:
    shape = port.get_partial_shape()
    return UNCERTAINTY_OUTPUT in port.get_names() and shape.is_static and int(np.prod(shape.to_shape())) == 1


def _shape_text(shape: Any) -> str:
    return "x".join(str(d) for d in shape)


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


def find_model(root: Path) -> ModelFiles:
    """The one model in `root`: `*.pb` (root or agent/, model.pb preferred), IR, or ONNX."""
    pbs = _files(root, "*.pb") + _files(root, "agent/*.pb")
    xmls, onnxs = _files(root, "*.xml"), _files(root, "*.onnx")

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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {path.name}: {error_line(exc)}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path.name} is not valid JSON: {exc.msg} at line {exc.lineno}") from None


def _read_metadata(root: Path) -> ModelMetadata:
    path = root / METADATA_FILE
    if not path.is_file():
        raise BundleError(f"missing {METADATA_FILE}")
    try:
        return parse_metadata(_read_json(path))
    except MetadataError as exc:
        raise BundleError(f"{METADATA_FILE}: {exc}") from None


@dataclass(frozen=True)
class RacerInfo:
    """racer.json: how frames become the input tensor, training-image statistics, free model info."""

    spec: PreprocessSpec
    stats: dict[str, Any] | None
    info: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "preprocess": self.spec.to_json(),
                "stats": self.stats, "model": self.info}

    @classmethod
    def from_json(cls, data: Any) -> RacerInfo:
        if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{RACER_FILE}: format must be {BUNDLE_FORMAT!r}")
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise BundleError(f"{RACER_FILE}: version must be a positive integer, got {version!r}")
        if version > BUNDLE_VERSION:
            raise BundleError(f"{RACER_FILE}: version {version} is newer than this racer reads ({BUNDLE_VERSION})")
        try:
            spec = PreprocessSpec.from_json(data.get("preprocess"))
        except ValueError as exc:
            raise BundleError(f"{RACER_FILE}: {exc}") from None
        stats, info = data.get("stats"), data.get("model", {})
        if stats is not None and not isinstance(stats, dict):
            raise BundleError(f"{RACER_FILE}: stats must be an object or null")
        if not isinstance(info, dict):
            raise BundleError(f"{RACER_FILE}: model must be an object")
        return cls(spec, stats, info)


def unrunnable_reason(metadata: ModelMetadata) -> str | None:
    """Why a car with one front camera cannot feed this model, or None."""
    others = [s for s in metadata.sensors if s not in SINGLE_CAMERA]
    if others:
        return f"model needs {' and '.join(others)}; this car has one front camera"
    if len(metadata.sensors) > 1:
        return f"model needs {len(metadata.sensors)} cameras; this car has one front camera"
    return None


def graph_io_names(metadata: ModelMetadata) -> tuple[tuple[str, ...], str]:
    """The DeepRacer input nodes (current, then very old) and policy output node for this metadata.

    A file without `sensor` (OBSERVATION) is an old model, whose graph names its camera
    `observation`, or one whose tool left the key out: FRONT_FACING_CAMERA is its second guess.
    """
    sac = metadata.training_algorithm == "sac"
    scope = SAC_SCOPE if sac else PPO_SCOPE
    sensor = metadata.camera_sensor
    names = ("observation", "FRONT_FACING_CAMERA") if sensor == "OBSERVATION" else (sensor, "observation")
    return tuple(f"{scope}/network_0/{n}/{n}" for n in names), SAC_OUTPUT if sac else PPO_OUTPUT


def _node(tensor_name: str) -> str:
    return re.sub(r":0$", "", tensor_name)


@dataclass(frozen=True)
class GraphIO:
    """How to cut a frozen graph: input tensor and its batch-1 shape, policy output tensor."""

    input: str
    shape: tuple[int, ...]
    output: str


def frozen_graph_io(pb: Path, metadata: ModelMetadata, spec: PreprocessSpec) -> GraphIO:
    """Find the camera input and policy output by their DeepRacer names, without converting."""
    try:
        with native_logs_silenced():
            graph = FrontEndManager().load_by_framework("tf").load(str(pb))
    except Exception as exc:
        raise BundleError(f"{pb.name} is not a TensorFlow frozen graph: {error_line(exc)}") from None
    inputs = {name: place for place in graph.get_inputs() for name in place.get_names()}
    wanted, output = graph_io_names(metadata)
    found = [f"{node}:0" for node in wanted if f"{node}:0" in inputs]
    if found:
        tensor = found[0]
    elif len(graph.get_inputs()) == 1:
        tensor = graph.get_inputs()[0].get_names()[0]
    else:
        raise BundleError(f"{pb.name} has inputs {sorted(_node(n) for n in inputs)}, none is {wanted[0]}")
    placeholder = graph.get_partial_shape(inputs[tensor])
    expected = spec.input_shape()
    if placeholder.rank.is_static and len(placeholder) == len(expected):
        shape = tuple(d.get_length() if d.is_static else e for d, e in zip(placeholder, expected, strict=True))
    else:
        shape = expected
    if graph.get_place_by_tensor_name(f"{output}:0") is not None:
        out_tensor = f"{output}:0"
    elif len(graph.get_outputs()) == 1:
        out_tensor = graph.get_outputs()[0].get_names()[0]
    else:
        raise BundleError(f"{pb.name} has no {output} output")
    return GraphIO(tensor, shape, out_tensor)


def convert_frozen_graph(pb: Path, io: GraphIO) -> ov.Model:
    """OpenVINO's TensorFlow frontend on the .pb itself: no TensorFlow needed on the car."""
    try:
        with native_logs_silenced():
            return ov.convert_model(str(pb), input=[(io.input, list(io.shape), ov.Type.f32)], output=io.output)
    except Exception as exc:
        raise BundleError(f"OpenVINO cannot convert {pb.name}: {error_line(exc)}") from None


def _ov_tag() -> str:
    return "ov-" + re.sub(r"[^A-Za-z0-9.-]+", "_", ov.__version__)


# Where racer records, in the IR it converts, the sha256 of the .pb it came from: an IR shipped
# beside a .pb is used instead of converting only when it names that .pb.
SOURCE_RT_INFO = ["racer", "source_sha256"]


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ir_source_sha256(model: ov.Model) -> str | None:
    """The .pb sha256 racer wrote into this IR when converting it, or None (not racer's, or older)."""
    return model.get_rt_info(SOURCE_RT_INFO).astype(str) if model.has_rt_info(SOURCE_RT_INFO) else None


def cached_ir(pb: Path, io: GraphIO, cache_dir: Path) -> Path:
    """model.xml converted from `pb`, keyed by the .pb's sha256, the cut and the OpenVINO version."""
    digest = file_sha256(pb)
    cut = hashlib.sha256(f"{io.input}\n{io.shape}\n{io.output}".encode()).hexdigest()[:8]
    entry = cache_dir / _ov_tag() / f"{digest}-{cut}"
    xml = entry / "model.xml"
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return xml
    model = convert_frozen_graph(pb, io)
    model.set_rt_info(digest, SOURCE_RT_INFO)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=entry.parent))
    try:
        ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(staging, entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not xml.is_file():
            raise
    return xml


def model_precision(model: ov.Model) -> str:
    """"int8" (quantized: FakeQuantize, or int8 weights), "f16" (weights compressed to fp16) or "f32"."""
    ops = model.get_ops()
    if any(op.get_type_name() == "FakeQuantize" for op in ops):
        return "int8"
    weights = {op.get_element_type() for op in ops if op.get_type_name() == "Constant"}
    if weights & {ov.Type.i8, ov.Type.u8}:
        return "int8"
    return "f16" if ov.Type.f16 in weights else "f32"


def bundle_name(source: Path) -> str:
    """A bundle's name: its folder's, or its archive's without `.tar.gz`; the `bundle` folder of a
    `racer train` run (RUN/bundle beside RUN/policy.pt) is named after the run, as its archive is."""
    path = source.resolve()
    if path.name == "bundle" and (path.parent / "policy.pt").is_file():
        return path.parent.name
    return re.sub(r"\.(tar\.gz|tgz)$", "", path.name)


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
                self.spec = dataclasses.replace(self.spec, input_name=_node(self._graph_io.input))
        if self._ir is None or not self._ir.is_file():
            self._ir = self._current_shipped_ir() or cached_ir(self.files.path, self._graph_io, self.cache_dir)
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
            self._check_input(model)
            self._check_output(model)
        except BundleError as exc:
            self.shipped_ir_reason = str(exc)
            return None
        return xml

    def use_preprocess(self, preset: str) -> None:
        """Feed an AWS DeepRacer export with another DEEPRACER_PRESETS entry ("stock", "area").

        racer bundles carry their training's preprocessing in racer.json, so they refuse this.
        """
        if self.is_racer_bundle:
            raise BundleError(f"{self.name} carries its own preprocessing ({RACER_FILE}); "
                              "presets are for AWS DeepRacer exports")
        if preset not in DEEPRACER_PRESETS:
            raise BundleError(f"unknown preprocessing {preset!r}; choose from {', '.join(DEEPRACER_PRESETS)}")
        self.spec = dataclasses.replace(DEEPRACER_PRESETS[preset], input_name=self.spec.input_name)

    def read_model(self) -> ov.Model:
        """A fresh openvino.Model with the input fixed to the spec's shape where it was dynamic."""
        return self._read(self._model_file())

    def _read(self, path: Path) -> ov.Model:
        model = read_ov_model(path)
        if len(model.inputs) == 1 and model.input(0).get_partial_shape().is_dynamic:
            expected = self.spec.input_shape()
            shape = model.input(0).get_partial_shape()
            if shape.rank.is_static and len(shape) == len(expected):
                model.reshape({model.input(0): ov.PartialShape(list(expected))})
        return model

    def _validate(self) -> None:
        model = self.read_model()
        self.precision = model_precision(model)
        self.input_name, self.input_shape = self._check_input(model)
        self.output_name, self.output_size = self._check_output(model)
        if self.files.onnx is not None:
            onnx = self._read(self.files.onnx)
            if (self._check_input(onnx)[1], self._check_output(onnx)[1]) != (self.input_shape, self.output_size):
                raise BundleError(f"{self.files.onnx.name} and {self.files.path.name} differ in input or output shape")

    def _check_input(self, model: ov.Model) -> tuple[str, tuple[int, ...]]:
        if len(model.inputs) != 1:
            raise BundleError(f"model has {len(model.inputs)} inputs; the car feeds one camera tensor")
        port = model.input(0)
        expected = self.spec.input_shape()
        shape = port.get_partial_shape()
        if shape.is_dynamic or tuple(shape.to_shape()) != expected:
            raise BundleError(f"model input {_shape_text(shape)} does not match the preprocessing "
                              f"{_shape_text(expected)}")
        if port.get_element_type() != ov.Type.f32:
            raise BundleError(f"model input is {port.get_element_type().get_type_name()}; the car feeds f32")
        names = port.get_names()
        wanted = self.spec.input_name
        if wanted and not {wanted, f"{wanted}:0"} & names:
            raise BundleError(f"racer.json names input {wanted!r}, the model's is {port.get_any_name()!r}")
        return (wanted or port.get_any_name()), expected

    def _check_output(self, model: ov.Model) -> tuple[str, int]:
        """The policy output (the first); a second output is allowed only as the model's own
        `UNCERTAINTY_OUTPUT`, one value per frame (a modular model's perception, `car.policy.inference`)."""
        extra = model.outputs[1:]
        if not model.outputs or len(extra) > 1 or (extra and not _is_uncertainty(extra[0])):
            raise BundleError(f"model has {len(model.outputs)} outputs; a policy has one "
                              f"(and at most one more: {UNCERTAINTY_OUTPUT!r}, one value)")
        port = model.output(0)
        shape = port.get_partial_shape()
        if shape.is_dynamic:
            raise BundleError(f"model output shape {shape} is not fixed")
        size = int(np.prod(shape.to_shape()))
        need = self.metadata.output_size()
        if size != need:
            what = (f"{need} discrete actions" if self.metadata.discrete
                    else "2 (steering, speed) for a continuous action space")
            raise BundleError(f"model gives {size} outputs but model_metadata.json needs {what}")
        return _node(port.get_any_name()), size

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
        return {"file": xml.relative_to(self.root).as_posix(), "used": self._ir == xml,
                "reason": self.shipped_ir_reason}

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Bundle:
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
        metadata = _read_metadata(root)
        racer_path = root / RACER_FILE
        racer = RacerInfo.from_json(_read_json(racer_path)) if racer_path.is_file() else None
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
