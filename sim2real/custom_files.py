"""A DeepRacer-for-Cloud `custom_files/` folder, read unchanged: `reward_function.py`,
`model_metadata.json` and `hyperparameters.json`, checked against the AWS console's limits.

The limits and defaults are the console's (docs/training.md, from DRoA's console code and the
DRfC defaults): discrete 2-30 actions, speed 0.1-4 m/s, steering -30..30 deg; continuous speed
within 0.5-4 m/s; batch size 32/64/128/256/512, 3-10 epochs, learning rate 1e-8..1e-3, entropy
0..1, discount 0..1, loss huber or mean squared error, 5-100 episodes between policy updates.
Every refusal is a `CustomFilesError` whose message is one line naming the file and the field.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from car.policy.metadata import MetadataError, ModelMetadata, parse_metadata

REWARD_FILE = "reward_function.py"
METADATA_FILE = "model_metadata.json"
HYPERPARAMETERS_FILE = "hyperparameters.json"

# The console's networks (simapp's camera embedders); the names are model_metadata's `neural_network`.
NETWORKS = ("DEEP_CONVOLUTIONAL_NETWORK_SHALLOW", "DEEP_CONVOLUTIONAL_NETWORK")
MIN_ACTIONS, MAX_ACTIONS = 2, 30
DISCRETE_SPEED = (0.1, 4.0)
CONTINUOUS_SPEED = (0.5, 4.0)
STEERING = (-30.0, 30.0)

BATCH_SIZES = (32, 64, 128, 256, 512)
LOSS_TYPES = ("huber", "mean squared error")
# Keys DRfC's hyperparameters.json carries that PPO here does not use (exploration and SAC settings,
# DRfC's own stop conditions are read): accepted so a DRfC folder trains unchanged.
IGNORED_KEYS = ("e_greedy_value", "epsilon_steps", "exploration_type", "sac_alpha")

# DRoA's default action space: 5 steering angles x 2 speeds.
DEFAULT_METADATA: dict[str, Any] = {
    "action_space": [{"steering_angle": float(a), "speed": s} for s in (0.5, 1.0) for a in (-30, -15, 0, 15, 30)],
    "sensor": ["FRONT_FACING_CAMERA"],
    "neural_network": "DEEP_CONVOLUTIONAL_NETWORK_SHALLOW",
    "training_algorithm": "clipped_ppo",
    "action_space_type": "discrete",
    "version": "5",
}


class CustomFilesError(ValueError):
    """A custom_files folder the console would refuse; the message is `FILE: field: reason`."""


@dataclass(frozen=True)
class Hyperparameters:
    """The console's hyperparameters, its JSON keys and defaults (epochs and discount as DRoA)."""

    batch_size: int = 64
    num_epochs: int = 10
    lr: float = 3e-4
    beta_entropy: float = 0.01
    discount_factor: float = 0.99
    loss_type: str = "huber"
    num_episodes_between_training: int = 20
    stack_size: int = 1
    term_cond_avg_score: float | None = None
    term_cond_max_episodes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def parse_hyperparameters(data: Any, source: str = HYPERPARAMETERS_FILE) -> Hyperparameters:
    """`hyperparameters.json`'s object -> Hyperparameters; missing keys take the console's defaults.
    DRfC writes "mean_squared_error" as often as the console's "mean squared error": both are read."""
    if not isinstance(data, dict):
        raise CustomFilesError(f"{source}: must hold a JSON object")

    def bad(key: str, reason: str) -> CustomFilesError:
        return CustomFilesError(f"{source}: {key}: {data[key]!r} {reason}")

    values: dict[str, Any] = {}
    known = set(Hyperparameters.__dataclass_fields__) | set(IGNORED_KEYS)
    for key in data:
        if key not in known:
            raise CustomFilesError(f"{source}: {key}: not a console hyperparameter "
                                   f"(known: {', '.join(sorted(known))})")
    if "batch_size" in data:
        if not _integer(data["batch_size"]) or int(data["batch_size"]) not in BATCH_SIZES:
            raise bad("batch_size", f"is not one of {', '.join(map(str, BATCH_SIZES))}")
        values["batch_size"] = int(data["batch_size"])
    for key, low, high in (("num_epochs", 3, 10), ("num_episodes_between_training", 5, 100)):
        if key in data:
            if not _integer(data[key]) or not low <= data[key] <= high:
                raise bad(key, f"is not a whole number in {low}-{high}")
            values[key] = int(data[key])
    for key, low, high in (("lr", 1e-8, 1e-3), ("beta_entropy", 0.0, 1.0), ("discount_factor", 0.0, 1.0)):
        if key in data:
            if not _is_number(data[key]) or not low <= data[key] <= high:
                raise bad(key, f"is not a number in {low:g}-{high:g}")
            values[key] = float(data[key])
    if "loss_type" in data:
        loss = data["loss_type"].replace("_", " ") if isinstance(data["loss_type"], str) else None
        if loss not in LOSS_TYPES:
            raise bad("loss_type", "is not huber or mean squared error")
        values["loss_type"] = loss
    if "stack_size" in data and data["stack_size"] != 1:
        raise bad("stack_size", "is not 1 (the console trains on single frames)")
    if "term_cond_avg_score" in data:
        if not _is_number(data["term_cond_avg_score"]) or data["term_cond_avg_score"] <= 0:
            raise bad("term_cond_avg_score", "is not a positive number")
        values["term_cond_avg_score"] = float(data["term_cond_avg_score"])
    if "term_cond_max_episodes" in data:
        if not _integer(data["term_cond_max_episodes"]) or data["term_cond_max_episodes"] < 1:
            raise bad("term_cond_max_episodes", "is not a whole number of at least 1")
        values["term_cond_max_episodes"] = int(data["term_cond_max_episodes"])
    return Hyperparameters(**values)


