r"""``python -m nplib reproduce``: the paper's Table 1 (test accuracy) and Table 2 (training memory).

Introduced in README.md ("Reproducing the paper"). One command trains every selected
(dataset, row, seed) at the paper's settings, evaluates it as the paper does, and writes

* ``<out>/runs/<dataset>__<row>__seed<k>.json``: one file per trained model, written as soon as
  it finishes (the resume unit);
* ``<out>/checkpoints/<dataset>__<row>__seed<k>.pt``: :func:`nplib.train.fit`'s per-epoch
  checkpoint, so an interrupted training continues from its last epoch;
* ``<out>/reproduce.json`` and ``<out>/reproduce.md``: mean +- standard error over seeds x
  inference runs beside the paper's numbers, and the peak training memory beside Table 2.

Run it again after an interruption with the same arguments: finished (dataset, row, seed) files
are kept, unfinished trainings resume from their checkpoint. A larger ``--epochs`` later continues
the kept checkpoints.

**Settings (the paper's section 4 and appendix).** Blocks: the paper's (``BlockConfig.paper()``), T = 10, batch 128,
AdamW (DT, backprop) or Adam (CT, FM) with lr 1e-3 and weight decay 1e-3, eta = 0.1 (DT) and 1 (CT),
cosine schedule (alpha_bar clipped to [1e-4, 0.99], the course's choice), 100 epochs on MNIST and
150 on CIFAR-10/100, no augmentation. CT and FM: 1000 inference steps. The paper gives no epochs
for CT and FM: we use the DT epochs (our choice). Evaluation: 3 seeds (0, 1, 2), each evaluated with 5
stochastic inference runs; the table reports the mean and the standard error over the 15 values
(``std / sqrt(15)``), and the noise-free chain's accuracy beside it.

**Memory.** On a GPU, before training seed 0 of each (dataset, row), a copy of the model runs 5
training steps of batch 128 after ``torch.cuda.reset_peak_memory_stats``; the table reports
``torch.cuda.max_memory_allocated`` (parameters, optimiser state, activations and gradients; the
CUDA context is not included). On a CPU it says 'not measured'.

**Quick mode** (``NPLIB_SMOKE=1``): T = 2 small blocks, 128 training and 64 test images, 1 epoch,
seed 0 only, 2 inference runs, 10 CT/FM steps: every row end to end in seconds, numbers meaningless.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["PAPER_ACCURACY", "PAPER_MEMORY_GB", "ROWS", "DATASETS", "PAPER_EPOCHS", "settings", "build_row_model",
           "run", "summarise", "markdown_table", "COMMANDS", "add_parser"]

#: The paper's Table 1: test accuracy (%), mean over 3 seeds x 5 inference runs (Li, Teh & Pascanu 2025,
#: "NoProp: Training Neural Networks without Back-propagation or Forward-propagation", Table 1;
#: transcribed from the paper). None: not reported.
PAPER_ACCURACY = {
    "backprop":        {"label": "Backprop (one-hot)",            "mnist": 99.46, "cifar10": 79.92, "cifar100": 45.85},
    "dt_onehot":       {"label": "NoProp-DT (one-hot)",           "mnist": 99.47, "cifar10": 79.25, "cifar100": 45.93},
    "dt_learned":      {"label": "NoProp-DT (dim 20)",            "mnist": 99.49, "cifar10": 79.12, "cifar100": 45.19},
    "dt_prototype":    {"label": "NoProp-DT (prototype)",         "mnist": 99.54, "cifar10": 80.54, "cifar100": 46.06},
    "ct_onehot":       {"label": "NoProp-CT (one-hot)",           "mnist": 97.84, "cifar10": 73.35, "cifar100": 33.66},
    "fm_onehot":       {"label": "NoProp-FM (one-hot)",           "mnist": 99.21, "cifar10": 73.14, "cifar100": 6.38},
    "fm_prototype":    {"label": "NoProp-FM (prototype)",         "mnist": 98.52, "cifar10": 75.18, "cifar100": 37.57},
    "adjoint":         {"label": "Adjoint neural ODE (one-hot)",  "mnist": 98.62, "cifar10": 66.78, "cifar100": 25.03},
    "forward_forward": {"label": "Forward-Forward (other paper)", "mnist": 98.63, "cifar10": None, "cifar100": None},
}

#: The paper's Table 2: GPU memory in training (GB), same paper.
PAPER_MEMORY_GB = {
    "backprop":  {"mnist": 0.87, "cifar10": 1.17, "cifar100": 1.73},
    "noprop_dt": {"mnist": 0.49, "cifar10": 0.64, "cifar100": 1.23},
    "noprop_ct": {"mnist": 1.05, "cifar10": 0.45, "cifar100": 0.50},
    "noprop_fm": {"mnist": 1.06, "cifar10": 0.44, "cifar100": 0.49},
}

#: The rows this command trains: key -> (variant, embedding, row of PAPER_MEMORY_GB).
ROWS = {
    "dt_onehot": ("dt", "onehot", "noprop_dt"),
    "dt_learned": ("dt", "learned", "noprop_dt"),
    "backprop": ("backprop", "onehot", "backprop"),
    "ct_onehot": ("ct", "onehot", "noprop_ct"),
    "fm_onehot": ("fm", "onehot", "noprop_fm"),
}
DATASETS = ("mnist", "cifar10", "cifar100")
#: Training epochs in the paper.
PAPER_EPOCHS = {"mnist": 100, "cifar10": 150, "cifar100": 150}
PAPER_SEEDS = (0, 1, 2)
PAPER_EVAL_RUNS = 5
MEMORY_STEPS = 5


def settings(smoke: bool) -> dict:
    """The run's fixed settings: the paper's (full) or the tiny quick-mode ones."""
    if smoke:
        return {"block": "small", "T": 2, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-3, "eval_runs": 2,
                "seeds": (0,), "inference_steps": 10, "train_size": 128, "test_size": 64,
                "epochs": dict.fromkeys(DATASETS, 1), "smoke": True}
    return {"block": "paper", "T": 10, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-3,
            "eval_runs": PAPER_EVAL_RUNS, "seeds": PAPER_SEEDS, "inference_steps": 1000, "train_size": None,
            "test_size": None, "epochs": dict(PAPER_EPOCHS), "smoke": False}


def build_row_model(row: str, image_shape, num_classes: int, cfg: dict):
    """The model of one row of Table 1 at the run's settings (paper block, T = 10, eta as in the paper)."""
    from nplib.builder import build_model

    if row not in ROWS:
        raise ValueError(f"unknown row {row!r}; choose from {sorted(ROWS)}")
    variant, embedding, _ = ROWS[row]
    return build_model(variant, cfg["block"], image_shape, num_classes, cfg["T"], embedding,
                       embed_dim=20 if embedding == "learned" else None, inference_steps=cfg["inference_steps"])


