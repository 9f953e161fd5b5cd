"""Evaluate like the DeepRacer console: trials of one lap each on one track, from the start line.

A model drives through the car stack (`sim2real.drive`), under the AWS simulator's rules when it
was trained under them (`sim.rules.is_aws_export`). As in DRfC's evaluation, leaving the track does
not end a trial: the car is put back on the centre line where it left and the trial's time takes a
penalty (5 s by default); a trial ends at its lap or at the time limit. The console's metric is the
average time of the completed laps.

Every trial keeps its simtrace rows, as the AWS simulator logs an evaluation: one row per 15 Hz
step (episode = trial - 1, reward 0: an evaluation has no reward function), the first `prepare`;
an off-track row carries the penalty in `pause_duration`, then the car stands where it was put
back for the penalty's length in `pause` rows counting it down (deepracer-on-aws' evaluation
traces), so the time stamps run on the trial's clock with its penalties.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from car.policy.bundle import load_bundle
from car.policy.decode import Decoded
from car.policy.inference import Policy
from sim2real.console_car import TraceRow
from sim2real.drive import sim_graph, start_autonomous
from sim2real.reward import ParamsBuilder
from sim2real.runlog import write_evaluation
from sim2real.sim.rules import aws_rules, is_aws_export
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator, StepInfo

STANDING = Decoded(0.0, 0.0, 0.0, 0.0, None)
OFF_TRACK_PENALTY_S = 5.0
TRIAL_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Trial:
    """One trial: `time_s` is the lap's time with the penalties (or the time driven when the lap was
    not completed), `progress` % of the lap, `off_track` the number of resets, `trace` its simtrace rows."""

    trial: int
    time_s: float
    progress: float
    off_track: int
    penalty_s: float
    status: str
    trace: tuple[TraceRow, ...] = field(default=(), repr=False, compare=False)

    @property
    def completed(self) -> bool:
        return self.status == "Lap complete"

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.trial, "time_s": round(self.time_s, 3), "progress": round(self.progress, 2),
                "off_track": self.off_track, "off_track_penalty_s": round(self.penalty_s, 3), "status": self.status}


@dataclass
class Evaluation:
    """The trials of one model (its `metadata`, model_metadata.json's JSON) and when they began."""

    trials: list[Trial]
    metadata: dict[str, Any]
    began: datetime

    def write_log(self, root: str | Path) -> Path:
        """The evaluation's simtrace into DRfC model folder `root` (`sim2real.runlog.write_evaluation`)."""
        return write_evaluation(Path(root), [r for t in self.trials for r in t.trace], self.metadata, self.began)


def run_trials(bundle_path: str | Path, track: str, trials: int = 3, max_speed: float = 1.0,
               penalty_s: float = OFF_TRACK_PENALTY_S, timeout_s: float = TRIAL_TIMEOUT_S) -> Evaluation:
    """`trials` laps of `track`, each from rest at the start line; `max_speed` is the car's setting
    (1.0: the model's own speeds, as the console evaluates)."""
    began = datetime.now()
    results = []
    with load_bundle(bundle_path) as bundle:
        model = Policy(bundle).model()
        sim = Simulator(Track.load(track))
        for number in range(1, trials + 1):
            sim.reset(start_index=0)
            driver = aws_rules(sim, bundle, max_speed) if is_aws_export(bundle) else None
            results.append(_trial(sim, model, driver, number, max_speed, penalty_s, timeout_s))
        metadata = dict(bundle.metadata.raw)
    return Evaluation(results, metadata, began)


def _trial(sim: Simulator, model: Any, driver: Any, number: int, max_speed: float, penalty_s: float,
           timeout_s: float) -> Trial:
    graph = start_autonomous(sim_graph(sim, model, driver=driver), max_speed)
    clock = graph.clock
    trace = Trace(sim, number - 1)
    offs = 0
    try:
        while True:
            graph.frame()
            info = sim.step()
            clock.set(info.time)
            decoded = _action(graph)
            penalties = offs * penalty_s
            if info.lap_completed:
                trace.add(info, decoded, penalties, "lap_complete")
                return Trial(number, info.lap_time + penalties, 100.0, offs, penalties, "Lap complete", trace.rows())
            if info.time + penalties >= timeout_s:
                trace.add(info, decoded, penalties, "time_up")
                return Trial(number, info.time + penalties, info.progress, offs, penalties, "Time up", trace.rows())
            if info.off_track:
                offs += 1
                trace.add(info, decoded, penalties, "off_track", penalty_s)
                trace.pause(sim.place(int(sim.track.project(info.x, info.y)[0])), decoded, penalties, penalty_s)
            else:
                trace.add(info, decoded, penalties, "prepare" if not trace.steps else "in_progress")
    finally:
        graph.close()


def _action(graph: Any) -> Decoded:
    """What the policy decided for this step; nothing (a policy fault: control stops the car) logs as standing still."""
    last = graph.policy.core.last
    return last.decoded if last is not None and last.decoded is not None else STANDING


class Trace:
    """One trial's simtrace rows (see the module's docstring). `add` logs a step's outcome with the
    action that led to it (`car.policy.decode.Decoded`); `pause` the rows of one penalty."""

    def __init__(self, sim: Simulator, episode: int) -> None:
        self.sim, self.episode = sim, episode
        self.params = ParamsBuilder(sim.track)
        self.steps = 0
        self._rows: list[TraceRow] = []

    def add(self, info: StepInfo, decoded: Decoded, penalties_s: float, status: str, pause_s: float = 0.0) -> None:
        self.steps += 1
        params = self.params(info, self.steps, decoded.steering_deg, decoded.speed)
        done = status in ("lap_complete", "time_up")
        self._rows.append(TraceRow(
            self.episode, self.steps, info.x, info.y, math.degrees(info.yaw), decoded.steering_deg, decoded.speed,
            -1 if decoded.action_index is None else decoded.action_index, 0.0, done, params["all_wheels_on_track"],
            info.progress,
            params["closest_waypoints"][0], self.sim.track.length, info.time + penalties_s, status, pause_s))

    def pause(self, placed: StepInfo, decoded: Decoded, penalties_s: float, penalty_s: float) -> None:
        """The penalty's rows at 15 Hz, the car standing at `placed`, after `penalties_s` of earlier ones."""
        dt = self.sim.dt
        for k in range(1, int(round(penalty_s / dt)) + 1):
            self.add(placed, decoded, penalties_s + k * dt, "pause", max(penalty_s - k * dt, 0.0))

    def rows(self) -> tuple[TraceRow, ...]:
        return tuple(self._rows)


def summary(trials: list[Trial]) -> dict[str, Any]:
    """The console's figures: completed laps and the average time of the completed ones."""
    done = [t.time_s for t in trials if t.completed]
    return {"trials": [t.to_json() for t in trials], "completed_laps": len(done),
            "average_lap_time_s": round(sum(done) / len(done), 3) if done else None,
            "off_track": sum(t.off_track for t in trials)}
