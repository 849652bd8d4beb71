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

__all__ = ["Setup", "setup", "runs_dir", "shown_path", "REPO_URL", "COLAB_EXTRA", "colab_install_hint", "check_near"]

#: Where the course lives: the ONE place that names the repository. The Colab badges and the Colab
#: install cell of every notebook are written from it (see README.md, "Colab"); change it here.
REPO_URL = "https://github.com/nplib/noprop-course"

#: The extra that the Colab install names: what a Colab runtime lacks (empty today, see pyproject.toml).
COLAB_EXTRA = "colab"


def colab_install_hint(repo_url: str | None = None) -> str:
    """The arguments that follow ``%pip `` in every notebook's Colab install cell.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0. Installs nplib from
    ``REPO_URL`` (``repo_url`` overrides it) with the ``colab`` extra and nothing else: every other
    requirement is already satisfied by Colab's preinstalled packages, so pip upgrades none of them
    (Colab does not render ipywidgets 8 widgets, and upgrading ipykernel in a live runtime can crash
    it). tests/test_colab.py checks that this install moves none of Colab's pins.
    """
    url = (REPO_URL if repo_url is None else repo_url).rstrip("/")
    if not url.startswith(("https://", "http://", "file://", "ssh://")) or "'" in url or " " in url:
        raise ValueError(f"repo_url must be an http(s), ssh or file URL without quotes or spaces, got {url!r}")
    return f"install -q 'nplib[{COLAB_EXTRA}] @ git+{url}'"


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


def shown_path(path: Path, env: str | None = None) -> str:
    """A path as a notebook prints it, without the machine's folder names (outputs are committed).

    Relative to the working directory when below its parent (``../runs`` from notebooks/), else
    ``$ENV`` when the environment variable ``env`` chose it, else ``~/...`` below the home folder,
    else the folder's name only (``.../data``).
    """
    path = Path(path).resolve()
    here = Path.cwd().resolve()
    for base, prefix in ((here, ""), (here.parent, "../")):
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            continue
        return (prefix + rel) if rel != "." else (prefix.rstrip("/") or ".")
    if env and os.environ.get(env) and Path(os.environ[env]).expanduser().resolve() == path:
        return f"${env}"
    try:
        return "~/" + path.relative_to(Path.home().resolve()).as_posix()
    except (ValueError, RuntimeError):
        return f".../{path.name}"


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
    from .cpu import fit_threads_to_cpus

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
