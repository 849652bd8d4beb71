"""The benchmarks (nplib.lab.bench, ``python -m nplib bench``) and the measurements behind them (nplib.speed.parallel)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nplib.lab import bench

from nplib import reference
from nplib.cli import main as cli_main
from nplib.speed.parallel import measure_inference_latency, measure_throughput, measure_training_memory

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


def _load(tmp_path, name):
    data = json.loads((tmp_path / f"bench_{name}.json").read_text())
    assert data["benchmark"] == name and data["quick"] is True
    for key in ("command", "config", "hardware", "rows", "date_utc"):
        assert key in data
    assert data["hardware"]["cpu_count"] >= 1 and "torch" in data["hardware"]
    return data


def test_noprop_keeps_one_blocks_activations_and_backprop_all_of_them():
    """Bytes saved for backward (saved-tensor hooks): a property of the shapes, the same on every CPU.

    NoProp-DT frees block t's graph before block t+1, so its peak is about one block's; backprop
    keeps all T blocks until its one backward pass. Both save about the same bytes in total.
    """
    from nplib.speed.parallel import saved_activation_peak

    T = 4
    dt = saved_activation_peak("noprop", "small", batch_size=8, T=T)
    bp = saved_activation_peak("backprop", "small", batch_size=8, T=T)
    again = saved_activation_peak("noprop", "small", batch_size=8, T=T, seed=1)
    assert dt["peak_bytes"] == again["peak_bytes"] > 0            # shapes only: not the seed, not the CPU
    assert dt["total_bytes"] > (T - 1) * dt["peak_bytes"]         # T graphs, each freed before the next
    assert bp["peak_bytes"] > (T - 1) * dt["peak_bytes"]          # one graph through all T blocks
    assert bp["peak_bytes"] == pytest.approx(bp["total_bytes"], rel=0.01)
    twice = saved_activation_peak("noprop", "small", batch_size=16, T=T)
    # activations grow with the batch; the saved weights (for the backward of each layer) do not
    assert dt["peak_bytes"] < twice["peak_bytes"] < 2 * dt["peak_bytes"]
    with pytest.raises(ValueError):
        saved_activation_peak("forward-forward")


def test_throughput_and_latency_measurements():
    r = measure_throughput("noprop", "small", batch_size=16, steps=1, warmup=0, T=2)
    assert r["images_per_s"] > 0 and r["steps"] == 1
    lat = measure_inference_latency("backprop", "small", batch_size=2, repeats=2, warmup=0, T=2)
    assert lat["median_ms"] > 0 and lat["ms_per_block"] == pytest.approx(lat["median_ms"] / 2)
    with pytest.raises(ValueError):
        measure_throughput("forward-forward")
    with pytest.raises(ValueError):
        measure_training_memory("noprop", allocator="jemalloc")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["throughput", "inference", "memory"])
def test_benchmark_quick_writes_its_json(quick_dir, name):
    out = bench.main([name, "--quick", "--device", "cpu", "--out", str(quick_dir / f"bench_{name}.json")])
    data = _load(quick_dir, name)
    assert len(data["rows"]) == len(out["rows"]) >= 2
    assert data["command"].startswith(f"python -m nplib bench {name} --quick --device cpu")
    kinds = {r["kind"] for r in data["rows"]}
    assert kinds == {"noprop", "backprop"}
    if name == "memory":  # ten blocks' activations alive at once vs one block's (fixed allocator)
        nop, bp = (next(r for r in data["rows"] if r["kind"] == k) for k in ("noprop", "backprop"))
        assert nop["allocator"] == "fixed" and 0 < nop["peak_delta_bytes"] < 0.8 * bp["peak_delta_bytes"]
    with pytest.raises(SystemExit):
        bench.main([name, "--quick", "--no-such-option"])


def test_benchmark_without_out_writes_under_the_runs_directory_not_the_shipped_results(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("NPLIB_RUNS", str(runs))
    shipped = {p.name: p.stat().st_mtime_ns for p in reference.RESULTS_DIR.iterdir()}
    assert cli_main(["bench", "inference", "--quick", "--device", "cpu"]) == 0
    assert sorted(p.name for p in runs.iterdir()) == ["bench_inference_quick.json"]
    assert {p.name: p.stat().st_mtime_ns for p in reference.RESULTS_DIR.iterdir()} == shipped
    assert bench.default_out("memory", quick=False) == runs / "bench_memory.json"


def test_bench_cli_refuses_bad_input(capsys):
    with pytest.raises(SystemExit):
        cli_main(["bench", "nothing"])
    assert cli_main(["bench", "throughput", "--quick", "--device", "tpu"]) == 2
    assert "--device" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench.load_bench("speed")
    with pytest.raises(FileNotFoundError, match="python -m nplib bench memory"):
        bench.load_bench("memory", root=Path("/nonexistent"))


@pytest.mark.slow
def test_benchmarks_run_as_python_m_nplib_bench(tmp_path):
    """The installed entry point (a fresh interpreter, as a user types it)."""
    r = subprocess.run([sys.executable, "-m", "nplib", "bench", "report", "--dir", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and "no bench_*.json" in r.stderr
    r = subprocess.run([sys.executable, "-m", "nplib", "bench", "report"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "### 2. Peak training memory" in r.stdout


@pytest.mark.slow
def test_benchmark_parallel_quick(quick_dir):
    bench.main(["parallel", "--quick", "--device", "cpu", "--out", str(quick_dir / "bench_parallel.json")])
    data = _load(quick_dir, "parallel")
    par = [r for r in data["rows"] if r["processes"] == 2]
    assert len(par) == 1 and par[0]["equal_to_single_1_thread"] is True
    assert par[0]["train_seconds"] > 0 and par[0]["speedup_vs_single_1_thread"] > 0


def test_report_tables(quick_dir):
    """``bench report --dir`` turns the JSON files into the README's markdown tables."""
    if not list(quick_dir.glob("bench_*.json")):
        pytest.skip("no quick results in this session")
    text = bench.report(quick_dir)
    for f in quick_dir.glob("bench_*.json"):
        name = f.stem.split("_", 1)[1]
        assert json.loads(f.read_text())["command"] in text, name
    assert text.count("| model |") + text.count("| block |") >= 1


def test_readme_results_are_the_report_of_the_shipped_results():
    """benchmarks/README.md's tables are ``python -m nplib bench report`` of nplib/results/, not typed by hand."""
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    for block in bench.report().split("\n\n"):
        assert block.strip() in readme, block[:200]


def test_committed_results_are_consistent():
    """The shipped nplib/results/bench_*.json hold full, real runs with hardware info."""
    files = sorted(reference.RESULTS_DIR.glob("bench_*.json"))
    assert sorted(f.stem[len("bench_"):] for f in files) == sorted(bench.BENCHMARKS)
    for f in files:
        data = json.loads(f.read_text())
        assert data["quick"] is False and data["rows"] and data["hardware"]["cpu_count"] >= 1, f
        if data["benchmark"] == "memory" and data.get("check"):
            c = data["check"]
            assert c["passed"] == (c["ratio"] <= c["threshold"])
        if data["benchmark"] == "parallel":
            assert all(r["equal_to_single_1_thread"] for r in data["rows"] if r["processes"] > 1)
