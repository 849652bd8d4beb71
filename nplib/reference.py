"""The course's measured results, shipped inside the package.

Introduced in notebooks/05_continuous_time_and_flow_matching, section 6, and
notebooks/06_backprop_vs_noprop, section 0.

Every number that a notebook, the README or the slides quote from a run that the notebook does not
repeat lives in a JSON file of ``nplib/results/`` (the command, the configuration, the hardware and
the per-epoch history of the run). The files ship with the package, so a notebook opened alone
(on Colab, from a wheel) reads exactly what a notebook inside the checkout reads.

Notebooks never write here: they write under the runs directory (:func:`nplib.notebook.runs_dir`).
Refreshing a committed file is an explicit step, documented in README.md ("Refreshing the
results"): copy the new file from ``runs/`` into ``nplib/results/`` and commit it.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RESULTS_DIR", "result_path", "load_result", "result_names", "write_result"]

#: The folder of the shipped result files.
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def result_names(prefix: str = "") -> list[str]:
    """Names (``*.json``) of the shipped result files that start with ``prefix``, sorted."""
    return sorted(p.name for p in RESULTS_DIR.glob(f"{prefix}*.json"))


def result_path(name: str) -> Path:
    """The path of a shipped result file; ``name`` with or without ``.json``."""
    if not name.endswith(".json"):
        name += ".json"
    path = RESULTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no shipped result file {name!r} in {RESULTS_DIR}; "
                                f"available: {', '.join(result_names()) or 'none'}")
    return path


def load_result(name: str) -> dict:
    """The content of a shipped result file (a dict); a clear error if it is missing or unreadable."""
    path = result_path(name)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"result file {path} is not valid JSON ({err}); reinstall nplib") from None


def write_result(path, result: dict, indent: int = 1, end: str = "\n") -> Path:
    """Write a command's result file (``--out``): make its folder, write ``result`` as JSON, say where.

    Used by ``python -m nplib ablation``, ``block-alone``, ``chain-remedy``, ``python -m nplib.speed.cpu`` and
    ``python -m nplib.speed.fast``. A shipped file is refreshed by copying such a file into ``nplib/results/``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + end)
    print(f"wrote {path}")
    return path
