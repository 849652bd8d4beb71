"""nplib.course.student: student copies (solutions dropped, stub outputs cleared, other outputs kept, no leak,
deterministic), the committed copies in student/ are up to date, and a student copy runs top to bottom
with only the stubs' NotImplementedError."""
from pathlib import Path

import nbformat
import pytest

from nplib import cli
from nplib.course.student import make_student_copies, stale_student_copies, student_notebook, student_text

ROOT = Path(__file__).resolve().parents[1]
SOLVED = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _tags(cell):
    return cell.metadata.get("tags", [])


def _small_notebook():
    v4 = nbformat.v4
    nb = v4.new_notebook()
    view = {"model_id": "aaa", "version_major": 2, "version_minor": 0}
    nb.cells = [
        v4.new_markdown_cell("# Title"),
        v4.new_code_cell("x = 1\nprint('figure and text')", execution_count=1,
                         outputs=[v4.new_output("stream", text="figure and text\n"),
                                  v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})],
                         metadata={"execution": {"iopub.execute_input": "2026-11-29T23:00:00Z"}}),
        v4.new_code_cell("interact(f)", execution_count=2,
                         outputs=[v4.new_output("display_data", data={WIDGET_VIEW: view, "text/plain": "interactive"})]),
        v4.new_markdown_cell("**Exercise 1.**"),
        v4.new_code_cell("def f():\n    raise NotImplementedError\nf()", metadata={"tags": ["raises-exception"]},
                         execution_count=3,
                         outputs=[v4.new_output("error", ename="NotImplementedError", evalue="", traceback=[])]),
        v4.new_code_cell("answer = 40 + 2  # the secret solution line\nprint('the answer is', answer)",
                         metadata={"tags": ["solution"]}, execution_count=4,
                         outputs=[v4.new_output("stream", text="the answer is 42\n")]),
        v4.new_code_cell("print('again: the answer is', answer)", execution_count=5,
                         outputs=[v4.new_output("stream", text="again: the answer is 42\n")]),
        v4.new_code_cell("y = 2", metadata={"tags": ["solution", "other"]}),
    ]
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    nb.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": {
        "aaa": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_bbb"]}},
        "bbb": {"model_name": "IntSliderModel", "state": {"value": 3}},
        "zzz": {"model_name": "HTMLModel", "state": {"value": "the answer is 42 (a solution's progress bar)"}},
    }}}
    return nb


def test_student_notebook_drops_solutions_and_clears_stub_outputs_only():
    nb = _small_notebook()
    out = student_notebook(nb)
    assert [c.source for c in out.cells] == [c.source for c in nb.cells if "solution" not in _tags(c)]
    first, widget, stub, after = out.cells[1], out.cells[2], out.cells[4], out.cells[5]
    # outputs of ordinary cells (text and figures) are kept, with their execution counts
    assert first.outputs == nb.cells[1].outputs and first.execution_count == 1
    assert widget.outputs == nb.cells[2].outputs
    # the stub's output is cleared
    assert stub.outputs == [] and stub.execution_count is None
    # a cell after the first solution may show the solution's result: cleared too
    assert after.outputs == [] and after.execution_count is None
    assert "answer is 42" not in nbformat.writes(out)
    assert "secret solution line" not in nbformat.writes(out)
    assert len(nb.cells) == 8 and nb.cells[4].outputs, "the input notebook is not modified"
    nbformat.validate(out)


def test_student_notebook_keeps_only_widget_state_of_kept_outputs():
    out = student_notebook(_small_notebook())
    state = out.metadata["widgets"][WIDGET_STATE]["state"]
    assert sorted(state) == ["aaa", "bbb"]   # the shown model and its child; not the solution's
    nb = _small_notebook()
    nb.cells[2].outputs = []
    assert "widgets" not in student_notebook(nb).metadata


def test_student_copy_is_deterministic_and_keeps_cell_ids():
    nb = _small_notebook()
    a, b = student_text(nb), student_text(nbformat.reads(nbformat.writes(nb), as_version=4))
    assert a == b and a.endswith("\n")
    out = student_notebook(nb)
    assert [c.id for c in out.cells] == [c.id for c in nb.cells if "solution" not in _tags(c)]
    assert all("execution" not in c.metadata for c in out.cells)   # nbclient timestamps
    assert "jupytext" not in out.metadata                          # the copy is not paired with a .py
    del nb.cells[0]["id"]
    assert student_notebook(nb).cells[0].id == student_notebook(nb).cells[0].id


