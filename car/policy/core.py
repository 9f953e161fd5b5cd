"""Policy node core: camera image -> preprocessing -> inference -> DeepRacer action decoding."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from car.messages import ERROR, OK, AckermannDrive, AckermannDriveStamped, DiagnosticStatus, Header, Image, KeyValue
from car.policy.decode import ActionDecoder, Decoded
from car.policy.metadata import ModelMetadata
from car.policy.preprocess import Preprocessor, PreprocessSpec
from car.policy.shift import ShiftMonitor, excess
from car.policy.warning import Caution, WarningLevel


@dataclass
class PolicyModel:
    """What the policy node needs of a model bundle (car.policy.inference.Policy.model() makes one)."""

    infer: Callable[[np.ndarray], np.ndarray]
    spec: PreprocessSpec
    metadata: ModelMetadata
    stats: Mapping[str, Any] | None = None
    # The model's own uncertainty about the frame it last ran on (a modular model's perception), if it has one.
    uncertainty: Callable[[], float | None] | None = None
    # How the car slows while its warning is high (racer.json's `caution`), if the bundle asks for it.
    caution: Caution | None = None


@dataclass
class PolicyResult:
    drive: AckermannDriveStamped | None
    decoded: Decoded | None
    error: str | None
    infer_ms: float
    tensor: np.ndarray | None = None  # the model's input as fed to it
    output: np.ndarray | None = None  # the model's output as it gave it


class PolicyCore:
    """State: the frame stack and the warning's window; `infer` is any tensor -> output callable (OpenVINO
    on the car)."""

    # The names of the parts of the score the car warns its owner with (`monitor_score`): the
    # domain-shift score's excess over the training world's level, and the model's own uncertainty
    # when it reports one (also its diagnostics key).
    MONITOR = "domain_shift_excess"
    UNCERTAINTY = "uncertainty"
    # The diagnostics key of the warning: `monitor_score` averaged over the last 2 s (`car.policy.warning`).
    WARNING = "warning"
    # The diagnostics key of the caution: "slowing" or "off" ("" for a bundle without one).
    CAUTION = "caution"

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], preprocessor: Preprocessor,
                 decoder: ActionDecoder, max_steering_rad: float, max_speed_mps: float,
                 shift: ShiftMonitor | None = None, uncertainty: Callable[[], float | None] | None = None,
                 caution: Caution | None = None):
        self.infer = infer
        self.shift = shift
        self.domain_shift: float | None = None
        self.read_uncertainty = uncertainty
        self.uncertainty: float | None = None
        self.warning = WarningLevel()
        self.caution = caution
        self.preprocessor = preprocessor
        self.decoder = decoder
        self.max_steering_rad = max_steering_rad
        self.max_speed_mps = max_speed_mps
        self.frames = 0
        self.errors = 0
        self.last: PolicyResult | None = None

    @staticmethod
    def _parts(model: PolicyModel) -> tuple[Callable[[np.ndarray], np.ndarray], Preprocessor, ActionDecoder,
                                            ShiftMonitor | None]:
        """Inference, preprocessing, decoding and the domain-shift monitor, all from the one bundle."""
        return (model.infer, Preprocessor(model.spec), ActionDecoder(model.metadata),
                ShiftMonitor.from_stats(model.stats, model.spec))

    @classmethod
    def for_model(cls, model: PolicyModel, max_steering_rad: float, max_speed_mps: float) -> PolicyCore:
        infer, preprocessor, decoder, shift = cls._parts(model)
        return cls(infer, preprocessor, decoder, max_steering_rad, max_speed_mps, shift, model.uncertainty,
                   model.caution)

    def load(self, model: PolicyModel) -> None:
        """Swap in another model on a running car (the console's model select); the next frame uses it."""
        self.infer, self.preprocessor, self.decoder, self.shift = self._parts(model)
        self.read_uncertainty = model.uncertainty
        self.domain_shift = self.uncertainty = None
        self.warning.reset()
        self.caution = model.caution
        self.last = None

    def on_image(self, msg: Image) -> PolicyResult:
        """The drive command carries the frame's stamp so latency is traceable end to end."""
        t0 = time.perf_counter()
        try:
            tensor = self.preprocessor(msg.data)
            if self.shift is not None:
                self.domain_shift = self.shift.score(tensor)
            output = self.infer(tensor)
            decoded = self.decoder(output)
            if self.read_uncertainty is not None:
                self.uncertainty = self.read_uncertainty()
        except Exception as exc:  # any policy failure must become a neutral car, never a crash
            self.errors += 1
            self.last = PolicyResult(None, None, f"{type(exc).__name__}: {exc}", (time.perf_counter() - t0) * 1e3)
            return self.last
        self.frames += 1
        score = self.monitor_score()
        if score is not None:
            self.warning.add(msg.header.stamp.to_seconds(), score)
        slow = self.caution.factor(self.warning.value) if self.caution else 1.0
        drive = AckermannDrive(steering_angle=decoded.steering * self.max_steering_rad,
                               speed=decoded.throttle * self.max_speed_mps * slow)
        self.last = PolicyResult(AckermannDriveStamped(Header(msg.header.stamp, "base_link"), drive), decoded, None,
                                 (time.perf_counter() - t0) * 1e3, tensor, output)
        return self.last

    @property
    def slowing(self) -> bool:
        """Whether the caution slows the car at the current warning (the last frame's; a new model's is
        none until its first frame)."""
        return self.caution is not None and self.caution.active(self.warning.value)

    @classmethod
    def monitor_key(cls, model: PolicyModel) -> str:
        """The name of the score `monitor_score` gives for `model`: its parts joined by '+'; empty
        when it has neither (an AWS export)."""
        shift = ShiftMonitor.from_stats(model.stats, model.spec) is not None
        parts = ([cls.MONITOR] if shift else []) + ([cls.UNCERTAINTY] if model.uncertainty is not None else [])
        return "+".join(parts)

    def monitor_score(self) -> float | None:
        """The car's warning score for the last frame, higher = more likely to fail (None: the model
        carries neither part): how far the domain-shift score lies beyond the training world's level
        (`shift.excess`; for a bundle with training-image statistics) plus the model's own uncertainty
        (when it reports one: a modular model's perception entropy, an end-to-end model's spread of
        steering views over the mirror and its ensemble, plus its perception monitor's entropy when it
        was exported with one). The shift's excess and the spread are about 0 in the training world;
        a perception's entropy is not (the shipped model's uncertainty averages about 0.15 on 300 plain
        simulator frames of its training tracks, 0.05 without its monitor). Its 2 s mean is the car's
        warning (`warning`); `racer eval` measures how well that predicts leaving the track
        (docs/gap.md)."""
        parts = [excess(self.domain_shift)] if self.domain_shift is not None else []
        if self.uncertainty is not None:
            parts.append(self.uncertainty)
        return sum(parts) if parts else None

    def diagnostics(self) -> DiagnosticStatus:
        last = self.last
        warning = self.warning.value
        return DiagnosticStatus(
            level=ERROR if last is not None and last.error else OK,
            name="policy",
            message=(last.error or "ok") if last else "waiting for frames",
            values=(KeyValue("frames", str(self.frames)), KeyValue("errors", str(self.errors)),
                    KeyValue("infer_ms", f"{last.infer_ms:.3f}" if last else ""),
                    KeyValue("domain_shift", f"{self.domain_shift:.3f}" if self.domain_shift is not None else ""),
                    KeyValue(self.UNCERTAINTY, f"{self.uncertainty:.4f}" if self.uncertainty is not None else ""),
                    KeyValue(self.WARNING, f"{warning:.4f}" if warning is not None else ""),
                    KeyValue(self.CAUTION, "" if self.caution is None else "slowing" if self.slowing else "off")),
        )
