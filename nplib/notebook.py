"""The one setup call every notebook makes, and the "load a checkpoint or train" helper.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nplib.course.links import COLAB_EXTRA, REPO_URL, colab_install_hint  # noqa: F401 (re-exported)
from nplib.data import data_root, runs_dir, shown_path, smoke_mode  # noqa: F401 (re-exported)
from nplib.train import hardware_info, set_seed

__all__ = ["Setup", "setup", "runs_dir", "shown_path", "REPO_URL", "COLAB_EXTRA", "colab_install_hint", "check_near"]

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
                f"data root: {shown_path(self.data_root, 'NPLIB_DATA')}\n"
                f"runs (checkpoints, results): {shown_path(self.runs, 'NPLIB_RUNS')}")


def setup(seed: int = 0, device: str | None = None) -> Setup:
    """Seed everything, pick the device, report the data root and the mode; print and return it.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0.
    """
    from nplib.speed.cpu import fit_threads_to_cpus

    fit_threads_to_cpus()  # no more torch threads than CPUs this process may use (containers)
    set_seed(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    s = Setup(seed=seed, device=dev, data_root=data_root(), smoke=smoke_mode(), runs=runs_dir(),
              hardware=hardware_info())
    s.runs.mkdir(parents=True, exist_ok=True)
    print(s)
    return s


def check_near(name: str, value: float, reference: float, tolerance: float) -> None:
    """Assert that a number from a training inside a notebook is near the course's reference run.

    Introduced in notebooks/03_one_denoising_block, section 3.

    A training's digits depend on the machine: another CPU (or another thread count, or a GPU) sums
    floating-point numbers in another order, and after a few hundred optimiser steps the last digits,
    sometimes the second, differ. Such a cell checks its number against ``reference`` (the committed
    run) within ``tolerance`` (the spread measured over seeds and thread counts) instead of comparing
    printed digits; a value outside that band means something is wrong, not that the CPU differs.
    """
    if not abs(value - reference) <= tolerance:
        raise AssertionError(f"{name} = {value:.4g}, but the course's reference run gives {reference:.4g} "
                             f"and runs on other machines, seeds and thread counts stay within +-{tolerance:.2g}: "
                             f"something other than the machine changed the result")
