"""Run a bundle's policy with OpenVINO on the car's CPU: one synchronous request, f32, low latency."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openvino as ov

from car.policy.bundle import Bundle
from car.policy.bundle_layout import BundleError
from car.policy.core import PolicyModel
from car.policy.ir_cache import default_cache_dir
from car.policy.openvino_model import error_line, ov_core
from car.policy.signature import UNCERTAINTY_OUTPUT

# The one place the CPU plugin is tuned; `racer bench` passes alternatives as `config` overrides.
# f32 is pinned because bf16-capable CPUs otherwise silently run bf16 and change the policy's
# choices; one stream with a few threads suits one synchronous request per camera frame. Threads
# are not pinned to cores: the car's camera, console and DDS threads share those cores, and pinned
# inference threads stalled behind them (p50 1.63 ms pinned vs 1.37 ms unpinned with the other core
# busy, reference network, 2-core EPYC).
CPU_CONFIG: dict[str, str] = {
    "INFERENCE_PRECISION_HINT": "f32",
    "PERFORMANCE_HINT": "LATENCY",
    "NUM_STREAMS": "1",
    "INFERENCE_NUM_THREADS": str(min(4, os.cpu_count() or 1)),
    "ENABLE_CPU_PINNING": "NO",
}


def compile_config(cache_dir: Path | None, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """CPU_CONFIG plus the compiled-model cache dir, with `overrides` applied last."""
    config = dict(CPU_CONFIG)
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    config.update(overrides or {})
    return config


class Policy:
    """A compiled bundle model; `infer` reuses one InferRequest and shares the input buffer."""

    def __init__(self, bundle: Bundle, cache_dir: str | Path | None = None,
                 config: Mapping[str, str] | None = None, device: str = "CPU"):
        if bundle.unrunnable:
            raise BundleError(bundle.unrunnable)
        self.bundle = bundle
        compiled_cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "compiled"
        self.config = compile_config(compiled_cache, config)
        model = bundle.read_model()
        try:
            self.compiled = ov_core().compile_model(model, device, self.config)
        except Exception as exc:
            raise BundleError(f"OpenVINO cannot compile the model: {error_line(exc)}") from None
        self.input_shape = tuple(self.compiled.input(0).shape)
        self._output = self.compiled.output(0)
        own = [port for port in self.compiled.outputs[1:] if UNCERTAINTY_OUTPUT in port.get_names()]
        self._uncertainty_output = own[0] if own else None
        self.last_uncertainty: float | None = None
        self._request = self.compiled.create_infer_request()

    @property
    def has_uncertainty(self) -> bool:
        """Whether the model reports its own uncertainty about each frame (a modular model does)."""
        return self._uncertainty_output is not None

    def model(self) -> PolicyModel:
        """This compiled policy with its bundle's preprocessing, action space and training statistics,
        its own uncertainty when the model outputs one, and the caution its bundle asks for."""
        b = self.bundle
        return PolicyModel(self.infer, b.spec, b.metadata, b.stats,
                           self.uncertainty if self.has_uncertainty else None, b.caution)

    def uncertainty(self) -> float | None:
        """The model's own uncertainty about the last frame `infer` ran on (None before the first, or
        when the model has no such output)."""
        return self.last_uncertainty

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """One forward pass; the policy output flattened, float32, owned by the caller."""
        if tensor.shape != self.input_shape:
            raise ValueError(f"policy input must be {self.input_shape}, got {tensor.shape}")
        array = np.ascontiguousarray(tensor, dtype=np.float32)
        self._request.set_input_tensor(ov.Tensor(array, shared_memory=True))
        self._request.infer()
        if self._uncertainty_output is not None:
            value = float(self._request.get_tensor(self._uncertainty_output).data.reshape(-1)[0])
            self.last_uncertainty = value if math.isfinite(value) else None  # a broken model says nothing
        return np.array(self._request.get_tensor(self._output).data, dtype=np.float32).reshape(-1)


def check_runnable(bundle: Bundle, cache_dir: str | Path | None = None) -> str | None:
    """Why the car cannot drive this bundle, or None: sensors, compilation, one blank-frame pass."""
    if bundle.unrunnable:
        return bundle.unrunnable
    try:
        policy = Policy(bundle, cache_dir)
        out = policy.infer(np.zeros(policy.input_shape, dtype=np.float32))
    except BundleError as exc:
        return str(exc)
    except Exception as exc:  # any OpenVINO failure on this model is a reason not to drive it
        return f"OpenVINO cannot run the model: {error_line(exc)}"
    if not np.all(np.isfinite(out)):
        return "model output is not finite on a blank frame"
    return None
