"""The `racer train` checkpoint: a torch file of the trained network's weights with everything needed
to rebuild it (preprocessing spec, action space, trainer) and to export it (the trainer's config, its history).

Every trainer writes one (`dagger`, `modular`, `ppo`); `racer export`, `racer train --clone` and the
gap evaluation read it back.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from car.policy.metadata import parse_metadata
from car.policy.preprocess import PreprocessSpec
from sim2real.modular import ModularNet
from sim2real.network import CONSOLE_NETWORKS, ConsoleNet, DrivingNet


def config_json(cfg: Any) -> dict[str, Any]:
    """A trainer's config dataclass as JSON-ready values."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def build_network(spec: PreprocessSpec, action_space: dict[str, Any], trainer: str | None = None) -> torch.nn.Module:
    """The network a checkpoint's trainer and action space name: the modular network for
    `racer train --model modular`, a console network by `neural_network`, else racer's DrivingNet."""
    meta = parse_metadata(action_space)
    if trainer == "modular":
        return ModularNet(spec, meta.output_size())
    if meta.neural_network in CONSOLE_NETWORKS:
        return ConsoleNet(meta.neural_network, meta.output_size(), meta.discrete, spec)
    return DrivingNet(spec, meta.output_size())


def save_checkpoint(path: Path, net: torch.nn.Module, spec: PreprocessSpec, action_space: dict[str, Any],
                    cfg: Any, history: list[dict[str, Any]], trainer: str = "dagger") -> Path:
    """`cfg` is the trainer's config (ImitationConfig or PPOConfig); export reads its tracks, seed,
    randomization and augmentation."""
    torch.save({"state_dict": net.state_dict(), "spec": spec.to_json(), "action_space": action_space,
                "config": config_json(cfg), "history": history, "trainer": trainer}, path)
    return path


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, PreprocessSpec, dict[str, Any], dict[str, Any]]:
    """(net, spec, action_space, everything else) from a `racer train` checkpoint.

    ValueError naming the file when it is not one (a torch file of another kind, or not torch's).
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises whatever its unpickler met: the file is not ours either way
        raise ValueError(f"{path}: not a racer train checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not {"state_dict", "spec", "action_space"} <= data.keys():
        raise ValueError(f"{path}: not a racer train checkpoint (no state_dict, spec and action_space)")
    spec = PreprocessSpec.from_json(data["spec"])
    net = build_network(spec, data["action_space"], data.get("trainer"))
    net.load_state_dict(data["state_dict"])
    net.eval()
    return net, spec, data["action_space"], data
