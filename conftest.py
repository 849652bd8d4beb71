"""Test-suite set-up: quick mode on, data root defaulting to the shared offline copy when present.

The environment variables are set at import time, before any notebook kernel starts, so the
kernels that nbval launches inherit them.
"""
import os
from pathlib import Path

os.environ.setdefault("NPLIB_SMOKE", "1")
_shared = Path(__file__).resolve().parents[1] / "shared" / "data"
if "NPLIB_DATA" not in os.environ and _shared.is_dir():
    os.environ["NPLIB_DATA"] = str(_shared)
os.environ.setdefault("MPLBACKEND", "Agg")

try:  # the test process itself: no more torch threads than usable CPUs (nplib.speed.cpu.usable_cpus)
    from nplib.speed.cpu import fit_threads_to_cpus

    fit_threads_to_cpus()
except ImportError:
    pass


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the slow tier (what CI runs): the Colab-like venv, notebook runs, the slide "
                          "build, the shipped checkpoints' evaluations, multi-process training")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU")
    config.addinivalue_line("markers", "slow: the slow tier, run by CI and by `pytest --slow`")
    if getattr(config.option, "nbval", False):
        _configure_strict_nbval(config)


def _configure_strict_nbval(config):
    """``pytest --nbval notebooks``: compare every notebook's committed outputs with a fresh run.

    The committed outputs are those of a FULL run (shipped checkpoints loaded, full data), so strict
    mode runs the notebooks in full mode (``NPLIB_SMOKE=0``), draws figures with the inline backend
    as Jupyter does (a figure is an output: a cell that stops drawing one fails), runs the kernels in
    this environment, and sanitizes durations and hardware lines with ``notebooks/nbval_sanitize.cfg``
    (the reasons are in that file). Each option can still be overridden on the command line.
    """
    os.environ["NPLIB_SMOKE"] = "0"
    os.environ.pop("MPLBACKEND", None)   # ipykernel's default: the inline backend, as in Jupyter
    if not config.option.nbval_current_env and not config.option.nbval_kernel_name:
        config.option.nbval_current_env = True
    if config.option.nbval_sanitize_with is None:
        config.option.nbval_sanitize_with = str(Path(__file__).resolve().parent / "notebooks" / "nbval_sanitize.cfg")


def pytest_collection_modifyitems(config, items):
    """A plain ``pytest`` is the quick tier (minutes on 2 cores); ``pytest --slow`` runs everything."""
    if config.getoption("--slow"):
        return
    import pytest

    skip = pytest.mark.skip(reason="slow tier: run with `pytest --slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session):
    """With the slow tier on, start making tests/test_colab.py's pinned venv while the tests before it run."""
    import sys

    if session.config.getoption("--slow") and "test_colab" in sys.modules and \
            any(item.module.__name__ == "test_colab" for item in session.items if hasattr(item, "module")):
        sys.modules["test_colab"].start_building_the_venv()


def pytest_sessionfinish(session, exitstatus):
    import sys

    if "test_colab" in sys.modules:
        sys.modules["test_colab"].remove_the_venv()
