"""The shipped checkpoint of notebook 07's forecaster (``nplib/checkpoints/nb07_forecaster``).

It must load into the model notebook 07 builds, reproduce the test metrics its manifest records on
the real ETTh1 data (the deterministic chain exactly, the mean of the sampled chain exactly with the
recorded seed), refuse a corrupted file or another configuration with a clear
:class:`nplib.pretrained.CheckpointError`, and the command that made it must write such a checkpoint.
"""
import json
import shutil
import sys

import numpy as np
import pytest
import torch

from nplib import pretrained
from nplib import timeseries as ts

NAME = "nb07_forecaster"
MAX_BYTES = 5_000_000        # one checkpoint
MAX_TOTAL_BYTES = 6_000_000  # all of notebook 07's checkpoints


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    """Equal up to float32 summation order (bit-identical on the machine that made the checkpoint)."""
    return abs(a - b) <= rel * abs(b)


@pytest.fixture(scope="module")
def shipped():
    """(model, manifest, ForecastConfig) of the shipped checkpoint."""
    model, m = ts.load_pretrained(NAME)
    return model, m, ts.ForecastConfig(**m["build"]["forecast_config"])


@pytest.fixture(scope="module")
def ett_test_data(shipped):
    """The full (not quick-mode) ETTh1 windows the checkpoint was trained and measured on."""
    _, m, _ = shipped
    b = m["build"]
    try:
        ts.ett_path(b["dataset"], download=False)
    except FileNotFoundError as err:
        pytest.skip(f"{b['dataset']}.csv is not available, so the recorded test metrics cannot be reproduced "
                    f"(set NPLIB_DATA to a folder holding ETT/{b['dataset']}.csv): {err}")
    return ts.prepare_forecast_data(b["dataset"], b["lookback"], b["horizon"], b["mode"], smoke=False,
                                    download=False)


# ------------------------------------------------------------------------------------ manifest
def test_manifest_names_file_hash_config_command_hardware_and_metrics(shipped):
    model, m, cfg = shipped
    path = pretrained.checkpoint_path(NAME)
    assert m["sha256"] == pretrained.sha256(path) and m["bytes"] == path.stat().st_size
    assert m["dtype"] == "float32"
    assert all(v.dtype == torch.float32 for v in torch.load(path, weights_only=True).values()
               if v.is_floating_point())
    # notebook 07's setting: multivariate ETTh1, lookback 336, horizon 96, the default ForecastConfig
    b = m["build"]
    assert (b["kind"], b["dataset"], b["mode"], b["lookback"], b["horizon"]) == (
        "forecaster", "ETTh1", "multivariate", 336, 96)
    assert cfg == ts.ForecastConfig()
    assert m["config"] == ts.NoPropForecaster.from_config(336, 96, ts.ForecastConfig()).config()
    assert m["command"].startswith("python -m nplib forecast ") and f"--save-checkpoint {NAME}" in m["command"]
    assert "--horizon 96" in m["command"] and "--mode multivariate" in m["command"]
    assert {"cpu_count", "torch", "device"} <= set(m["hardware"])
    assert m["train_seconds"] > 0
    stages = [h["stage"] for h in m["history"]]
    assert stages == ["autoencoder"] * cfg.ae_epochs + ["blocks"] * cfg.epochs
    tm = m["test_metric"]
    assert {"mse", "mae"} <= set(tm["deterministic"])
    st = tm["stochastic"]
    assert (st["samples"], st["seed"]) == (cfg.samples, cfg.seed)
    assert len(st["runs"]) >= 3 and st["mse_se"] > 0
    assert st["runs"][[r["seed"] for r in st["runs"]].index(st["seed"])]["mse"] == st["mse"]


def test_checkpoint_sizes_fit_the_budget():
    sizes = {p.name: p.stat().st_size for p in pretrained.CHECKPOINT_DIR.glob("nb07_*.pt")}
    assert f"{NAME}.pt" in sizes
    assert max(sizes.values()) <= MAX_BYTES, sizes
    assert sum(sizes.values()) <= MAX_TOTAL_BYTES, sizes


