"""The four benchmarks behind notebook 06, runnable from the installed package.

Introduced in notebooks/06_backprop_vs_noprop, section 0 (benchmarks/README.md describes each
measurement and its method)::

    python -m nplib bench throughput [--quick] [--device cpu|cuda|auto] [--out FILE]
    python -m nplib bench memory     [...]
    python -m nplib bench parallel   [...]
    python -m nplib bench inference  [...]
    python -m nplib bench report     [--dir DIR]      # markdown tables of the result files

Each benchmark prints a table and writes a JSON file with the exact command, the configuration,
the hardware (:func:`nplib.train.hardware_info` plus thread settings and the load average at start
and end) and every row. It writes under the runs directory (:func:`nplib.notebook.runs_dir`):
``bench_<name>.json``, or ``bench_<name>_quick.json`` with ``--quick`` (a tiny configuration that
runs in seconds), unless ``--out`` names the file. It never writes into the shipped results
(``nplib/results/``) unless ``--out`` says so: ``--out nplib/results/bench_<name>.json`` from a
checkout is the documented refresh step. ``report`` reads the shipped results by default.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["BENCHMARKS", "main", "add_parser", "COMMANDS", "run_throughput", "run_memory", "run_parallel",
           "run_inference", "report", "load_bench", "describe", "default_out", "TARGET_RATIO"]

#: The benchmark names, in the order of notebook 06's sections.
BENCHMARKS = ("throughput", "memory", "parallel", "inference")

#: the issue's acceptance threshold: NoProp-DT / backprop peak memory at batch 512, paper block
TARGET_RATIO, TARGET_BLOCK, TARGET_BATCH = 0.35, "paper", 512


# --------------------------------------------------------------------------------------------
# Shared pieces: hardware, output path, table, result file


def _git_commit() -> str:
    """The checkout's commit when nplib runs from one, else "" (an installed wheel has none)."""
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return ""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001 - informational only
        return ""


def _hardware() -> dict:
    """:func:`nplib.train.hardware_info` plus the thread settings and the load average."""
    from nplib.train import hardware_info

    info = hardware_info()
    info["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {name!r}")
    return name


