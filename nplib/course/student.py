"""Student copies of the notebooks, and the notebook headers (Colab badges, install line, kernel).

Introduced in README.md ("Exercises") and in every notebook's exercise section.

Student copies
--------------
Exercises are a stub cell tagged ``raises-exception`` (it raises ``NotImplementedError`` until
filled in; the tag lets Run-All go on) followed by a solution cell tagged ``solution``
(docs/STYLE.md). The student copy ``student/NN_name.ipynb`` of ``notebooks/NN_name.ipynb``

* drops every cell tagged ``solution``;
* clears the outputs (and execution counts) of every stub cell;
* clears the outputs of every code cell placed AFTER the first solution cell as well: such a cell
  may print or plot what a solution computed, so its stored output could leak the answer (in the
  course's notebooks the only code cells there are stubs, so nothing is lost);
* keeps every other cell WITH its outputs, figures included: the student sees what the full run
  (and the shipped checkpoints) produce before doing the exercises;
* keeps only the saved widget state that a kept output displays, drops per-cell execution
  timestamps and the jupytext pairing metadata (a student copy is not paired with a ``.py``).

Generation is deterministic (cell ids are the solved notebook's, nothing time-dependent is
added), so a committed copy can be compared byte for byte with a fresh one::

    python -m nplib student              # writes student/NN_*.ipynb for every notebooks/NN_*.ipynb
    python -m nplib student --check      # exit status 1 if a committed copy is missing or stale

Headers
-------
Every notebook opens with a Colab badge that opens the STUDENT copy, with the solved version
linked beside it, and has one setup cell whose Colab branch installs the course package. Both
are built from :data:`nplib.course.links.REPO_URL` and :func:`nplib.course.links.colab_install_hint`;
:func:`sync_notebook_header` rewrites them (in the ``.py`` and the ``.ipynb`` of a pair) and sets
the ``.ipynb``'s kernelspec to Python 3; :func:`sync_readme` rewrites the README's course map the
same way. To move the course to another repository, change ``REPO_URL`` and run::

    python -m nplib student --sync-headers   # all notebooks/NN_*.{py,ipynb} and README.md
    python -m nplib student                  # then regenerate the student copies
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
from pathlib import Path

__all__ = ["SOLUTION_TAG", "STUB_TAG", "SOLVED_DIR", "STUDENT_DIR", "KERNELSPEC", "COLAB_BADGE_SVG",
           "student_notebook", "student_text", "make_student_copies", "stale_student_copies",
           "github_repo", "colab_url", "badge_line", "pip_install_args", "install_line",
           "sync_notebook_header", "sync_readme", "course_map_cell", "add_parser", "COMMANDS"]

SOLUTION_TAG = "solution"
STUB_TAG = "raises-exception"
#: Folders, relative to the repository root, of the solved notebooks and of their student copies.
SOLVED_DIR = "notebooks"
STUDENT_DIR = "student"
#: The kernel every notebook declares (Colab and a plain Jupyter both know "python3").
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"

_REPO_ROOT = Path(__file__).resolve().parent.parent
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_NOTEBOOK_NAME = re.compile(r"^\d\d_[A-Za-z0-9_\-]+$")


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


# --------------------------------------------------------------------------------------------
# student copies
# --------------------------------------------------------------------------------------------

def _stable_id(index: int, cell) -> str:
    text = f"{index}\n{cell.cell_type}\n{cell.source}".encode()
    return hashlib.sha1(text).hexdigest()[:8]


def _widget_refs(obj) -> set[str]:
    return set(re.findall(r"IPY_MODEL_([0-9a-zA-Z]+)", json.dumps(obj)))


def _prune_widget_state(nb) -> None:
    """Keep only the saved widget models that a kept output shows (and the models they refer to)."""
    widgets = nb.metadata.get("widgets")
    if not widgets:
        nb.metadata.pop("widgets", None)
        return
    state = widgets.get(_WIDGET_STATE, {}).get("state", {})
    wanted = [o["data"][_WIDGET_VIEW]["model_id"] for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if _WIDGET_VIEW in o.get("data", {})]
    keep: set[str] = set()
    while wanted:
        mid = wanted.pop()
        if mid in keep or mid not in state:
            continue
        keep.add(mid)
        wanted += sorted(_widget_refs(state[mid]))
    if not keep:
        nb.metadata.pop("widgets")
        return
    widgets[_WIDGET_STATE]["state"] = {k: v for k, v in state.items() if k in keep}


_MARKER_RE = re.compile(r"^\s*# NBVAL_[A-Z_]+\s*$")


def _without_test_markers(source: str) -> str:
    """``source`` without nbval's ``# NBVAL_...`` lines and the ``# (...)`` reason that follows each
    (one or more comment lines, up to the one that ends with ``)``)."""
    out, in_reason = [], False
    for line in source.splitlines(keepends=True):
        text = line.strip()
        if _MARKER_RE.match(line):
            in_reason = None            # a reason may follow
            continue
        if in_reason is None and text.startswith("# ("):
            in_reason = True
        if in_reason:
            in_reason = not text.endswith(")")
            continue
        in_reason = False
        out.append(line)
    return "".join(out)


def student_notebook(nb):
    """The student copy of the nbformat-4 notebook ``nb`` (a new notebook; ``nb`` is not modified).

    Introduced in README.md ("Exercises"). Rules (module docstring): solution cells dropped; outputs
    of stub cells and of every code cell after the first solution cleared; all other outputs kept.
    """
    import nbformat

    if not hasattr(nb, "cells"):
        raise ValueError(f"not an nbformat notebook: {type(nb).__name__}")
    out = copy.deepcopy(nb)
    tags = [_tags(c) for c in out.cells]
    first_solution = next((i for i, t in enumerate(tags) if SOLUTION_TAG in t), len(out.cells))
    cells = []
    for i, (cell, t) in enumerate(zip(out.cells, tags)):
        if SOLUTION_TAG in t:
            continue
        if out.nbformat_minor >= 5 and not cell.get("id"):
            cell["id"] = _stable_id(i, cell)
        if cell.cell_type == "code":
            cell.source = _without_test_markers(cell.source)   # the test suite's markers are not for students
            if STUB_TAG in t or i > first_solution:
                cell.outputs = []
                cell.execution_count = None
            elif not cell.outputs:
                cell.execution_count = None
        cell.metadata.pop("execution", None)   # nbclient's per-cell timestamps
        cells.append(cell)
    out.cells = cells
    out.metadata.pop("jupytext", None)         # the student copy has no paired .py
    _prune_widget_state(out)
    nbformat.validate(out)
    return out


def student_text(nb) -> str:
    """The exact text of the student copy of ``nb`` (what :func:`make_student_copies` writes)."""
    import nbformat

    text = nbformat.writes(student_notebook(nb))
    return text if text.endswith("\n") else text + "\n"


def _notebook_paths(sources) -> list[Path]:
    paths: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            paths += sorted(p for p in src.glob("*.ipynb") if not p.name.startswith("."))
        elif src.suffix == ".ipynb" and src.is_file():
            paths.append(src)
        elif not src.exists():
            raise FileNotFoundError(f"no such notebook or folder: {src}")
        else:
            raise ValueError(f"not a notebook (.ipynb) or a folder: {src}")
    if not paths:
        raise ValueError(f"no .ipynb notebooks found in {', '.join(map(str, sources))}")
    return paths


def _default_sources() -> list[Path]:
    nbs = _REPO_ROOT / SOLVED_DIR
    return [nbs if nbs.is_dir() else Path(SOLVED_DIR)]


def _default_out() -> Path:
    return _REPO_ROOT / STUDENT_DIR if (_REPO_ROOT / SOLVED_DIR).is_dir() else Path(STUDENT_DIR)


def _pairs(notebooks, out_dir) -> list[tuple[Path, Path]]:
    sources = _notebook_paths(notebooks)
    out_dir = Path(out_dir)
    for p in sources:
        if p.resolve().parent == out_dir.resolve():
            raise ValueError(f"out_dir {out_dir} holds the source notebook {p.name}: choose another folder")
    return [(p, out_dir / p.name) for p in sources]


def make_student_copies(src_dir="notebooks", out_dir="student", notebooks=None) -> list[Path]:
    """Write a student copy of every notebook of ``src_dir`` (or of ``notebooks``) into ``out_dir``.

    Introduced in README.md ("Exercises"). Returns the written paths. Refuses to overwrite the
    source notebooks (``out_dir`` must differ from the folder of every source).
    """
    import nbformat

    pairs = _pairs(notebooks if notebooks else [src_dir], out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for src, target in pairs:
        with open(target, "w", encoding="utf-8", newline="\n") as f:
            f.write(student_text(nbformat.read(src, as_version=4)))
    return [t for _, t in pairs]


def stale_student_copies(src_dir="notebooks", out_dir="student", notebooks=None) -> list[Path]:
    """The student copies in ``out_dir`` that are missing or differ from a fresh copy of their source.

    Introduced in README.md ("Exercises"); ``python -m nplib student --check`` runs it.
    """
    import nbformat

    stale = []
    for src, target in _pairs(notebooks if notebooks else [src_dir], out_dir):
        fresh = student_text(nbformat.read(src, as_version=4))
        if not target.is_file() or target.read_text(encoding="utf-8") != fresh:
            stale.append(target)
    return stale


# --------------------------------------------------------------------------------------------
# headers: Colab badge, install line, kernelspec; the README's course map
# --------------------------------------------------------------------------------------------

def github_repo(repo_url: str | None = None) -> str:
    """``"org/repo"`` of a ``https://github.com/org/repo`` URL (default: ``nplib.course.links.REPO_URL``)."""
    if repo_url is None:
        from nplib.course.links import REPO_URL as repo_url
    m = re.fullmatch(r"https://github\.com/([A-Za-z0-9_.\-]+)/([A-Za-z0-9_.\-]+?)(?:\.git)?/?", repo_url.strip())
    if not m:
        raise ValueError(f"REPO_URL must look like https://github.com/<org>/<repo>, got {repo_url!r}")
    return f"{m.group(1)}/{m.group(2)}"


