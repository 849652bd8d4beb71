"""Markdown tables of the committed benchmark results (results/bench_*.json).

Introduced in notebooks/06_backprop_vs_noprop. The results section of benchmarks/README.md is
this script's output, so that no number in it is typed by hand:

    .venv/bin/python benchmarks/report.py > /tmp/tables.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS  # noqa: E402


def load(name: str, root: Path = RESULTS) -> dict | None:
    path = root / f"bench_{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def header(data: dict) -> str:
    hw, cfg = data["hardware"], data["config"]
    where = hw.get("gpu") or f"{hw.get('cpu_model') or hw['processor']}, {hw['cpu_count']} cores"
    load_avg = hw.get("loadavg_at_start")
    return (f"`{data['command']}` ({data['date_utc']}, commit {data.get('git_commit') or '?'}, "
            f"{data['wall_seconds']:.0f} s): {hw['device']} ({where}), torch {hw['torch']}, "
            f"{hw['torch_threads']} torch threads"
            + (f", load average at start {load_avg[0]:.1f}" if load_avg else "")
            + f". Device {cfg.get('device')}, T = {cfg.get('T')}.")


def md(rows: list[list], head: list[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def report(root: Path = RESULTS) -> str:
    parts = []
    d = load("throughput", root)
    if d:
        parts += ["### 1. Training throughput", "", header(d), "",
                  md([[r["kind"], r["block"], r["batch_size"], r["steps"], f"{r['seconds_per_step']:.3f}",
                       f"{r['images_per_s']:.1f}", f"{r['relative_to_backprop']:.2f}"] for r in d["rows"]],
                     ["model", "block", "batch", "timed steps", "s / step", "images / s", "vs backprop"]), ""]
    d = load("memory", root)
    if d:
        parts += ["### 2. Peak training memory above the idle baseline", "", header(d), "",
                  md([[r["kind"], r["block"], r["batch_size"], r["allocator"], f"{r['peak_delta_mib']:.1f}",
                       f"{r['noprop_over_backprop']:.3f}"] for r in d["rows"]],
                     ["model", "block", "batch", "malloc", "peak - idle (MiB)", "NoProp / backprop"]), ""]
        if d.get("check"):
            c = d["check"]
            parts += [f"Target: paper block, batch {c['batch_size']}: NoProp-DT / backprop = **{c['ratio']:.3f}** "
                      f"(target <= {c['threshold']}: {'met' if c['passed'] else 'NOT met'}).", ""]
    d = load("parallel", root)
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
        parts += ["### 3. Block-parallel training (2 processes, gloo on 127.0.0.1)", "", header(d),
                  f" Data: {d['config']['data']}, 1 epoch.", "",
                  md(rows, ["block", "images", "run", "train s", "wall s (start-up incl.)",
                            f"speed-up vs 1 proc x {cores} thr", "vs 1 proc x 1 thr", "bit-identical to 1 proc x 1 thr",
                            f"max abs diff to 1 proc x {cores} thr"]), ""]
    d = load("inference", root)
    if d:
        parts += ["### 4. Inference latency (median)", "", header(d), "",
                  md([[r["kind"], r["noise"], r["block"], r["batch_size"], f"{r['median_ms']:.2f}",
                       f"{r['ms_per_image']:.3f}", f"{r['relative_to_backprop']:.2f}"] for r in d["rows"]],
                     ["model", "noise", "block", "batch", "ms / batch", "ms / image", "vs backprop"]), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(report())