# ------------------------------------------------------------------------------------ reproduction
@pytest.mark.slow
def test_checkpoint_reproduces_recorded_deterministic_test_mse(shipped, ett_test_data):
    model, m, _ = shipped
    data = ett_test_data
    got = ts.evaluate_point(ts.predict_windows(model.predict, data.test), data.test)
    want = m["test_metric"]["deterministic"]
    assert len(data.test) == 2785
    assert _close(got["mse"], want["mse"]), (got, want)
    assert _close(got["mae"], want["mae"]), (got, want)


@pytest.mark.slow
def test_checkpoint_reproduces_recorded_stochastic_test_mse_with_its_seed(shipped, ett_test_data):
    model, m, _ = shipped
    st = m["test_metric"]["stochastic"]
    got = ts.evaluate_intervals(model, ett_test_data.test, samples=st["samples"], seed=st["seed"],
                                batch=st["batch"], decoder_noise=st["decoder_noise"])
    assert _close(got["mse"], st["mse"]), (got["mse"], st["mse"])
    assert _close(got["mae"], st["mae"]), (got["mae"], st["mae"])
    # and that value is an ordinary draw: within 3 standard errors of the mean over the recorded seeds
    assert abs(got["mse"] - st["mse_mean"]) <= 3 * st["mse_se"] * np.sqrt(len(st["runs"]))


@pytest.mark.slow
def test_other_seed_gives_another_stochastic_value_within_the_recorded_spread(shipped, ett_test_data):
    """The seed matters (the test above is not vacuous), and the spread the manifest records is real."""
    model, m, _ = shipped
    st = m["test_metric"]["stochastic"]
    sub = ts.WindowSet(ett_test_data.test.series, ett_test_data.test.starts[::10], 336, 96)
    a = ts.evaluate_intervals(model, sub, samples=st["samples"], seed=st["seed"])["mse"]
    b = ts.evaluate_intervals(model, sub, samples=st["samples"], seed=st["seed"] + 1000)["mse"]
    assert a != b
    assert abs(a - b) < 0.05 * st["mse"]