def colab_url(path: str, repo_url: str | None = None) -> str:
    """The Colab URL that opens ``path`` (an .ipynb relative to the repository root) from GitHub."""
    path = str(path).lstrip("/")
    if not path.endswith(".ipynb"):
        raise ValueError(f"Colab opens .ipynb files only, got {path!r}")
    return f"https://colab.research.google.com/github/{github_repo(repo_url)}/blob/main/{path}"


def _stem(name) -> str:
    stem = Path(str(name)).name
    for suffix in (".ipynb", ".py"):
        stem = stem.removesuffix(suffix)
    if not _NOTEBOOK_NAME.match(stem):
        raise ValueError(f"a course notebook is named NN_name (two digits, underscore), got {name!r}")
    return stem


def badge_line(name, repo_url: str | None = None) -> str:
    """The header line of notebook ``name``: Colab badge for the student copy, link to the solved one."""
    stem = _stem(name)
    student = colab_url(f"{STUDENT_DIR}/{stem}.ipynb", repo_url)
    solved = colab_url(f"{SOLVED_DIR}/{stem}.ipynb", repo_url)
    return (f"[![Open In Colab]({COLAB_BADGE_SVG})]({student}) exercises (no solutions)"
            f" · [solved version in Colab]({solved})")


def pip_install_args() -> str:
    """The arguments of the setup cell's ``%pip`` call, from ``nplib.notebook.colab_install_hint()``.

    Accepts a hint written with or without a leading ``pip`` / ``%pip``.
    """
    from nplib.course.links import colab_install_hint

    args = colab_install_hint().strip()
    args = re.sub(r"^%?pip\s+", "", args)
    if not args.startswith("install"):
        raise ValueError(f"colab_install_hint() must give pip install arguments, got {args!r}")
    return args


