"""Notebook headers: every notebook's Colab badge opens its student copy (solved one linked), its
setup cell installs from nplib.notebook's constants, its kernelspec is Python 3; the README course
map links the student copies; nplib.course.student.sync_notebook_header / sync_readme rewrite all of it."""
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

import nplib.course.links
from nplib import cli
from nplib.course.student import KERNELSPEC, colab_url, github_repo, sync_notebook_header, sync_readme

ROOT = Path(__file__).resolve().parents[1]
STEMS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _expected_urls(stem, repo_url=None):
    """Built here from REPO_URL, independently of nplib.course.student."""
    org, repo = urlparse(repo_url or nplib.course.links.REPO_URL).path.strip("/").split("/")[:2]
    base = f"https://colab.research.google.com/github/{org}/{repo}/blob/main"
    return f"{base}/student/{stem}.ipynb", f"{base}/notebooks/{stem}.ipynb"


def _expected_install():
    hint = nplib.course.links.colab_install_hint()
    assert hint.startswith("install "), hint
    return f'get_ipython().run_line_magic("pip", "{hint}")'


def _check_text(text, stem, where, markdown_prefix):
    student, solved = _expected_urls(stem)
    badges = [ln for ln in text.splitlines() if ln.startswith(markdown_prefix + "[![Open In Colab]")]
    assert len(badges) == 1, f"{where}: one Colab badge line, found {len(badges)}"
    badge = badges[0]
    # the badge image links the student copy; the solved version is linked beside it
    assert badge.startswith(f"{markdown_prefix}[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({student})"), where
    assert f"]({solved})" in badge and "solved" in badge, where
    installs = [ln.strip() for ln in text.splitlines() if "run_line_magic(" in ln and "pip" in ln]
    assert installs == [_expected_install()], where
    lines = text.splitlines()
    i = next(i for i, ln in enumerate(lines) if "run_line_magic(" in ln)
    assert re.match(r'\s*if "google\.colab" in sys\.modules:', lines[i - 1]), where


@pytest.mark.parametrize("stem", STEMS, ids=[s[:2] for s in STEMS])
def test_notebook_badge_install_line_and_kernelspec_follow_the_constants(stem):
    py = (ROOT / "notebooks" / f"{stem}.py").read_text(encoding="utf-8")
    _check_text(py, stem, f"{stem}.py", "# ")
    for folder in ("notebooks", "student"):
        path = ROOT / folder / f"{stem}.ipynb"
        if folder == "student" and not path.exists():
            pytest.fail(f"missing student copy {path}: run `python -m nplib student`")
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type in ("markdown", "code"))
        _check_text(text, stem, f"{folder}/{stem}.ipynb", "")
        assert nb.metadata.get("kernelspec") == {"display_name": "Python 3", "language": "python",
                                                 "name": "python3"}, f"{folder}/{stem}.ipynb"


def test_readme_course_map_opens_the_student_copies():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for stem in STEMS:
        rows = [ln for ln in readme.splitlines() if ln.startswith(f"| {stem[:2]} |")]
        assert len(rows) == 1, f"one course-map row for {stem}"
        student, _ = _expected_urls(stem)
        assert f"(student/{stem}.ipynb)" in rows[0] and f"]({student})" in rows[0], rows[0]
        assert f"(notebooks/{stem}.ipynb)" in rows[0], rows[0]


# ------------------------------------------------------------------ the tool, on temporary files

OLD_PY = """# %% [markdown]
# # 01 · A title
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/old/place/blob/main/notebooks/01_demo.ipynb)
#
# Text.

# %%
import sys

if "google.colab" in sys.modules:  # on Colab, install the course package first
    get_ipython().run_line_magic("pip", "install -q 'nplib @ git+https://github.com/old/place'")
import math
"""


def _write_pair(folder: Path, py_text=OLD_PY, stem="01_demo"):
    import jupytext

    py = folder / f"{stem}.py"
    py.write_text(py_text, encoding="utf-8")
    nb = jupytext.reads(py_text, fmt="py:percent")
    nb.metadata = {"language_info": {"name": "python"}}
    nbformat.write(nb, folder / f"{stem}.ipynb")
    return py, folder / f"{stem}.ipynb"


