# %% [markdown]
# # 07 · Forecasting ETTh1 with a NoProp autoencoder
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nplib/noprop-course/blob/main/student/07_timeseries_autoencoder.ipynb) exercises (no solutions) · [solved version in Colab](https://colab.research.google.com/github/nplib/noprop-course/blob/main/notebooks/07_timeseries_autoencoder.ipynb)
#
# NoProp denoises a **label embedding** $u_y$ block by block. For classification $u_y$ is a row of
# $W_{embed}$. For forecasting the "label" is the **future window** of a time series, and its
# embedding is learned by an **autoencoder**: $u_y = E(y)$, $y \approx D(u_y)$. Each NoProp block
# sees the past window and a noisy latent, predicts the clean latent, and is trained by its own
# local loss; at inference the stochastic chain runs from noise to $z_T$ and the decoder turns
# $z_T$ into a forecast. Because the chain is stochastic, running it many times gives a
# **predictive distribution**, not just a point forecast.
#
# **Learning goals.** After this notebook you can
# 1. set up the standard ETTh1 protocol (12/4/4 months, scaler fitted on the training part only,
#    sliding windows) and say how test data can leak into training;
# 2. build the NoProp autoencoder: encoder/decoder of futures, T blocks with a temporal encoder and
#    a latent path, local losses with no gradient across blocks;
# 3. explain why a *learned* embedding can collapse and how we prevent it;
# 4. compare against naive, seasonal-naive, DLinear-style and end-to-end backprop baselines for
#    four horizons and two modes;
# 5. read prediction intervals from the sampled chain and check their coverage.
#
# **Prerequisites.** Notebooks 01-04 (the schedule, $q(z_t \mid y)$, the posterior step, NoProp-DT).
#
# **Run time:** under a minute on a 2-core CPU with the shipped forecaster (`NPLIB_RETRAIN=1`
# retrains everything: about 9 minutes more).

# %% [markdown]
# ## 0. Setup

# %%
import sys

if "google.colab" in sys.modules:  # on Colab, install the course package first
    get_ipython().run_line_magic("pip", "install -q 'nplib[colab] @ git+https://github.com/nplib/noprop-course'")
import json
import time
from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np
import torch

import nplib
from nplib import pretrained, reference
from nplib import timeseries as ts
from nplib.diffusion import q_sample
from nplib.notebook import setup

S = setup(seed=0)          # prints device, hardware, data root, full/quick mode
SMOKE = S.smoke            # quick mode: strided window subsets, 1 epoch
DEVICE = S.device          # models, data and random generators live here (CUDA when available)
T_START = time.perf_counter()
print(f"torch threads: {torch.get_num_threads()}")
LOOKBACK = 336             # the lookback of the published DLinear numbers

# %% [markdown]
# ## 1. Data and protocol
#
# ETTh1 (Electricity Transformer Temperature, hourly) has 7 variables: six load features
# (HUFL ... LULL) and the oil temperature **OT**. `nplib.timeseries.load_ett` reads
# `<data root>/ETT/ETTh1.csv`, downloading it on first use and checking its md5.
#
# The standard protocol (used by Informer, Autoformer, DLinear, PatchTST...):
#
# * **train** = the first 12 months (8,640 h), **validation** = the next 4 (2,880 h),
#   **test** = the next 4 (2,880 h); the last ~4 months of the file are not used;
# * the validation and test windows start `lookback` hours before their boundary (hatched below),
#   so the first forecast starts exactly at the boundary: those past hours are *inputs*, never targets;
# * each variable is standardised with the mean and standard deviation of the **training part only**;
# * metrics (MSE, MAE) are computed on the standardised test set.
#
# Two classic leaks (trap 9 in `docs/pitfalls.md`) are fitting the scaler on the whole file (the test
# period's level then leaks into the inputs) and a test set that is secretly a copy of part of the
# training set. `tests/test_timeseries.py` checks both; here we look at the split.
#
# `ForecastData.to(DEVICE)` puts the standardised series and the window starts on the device, so
# every batch below is cut out on the device (the plots move their few numbers back with `.cpu()`).

# %%
ett = ts.load_ett("ETTh1")
print(f"{ett.name}: {len(ett)} rows, {ett.dates[0]} .. {ett.dates[-1]}, variables {', '.join(ett.columns)}")
data96 = ts.prepare_forecast_data("ETTh1", LOOKBACK, 96, "multivariate").to(DEVICE)
print(data96.summary())
b = data96.borders
assert b["train"] == (0, 8640) and b["test"][1] == 14400
assert data96.train.target_rows()[1] <= 8640 <= data96.val.target_rows()[0]
assert data96.test.target_rows()[0] == 11520
ts.plot_protocol(ett, LOOKBACK)
plt.title("ETTh1: training (green), validation (orange), test (red); hatched = lookback inputs before a boundary")
plt.show()

# %% [markdown]
# The scaler's statistics come from rows 0-8,639 only, so on the training part every variable has
# mean 0 and standard deviation 1, and on the later parts it need not. ETTh1 drifts: the oil
# temperature's test-period mean lies more than one training standard deviation below its training
# mean, and the spread of several variables changes. A model fitted to the training period meets a
# somewhat different distribution at test time (this matters for the intervals of section 5).

# %%
z_all = data96.scaler.transform(ett.values[:14400])
print(" " * 22 + "".join(f"{c:>7s}" for c in ett.columns))
for k, (lo, hi) in (("train", (0, 8640)), ("val", (8640, 11520)), ("test", (11520, 14400))):
    print(f"{k:5s} standardised mean " + "".join(f"{v:7.2f}" for v in z_all[lo:hi].mean(0)))
    print(f"{k:5s} standardised std  " + "".join(f"{v:7.2f}" for v in z_all[lo:hi].std(0)))
assert abs(z_all[11520:14400, -1].mean()) > 1.0  # OT's shift

# %% [markdown]
# One window: the past (`lookback` = 336 h = two weeks) and the future to forecast (96 h = 4 days).
# Every learned model here is **channel-independent**: one network maps the past of *one* variable
# to its future and is shared by the 7 variables (DLinear's default), so "multivariate" (7 -> 7)
# gives 7 examples per window and "univariate" forecasts OT from OT.

# %%
i = 0
x0, y0 = data96.test.x(torch.tensor([i]))[0].cpu(), data96.test.y(torch.tensor([i]))[0].cpu()
print("x:", tuple(x0.shape), " y:", tuple(y0.shape), " (hours, variables)")
fig, ax = plt.subplots(figsize=(10, 2.6))
ax.plot(np.arange(-LOOKBACK, 0), x0[:, -1].numpy(), "k", lw=0.8, label="past OT (input)")
ax.plot(np.arange(96), y0[:, -1].numpy(), "k--", lw=1.2, label="future OT (target)")
ax.axvline(0, color="grey", lw=0.5)
ax.set_xlabel("hours from the first test forecast (2017-10-24 00:00)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2. The model
#
# **The label embedding is an autoencoder of futures.** `FutureAutoencoder` is linear:
# $E$ = Linear(H -> d) followed by a BatchNorm without learned scale, $D$ = Linear(d -> H), with the
# latent size $d$ = `cfg.d` (64, printed below): a learned PCA of the future windows. Why linear:
# with a linear decoder, decoding commutes with averaging, $D(\mathbb E[u \mid x]) = \mathbb E[D(u) \mid x]$,
# so blocks that predict the conditional mean latent give the mean forecast, which is what MSE
# rewards. (An MLP autoencoder, `ae_hidden > 0`, is available; during development it gave a slightly
# worse validation and test MSE.)
#
# **The blocks.** Block $t$ predicts the clean latent from the past $x$ and the noisy latent:
# $$\hat u_t(z_{t-1}, x) = \mathrm{Lin}(h^{lin}_x) + \mathrm{MLP}([h_x, h_z]),$$
# where the temporal encoder splits $x$ into a moving-average trend and a seasonal rest, maps each
# linearly to `cfg.hidden` = 64 features ($h^{lin}_x$) and then through a GELU layer ($h_x$), and the
# latent path is $h_z = \mathrm{GELU}(\mathrm{Lin}(z_{t-1}))$. The linear skip lets a block be at least a
# DLinear-style linear forecaster of the latent. The chain is NoProp-DT's (notebook 04):
# $$z_0 \sim \mathcal N(0, I),\quad z_t = a_t \hat u_t(z_{t-1}, x) + b_t z_{t-1} + \sqrt{c_t}\,\epsilon_t,
# \quad \hat y = D(z_T).$$
#
# **Local losses.** With $u_y = E(y)$ and $z_{t-1} \sim q(z_{t-1} \mid y)$ (a noised target, never
# block $t-1$'s output),
# $$L_t = \tfrac{T}{2}\,\eta\,(\mathrm{SNR}(t) - \mathrm{SNR}(t-1))\,\lVert \hat u_t(z_{t-1}, x) - u_y \rVert^2 .$$
#
# **Why the embedding can collapse, and what we do.** In classification with a learned
# $W_{embed}$, the block losses pull the class embeddings together: if $u_y$ is the same for every
# $y$, every $L_t$ is zero. A learned *autoencoder* embedding has the same trap ($E(y) =$ const),
# and the paper's remedy is an extra anchor term. Our choice, in three parts:
#
# 1. **train the autoencoder first, alone**, by reconstruction through the *noised* latent,
#    $\lVert D(z_T) - y\rVert^2$ with $z_T \sim q(z_T \mid y)$: the analogue of the paper's
#    classifier trained on noised labels, and it makes $D$ robust to the noise left at $t = T$;
# 2. **normalise the latent** (BatchNorm without learned scale): each latent dimension has unit
#    variance over the training futures, the scale of the prior $\mathcal N(0, I)$, so the latent can
#    neither shrink to a point nor grow until the noise of the schedule stops mattering;
# 3. **freeze $E$** while the blocks train and use `E(y).detach()` as fixed targets; the decoder keeps
#    training on noised latents (a shared parameter, like the paper's classifier). The KL term is
#    then a constant and is dropped.
#
# Exercise 2 removes the guard and watches the latent collapse.

# %%
cfg = ts.ForecastConfig()
print(cfg)
model = ts.NoPropForecaster.from_config(LOOKBACK, 96, cfg).to(DEVICE)
print("model.config():", model.config())
n_block = sum(p.numel() for p in model.blocks[0].parameters())
n_ae = sum(p.numel() for p in model.autoencoder.parameters())
print(f"latent size d = {cfg.d}; one block: {n_block:,} parameters; {cfg.T} blocks: {cfg.T * n_block:,}; "
      f"autoencoder: {n_ae:,}")
sched = model.schedule
print("loss weights SNR(t) - SNR(t-1):", np.round(sched.snr_delta.numpy(), 3))
assert (sched.snr_delta > 0).all() and (sched.alpha_bar[1:] > sched.alpha_bar[:-1]).all()

# %% [markdown]
# No gradient crosses blocks: block $t$'s loss reaches only block $t$'s parameters (and never the
# encoder, whose output is detached). `ts.pair_batch(windows, pairs)` cuts out the (window,
# variable) pairs numbered `pairs` (pair $p$ = window $p \,//\, 7$, variable $p \bmod 7$).

# %%
x_b, y_b = ts.pair_batch(data96.train, torch.arange(64))
u_y = model.autoencoder.encode(y_b)
for t in (1, cfg.T):
    model.zero_grad(set_to_none=True)
    model.block_loss(t, x_b, u_y).backward()
    touched = [s for s, blk in enumerate(model.blocks, 1) if any(p.grad is not None for p in blk.parameters())]
    enc = any(p.grad is not None for p in model.autoencoder.parameters())
    print(f"loss of block {t:2d} -> gradients in blocks {touched}, in the autoencoder: {enc}")
    assert touched == [t] and not enc
model.zero_grad(set_to_none=True)

# %% [markdown]
# ## 3. Training (multivariate, horizon 96), or loading the shipped checkpoint
#
# `run_experiment` evaluates, on the same test windows: the naive forecasts, the DLinear-style
# baseline, the same network trained end to end with backprop, and the NoProp autoencoder (stage 1:
# the autoencoder; stage 2: each minibatch updates block 1, then block 2, ... then the decoder).
# Each learned model keeps the epoch with the best **validation** MSE. An epoch is 20,000 random
# (window, variable) pairs.
#
# The NoProp forecaster is the slow one to train (about 45 s of the 80 s this setting took in the
# reference run on 2 cores), so the course ships it: `pretrained.load_or_train("nb07_forecaster",
# model, train_noprop)` checks the shipped file (its SHA-256 and `model.config()`) and loads it. It
# was made by the command line with this notebook's configuration and seed,
# `python -m nplib forecast --dataset ETTh1 --horizon 96 --lookback 336 --mode multivariate --save-checkpoint nb07_forecaster`
# (printed below with the hardware), and its manifest keeps the training history and the test
# metrics it reproduces. The two baselines train here (19 s in the reference run on 2 cores).
#
# **To train the forecaster yourself**, set `NPLIB_RETRAIN=nb07_forecaster` (or `NPLIB_RETRAIN=1`
# for every model of the course) before starting the notebook; on Colab, run
# `import os; os.environ["NPLIB_RETRAIN"] = "1"` before the setup cell. `train_noprop` below then
# trains exactly as the command did (`fit_noprop` seeds with `cfg.seed` and builds the model itself).
# Quick mode always trains (on the strided quick-mode windows, one epoch per stage).

# %%
CFG_RUN = ts.smoke_config(cfg) if SMOKE else cfg   # what run_experiment uses in this mode
noprop_info = None


def train_noprop():
    """Train `model` as `python -m nplib forecast ... --save-checkpoint nb07_forecaster` does; return its history."""
    global noprop_info
    _, noprop_info = ts.fit_noprop(data96, CFG_RUN, into=model)
    return noprop_info["history"]


history, source = pretrained.load_or_train("nb07_forecaster", model, train_noprop, device=DEVICE)
if source == "checkpoint":
    MANIFEST = pretrained.manifest("nb07_forecaster")
    noprop_info = {"history": history, "best_val_mse": MANIFEST["best_val_mse"]}
    hw = MANIFEST["hardware"]
    print(f"trained in {MANIFEST['train_seconds']:.0f} s on {hw.get('gpu') or str(hw['cpu_count']) + '-core CPU'} "
          f"(torch {hw['torch']}, {hw['torch_threads']} torch threads)")
res = ts.run_experiment("ETTh1", 96, LOOKBACK, "multivariate", cfg, data=data96, keep_bands=400,
                        trained={"noprop": (model, noprop_info)})
results = {("multivariate", 96): res}
print(ts.format_table(res))


def row_of(result, name):
    """The row of `result` whose model name starts with `name`."""
    return [r for r in result["rows"] if r["model"].startswith(name)][0]


# %% [markdown]
# A shipped checkpoint should give back the numbers recorded when it was made. The deterministic
# chain ($z_0 = 0$, no noise) has no randomness, so its test MSE must come back exactly; the mean of
# 40 chain samples uses a generator seeded with `cfg.seed`, so on a CPU it also comes back exactly
# (on a GPU the random numbers differ, and the value must lie within a few standard errors, which
# the manifest records over 5 seeds).

# %%
det_row, mean_row = row_of(res, "NoProp AE, deterministic"), row_of(res, "NoProp AE, mean")
if source == "checkpoint":
    tm = MANIFEST["test_metric"]
    st = tm["stochastic"]
    print(f"test MSE, deterministic chain: recorded {tm['deterministic']['mse']:.6f}, now {det_row['mse']:.6f}")
    print(f"test MSE, mean of {st['samples']} samples (seed {st['seed']}): recorded {st['mse']:.6f}, "
          f"now {mean_row['mse']:.6f}; over seeds {[r['seed'] for r in st['runs']]}: "
          f"{st['mse_mean']:.5f} +- {st['mse_se']:.5f}")
    if DEVICE.type == "cpu":
        assert abs(det_row["mse"] - tm["deterministic"]["mse"]) <= 1e-5 * tm["deterministic"]["mse"]
        assert abs(mean_row["mse"] - st["mse"]) <= 1e-5 * st["mse"]
    else:
        assert abs(det_row["mse"] - tm["deterministic"]["mse"]) <= 1e-3 * tm["deterministic"]["mse"]
        assert abs(mean_row["mse"] - st["mse_mean"]) <= 5 * st["mse_se"] + 1e-3 * st["mse"]
else:
    print(f"trained here ({source}): deterministic chain {det_row['mse']:.4f}, mean of samples {mean_row['mse']:.4f}")

# %% [markdown]
# The training curves: the local loss of every block per epoch (from the manifest when the model was
# loaded), and the validation MSE per epoch of the three learned models.

# %%
hist = [h for h in res["training"]["noprop"]["history"] if h["stage"] == "blocks"]
per_block = np.array([h["per_block"] for h in hist])
fig, axs = plt.subplots(1, 2, figsize=(10, 3))
for e, row in enumerate(per_block, 1):
    axs[0].semilogy(range(1, cfg.T + 1), row, "o-", label=f"epoch {e}")
axs[0].set_xlabel("block t"); axs[0].set_ylabel("L_t (weighted)"); axs[0].legend(fontsize=7)
axs[0].set_title("local losses per block")
for name in ("dlinear", "backprop", "noprop"):
    v = [h["val_mse"] for h in res["training"][name]["history"] if "val_mse" in h]
    axs[1].plot(range(1, len(v) + 1), v, "o-", label=name)
axs[1].set_xlabel("epoch"); axs[1].set_ylabel("validation MSE"); axs[1].legend(fontsize=8)
plt.tight_layout(); plt.show()
plt.show()

# %% [markdown]
# The weighted losses of the blocks differ by orders of magnitude because their weights
# $\mathrm{SNR}(t) - \mathrm{SNR}(t-1)$ do (printed in section 2; notebook 02 explains the schedule).
# Each block has its own optimiser, so the scale of its loss does not slow the others down.

# %% [markdown]
# ## 4. All horizons and both modes
#
# Same protocol, lookback 336, horizons 96, 192, 336, 720, multivariate (7 -> 7) and univariate
# (OT -> OT). Every row of a table is measured on exactly the same test windows.
#
# Training 3 models for each of the 7 other settings takes about 7 minutes on 2 cores, so in full
# mode this section shows them from the **reference run** that ships with the package
# (`reference.load_result("forecast_notebook07_ETTh1_L336")`: a full run of this notebook, with its
# configuration, hardware and timings), and horizon 96 multivariate from section 3 of *this* run.
# To rerun them here, set `RERUN_ALL = True` below, or start the notebook with
# `NPLIB_RETRAIN=nb07_sweep` (or `NPLIB_RETRAIN=1`). Quick mode reruns one of them (multivariate,
# $H = 192$, the first one missing) on small data, so that this code runs, and takes the other six
# from the reference run.

# %%
REFERENCE = reference.load_result("forecast_notebook07_ETTh1_L336")
RERUN_ALL = pretrained.retrain_requested("nb07_sweep")   # set to True to rerun the 7 settings here
rerun_one = SMOKE and not RERUN_ALL                      # quick mode: the first missing setting only
assert asdict(cfg) == REFERENCE["config"], "the reference run used another ForecastConfig"
ref_hw = REFERENCE["hardware"]
print(f"reference run: {REFERENCE['source']}; {ref_hw['cpu_count']}-core CPU, torch {ref_hw['torch']}")
from_reference = []
HORIZONS = ts.HORIZONS
for mode in ts.MODES:
    for H in HORIZONS:
        if (mode, H) in results:
            continue
        if RERUN_ALL or rerun_one:
            r = ts.run_experiment("ETTh1", H, LOOKBACK, mode, cfg, log=lambda s: None, device=DEVICE)
            print(ts.format_table(r), f"\n({r['seconds']['total']:.0f} s)\n")
            rerun_one = False
        else:
            r = [x for x in REFERENCE["results"] if (x["mode"], x["horizon"]) == (mode, H)][0]
            from_reference.append((mode, H))
        results[(mode, H)] = r
if from_reference:
    print(f"{len(from_reference)} settings from the reference run (they took "
          f"{sum(results[k]['seconds']['total'] for k in from_reference) / 60:.1f} min there); "
          "multivariate H=96 from this run")

# %%
SHORT = {"naive (last value)": "naive", "seasonal naive (24 h)": "seas.naive", "DLinear-style": "DLinear",
         "same network, backprop end to end": "backprop", "NoProp AE, deterministic chain": "NoProp det."}


def short(name):
    return SHORT.get(name, "NoProp mean" if "samples" in name else name)


def mse_of(mode, H, name):
    return row_of(results[(mode, H)], name)["mse"]


for mode in ts.MODES:
    print(f"ETTh1 {mode}, lookback {LOOKBACK}: test MSE / MAE (standardised)")
    names = [row["model"] for row in results[(mode, 96)]["rows"] if not row["model"].startswith(" ")]
    print(f"{'H':>4} " + " ".join(f"{short(n):>19s}" for n in names))
    for H in HORIZONS:
        rows = [row for row in results[(mode, H)]["rows"] if not row["model"].startswith(" ")]
        where = "  (reference run)" if (mode, H) in from_reference else ""
        print(f"{H:>4} " + " ".join(f"{r['mse']:9.4f} /{r['mae']:7.4f}  " for r in rows) + where)
    print()

NOPROP = "NoProp AE, mean"  # the point forecast: the mean of the sampled chain's decoded forecasts
print("test MSE ratios to the DLinear-style baseline (same run, same windows)")
print(f"{'mode':>12} {'H':>4} {'NoProp mean':>12} {'NoProp det.':>12} {'backprop':>9} {'naive':>7}")
for (mode, H) in sorted(results):
    dl = mse_of(mode, H, "DLinear")
    print(f"{mode:>12} {H:>4} {mse_of(mode, H, NOPROP) / dl:12.3f} {mse_of(mode, H, 'NoProp AE, det') / dl:12.3f} "
          f"{mse_of(mode, H, 'same network') / dl:9.3f} {mse_of(mode, H, 'naive') / dl:7.3f}")
ratio = mse_of("multivariate", 96, NOPROP) / mse_of("multivariate", 96, "DLinear")
print(f"\nmultivariate H=96 (this run): NoProp AE / DLinear-style MSE = {ratio:.3f}; "
      f"NoProp {mse_of('multivariate', 96, NOPROP):.4f} vs naive {mse_of('multivariate', 96, 'naive'):.4f}")
assert mse_of("multivariate", 96, NOPROP) < mse_of("multivariate", 96, "naive")
print("within 5 % of the DLinear-style baseline:", ratio <= 1.05)
if not SMOKE:
    assert ratio <= 1.10, ratio  # a regression guard; the 5 % target is printed above

# %% [markdown]
# The same numbers as a picture: test MSE against the horizon, one panel per mode (log scale: the
# naive forecast is far above the rest).

# %%
PLOT_MODELS = ("naive", "seasonal naive", "DLinear", "same network", "NoProp AE, det", NOPROP)
fig, axs = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
for ax, mode in zip(axs, ts.MODES):
    for name, style in zip(PLOT_MODELS, (":", ":", "-", "--", "-.", "-")):
        mses = [mse_of(mode, H, name) for H in HORIZONS]
        label = short(row_of(results[(mode, 96)], name)["model"])
        ax.plot(HORIZONS, mses, style, marker="o", ms=4, lw=2 if name == NOPROP else 1.2, label=label)
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xticks(HORIZONS); ax.set_xticklabels([str(H) for H in HORIZONS]); ax.minorticks_off()
    ax.set_xlabel("horizon H (hours)"); ax.set_title(f"ETTh1 {mode}, lookback {LOOKBACK}", fontsize=10)
axs[0].set_ylabel("test MSE (standardised)")
axs[1].legend(fontsize=8)
plt.tight_layout(); plt.show()
plt.show()

# %% [markdown]
# **For reference only, not measured here:** Zeng et al. (2023, "Are Transformers Effective for
# Time Series Forecasting?") report for DLinear on multivariate ETTh1 with lookback 336 a test MSE
# of **0.375** at horizon 96 (their Table 2). Our DLinear-style baseline is trained with our own
# loop (AdamW, 20,000 random pairs per epoch, few epochs, best validation epoch), so its numbers
# above are close to, not identical with, the published ones.
#
# The settings measured in this run go to `forecast_notebook07_ETTh1_L336.json` in the runs folder
# `S.runs` (the notebook writes nowhere else). To refresh the shipped reference file after a run with
# `RERUN_ALL`, copy it into `nplib/results/` (README, "Refreshing the results").

# %%
measured = [k for k in results if k not in from_reference]
out = {
    "source": "notebooks/07_timeseries_autoencoder (full run)" if not SMOKE else "notebook 07, quick mode",
    "config": asdict(cfg), "lookback": LOOKBACK, "hardware": S.hardware, "smoke": SMOKE,
    "noprop_h96_from_checkpoint": source == "checkpoint",
    "results": [ts.jsonable_result(results[k]) for k in measured],
}
path = S.runs / "forecast_notebook07_ETTh1_L336.json"
path.write_text(json.dumps(out, indent=2))
print(f"wrote {path.name} in the runs folder: {len(measured)} measured setting(s) "
      f"{', '.join(f'{m} H={H}' for m, H in measured)}")

# %% [markdown]
# ## 5. Beyond point forecasts: prediction intervals
#
# The chain is stochastic ($z_0$ and every $\epsilon_t$ are random). For **every** test window (2,785
# at horizon 96: `cfg.interval_stride` = 1) we run it `cfg.samples` = 40 times, decode each $z_T$, and
# add the decoder's residual noise (a Gaussian whose standard deviation per horizon step is that of
# $y - D(E(y))$ on training futures: the part of the future that the latent of `cfg.d` = 64 numbers
# cannot hold). The 10/90 % and 2.5/97.5 % quantiles of the samples are the 80 % and 95 % prediction
# intervals. A calibrated model covers the truth 80 % and 95 % of the time. (Only the widening
# factors further below are chosen on a subset: every 4th *validation* window,
# `cfg.calibration_stride` = 4.)

# %%
wide_row = row_of(res, "  same, intervals widened")
print(f"chain samples on {mean_row['windows']} of the {len(data96.test)} test windows "
      f"(interval_stride {cfg.interval_stride}), {cfg.samples} samples each; widening factors chosen on "
      f"{wide_row['calibration_windows']} of the {len(data96.val)} validation windows")
assert mean_row["windows"] == len(data96.test) or SMOKE
bands, band_idx = res["bands"], res["bands_test_index"]  # bands of test windows band_idx[j]
test = data96.test
fig, axs = plt.subplots(2, 2, figsize=(12, 6))
for ax, (j, c) in zip(axs.flat, [(0, 6), (100, 6), (200, 0), (399, 4)]):
    j = min(j, len(band_idx) - 1)
    i = int(band_idx[j])
    x_i = test.x(torch.tensor([i]))[0, :, c]
    y_i = test.y(torch.tensor([i]))[0, :, c]
    bi = {k: v[j, :, c] for k, v in bands.items()}
    with torch.no_grad():
        others = {"DLinear-style": res["models"]["dlinear"](x_i[None])[0]}
    ts.plot_forecast_bands(x_i[-168:], y_i, bi, others, ax=ax,
                           title=f"test window {i}, variable {data96.columns[c]}")
axs[0, 0].legend(fontsize=7, ncol=2)
plt.tight_layout(); plt.show()
plt.show()

# %%
print("test coverage (width) of the 80 % and 95 % intervals: raw chain | widened by k chosen on validation")
print(f"{'mode':>12} {'H':>4} {'raw 80%':>15} {'raw 95%':>15} | {'k80':>5} {'k95':>5} {'wide 80%':>15} {'wide 95%':>15}")
cov_rows = []
for (mode, H), r in sorted(results.items()):
    raw, wide = [x for x in r["rows"] if "coverage" in x][:2]
    cov_rows.append([raw["coverage"]["80"], raw["coverage"]["95"], wide["coverage"]["80"], wide["coverage"]["95"]])
    print(f"{mode:>12} {H:>4} " + " ".join(f"{100 * x['coverage'][lv]:6.1f}% ({x['width'][lv]:5.2f})"
                                          for x, lv in ((raw, "80"), (raw, "95")))
          + f" | {wide['scale']['80']:5.2f} {wide['scale']['95']:5.2f} "
          + " ".join(f"{100 * wide['coverage'][lv]:6.1f}% ({wide['width'][lv]:5.2f})" for lv in ("80", "95"))
          + ("  (reference run)" if (mode, H) in from_reference else ""))
cov = np.array(cov_rows)
print(f"mean over the 8 settings: raw {100 * cov[:, 0].mean():.1f}% / {100 * cov[:, 1].mean():.1f}%, "
      f"widened {100 * cov[:, 2].mean():.1f}% / {100 * cov[:, 3].mean():.1f}%  (nominal 80% / 95%)")
assert (cov[:, 0] <= cov[:, 1]).all() and (cov[:, 2] <= cov[:, 3]).all() and (cov > 0.3).all()

# %% [markdown]
# Is the shortfall the model's or the data's? The same model's coverage on (every 20th) TRAINING
# window, and on (every 8th) validation and test window:

# %%
npm = res["models"]["noprop"]
for name, ws, step in (("train", data96.train, 20), ("val", data96.val, 8), ("test", data96.test, 8)):
    sub = ts.WindowSet(ws.series, ws.starts[::step], LOOKBACK, 96)
    iv = ts.evaluate_intervals(npm, sub, samples=cfg.samples, seed=1)
    print(f"{name:5s} ({len(sub):4d} windows): MSE {iv['mse']:.4f}  coverage 80% {100 * iv['coverage']['80']:5.1f}%  "
          f"95% {100 * iv['coverage']['95']:5.1f}%")

# %% [markdown]
# **Reading the coverage.** (Numbers above, full run.) The raw intervals of the chain cover less than
# their nominal level, and they do so even on the *training* windows the model was fitted to, so
# the main cause is the model, not only the drift of the test period:
#
# * each block is trained to predict the conditional **mean** of the clean latent; with only
#   T = 10 steps, the stochastic chain built from such blocks spreads its samples less than the
#   futures really spread (a coarse, under-dispersed sampler);
# * the 2.5 % and 97.5 % quantiles are estimated from `cfg.samples` = 40 samples, which on average
#   places them inside the true ones (exercise 3 measures how coverage grows with the sample count);
# * on top of that, ETTh1's later months differ from the training months (section 1).
#
# The second set of columns widens each interval around the sample mean by one factor $k$ per level,
# chosen so that the intervals cover exactly 80 % / 95 % of the **validation** futures
# (split-conformal calibration; the test set is not used). How close the widened test coverage
# comes to nominal depends on how similar the validation and test periods are: for ETTh1 the
# validation months are the harder ones (every model's validation MSE is above its test MSE,
# section 3), which pushes $k$ up.
#
# In the full run, the widened 95 % intervals come within 3.5 points of nominal in 7 of the 8
# settings, while the widened 80 % intervals over-cover by 3-11 points (the harder validation months
# set $k$). The exception is univariate OT at horizon 720: there the forecasts themselves are off
# (every learned model is worse than the naive forecast, section 4), and no width factor learned
# on another period repairs a biased centre.

# %%
print(f"notebook wall time: {(time.perf_counter() - T_START) / 60:.1f} min "
      f"({'quick' if SMOKE else 'full'} mode, NoProp H=96 {'loaded' if source == 'checkpoint' else 'trained'}, "
      f"{7 - len(from_reference)} of 7 settings rerun, {len(from_reference)} from the reference run; "
      f"{S.hardware['cpu_count']} cores, torch threads {torch.get_num_threads()})")

# %% [markdown]
# ### What the chain contributes: one block does the forecasting
#
# The forecaster above is trained as NoProp trains a classifier, but is the *chain* what forecasts?
# `nplib.lab.ablation.ablate` reads out every block on its own (block $t$ on the chain's $z_{t-1}$,
# decoded by $D$), runs block 1 alone on $z_0 = 0$, and replaces the latent the blocks receive by
# noise, zeros or another window's latent (deterministic chain, the test windows of horizon 96):

# %%
from nplib.lab.ablation import ablate, format_table as ablation_table

abl07 = ablate(model, data96.test, noise=False)
print(ablation_table(abl07, title="NoProp forecaster, ETTh1 multivariate H=96"))
mse_chain, mse_block1 = abl07["rows"]["chain"], abl07["rows"]["first_block_alone"]
print(f"block 1 alone: {mse_block1:.4f}; the whole chain: {mse_chain:.4f} "
      f"(the chain is {100 * (mse_chain / mse_block1 - 1):+.1f} % against block 1 alone)")

# %% [markdown]
# **Block 1 does the work.** Block 1 alone, fed $z_0 = 0$, forecasts as well as the whole chain
# (test MSE 0.3951 against 0.4026: the nine later blocks make it 1.9 % *worse*), while the last
# block alone is useless (1.04) and every replacement of the latent breaks the forecast. Why: every
# block sees the whole past window, and its loss asks it to output the future's latent $u_y$; block 1,
# whose input latent is almost pure noise ($\bar\alpha_0 = 10^{-4}$), therefore learns a complete
# forecaster from the past window alone, and the later blocks, trained on ever cleaner latents,
# learn to trust the latent they are given. The same happens on MNIST (notebook 04, section 6).
# So this notebook's model is a NoProp-*trained* autoencoder forecaster, not a forecaster whose
# chain refines a forecast step by step. Making the chain matter (a past-window encoding the first
# blocks cannot use alone, or a schedule whose first blocks see more signal) is an open exercise of
# this course.

# %% [markdown]
# ## 6. Summary
#
# * NoProp can train a forecaster: the "label" is a learned latent of the future window, each block
#   denoises it given the past, and no gradient crosses blocks. **But one block does the forecasting**:
#   block 1 alone is as good as the chain (section 5, the ablation), so the chain itself adds nothing.
# * A learned embedding must be anchored; here the autoencoder is trained first by reconstruction,
#   normalised to the prior's scale and frozen (exercise 2 shows what happens without the anchor).
# * Multivariate ETTh1 (7 -> 7, 7 training examples per window): the NoProp autoencoder's mean
#   forecast is within 4 % of the DLinear-style baseline's MSE at horizon 96 and 6-21 % above it at
#   the longer horizons, about as far as the *same network trained end to end with backprop*; all
#   are far better than the naive and seasonal-naive forecasts. The gap to DLinear is the network's
#   and the short training budget's, not NoProp's.
# * Univariate OT (one series, 7 times fewer training examples, and the most shifted variable of
#   section 1): the NoProp autoencoder is 21-50 % worse than DLinear and not better than the naive
#   forecast (worse at horizons 96, 336 and 720, level at 192), while the backprop network stays
#   within 16 % of DLinear. We do not hide this:
#   with little data the sampled chain's extra variance and the frozen 64-number latent cost more.
# * Sampling the chain gives prediction intervals; raw, they under-cover (even on training
#   windows); widened by a factor chosen on the validation period they come close to nominal at 95 %
#   and over-cover at 80 %.
#
# ## Exercises
#
# **Exercise 1.** Weekly seasonality: complete `seasonal_naive_mse` (use `ts.seasonal_naive_forecast`
# and `ts.evaluate_point`) and compare the test MSE of a seasonal-naive forecast with a period of
# 168 h with the 24 h version on `data96`. The assert checks your 24 h value against the table of
# section 4.

# %% tags=["raises-exception"]
def seasonal_naive_mse(ws, period):
    """Test MSE of the seasonal-naive forecast with a period of `period` hours on the windows `ws`."""
    raise NotImplementedError("forecast with ts.seasonal_naive_forecast(ws.x(), ws.horizon, period), "
                              "score with ts.evaluate_point")


mse_24, mse_168 = seasonal_naive_mse(data96.test, 24), seasonal_naive_mse(data96.test, 168)
print(f"seasonal naive, 24 h: {mse_24:.4f}   168 h: {mse_168:.4f}")
assert abs(mse_24 - mse_of("multivariate", 96, "seasonal naive")) < 1e-6  # the 24 h row of section 4


# %% tags=["solution"]
def seasonal_naive_mse(ws, period):
    """Test MSE of the seasonal-naive forecast with a period of `period` hours on the windows `ws`."""
    return ts.evaluate_point(ts.seasonal_naive_forecast(ws.x(), ws.horizon, period), ws)["mse"]


mse_24, mse_168 = seasonal_naive_mse(data96.test, 24), seasonal_naive_mse(data96.test, 168)
print(f"seasonal naive, 24 h: {mse_24:.4f}   168 h: {mse_168:.4f}")
assert abs(mse_24 - mse_of("multivariate", 96, "seasonal naive")) < 1e-6  # the 24 h row of section 4

# %% [markdown]
# **Exercise 2.** Remove the guard against collapse: train a plain linear encoder
# Linear(96 -> `cfg.d` = 64) (no normalisation, no reconstruction loss) *together with* one block
# `ts.ForecastBlock(LOOKBACK, cfg.d, cfg.hidden)`, using only that block's denoising loss $L_t$ with
# the gradient flowing into the encoder. Complete the loop body of `train_without_guard`; the plot
# shows the loss and the latent's average norm as training goes on. What happens, and why would
# the forecasts be useless?

# %% tags=["raises-exception"]
COLLAPSE_STEPS = 301 if not SMOKE else 61


def train_without_guard(steps, t=cfg.T, seed=0):
    """Train Linear(96 -> cfg.d) and one ForecastBlock jointly on L_t alone; every 20 steps log
    (step, L_t, mean ||u_y||)."""
    torch.manual_seed(seed)
    enc = torch.nn.Linear(96, cfg.d).to(DEVICE)                     # no normalisation, not frozen
    blk = ts.ForecastBlock(LOOKBACK, cfg.d, cfg.hidden).to(DEVICE)
    opt = torch.optim.Adam(list(enc.parameters()) + list(blk.parameters()), lr=1e-3)
    w = float(sched.snr_delta[t - 1])                               # SNR(t) - SNR(t-1)
    log = []
    for step in range(steps):
        xb, yb = ts.pair_batch(data96.train, torch.randint(0, len(data96.train) * 7, (256,), device=DEVICE))
        raise NotImplementedError("u = enc(yb) (NOT detached); z_prev = q_sample(u, t - 1, sched); "
                                  "L_t = (T/2) eta w ||blk(xb, z_prev) - u||^2; one optimiser step; log")
    return log


def plot_collapse(log):
    steps_, losses_, norms_ = (np.array(v) for v in zip(*log))
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.semilogy(steps_, losses_, label="L_t")
    ax.semilogy(steps_, norms_, label="mean ||u_y||")
    ax.set_xlabel("step"); ax.legend(fontsize=8)
    plt.show()
    return norms_


norms_ = plot_collapse(train_without_guard(COLLAPSE_STEPS))
assert norms_[-1] < 0.75 * norms_[0], "the latent should shrink"

# %% tags=["solution"]
def train_without_guard(steps, t=cfg.T, seed=0):
    """Train Linear(96 -> cfg.d) and one ForecastBlock jointly on L_t alone; every 20 steps log
    (step, L_t, mean ||u_y||)."""
    torch.manual_seed(seed)
    enc = torch.nn.Linear(96, cfg.d).to(DEVICE)                     # no normalisation, not frozen
    blk = ts.ForecastBlock(LOOKBACK, cfg.d, cfg.hidden).to(DEVICE)
    opt = torch.optim.Adam(list(enc.parameters()) + list(blk.parameters()), lr=1e-3)
    w = float(sched.snr_delta[t - 1])                               # SNR(t) - SNR(t-1)
    log = []
    for step in range(steps):
        xb, yb = ts.pair_batch(data96.train, torch.randint(0, len(data96.train) * 7, (256,), device=DEVICE))
        u = enc(yb)                                                 # NOT detached, NOT normalised
        # z_{t-1} ~ q(z_{t-1} | y)
        z_prev = q_sample(u, t - 1, sched)
        # L_t = (T/2) eta (SNR(t) - SNR(t-1)) ||u_hat_t(z_{t-1}, x) - u_y||^2
        loss = (cfg.T / 2) * cfg.eta * w * (blk(xb, z_prev) - u).pow(2).sum(1).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        if step % 20 == 0:
            log.append((step, loss.item(), u.norm(dim=1).mean().item()))
            if step % 100 == 0:
                print(f"step {step:3d}: loss {loss.item():9.5f}   mean ||u_y|| {log[-1][2]:.4f}")
    return log


norms_ = plot_collapse(train_without_guard(COLLAPSE_STEPS))
assert norms_[-1] < 0.75 * norms_[0], "the latent should shrink"
# The loss falls largely because ||u_y|| shrinks, and it keeps shrinking: nothing stops the
# encoder from moving every future to the same point, which is trivially predictable and carries
# no information about the future, so no decoder could recover the forecast from it.
plt.show()

# %% [markdown]
# **Exercise 3.** Quantiles from few samples: on 100 test windows (horizon 96, multivariate), compute
# the raw 95 % coverage with 10, 40 and 200 chain samples (`SAMPLE_COUNTS`). Why does it grow with
# the number of samples? Complete `coverage_with` (hint: `ts.evaluate_intervals(npm, windows,
# samples=n, seed=2)` returns the coverage).

# %% tags=["raises-exception"]
FEW = ts.WindowSet(data96.test.series, data96.test.starts[:: max(1, len(data96.test) // 100)], LOOKBACK, 96)
SAMPLE_COUNTS = (10, 40, 200) if not SMOKE else (5, 20)


def coverage_with(n, windows=FEW):
    """Raw coverage {'80': ..., '95': ...} of the sampled chain with n samples per window."""
    raise NotImplementedError("call ts.evaluate_intervals(npm, windows, samples=n, seed=2)")


cov_by_n = [coverage_with(n) for n in SAMPLE_COUNTS]
for n, c in zip(SAMPLE_COUNTS, cov_by_n):
    print(f"S = {n:3d}: 80% coverage {100 * c['80']:.1f}%, 95% coverage {100 * c['95']:.1f}%")
assert cov_by_n[0]["95"] < cov_by_n[-1]["95"]


# %% tags=["solution"]
def coverage_with(n, windows=FEW):
    """Raw coverage {'80': ..., '95': ...} of the sampled chain with n samples per window."""
    return ts.evaluate_intervals(npm, windows, samples=n, seed=2)["coverage"]


cov_by_n = [coverage_with(n) for n in SAMPLE_COUNTS]
for n, c in zip(SAMPLE_COUNTS, cov_by_n):
    print(f"S = {n:3d}: 80% coverage {100 * c['80']:.1f}%, 95% coverage {100 * c['95']:.1f}%")
assert cov_by_n[0]["95"] < cov_by_n[-1]["95"]
# With S samples the empirical 2.5 % / 97.5 % quantiles sit, on average, inside the true ones (with
# S = 10 they are interpolated between the two most extreme samples), so small S under-covers.
