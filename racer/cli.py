"""The `racer` command line: composes the car stack, the calibration tools and sim2real."""
from __future__ import annotations

import argparse
import importlib
import sys

# Top-level modules of the `train` extra (pyproject.toml), which `make demo` does not install.
TRAINING_EXTRAS = frozenset({"torch", "albumentations", "gymnasium", "onnx", "onnxruntime",
                             "matplotlib", "tqdm"})
INSTALL_TRAINING = "make train"

SUBCOMMAND_MODULES = [
    "racer.commands.demo",
    "racer.commands.car",
    "racer.commands.model",
    "racer.commands.bench",
    "racer.commands.hardware",
    "racer.commands.train",
    "racer.commands.console",
    "racer.commands.sim2real",
    "racer.commands.sim",
    "racer.commands.soak",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="racer",
        description="DeepRacer-class car stack and sim2real tools.",
    )
    parser.add_argument("--version", action="version", version=f"racer {version()}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def version() -> str:
    """The installed distribution's version (pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("racer")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:
        if exc.filename is None:
            raise
        # a file the user named cannot be read or written: one line naming it, not a traceback
        print(f"racer {args.subcommand}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        extra = (exc.name or "").partition(".")[0]
        if extra not in TRAINING_EXTRAS:
            raise
        print(f"racer {args.subcommand}: needs the training extras ({extra} is missing): run `{INSTALL_TRAINING}` "
              "in the repository (or pip install -e '.[train]')", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