def _peak_memory_gb(model, train, cfg: dict, device, fast: bool) -> float | str:
    """Peak ``torch.cuda.max_memory_allocated`` (GB) over a few training steps of a copy of the model."""
    if torch.device(device).type != "cuda":
        return "not measured"
    m = copy.deepcopy(model).to(device)
    trainer = _trainer(m, fast)
    opts = trainer.configure_optimizers(lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    g = torch.Generator().manual_seed(0)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(MEMORY_STEPS):
        idx = torch.randint(0, len(train), (min(cfg["batch_size"], len(train)),), generator=g)
        trainer.training_step(train.x[idx].to(device), train.y[idx].to(device), opts)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 1e9
    del m, trainer, opts
    torch.cuda.empty_cache()
    return peak


def _trainer(model, fast: bool):
    if fast:
        from nplib.speed.fast import FastDTTrainer
        from nplib.models import NoPropDT

        if isinstance(model, NoPropDT) and not model.embedding.trainable:
            return FastDTTrainer(model)
    return model


def _name(dataset: str, row: str, seed: int) -> str:
    return f"{dataset}__{row}__seed{seed}"


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def run_one(dataset: str, row: str, seed: int, epochs: int, cfg: dict, out: Path, device, data_cache: dict,
            fast: bool = False, log=print) -> dict:
    """Train and evaluate one (dataset, row, seed); write and return its record (resumable)."""
    from nplib.data import load_train_test
    from nplib.train import evaluate_runs, fit, set_seed

    name = _name(dataset, row, seed)
    record_path = out / "runs" / f"{name}.json"
    if record_path.exists():
        rec = json.loads(record_path.read_text())
        if rec.get("epochs") == epochs and rec.get("smoke") == cfg["smoke"]:
            log(f"{name}: done earlier ({record_path}), skipped")
            return rec
    if dataset not in data_cache:
        data_cache[dataset] = load_train_test(dataset, smoke=False, train_size=cfg["train_size"],
                                              test_size=cfg["test_size"])
    train, test = data_cache[dataset]
    set_seed(seed)
    model = build_row_model(row, train.image_shape, train.num_classes, cfg)
    memory = _peak_memory_gb(model, train, cfg, device, fast) if seed == min(cfg["seeds"]) else None
    checkpoint = out / "checkpoints" / f"{name}.pt"
    trainer = _trainer(model.to(device), fast)
    log(f"{name}: training {epochs} epochs on {len(train)} images ({'fast path' if trainer is not model else 'loop'})")
    t0 = time.perf_counter()
    history = fit(trainer, train, test, epochs, batch_size=cfg["batch_size"], lr=cfg["lr"],
                  weight_decay=cfg["weight_decay"], seed=seed, checkpoint=checkpoint, progress=False, log=log,
                  device=device)
    seconds = time.perf_counter() - t0
    final = evaluate_runs(model, test, runs=cfg["eval_runs"], seed=seed, device=device)
    rec = {"dataset": dataset, "row": row, "seed": seed, "epochs": epochs, "smoke": cfg["smoke"],
           "train_size": len(train), "test_size": len(test), "runs": final["runs"], "noise_free": final["noise_free"],
           "peak_memory_gb": memory, "seconds": seconds, "fast_path": trainer is not model,
           "history": history,
           "model": model.config()}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(rec), indent=2))
    tmp.replace(record_path)
    log(f"{name}: test accuracy {100 * np.mean(final['runs']):.2f} % (mean of {len(final['runs'])} runs), "
        f"noise-free {100 * final['noise_free']:.2f} %, {seconds:.0f} s")
    return rec


