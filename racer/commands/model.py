"""`racer model inspect|check|convert`: validate a bundle or a DeepRacer tar.gz before it reaches the car."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import openvino as ov

from car.bundle import Bundle, BundleError, load_bundle, pack_bundle, save_bundle
from car.inference import check_runnable


# Suffixes a user may take for an archive format; convert writes only directories and .tar.gz.
OTHER_ARCHIVES = frozenset({".zip", ".tar", ".gz", ".bz2", ".xz", ".7z"})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _inspect(bundle: Bundle, args: argparse.Namespace) -> dict[str, Any]:
    return bundle.describe()


def _check(bundle: Bundle, args: argparse.Namespace) -> dict[str, Any]:
    reason = check_runnable(bundle, Path(args.cache_dir) / "compiled" if args.cache_dir else None)
    if reason:
        raise BundleError(reason)
    described = bundle.describe()
    return {key: described[key] for key in ("name", "kind", "input", "output")}


def _convert(bundle: Bundle, args: argparse.Namespace) -> dict[str, Any]:
    if bundle.unrunnable:
        raise BundleError(bundle.unrunnable)
    out = Path(args.out)
    packing = out.name.endswith((".tar.gz", ".tgz"))
    if not packing and out.suffix in OTHER_ARCHIVES:
        raise BundleError(f"--out {out}: racer writes a bundle directory, or a .tar.gz; not a {out.suffix} file")
    if not out.absolute().parent.is_dir():
        raise BundleError(f"--out {out}: the folder {out.parent} does not exist")
    onnx = bundle.files.path if bundle.kind == "onnx" else bundle.files.onnx
    info = {**bundle.info, "converted_from": bundle.name, "source_kind": bundle.kind, "openvino": ov.__version__}
    with tempfile.TemporaryDirectory(prefix="racer-convert-") as tmp:
        target = Path(tmp) / bundle.name if packing else out
        with save_bundle(target, model=onnx or bundle.read_model(), metadata=bundle.metadata.raw, spec=bundle.spec,
                         stats=bundle.stats, info=info, cache_dir=args.cache_dir) as saved:
            if packing:
                pack_bundle(saved.root, out)
                out.chmod(0o666 & ~_umask())  # as any file the user makes, not the private temporary's 0600
            return {"name": bundle.name, "out": str(out), "files": sorted(p.name for p in saved.root.iterdir()),
                    "input": saved.describe()["input"]}


def _human(action: str, result: dict[str, Any]) -> str:
    if action == "inspect":
        lines = [f"{result['name']}: {result['kind']} model {result['model_file']}",
                 f"  input  {result['input']['name']} {result['input']['shape']}",
                 f"  output {result['output']['name']} ({result['output']['size']} values)"]
        meta = result["metadata"]
        lines.append(f"  {meta['action_space_type']} {meta['training_algorithm']}, sensors {', '.join(meta['sensor'])}, "
                     f"max steering {meta['max_steering_deg']} deg, max speed {meta['max_speed']} m/s")
        if not result["runnable"]:
            lines.append(f"  not runnable: {result['reason']}")
        return "\n".join(lines)
    if action == "check":
        return f"ok: {result['name']} ({result['kind']}) runs on this car"
    return f"wrote {result['out']} ({', '.join(result['files'])})"


def _runner(action: str, body: Callable[[Bundle, argparse.Namespace], dict[str, Any]]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            with load_bundle(args.path, args.cache_dir) as bundle:
                result = {"ok": True, **body(bundle, args)}
        except (BundleError, OSError) as exc:
            reason = str(exc) if isinstance(exc, BundleError) else f"{exc.filename}: {exc.strerror}"
            if args.json:
                print(json.dumps({"ok": False, "reason": reason}))
            else:
                print(f"racer model {action}: {reason}", file=sys.stderr)
            return 1
        print(json.dumps(result) if args.json else _human(action, result))
        return 0

    return run


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="inspect, check or convert a model bundle",
                            description="Validate a racer bundle or an AWS DeepRacer model .tar.gz; convert .pb/ONNX to OpenVINO IR.")
    actions = parser.add_subparsers(dest="model_action", metavar="ACTION")
    actions.required = True
    helps = {
        "inspect": ("show what a bundle holds", _inspect),
        "check": ("exit 0 if this car can run the bundle, 1 with the reason if not", _check),
        "convert": ("write the model as an OpenVINO IR racer bundle (directory, or .tar.gz)", _convert),
    }
    for action, (text, body) in helps.items():
        p = actions.add_parser(action, help=text, description=text)
        p.add_argument("path", help="bundle directory or .tar.gz")
        if action == "convert":
            p.add_argument("--out", required=True, help="new directory, or a path ending in .tar.gz")
        p.add_argument("--cache-dir", help="converted-model cache (default $RACER_CACHE_DIR or ~/.cache/racer/ir)")
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.set_defaults(func=_runner(action, body))
