"""`racer.json`, the file a racer export adds beside `model_metadata.json`: how camera frames become
the model's input tensor (`car.policy.preprocess.PreprocessSpec`), the training images' statistics
(for the on-car domain-shift monitor, `car.policy.shift`), the caution the car drives with when its
warning is high (`car.policy.warning.Caution`, optional) and free information about the model."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from car.policy.bundle_layout import BundleError
from car.policy.metadata import json_limit
from car.policy.preprocess import PreprocessSpec
from car.policy.warning import Caution

RACER_FILE = "racer.json"
BUNDLE_FORMAT = "racer-bundle"
# The newest racer.json this racer reads. A bundle with a caution is written as version 2, so a car
# too old to apply it refuses the bundle instead of driving it at full speed; one without stays 1.
BUNDLE_VERSION = 2
CAUTION_VERSION = 2


@dataclass(frozen=True)
class RacerInfo:
    """racer.json: how frames become the input tensor, training-image statistics, free model info,
    and the caution, if any (a bundle without one drives at the speed its policy asks for)."""

    spec: PreprocessSpec
    stats: dict[str, Any] | None
    info: dict[str, Any]
    caution: Caution | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"format": BUNDLE_FORMAT, "version": 1, "preprocess": self.spec.to_json(),
                "stats": self.stats, "model": self.info}
        if self.caution is None:
            return data
        return {**data, "version": CAUTION_VERSION, "caution": self.caution.to_json()}

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
        try:
            caution = None if data.get("caution") is None else Caution.from_json(data["caution"])
        except ValueError as exc:
            raise BundleError(f"{RACER_FILE}: {exc}") from None
        return cls(spec, stats, info, caution)


def training_tracks(info: dict[str, Any]) -> tuple[str, ...]:
    """The tracks a racer export's model info (racer.json's `model`) records it trained on, from its
    training config: built-in names or outline files' paths. Entries that cannot be a track's name (not
    a string, empty, a line break) are left out, as is a value that is not a list (a hand-edited file)."""
    config = info.get("config")
    tracks = config.get("tracks") if isinstance(config, dict) else None
    if not isinstance(tracks, list):
        return ()
    return tuple(t for t in tracks if isinstance(t, str) and t and t.isprintable())


def read_racer_json(root: Path) -> RacerInfo | None:
    """The bundle's racer.json, or None for a bundle without one (an AWS DeepRacer export)."""
    path = root / RACER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleError(f"cannot read {RACER_FILE}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise BundleError(f"cannot read {RACER_FILE}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{RACER_FILE} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:  # an integer past Python's digit limit; nesting past the stack
        raise BundleError(f"{RACER_FILE} cannot be read: {json_limit(exc)}") from None
    return RacerInfo.from_json(data)
