"""Clone: start PPO from a model trained before, as the console's "clone" does.

Two sources: a racer PPO run (its directory, whose `policy.pt` is the best model, or a checkpoint
file), and an AWS DeepRacer export (`.tar.gz` with a frozen `.pb` and `model_metadata.json`, or an
unpacked folder of them). An AWS graph is read with OpenVINO's TensorFlow frontend (no TensorFlow):
its policy network's convolutions, dense layers and policy head go into `ConsoleNet` in order; the
first dense kernel's rows are reordered from TensorFlow's (height, width, channel) flattening to
torch's (channel, height, width). The value head starts afresh (the AWS trainer keeps the value in a
second network the export leaves out).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from car.policy.archive import ArchiveError, extract, is_os_litter
from car.policy.bundle import METADATA_FILE, BundleError, find_model, read_ov_model
from car.policy.metadata import MetadataError, ModelMetadata, load_metadata
from sim2real.network import CONSOLE_NETWORKS, ConsoleNet


class CloneError(ValueError):
    """A clone source that cannot be read or does not fit the network; one line."""


def _compatible(source: str, theirs: ModelMetadata, ours: ModelMetadata) -> None:
    if theirs.neural_network != ours.neural_network:
        raise CloneError(f"{source}: network {theirs.neural_network} differs from model_metadata.json's "
                         f"{ours.neural_network}; a clone keeps the network")
    if theirs.discrete != ours.discrete or theirs.output_size() != ours.output_size():
        def kind(m: ModelMetadata) -> str:
            return f"{m.output_size()} discrete actions" if m.discrete else "a continuous action space"

        raise CloneError(f"{source}: {kind(theirs)}, the new action space has {kind(ours)}; a clone keeps their number")


def _aws_weights(model_dir: Path) -> tuple[ModelMetadata, list[np.ndarray], list[np.ndarray]]:
    """(metadata, [conv weight, conv bias]..., [dense kernel, dense bias]...) of an unpacked AWS export,
    in graph order; conv weights OIHW, dense kernels (in, out)."""
    entries = [p for p in model_dir.iterdir() if not is_os_litter(p.name)]
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else model_dir  # `tar czf x.tar.gz folder/`
    try:
        meta = load_metadata(root / METADATA_FILE)
        files = find_model(root)
    except (BundleError, MetadataError) as exc:
        raise CloneError(str(exc)) from None
    if files.kind != "tensorflow":
        raise CloneError(f"{files.path.name}: not a frozen TensorFlow graph (.pb); clone an AWS export or a racer run")
    model = read_ov_model(files.path)
    convs: list[np.ndarray] = []
    dense: list[np.ndarray] = []

    def constant(op, kind: str) -> np.ndarray | None:
        for port in op.inputs():
            source = port.get_source_output().get_node()
            if source.get_type_name() == "Constant":
                return np.array(source.get_data(), dtype=np.float32)
        return None

    pending = None
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Convolution", "MatMul"):
            if "value" in op.get_friendly_name():
                continue
            weight = constant(op, kind)
            if weight is None:
                raise CloneError(f"{files.path.name}: {op.get_friendly_name()} has no constant weights")
            pending = (convs if kind == "Convolution" else dense, weight)
        elif kind == "Add" and pending is not None:
            target, weight = pending
            bias = constant(op, kind)
            if bias is not None:
                target += [weight, bias.reshape(-1)]
                pending = None
    return meta, convs, dense


def load_aws(net: ConsoleNet, source: Path, ours: ModelMetadata) -> None:
    with tempfile.TemporaryDirectory(prefix="racer-clone-") as tmp:
        if source.is_dir():
            folder = source
        else:
            try:
                extract(source, tmp)
            except ArchiveError as exc:
                raise CloneError(f"{source}: {exc}") from None
            folder = Path(tmp)
        try:
            theirs, convs, dense = _aws_weights(folder)
        except (BundleError, CloneError) as exc:
            raise CloneError(f"{source}: {exc}") from None
    _compatible(str(source), theirs, ours)
    layers = [m for m in net.embedder if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.middleware if isinstance(m, torch.nn.Linear)] + [net.policy]
    if len(convs) != 2 * len(layers) or len(dense) != 2 * len(linears):
        raise CloneError(f"{source}: {len(convs) // 2} convolutions and {len(dense) // 2} dense layers, "
                         f"{net.network} has {len(layers)} and {len(linears)}")
    with torch.no_grad():
        for i, conv in enumerate(layers):
            weight, bias = convs[2 * i], convs[2 * i + 1]
            if tuple(weight.shape) != tuple(conv.weight.shape):
                raise CloneError(f"{source}: convolution {i} is {weight.shape}, expected {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(weight))
            conv.bias.copy_(torch.from_numpy(bias))
        # the first dense layer reads the last convolution's output, flattened by TensorFlow as (H, W, C)
        with torch.no_grad():
            c, h, w = net.embedder[:-1](torch.zeros(1, 1, 120, 160)).shape[1:]
        for i, linear in enumerate(linears):
            kernel, bias = dense[2 * i], dense[2 * i + 1]
            if kernel.shape != (linear.in_features, linear.out_features):
                raise CloneError(f"{source}: dense layer {i} is {kernel.shape}, expected "
                                 f"{(linear.in_features, linear.out_features)}")
            if i == 0:
                kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            linear.bias.copy_(torch.from_numpy(bias))


def load_racer(net: ConsoleNet, source: Path, ours: ModelMetadata) -> None:
    from car.policy.metadata import parse_metadata
    from sim2real.imitation import load_checkpoint

    checkpoint = source / "policy.pt" if source.is_dir() else source
    try:
        theirs_net, _, action_space, _ = load_checkpoint(checkpoint)
    except (ValueError, OSError) as exc:
        raise CloneError(str(exc)) from None
    if not isinstance(theirs_net, ConsoleNet):
        raise CloneError(f"{checkpoint}: a DAgger checkpoint (racer's small network); clone a PPO run")
    _compatible(str(checkpoint), parse_metadata(action_space), ours)
    net.load_state_dict(theirs_net.state_dict())


def load_clone(net: ConsoleNet, source: str | Path, ours: ModelMetadata) -> None:
    """Weights from `source` into `net` (built for `ours`); CloneError when unreadable or unfit."""
    source = Path(source)
    if not source.exists():
        raise CloneError(f"{source}: no such run, checkpoint or model")
    if source.name.endswith((".tar.gz", ".tgz")) or (source.is_dir() and not (source / "policy.pt").is_file()):
        load_aws(net, source, ours)
    else:
        load_racer(net, source, ours)


def check_clone(source: str | Path, ours: ModelMetadata) -> None:
    """Refuse, before training, a clone source that `load_clone` would."""
    if ours.neural_network not in CONSOLE_NETWORKS:
        raise CloneError(f"neural_network {ours.neural_network} is not a console network")
    load_clone(ConsoleNet(ours.neural_network, ours.output_size(), ours.discrete), source, ours)