def summarise(records: list[dict]) -> dict:
    """Per (dataset, row): mean and standard error over seeds x inference runs, beside the paper.

    Introduced in README.md ("Reproducing the paper"). s.e. = std(ddof=1) / sqrt(n) over the n =
    seeds x runs accuracies (the paper's "mean +- standard error over 3 seeds x 5 runs").
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["row"]), []).append(r)
    table = {}
    for (dataset, row), recs in groups.items():
        accs = [100 * a for r in recs for a in r["runs"]]
        n = len(accs)
        mem = next((r["peak_memory_gb"] for r in recs if r.get("peak_memory_gb") is not None), None)
        table.setdefault(dataset, {})[row] = {
            "mean": float(np.mean(accs)), "se": float(np.std(accs, ddof=1) / math.sqrt(n)) if n > 1 else None,
            "n": n, "seeds": sorted(r["seed"] for r in recs),
            "noise_free_mean": float(np.mean([100 * r["noise_free"] for r in recs])),
            "paper": PAPER_ACCURACY[row][dataset], "peak_memory_gb": mem,
            "paper_memory_gb": PAPER_MEMORY_GB[ROWS[row][2]][dataset], "epochs": recs[0]["epochs"]}
    return table


def markdown_table(table: dict, smoke: bool) -> str:
    """The two tables as markdown: accuracy beside Table 1, memory beside Table 2."""
    lines = []
    if smoke:
        lines += ["**Quick mode (NPLIB_SMOKE=1): tiny models and data; the numbers mean nothing.**", ""]
    lines += ["## Test accuracy (%) — this run vs the paper's Table 1", "",
              "| dataset | row | epochs | seeds x runs | ours (mean ± s.e.) | noise-free | paper |",
              "|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        for row in ROWS:
            e = table.get(dataset, {}).get(row)
            if e is None:
                continue
            se = "n/a" if e["se"] is None else f"{e['se']:.2f}"
            paper = "-" if e["paper"] is None else f"{e['paper']:.2f}"
            lines.append(f"| {dataset} | {PAPER_ACCURACY[row]['label']} | {e['epochs']} | "
                         f"{len(e['seeds'])} x {e['n'] // max(len(e['seeds']), 1)} | {e['mean']:.2f} ± {se} | "
                         f"{e['noise_free_mean']:.2f} | {paper} |")
    lines += ["", "## Peak training memory (GB) — this run vs the paper's Table 2", "",
              "| dataset | row | ours | paper |", "|---|---|---|---|"]
    for dataset in DATASETS:
        for row in ROWS:
            e = table.get(dataset, {}).get(row)
            if e is None:
                continue
            mem = e["peak_memory_gb"]
            ours = mem if isinstance(mem, str) or mem is None else f"{mem:.2f}"
            lines.append(f"| {dataset} | {PAPER_ACCURACY[row]['label']} | {ours or 'not measured'} | "
                         f"{e['paper_memory_gb']:.2f} |")
    return "\n".join(lines) + "\n"


def _parse_list(text: str | None, allowed, what: str) -> list[str]:
    if text is None:
        return list(allowed)
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise ValueError(f"unknown {what} {bad or text!r}; choose from {', '.join(allowed)}")
    return items


def run(args) -> int:
    """The ``reproduce`` subcommand (README.md, "Reproducing the paper")."""
    from nplib.data import smoke_mode
    from nplib.train import hardware_info

    smoke = smoke_mode()
    cfg = settings(smoke)
    datasets = _parse_list(args.datasets, DATASETS, "dataset(s)")
    rows = _parse_list(args.rows, tuple(ROWS), "row(s)")
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
        if not seeds or any(s < 0 for s in seeds):
            raise ValueError(f"--seeds must be non-negative integers, got {args.seeds!r}")
        cfg["seeds"] = tuple(seeds)
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
        cfg["epochs"] = dict.fromkeys(DATASETS, args.epochs)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    jobs = [(d, r, s) for d in datasets for r in rows for s in cfg["seeds"]]
    if torch.device(device).type == "cpu" and not smoke:
        print(f"warning: reproduce on a CPU: {len(jobs)} trainings of the paper's block for "
              f"{'/'.join(str(cfg['epochs'][d]) for d in datasets)} epochs would take weeks to months here. A part "
              "that fits in about an hour on a laptop-class CPU: --datasets mnist --rows dt_onehot --seeds 0 "
              "--epochs 1 (or quick mode, NPLIB_SMOKE=1, in seconds). Peak memory is 'not measured' on a CPU.",
              file=sys.stderr)
    print(f"reproduce: {len(jobs)} trainings ({', '.join(datasets)} x {', '.join(rows)} x seeds "
          f"{', '.join(map(str, cfg['seeds']))}), device {device}{' (quick mode)' if smoke else ''}, out {out}")
    records, cache = [], {}
    for dataset, row, seed in jobs:
        records.append(run_one(dataset, row, seed, cfg["epochs"][dataset], cfg, out, device, cache, fast=args.fast))
    table = summarise(records)
    result = {"command": " ".join(["python -m nplib"] + sys.argv[1:]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "hardware": hardware_info(), "device": device, "smoke": smoke,
              "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
              "fast_path": bool(args.fast), "table": table,
              "paper": {"table1_accuracy": PAPER_ACCURACY, "table2_memory_gb": PAPER_MEMORY_GB},
              "runs": [str(out / "runs" / f"{_name(*j)}.json") for j in jobs]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce.json").write_text(json.dumps(_jsonable(result), indent=2))
    md = markdown_table(table, smoke)
    (out / "reproduce.md").write_text(md)
    print(md)
    print(f"wrote {out / 'reproduce.json'} and {out / 'reproduce.md'}")
    return 0


def add_parser(sub) -> None:
    """Register ``python -m nplib reproduce`` (README.md, "Reproducing the paper")."""
    p = sub.add_parser("reproduce", help="the paper's Table 1 (accuracy) and Table 2 (memory), resumable")
    p.add_argument("--datasets", default=None, help=f"comma-separated subset of {','.join(DATASETS)} (default all)")
    p.add_argument("--rows", default=None, help=f"comma-separated subset of {','.join(ROWS)} (default all)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2 as in the paper)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for every dataset (default: the paper's)")
    p.add_argument("--out", default="runs/reproduce", help="output folder (default runs/reproduce)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--fast", action="store_true",
                   help="train NoProp-DT (one-hot) with the batched fast path (nplib.speed.fast); other rows use their loop")
    p.set_defaults(func=run)


COMMANDS = {"reproduce": add_parser}