def test_sync_notebook_header_rewrites_both_files_from_the_constants(tmp_path, monkeypatch):
    monkeypatch.setattr(nplib.course.links, "REPO_URL", "https://github.com/someone/moved-course")
    py, ipynb = _write_pair(tmp_path)
    assert sync_notebook_header(py) == [py, ipynb]
    student, solved = _expected_urls("01_demo", "https://github.com/someone/moved-course")
    text = py.read_text(encoding="utf-8")
    assert "old/place" not in text and f"]({student})" in text and f"]({solved})" in text
    assert "git+https://github.com/someone/moved-course'" in text
    nb = nbformat.read(ipynb, as_version=4)
    assert nb.metadata["kernelspec"] == KERNELSPEC and nb.metadata["language_info"] == {"name": "python"}
    assert f"]({student})" in nb.cells[0].source
    assert "git+https://github.com/someone/moved-course'" in nb.cells[1].source
    _check_text(text, "01_demo", "py", "# ")
    # the rest of the files is untouched, and a second run changes nothing
    assert text.splitlines()[:2] == OLD_PY.splitlines()[:2] and text.endswith("import math\n")
    assert sync_notebook_header(ipynb) == []


def test_sync_notebook_header_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        sync_notebook_header(tmp_path / "01_missing.py")
    with pytest.raises(ValueError):
        sync_notebook_header(tmp_path / "not-a-course-name.py")
    py, _ = _write_pair(tmp_path, OLD_PY.replace("[![Open In Colab]", "[![Colab]"), stem="02_nobadge")
    with pytest.raises(ValueError, match="badge"):
        sync_notebook_header(py)
    py, _ = _write_pair(tmp_path, OLD_PY.replace('if "google.colab" in sys.modules:', "if True:"), stem="03_noif")
    with pytest.raises(ValueError, match="google.colab"):
        sync_notebook_header(py)


def test_cli_sync_headers(tmp_path, capsys):
    py, ipynb = _write_pair(tmp_path)
    assert cli.main(["student", "--sync-headers", str(py)]) == 0
    assert "rewritten" in capsys.readouterr().out
    assert nbformat.read(ipynb, as_version=4).metadata["kernelspec"] == KERNELSPEC


README = """# Course

| # | notebook | what you learn |
|---|---|---|
| 01 | [forward diffusion](notebooks/01_forward.ipynb) | `q(z_t \\| y)`, time |
| 02 | [schedules](notebooks/02_sched.ipynb) | SNR |

Other text with a | pipe |.
"""


def test_sync_readme_links_student_copies_and_solved_notebooks(tmp_path, monkeypatch):
    monkeypatch.setattr(nplib.course.links, "REPO_URL", "https://github.com/someone/moved-course")
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    assert sync_readme(readme) is True
    lines = readme.read_text(encoding="utf-8").splitlines()
    student, _ = _expected_urls("01_forward", "https://github.com/someone/moved-course")
    assert lines[4].startswith("| 01 | [forward diffusion](student/01_forward.ipynb) ")
    assert f"]({student})" in lines[4] and "(notebooks/01_forward.ipynb)" in lines[4]
    assert lines[4].endswith("| `q(z_t \\| y)`, time |")
    assert lines[5].startswith("| 02 | [schedules](student/02_sched.ipynb) ")
    assert lines[7] == "Other text with a | pipe |."
    assert sync_readme(readme) is False      # idempotent
    (tmp_path / "R2.md").write_text("# nothing\n")
    with pytest.raises(ValueError):
        sync_readme(tmp_path / "R2.md")


def test_github_repo_and_colab_url_reject_bad_input():
    assert github_repo("https://github.com/a-b/c.d.git") == "a-b/c.d"
    assert colab_url("student/01_x.ipynb", "https://github.com/o/r/") == \
        "https://colab.research.google.com/github/o/r/blob/main/student/01_x.ipynb"
    with pytest.raises(ValueError):
        github_repo("https://gitlab.com/o/r")
    with pytest.raises(ValueError):
        colab_url("notebooks/01_x.py")
    assert json.loads(json.dumps(KERNELSPEC))["name"] == "python3"
