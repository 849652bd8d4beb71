r"""The forecasting experiment: the NoProp forecaster and every baseline on the same windows.

Introduced in notebooks/07_timeseries_autoencoder, section 4; the command line is
``python -m nplib forecast`` (:mod:`nplib.timeseries.forecast_cli`). One of the time-series modules
(:mod:`nplib.timeseries` says where each part lives), the only one that imports all the others.

:func:`run_experiment` trains (or takes already trained) the DLinear-style baseline, the backprop
baseline and the NoProp forecaster on one (dataset, horizon, lookback, mode), evaluates them and
the naive baselines on the test windows, and reports the NoProp intervals raw and widened by
factors chosen on validation windows (:mod:`nplib.timeseries.forecast_intervals`); :func:`format_table`
prints its rows and :func:`jsonable_result` is what goes into JSON. :func:`checkpoint_fields` and
:func:`load_pretrained` ship and load the trained forecaster (:mod:`nplib.pretrained`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np
import torch

from nplib.data import smoke_mode
from nplib.timeseries.ett import ForecastData, WindowSet, _predict_windows, evaluate_point, prepare_forecast_data
from nplib.timeseries.forecast_baselines import fit_dlinear, naive_forecast, seasonal_naive_forecast
from nplib.timeseries.forecast_intervals import calibrate_interval_scale, evaluate_intervals
from nplib.timeseries.forecaster import ForecastConfig, NoPropForecaster, fit_backprop, fit_noprop, smoke_config

__all__ = ["run_experiment", "format_table", "jsonable_result", "checkpoint_fields", "load_pretrained"]


def run_experiment(name: str = "ETTh1", horizon: int = 96, lookback: int = 336, mode: str = "multivariate",
                   cfg: ForecastConfig | None = None, root=None, smoke: bool | None = None, log=print,
                   data: ForecastData | None = None, keep_bands: int = 0, trained: dict | None = None,
                   device: str | torch.device | None = None) -> dict:
    """Train the NoProp autoencoder and the baselines on one (dataset, horizon, lookback, mode).

    Introduced in notebooks/07_timeseries_autoencoder, section 4. Returns a dict with ``rows``
    (model, MSE, MAE, interval coverage and width) and the training details; ``models`` holds
    the trained models (not JSON-serialisable; :func:`jsonable_result` drops them).

    ``trained`` maps ``"noprop"``, ``"dlinear"`` or ``"backprop"`` to ``(model, info)`` of a model
    that is already trained (a shipped checkpoint, :mod:`nplib.pretrained`): it is evaluated, not
    trained again, and ``info`` (with its ``history``) is reported. Everything runs on ``device``
    (default: the device of ``data``, else the CPU); quick mode uses :func:`~nplib.timeseries.forecaster.smoke_config`.
    """
    smoke = smoke_mode() if smoke is None else smoke
    cfg = cfg or ForecastConfig()
    if smoke:
        cfg = smoke_config(cfg)
    trained = dict(trained or {})
    unknown = set(trained) - {"noprop", "dlinear", "backprop"}
    if unknown:
        raise ValueError(f"trained= takes 'noprop', 'dlinear', 'backprop'; got {sorted(unknown)}")
    t_start = time.perf_counter()
    if data is None:
        data = prepare_forecast_data(name, lookback, horizon, mode, root, smoke)
    if device is not None:
        data = data.to(device)
    log(data.summary())
    rows, timing = [], {}

    def add(model_name, metrics, **extra):
        rows.append({"model": model_name, "mse": metrics["mse"], "mae": metrics["mae"], **extra})

    test_x = data.test.x()
    add("naive (last value)", evaluate_point(naive_forecast(test_x, data.horizon), data.test))
    if data.lookback >= 24:
        add("seasonal naive (24 h)", evaluate_point(seasonal_naive_forecast(test_x, data.horizon, 24), data.test))
    def fit_or_take(key, fit):
        t0 = time.perf_counter()
        if key in trained:
            model, info = trained[key]
            model.to(data.device).eval()
        else:
            model, info = fit(data, cfg, log)
        timing[key if key != "noprop" else "noprop_train"] = time.perf_counter() - t0
        return model, info

    dl, dl_info = fit_or_take("dlinear", fit_dlinear)
    add("DLinear-style", evaluate_point(_predict_windows(dl, data.test), data.test))
    bp, bp_info = fit_or_take("backprop", fit_backprop)
    add("same network, backprop end to end", evaluate_point(_predict_windows(bp.predict, data.test), data.test))
    npm, np_info = fit_or_take("noprop", fit_noprop)
    add("NoProp AE, deterministic chain", evaluate_point(_predict_windows(npm.predict, data.test), data.test))
    t0 = time.perf_counter()
    val_sub = WindowSet(data.val.series, data.val.starts[::max(1, cfg.calibration_stride)], data.lookback,
                        data.horizon)
    scale, val_iv = calibrate_interval_scale(npm, val_sub, samples=cfg.samples, seed=cfg.seed + 1)
    stride = max(1, cfg.interval_stride)
    sub = WindowSet(data.test.series, data.test.starts[::stride], data.lookback, data.horizon)
    iv = evaluate_intervals(npm, sub, samples=cfg.samples, seed=cfg.seed, keep=keep_bands, scale=scale)
    timing["noprop_sampling"] = time.perf_counter() - t0
    where = f", every {stride}th window" if stride > 1 else ""
    add(f"NoProp AE, mean of {cfg.samples} samples{where}", iv, coverage=iv["coverage"], width=iv["width"],
        windows=len(sub))
    add("  same, intervals widened on validation", iv, coverage=iv["coverage_calibrated"],
        width=iv["width_calibrated"], scale=iv["scale"], validation_coverage_raw=val_iv["coverage"],
        calibration_windows=len(val_sub))
    timing["total"] = time.perf_counter() - t_start
    n_params = {"noprop": sum(p.numel() for p in npm.parameters()),
                "noprop_per_block": sum(p.numel() for p in npm.blocks[0].parameters()),
                "backprop": sum(p.numel() for p in bp.parameters()),
                "dlinear": sum(p.numel() for p in dl.parameters())}
    out = {"dataset": data.name, "mode": data.mode, "lookback": data.lookback, "horizon": data.horizon,
           "smoke": data.smoke, "rows": rows, "config": asdict(cfg), "parameters": n_params,
           "windows": {k: len(getattr(data, k)) for k in ("train", "val", "test")},
           "variables": list(data.columns), "seconds": timing, "pretrained": sorted(trained),
           "training": {"dlinear": dl_info, "backprop": bp_info, "noprop": np_info},
           "models": {"noprop": npm, "dlinear": dl, "backprop": bp}, "data": data}
    if keep_bands:
        out["bands"] = iv["bands"]  # (windows, H, C) each; test window j * stride for row j
        out["bands_test_index"] = torch.arange(0, len(data.test), stride)[: iv["bands"]["mean"].shape[0]]
        out["bands"] = {k: v.cpu() for k, v in out["bands"].items()}  # for plots
    return out


def format_table(result: dict) -> str:
    """The table the ``forecast`` command prints: model, MSE, MAE, 80 % / 95 % coverage and width.

    Introduced in notebooks/07_timeseries_autoencoder, section 4.
    """
    head = (f"{result['dataset']} {result['mode']}, lookback {result['lookback']}, horizon {result['horizon']}"
            f"{' (quick mode)' if result.get('smoke') else ''}")
    lines = [head, f"{'model':42s} {'MSE':>7s} {'MAE':>7s} {'cov80':>6s} {'cov95':>6s} {'w80':>6s} {'w95':>6s}"]
    for r in result["rows"]:
        cov, wid = r.get("coverage"), r.get("width")
        tail = (f" {100 * cov['80']:5.1f}% {100 * cov['95']:5.1f}% {wid['80']:6.3f} {wid['95']:6.3f}" if cov
                else f" {'-':>6s} {'-':>6s} {'-':>6s} {'-':>6s}")
        lines.append(f"{r['model']:42s} {r['mse']:7.4f} {r['mae']:7.4f}" + tail)
    return "\n".join(lines)


def jsonable_result(result: dict) -> dict:
    """A :func:`run_experiment` result without models, data and tensors (what goes into JSON)."""
    return {k: v for k, v in result.items() if k not in ("models", "data", "bands", "bands_test_index")}


# ============================================================================ shipped checkpoints
def checkpoint_fields(result: dict, eval_seeds=(0, 1, 2, 3, 4), log=print) -> dict:
    """The manifest fields of the NoProp model of a :func:`run_experiment` result (for :func:`nplib.pretrained.save`).

    Introduced in notebooks/07_timeseries_autoencoder, section 3 (``python -m nplib forecast
    --save-checkpoint NAME`` calls it). ``build`` holds the data and
    :class:`~nplib.timeseries.forecaster.ForecastConfig` that rebuild the model (:func:`load_pretrained`);
    ``test_metric`` the test metrics the checkpoint reproduces: the deterministic chain's MSE / MAE
    (exactly), and the mean-of-samples forecast's MSE / MAE with
    ``cfg.samples`` samples and generator seed ``cfg.seed`` (exactly, with the same seed and batch),
    plus the mean and standard error over ``eval_seeds``.
    """
    if result.get("smoke"):
        raise ValueError("this is a quick-mode result; ship only full runs")
    npm, data, cfg = result["models"]["noprop"], result["data"], ForecastConfig(**result["config"])
    det = [r for r in result["rows"] if r["model"] == "NoProp AE, deterministic chain"][0]
    sto = [r for r in result["rows"] if r["model"].startswith("NoProp AE, mean of")][0]
    if sto.get("windows") != len(data.test):
        raise ValueError("the stochastic metric was measured on a subset of the test windows (interval_stride > 1)")
    runs = []
    for seed in eval_seeds:
        if seed == cfg.seed:
            runs.append({"seed": seed, "mse": sto["mse"], "mae": sto["mae"]})
            continue
        iv = evaluate_intervals(npm, data.test, samples=cfg.samples, seed=seed)
        runs.append({"seed": seed, "mse": iv["mse"], "mae": iv["mae"]})
        log(f"  stochastic test MSE with seed {seed}: {iv['mse']:.5f}")
    mses = np.array([r["mse"] for r in runs])
    se = float(mses.std(ddof=1) / math.sqrt(len(mses))) if len(mses) > 1 else float("nan")
    data_txt = (f"{data.name} {data.mode} test set, lookback {data.lookback}, horizon {data.horizon}: "
                f"{len(data.test)} windows x {data.test.channels} variables, standardised with the training rows")
    return {
        "build": {"kind": "forecaster", "model": "NoPropForecaster", "dataset": data.name, "mode": data.mode,
                  "lookback": data.lookback, "horizon": data.horizon, "forecast_config": asdict(cfg)},
        "train_seconds": result["seconds"]["noprop_train"],
        "epochs": cfg.epochs, "ae_epochs": cfg.ae_epochs,
        "history": result["training"]["noprop"]["history"],
        "best_val_mse": result["training"]["noprop"]["best_val_mse"],
        "reconstruction_mse_train": result["training"]["noprop"]["reconstruction_mse_train"],
        "metric": {"test_mse_deterministic": det["mse"], f"test_mse_mean_of_{cfg.samples}": sto["mse"]},
        "test_metric": {
            "data": data_txt,
            "deterministic": {"mse": det["mse"], "mae": det["mae"],
                              "how": "evaluate_point(predict_windows(model.predict, data.test), data.test)"},
            "stochastic": {"mse": sto["mse"], "mae": sto["mae"], "samples": cfg.samples, "seed": cfg.seed,
                           "batch": 64, "decoder_noise": True,
                           "how": f"evaluate_intervals(model, data.test, samples={cfg.samples}, seed={cfg.seed})",
                           "runs": runs, "mse_mean": float(mses.mean()), "mse_se": se,
                           "mae_mean": float(np.mean([r["mae"] for r in runs]))},
        },
        "run_rows": result["rows"],
    }


def load_pretrained(name: str = "nb07_forecaster", device: str | torch.device | None = None):
    """The shipped forecaster ``name``, rebuilt from its manifest and loaded; returns ``(model, manifest)``.

    Introduced in notebooks/07_timeseries_autoencoder, section 3. The data it was trained on is
    ``prepare_forecast_data(b["dataset"], b["lookback"], b["horizon"], b["mode"])`` with
    ``b = manifest["build"]``. A missing, corrupted or mismatched file raises
    :class:`nplib.pretrained.CheckpointError`.
    """
    from nplib import pretrained

    m = pretrained.manifest(name)
    b = m.get("build") or {}
    if b.get("kind") != "forecaster":
        raise pretrained.CheckpointError(f"checkpoint {name!r} is not a forecaster (build kind {b.get('kind')!r})")
    model = NoPropForecaster.from_config(b["lookback"], b["horizon"], ForecastConfig(**b["forecast_config"]))
    m = pretrained.load(name, model, device)
    return model, m
