"""Training figures: every line named in a legend that covers neither tick labels nor axis labels."""
import matplotlib.pyplot as plt
import pytest

from sim2real.plots import reward_curve, reward_figure, training_curve, training_figure

DAGGER = [{"iteration": i, "loss": 0.1 / (i + 1), "off_track_episodes": 3 - i} for i in range(4)]
PPO = [{"timesteps": 512 * i, "mean_reward": 2.0 * i, "mean_progress": 10.0 * i} for i in range(4)]


@pytest.mark.parametrize("figure, history, names, labels", [
    (training_figure, DAGGER, ["imitation loss (weighted MSE)", "off-track episodes"],
     ["DAgger iteration", "weighted MSE", "off-track episodes in rollouts"]),
    (reward_figure, PPO, ["mean episode reward", "mean progress (%)"],
     ["environment steps", "reward", "progress (%)"]),
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


def test_a_one_iteration_run_has_its_iteration_and_whole_episodes_as_ticks():
    for episodes in (0, 2):
        fig = training_figure([{"iteration": 0, "loss": 0.1, "off_track_episodes": episodes}])
        try:
            ax, ax2 = fig.axes
            fig.canvas.draw()
            assert [t.get_text() for t in ax.get_xticklabels()] == ["0"]
            shown = [t for t in ax2.get_yticks() if ax2.get_ylim()[0] <= t <= ax2.get_ylim()[1]]
            assert shown[0] == 0 and episodes in shown and all(float(t).is_integer() for t in shown)
        finally:
            plt.close(fig)
    fig = reward_figure(PPO[1:2])
    try:
        fig.canvas.draw()
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["512"]
    finally:
        plt.close(fig)


def test_curves_are_written_as_png(tmp_path):
    for write, history in ((training_curve, DAGGER), (reward_curve, PPO)):
        path = write(history, tmp_path / f"{write.__name__}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
