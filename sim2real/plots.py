"""Figures for training and evaluation (matplotlib, written to PNG without a display)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def training_curve(history: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [h["iteration"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(its, [h["loss"] for h in history], "o-", label="imitation loss")
    ax.set_xlabel("DAgger iteration")
    ax.set_ylabel("weighted MSE")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.bar(its, [h["off_track_episodes"] for h in history], alpha=0.25, color="tab:red", label="off-track episodes")
    ax2.set_ylabel("off-track episodes in rollouts")
    fig.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
