"""Benchmark 3: block-parallel NoProp-DT training with torch.distributed, vs one process.

Introduced in notebooks/06_backprop_vs_noprop, section 3. See benchmarks/README.md.

    flock /tmp/nplib-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_parallel.py

For each block size, three runs of the same training (same seed, same MNIST subset, one epoch):

* ``single, 2 threads``: one process, torch using both cores (intra-op parallelism);
* ``single, 1 thread``:  one process, one core;
* ``parallel 2x1``:      two processes (gloo on 127.0.0.1), one thread each, blocks 1-5 on rank 0
  (plus the classifier) and 6-10 on rank 1, no gradient communication, parameters gathered at the end.

Speed-up = training seconds of ``single, 2 threads`` / training seconds of the slowest rank (both
timed from the first to the last minibatch). The parallel run's wall time including process
start-up (spawn, torch import, process group) is reported separately. Exactness: the parallel
model is compared with ``torch.equal`` to ``single, 1 thread`` (same thread count per process,
expected bit-identical) and to ``single, 2 threads`` (a different thread count may change the
order of floating-point sums).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import hardware, parser, resolve_device, table, write_result  # noqa: E402

from nplib.data import DatasetNotFoundError, load_dataset  # noqa: E402
from nplib.parallel import (max_abs_difference, models_equal, synthetic_data, train_block_parallel,  # noqa: E402
                            train_single)


def training_data(n: int):
    """The first ``n`` of a fixed random subset of MNIST's training set, or random images without MNIST."""
    try:
        return load_dataset("mnist", train=True, download=False).subset(n, seed=0), "MNIST train subset"
    except (DatasetNotFoundError, RuntimeError, ImportError):
        return synthetic_data(n), "random images (MNIST not found under the data root)"


def main(argv=None) -> dict:
    p = parser("Block-parallel NoProp-DT training vs one process")
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--T", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.quick:
        plan = [("small", 256, 64)]
    else:
        plan = [("small", 4096, 128), ("paper", 1024, 128)]
    cores = torch.get_num_threads()
    hw = hardware()
    t0 = time.perf_counter()
    rows, data_name = [], ""
    for block, n, batch in plan:
        data, data_name = training_data(n)
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
    print(table(rows, [("block", "block", "{}"), ("run", "run", "{}"), ("train_seconds", "train s", "{:.2f}"),
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
    write_result("parallel", args, config, rows, hw, time.perf_counter() - t0)
    return {"rows": rows}


if __name__ == "__main__":
    main()