def install_line(indent: str = "    ") -> str:
    """The setup cell's Colab install line: ``get_ipython().run_line_magic("pip", ...)``."""
    return f'{indent}get_ipython().run_line_magic("pip", {json.dumps(pip_install_args())})'


_BADGE_RE = re.compile(r"^(?P<prefix>#\s)?\s*\[!\[Open In Colab\]\(")
_INSTALL_RE = re.compile(r"""^(?P<indent>\s*)get_ipython\(\)\.run_line_magic\(\s*["']pip["']""")
_COLAB_IF_RE = re.compile(r"""^\s*if\s+["']google\.colab["']\s+in\s+sys\.modules\s*:""")


def _sync_markdown_lines(lines: list[str], stem: str, commented: bool) -> tuple[list[str], int]:
    new, n = [], 0
    for line in lines:
        body = line.rstrip("\r\n")
        m = _BADGE_RE.match(body)
        if m and (not commented or m.group("prefix")):
            eol = line[len(body):]
            line = ("# " if commented else "") + badge_line(stem) + eol
            n += 1
        new.append(line)
    return new, n


def _sync_code_lines(lines: list[str]) -> tuple[list[str], int]:
    new, n, prev = [], 0, ""
    for line in lines:
        body = line.rstrip("\r\n")
        m = _INSTALL_RE.match(body)
        if m:
            if not _COLAB_IF_RE.match(prev):
                raise ValueError('the %pip line must sit directly under `if "google.colab" in sys.modules:`')
            line = install_line(m.group("indent")) + line[len(body):]
            n += 1
        if body.strip():
            prev = body
        new.append(line)
    return new, n


