"""The journal's pictures: what they show where."""

from labbench.present.plots import configurations_figure, loss_figure


def test_a_sweep_plot_with_one_configuration_keeps_its_mean_inside():
    one = {"label": "lr=1e-4", "points": [[0, 0.5], [1, 0.6]], "mean": 0.55}
    figure = configurations_figure("sweep 1", [one | {"low": 0.4, "high": 0.7}], 0.3)
    low, high = figure.axes[0].get_xlim()
    # The seeds sit around x = 0 and the mean's bar at x = 0.25: both well inside.
    assert (low, high) == (-0.5, 0.5)


def test_loss_curves_tick_whole_iterations():
    figure = loss_figure(7, [(1, 2.0), (2, 1.5), (3, 1.2)], [(3, 1.8)])
    ticks = figure.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks), ticks