def test_make_student_copies_writes_files(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    nbformat.write(_small_notebook(), src / "01_x.ipynb")
    written = make_student_copies(src, tmp_path / "student")
    assert written == [tmp_path / "student" / "01_x.ipynb"]
    back = nbformat.read(written[0], as_version=4)
    nbformat.validate(back)
    assert len(back.cells) == 6
    assert stale_student_copies(src, tmp_path / "student") == []


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_student_copies(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError):
        make_student_copies(tmp_path, tmp_path / "out")  # no notebooks in it
    nbformat.write(_small_notebook(), tmp_path / "a.ipynb")
    with pytest.raises(ValueError):
        make_student_copies(tmp_path, tmp_path)  # would overwrite the sources
    with pytest.raises(ValueError):
        student_notebook({"cells": []})


def test_cli_student_writes_and_check_detects_stale_copies(tmp_path, capsys):
    src = tmp_path / "a.ipynb"
    nbformat.write(_small_notebook(), src)
    out = tmp_path / "student"
    assert cli.main(["student", "--check", "--out", str(out), str(src)]) == 1   # missing
    assert cli.main(["student", "--out", str(out), str(src)]) == 0
    assert (out / "a.ipynb").exists()
    assert "1 student notebooks" in capsys.readouterr().out
    assert cli.main(["student", "--check", "--out", str(out), str(src)]) == 0
    nb = _small_notebook()
    nb.cells[0].source = "# A new title"
    nbformat.write(nb, src)
    assert cli.main(["student", "--check", "--out", str(out), str(src)]) == 1   # stale
    assert "stale or missing" in capsys.readouterr().out


# ------------------------------------------------------------------ the committed student copies

@pytest.mark.parametrize("src", SOLVED, ids=[p.stem[:2] for p in SOLVED])
def test_committed_student_copy_is_up_to_date(src):
    copy = ROOT / "student" / src.name
    assert copy.is_file(), f"missing {copy}: run `python -m nplib student`"
    fresh = student_text(nbformat.read(src, as_version=4))
    assert copy.read_text(encoding="utf-8") == fresh, f"{copy} is out of date: run `python -m nplib student`"


@pytest.mark.parametrize("src", SOLVED, ids=[p.stem[:2] for p in SOLVED])
def test_committed_student_copy_has_stubs_without_solutions_and_keeps_figures(src):
    copy = ROOT / "student" / src.name
    if not copy.is_file():
        pytest.fail(f"missing {copy}")
    orig, stud = nbformat.read(src, as_version=4), nbformat.read(copy, as_version=4)
    nbformat.validate(stud)
    assert not any("solution" in _tags(c) for c in stud.cells)
    kept = [c for c in orig.cells if "solution" not in _tags(c)]
    assert [c.id for c in stud.cells] == [c.id for c in kept]
    from nplib.course.student import _without_test_markers

    assert [c.source for c in stud.cells] == [_without_test_markers(c.source) if c.cell_type == "code" else c.source
                                              for c in kept]
    stubs = [c for c in stud.cells if "raises-exception" in _tags(c)]
    assert stubs, "every notebook has exercises"
    assert all(c.outputs == [] for c in stubs)
    # every ordinary cell before the exercises keeps its full-run output (figures included)
    first_solution = next(i for i, c in enumerate(orig.cells) if "solution" in _tags(c))
    for c_orig, c_stud in zip(orig.cells[:first_solution], stud.cells):
        if c_orig.cell_type == "code" and "raises-exception" not in _tags(c_orig):
            assert c_stud.outputs == c_orig.outputs, c_orig.source[:60]


def _output_text(nb) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(str(o.get("text", "")))
            parts += [str(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
            parts += o.get("traceback", [])
    parts.append(str(nb.metadata.get("widgets", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("src", SOLVED, ids=[p.stem[:2] for p in SOLVED])
def test_no_solution_source_or_result_in_student_outputs(src):
    copy = ROOT / "student" / src.name
    if not copy.is_file():
        pytest.fail(f"missing {copy}")
    orig, stud = nbformat.read(src, as_version=4), nbformat.read(copy, as_version=4)
    shown = _output_text(stud)
    # what the solved notebook shows before its first solution may repeat in a solution's output
    first_solution = next(i for i, c in enumerate(orig.cells) if "solution" in _tags(c))
    before = nbformat.v4.new_notebook(cells=orig.cells[:first_solution])
    legit = _output_text(before)
    for cell in orig.cells:
        if "solution" not in _tags(cell):
            continue
        lines = cell.source.splitlines()
        lines += [ln for o in cell.get("outputs", []) for ln in str(o.get("text", "")).splitlines()]
        for line in (ln.strip() for ln in lines):
            if len(line) >= 20 and line not in legit:
                assert line not in shown, f"a solution's source or output shown in a student copy: {line}"


@pytest.mark.slow
def test_student_copy_runs_top_to_bottom_with_only_stub_errors():
    """Notebook 02's student copy, quick mode: the stubs raise NotImplementedError, nothing else fails
    (a NameError would mean an exercise needs a name that only a solution defines)."""
    from sliced_nbclient import Client  # no 600 s stalls on the widget cells (see that module)

    copy = ROOT / "student" / "02_noise_schedules_and_snr.ipynb"
    if not copy.is_file():
        pytest.fail(f"missing {copy}")
    nb = nbformat.read(copy, as_version=4)
    Client(nb, timeout=600, kernel_name="python3", allow_errors=True,
           resources={"metadata": {"path": str(copy.parent)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "every cell ran"
    for c in code:
        errors = [o for o in c.outputs if o.output_type == "error"]
        if "raises-exception" in _tags(c):
            assert [e.ename for e in errors] == ["NotImplementedError"], (c.source[:80], errors)
        else:
            assert errors == [], (c.source[:80], [(e.ename, e.evalue) for e in errors])


def test_student_copies_carry_no_test_suite_markers():
    """nbval's markers and their reasons are for the test suite: a student copy has none."""
    from nplib.course.student import _without_test_markers

    assert _without_test_markers("# NBVAL_IGNORE_OUTPUT\n# (why,\n# on two lines)\nx = 1\n# (kept)\n") == \
        "x = 1\n# (kept)\n"
    for path in sorted((ROOT / "student").glob("*.ipynb")):
        assert "NBVAL" not in path.read_text(encoding="utf-8"), path.name
