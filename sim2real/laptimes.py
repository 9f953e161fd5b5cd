"""Lap times in the nominal simulator: a bundle driving through the car stack next to the privileged
pure-pursuit expert at the same max-speed setting, on the same tracks, from the same start."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from car.policy.bundle import load_bundle
from car.policy.inference import Policy
from sim2real.drive import DriveResult, LapCounter, run_laps
from sim2real.sim.expert import PurePursuitExpert
from sim2real.sim.rules import aws_rules, is_aws_export
from sim2real.sim.track import Track
from sim2real.sim.world import Simulator


def expert_laps(track: Track, laps: int, max_speed: float, lap_timeout_s: float = 120.0) -> DriveResult:
    """The expert's laps from rest at waypoint 0, its throttle capped by the max-speed setting."""
    sim = Simulator(track)
    expert = PurePursuitExpert(track, sim.vehicle.params)
    result = DriveResult(track.name)
    counter = LapCounter(result, sim.time, lap_timeout_s)
    while len(result.laps) < laps:
        st = sim.vehicle.state
        steering, throttle = expert.act(st.x, st.y, st.yaw, st.speed, st.steering_rad)
        sim.apply(steering, min(throttle, max_speed))
        lap = counter.observe(sim.step())
        if lap is not None and not lap.completed:
            break
    return result


def lap_time_table(bundle_path: str | Path, tracks: Sequence[str], max_speed: float, laps: int = 2
                   ) -> list[dict[str, Any]]:
    """Per track: the bundle's and the expert's lap times (s; None for a lap not completed) and
    the ratio of their mean completed lap times."""
    rows = []
    with load_bundle(bundle_path) as bundle:
        model = Policy(bundle).model()
        for name in tracks:
            track = Track.load(name)
            sim = Simulator(track)
            driver = aws_rules(sim, bundle, max_speed) if is_aws_export(bundle) else None
            ours = run_laps(sim, model, laps=laps, max_speed=max_speed, driver=driver)
            theirs = expert_laps(track, laps, max_speed)
            row = {"track": name, "model": _times(ours, laps), "expert": _times(theirs, laps)}
            done = [t for t in row["model"] if t is not None]
            reference = [t for t in row["expert"] if t is not None]
            row["ratio"] = round((sum(done) / len(done)) / (sum(reference) / len(reference)), 3) \
                if len(done) == laps and reference else None
            rows.append(row)
    return rows


def _times(result: DriveResult, laps: int) -> list[float | None]:
    times: list[float | None] = [round(lap.time_s, 2) if lap.completed else None for lap in result.laps]
    return times + [None] * (laps - len(times))