def default_out(name: str, quick: bool) -> Path:
    """Where a benchmark writes without ``--out``: ``<runs>/bench_<name>[_quick].json``."""
    from nplib.data import runs_dir

    return runs_dir() / (f"bench_{name}_quick.json" if quick else f"bench_{name}.json")


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table; ``columns`` are (key, header, format) with format like '{:.1f}'."""
    cells = [[fmt.format(r[k]) if r.get(k) is not None else "-" for k, _, fmt in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, (_, h, _) in enumerate(columns)]
    lines = ["  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _command(name: str, args) -> str:
    """The command line that reproduces this run (rebuilt from the parsed options)."""
    parts = ["python", "-m", "nplib", "bench", name] + (["--quick"] if args.quick else [])
    for opt in ("device", "T", "batch_size", "steps", "world_size", "seed", "out"):
        value = getattr(args, opt, None)
        if value is not None:
            parts += [f"--{opt.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _write(name: str, args, config: dict, rows: list[dict], hw: dict, seconds: float, **extra) -> Path:
    """Write ``{"benchmark", "command", "config", "hardware", "rows", ...}`` as JSON; return the path."""
    try:
        hw = dict(hw, loadavg_at_end=list(os.getloadavg()))
    except OSError:
        pass
    path = Path(args.out) if args.out else default_out(name, args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "command": _command(name, args), "quick": bool(args.quick),
               "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "git_commit": _git_commit(), "wall_seconds": round(seconds, 2),
               "config": config, "hardware": hw, "rows": rows}
    payload.update(extra)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return path


# --------------------------------------------------------------------------------------------
# 1. Training throughput


def run_throughput(args) -> dict:
    """Training images/s of NoProp-DT and the backprop baseline (notebook 06, section 1).

    One NoProp-DT step updates all T blocks and the classifier on one minibatch (T separate
    forward / backward / AdamW steps); one backprop step runs the T-block chain forward and
    backward once. Both touch every block once per minibatch, so images/s compare the same work.
    """
    import torch

    from nplib.speed.parallel import measure_throughput

    device = _resolve_device(args.device)
    if args.quick:
        plan = [("small", 2, 1)]
    elif device.startswith("cuda"):
        plan = [("small", 50, 5), ("paper", 50, 5)]
    else:
        plan = [("small", 16, 2), ("paper", 4, 1)]
    hw, t0, rows = _hardware(), time.perf_counter(), []
    for block, steps, warmup in plan:
        for kind in ("noprop", "backprop"):
            r = measure_throughput(kind, block, batch_size=args.batch_size, steps=steps, warmup=warmup, T=args.T,
                                   device=device)
            rows.append(r)
            print(f"  {kind:8s} {block:5s} {r['images_per_s']:8.1f} images/s", flush=True)
    for r in rows:
        other = next(o for o in rows if o["block"] == r["block"] and o["kind"] == "backprop")
        r["relative_to_backprop"] = r["images_per_s"] / other["images_per_s"]
    print(_table(rows, [("kind", "model", "{}"), ("block", "block", "{}"), ("batch_size", "batch", "{}"),
                        ("steps", "steps", "{}"), ("seconds_per_step", "s/step", "{:.3f}"),
                        ("images_per_s", "images/s", "{:.1f}"), ("relative_to_backprop", "vs backprop", "{:.2f}")]))
    config = {"batch_size": args.batch_size, "T": args.T, "device": device, "threads": torch.get_num_threads(),
              "data": "random images 1x28x28, 10 classes (cost does not depend on pixel values)",
              "optimizer": "AdamW lr 1e-3 wd 1e-3 (one per block + shared for NoProp-DT, one for backprop)",
              "plan": [{"block": b, "steps": s, "warmup": w} for b, s, w in plan]}
    path = _write("throughput", args, config, rows, hw, time.perf_counter() - t0)
    return {"rows": rows, "path": path}


# --------------------------------------------------------------------------------------------
# 2. Peak training memory


def run_memory(args) -> dict:
    """Peak training memory above idle vs batch size, NoProp-DT vs backprop (notebook 06, section 2).

    Every measurement runs in a fresh child process (:func:`nplib.speed.parallel.measure_training_memory`):
    model, AdamW optimizer(s) and minibatches are built, the idle baseline recorded, two training
    steps run and the peak minus the baseline reported. GPU: ``torch.cuda.max_memory_allocated``.
    CPU: peak resident set size (VmHWM, reset after the build), with glibc malloc told to give freed
    tensors back; the same configuration with glibc's defaults is measured too (``default`` rows).
    """
    import torch

    from nplib.speed.parallel import MALLOC_ENV, measure_training_memory

    device = _resolve_device(args.device)
    if args.quick:
        plan = [("small", 32, "fixed")]
    else:
        plan = [("paper", b, "fixed") for b in (64, 128, 256, 512)] + [("small", b, "fixed") for b in (128, 512)]
        if device == "cpu":
            plan += [("paper", 512, "default"), ("small", 512, "default")]
    threads = torch.get_num_threads()
    hw, t0, rows = _hardware(), time.perf_counter(), []
    for block, batch, allocator in plan:
        pair = {}
        for kind in ("noprop", "backprop"):
            r = measure_training_memory(kind, block, batch_size=batch, steps=args.steps, T=args.T, device=device,
                                        threads=threads, allocator=allocator)
            pair[kind] = r
            rows.append(r)
            print(f"  {kind:8s} {block:5s} batch {batch:4d} allocator {allocator:7s} "
                  f"peak above idle {r['peak_delta_mib']:8.1f} MiB", flush=True)
        # ratio = peak_NoProp / peak_backprop (both above their idle baselines)
        ratio = pair["noprop"]["peak_delta_bytes"] / pair["backprop"]["peak_delta_bytes"]
        for r in pair.values():
            r["noprop_over_backprop"] = ratio
    print(_table(rows, [("kind", "model", "{}"), ("block", "block", "{}"), ("batch_size", "batch", "{}"),
                        ("allocator", "allocator", "{}"), ("peak_delta_mib", "peak-idle MiB", "{:.1f}"),
                        ("noprop_over_backprop", "NoProp/BP", "{:.3f}")]))
    target = next((r for r in rows if r["block"] == TARGET_BLOCK and r["batch_size"] == TARGET_BATCH
                   and r["allocator"] == "fixed" and r["kind"] == "noprop"), None)
    check = None
    if target is not None:
        check = {"block": TARGET_BLOCK, "batch_size": TARGET_BATCH, "ratio": target["noprop_over_backprop"],
                 "threshold": TARGET_RATIO, "passed": target["noprop_over_backprop"] <= TARGET_RATIO}
        print(f"paper block, batch {TARGET_BATCH}: NoProp-DT / backprop = {check['ratio']:.3f} "
              f"({'<=' if check['passed'] else '>'} {TARGET_RATIO})")
    config = {"T": args.T, "steps": args.steps, "device": device, "threads_per_child": threads,
              "data": "random images 1x28x28, 10 classes", "optimizer": "AdamW (state created in the first step, "
              "so it is counted above the idle baseline)", "malloc_env_fixed": MALLOC_ENV,
              "baseline": "after building model, optimizer(s) and data, before the first training step",
              "plan": [{"block": b, "batch_size": n, "allocator": a} for b, n, a in plan]}
    path = _write("memory", args, config, rows, hw, time.perf_counter() - t0, check=check)
    return {"rows": rows, "check": check, "path": path}


# --------------------------------------------------------------------------------------------
# 3. Block-parallel training


def _training_data(n: int):
    """The first ``n`` of a fixed random subset of MNIST's training set, or random images without MNIST."""
    from nplib.data import DatasetNotFoundError, load_dataset
    from nplib.speed.parallel import synthetic_data

    try:
        return load_dataset("mnist", train=True, download=False).subset(n, seed=0), "MNIST train subset"
    except (DatasetNotFoundError, RuntimeError, ImportError):
        return synthetic_data(n), "random images (MNIST not found under the data root)"


