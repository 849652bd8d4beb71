"""Student copies of the notebooks: solutions removed, exercise stubs kept.

Introduced in README.md ("Exercises") and in every notebook's exercise section. Exercises are a
stub cell tagged ``raises-exception`` (it raises ``NotImplementedError`` until filled in) followed
by a solution cell tagged ``solution`` (docs/STYLE.md). A student copy

* drops every cell tagged ``solution``,
* keeps every other cell, stubs included, and clears all outputs and execution counts (so no
  solution leaks through a stored output, and the copy opens clean),

and is written as a valid nbformat-4 notebook. Use it as::

    python -m nplib student [--out student/] [notebooks/01_*.ipynb ...]

or from Python: ``make_student_copies("notebooks", "student")``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["SOLUTION_TAG", "STUB_TAG", "student_notebook", "make_student_copies", "add_parser", "COMMANDS"]

SOLUTION_TAG = "solution"
STUB_TAG = "raises-exception"

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def student_notebook(nb):
    """A copy of the nbformat notebook ``nb`` without ``solution`` cells and with outputs cleared.

    Introduced in README.md ("Exercises").
    """
    import copy

    import nbformat

    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if SOLUTION_TAG not in _tags(c)]
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    out.metadata.pop("widgets", None)  # saved widget state belongs to the solved run
    nbformat.validate(out)
    return out


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


def make_student_copies(src_dir="notebooks", out_dir="student", notebooks=None) -> list[Path]:
    """Write a student copy of every notebook of ``src_dir`` (or of ``notebooks``) into ``out_dir``.

    Introduced in README.md ("Exercises"). Returns the written paths. Refuses to overwrite the
    source notebooks (``out_dir`` must differ from the folder of every source).
    """
    import nbformat

    sources = _notebook_paths(notebooks if notebooks else [src_dir])
    out_dir = Path(out_dir)
    for p in sources:
        if p.resolve().parent == out_dir.resolve():
            raise ValueError(f"out_dir {out_dir} holds the source notebook {p.name}: choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for p in sources:
        nb = nbformat.read(p, as_version=4)
        target = out_dir / p.name
        nbformat.write(student_notebook(nb), target)
        written.append(target)
    return written


def _cmd_student(args) -> int:
    notebooks = args.notebooks or [str(_REPO_ROOT / "notebooks") if (_REPO_ROOT / "notebooks").is_dir()
                                   else "notebooks"]
    written = make_student_copies(out_dir=args.out, notebooks=notebooks)
    for p in written:
        print(f"wrote {p}")
    print(f"{len(written)} student notebooks (solution cells removed, outputs cleared) in {args.out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``python -m nplib student [--out DIR] [notebooks ...]``."""
    p = subparsers.add_parser("student", help="write student copies of the notebooks (solutions removed)")
    p.add_argument("notebooks", nargs="*", help="notebooks or folders (default: the course's notebooks/)")
    p.add_argument("--out", default="student", help="output folder (default: student/)")
    p.set_defaults(func=_cmd_student)
    return p


#: Picked up by :mod:`nplib.cli`.
COMMANDS = {"student": add_parser}
