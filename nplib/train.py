"""Training and evaluation loops shared by every model of the course.

Introduced in notebooks/04_noprop_dt_mnist, section 2.

A model plugs in by providing

* ``configure_optimizers(lr, weight_decay) -> dict[str, Optimizer]``,
* ``training_step(x, y, optimizers) -> dict`` (does its own backward passes and updates; for
  NoProp-DT one per block),
* ``predict(x, noise=True, generator=None) -> LongTensor`` and ``config() -> dict``.

:func:`fit` adds seeding, ``tqdm.auto`` progress bars, a per-epoch history (loss, train and test
accuracy, seconds), checkpoints and exact resume: the checkpoint holds the model, every optimizer,
the history and the global RNG state, the batch order of an epoch depends only on (seed, epoch),
and evaluation draws its noise from its own generator, so a run resumed from a checkpoint ends
with the same parameters as an uninterrupted one. A non-finite loss stops the run with a
:class:`FloatingPointError` that names the epoch and batch.
"""
from __future__ import annotations

import math
import os
import platform
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nplib.data import TensorData, TensorLoader
from nplib.devices import make_generator, model_device

__all__ = ["set_seed", "accuracy", "evaluate", "evaluate_runs", "fit", "save_checkpoint",
           "load_checkpoint", "hardware_info", "format_history_row", "HISTORY_HEADER", "trained_models"]

HISTORY_HEADER = f"{'epoch':>5} {'loss':>9} {'train_acc':>9} {'test_acc':>9} {'seconds':>8}"


def format_history_row(row: dict) -> str:
    """One line of the per-epoch table printed by :func:`fit` and the command line."""
    def pct(v):  # "-" for an accuracy that was not measured (NaN or None)
        return f"{'-':>9}" if v is None or v != v else f"{100 * v:>8.2f}%"

    return f"{row['epoch']:>5d} {row['loss']:>9.4f} {pct(row['train_acc'])} {pct(row['test_acc'])} {row['seconds']:>8.1f}"



def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trained_models(report: dict) -> list[dict]:
    """The trained models a result file of ``results/`` reports, one record each (empty if none).

    Read by notebooks/05_continuous_time_and_flow_matching, section 6, and by the slides' results
    table. Two kinds of file hold trained models:

    * a report of ``python -m nplib train`` (``config.model`` is the model's config): one model;
    * notebook 04's full-mode ``nb04_mnist.json``: NoProp-DT (``noprop_dt``) and the backprop
      baseline (``backprop``).

    Each record has ``key`` (None, or the key of the model in a notebook's file), ``dataset``,
    ``variant``, ``block`` (the block size's name, None when the report does not say),
    ``model_config``, ``embedding``, ``epochs`` (run), ``steps`` (inference steps, CT/FM only),
    ``smoke``, ``test_accuracy`` (as :func:`evaluate_runs` returns it), ``seconds`` (training plus
    per-epoch evaluation) and ``hardware``.
    """
    if not isinstance(report, dict) or not isinstance(report.get("config"), dict):
        return []
    cfg = report["config"]
    if "final_test_accuracy" in report and isinstance(cfg.get("model"), dict):   # python -m nplib train
        m = cfg["model"]
        # the --model choice is "block_name" (older reports lost it; CT/FM keep it in the model's config)
        return [{"key": None, "dataset": cfg.get("dataset"), "variant": cfg.get("variant"),
                 "block": cfg.get("block_name") or m.get("model"), "model_config": m,
                 "embedding": cfg.get("embedding"), "epochs": cfg.get("epochs_run"),
                 "steps": m.get("inference_steps"), "smoke": bool(cfg.get("smoke")),
                 "test_accuracy": report["final_test_accuracy"], "seconds": report.get("wall_seconds"),
                 "hardware": report.get("hardware")}]
    if report.get("mode") != "full":                                              # notebook 04, full mode
        return []
    out = []
    for key, variant in (("noprop_dt", "dt"), ("backprop", "backprop")):
        sub = report.get(key)
        if not isinstance(sub, dict) or "test_accuracy" not in sub:
            continue
        history = [h for h in sub.get("history") or [] if isinstance(h, dict)]
        out.append({"key": key, "dataset": cfg.get("dataset"), "variant": variant, "block": cfg.get("block_name"),
                    "model_config": sub.get("model") or cfg.get("dt_model"),
                    "embedding": (cfg.get("dt_model") or {}).get("embedding"), "epochs": cfg.get("epochs"),
                    "steps": None, "smoke": False, "test_accuracy": sub["test_accuracy"],
                    "seconds": (sub.get("train_seconds") or 0.0) + sum(h.get("eval_seconds", 0.0) for h in history),
                    "hardware": report.get("hardware")})
    return out


