"""The car's parameters, read from one ROS 2 parameter YAML (`ros__parameters` format)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from car.yamlfile import read_yaml

DEFAULT_PARAMS = Path(__file__).resolve().parent.parent / "launch" / "params" / "car.yaml"
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"  # the bundled model
NODES = ("camera", "policy", "control", "actuator", "console", "recorder")


def load_params(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Per-node parameters with the `/**` wildcard section merged under each node's own."""
    path = Path(path) if path else DEFAULT_PARAMS
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"parameters {path}: expected a mapping of node names")
    common = _section(data, "/**", path)
    out = {}
    for node in NODES:
        out[node] = {**common, **_section(data, node, path)}
    unknown = sorted(set(data) - set(NODES) - {"/**"})
    if unknown:
        raise ValueError(f"parameters {path}: unknown node(s) {', '.join(unknown)}")
    return out


def _section(data: dict, node: str, path: Path) -> dict[str, Any]:
    section = data.get(node) or {}
    if not isinstance(section, dict) or set(section) - {"ros__parameters"}:
        raise ValueError(f"parameters {path}: {node} must hold only ros__parameters")
    params = section.get("ros__parameters") or {}
    if not isinstance(params, dict):
        raise ValueError(f"parameters {path}: {node}.ros__parameters must be a mapping")
    return params


def model_path(params: dict[str, dict[str, Any]], given: str | Path | None = None) -> Path:
    """The policy's bundle: `given` (a command-line option), else the parameter policy.model, else DEFAULT_MODEL."""
    return Path(given or params["policy"].get("model") or DEFAULT_MODEL)
