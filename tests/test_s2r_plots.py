"""Training figures: every line named in a legend that covers neither tick labels nor axis labels."""
import matplotlib.pyplot as plt
import pytest

from sim2real.plots import reward_curve, reward_figure, training_curve, training_figure

DAGGER = [{"iteration": i, "loss": 0.1 / (i + 1), "off_track_episodes": 3 - i} for i in range(4)]
PPO = [{"iteration": i, "mean_reward": 2.0 * i, "mean_progress": 10.0 * i, "eval_mean_reward": 3.0 * i,
        "eval_mean_progress": 20.0 * i, "best": i in (0, 2)} for i in range(4)]


@pytest.mark.parametrize("figure, history, names, labels", [
    (training_figure, DAGGER, ["imitation loss (weighted MSE)", "off-track episodes"],
     ["DAgger iteration", "weighted MSE", "off-track episodes in rollouts"]),
    (reward_figure, PPO, ["reward (training)", "reward (evaluation)", "completion (training)",
                          "completion (evaluation)", "best model"],
     ["iteration", "average reward", "average completion (%)"]),
])
def test_each_line_is_named_and_the_legend_hides_no_label(figure, history, names, labels):
    fig = figure(history)
    try:
        ax, ax2 = fig.axes
        assert [t.get_text() for t in ax.get_legend().get_texts()] == names
        assert [ax.get_xlabel(), ax.get_ylabel(), ax2.get_ylabel()] == labels
        fig.tight_layout()  # as when the PNG is written
        renderer = fig.canvas.get_renderer()
        legend = ax.get_legend().get_window_extent(renderer)
        texts = [*ax.get_yticklabels(), *ax2.get_yticklabels(), *ax.get_xticklabels(),
                 ax.yaxis.label, ax2.yaxis.label, ax.xaxis.label]
        covered = [t.get_text() for t in texts if t.get_text() and legend.overlaps(t.get_window_extent(renderer))]
        assert covered == []
        assert legend.y1 <= fig.bbox.y1 and legend.y0 >= ax.bbox.y1 - 1  # above the plot, inside the figure
    finally:
        plt.close(fig)


def test_dagger_ticks_are_whole_iterations_and_episodes():
    fig = training_figure(DAGGER)
    try:
        ax, ax2 = fig.axes
        fig.canvas.draw()
        assert all(float(t).is_integer() for t in ax.get_xticks())
        assert all(float(t).is_integer() for t in ax2.get_yticks())
    finally:
        plt.close(fig)


@pytest.mark.parametrize("history", [PPO, PPO[:1]], ids=["four iterations", "one iteration"])
def test_the_reward_graph_marks_the_last_best_model_on_whole_iterations(history):
    fig = reward_figure(history)
    try:
        ax, ax2 = fig.axes
        fig.canvas.draw()
        assert all(float(t).is_integer() for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1])
        star = [line for line in ax2.get_lines() if line.get_label() == "best model"][0]
        best = [h for h in history if h["best"]][-1]
        assert list(star.get_xdata()) == [best["iteration"]] and list(star.get_ydata()) == [best["eval_mean_progress"]]
    finally:
        plt.close(fig)


def test_curves_are_written_as_png(tmp_path):
    for write, history in ((training_curve, DAGGER), (reward_curve, PPO)):
        path = write(history, tmp_path / f"{write.__name__}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
