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


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU")
