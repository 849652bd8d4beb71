"""`python -m nplib reproduce` in quick mode: tables, per-seed files, resume, CIFAR paths, paper numbers."""
import json
import os
import subprocess
import sys

import pytest

from nplib import cli
from nplib import data as D
from nplib.lab import reproduce as R


def run(*args, env=None):
    e = {**os.environ, "NPLIB_SMOKE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nplib", "reproduce", *args], capture_output=True, text=True,
                          env=e, timeout=1800)


def test_reproduce_quick_mode_end_to_end_then_resumes_only_what_is_missing(tmp_path):
    out = tmp_path / "rep"
    args = ("--datasets", "mnist", "--rows", "dt_onehot,backprop", "--seeds", "0", "--out", str(out))
    r = run(*args)
    assert r.returncode == 0, r.stderr
    result = json.loads((out / "reproduce.json").read_text())
    table = result["table"]["mnist"]
    assert set(table) == {"dt_onehot", "backprop"}
    for row in ("dt_onehot", "backprop"):
        e = table[row]
        assert e["n"] == 1 * 2 and e["seeds"] == [0]       # 1 seed x 2 inference runs in quick mode
        assert 0 <= e["mean"] <= 100 and e["se"] is not None
        assert e["paper"] == R.PAPER_ACCURACY[row]["mnist"]
        assert e["peak_memory_gb"] == "not measured"       # CPU
    md = (out / "reproduce.md").read_text()
    assert "99.47" in md and "NoProp-DT (one-hot)" in md and "not measured" in md and "Quick mode" in md
    # the table's mean is the mean over seeds x runs of the per-seed file
    rec = json.loads((out / "runs" / "mnist__dt_onehot__seed0.json").read_text())
    assert table["dt_onehot"]["mean"] == pytest.approx(100 * sum(rec["runs"]) / len(rec["runs"]))
    assert (out / "checkpoints" / "mnist__dt_onehot__seed0.pt").exists()

    # an interruption: one per-seed result lost (with its checkpoint), the other kept
    lost = out / "runs" / "mnist__backprop__seed0.json"
    lost.unlink()
    (out / "checkpoints" / "mnist__backprop__seed0.pt").unlink()
    kept = out / "runs" / "mnist__dt_onehot__seed0.json"
    mtime = kept.stat().st_mtime_ns
    r2 = run(*args)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.count("skipped") == 1 and "mnist__backprop__seed0: training" in r2.stdout
    assert kept.stat().st_mtime_ns == mtime and lost.exists()
    again = json.loads((out / "reproduce.json").read_text())["table"]["mnist"]
    # training is deterministic given the seed: the recomputed seed gives the same table
    assert again["backprop"]["mean"] == pytest.approx(table["backprop"]["mean"])

    # more epochs later: fit resumes from the kept checkpoint after epoch 1
    r3 = run("--datasets", "mnist", "--rows", "dt_onehot", "--seeds", "0", "--epochs", "2", "--out", str(out))
    assert r3.returncode == 0, r3.stderr
    assert "resumed from" in r3.stdout and "after epoch 1" in r3.stdout
    rec = json.loads(kept.read_text())
    assert rec["epochs"] == 2 and [h["epoch"] for h in rec["history"]] == [1, 2]


@pytest.mark.parametrize("which", ["cifar10", "cifar100"])
def test_reproduce_runs_cifar_from_torchvision_format_files(tmp_path, monkeypatch, capsys, which):
    root = tmp_path / "data"
    D.write_synthetic_cifar(root, which, per_file=12)
    monkeypatch.setenv("NPLIB_DATA", str(root))
    monkeypatch.setenv("NPLIB_SMOKE", "1")
    out = tmp_path / "rep"
    assert cli.main(["reproduce", "--datasets", which, "--rows", "dt_onehot", "--out", str(out)]) == 0
    rec = json.loads((out / "runs" / f"{which}__dt_onehot__seed0.json").read_text())
    n_train = 12 * (5 if which == "cifar10" else 1)
    assert rec["train_size"] == n_train and rec["test_size"] == 12
    assert rec["model"]["image_shape"] == [3, 32, 32] and rec["model"]["num_classes"] == (10 if which == "cifar10" else 100)
    table = json.loads((out / "reproduce.json").read_text())["table"][which]["dt_onehot"]
    assert table["paper"] == R.PAPER_ACCURACY["dt_onehot"][which]