def check_metadata(data: Any, source: str = METADATA_FILE) -> ModelMetadata:
    """`model_metadata.json`'s object checked against the console's action-space limits and networks."""
    try:
        meta = parse_metadata(data)
    except MetadataError as exc:
        raise CustomFilesError(f"{source}: {exc}") from None
    if meta.training_algorithm != "clipped_ppo":
        raise CustomFilesError(f"{source}: training_algorithm: {meta.training_algorithm!r} is not trained here "
                               "(racer trains clipped_ppo)")
    if meta.neural_network not in NETWORKS:
        raise CustomFilesError(f"{source}: neural_network: {meta.neural_network!r} is not one of {', '.join(NETWORKS)}")
    if meta.sensors not in (("FRONT_FACING_CAMERA",), ("OBSERVATION",)):
        raise CustomFilesError(f"{source}: sensor: {list(meta.sensors)} is not [\"FRONT_FACING_CAMERA\"] "
                               "(the stock car's one camera)")

    def within(value: float, bounds: tuple[float, float], field: str, unit: str) -> None:
        if not bounds[0] <= value <= bounds[1]:
            raise CustomFilesError(f"{source}: {field}: {value:g} {unit} is outside "
                                   f"{bounds[0]:g}..{bounds[1]:g} {unit}")

    if meta.discrete:
        if not MIN_ACTIONS <= len(meta.actions) <= MAX_ACTIONS:
            raise CustomFilesError(f"{source}: action_space: {len(meta.actions)} actions; the console allows "
                                   f"{MIN_ACTIONS}-{MAX_ACTIONS}")
        for i, action in enumerate(meta.actions):
            within(action.speed, DISCRETE_SPEED, f"action_space[{i}].speed", "m/s")
            within(action.steering_deg, STEERING, f"action_space[{i}].steering_angle", "deg")
    else:
        for end in ("low", "high"):
            within(getattr(meta.speed, end), CONTINUOUS_SPEED, f"action_space.speed.{end}", "m/s")
            within(getattr(meta.steering, end), STEERING, f"action_space.steering_angle.{end}", "deg")
    return meta


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CustomFilesError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise CustomFilesError(f"{path}: not valid JSON{where}") from None


@dataclass(frozen=True)
class CustomFiles:
    """A checked custom_files folder: the reward file's path, the metadata (raw JSON and parsed),
    and the hyperparameters."""

    reward_file: Path
    metadata: dict[str, Any]
    hyperparameters: Hyperparameters

    @property
    def model_metadata(self) -> ModelMetadata:
        return check_metadata(self.metadata)


def load_custom_files(folder: str | Path) -> CustomFiles:
    """Read and check the three files of a DRfC custom_files folder; all three must be there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CustomFilesError(f"{folder}: no such custom_files folder")
    for name in (REWARD_FILE, METADATA_FILE, HYPERPARAMETERS_FILE):
        if not (folder / name).is_file():
            raise CustomFilesError(f"{folder / name}: missing (a custom_files folder holds {REWARD_FILE}, "
                                   f"{METADATA_FILE} and {HYPERPARAMETERS_FILE})")
    metadata = _read_json(folder / METADATA_FILE)
    check_metadata(metadata, str(folder / METADATA_FILE))
    hyperparameters_file = folder / HYPERPARAMETERS_FILE
    hyperparameters = parse_hyperparameters(_read_json(hyperparameters_file), str(hyperparameters_file))
    return CustomFiles(folder / REWARD_FILE, metadata, hyperparameters)