def run_parallel(args) -> dict:
    """Block-parallel NoProp-DT training (torch.distributed) vs one process (notebook 06, section 3).

    For each block size, three runs of the same training (same seed, same MNIST subset, one epoch):
    one process with all torch threads, one process with 1 thread, and ``world_size`` processes
    with 1 thread each (gloo on 127.0.0.1, NCCL with one GPU per process; no gradient
    communication, every block gathered from its owner at the end). Speed-up = training seconds of
    the single process / training seconds of the slowest rank; the parallel wall time with process
    start-up is reported separately. Exactness: ``torch.equal`` against the 1-thread single process.
    """
    import torch

    from nplib.speed.parallel import max_abs_difference, models_equal, train_block_parallel, train_single

    device = _resolve_device(args.device)
    plan = [("small", 256, 64)] if args.quick else [("small", 4096, 128), ("paper", 1024, 128)]
    cores = torch.get_num_threads()
    hw, t0, rows, data_name = _hardware(), time.perf_counter(), [], ""
    for block, n, batch in plan:
        data, data_name = _training_data(n)
        kw = {"image_shape": tuple(data.image_shape), "num_classes": 10, "T": args.T, "block": block}
        common = dict(epochs=1, batch_size=batch, seed=args.seed, device=device)
        single = {}
        for threads in sorted({cores, 1}, reverse=True):
            model, seconds = train_single(kw, data, threads=threads, **common)
            single[threads] = model
            rows.append({"block": block, "run": f"single, {threads} thread(s)", "processes": 1,
                         "threads_per_process": threads, "train_seconds": seconds, "wall_seconds": None,
                         "images": n, "batch_size": batch})
            print(f"  {block:5s} single {threads} thread(s): {seconds:.1f} s", flush=True)
        model, info = train_block_parallel(kw, data, world_size=args.world_size, threads_per_process=1, **common)
        eq1, diff1 = models_equal(model, single[1])
        eqc, _ = models_equal(model, single[cores])
        row = {"block": block, "run": f"parallel {args.world_size}x1", "processes": args.world_size,
               "threads_per_process": 1, "train_seconds": info["train_seconds"], "wall_seconds": info["wall_seconds"],
               "gather_seconds": info["gather_seconds"], "images": n, "batch_size": batch, "backend": info["backend"],
               "rank_blocks": info["blocks"], "ranks": info["ranks"],
               "equal_to_single_1_thread": eq1, "tensors_differing_from_single_1_thread": len(diff1),
               f"equal_to_single_{cores}_threads": eqc,
               f"max_abs_diff_to_single_{cores}_threads": max_abs_difference(model, single[cores])}
        base = next(r for r in rows if r["block"] == block and r["threads_per_process"] == cores
                    and r["processes"] == 1)
        one = next(r for r in rows if r["block"] == block and r["threads_per_process"] == 1 and r["processes"] == 1)
        row["speedup_vs_single_all_threads"] = base["train_seconds"] / info["train_seconds"]
        row["speedup_vs_single_all_threads_incl_startup"] = base["train_seconds"] / info["wall_seconds"]
        row["speedup_vs_single_1_thread"] = one["train_seconds"] / info["train_seconds"]
        rows.append(row)
        print(f"  {block:5s} parallel {args.world_size}x1: {info['train_seconds']:.1f} s training, "
              f"{info['wall_seconds']:.1f} s with start-up; equal to single 1 thread: {eq1}", flush=True)
    print(_table(rows, [("block", "block", "{}"), ("run", "run", "{}"), ("train_seconds", "train s", "{:.2f}"),
                        ("wall_seconds", "wall s (incl. start-up)", "{:.2f}"),
                        ("speedup_vs_single_all_threads", f"speed-up vs 1 proc x {cores} thr", "{:.2f}"),
                        ("speedup_vs_single_1_thread", "vs 1 proc x 1 thr", "{:.2f}"),
                        ("equal_to_single_1_thread", "== 1 proc x 1 thr", "{}")]))
    config = {"T": args.T, "world_size": args.world_size, "device": device, "seed": args.seed, "epochs": 1,
              "data": data_name, "single_process_threads": sorted({cores, 1}, reverse=True),
              "parallel_threads_per_process": 1, "classifier_rank": 0,
              "plan": [{"block": b, "images": n, "batch_size": bs} for b, n, bs in plan],
              "timing": "train seconds from first to last minibatch (between barriers for the parallel run); "
                        "wall seconds of the parallel run include process start-up and the final gather"}
    path = _write("parallel", args, config, rows, hw, time.perf_counter() - t0)
    return {"rows": rows, "path": path}


