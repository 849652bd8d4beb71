"""Benchmark 2: peak training memory vs batch size, NoProp-DT vs the backprop baseline.

Introduced in notebooks/06_backprop_vs_noprop, section 2. See benchmarks/README.md.

    flock /tmp/nplib-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_memory.py

Every measurement runs in a fresh child process (nplib.parallel.measure_training_memory): it
builds the model, the AdamW optimizer(s) and the minibatches, records the idle baseline, runs two
training steps and reports the peak minus the baseline (activations + gradients + AdamW state +
temporaries). GPU: torch.cuda.max_memory_allocated. CPU: peak resident set size (VmHWM, reset
after the build through /proc/self/clear_refs), with glibc malloc told to give freed tensors back
(MALLOC_MMAP_THRESHOLD_=65536, MALLOC_TRIM_THRESHOLD_=65536, MALLOC_ARENA_MAX=1). The same
configuration with glibc's default allocator settings is measured too, to show what they hide.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import hardware, parser, resolve_device, table, write_result  # noqa: E402

from nplib.parallel import MALLOC_ENV, measure_training_memory  # noqa: E402

#: the issue's acceptance threshold: NoProp-DT / backprop peak memory at batch 512, paper block
TARGET_RATIO, TARGET_BLOCK, TARGET_BATCH = 0.35, "paper", 512


def main(argv=None) -> dict:
    p = parser("Peak training memory of NoProp-DT vs the backprop baseline")
    p.add_argument("--T", type=int, default=10)
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.quick:
        plan = [("small", 32, "fixed")]
    else:
        plan = [("paper", b, "fixed") for b in (64, 128, 256, 512)] + [("small", b, "fixed") for b in (128, 512)]
        if device == "cpu":
            plan += [("paper", 512, "default"), ("small", 512, "default")]
    threads = torch.get_num_threads()
    hw = hardware()
    t0 = time.perf_counter()
    rows = []
    for block, batch, allocator in plan:
        pair = {}
        for kind in ("noprop", "backprop"):
            r = measure_training_memory(kind, block, batch_size=batch, steps=args.steps, T=args.T, device=device,
                                        threads=threads, allocator=allocator)
            pair[kind] = r
            rows.append(r)
            print(f"  {kind:8s} {block:5s} batch {batch:4d} allocator {allocator:7s} "
                  f"peak above idle {r['peak_delta_mib']:8.1f} MiB", flush=True)
        ratio = pair["noprop"]["peak_delta_bytes"] / pair["backprop"]["peak_delta_bytes"]
        for r in pair.values():
            r["noprop_over_backprop"] = ratio
    print(table(rows, [("kind", "model", "{}"), ("block", "block", "{}"), ("batch_size", "batch", "{}"),
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
    write_result("memory", args, config, rows, hw, time.perf_counter() - t0, check=check)
    return {"rows": rows, "check": check}


if __name__ == "__main__":
    main()
