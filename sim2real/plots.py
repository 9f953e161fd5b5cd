"""Figures for training and evaluation (matplotlib, written to PNG without a display)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    """pyplot on the file-only Agg backend, imported late so commands that plot nothing stay fast."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _twin_axes(plt: Any, xlabel: str, left: str, right: str) -> tuple[Any, Any, Any]:
    """A figure with a left and a right y axis over one x axis."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(left)
    ax2 = ax.twinx()
    ax2.set_ylabel(right)
    return fig, ax, ax2


def _twin_legend(ax: Any, ax2: Any, ncol: int | None = None) -> None:
    """One legend for both axes' lines, above the plot: a figure legend in a corner covers the
    tick labels, and one inside the axes covers the data."""
    handles: list[Any]
    labels: list[str]
    handles, labels = (sum(pair, []) for pair in zip(ax.get_legend_handles_labels(), ax2.get_legend_handles_labels(),
                                                     strict=True))
    ax.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol or len(labels),
              frameon=False, fontsize="small")


def training_figure(history: list[dict[str, Any]]) -> Any:
    """DAgger: the imitation loss (log scale, left) and off-track rollout episodes (bars, right)
    per iteration; `history` rows carry iteration, loss and off_track_episodes."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    its = [h["iteration"] for h in history]
    fig, ax, ax2 = _twin_axes(plt, "DAgger iteration", "weighted MSE", "off-track episodes in rollouts")
    ax.plot(its, [h["loss"] for h in history], "o-", label="imitation loss (weighted MSE)")
    ax.set_yscale("log")
    ax2.bar(its, [h["off_track_episodes"] for h in history], alpha=0.25, color="tab:red",
            label="off-track episodes")
    # iterations and episodes are counts: whole-number ticks, each iteration's own for a short run (a
    # locator on one iteration would spread -0.5..0.5 around it), and episodes from 0 even when none
    if len(its) <= MAX_TICKED_ITERATIONS:
        ax.set_xticks(its)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_ylim(0, 1.1 * max(1, *(h["off_track_episodes"] for h in history)))
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    _twin_legend(ax, ax2)
    return fig


MAX_TICKED_ITERATIONS = 12


def training_curve(history: list[dict[str, Any]], path: Path) -> Path:
    """`training_figure` written to `path` (PNG); returns `path`."""
    return _save(_pyplot(), training_figure(history), path)


def gap_plot(summary: dict[str, dict[str, Any]], domains: list[str], path: Path) -> Path:
    """Lap completion per held-out pool of domains, one bar per training variant (its seeds' laps
    pooled, with the 95% Wilson interval), and each variant's rate over all laps at the right."""
    plt = _pyplot()
    columns = domains + ["all laps"]
    x = np.arange(len(columns))
    width = 0.8 / max(len(summary), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(columns) + 2), 4), dpi=100)
    for i, (variant, row) in enumerate(summary.items()):
        cells = [row["domains"][d] for d in domains] + [row]
        heights = np.array([c["completion_pct"] or 0.0 for c in cells])
        low = np.array([c["ci95"][0] if c["ci95"] else 0.0 for c in cells])
        high = np.array([c["ci95"][1] if c["ci95"] else 0.0 for c in cells])
        ax.bar(x + (i - (len(summary) - 1) / 2) * width, heights, width,
               yerr=np.stack([np.maximum(heights - low, 0.0), np.maximum(high - heights, 0.0)]), capsize=2,
               label=f"{variant} ({len(row['seeds'])} seeds)")
    ax.set_xticks(x, columns, rotation=30, ha="right")
    ax.set_ylabel("laps completed (%, 95% interval)")
    ax.set_ylim(0, 105)
    ax.set_title("Held-out test: lap completion by training variant")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(plt, fig, path)


def reward_figure(history: list[dict[str, Any]]) -> Any:
    """PPO, as the console's reward graph: per iteration the average reward (left) and the average
    completion % (right) of the training and the evaluation episodes, the best model's iteration
    marked; `history` rows carry iteration, mean_reward, mean_progress, eval_mean_reward,
    eval_mean_progress and best."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    its = [h["iteration"] for h in history]
    fig, ax, ax2 = _twin_axes(plt, "iteration", "average reward", "average completion (%)")

    def values(key: str) -> list[float]:
        return [np.nan if h.get(key) is None else h[key] for h in history]

    ax.plot(its, values("mean_reward"), "o-", color="tab:blue", label="reward (training)")
    ax.plot(its, values("eval_mean_reward"), "o:", color="tab:cyan", label="reward (evaluation)")
    ax2.plot(its, values("mean_progress"), "s-", color="tab:green", label="completion (training)")
    ax2.plot(its, values("eval_mean_progress"), "s:", color="tab:olive", label="completion (evaluation)")
    best = [h for h in history if h.get("best")]
    if best:
        last = best[-1]
        ax2.plot([last["iteration"]], [last.get("eval_mean_progress") or last.get("mean_progress") or 0.0], "*",
                 markersize=16, markerfacecolor="none", markeredgecolor="tab:red", markeredgewidth=1.5,
                 label="best model")
    ax2.set_ylim(0, 105)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are counts
    if len(its) == 1:
        ax.set_xlim(its[0] - 0.5, its[0] + 0.5)
        ax.set_xticks(its)  # the integer locator would still place fractions on so short an axis
    _twin_legend(ax, ax2, ncol=3)
    return fig


def reward_curve(history: list[dict[str, Any]], path: Path) -> Path:
    """`reward_figure` written to `path` (PNG); returns `path`."""
    return _save(_pyplot(), reward_figure(history), path)


def track_map(waypoints: np.ndarray, title: str, path: Path) -> Path:
    """A track seen from above: the road (N, 6 waypoints as the `.npy` outlines hold them, metres)
    in grey, its centre line dashed, the start and the driving direction marked by an arrow."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.fill(waypoints[:, 4], waypoints[:, 5], color="0.55", zorder=1)
    ax.fill(waypoints[:, 2], waypoints[:, 3], color="white", zorder=2)
    ax.plot(waypoints[:, 0], waypoints[:, 1], "--", color="gold", lw=1, zorder=3)
    along = np.cumsum(np.linalg.norm(np.diff(waypoints[:, :2], axis=0), axis=1))
    (x0, y0), (x1, y1) = waypoints[0, :2], waypoints[int(np.searchsorted(along, 1.0)) + 1, :2]
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=4,
                arrowprops={"arrowstyle": "-|>", "color": "green", "lw": 2})
    ax.plot(x0, y0, "o", color="green", zorder=4, label="start, driving direction")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False, fontsize="small")
    return _save(plt, fig, path)
