"""`racer model inspect|check|convert|predict`: validate a bundle or a DeepRacer tar.gz before it reaches the
car, convert it, and see what it does on pictures."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openvino as ov

from car.policy.bundle import Bundle, load_bundle, pack_bundle, save_bundle
from car.policy.bundle_layout import BundleError
from car.policy.inference import Policy, check_runnable
from car.policy.openvino_model import model_precision
from car.policy.preprocess import DEEPRACER_PRESETS
from car.policy.racer_json import training_tracks
from racer.commands import caution_option
from racer.model.describe import describe
from racer.model.predict import predict

# Suffixes a user may take for an archive format; convert writes only directories and .tar.gz.
OTHER_ARCHIVES = frozenset({".zip", ".tar", ".gz", ".bz2", ".xz", ".7z"})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _inspect(bundle: Bundle, args: argparse.Namespace) -> dict[str, Any]:
    return describe(bundle)


def _check(bundle: Bundle, args: argparse.Namespace) -> dict[str, Any]:
    reason = check_runnable(bundle, _compiled_cache(args))
    if reason:
        raise BundleError(reason)
    described = describe(bundle)
    return {key: described[key] for key in ("name", "kind", "input", "output")}


def _compiled_cache(args: argparse.Namespace) -> Path | None:
    return Path(args.cache_dir) / "compiled" if args.cache_dir else None


def _predict(bundle: Bundle, args: argparse.Namespace) -> dict[str, Any]:
    if args.preprocess:
        bundle = bundle.with_preprocess(args.preprocess)
    policy = Policy(bundle, _compiled_cache(args))
    return predict(policy, [Path(p) for p in args.images], Path(args.explain) if args.explain else None)


def _int8(bundle: Bundle) -> tuple[ov.Model, dict[str, Any]]:
    """The bundle's model quantized by NNCF, if it passes the equivalence gate (racer/model/quantize.py)."""
    if importlib.util.find_spec("nncf") is None:
        raise BundleError("--int8 needs NNCF: pip install 'racer[int8]'")
    from racer.model.quantize import quantize_gated  # the simulator renders its frames

    def progress(message: str) -> None:
        print(f"racer model convert: {message}", file=sys.stderr)

    model, report = quantize_gated(bundle.read_model(), bundle.spec, bundle.metadata, progress=progress)
    if model_precision(model) != "int8":
        raise BundleError("NNCF kept every layer in f32 to hold the decisions; no INT8 model written")
    if not report.passed:
        raise BundleError(f"{report.summary()}: fails the equivalence gate; no INT8 model written")
    progress(report.summary())
    return model, report.to_json()


def _has_monitor(bundle: Bundle) -> bool:
    """Whether the car can warn with this model: training-image statistics for the domain-shift score,
    or the model's own uncertainty output (`car.policy.core.PolicyCore.monitor_score`)."""
    return bundle.stats is not None or (bundle.signature is not None and bundle.signature.has_uncertainty)


def _convert(bundle: Bundle, args: argparse.Namespace) -> dict[str, Any]:
    if bundle.unrunnable:
        raise BundleError(bundle.unrunnable)
    if args.preprocess:
        bundle = bundle.with_preprocess(args.preprocess)
    out = Path(args.out)
    packing = out.name.endswith((".tar.gz", ".tgz"))
    if not packing and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not an empty directory")
    if not packing and out.suffix in OTHER_ARCHIVES:
        raise BundleError(f"--out {out}: racer writes a bundle directory, or a .tar.gz; not a {out.suffix} file")
    if not out.absolute().parent.is_dir():
        raise BundleError(f"--out {out}: the folder {out.parent} does not exist")
    caution = args.caution if "caution" in vars(args) else bundle.caution
    if caution is not None and not _has_monitor(bundle):
        raise BundleError("--caution: this model has no monitor (no training-image statistics, no uncertainty "
                          "output), so it has no warning to slow for")
    onnx = bundle.files.path if bundle.kind == "onnx" else bundle.files.onnx
    info = {**bundle.info, "converted_from": bundle.name, "source_kind": bundle.kind, "openvino": ov.__version__}
    model: ov.Model | Path = onnx or bundle.read_model()
    gate = None
    if args.int8:
        model, gate = _int8(bundle)
        info["int8_gate"] = gate
    with tempfile.TemporaryDirectory(prefix="racer-convert-") as tmp:
        target = Path(tmp) / bundle.name if packing else out
        with save_bundle(target, model=model, metadata=bundle.metadata.raw, spec=bundle.spec,
                         stats=bundle.stats, info=info, cache_dir=args.cache_dir, caution=caution) as saved:
            if packing:
                pack_bundle(saved.root, out)
                out.chmod(0o666 & ~_umask())  # as any file the user makes, not the private temporary's 0600
            return {"name": bundle.name, "out": str(out), "files": sorted(p.name for p in saved.root.iterdir()),
                    "input": describe(saved)["input"], "precision": saved.precision, "int8_gate": gate}


def _trained(info: dict[str, Any]) -> str | None:
    """One line of what `racer export` recorded in racer.json: the trainer, the ensemble's seeds, the monitor
    and the steering scale; None for a bundle racer did not export (an AWS model, a bare ONNX). Values of
    another type than racer writes (a hand-edited racer.json) are left out."""
    trainer = info.get("trainer")
    if not isinstance(trainer, str):
        return None
    seeds = info.get("seeds")
    line = f"exported by racer from {trainer}"
    if isinstance(seeds, list) and seeds:
        line += f", an ensemble of {len(seeds)} (seeds {', '.join(map(str, seeds))})"
    parts = [line]
    if info.get("monitor"):
        parts.append("a perception monitor")
    scale = info.get("steering_scale")
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        parts.append(f"steering scale {scale:g}")
    return "; ".join(parts)