def _sync_py(path: Path, stem: str) -> bool:
    old = path.read_text(encoding="utf-8")
    lines = old.splitlines(keepends=True)
    lines, n_badge = _sync_markdown_lines(lines, stem, commented=True)
    lines, n_install = _sync_code_lines(lines)
    _require(path, n_badge, n_install)
    new = "".join(lines)
    if new != old:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(new)
    return new != old


def _sync_ipynb(path: Path, stem: str) -> bool:
    import nbformat

    old = path.read_text(encoding="utf-8")
    nb = nbformat.reads(old, as_version=4)
    n_badge = n_install = 0
    for cell in nb.cells:
        lines = cell.source.splitlines(keepends=True)
        if cell.cell_type == "markdown":
            lines, n = _sync_markdown_lines(lines, stem, commented=False)
            n_badge += n
        elif cell.cell_type == "code":
            lines, n = _sync_code_lines(lines)
            n_install += n
        cell.source = "".join(lines)
    _require(path, n_badge, n_install)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    new = nbformat.writes(nb)
    new = new if new.endswith("\n") else new + "\n"
    if new != old:
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(new)
    return new != old


def _require(path: Path, n_badge: int, n_install: int) -> None:
    if n_badge == 0:
        raise ValueError(f"{path}: no Colab badge line (a line starting with [![Open In Colab](...)")
    if n_install == 0:
        raise ValueError(f'{path}: no get_ipython().run_line_magic("pip", ...) line in the setup cell')


def sync_notebook_header(path) -> list[Path]:
    """Rewrite the Colab badge line(s) and the setup cell's install line of a notebook pair.

    Introduced in README.md ("Exercises"). ``path`` is the ``.py``, the ``.ipynb`` or the pair's
    path without suffix; both files are rewritten when present, and the ``.ipynb`` gets
    ``metadata.kernelspec = KERNELSPEC``. Returns the files that changed. Raises
    ``FileNotFoundError`` if neither file exists and ``ValueError`` if a file has no badge line
    or no install line.
    """
    path = Path(path)
    stem = _stem(path.name)
    base = path.parent / stem
    py, ipynb = base.with_name(stem + ".py"), base.with_name(stem + ".ipynb")
    if not py.is_file() and not ipynb.is_file():
        raise FileNotFoundError(f"neither {py} nor {ipynb} exists")
    changed = []
    if py.is_file() and _sync_py(py, stem):
        changed.append(py)
    if ipynb.is_file() and _sync_ipynb(ipynb, stem):
        changed.append(ipynb)
    return changed


def course_map_cell(name, title: str, repo_url: str | None = None) -> str:
    """The README course map's notebook cell: the student copy (file and Colab badge), then the solved one."""
    stem = _stem(name)
    student = colab_url(f"{STUDENT_DIR}/{stem}.ipynb", repo_url)
    return (f"[{title}]({STUDENT_DIR}/{stem}.ipynb) [![Open In Colab]({COLAB_BADGE_SVG})]({student})"
            f" · [solved]({SOLVED_DIR}/{stem}.ipynb)")


