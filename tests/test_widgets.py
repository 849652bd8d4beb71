"""nplib.course.widgets under the installed ipywidgets (8 here; tests/test_colab.py runs the same checks under
Colab's 7.7.1): each explorer draws its default view exactly once, and an executed notebook keeps that
view as a PNG next to the widget view."""
import base64
import os
import sys
from pathlib import Path

import pytest

ipywidgets = pytest.importorskip("ipywidgets")

from nplib.course import plots, widgets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: The cells of the tiny notebook: both explorers, as notebooks 01 and 02 call them.
WIDGET_CELLS = [
    "from nplib.course import widgets\nimport ipywidgets\nprint('ipywidgets', ipywidgets.__version__)",
    "widgets.schedule_explorer(kind='linear', T=7, alpha_bar_max=0.999);",
    "widgets.noised_labels_slider(y=4, t=2);",
    "widgets.schedule_explorer(kind='cosine', T=30, alpha_bar_max=0.99);",
]


def widget_outputs_report(nb) -> dict:
    """What the executed tiny notebook shows: per explorer cell, the mimetypes of its outputs."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    return {"version": "".join(o.get("text", "") for o in cells[0].outputs).split()[-1],
            "cells": [[sorted(o.get("data", {})) for o in c.outputs if o.output_type == "display_data"]
                      for c in cells[1:]],
            "png": [o["data"]["image/png"] for c in cells[1:] for o in c.outputs if "image/png" in o.get("data", {})],
            "stdout": ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in cells[1:]]}


def check_widget_notebook(report: dict) -> None:
    """Asserts shared with tests/test_colab.py: a PNG of the default view beside each widget view."""
    png_and_widget = ["application/vnd.jupyter.widget-view+json", "image/png", "text/plain"]
    assert report["cells"][0] == [png_and_widget], report["cells"]
    assert report["cells"][1] == [png_and_widget], report["cells"]
    # an invalid default setting: the reason is printed (inside the widget), no figure is kept
    assert report["cells"][2] == [["application/vnd.jupyter.widget-view+json", "text/plain"]], report["cells"]
    assert len(report["png"]) == 2
    for png in report["png"]:
        raw = base64.b64decode(png)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 5000   # a real figure, not an empty canvas


def execute_widget_notebook(workdir: Path, python: str | None = None) -> dict:
    """Execute the tiny notebook with nbclient (in this process, or in another environment's Python)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in WIDGET_CELLS]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    path = workdir / "widgets.ipynb"
    nbformat.write(nb, path)
    if python is None:
        from sliced_nbclient import Client  # no 300 s stalls on widget cells (see that module)

        Client(nb, timeout=300, resources={"metadata": {"path": str(workdir)}}).execute()
        return widget_outputs_report(nb)
    import subprocess

    code = ("import nbformat, sys; sys.path.insert(0, sys.argv[2]); from sliced_nbclient import Client; "
            "p = sys.argv[1]; nb = nbformat.read(p, 4); Client(nb, timeout=300, resources={'metadata': {'path': "
            "str(__import__('pathlib').Path(p).parent)}}).execute(); nbformat.write(nb, p)")
    subprocess.run([python, "-c", code, str(path), str(ROOT / "tests")], check=True, cwd=workdir, timeout=600,
                   stdin=subprocess.DEVNULL, env={**os.environ, "MPLBACKEND": ""})
    return widget_outputs_report(nbformat.read(path, 4))


def test_explorers_draw_the_default_view_exactly_once(monkeypatch):
    calls = []
    orig = plots.plot_schedule_explorer
    monkeypatch.setattr(plots, "plot_schedule_explorer", lambda *a: calls.append(a) or orig(*a))
    ui = widgets.schedule_explorer(kind="linear", T=7, alpha_bar_max=0.999)
    assert calls == [("linear", 7, 0.999)]
    assert isinstance(ui, ipywidgets.interactive)
    assert [c.value for c in ui.kwargs_widgets] == ["linear", 7, 0.999]
    calls2 = []
    orig2 = plots.plot_noised_labels_at
    monkeypatch.setattr(plots, "plot_noised_labels_at", lambda *a, **k: calls2.append((a, k)) or orig2(*a, **k))
    widgets.noised_labels_slider(y=4, t=2)
    assert len(calls2) == 1 and calls2[0][0][0] == 2 and calls2[0][1]["y"] == 4


def test_explorer_slider_change_redraws_with_the_new_value(monkeypatch):
    calls = []
    orig = plots.plot_schedule_explorer
    monkeypatch.setattr(plots, "plot_schedule_explorer", lambda *a: calls.append(a) or orig(*a))
    ui = widgets.schedule_explorer()
    ui.kwargs_widgets[1].value = 12   # the T slider, as a user would move it
    assert calls == [("cosine", 10, 0.99), ("cosine", 12, 0.99)]


def test_explorers_refuse_bad_defaults():
    with pytest.raises(ValueError, match="alpha_bar_max"):
        widgets.schedule_explorer(alpha_bar_max=0.5)
    with pytest.raises(ValueError, match="t must be"):
        widgets.noised_labels_slider(t=11)
    with pytest.raises(ValueError, match="y must be"):
        widgets.noised_labels_slider(y=10)


@pytest.mark.slow
def test_executed_notebook_keeps_a_png_of_each_widgets_default_view(tmp_path):
    pytest.importorskip("nbclient")
    report = execute_widget_notebook(tmp_path)
    assert report["version"] == ipywidgets.__version__
    check_widget_notebook(report)
    assert "invalid setting" not in "".join(report["stdout"][:2])


if __name__ == "__main__":  # pragma: no cover - used by tests/test_colab.py inside the Colab-like venv
    print(execute_widget_notebook(Path(sys.argv[1])))