def _human(action: str, result: dict[str, Any]) -> str:
    if action == "inspect":
        lines = [f"{result['name']}: {result['kind']} model {result['model_file']} ({result['precision']})",
                 f"  input  {result['input']['name']} {result['input']['shape']}",
                 f"  output {result['output']['name']} ({result['output']['size']} values)"]
        meta = result["metadata"]
        lines.append(f"  {meta['action_space_type']} {meta['training_algorithm']}, "
                     f"sensors {', '.join(meta['sensor'])}, "
                     f"max steering {meta['max_steering_deg']} deg, max speed {meta['max_speed']} m/s")
        if meta["action_space_type"] == "discrete":
            # each heading right-aligned over its column: steering from -30.0 to +30.0 deg, speed to 99.99 m/s
            lines.append(f"  {'output':>6}  {'steering':>10}  {'speed':>9}")
            lines += [f"  {a['index']:>6}  {a['steering_angle']:+6.1f} deg  {a['speed']:5.2f} m/s"
                      for a in meta["action_space"]]
        if trained := _trained(result["info"]):
            lines.append(f"  {trained}")
        if caution := result["caution"]:
            lines.append(f"  caution: {caution['speed_scale']:g} of the policy's speed while the car's warning is "
                         f"above {caution['warning']:g}")
        if tracks := training_tracks(result["info"]):
            lines.append(f"  trained on {', '.join(tracks)} (not among racer eval's default tracks)")
        shipped = result["shipped_ir"]
        if shipped and not shipped["used"]:
            lines.append(f"  {shipped['file']} beside the .pb not used: {shipped['reason']}")
        if not result["runnable"]:
            lines.append(f"  not runnable: {result['reason']}")
        return "\n".join(lines)
    if action == "check":
        return f"ok: {result['name']} ({result['kind']}) runs on this car"
    if action == "predict":
        rows = [f"{result['model']}:"]
        for p in result["predictions"]:
            chosen = (f"action {p['action']} (p={p['output'][p['action']]:.3f})" if p["action"] is not None
                      else "continuous")
            rows.append(f"  {p['image']}: {chosen}, steering {p['steering_deg']:+.1f} deg, "
                        f"speed {p['speed_mps']:.2f} m/s"
                        + (f", heatmap {p['explain']}" if "explain" in p else ""))
        return "\n".join(rows)
    return f"wrote {result['out']} ({', '.join(result['files'])}; {result['precision']})"


def _runner(action: str,
            body: Callable[[Bundle, argparse.Namespace], dict[str, Any]]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            with load_bundle(args.path, args.cache_dir) as bundle:
                result = body(bundle, args)
                if action != "predict":
                    result = {"ok": True, **result}
        except (BundleError, OSError) as exc:
            reason = str(exc) if isinstance(exc, BundleError) else f"{exc.filename}: {exc.strerror}"
            if args.json:
                print(json.dumps({"ok": False, "reason": reason}))
            else:
                print(f"racer model {action}: {reason}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(result))
        else:
            print(_human(action, result), file=sys.stderr)
        return 0

    return run


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="inspect, check, convert or try a model bundle",
                            description="Validate a racer bundle or an AWS DeepRacer model .tar.gz; convert "
                                        ".pb/ONNX to OpenVINO IR; show what a model does on pictures.")
    actions = parser.add_subparsers(dest="model_action", metavar="ACTION")
    actions.required = True
    helps = {
        "inspect": ("show what a bundle holds: model, input, output, precision, actions", _inspect),
        "check": ("exit 0 if this car can run the bundle, 1 with the reason if not", _check),
        "convert": ("write the model as an OpenVINO IR racer bundle (directory, or .tar.gz)", _convert),
        "predict": ("the model's output, chosen action, steering and speed on each picture", _predict),
    }
    presets = ("preprocessing of an AWS DeepRacer export: stock (default; the stock car's INTER_LINEAR resize "
               "and 8-bit grey) or area (INTER_AREA resize, float grey)")
    for action, (text, body) in helps.items():
        p = actions.add_parser(action, help=text, description=text)
        p.add_argument("path", metavar="MODEL" if action == "predict" else "PATH", help="bundle directory or .tar.gz")
        if action == "convert":
            p.add_argument("--out", required=True, help="new directory, or a path ending in .tar.gz")
            p.add_argument("--caution", type=caution_option, default=argparse.SUPPRESS, metavar="WARNING,SCALE",
                           help="the caution the written bundle asks the car for: drive at SCALE of the policy's "
                                "speed while the warning is above WARNING, or none (default: the bundle's own; "
                                "racer export --caution)")
            p.add_argument("--int8", action="store_true",
                           help="quantize with NNCF on simulator frames; written only if INT8 chooses the f32 action "
                                "on at least 99%% of 1,000 unseen frames (continuous: moves steering/speed by at most "
                                "0.05)")
        if action == "predict":
            p.add_argument("images", nargs="+", metavar="IMAGE", help="pictures (any size; PNG, JPEG, ...)")
            p.add_argument("--explain", metavar="DIR",
                           help="write an occlusion-sensitivity heatmap per picture to DIR (<name>.explain.png)")
        if action in ("convert", "predict"):
            p.add_argument("--preprocess", choices=sorted(DEEPRACER_PRESETS), help=presets)
        p.add_argument("--cache-dir", help="converted-model cache (default $RACER_CACHE_DIR or ~/.cache/racer/ir)")
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.set_defaults(func=_runner(action, body))