# --------------------------------------------------------------------------------------------
# 4. Inference latency


def run_inference(args) -> dict:
    """Median inference latency, NoProp-DT's T-step chain vs one backprop forward (notebook 06, section 4).

    Both models run all T blocks one after the other; NoProp-DT's chain adds the posterior step
    ``z_t = a_t u_hat + b_t z_{t-1} + sqrt(c_t) eps`` per block. ``ms/block`` is the median over T.
    """
    import torch

    from nplib.speed.parallel import measure_inference_latency

    device = _resolve_device(args.device)
    if args.quick:
        plan, repeats = [("small", 1)], 3
    else:
        plan = [("small", 1), ("small", 128), ("paper", 1), ("paper", 128)]
        repeats = 50 if device.startswith("cuda") else 15
    hw, t0, rows = _hardware(), time.perf_counter(), []
    for block, batch in plan:
        for kind, noise in (("noprop", True), ("noprop", False), ("backprop", False)):
            rows.append(measure_inference_latency(kind, block, batch_size=batch, repeats=repeats, warmup=2, T=args.T,
                                                  device=device, noise=noise))
    for r in rows:
        other = next(o for o in rows if o["block"] == r["block"] and o["batch_size"] == r["batch_size"]
                     and o["kind"] == "backprop")
        r["relative_to_backprop"] = r["median_ms"] / other["median_ms"]
        r["ms_per_image"] = r["median_ms"] / r["batch_size"]
    print(_table(rows, [("kind", "model", "{}"), ("noise", "noise", "{}"), ("block", "block", "{}"),
                        ("batch_size", "batch", "{}"), ("median_ms", "median ms", "{:.2f}"),
                        ("ms_per_image", "ms/image", "{:.3f}"), ("ms_per_block", "ms/block", "{:.2f}"),
                        ("relative_to_backprop", "vs backprop", "{:.2f}")]))
    config = {"T": args.T, "device": device, "threads": torch.get_num_threads(), "repeats": repeats, "warmup": 2,
              "statistic": "median over repeats", "mode": "eval, torch.no_grad",
              "data": "random images 1x28x28", "plan": [{"block": b, "batch_size": n} for b, n in plan]}
    path = _write("inference", args, config, rows, hw, time.perf_counter() - t0)
    return {"rows": rows, "path": path}