def test_reproduce_names_missing_cifar_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NPLIB_DATA", str(tmp_path))
    monkeypatch.setenv("NPLIB_NO_DOWNLOAD", "1")
    assert cli.main(["reproduce", "--datasets", "cifar100", "--rows", "dt_onehot", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cifar-100-python/train" in err and "cifar-100-python/meta" in err and "NPLIB_DATA" in err


def test_reproduce_rejects_bad_selections(tmp_path, capsys):
    for args, msg in ((["--rows", "dt_prototype"], "unknown row"), (["--datasets", "svhn"], "unknown dataset"),
                      (["--seeds", "a"], "--seeds"), (["--epochs", "0"], "--epochs")):
        assert cli.main(["reproduce", *args, "--out", str(tmp_path)]) == 2
        assert msg in capsys.readouterr().err


def test_reproduce_warns_on_cpu_and_suggests_a_part(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NPLIB_SMOKE", "0")
    seen = []
    monkeypatch.setattr(R, "run_one", lambda *a, **k: seen.append(a[:3]) or _fake_record(*a[:3]))
    assert cli.main(["reproduce", "--device", "cpu", "--datasets", "mnist", "--rows", "dt_onehot,ct_onehot",
                     "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "--datasets mnist --rows dt_onehot --seeds 0 --epochs 1" in err
    # the paper's seeds by default
    assert seen == [("mnist", "dt_onehot", 0), ("mnist", "dt_onehot", 1), ("mnist", "dt_onehot", 2),
                    ("mnist", "ct_onehot", 0), ("mnist", "ct_onehot", 1), ("mnist", "ct_onehot", 2)]


def _fake_record(dataset, row, seed):
    return {"dataset": dataset, "row": row, "seed": seed, "epochs": 100, "runs": [0.9] * 5, "noise_free": 0.9,
            "peak_memory_gb": "not measured"}


def test_paper_settings_and_numbers():
    cfg = R.settings(smoke=False)
    assert cfg["block"] == "paper" and cfg["T"] == 10 and cfg["batch_size"] == 128
    assert cfg["epochs"] == {"mnist": 100, "cifar10": 150, "cifar100": 150}
    assert cfg["seeds"] == (0, 1, 2) and cfg["eval_runs"] == 5 and cfg["inference_steps"] == 1000
    assert R.PAPER_ACCURACY["dt_onehot"]["cifar10"] == 79.25 and R.PAPER_ACCURACY["fm_onehot"]["cifar100"] == 6.38
    assert R.PAPER_MEMORY_GB["noprop_dt"]["mnist"] == 0.49 and R.PAPER_MEMORY_GB["backprop"]["cifar100"] == 1.73
    m = R.build_row_model("dt_learned", (3, 32, 32), 100, cfg)
    assert m.config()["embed_dim"] == 20 and m.config()["eta"] == 0.1 and m.T == 10
    summary = R.summarise([_fake_record("mnist", "backprop", s) | {"runs": [0.9, 0.92, 0.94, 0.96, 0.98]}
                           for s in (0, 1, 2)])
    e = summary["mnist"]["backprop"]
    assert e["n"] == 15 and e["mean"] == pytest.approx(94.0)
    # s.e. over the 15 values: std(ddof=1) / sqrt(15)
    import numpy as np
    vals = [90, 92, 94, 96, 98] * 3
    assert e["se"] == pytest.approx(np.std(vals, ddof=1) / np.sqrt(15))
