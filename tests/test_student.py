"""nplib.student: solution cells removed, stubs kept, outputs cleared, valid notebooks; the CLI."""
from pathlib import Path

import nbformat
import pytest

from nplib import cli
from nplib.student import make_student_copies, student_notebook

ROOT = Path(__file__).resolve().parents[1]


def _small_notebook():
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.cells = [
        v4.new_markdown_cell("# Title"),
        v4.new_code_cell("x = 1", execution_count=1, outputs=[v4.new_output("stream", text="out\n")]),
        v4.new_markdown_cell("**Exercise 1.**"),
        v4.new_code_cell("raise NotImplementedError", metadata={"tags": ["raises-exception"]}, execution_count=2,
                         outputs=[v4.new_output("error", ename="NotImplementedError", evalue="", traceback=[])]),
        v4.new_code_cell("answer = 42\nprint(answer)", metadata={"tags": ["solution"]}, execution_count=3,
                         outputs=[v4.new_output("stream", text="42\n")]),
        v4.new_code_cell("y = 2", metadata={"tags": ["solution", "other"]}),
    ]
    return nb


def test_student_notebook_removes_solutions_and_outputs():
    nb = _small_notebook()
    out = student_notebook(nb)
    assert len(out.cells) == 4
    assert not any("solution" in c.metadata.get("tags", []) for c in out.cells)
    assert [c.source for c in out.cells if "raises-exception" in c.metadata.get("tags", [])] == ["raise NotImplementedError"]
    assert all(c.outputs == [] and c.execution_count is None for c in out.cells if c.cell_type == "code")
    assert "answer = 42" not in nbformat.writes(out)  # (a bare "42" may occur in random cell ids)
    assert len(nb.cells) == 6, "the input notebook is not modified"
    nbformat.validate(out)


def test_make_student_copies_writes_files(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    nbformat.write(_small_notebook(), src / "01_x.ipynb")
    written = make_student_copies(src, tmp_path / "student")
    assert written == [tmp_path / "student" / "01_x.ipynb"]
    back = nbformat.read(written[0], as_version=4)
    nbformat.validate(back)
    assert len(back.cells) == 4


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_student_copies(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError):
        make_student_copies(tmp_path, tmp_path / "out")  # no notebooks in it
    nbformat.write(_small_notebook(), tmp_path / "a.ipynb")
    with pytest.raises(ValueError):
        make_student_copies(tmp_path, tmp_path)  # would overwrite the sources


def test_cli_student_subcommand(tmp_path, capsys):
    src = tmp_path / "a.ipynb"
    nbformat.write(_small_notebook(), src)
    out = tmp_path / "student"
    assert cli.main(["student", "--out", str(out), str(src)]) == 0
    assert (out / "a.ipynb").exists()
    assert "1 student notebooks" in capsys.readouterr().out


def test_real_notebooks(tmp_path):
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        pytest.skip("no notebooks yet")
    written = make_student_copies(out_dir=tmp_path, notebooks=notebooks)
    assert len(written) == len(notebooks)
    for src, dst in zip(notebooks, written):
        orig = nbformat.read(src, as_version=4)
        copy = nbformat.read(dst, as_version=4)
        nbformat.validate(copy)
        tags = [c.metadata.get("tags", []) for c in copy.cells]
        assert not any("solution" in t for t in tags), dst.name
        stubs = [c.source for c in orig.cells if "raises-exception" in c.metadata.get("tags", [])]
        assert stubs == [c.source for c in copy.cells if "raises-exception" in c.metadata.get("tags", [])]
        n_solutions = sum("solution" in c.metadata.get("tags", []) for c in orig.cells)
        assert len(copy.cells) == len(orig.cells) - n_solutions
        assert all(not c.outputs for c in copy.cells if c.cell_type == "code")