_ROW_RE = re.compile(r"^\|\s*(?P<num>\d\d)\s*\|(?P<cell>[^|]*(?:\\\|[^|]*)*)\|(?P<rest>.*)$")
_ROW_STEM_RE = re.compile(rf"(?:{SOLVED_DIR}|{STUDENT_DIR})/(\d\d_[A-Za-z0-9_\-]+)\.ipynb")
_ROW_TITLE_RE = re.compile(r"(?<!!)\[([^\]]+)\]\(")


def sync_readme(readme) -> bool:
    """Rewrite the notebook column of the README's course map with :func:`course_map_cell`.

    A course-map row is ``| NN | ... [title](notebooks/NN_name.ipynb) ... | ... |``. Returns
    whether the file changed; raises ``ValueError`` if it has no such row.
    """
    readme = Path(readme)
    old = readme.read_text(encoding="utf-8")
    lines, n = [], 0
    for line in old.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        m = _ROW_RE.match(body)
        stem = m and _ROW_STEM_RE.search(m.group("cell"))
        title = m and _ROW_TITLE_RE.search(m.group("cell"))
        if m and stem and title and stem.group(1).startswith(m.group("num")):
            body = f"| {m.group('num')} | {course_map_cell(stem.group(1), title.group(1))} |{m.group('rest')}"
            line = body + line[len(line.rstrip(chr(13) + chr(10))):]
            n += 1
        lines.append(line)
    if n == 0:
        raise ValueError(f"{readme}: no course-map row (| NN | [title](notebooks/NN_name.ipynb) | ...)")
    new = "".join(lines)
    if new != old:
        with open(readme, "w", encoding="utf-8", newline="") as f:
            f.write(new)
    return new != old


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def _header_targets(paths) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    nbs = _default_sources()[0]
    stems = sorted({p.name.rsplit(".", 1)[0] for p in nbs.glob("[0-9][0-9]_*.py")}
                   | {p.name.rsplit(".", 1)[0] for p in nbs.glob("[0-9][0-9]_*.ipynb")})
    return [nbs / s for s in stems]


def _cmd_student(args) -> int:
    if args.sync_headers:
        for target in _header_targets(args.notebooks):
            changed = sync_notebook_header(target)
            print(f"{target}: " + (", ".join(p.name for p in changed) + " rewritten" if changed else "up to date"))
        readme = args.readme or (None if args.notebooks else _REPO_ROOT / "README.md")
        if readme is not None and Path(readme).is_file():
            print(f"{readme}: " + ("course map rewritten" if sync_readme(readme) else "up to date"))
        return 0
    notebooks = args.notebooks or _default_sources()
    out = args.out or _default_out()
    if args.check:
        stale = stale_student_copies(out_dir=out, notebooks=notebooks)
        for p in stale:
            print(f"stale or missing: {p}")
        print(f"{len(stale)} student copies out of date" if stale else "student copies up to date")
        return 1 if stale else 0
    written = make_student_copies(out_dir=out, notebooks=notebooks)
    for p in written:
        print(f"wrote {p}")
    print(f"{len(written)} student notebooks (solutions removed, stub outputs cleared) in {out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``python -m nplib student [--out DIR] [--check] [--sync-headers] [notebooks ...]``."""
    p = subparsers.add_parser("student", help="write student copies of the notebooks (solutions removed); "
                                              "--sync-headers rewrites badges, install line and kernelspec")
    p.add_argument("notebooks", nargs="*",
                   help="notebooks or folders (default: the course's notebooks/); with --sync-headers, "
                        "notebook files (.py or .ipynb: both of the pair are rewritten)")
    p.add_argument("--out", default=None, help=f"output folder (default: the course's {STUDENT_DIR}/)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a student copy is missing or out of date")
    p.add_argument("--sync-headers", action="store_true",
                   help="rewrite the Colab badge, the install line and the kernelspec of the notebooks "
                        "(all of notebooks/ and the README course map when none is given)")
    p.add_argument("--readme", default=None, help="with --sync-headers: also rewrite this README's course map")
    p.set_defaults(func=_cmd_student)
    return p


#: Picked up by :mod:`nplib.cli`.
COMMANDS = {"student": add_parser}
