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


@pytest.mark.slow
def test_train_fast_path_gives_the_loops_numbers_and_skips_the_train_accuracy(tmp_path):
    # the same quick-mode run with the per-block loop and with --fast: the losses and the accuracies
    # must agree (float32 rounding only), and --train-eval-size 0 leaves train_acc unmeasured
    reports = {}
    for label, extra in (("loop", []), ("fast", ["--fast"])):
        out = tmp_path / f"{label}.json"
        r = run("train", "--dataset", "mnist", "--model", "small", "--T", "3", "--eval-runs", "1",
                "--train-eval-size", "0", "--out", str(out), "--no-progress", *extra, env={"NPLIB_SMOKE": "1"})
        assert r.returncode == 0, r.stderr
        reports[label] = json.loads(out.read_text())
    assert "fast path" in r.stdout
    loop, fast = reports["loop"]["history"][0], reports["fast"]["history"][0]
    assert fast["loss"] == pytest.approx(loop["loss"], rel=1e-4)
    assert fast["test_acc"] == pytest.approx(loop["test_acc"], abs=2e-3)   # at most one of 500 images flips
    assert loop["train_acc"] != loop["train_acc"]                          # NaN: not measured


def _refused(monkeypatch, capsys, *args):
    """``python -m nplib ARGS`` in this process (quick mode, malloc untouched): exit code and stderr."""
    from nplib.cli import main

    monkeypatch.setenv("NPLIB_SMOKE", "1")
    rc = main([*args, "--no-tune-malloc"])
    return rc, capsys.readouterr().err


def test_train_fast_refuses_what_it_cannot_train(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "x.json")
    rc, err = _refused(monkeypatch, capsys, "train", "--variant", "backprop", "--fast", "--out", out)
    assert rc == 2 and "--fast trains NoProp-DT only" in err
    rc, err = _refused(monkeypatch, capsys, "train", "--embedding", "learned", "--fast", "--out", out)
    assert rc == 2 and "learned" in err
    rc, err = _refused(monkeypatch, capsys, "train", "--train-eval-size", "-1", "--out", out)
    assert rc == 2 and "--train-eval-size" in err


@pytest.mark.slow
def test_train_parallel_equals_one_process_with_the_same_threads(tmp_path):
    # --parallel 2 --threads 2: two processes x 1 thread. The same seed in one process with 1 thread
    # must give the same per-epoch loss (the ranks' losses summed as fit() averages them) and the same
    # noise-free accuracy: the blocks are independent and no gradient crosses between processes.
    common = ["train", "--dataset", "mnist", "--model", "small", "--T", "4", "--eval-runs", "1", "--no-progress",
              "--train-eval-size", "0"]
    r = run(*common, "--parallel", "2", "--threads", "2", "--out", str(tmp_path / "par.json"),
            env={"NPLIB_SMOKE": "1"})
    assert r.returncode == 0, r.stderr
    assert "block-parallel: 2 processes x 1 thread(s)" in r.stdout
    r1 = run(*common, "--threads", "1", "--out", str(tmp_path / "one.json"), env={"NPLIB_SMOKE": "1"})
    assert r1.returncode == 0, r1.stderr
    par, one = (json.loads((tmp_path / f).read_text()) for f in ("par.json", "one.json"))
    assert par["history"][0]["loss"] == pytest.approx(one["history"][0]["loss"], rel=1e-9)
    assert par["model_sha256"] == one["model_sha256"]          # every parameter and buffer, bit for bit
    # the final evaluation runs with 2 threads after --parallel and 1 thread in the single process, so a few of
    # the 500 quick-mode test images may flip; the training itself is checked exactly by the loss above
    assert par["final_test_accuracy"]["noise_free"] == pytest.approx(one["final_test_accuracy"]["noise_free"],
                                                                     abs=0.01)
    assert par["parallel"]["world_size"] == 2 and len(par["history"]) == 1


def test_train_parallel_refuses_what_it_cannot_split(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "x.json")
    rc, err = _refused(monkeypatch, capsys, "train", "--variant", "backprop", "--parallel", "2", "--out", out)
    assert rc == 2 and "block-parallel training is for NoProp-DT only" in err
    rc, err = _refused(monkeypatch, capsys, "train", "--parallel", "2", "--fast", "--out", out)
    assert rc == 2 and "--fast cannot be combined with block-parallel training" in err
    rc, err = _refused(monkeypatch, capsys, "train", "--parallel", "1", "--out", out)
    assert rc == 2 and "at least 2" in err


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*args, out, env):
    """``torchrun ARGS -m nplib train ...`` as a subprocess (``python -m torch.distributed.run`` is torchrun)."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args, "-m", "nplib", *TORCHRUN_TRAIN,
                             "--out", str(out)], env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


TORCHRUN_TRAIN = ["train", "--dataset", "mnist", "--model", "small", "--T", "4", "--eval-runs", "1", "--no-progress",
                  "--train-eval-size", "0"]


@pytest.mark.slow
def test_torchrun_on_one_node_and_on_two_loopback_nodes_equals_one_process(tmp_path):
    """torch's own launcher: 2 ranks on one node, and 2 nodes of 1 rank each (two launchers on 127.0.0.1),
    give the model of one process with one thread, bit for bit (every parameter and buffer)."""
    env = {"NPLIB_SMOKE": "1", "OMP_NUM_THREADS": "1"}
    one = run(*TORCHRUN_TRAIN, "--threads", "1", "--out", str(tmp_path / "one.json"), env=env)
    assert one.returncode == 0, one.stderr
    node = _torchrun("--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                     out=tmp_path / "node.json", env=env)
    out, err = node.communicate(timeout=600)
    assert node.returncode == 0, err[-3000:]
    assert "block-parallel under torchrun: 2 ranks x 1 thread(s)" in out
    port = _free_port()
    nodes = [_torchrun("--nnodes", "2", "--node-rank", str(r), "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
                       "--master-port", str(port), out=tmp_path / f"two_{r}.json", env=env) for r in (0, 1)]
    for p in nodes:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    reports = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "node", "two_0")}
    assert not (tmp_path / "two_1.json").exists()                       # only global rank 0 writes the report
    assert reports["node"]["parallel"]["launcher"] == "torchrun" and reports["two_0"]["parallel"]["world_size"] == 2
    assert reports["node"]["model_sha256"] == reports["one"]["model_sha256"]
    assert reports["two_0"]["model_sha256"] == reports["one"]["model_sha256"]
