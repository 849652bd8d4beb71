"""Benchmark 1: training throughput (images/s) of NoProp-DT and the backprop baseline.

Introduced in notebooks/06_backprop_vs_noprop, section 1. See benchmarks/README.md.

    flock /tmp/nplib-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_throughput.py

One NoProp-DT step updates all T blocks and the classifier on one minibatch (T separate forward
/ backward / AdamW steps); one backprop step runs the T-block chain forward and backward once.
Both touch every block once per minibatch, so images/s compare the same amount of training.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import hardware, parser, resolve_device, table, write_result  # noqa: E402

from nplib.parallel import measure_throughput  # noqa: E402


def main(argv=None) -> dict:
    p = parser("Training throughput of NoProp-DT vs the backprop baseline")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--T", type=int, default=10)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.quick:
        plan = [("small", 2, 1)]
    elif device == "cuda":
        plan = [("small", 50, 5), ("paper", 50, 5)]
    else:
        plan = [("small", 16, 2), ("paper", 4, 1)]
    hw = hardware()
    t0 = time.perf_counter()
    rows = []
    for block, steps, warmup in plan:
        for kind in ("noprop", "backprop"):
            r = measure_throughput(kind, block, batch_size=args.batch_size, steps=steps, warmup=warmup, T=args.T,
                                   device=device)
            rows.append(r)
            print(f"  {kind:8s} {block:5s} {r['images_per_s']:8.1f} images/s", flush=True)
    for r in rows:
        other = next(o for o in rows if o["block"] == r["block"] and o["kind"] == "backprop")
        r["relative_to_backprop"] = r["images_per_s"] / other["images_per_s"]
    print(table(rows, [("kind", "model", "{}"), ("block", "block", "{}"), ("batch_size", "batch", "{}"),
                       ("steps", "steps", "{}"), ("seconds_per_step", "s/step", "{:.3f}"),
                       ("images_per_s", "images/s", "{:.1f}"), ("relative_to_backprop", "vs backprop", "{:.2f}")]))
    config = {"batch_size": args.batch_size, "T": args.T, "device": device, "threads": torch.get_num_threads(),
              "data": "random images 1x28x28, 10 classes (cost does not depend on pixel values)",
              "optimizer": "AdamW lr 1e-3 wd 1e-3 (one per block + shared for NoProp-DT, one for backprop)",
              "plan": [{"block": b, "steps": s, "warmup": w} for b, s, w in plan]}
    write_result("throughput", args, config, rows, hw, time.perf_counter() - t0)
    return {"rows": rows}


if __name__ == "__main__":
    main()