def hardware_info() -> dict:
    """What the numbers were measured on: CPU/GPU, core count, torch version."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": "cpu"}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


@torch.no_grad()
def accuracy(model, data: TensorData, noise: bool = True, seed: int = 0, batch_size: int = 1000,
             device: str | torch.device | None = None) -> float:
    """Fraction of ``data`` classified correctly by ``model.predict`` (eval mode, seeded noise).

    Introduced in notebooks/04_noprop_dt_mnist, section 2. The batches are moved to ``device``
    (default: the model's, which must be where the model is) and the noise comes from a generator
    seeded with ``seed`` on that device (so a CUDA run draws other numbers than a CPU run).
    """
    device = model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    g = make_generator(device, seed)
    correct = 0
    for i in range(0, len(data), batch_size):
        x = data.x[i:i + batch_size].to(device)
        y = data.y[i:i + batch_size].to(device)
        correct += int((model.predict(x, noise=noise, generator=g) == y).sum())
    model.train(was_training)
    return correct / max(len(data), 1)


evaluate = accuracy


def evaluate_runs(model, data: TensorData, runs: int = 5, seed: int = 0, device=None) -> dict:
    """Test accuracy of the stochastic chain over ``runs`` inference runs, and of the noise-free one.

    Introduced in notebooks/04_noprop_dt_mnist, section 4. Returns ``mean``, ``se`` (standard error
    of the mean over runs), the list ``runs`` and ``noise_free``. ``device`` as in :func:`accuracy`.
    """
    accs = [accuracy(model, data, noise=True, seed=seed + 1000 + r, device=device) for r in range(runs)]
    mean = float(np.mean(accs))
    se = float(np.std(accs, ddof=1) / math.sqrt(len(accs))) if len(accs) > 1 else float("nan")
    return {"mean": mean, "se": se, "runs": accs, "noise_free": accuracy(model, data, noise=False, device=device)}


def save_checkpoint(path, model, optimizers: dict, epoch: int, history: list, extra: dict | None = None) -> None:
    """Write model, optimizers, history and RNG state atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "epoch": epoch, "history": history, "config": model.config(),
             "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
             "extra": extra or {}}
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, model, optimizers: dict | None = None, restore_rng: bool = True) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizers``).

    Raises a ValueError when the checkpoint was written by a differently configured model.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config") != model.config():
        raise ValueError(f"checkpoint {path} was written by a different model configuration:\n"
                         f"  checkpoint: {state.get('config')}\n  this model: {model.config()}")
    model.load_state_dict(state["model"])
    if optimizers is not None:
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
    if restore_rng:
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state


