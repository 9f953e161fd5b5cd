"""A PPO run's logs in DRfC's single-worker model-folder layout, so the community's analysis tools
(deepracer-utils' `DeepRacerLog(model_folder=RUN)`) read a racer run unchanged.

    RUN/training-simtrace/N-iteration.csv   one row per training step of iteration N
    RUN/metrics/TrainingMetrics.json        one entry per episode, phase training or evaluation
    RUN/model/model_metadata.json           the action space and network trained
    RUN/ip/hyperparameters.json             the console hyperparameters used
    RUN/reward_function.py                  the reward function trained on
    RUN/evaluation-YYYYMMDDHHMMSS/evaluation-simtrace/0-iteration.csv   one `racer eval --trials`

Formats as docs/training.md gives them (the simtrace header is exact; `pause_duration` is 0 in
training: nothing pauses there). Files are written whole and renamed into place, so a reader never
sees half a file.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sim2real.console_car import TraceRow

SIMTRACE_HEADER = ("episode,steps,X,Y,yaw,steer,throttle,action,reward,done,all_wheels_on_track,progress,"
                   "closest_waypoint,track_len,tstamp,episode_status,pause_duration").split(",")
METRICS_FILE = Path("metrics") / "TrainingMetrics.json"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) whole or not at all: a temporary file beside `path`, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    try:
        staged.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def simtrace_csv(rows: Iterable[TraceRow]) -> str:
    """Rows as a simtrace CSV, header first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SIMTRACE_HEADER)
    for r in rows:
        writer.writerow([r.episode, r.steps, f"{r.x:.4f}", f"{r.y:.4f}", f"{r.yaw_deg:.4f}", f"{r.steer_deg:.1f}",
                         f"{r.speed:.2f}", r.action, f"{r.reward:.6g}", r.done, r.all_wheels_on_track,
                         f"{r.progress:.4f}", r.closest_waypoint, f"{r.track_length:.4f}", f"{r.time:.3f}",
                         r.status, round(r.pause_s, 3)])
    return out.getvalue()


def metric(episode: int, phase: str, reward: float, progress: float, status: str, start_ms: int, duration_s: float,
           trial: int) -> dict[str, Any]:
    """One metrics entry. `start_ms` is the episode's wall-clock start (Unix ms, as DRfC); the elapsed
    time is the episode's simulated duration."""
    elapsed = int(round(duration_s * 1000))
    return {"reward_score": int(round(reward)), "metric_time": start_ms + elapsed, "start_time": start_ms,
            "elapsed_time_in_milliseconds": elapsed, "episode": episode, "trial": trial, "phase": phase,
            "completion_percentage": int(progress), "episode_status": _STATUS_LABEL.get(status, status)}


# The metrics file's status words (DRfC writes them as the console shows them).
_STATUS_LABEL = {"lap_complete": "Lap complete", "off_track": "Off track", "time_up": "Time up",
                 "in_progress": "In progress"}


class RunLog:
    """The DRfC files of one run under `root` (created by `start`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.metrics: list[dict[str, Any]] = []

    def start(self, metadata: dict[str, Any], hyperparameters: dict[str, Any], reward_file: Path | None) -> None:
        write_atomic(self.root / "model" / "model_metadata.json", json.dumps(metadata, indent=4))
        write_atomic(self.root / "ip" / "hyperparameters.json", json.dumps(hyperparameters, indent=4))
        if reward_file is not None:
            shutil.copyfile(reward_file, self.root / "reward_function.py")
        (self.root / "training-simtrace").mkdir(parents=True, exist_ok=True)

    def iteration(self, number: int, rows: Iterable[TraceRow], metrics: list[dict[str, Any]]) -> None:
        """Iteration `number`'s training steps and its episodes' metrics (training and evaluation)."""
        write_atomic(self.root / "training-simtrace" / f"{number}-iteration.csv", simtrace_csv(rows))
        self.metrics.extend(metrics)
        write_atomic(self.root / METRICS_FILE, json.dumps({"metrics": self.metrics}))


def write_evaluation(root: Path, rows: Iterable[TraceRow], metadata: dict[str, Any], when: datetime) -> Path:
    """An evaluation's simtrace (every trial's rows, episode = trial - 1) into model folder `root`, in
    `evaluation-<when as YYYYMMDDHHMMSS>/` (a later second when that folder exists), and the model's
    metadata as `model/model_metadata.json` unless the folder has one, so deepracer-utils recognises
    it. Returns the CSV's path."""
    root = Path(root)
    while (folder := root / f"evaluation-{when:%Y%m%d%H%M%S}").exists():
        when += timedelta(seconds=1)
    if not (root / "model" / "model_metadata.json").exists():
        write_atomic(root / "model" / "model_metadata.json", json.dumps(metadata, indent=4))
    path = folder / "evaluation-simtrace" / "0-iteration.csv"
    write_atomic(path, simtrace_csv(rows))
    return path
