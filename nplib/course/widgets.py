"""Interactive explorers: thin ``ipywidgets.interact`` wrappers around :mod:`nplib.course.plots`.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings (section 5) and
notebooks/02_noise_schedules_and_snr (section 7).

Only core widgets (sliders, dropdowns) and inline matplotlib are used, and only API that
ipywidgets 7.7 and 8 share (``interactive``), so the explorers work in Jupyter and on Colab (which
renders ipywidgets 7 only, its preinstalled 7.7.1) without extra set-up. Each explorer draws its
default view once when it is built, with or without a browser, so the test suite covers the drawing
code; the drawing itself lives in plain, unit-tested functions of :mod:`nplib.course.plots`.

A static copy of an executed notebook (GitHub, nbviewer, a headless run) shows the default view: the
widget is displayed as one output that holds the widget view AND a PNG of the default figure. A
frontend with a widget manager (Jupyter, VS Code) shows the live widget; one without shows the PNG.
On Colab the widget view is displayed alone, as ipywidgets does it.
"""
from __future__ import annotations

import base64
import functools
import io
import sys

import matplotlib.pyplot as plt

from nplib.course import plots
from nplib.schedules import SCHEDULE_KINDS, DTSchedule, make_schedule

__all__ = ["schedule_explorer", "noised_labels_slider", "CLIP_CHOICES"]

#: alpha_bar_max values offered by the schedule explorer (notebook 02, section 3).
CLIP_CHOICES = (0.9, 0.95, 0.99, 0.995, 0.999, 0.9999)

#: The mimetype of a widget view (the same in ipywidgets 7 and 8).
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def _png(fig) -> str:
    """The figure as base64 PNG text, as the inline backend shows it (tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _explorer(draw, **controls):
    """An ``interactive`` widget over ``draw(**values) -> Figure | None``, drawn once and displayed.

    ``draw`` returns the figure to show, or None when it printed why there is none. ipywidgets 8
    calls the function when the widget is built, ipywidgets 7 only when it is displayed through
    its own display hook: the first call is made here, for both, exactly once.
    """
    import ipywidgets as w

    default_png: list[str] = []
    calls: list[int] = []

    @functools.wraps(draw)
    def show(*args, **kwargs):
        calls.append(1)
        fig = draw(*args, **kwargs)
        if fig is None:
            return
        if not default_png:
            default_png.append(_png(fig))
        plt.show()   # inside the widget's output area (inline backend); nothing without a display
        plt.close(fig)

    ui = w.interactive(show, **controls)
    if not calls:
        ui.update()   # ipywidgets 7: the first call would wait for the display hook
    _display(ui, None if "google.colab" in sys.modules else (default_png[0] if default_png else None))
    return ui


def _display(ui, png: str | None) -> None:
    """Show the widget view (in IPython only), with the default view as a PNG for static copies.

    The bundle is what ipywidgets' own display sends (text and widget view), plus ``image/png``;
    it is sent without ipywidgets 7's display callbacks, which would draw the default view again.
    """
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - ipywidgets depends on IPython
        return
    if get_ipython() is None:   # a plain Python process (tests): nothing to show
        return
    text = repr(ui)
    bundle = {"text/plain": text[:110] + ("…" if len(text) > 110 else ""),
              WIDGET_VIEW_MIME: {"version_major": 2, "version_minor": 0, "model_id": ui.model_id}}
    if png is not None:
        bundle["image/png"] = png
    display(bundle, raw=True)


def schedule_explorer(kind: str = "cosine", T: int = 10, alpha_bar_max: float = 0.99):
    """Dropdown (kind), slider (T) and a clipping slider calling :func:`nplib.course.plots.plot_schedule_explorer`.

    Introduced in notebooks/02_noise_schedules_and_snr, section 7. Displays and returns the
    ``interactive`` widget. A setting that :func:`nplib.schedules.make_schedule` rejects prints the
    reason instead of a plot.
    """
    import ipywidgets as w

    if alpha_bar_max not in CLIP_CHOICES:
        raise ValueError(f"alpha_bar_max must be one of {CLIP_CHOICES}, got {alpha_bar_max}")

    def draw(kind, T, alpha_bar_max):
        try:
            return plots.plot_schedule_explorer(kind, T, alpha_bar_max)
        except ValueError as err:
            # e.g. cosine with T > 17 and clip 0.99: the last steps would all be clipped to the same
            # alpha_bar, which the schedule rejects (weights of 0). Say so instead of failing.
            print(f"invalid setting: {err}")
            return None

    return _explorer(
        draw,
        kind=w.Dropdown(options=list(SCHEDULE_KINDS), value=kind, description="kind"),
        T=w.IntSlider(value=T, min=2, max=50, step=1, description="T", continuous_update=False),
        alpha_bar_max=w.SelectionSlider(options=list(CLIP_CHOICES), value=alpha_bar_max,
                                        description="clip ᾱ_T", continuous_update=False),
    )


def noised_labels_slider(W_embed=None, schedule: DTSchedule | None = None, y: int = 3, t: int | None = None):
    """A slider over t (and a class dropdown) calling :func:`nplib.course.plots.plot_noised_labels_at`.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 5. Displays and
    returns the ``interactive`` widget.
    """
    import ipywidgets as w

    schedule = make_schedule("cosine", 10) if schedule is None else schedule
    m = 10 if W_embed is None else int(W_embed.shape[0])
    t = schedule.T // 2 if t is None else t
    if not 0 <= t <= schedule.T:
        raise ValueError(f"t must be in 0..{schedule.T}, got {t}")
    if y not in range(m):
        raise ValueError(f"y must be a class index in 0..{m - 1}, got {y}")

    def draw(t, y):
        return plots.plot_noised_labels_at(t, W_embed, schedule, y=y)

    return _explorer(
        draw,
        t=w.IntSlider(value=t, min=0, max=schedule.T, step=1, description="t", continuous_update=False),
        y=w.Dropdown(options=list(range(m)), value=y, description="label y"),
    )
