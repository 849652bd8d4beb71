"""CPU training speed: keep glibc's malloc from handing tensor memory back to the kernel every step.

Introduced in README.md ("Three ways to train NoProp-DT"). A training step on a CPU allocates and
frees activation and gradient tensors of a few MiB each, hundreds of times per second. With glibc's
default settings every allocation above the (dynamic) mmap threshold is a fresh ``mmap`` whose pages
the kernel must fault in and zero, and every free returns them: on the course's 2-core machine a
16-epoch NoProp-DT run spent a quarter of its CPU time in the kernel (283 million minor page faults
for 18 epochs, measured with ``/usr/bin/time -v``). :func:`tune_malloc` raises the mmap threshold
to its maximum, keeps freed memory in the process (trim threshold) and grows the heap in large
steps, so the same pages are reused from step to step. The numbers computed do not change; the
process keeps its peak memory instead of returning it.

The same settings can be given before Python starts, as environment variables (``FAST_MALLOC_ENV``);
the function sets them at run time with ``mallopt`` and also exports them, so that processes
started afterwards (block-parallel workers) inherit them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["FAST_MALLOC_ENV", "tune_malloc", "usable_cpus", "fit_threads_to_cpus", "measure_cpu_options", "CPU_OPTIONS"]

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3

#: 32 MiB is glibc's largest mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
FAST_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
              "MALLOC_TRIM_THRESHOLD_": str(2 * 1024 ** 3),
              "MALLOC_TOP_PAD_": str(256 * 1024 * 1024)}


def usable_cpus(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """How many CPUs this process can really run on: its affinity mask, capped by a cgroup v2 quota.

    A container limited to 2 CPUs on a 64-core host reports ``os.cpu_count() == 64``, and torch
    then starts one thread per host core: dozens of threads taking turns on 2 cores, each waiting
    for the others at every parallel region, which makes every convolution many times slower.
    Here the quota ``cpu.max`` (``"200000 100000"`` = 2 CPUs) and ``sched_getaffinity`` decide.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open(cpu_max) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            # cpu.max = "<quota> <period>" (microseconds): quota / period CPUs
            n = min(n, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def fit_threads_to_cpus() -> tuple[int, int]:
    """Lower torch's CPU threads to :func:`usable_cpus` when torch chose more; ``(before, after)``.

    Called by :func:`nplib.notebook.setup` and the command line. It never raises the count, so a
    user's own ``torch.set_num_threads`` (or ``OMP_NUM_THREADS``) below the usable CPUs stays.
    """
    import torch

    before = torch.get_num_threads()
    after = min(before, usable_cpus())
    if after != before:
        torch.set_num_threads(after)
    return before, after


def tune_malloc(export: bool = True) -> bool:
    """Apply :data:`FAST_MALLOC_ENV` to this process (glibc only); return True when it was applied.

    On other C libraries (macOS, Windows, musl) nothing happens and False is returned. With
    ``export`` the variables are also put in ``os.environ`` for child processes (without
    overriding values the user set).
    """
    if platform.system() != "Linux":
        return False
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if "glibc" not in " ".join(platform.libc_ver()).lower():
        return False
    values = {_M_MMAP_THRESHOLD: int(FAST_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]),
              _M_TRIM_THRESHOLD: int(FAST_MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"]),
              _M_TOP_PAD: int(FAST_MALLOC_ENV["MALLOC_TOP_PAD_"])}
    ok = all(mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in values.items())
    if export:
        for k, v in FAST_MALLOC_ENV.items():
            os.environ.setdefault(k, v)
    return ok


# --------------------------------------------------------------------------- measurement
#: The configurations of :func:`measure_cpu_options`: name -> (processes, threads per process,
#: malloc tuned, bf16 autocast, fused AdamW, fast path).
CPU_OPTIONS = {
    "loop, 2 threads (glibc malloc defaults)": (1, 2, False, False, False, False),
    "loop, 2 threads, tuned malloc": (1, 2, True, False, False, False),
    "loop, 2 threads, tuned malloc, fused AdamW": (1, 2, True, False, True, False),
    "loop, 2 threads, tuned malloc, bf16 autocast": (1, 2, True, True, False, False),
    "fast path (vmap), 2 threads, tuned malloc": (1, 2, True, False, False, True),
    "block-parallel 2 processes x 1 thread, tuned malloc": (2, 1, True, False, False, False),
}

_CHILD = r"""
import json, sys, time
cfg = json.loads(sys.argv[1])
if cfg["tune"]:
    from nplib.speed.cpu import tune_malloc
    tune_malloc(export=False)
import torch
torch.set_num_threads(cfg["threads"])
from nplib.models import NoPropDT
torch.manual_seed(0)
model = NoPropDT((1, 28, 28), 10, T=cfg["T"], block=cfg["block"])
kw = {"fused": True} if cfg["fused"] else {}
if cfg["fast"]:
    from nplib.speed.fast import FastDTTrainer
    trainer = FastDTTrainer(model)
    opts = trainer.configure_optimizers()
    step = lambda x, y: trainer.training_step(x, y, opts)
else:
    opts = {f"block{t}": torch.optim.AdamW(model.blocks[t - 1].parameters(), lr=1e-3, weight_decay=1e-3, **kw)
            for t in range(1, model.T + 1)}
    opts["shared"] = torch.optim.AdamW(model.shared_parameters(), lr=1e-3, weight_decay=1e-3, **kw)
    blocks, shared = cfg["blocks"], cfg["shared"]
    step = lambda x, y: model.training_step(x, y, opts, blocks=blocks, shared=shared)
g = torch.Generator().manual_seed(0)
x = torch.randn(cfg["batch"], 1, 28, 28, generator=g)
y = torch.randint(0, 10, (cfg["batch"],), generator=g)
with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["bf16"]):
    for _ in range(cfg["warmup"]):
        step(x, y)
    print("ready", flush=True)
    sys.stdin.readline()                      # all processes of a configuration start together
    t0 = time.perf_counter()
    for _ in range(cfg["steps"]):
        step(x, y)
print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
"""


def measure_cpu_options(block: str = "small", T: int = 10, batch_size: int = 128, steps: int = 30,
                        warmup: int = 3, rounds: int = 2, options: dict | None = None) -> list[dict]:
    """Training images per second of each configuration in :data:`CPU_OPTIONS`, side by side.

    Introduced in README.md ("Three ways to train NoProp-DT"). Each configuration runs in fresh
    child processes (the malloc settings cannot be undone inside a process); the configurations
    alternate over ``rounds`` rounds, so a change in the machine's load affects all alike. A
    block-parallel configuration starts its processes together, each training its share of the
    blocks (rank 0 also the classifier), and its time is the slowest process's. Same images and
    labels for all; the throughput does not depend on their values.
    """
    import json
    import subprocess
    import sys

    from nplib.speed.parallel import split_blocks

    options = options or CPU_OPTIONS
    if steps < 1 or rounds < 1:
        raise ValueError("steps and rounds must be >= 1")
    seconds = {name: [] for name in options}
    for _ in range(rounds):
        for name, (procs, threads, tune, bf16, fused, fast) in options.items():
            groups = split_blocks(T, procs) if procs > 1 else [None]
            children = []
            for rank, blocks in enumerate(groups):
                cfg = {"tune": tune, "threads": threads, "T": T, "block": block, "fused": fused, "fast": fast,
                       "bf16": bf16, "blocks": blocks, "shared": rank == 0, "batch": batch_size,
                       "warmup": warmup, "steps": steps}
                children.append(subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg)],
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            for c in children:
                if c.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"{name}: a benchmark process failed to start")
            for c in children:
                c.stdin.write("go\n")
                c.stdin.flush()
            times = []
            for c in children:
                out, _ = c.communicate(timeout=3600)
                if c.returncode != 0:
                    raise RuntimeError(f"{name}: a benchmark process failed (exit {c.returncode})")
                times.append(json.loads(out.strip().splitlines()[-1])["seconds"])
            seconds[name].append(max(times))
    base = None
    rows = []
    for name, (procs, threads, tune, bf16, fused, fast) in options.items():
        total = sum(seconds[name])
        ips = rounds * steps * batch_size / total
        base = base or ips
        rows.append({"configuration": name, "processes": procs, "threads_per_process": threads,
                     "tuned_malloc": tune, "bf16": bf16, "fused_adamw": fused, "fast_path": fast,
                     "images_per_s": ips, "seconds_per_epoch_60k": 60_000 / ips, "speedup": ips / base,
                     "round_seconds": seconds[name]})
    return rows