def fit(model, train: TensorData, test: TensorData | None = None, epochs: int = 1, *, batch_size: int = 128,
        lr: float = 1e-3, weight_decay: float = 1e-3, seed: int = 0, checkpoint: str | Path | None = None,
        resume: bool = True, progress: bool = True, log: Callable[[str], None] | None = print,
        train_eval_size: int | None = 10_000, eval_noise: bool = True, device: str | torch.device = "cpu",
        max_seconds: float | None = None, eval_train: bool = True, bf16: bool = False) -> list[dict]:
    """Train ``model`` for ``epochs`` epochs and return the per-epoch history.

    Introduced in notebooks/04_noprop_dt_mnist, section 2.

    Each history row has ``epoch``, ``loss`` (mean training loss), ``train_acc`` (on a fixed random
    subset of ``train_eval_size`` training images, all of them if None), ``test_acc`` (one seeded
    run of the stochastic chain when ``eval_noise``, else noise-free), ``seconds`` (training time
    of the epoch) and ``eval_seconds``. Paper defaults: AdamW, lr 1e-3, weight decay 1e-3, batch 128.

    With ``checkpoint`` set, the state is saved after every epoch and, when ``resume`` and the file
    exists, training continues from it (the returned history then includes the earlier epochs).
    ``max_seconds`` stops after the first epoch that ends past that budget (the history says so).
    ``eval_train=False`` skips the training-set accuracy (``train_acc`` is then NaN), which saves
    the time of one evaluation pass per epoch. ``bf16=True`` runs the training steps under
    ``torch.autocast(dtype=torch.bfloat16)`` (convolutions and matrix products in bfloat16, the
    parameters and the optimiser in float32); evaluation stays in float32. Our measurement of its
    speed and accuracy on a CPU is in README.md ("Three ways to train NoProp-DT").
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    say = log or (lambda s: None)
    model.to(device)
    set_seed(seed)
    optimizers = model.configure_optimizers(lr=lr, weight_decay=weight_decay)
    history: list[dict] = []
    start_epoch = 1
    if checkpoint is not None and resume and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, model, optimizers)
        history = list(state["history"])
        start_epoch = state["epoch"] + 1
        say(f"resumed from {checkpoint} after epoch {state['epoch']}")
    loader = TensorLoader(train, batch_size=batch_size, shuffle=True, seed=seed)
    train_eval = train.subset(train_eval_size, seed=seed + 7) if train_eval_size else train
    if log and start_epoch <= epochs:
        say(HISTORY_HEADER)
        for row in history:
            say(format_history_row(row))
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        progress = False
    spent = sum(r["seconds"] + r.get("eval_seconds", 0.0) for r in history)
    for epoch in range(start_epoch, epochs + 1):
        model.train()
        loader.epoch = epoch
        t0 = time.perf_counter()
        total, count = 0.0, 0
        batches = loader
        if progress:
            batches = tqdm(loader, total=len(loader), desc=f"epoch {epoch}/{epochs}", leave=False)
        for i, (x, y) in enumerate(batches):
            x, y = x.to(device), y.to(device)
            try:
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                    out = model.training_step(x, y, optimizers)
            except FloatingPointError as err:
                raise FloatingPointError(f"epoch {epoch}, batch {i}: {err}. Lower the learning rate or "
                                         "check the schedule (its loss weights) and the inputs.") from None
            total += out["loss"] * len(y)
            count += len(y)
            if progress:
                batches.set_postfix(loss=f"{out['loss']:.4f}", refresh=False)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        row = {"epoch": epoch, "loss": total / max(count, 1),
               "train_acc": (accuracy(model, train_eval, noise=eval_noise, seed=seed + 1, device=device)
                             if eval_train else float("nan")),
               "test_acc": accuracy(model, test, noise=eval_noise, seed=seed + 2, device=device) if test is not None
               else float("nan"),
               "seconds": seconds}
        row["eval_seconds"] = time.perf_counter() - t1
        history.append(row)
        say(format_history_row(row))
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizers, epoch, history)
        spent += row["seconds"] + row["eval_seconds"]
        if max_seconds is not None and spent > max_seconds and epoch < epochs:
            say(f"stopping after epoch {epoch}: {spent:.0f} s spent, budget {max_seconds:.0f} s")
            row["stopped_by_budget"] = True
            break
    model.eval()
    return history
