"""Interactive explorers: thin ``ipywidgets.interact`` wrappers around :mod:`nplib.plots`.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings (section 5) and
notebooks/02_noise_schedules_and_snr (section 7).

Only core widgets (sliders, dropdowns) and inline matplotlib are used, so the explorers work in
Jupyter and on Colab without extra set-up. ``interact`` calls the plotting function once with the
default values even without a browser, so the test suite covers the drawing code; the drawing
itself lives in plain, unit-tested functions of :mod:`nplib.plots`.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from . import plots
from .schedules import SCHEDULE_KINDS, DTSchedule, make_schedule

__all__ = ["schedule_explorer", "noised_labels_slider", "CLIP_CHOICES"]

#: alpha_bar_max values offered by the schedule explorer (notebook 02, section 3).
CLIP_CHOICES = (0.9, 0.95, 0.99, 0.995, 0.999, 0.9999)


def _show(fig) -> None:
    """Display a figure inside the widget's output area, then free it."""
    plt.show()
    plt.close(fig)


def schedule_explorer(kind: str = "cosine", T: int = 10, alpha_bar_max: float = 0.99):
    """Dropdown (kind), slider (T) and a clipping slider calling :func:`nplib.plots.plot_schedule_explorer`.

    Introduced in notebooks/02_noise_schedules_and_snr, section 7. Returns the ``interactive`` widget.
    A setting that :func:`nplib.schedules.make_schedule` rejects prints the reason instead of a plot.
    """
    import ipywidgets as w

    if alpha_bar_max not in CLIP_CHOICES:
        raise ValueError(f"alpha_bar_max must be one of {CLIP_CHOICES}, got {alpha_bar_max}")

    def draw(kind, T, alpha_bar_max):
        try:
            fig = plots.plot_schedule_explorer(kind, T, alpha_bar_max)
        except ValueError as err:
            # e.g. cosine with T > 17 and clip 0.99: the last steps would all be clipped to the same
            # alpha_bar, which the schedule rejects (weights of 0). Say so instead of failing.
            print(f"invalid setting: {err}")
            return
        _show(fig)

    return w.interact(
        draw,
        kind=w.Dropdown(options=list(SCHEDULE_KINDS), value=kind, description="kind"),
        T=w.IntSlider(value=T, min=2, max=50, step=1, description="T", continuous_update=False),
        alpha_bar_max=w.SelectionSlider(options=list(CLIP_CHOICES), value=alpha_bar_max,
                                        description="clip ᾱ_T", continuous_update=False),
    )


def noised_labels_slider(W_embed=None, schedule: DTSchedule | None = None, y: int = 3, t: int | None = None):
    """A slider over t (and a class dropdown) calling :func:`nplib.plots.plot_noised_labels_at`.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 5. Returns the widget.
    """
    import ipywidgets as w

    schedule = make_schedule("cosine", 10) if schedule is None else schedule
    m = 10 if W_embed is None else int(W_embed.shape[0])
    t = schedule.T // 2 if t is None else t

    def draw(t, y):
        _show(plots.plot_noised_labels_at(t, W_embed, schedule, y=y))

    return w.interact(
        draw,
        t=w.IntSlider(value=t, min=0, max=schedule.T, step=1, description="t", continuous_update=False),
        y=w.Dropdown(options=list(range(m)), value=y, description="label y"),
    )
