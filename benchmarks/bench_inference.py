"""Benchmark 4: inference latency, NoProp-DT's T-step chain vs one backprop forward pass.

Introduced in notebooks/06_backprop_vs_noprop, section 4. See benchmarks/README.md.

    flock /tmp/nplib-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_inference.py

Both models run all T blocks one after the other at inference; NoProp-DT's chain adds the
posterior step ``z_t = a_t u_hat + b_t z_{t-1} + sqrt(c_t) eps`` per block, the baseline its
``(1 - alpha_t) z + alpha_t u_hat``. ``ms/block`` is the median divided by T.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import hardware, parser, resolve_device, table, write_result  # noqa: E402

from nplib.parallel import measure_inference_latency  # noqa: E402


def main(argv=None) -> dict:
    p = parser("Inference latency: NoProp-DT chain vs backprop forward pass")
    p.add_argument("--T", type=int, default=10)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.quick:
        plan, repeats = [("small", 1)], 3
    else:
        plan, repeats = [("small", 1), ("small", 128), ("paper", 1), ("paper", 128)], (50 if device == "cuda" else 15)
    hw = hardware()
    t0 = time.perf_counter()
    rows = []
    for block, batch in plan:
        for kind, noise in (("noprop", True), ("noprop", False), ("backprop", False)):
            r = measure_inference_latency(kind, block, batch_size=batch, repeats=repeats, warmup=2, T=args.T,
                                          device=device, noise=noise)
            rows.append(r)
    for r in rows:
        other = next(o for o in rows if o["block"] == r["block"] and o["batch_size"] == r["batch_size"]
                     and o["kind"] == "backprop")
        r["relative_to_backprop"] = r["median_ms"] / other["median_ms"]
        r["ms_per_image"] = r["median_ms"] / r["batch_size"]
    print(table(rows, [("kind", "model", "{}"), ("noise", "noise", "{}"), ("block", "block", "{}"),
                       ("batch_size", "batch", "{}"), ("median_ms", "median ms", "{:.2f}"),
                       ("ms_per_image", "ms/image", "{:.3f}"), ("ms_per_block", "ms/block", "{:.2f}"),
                       ("relative_to_backprop", "vs backprop", "{:.2f}")]))
    config = {"T": args.T, "device": device, "threads": torch.get_num_threads(), "repeats": repeats, "warmup": 2,
              "statistic": "median over repeats", "mode": "eval, torch.no_grad",
              "data": "random images 1x28x28", "plan": [{"block": b, "batch_size": n} for b, n in plan]}
    write_result("inference", args, config, rows, hw, time.perf_counter() - t0)
    return {"rows": rows}


if __name__ == "__main__":
    main()