# ------------------------------------------------------------------------------------ clear errors
@pytest.fixture
def private_copy(tmp_path, monkeypatch):
    """The shipped checkpoint copied into a temporary CHECKPOINT_DIR (so that it can be damaged)."""
    for suffix in (".pt", ".json"):
        shutil.copy(pretrained.CHECKPOINT_DIR / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    monkeypatch.setattr(pretrained, "CHECKPOINT_DIR", tmp_path)
    return tmp_path


def test_corrupted_checkpoint_raises_checkpoint_error(private_copy):
    pt = private_copy / f"{NAME}.pt"
    raw = bytearray(pt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF                      # one flipped byte inside the weights
    pt.write_bytes(bytes(raw))
    model = ts.NoPropForecaster.from_config(336, 96, ts.ForecastConfig())
    with pytest.raises(pretrained.CheckpointError, match="corrupted"):
        pretrained.load(NAME, model)
    with pytest.raises(pretrained.CheckpointError, match="corrupted"):
        ts.load_pretrained(NAME)


def test_missing_checkpoint_file_raises_checkpoint_error(private_copy):
    (private_copy / f"{NAME}.pt").unlink()
    with pytest.raises(pretrained.CheckpointError, match="missing"):
        ts.load_pretrained(NAME)


@pytest.mark.parametrize("lookback, horizon, change, field", [
    (336, 192, {}, "horizon"),
    (96, 96, {}, "lookback"),
    (336, 96, {"d": 32}, "d"),
    (336, 96, {"T": 5}, "T"),
    (336, 96, {"alpha_bar_max": 0.999}, "alpha_bar_max"),
])
def test_other_configuration_raises_checkpoint_error_naming_the_difference(lookback, horizon, change, field):
    cfg = ts.ForecastConfig(**change)
    model = ts.NoPropForecaster.from_config(lookback, horizon, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(pretrained.CheckpointError, match=rf"(?m)^\s*{field}: checkpoint"):
        pretrained.load(NAME, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # nothing half-loaded


def test_load_or_train_loads_the_checkpoint_by_default_and_trains_on_request(monkeypatch):
    model = ts.NoPropForecaster.from_config(336, 96, ts.ForecastConfig())
    calls = []
    monkeypatch.delenv(pretrained.RETRAIN_ENV, raising=False)
    hist, source = pretrained.load_or_train(NAME, model, lambda: calls.append(1) or [], smoke=False, log=None)
    assert source == "checkpoint" and not calls
    assert hist == pretrained.manifest(NAME)["history"]
    shipped = torch.load(pretrained.checkpoint_path(NAME), weights_only=True)
    assert all(torch.equal(shipped[k], v) for k, v in model.state_dict().items())
    monkeypatch.setenv(pretrained.RETRAIN_ENV, NAME)
    _, source = pretrained.load_or_train(NAME, model, lambda: calls.append(1) or [], smoke=False, log=None)
    assert source == "trained" and calls == [1]


# ------------------------------------------------------------------------------------ the command
def _write_ett_csv(path, rows=14_400 + 24, seed=0):
    """An ETT-layout CSV of a seasonal synthetic series (the protocol needs 14,400 rows)."""
    values = ts.synthetic_series(rows, channels=7, seed=seed)
    dates = np.datetime64("2016-07-01T00", "h") + np.arange(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(",".join(ts.ETT_COLUMNS) + "\n")
        for d, v in zip(dates, values):
            f.write(str(d).replace("T", " ") + ":00:00," + ",".join(f"{x:.6f}" for x in v) + "\n")


@pytest.mark.slow
def test_forecast_command_saves_a_checkpoint_that_reproduces_its_recorded_metrics(tmp_path, monkeypatch, capsys):
    from nplib.cli import main

    _write_ett_csv(tmp_path / "data" / "ETT" / "SYN.csv")
    monkeypatch.setenv("NPLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("NPLIB_SMOKE", "0")          # a checkpoint is made from a full run only
    ckdir = tmp_path / "ck"
    argv = ["forecast", "--dataset", "SYN", "--horizon", "96", "--lookback", "96", "--T", "2", "--d", "8",
            "--epochs", "1", "--ae-epochs", "1", "--baseline-epochs", "1", "--samples", "2", "--quiet",
            "--device", "cpu", "--save-checkpoint", "syn_test", "--checkpoint-dir", str(ckdir),
            "--out", str(tmp_path / "run.json")]
    monkeypatch.setattr(sys, "argv", ["python -m nplib"] + argv)
    assert main(argv) == 0
    m = json.loads((ckdir / "syn_test.json").read_text())
    assert m["command"] == "python -m nplib " + " ".join(argv)
    assert m["sha256"] == pretrained.sha256(ckdir / "syn_test.pt")
    assert m["build"]["forecast_config"]["T"] == 2 and m["config"]["d"] == 8
    # load it back (through the package's reader) and reproduce the recorded numbers
    monkeypatch.setattr(pretrained, "CHECKPOINT_DIR", ckdir)
    model, _ = ts.load_pretrained("syn_test")
    data = ts.prepare_forecast_data("SYN", 96, 96, "multivariate", smoke=False)
    det = ts.evaluate_point(ts.predict_windows(model.predict, data.test), data.test)
    assert _close(det["mse"], m["test_metric"]["deterministic"]["mse"])
    st = m["test_metric"]["stochastic"]
    sto = ts.evaluate_intervals(model, data.test, samples=st["samples"], seed=st["seed"])
    assert _close(sto["mse"], st["mse"])
    capsys.readouterr()
    assert argv[3:5] == ["--horizon", "96"]
    assert main(argv[:4] + ["all"] + argv[5:]) == 2     # --horizon all: which model to ship?
    assert "one --horizon" in capsys.readouterr().err


def test_save_checkpoint_refuses_a_quick_mode_run():
    res = {"smoke": True}
    with pytest.raises(ValueError, match="quick-mode"):
        ts.checkpoint_fields(res)
