"""The command line: `python -m nplib schedule` and `python -m nplib train` (quick mode)."""
import json
import os
import subprocess
import sys

import pytest

from nplib.schedules import make_schedule


def run(*args, env=None):
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "nplib", *args], capture_output=True, text=True, env=e,
                          timeout=600)


def test_schedule_json_matches_library():
    r = run("schedule", "--kind", "linear", "--T", "6", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    s = make_schedule("linear", 6)
    for k in ("alpha", "alpha_bar", "snr", "snr_delta", "a", "b", "c"):
        assert d[k] == pytest.approx(getattr(s, k).tolist(), rel=1e-12), k


def test_schedule_table_and_bad_arguments():
    r = run("schedule", "--T", "3")
    assert r.returncode == 0 and "alpha_bar" in r.stdout
    r = run("schedule", "--T", "0")
    assert r.returncode == 2 and "T must be >= 1" in r.stderr
    r = run("schedule", "--kind", "quadratic")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_train_quick_mode_writes_the_report(tmp_path):
    out = tmp_path / "report.json"
    r = run("train", "--dataset", "mnist", "--model", "small", "--epochs", "5", "--T", "3", "--eval-runs", "2",
            "--out", str(out), "--no-progress", env={"NPLIB_SMOKE": "1"})
    assert r.returncode == 0, r.stderr
    assert "epoch" in r.stdout and "test_acc" in r.stdout and "noise-free" in r.stdout
    rep = json.loads(out.read_text())
    assert rep["config"]["smoke"] is True and rep["config"]["epochs_run"] == 1
    # the block size survives next to the model's own config
    assert rep["config"]["block_name"] == "small" and rep["config"]["model"]["variant"] == "dt"
    assert set(rep["final_test_accuracy"]) >= {"mean", "se", "runs", "noise_free"}
    assert len(rep["final_test_accuracy"]["runs"]) == 2
    assert rep["history"][0]["epoch"] == 1 and "seconds" in rep["history"][0]
    assert rep["hardware"]["cpu_count"] >= 1


def test_train_unknown_dataset_and_missing_data(tmp_path):
    r = run("train", "--dataset", "svhn")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run("train", "--dataset", "cifar10", "--out", str(tmp_path / "x.json"),
            env={"NPLIB_DATA": str(tmp_path / "empty"), "NPLIB_SMOKE": "1", "NPLIB_NO_DOWNLOAD": "1"})
    assert r.returncode == 2 and "cifar-10-batches-py" in r.stderr and "NPLIB_DATA" in r.stderr
