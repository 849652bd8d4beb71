"""Helpers shared by the benchmark scripts: hardware description, tables, result JSON files.

Introduced in notebooks/06_backprop_vs_noprop (the notebook reads the JSON files written here).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from nplib.train import hardware_info

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
RUNS = REPO / "runs"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001 - informational only
        return ""


def hardware() -> dict:
    """:func:`nplib.train.hardware_info` plus the CPU model, the thread settings and the load average."""
    info = hardware_info()
    info["cpu_model"] = cpu_model()
    info["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="tiny configuration (seconds); writes runs/bench_<name>_quick.json unless --out is given")
    p.add_argument("--device", default="auto", help="'cpu', 'cuda' or 'auto' (cuda when available)")
    p.add_argument("--out", default=None, help="where to write the JSON result")
    return p


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    return name


def out_path(name: str, args) -> Path:
    if args.out:
        return Path(args.out)
    return (RUNS / f"bench_{name}_quick.json") if args.quick else (RESULTS / f"bench_{name}.json")


def write_result(name: str, args, config: dict, rows: list[dict], hw: dict, seconds: float, **extra) -> Path:
    """Write ``{"benchmark", "command", "config", "hardware", "rows", ...}`` as JSON; return the path."""
    try:
        hw = dict(hw, loadavg_at_end=list(os.getloadavg()))
    except OSError:
        pass
    path = out_path(name, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
               "quick": bool(args.quick), "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                   timespec="seconds"), "git_commit": git_commit(), "wall_seconds": round(seconds, 2),
               "config": config, "hardware": hw, "rows": rows}
    payload.update(extra)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table; ``columns`` are (key, header, format) with format like '{:.1f}'."""
    cells = [[fmt.format(r[k]) if r.get(k) is not None else "-" for k, _, fmt in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, (_, h, _) in enumerate(columns)]
    lines = ["  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
