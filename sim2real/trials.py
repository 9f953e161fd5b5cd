"""Evaluate like the DeepRacer console: trials of one lap each on one track, from the start line.

A model drives through the car stack (`sim2real.drive`), under the AWS simulator's rules when it
was trained under them (`sim.rules.is_aws_export`). As in DRfC's evaluation, leaving the track does
not end a trial: the car is put back on the centre line where it left and the trial's time takes a
penalty (5 s by default); a trial ends at its lap or at the time limit. The console's metric is the
average time of the completed laps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from car.policy.bundle import load_bundle
from car.policy.inference import Policy
from sim2real.drive import sim_graph, start_autonomous
from sim2real.sim.rules import aws_rules, is_aws_export
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator

OFF_TRACK_PENALTY_S = 5.0
TRIAL_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Trial:
    """One trial: `time_s` is the lap's time with the penalties (or the time driven when the lap was
    not completed), `progress` % of the lap, `off_track` the number of resets."""

    trial: int
    time_s: float
    progress: float
    off_track: int
    penalty_s: float
    status: str

    @property
    def completed(self) -> bool:
        return self.status == "Lap complete"

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.trial, "time_s": round(self.time_s, 3), "progress": round(self.progress, 2),
                "off_track": self.off_track, "off_track_penalty_s": round(self.penalty_s, 3), "status": self.status}


def run_trials(bundle_path: str | Path, track: str, trials: int = 3, max_speed: float = 1.0,
               penalty_s: float = OFF_TRACK_PENALTY_S, timeout_s: float = TRIAL_TIMEOUT_S) -> list[Trial]:
    """`trials` laps of `track`, each from rest at the start line; `max_speed` is the car's setting
    (1.0: the model's own speeds, as the console evaluates)."""
    results = []
    with load_bundle(bundle_path) as bundle:
        model = Policy(bundle).model()
        sim = Simulator(Track.load(track))
        for number in range(1, trials + 1):
            sim.reset(start_index=0)
            driver = aws_rules(sim, bundle, max_speed) if is_aws_export(bundle) else None
            results.append(_trial(sim, model, driver, number, max_speed, penalty_s, timeout_s))
    return results


def _trial(sim: Simulator, model: Any, driver: Any, number: int, max_speed: float, penalty_s: float,
           timeout_s: float) -> Trial:
    graph = start_autonomous(sim_graph(sim, model, driver=driver), max_speed)
    clock = graph.clock
    offs = 0
    try:
        while True:
            graph.frame()
            info = sim.step()
            clock.set(info.time)
            if info.lap_completed:
                return Trial(number, info.lap_time + offs * penalty_s, 100.0, offs, offs * penalty_s, "Lap complete")
            if info.time + offs * penalty_s >= timeout_s:
                return Trial(number, info.time + offs * penalty_s, info.progress, offs, offs * penalty_s, "Time up")
            if info.off_track:
                offs += 1
                sim.place(int(sim.track.project(info.x, info.y)[0]))
    finally:
        graph.close()


def summary(trials: list[Trial]) -> dict[str, Any]:
    """The console's figures: completed laps and the average time of the completed ones."""
    done = [t.time_s for t in trials if t.completed]
    return {"trials": [t.to_json() for t in trials], "completed_laps": len(done),
            "average_lap_time_s": round(sum(done) / len(done), 3) if done else None,
            "off_track": sum(t.off_track for t in trials)}
