"""Tests of the time-series modules (nplib.timeseries.ett, forecast_baselines, forecaster, forecast_intervals,
forecast_experiment; used here through their re-exports in nplib.timeseries) and the ``forecast``
command (notebook 07)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nplib.timeseries import forecast_experiment
from nplib import timeseries as ts
from nplib.data import DatasetNotFoundError, data_root

ETTH1 = data_root() / "ETT" / "ETTh1.csv"
needs_etth1 = pytest.mark.skipif(not ETTH1.is_file(), reason=f"ETTh1 not at {ETTH1} (set NPLIB_DATA)")


def _write_ett(path: Path, rows: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    vals = g.standard_normal((rows, 7)).astype(np.float32)
    dates = np.arange(np.datetime64("2016-07-01T00"), np.datetime64("2016-07-01T00") + rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(",".join(ts.ETT_COLUMNS) + "\n")
        for d, v in zip(dates, vals):
            f.write(str(d).replace("T", " ") + ":00:00," + ",".join(f"{x:.6f}" for x in v) + "\n")
    return vals


# ------------------------------------------------------------------ splits, scaler, leakage
@pytest.mark.parametrize("L", [96, 336])
def test_split_borders_protocol(L):
    b = ts.split_borders(17420, L)
    assert b["train"] == (0, 8640)
    assert b["val"] == (8640 - L, 11520)
    assert b["test"] == (11520 - L, 14400)


@pytest.mark.parametrize("L,H", [(96, 96), (336, 720)])
def test_window_counts_and_shapes(L, H):
    data = ts.data_from_array(ts.synthetic_series(channels=3), L, H)
    assert len(data.train) == 8640 - L - H + 1
    assert len(data.val) == 2880 - H + 1 and len(data.test) == 2880 - H + 1
    idx = torch.tensor([0, 5, len(data.test) - 1])
    assert data.test.x(idx).shape == (3, L, 3) and data.test.y(idx).shape == (3, H, 3)
    # the first test forecast starts exactly at the boundary, the last one ends at the end of the test part
    assert data.test.target_rows() == (11520, 14400)
    assert data.val.target_rows() == (8640, 11520)
    # x and y are contiguous pieces of the series
    s = int(data.test.starts[5])
    assert torch.equal(data.test.x(idx)[1], data.test.series[s:s + L])
    assert torch.equal(data.test.y(idx)[1], data.test.series[s + L:s + L + H])


def test_no_test_rows_in_training_windows():
    data = ts.data_from_array(ts.synthetic_series(channels=2), 336, 720)
    lo, hi = data.train.input_rows()
    assert hi <= 8640 and data.train.target_rows()[1] <= 8640
    assert data.val.target_rows()[1] <= 11520 <= data.test.target_rows()[0]



def test_training_batches_use_only_training_rows():
    """A series whose value is its row number: every value in every (window, variable) pair the
    training loop can draw comes from a row < 8640 (the first validation row)."""
    rows = np.arange(sum(ts.SPLIT_HOURS), dtype=np.float64)
    values = np.stack([rows, rows], axis=1)
    data = ts.data_from_array(values, 336, 720)
    x, y = ts._batch(data.train, torch.arange(len(data.train) * 2))
    row_of = lambda v, c: v.double() * float(data.scaler.std[c]) + float(data.scaler.mean[c])  # noqa: E731
    for c in (0, 1):
        assert float(row_of(x[c::2], c).max()) == pytest.approx(8640 - 720 - 1, abs=0.05)
        assert float(row_of(y[c::2], c).max()) == pytest.approx(8640 - 1, abs=0.05)
        assert float(row_of(x[c::2], c).min()) == pytest.approx(0.0, abs=0.05)


def test_scaler_fitted_on_training_rows_only():
    v = ts.synthetic_series(channels=2)
    v2 = v.copy()
    v2[8640:] = v2[8640:] * 100 + 50  # change everything after the training part
    a, b = ts.data_from_array(v, 96, 96), ts.data_from_array(v2, 96, 96)
    np.testing.assert_allclose(a.scaler.mean, v[:8640].mean(0), rtol=1e-5)
    np.testing.assert_allclose(a.scaler.std, v[:8640].std(0), rtol=1e-5)
    np.testing.assert_array_equal(a.scaler.mean, b.scaler.mean)
    np.testing.assert_array_equal(a.scaler.std, b.scaler.std)
    assert a.scaler.fitted_rows == (0, 8640)
    # the standardised training part is identical; training windows are unaffected
    assert torch.equal(a.train.x(), b.train.x()) and torch.equal(a.train.y(), b.train.y())


@needs_etth1
def test_etth1_layout_dates_and_no_test_copy_in_train():
    ett = ts.load_ett("ETTh1")
    assert len(ett) == 17420 and ett.columns == ts.ETT_COLUMNS[1:] and ett.values.shape == (17420, 7)
    data = ts.prepare_forecast_data("ETTh1", 96, 96, "multivariate", smoke=False)
    lo, hi = data.train.target_rows()
    t_lo, t_hi = data.test.target_rows()
    train_dates, test_dates = set(ett.dates[:hi].tolist()), set(ett.dates[t_lo:t_hi].tolist())
    assert not train_dates & test_dates
    assert ett.dates[t_lo] == ett.dates[0] + np.timedelta64(11520, "h")  # hourly rows, no gaps
    assert str(ett.dates[t_lo]) == "2017-10-24T00"  # 480 days after 2016-07-01
    # spec section 8 bug 9: no test window equals a training window
    tr = data.train.y()  # (N, H, C)
    for i in (0, len(data.test) // 2, len(data.test) - 1):
        te = data.test.y(torch.tensor([i]))
        assert (tr - te).abs().amax(dim=(1, 2)).min() > 1e-3
    uni = ts.prepare_forecast_data("ETTh1", 96, 96, "univariate", smoke=False)
    assert uni.columns == ("OT",) and uni.train.channels == 1
    np.testing.assert_allclose(uni.scaler.mean[0], data.scaler.mean[6], rtol=1e-6)


# ------------------------------------------------------------------ files: md5, missing, other CSVs
def test_md5_mismatch_is_an_error(tmp_path):
    _write_ett(tmp_path / "ETT" / "ETTh1.csv", 50)
    with pytest.raises(ValueError, match="md5"):
        ts.ett_path("ETTh1", root=tmp_path, download=False)


def test_missing_file_names_file_and_place(tmp_path, monkeypatch):
    def fail(url, filename):
        raise OSError("no network here")

    monkeypatch.setattr(ts.urllib.request, "urlretrieve", fail)
    monkeypatch.delenv("NPLIB_NO_DOWNLOAD", raising=False)   # CI sets it; this test needs the download path
    with pytest.raises(DatasetNotFoundError) as err:
        ts.load_ett("ETTh1", root=tmp_path)
    msg = str(err.value)
    assert "ETTh1.csv" in msg and str(tmp_path / "ETT") in msg and "no network" in msg
    assert isinstance(err.value, FileNotFoundError)
    assert not list((tmp_path / "ETT").glob("*.part"))
    with pytest.raises(FileNotFoundError, match="download=False"):
        ts.load_ett("ETTh2", root=tmp_path, download=False)
    monkeypatch.setenv("NPLIB_NO_DOWNLOAD", "1")
    with pytest.raises(DatasetNotFoundError, match="NPLIB_NO_DOWNLOAD"):
        ts.load_ett("ETTh1", root=tmp_path)


def test_download_is_md5_checked(tmp_path, monkeypatch):
    def fake(url, filename):
        Path(filename).write_text("date,HUFL\n")

    monkeypatch.setattr(ts.urllib.request, "urlretrieve", fake)
    with pytest.raises(DatasetNotFoundError, match="md5"):
        ts.ett_path("ETTh1", root=tmp_path)
    assert not (tmp_path / "ETT" / "ETTh1.csv").exists()


def test_other_csv_in_ett_layout(tmp_path):
    vals = _write_ett(tmp_path / "ETT" / "mine.csv", sum(ts.SPLIT_HOURS) + 10)
    ett = ts.load_ett("mine", root=tmp_path, download=False)
    np.testing.assert_allclose(ett.values, vals, atol=1e-5)
    data = ts.prepare_forecast_data("mine", 96, 192, "univariate", root=tmp_path, smoke=True, download=False)
    assert data.columns == ("OT",)
    (tmp_path / "ETT" / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="column layout"):
        ts.load_ett("bad", root=tmp_path, download=False)
    with pytest.raises(ValueError):
        ts.prepare_forecast_data("mine", 96, 96, "bivariate", root=tmp_path)


# ------------------------------------------------------------------ baselines
def test_naive_and_seasonal_naive():
    x = torch.arange(48.0).reshape(1, 48, 1).repeat(2, 1, 3)
    y = ts.naive_forecast(x, 30)
    assert y.shape == (2, 30, 3) and (y == 47).all()
    period = torch.sin(torch.arange(96 + 50) * 2 * torch.pi / 24).reshape(1, -1, 1)
    pred = ts.seasonal_naive_forecast(period[:, :96], 50, 24)
    torch.testing.assert_close(pred, period[:, 96:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        ts.seasonal_naive_forecast(x[:, :10], 5, 24)


def test_moving_average_and_dlinear_shapes():
    x = torch.ones(4, 96) * 3.0
    torch.testing.assert_close(ts.moving_average(x, 25), x)
    x = torch.randn(5, 96)
    assert ts.moving_average(x, 25).shape == (5, 96)
    assert ts.DLinear(96, 24)(x).shape == (5, 24)


def test_dlinear_beats_naive_on_seasonal_series():
    torch.manual_seed(0)
    data = ts.data_from_array(ts.synthetic_series(channels=2, noise=0.2), 96, 48, smoke=True)
    cfg = ts.ForecastConfig(baseline_epochs=3, max_train_examples=3000, lr=3e-3)
    model, info = ts.fit_dlinear(data, cfg, log=lambda s: None)
    dl = ts.evaluate_point(ts._predict_windows(model, data.test), data.test)
    nv = ts.evaluate_point(ts.naive_forecast(data.test.x(), 48), data.test)
    assert dl["mse"] < 0.5 * nv["mse"]


# ------------------------------------------------------------------ the NoProp model
def test_no_gradient_across_blocks():
    torch.manual_seed(0)
    m = ts.NoPropForecaster(48, 24, T=4, d=8, hidden=16, ae_hidden=16)
    x, y = torch.randn(16, 48), torch.randn(16, 24)
    u_y = m.autoencoder.encode(y)  # WITH a graph into the encoder: block_loss must cut it
    for t in range(1, m.T + 1):
        m.zero_grad(set_to_none=True)
        m.block_loss(t, x, u_y).backward()
        for s, block in enumerate(m.blocks, start=1):
            got = [p.grad is not None for p in block.parameters()]
            assert all(got) if s == t else not any(got), (t, s)
        assert all(p.grad is None for p in m.autoencoder.parameters())
    # a whole training step: each block's optimizer sees only its block's gradient
    opts = {f"block{t}": torch.optim.SGD(m.blocks[t - 1].parameters(), lr=0.0) for t in range(1, 5)}
    opts["decoder"] = torch.optim.SGD(m.autoencoder.dec_lin.parameters(), lr=0.0)
    out = ts.noprop_training_step(m, x, y, opts)
    assert len(out["per_block"]) == 4 and all(np.isfinite(out["per_block"]))


def test_chain_shapes_seeding_and_feature_reuse():
    m = ts.NoPropForecaster(48, 24, T=3, d=8, hidden=16, ae_hidden=0).eval()
    x = torch.randn(5, 48)
    z = m.sample_latent(x, samples=7, generator=torch.Generator().manual_seed(0))
    assert z.shape == (7, 5, 8)
    # the deterministic chain draws no random numbers: the global generator's state is irrelevant
    torch.manual_seed(1)
    p1 = m.predict(x)
    torch.manual_seed(2)
    assert torch.equal(p1, m.predict(x))
    a = m.forecast(x, noise=True, samples=3, generator=torch.Generator().manual_seed(1))
    b = m.forecast(x, noise=True, samples=3, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 5, 24) and torch.equal(a, b)
    # a block fed z=None with precomputed features gives the same as the normal path
    blk = m.blocks[0]
    zp = torch.randn(5, 8)
    torch.testing.assert_close(blk(x, zp), blk(None, zp, h=blk.temporal(x)))
    zs = torch.randn(3 * 5, 8)
    torch.testing.assert_close(blk.from_features(blk.past_features(x), zs, 3), blk(x.repeat(3, 1), zs))


def test_quick_run_beats_naive_and_widens_intervals_on_validation_windows(monkeypatch):
    data = ts.data_from_array(ts.synthetic_series(channels=2, noise=0.2), 96, 48, smoke=True, name="synthetic")
    cfg = ts.ForecastConfig(T=4, d=16, hidden=32, ae_hidden=32, epochs=2, ae_epochs=2, baseline_epochs=1,
                            samples=8, max_train_examples=3000, lr=3e-3)
    calls = []
    real = ts.calibrate_interval_scale

    def spy(model, ws, *args, **kwargs):
        calls.append(ws.target_rows())
        out = real(model, ws, *args, **kwargs)
        calls.append(out[0])
        return out

    # run_experiment looks the function up in its own module, so the spy goes there (a spy set on
    # nplib.timeseries, which only re-exports it, would see no call and the assertions would fail)
    monkeypatch.setattr(forecast_experiment, "calibrate_interval_scale", spy)
    r = ts.run_experiment(data=data, cfg=cfg, smoke=False, log=lambda s: None)
    # the widening factors are chosen on the validation months only (rows 8640 .. 11520)
    assert len(calls) == 2
    lo, hi = calls[0]
    assert 8640 <= lo and hi <= 11520
    rows = {row["model"]: row for row in r["rows"]}
    naive = rows["naive (last value)"]["mse"]
    assert rows["NoProp AE, deterministic chain"]["mse"] < 0.6 * naive
    sampled = [row for row in r["rows"] if "samples" in row["model"]][0]
    assert sampled["mse"] < 0.6 * naive
    widened = [row for row in r["rows"] if "widened on validation" in row["model"]][0]
    assert widened["scale"] == {"80": calls[1][0.8], "95": calls[1][0.95]}
    # widening by k >= 1 contains the raw interval (coverage cannot drop); k < 1 is contained in it
    for lv in ("80", "95"):
        k = widened["scale"][lv]
        if k >= 1:
            assert widened["coverage"][lv] >= sampled["coverage"][lv]
        else:
            assert widened["coverage"][lv] <= sampled["coverage"][lv]
        assert widened["width"][lv] == pytest.approx(k * sampled["width"][lv], rel=1e-4)
    assert "ETTh1" not in ts.format_table(r) and "NoProp AE" in ts.format_table(r)
    assert (r["models"]["noprop"].autoencoder.sigma_rec > 0).all()


# ------------------------------------------------------------------ command line
@needs_etth1
def test_forecast_command_quick(tmp_path, capsys):
    from nplib.cli import main

    out = tmp_path / "f.json"
    assert os.environ.get("NPLIB_SMOKE") == "1"
    rc = main(["forecast", "--dataset", "ETTh1", "--horizon", "96", "--lookback", "96", "--mode", "univariate",
               "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "DLinear-style" in text and "NoProp AE" in text
    assert "one block does this forecasting" in text   # what the table's NoProp rows are (issue 15)
    res = json.loads(out.read_text())
    r = res["results"][0]
    assert r["horizon"] == 96 and r["lookback"] == 96 and r["mode"] == "univariate" and r["smoke"]
    assert {row["model"] for row in r["rows"]} >= {"naive (last value)", "DLinear-style"}
    assert "hardware" in res and res["config"]["epochs"] == ts.ForecastConfig().epochs


def test_forecast_command_missing_dataset(tmp_path, monkeypatch, capsys):
    from nplib.cli import main

    monkeypatch.setenv("NPLIB_DATA", str(tmp_path))
    monkeypatch.setattr(ts.urllib.request, "urlretrieve", lambda *a: (_ for _ in ()).throw(OSError("offline")))
    assert main(["forecast", "--dataset", "ETTh2", "--out", str(tmp_path / "x.json")]) == 2
    assert "ETTh2.csv" in capsys.readouterr().err
