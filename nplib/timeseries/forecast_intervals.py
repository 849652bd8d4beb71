r"""Prediction intervals of the NoProp forecaster: sampled quantiles, their coverage and width, and the
widening factors calibrated on validation windows.

Introduced in notebooks/07_timeseries_autoencoder, section 5. One of the time-series modules
(:mod:`nplib.timeseries` says where each part lives); it builds on :mod:`nplib.timeseries.ett` and needs of
the model only its ``forecast`` method (:class:`nplib.timeseries.forecaster.NoPropForecaster`).

**Predictive distribution (notebook 07, section 5).** Sampling the stochastic chain S times gives
S latents ``z_T`` per window; the decoder adds its own Gaussian residual with a per-horizon-step
standard deviation ``sigma_rec`` measured on the training futures (``y - D(E(y))``: the part of the
future the d-dimensional latent cannot hold). Quantiles of the S samples give the 80 % and 95 %
prediction intervals; the mean of the samples is the point forecast. Measured on ETTh1, these raw
intervals under-cover even on the TRAINING windows (the chain of T = 10 blocks, each trained to
predict a conditional mean, is under-dispersed), so
:func:`~nplib.timeseries.forecast_experiment.run_experiment` also reports intervals widened by one factor per
level chosen on VALIDATION windows (:func:`calibrate_interval_scale`, split-conformal style; the
test set is never used to choose it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from nplib.timeseries.ett import WindowSet, _generator, _per_channel

if TYPE_CHECKING:  # annotations only: the model's module is not needed to evaluate it
    from nplib.timeseries.forecaster import NoPropForecaster

__all__ = ["evaluate_intervals", "calibrate_interval_scale"]


@torch.no_grad()
def _scaled(mean, lo, hi, k: float):
    # [mean - k (mean - q_lo), mean + k (q_hi - mean)]
    return mean - k * (mean - lo), mean + k * (hi - mean)


def evaluate_intervals(model: NoPropForecaster, ws: WindowSet, samples: int = 50, levels=(0.8, 0.95),
                       seed: int = 0, batch: int = 64, decoder_noise: bool = True, keep: int = 0,
                       scale: dict | None = None) -> dict:
    """Sample the stochastic chain ``samples`` times per window: point metrics of the sample mean and
    the coverage and width of central prediction intervals.

    Introduced in notebooks/07_timeseries_autoencoder, section 5. ``keep`` > 0 also returns the
    quantile bands of the first ``keep`` windows for plots (key ``bands``). ``scale`` maps a level
    (0.8, 0.95) to a factor k (from :func:`calibrate_interval_scale`): the coverage and width of the
    widened intervals ``[mean - k (mean - q_lo), mean + k (q_hi - mean)]`` are returned too.
    The samples are drawn on the device of ``ws`` (the model must be there too) from a generator
    seeded with ``seed``; the result depends on ``seed``, ``samples`` and ``batch``.
    """
    g = _generator(ws.device, seed)
    qs = sorted({q for lv in levels for q in ((1 - lv) / 2, (1 + lv) / 2)})
    qt = torch.tensor(qs, device=ws.device)
    C = ws.channels
    sq, ab = 0.0, 0.0
    cover = {lv: 0.0 for lv in levels}
    width = {lv: 0.0 for lv in levels}
    cover_k = {lv: 0.0 for lv in levels}
    width_k = {lv: 0.0 for lv in levels}
    n_el = 0
    kept = []
    for i in range(0, len(ws), batch):
        idx = torch.arange(i, min(i + batch, len(ws)), device=ws.device)
        x, y = ws.x(idx), ws.y(idx)
        B = x.shape[0]
        ys = model.forecast(_per_channel(x), noise=True, samples=samples, generator=g,
                            decoder_noise=decoder_noise)  # (S, B*C, H)
        ys = ys.reshape(samples, B, C, -1).permute(0, 1, 3, 2)  # (S, B, H, C)
        mean = ys.mean(0)
        sq += float((mean - y).pow(2).sum())
        ab += float((mean - y).abs().sum())
        qv = torch.quantile(ys, qt, dim=0)  # (Q, B, H, C)
        for lv in levels:
            lo, hi = qv[qs.index((1 - lv) / 2)], qv[qs.index((1 + lv) / 2)]
            cover[lv] += float(((y >= lo) & (y <= hi)).float().sum())
            width[lv] += float((hi - lo).sum())
            if scale:
                lo, hi = _scaled(mean, lo, hi, scale[lv])
                cover_k[lv] += float(((y >= lo) & (y <= hi)).float().sum())
                width_k[lv] += float((hi - lo).sum())
        n_el += y.numel()
        if keep and sum(k["mean"].shape[0] for k in kept) < keep:
            kept.append({"mean": mean, **{f"q{q:g}": qv[j] for j, q in enumerate(qs)}})
    out = {"mse": sq / n_el, "mae": ab / n_el, "samples": samples, "decoder_noise": decoder_noise,
           "coverage": {f"{round(100 * lv)}": cover[lv] / n_el for lv in levels},
           "width": {f"{round(100 * lv)}": width[lv] / n_el for lv in levels}}
    if scale:
        out["scale"] = {f"{round(100 * lv)}": scale[lv] for lv in levels}
        out["coverage_calibrated"] = {f"{round(100 * lv)}": cover_k[lv] / n_el for lv in levels}
        out["width_calibrated"] = {f"{round(100 * lv)}": width_k[lv] / n_el for lv in levels}
    if keep:
        out["bands"] = {k: torch.cat([d[k] for d in kept])[:keep] for k in kept[0]}
    return out


@torch.no_grad()
def calibrate_interval_scale(model: NoPropForecaster, ws: WindowSet, samples: int = 50, levels=(0.8, 0.95),
                             seed: int = 1) -> tuple[dict, dict]:
    """Split-conformal-style widening factors chosen on VALIDATION windows (never the test set).

    Introduced in notebooks/07_timeseries_autoencoder, section 5. For each level, the factor k
    such that ``[mean - k (mean - q_lo), mean + k (q_hi - mean)]`` covers that fraction of the
    validation futures (bisection; coverage grows with k). Returns ``({level: k}, raw validation
    result)``.
    """
    res = evaluate_intervals(model, ws, samples=samples, levels=levels, seed=seed, keep=len(ws))
    bd, y = res.pop("bands"), ws.y()
    scale = {}
    for lv in levels:
        lo, hi = bd[f"q{(1 - lv) / 2:g}"], bd[f"q{(1 + lv) / 2:g}"]
        k_lo, k_hi = 0.0, 1.0
        while k_hi < 64 and ((y >= _scaled(bd["mean"], lo, hi, k_hi)[0]) &
                             (y <= _scaled(bd["mean"], lo, hi, k_hi)[1])).float().mean() < lv:
            k_lo, k_hi = k_hi, 2 * k_hi
        for _ in range(30):
            k = (k_lo + k_hi) / 2
            a, b = _scaled(bd["mean"], lo, hi, k)
            if ((y >= a) & (y <= b)).float().mean() < lv:
                k_lo = k
            else:
                k_hi = k
        scale[lv] = k_hi
    return scale, res


# ============================================================================ figures
def plot_forecast_bands(x: torch.Tensor, y: torch.Tensor, bands: dict, others: dict | None = None,
                        ax=None, title: str = "", ylabel: str = "value (standardised)"):
    """One window: past, true future, NoProp mean with 80 % / 95 % bands, other forecasts.

    Introduced in notebooks/07_timeseries_autoencoder, section 5. ``x`` (L,), ``y`` (H,); ``bands``
    maps 'mean', 'q0.025', 'q0.1', 'q0.9', 'q0.975' to (H,) tensors. NoProp is drawn in blue, the
    other forecasts in orange, green, red, ... (never blue), so each line has its own colour.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3))
    def np_(v):  # tensors on any device -> numpy
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    L, H = x.shape[0], y.shape[0]
    tp, tf = np.arange(-L, 0), np.arange(H)
    ax.plot(tp, np_(x), color="k", lw=0.8, label="past")
    ax.plot(tf, np_(y), color="k", lw=1.2, ls="--", label="true future")
    ax.fill_between(tf, np_(bands["q0.025"]), np_(bands["q0.975"]), color="tab:blue", alpha=0.18,
                    label="NoProp 95 %")
    ax.fill_between(tf, np_(bands["q0.1"]), np_(bands["q0.9"]), color="tab:blue", alpha=0.3,
                    label="NoProp 80 %")
    ax.plot(tf, np_(bands["mean"]), color="tab:blue", lw=1.2, label="NoProp mean")
    other_colors = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    for (name, v), c in zip((others or {}).items(), other_colors * 4):
        ax.plot(tf, np_(v), lw=1.0, color=c, label=name)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("hours from the forecast origin")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return ax