# --------------------------------------------------------------------------------------------
# Reading results: the notebook's header line and the README's markdown tables


def load_bench(name: str, root: Path | str | None = None) -> dict:
    """A benchmark result: the shipped ``bench_<name>.json`` (:mod:`nplib.reference`) or the one in ``root``
    (``bench_<name>.json``, else the ``--quick`` run's ``bench_<name>_quick.json``).

    Introduced in notebooks/06_backprop_vs_noprop, section 0.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {BENCHMARKS}")
    if root is None:
        from nplib.reference import load_result

        return load_result(f"bench_{name}")
    path = Path(root) / f"bench_{name}.json"
    if not path.is_file() and (Path(root) / f"bench_{name}_quick.json").is_file():
        path = Path(root) / f"bench_{name}_quick.json"   # a folder of --quick runs
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m nplib bench {name} --out {path}`")
    return json.loads(path.read_text())


def describe(data: dict) -> str:
    """One line on where and how a result was measured (command, date, hardware, load).

    Introduced in notebooks/06_backprop_vs_noprop, section 0.
    """
    hw = data["hardware"]
    load = hw.get("loadavg_at_start")
    return (f"bench_{data['benchmark']}.json: {data['command']}\n  measured {data['date_utc']} on "
            f"{hw.get('cpu_model') or hw['processor']} ({hw['cpu_count']} cores, {hw['torch_threads']} torch threads, "
            f"device {hw['device']}{', ' + hw['gpu'] if 'gpu' in hw else ''}), torch {hw['torch']}"
            + (f", load average at start {load[0]:.1f}" if load else ""))


def _header(data: dict) -> str:
    hw, cfg = data["hardware"], data["config"]
    where = hw.get("gpu") or f"{hw.get('cpu_model') or hw['processor']}, {hw['cpu_count']} cores"
    load_avg = hw.get("loadavg_at_start")
    return (f"`{data['command']}` ({data['date_utc']}, commit {data.get('git_commit') or '?'}, "
            f"{data['wall_seconds']:.0f} s): {hw['device']} ({where}), torch {hw['torch']}, "
            f"{hw['torch_threads']} torch threads"
            + (f", load average at start {load_avg[0]:.1f}" if load_avg else "")
            + f". Device {cfg.get('device')}, T = {cfg.get('T')}.")


def _md(rows: list[list], head: list[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def report(root: Path | str | None = None) -> str:
    """Markdown tables of the benchmark results (shipped ones, or the files in ``root``).

    The results section of benchmarks/README.md is this output, so no number there is typed by hand.
    """
    def get(name):
        try:
            return load_bench(name, root)
        except FileNotFoundError:
            return None

    parts = []
    d = get("throughput")
    if d:
        parts += ["### 1. Training throughput", "", _header(d), "",
                  _md([[r["kind"], r["block"], r["batch_size"], r["steps"], f"{r['seconds_per_step']:.3f}",
                        f"{r['images_per_s']:.1f}", f"{r['relative_to_backprop']:.2f}"] for r in d["rows"]],
                      ["model", "block", "batch", "timed steps", "s / step", "images / s", "vs backprop"]), ""]
    d = get("memory")
    if d:
        parts += ["### 2. Peak training memory above the idle baseline", "", _header(d), "",
                  _md([[r["kind"], r["block"], r["batch_size"], r["allocator"], f"{r['peak_delta_mib']:.1f}",
                        f"{r['noprop_over_backprop']:.3f}"] for r in d["rows"]],
                      ["model", "block", "batch", "malloc", "peak - idle (MiB)", "NoProp / backprop"]), ""]
        if d.get("check"):
            c = d["check"]
            parts += [f"Target: paper block, batch {c['batch_size']}: NoProp-DT / backprop = **{c['ratio']:.3f}** "
                      f"(target <= {c['threshold']}: {'met' if c['passed'] else 'NOT met'}).", ""]
    d = get("parallel")
    if d:
        cores = max(d["config"]["single_process_threads"])
        rows = []
        for r in d["rows"]:
            par = r["processes"] > 1
            rows.append([r["block"], r["images"], r["run"], f"{r['train_seconds']:.2f}",
                         f"{r['wall_seconds']:.1f}" if par else "-",
                         f"{r['speedup_vs_single_all_threads']:.2f}" if par else "-",
                         f"{r['speedup_vs_single_1_thread']:.2f}" if par else "-",
                         str(r["equal_to_single_1_thread"]) if par else "-",
                         f"{r[f'max_abs_diff_to_single_{cores}_threads']:.1e}" if par else "-"])
        parts += [f"### 3. Block-parallel training ({d['config']['world_size']} processes)", "", _header(d),
                  f" Data: {d['config']['data']}, 1 epoch.", "",
                  _md(rows, ["block", "images", "run", "train s", "wall s (start-up incl.)",
                             f"speed-up vs 1 proc x {cores} thr", "vs 1 proc x 1 thr",
                             "bit-identical to 1 proc x 1 thr", f"max abs diff to 1 proc x {cores} thr"]), ""]
    d = get("inference")
    if d:
        parts += ["### 4. Inference latency (median)", "", _header(d), "",
                  _md([[r["kind"], r["noise"], r["block"], r["batch_size"], f"{r['median_ms']:.2f}",
                        f"{r['ms_per_image']:.3f}", f"{r['relative_to_backprop']:.2f}"] for r in d["rows"]],
                      ["model", "noise", "block", "batch", "ms / batch", "ms / image", "vs backprop"]), ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Command line


def _cmd_report(args) -> int:
    text = report(args.dir)
    if not text:
        raise FileNotFoundError(f"no bench_*.json in {args.dir or 'the shipped results'}")
    print(text)
    return 0


_RUN = {"throughput": run_throughput, "memory": run_memory, "parallel": run_parallel, "inference": run_inference}


def _cmd_run(args) -> int:
    _RUN[args.bench](args)
    return 0


def add_parser(subparsers) -> None:
    """Add ``bench`` and its five subcommands to ``python -m nplib`` (see :mod:`nplib.cli`)."""
    b = subparsers.add_parser("bench", help="run a benchmark of notebook 06 or print the results tables",
                              description=__doc__.split("\n\n")[0])
    sub = b.add_subparsers(dest="bench", required=True)
    helps = {"throughput": "training images/s, NoProp-DT vs backprop",
             "memory": "peak training memory vs batch size (child processes)",
             "parallel": "block-parallel training in 2 processes vs one process",
             "inference": "inference latency of the chain vs the backprop forward pass"}
    for name in BENCHMARKS:
        p = sub.add_parser(name, help=helps[name])
        p.add_argument("--quick", action="store_true",
                       help="tiny configuration (seconds); default output <runs>/bench_<name>_quick.json")
        p.add_argument("--device", default="auto", help="'cpu', 'cuda' or 'auto' (cuda when available)")
        p.add_argument("--out", default=None,
                       help="the JSON result (default <runs>/bench_<name>.json; the shipped copy is refreshed "
                            "with --out nplib/results/bench_<name>.json from a checkout)")
        p.add_argument("--T", type=int, default=10, help="number of blocks (default 10)")
        if name == "throughput":
            p.add_argument("--batch-size", type=int, default=128)
        if name == "memory":
            p.add_argument("--steps", type=int, default=2)
        if name == "parallel":
            p.add_argument("--world-size", type=int, default=2)
            p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=_cmd_run)
    r = sub.add_parser("report", help="markdown tables of the results (benchmarks/README.md)")
    r.add_argument("--dir", default=None, help="folder of bench_*.json (default: the shipped results)")
    r.set_defaults(func=_cmd_report)


#: Added to ``python -m nplib`` by :mod:`nplib.cli`.
COMMANDS = {"bench": add_parser}


def main(argv=None) -> dict | str:
    """``main(["throughput", "--quick", ...])``: run one benchmark and return its rows (and path).

    The same as ``python -m nplib bench ...`` without the error handling of :func:`nplib.cli.main`;
    ``report`` returns the markdown text.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m nplib")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    if args.bench == "report":
        return report(args.dir)
    return _RUN[args.bench](args)