def _main(argv=None) -> int:
    """``python -m nplib.speed.cpu --out FILE``: the side-by-side table of :func:`measure_cpu_options`."""
    import argparse
    import datetime
    import sys

    from nplib.reference import write_result
    from nplib.train import hardware_info

    p = argparse.ArgumentParser(prog="python -m nplib.speed.cpu", description=measure_cpu_options.__doc__)
    p.add_argument("--block", default="small", choices=["small", "paper"])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="runs/speed_cpu_options.json")
    args = p.parse_args(argv)
    load0 = os.getloadavg()
    rows = measure_cpu_options(args.block, steps=args.steps, rounds=args.rounds)
    print(f"{'configuration':<55} {'images/s':>9} {'s/epoch':>8} {'speed-up':>9}")
    for r in rows:
        print(f"{r['configuration']:<55} {r['images_per_s']:>9.0f} {r['seconds_per_epoch_60k']:>8.0f} "
              f"{r['speedup']:>8.2f}x")
    result = {"command": " ".join(["python -m nplib.speed.cpu"] + (sys.argv[1:] if argv is None else list(argv))),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "hardware": hardware_info(), "block": args.block, "T": 10, "batch_size": 128,
              "load_average_1_5_15_at_start": load0, "load_average_1_5_15_at_end": os.getloadavg(),
              "rows": rows}
    write_result(args.out, result, indent=2, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
