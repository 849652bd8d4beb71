"""nplib.course.plots and nplib.course.widgets: figures are built, have the expected axes and artists, bad input is refused."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nplib.course import plots  # noqa: E402
from nplib.schedules import DTSchedule, make_schedule  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def two():
    return [make_schedule("cosine", 10), make_schedule("linear", 10)]


def test_alpha_bar_and_snr_one_line_per_schedule(two):
    fig = plots.plot_alpha_bar(two)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 2
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), two[0].alpha_bar.numpy())
    fig = plots.plot_snr(two[0])
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), two[0].snr.numpy())


def test_loss_weights_bars(two):
    fig = plots.plot_loss_weights(two)
    (ax,) = fig.axes
    assert len(ax.patches) == 2 * 10
    heights = [p.get_height() for p in ax.patches[:10]]
    np.testing.assert_allclose(heights, two[0].snr_delta.numpy())
    assert ax.get_yscale() == "log"


def test_loss_weights_negative_drawn_linear_and_red():
    # a DDPM-direction schedule built by hand (bypassing the checks) has negative weights
    good = make_schedule("cosine", 5)
    bad = DTSchedule(kind="ddpm-bug", alpha=good.alpha, alpha_bar=good.alpha_bar.flip(0), snr=good.snr.flip(0),
                     snr_delta=-good.snr_delta.flip(0), a=good.a, b=good.b, c=good.c)
    fig = plots.plot_loss_weights(bad)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    assert all(p.get_facecolor()[:3] == matplotlib.colors.to_rgb("red") for p in ax.patches)


def test_abc_three_lines_per_schedule(two):
    fig = plots.plot_abc(two)
    assert len(fig.axes[0].get_lines()) == 6
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), two[0].b.numpy())


def test_overview_and_explorer():
    fig = plots.plot_schedules([make_schedule("cosine", 10)])
    assert len(fig.axes) == 4
    fig = plots.plot_schedule_explorer("linear", 7, 0.999)
    assert len(fig.axes) == 4
    assert "last weight" in fig._suptitle.get_text()
    assert len(fig.axes[2].patches) == 7


@pytest.mark.parametrize("bad", [dict(kind="ddpm"), dict(T=0), dict(alpha_bar_max=1.0), dict(T=2.5)])
def test_explorer_rejects_bad_settings(bad):
    args = dict(kind="cosine", T=10, alpha_bar_max=0.99) | bad
    with pytest.raises(ValueError):
        plots.plot_schedule_explorer(**args)


def test_schedule_functions_reject_bad_input(two):
    with pytest.raises(ValueError):
        plots.plot_alpha_bar([])
    with pytest.raises(ValueError):
        plots.plot_snr([torch.ones(3)])
    with pytest.raises(ValueError):
        plots.plot_schedules(two, labels=["only one"])


def test_projection_is_orthonormal():
    W = torch.eye(10)
    P = plots.embedding_projection(W)
    assert P.shape == (10, 2)
    torch.testing.assert_close(P.T @ P, torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError):
        plots.embedding_projection(torch.ones(5))


def test_marginals_panels_and_points():
    s = make_schedule("cosine", 10)
    fig = plots.plot_marginals(torch.eye(10), s, ts=(0, 5, 10), n_per_class=7, classes=[1, 2])
    assert len(fig.axes) == 3
    ax = fig.axes[2]
    # two classes of 7 points, then the crosses of the clean embeddings
    sizes = [c.get_offsets().shape[0] for c in ax.collections]
    assert sizes == [7, 7, 2]
    with pytest.raises(ValueError):
        plots.plot_marginals(torch.eye(10), s, ts=(11,))
    with pytest.raises(ValueError):
        plots.plot_marginals(torch.eye(10), s, classes=[10])
    with pytest.raises(ValueError):
        plots.plot_marginals(torch.eye(10), "cosine")


def test_trajectories_shape_and_end_near_label():
    s = make_schedule("cosine", 10)
    u = torch.eye(10)[[0, 1, 2, 3]].double()
    z = plots.sample_label_trajectories(u.repeat(50, 1), s, seed=1)
    assert z.shape == (11, 200, 10)
    # z_T ~ q(z_T | y): mean sqrt(alpha_bar_T) u_y
    torch.testing.assert_close(z[-1].mean(0), (s.alpha_bar[-1].sqrt() * u.repeat(50, 1)).mean(0), atol=0.05, rtol=0)
    fig = plots.plot_label_trajectories(z[:, :20], u.repeat(5, 1), s)
    ax0, ax1 = fig.axes[:2]
    assert len(ax0.get_lines()) == 20 + 1  # trajectories + the mean
    assert len(ax1.get_images()) == 1
    with pytest.raises(ValueError):
        plots.plot_label_trajectories(z[:, :20], u, s)
    with pytest.raises(ValueError):
        plots.plot_label_trajectories(z[:5, :20], u.repeat(5, 1), s)


@pytest.mark.parametrize("t", [0, 5, 10])
def test_noised_labels_at(t):
    fig = plots.plot_noised_labels_at(t)
    ax0, ax1 = fig.axes
    assert len(ax0.patches) == 2 * 10
    assert f"t = {t}" in ax0.get_title()


def test_noised_labels_at_learned_embedding_and_bad_input():
    W = torch.nn.init.orthogonal_(torch.empty(10, 20))
    fig = plots.plot_noised_labels_at(10, W, make_schedule("linear", 10), y=0, n_per_class=5)
    assert len(fig.axes[0].patches) == 2 * 20
    # the last step keeps most of the label: the nearest-mean guess is far above chance
    acc = float(fig.axes[1].get_title().split(":")[-1].strip(" %"))
    assert acc > 50
    with pytest.raises(ValueError):
        plots.plot_noised_labels_at(11)
    with pytest.raises(ValueError):
        plots.plot_noised_labels_at(3, y=10)


def test_images_and_loss_curve():
    fig = plots.plot_images(torch.randn(10, 1, 28, 28), titles=[str(i) for i in range(10)], ncols=5)
    assert len(fig.axes) == 10 and all(len(a.get_images()) == 1 for a in fig.axes)
    with pytest.raises(ValueError):
        plots.plot_images(torch.randn(10, 28, 28))
    fig = plots.plot_loss_curve(np.linspace(2, 1, 50), smooth=10)
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError):
        plots.plot_loss_curve([])
    with pytest.raises(ValueError):
        plots.plot_loss_curve([1.0, float("nan")])


def test_widgets_call_the_plot_functions(monkeypatch):
    pytest.importorskip("ipywidgets")
    from nplib.course import widgets

    calls = []
    orig = plots.plot_schedule_explorer
    monkeypatch.setattr(plots, "plot_schedule_explorer", lambda *a: calls.append(a) or orig(*a))
    widgets.schedule_explorer()
    assert calls == [("cosine", 10, 0.99)]
    calls2 = []
    orig2 = plots.plot_noised_labels_at
    monkeypatch.setattr(plots, "plot_noised_labels_at", lambda *a, **k: calls2.append((a, k)) or orig2(*a, **k))
    widgets.noised_labels_slider()
    assert calls2 and calls2[0][0][0] == 5
    with pytest.raises(ValueError):
        widgets.schedule_explorer(alpha_bar_max=0.5)


def test_schedule_explorer_reports_invalid_settings(capsys):
    pytest.importorskip("ipywidgets")
    from nplib.course import widgets

    # cosine, T = 30, clip 0.99: the last steps are all clipped to 0.99, which the schedule rejects
    with pytest.raises(ValueError):
        plots.plot_schedule_explorer("cosine", 30, 0.99)
    widgets.schedule_explorer(kind="cosine", T=30, alpha_bar_max=0.99)
    assert "invalid setting" in capsys.readouterr().out


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


def test_data_flow_draws_the_course_names():
    from nplib.course import diagrams

    fig = diagrams.plot_data_flow(T=10, t=5)
    train_ax, infer_ax = fig.axes
    text = " ".join(_texts(fig))
    for name in ("$x$", "$z_{t-1}", r"$\hat u_t$", "$u_y$", "$W_{embed}$", r"\bar\alpha", "T = 10"):
        assert name in text, name
    train_text = " ".join(t.get_text() for t in train_ax.texts)
    assert "block $t$ = 5" in train_text and "gradient of $L_t$" in train_text
    assert "(1-4 and 6-10): not run, no gradient" in train_text
    # inference: z_0 -> block 1 -> ... -> block T -> classifier, the middle blocks elided for T > 4
    infer_text = [t.get_text() for t in infer_ax.texts]
    assert [s for s in infer_text if s.startswith("block ")][:3] == ["block 1", "block 2", "block 10"]
    assert "classifier" in infer_text and r"$\cdots$" in infer_text


def test_data_flow_small_T_draws_every_block_and_one_part():
    from nplib.course import diagrams

    fig = diagrams.plot_data_flow(T=3, which="inference")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("block ")][:3] == ["block 1", "block 2",
                                                                                        "block 3"]
    assert r"$\cdots$" not in [t.get_text() for t in ax.texts]
    (ax,) = diagrams.plot_data_flow(T=1, which="training").axes
    assert not any("not run" in t.get_text() for t in ax.texts)   # T = 1: there is no other block


@pytest.mark.parametrize("kwargs", [{"T": 0}, {"T": 2.5}, {"T": True}, {"T": "10"}, {"T": 10, "t": 0},
                                    {"T": 10, "t": 11}, {"T": 10, "which": "backward"}])
def test_data_flow_rejects_bad_input(kwargs):
    from nplib.course import diagrams

    with pytest.raises(ValueError):
        diagrams.plot_data_flow(**kwargs)


def test_loss_weights_labels_never_overlap(two):
    # one schedule: the last weight written above its bar; several: in the legend, not over the bars
    fig = plots.plot_loss_weights(two[0])
    assert [t.get_text() for t in fig.axes[0].texts] == [f"{float(two[0].snr_delta[-1]):.4g}"]
    fig = plots.plot_loss_weights(two, labels=["cosine", "linear"])
    ax = fig.axes[0]
    assert len(ax.texts) == 0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"cosine: last weight {float(two[0].snr_delta[-1]):.4g}",
                      f"linear: last weight {float(two[1].snr_delta[-1]):.4g}"]


def test_marginals_legend_names_classes_and_heat_map_ticks_are_integers():
    s = make_schedule("cosine", 10)
    fig = plots.plot_marginals(torch.eye(10), s, ts=(0, 10), n_per_class=5, classes=[0, 1, 2])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[:3] == ["y = 0", "y = 1", "y = 2"]
    W = torch.nn.init.orthogonal_(torch.empty(10, 20)).double()
    z = plots.sample_label_trajectories(W[:4], s, seed=0)
    fig = plots.plot_label_trajectories(z, W[:4], s)
    fig.canvas.draw()
    heat = fig.axes[1]
    for ticks in (heat.get_yticks(), heat.get_xticks()):
        assert np.allclose(ticks, np.round(ticks)), ticks
