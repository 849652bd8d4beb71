"""The one setup call every notebook makes, and the "load a checkpoint or train" helper.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import data_root, smoke_mode
from .train import hardware_info, set_seed

__all__ = ["Setup", "setup", "runs_dir", "REPO_URL", "colab_install_hint"]

#: Where the course lives; the Colab badges and the Colab install cell point here.
REPO_URL = "https://github.com/nplib/noprop-course"


def colab_install_hint() -> str:
    return f"pip install -q 'nplib[notebooks] @ git+{REPO_URL}'"


@dataclass
class Setup:
    seed: int
    device: torch.device
    data_root: Path
    smoke: bool
    runs: Path
    hardware: dict

    def __str__(self) -> str:
        hw = self.hardware
        where = hw.get("gpu") or f"{hw['processor']}, {hw['cpu_count']} cores"
        mode = "QUICK mode (NPLIB_SMOKE=1: small data, few epochs)" if self.smoke else "full mode"
        return (f"seed {self.seed} | device {self.device} ({where}) | torch {hw['torch']} | {mode}\n"
                f"data root: {self.data_root}\nruns (checkpoints, results): {self.runs}")


def runs_dir() -> Path:
    """Where notebooks keep checkpoints and result files: ``$NPLIB_RUNS`` or ``<repo>/runs``."""
    env = os.environ.get("NPLIB_RUNS")
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").exists() and (repo / "nplib").is_dir():
        return repo / "runs"
    return Path.cwd() / "runs"


def setup(seed: int = 0, device: str | None = None) -> Setup:
    """Seed everything, pick the device, report the data root and the mode; print and return it.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0.
    """
    set_seed(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    s = Setup(seed=seed, device=dev, data_root=data_root(), smoke=smoke_mode(), runs=runs_dir(),
              hardware=hardware_info())
    s.runs.mkdir(parents=True, exist_ok=True)
    print(s)
    return s
