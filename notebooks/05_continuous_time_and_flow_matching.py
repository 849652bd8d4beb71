# %% [markdown]
# # 05 · Continuous time and flow matching: NoProp-CT and NoProp-FM
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nplib/noprop-course/blob/main/student/05_continuous_time_and_flow_matching.ipynb) exercises (no solutions) · [solved version in Colab](https://colab.research.google.com/github/nplib/noprop-course/blob/main/notebooks/05_continuous_time_and_flow_matching.ipynb)
#
# NoProp-DT (notebook 04) trains $T = 10$ separate blocks, one per step of a denoising chain. Let
# the number of steps grow without bound and the chain becomes a continuous-time process: **one**
# network $\hat u(z_t, x, t)$ that takes the time $t \in [0, 1]$ as an input. That is NoProp-CT.
# Its deterministic cousin, NoProp-FM, replaces the diffusion by **flow matching**: the network
# learns a velocity field that carries noise in a straight line to the label embedding.
#
# **Learning goals.** After this notebook you can
# 1. derive the CT loss as the $T \to \infty$ limit of the DT loss, and the CT sampler as the DT
#    chain on a fine time grid;
# 2. build a **learned, monotone** noise schedule and explain why its derivative $\mathrm{SNR}'(t)$
#    puts almost all of the loss weight near the label end;
# 3. train NoProp-FM and integrate its field with Euler's method;
# 4. measure how accuracy depends on the number of inference steps (1000 down to 1), and compare
#    DT, CT and FM with the paper's table.
#
# **Prerequisites.** Notebooks 01 (the noise process on labels) and 04 (NoProp-DT). For section 4,
# the idea of an ordinary differential equation $dz/dt = v(z, t)$ and Euler's method.
#
# **Run time:** about 2 minutes on a 2-core CPU with the shipped checkpoints (`NPLIB_RETRAIN=1`
# retrains them: about 13 minutes more).
#
# **Honesty notes.** CT and FM are *one* network trained end to end with back-propagation
# *inside* it; "no back-propagation" refers to the absence of a forward chain through which
# gradients would flow. Inference runs the network once per step: 1000 steps are 1000 network
# calls (here made cheap by computing the image features once, section 1.3).

# %% [markdown]
# ## 0. Setup
#
# One cell: on Colab it installs the course package; everywhere it seeds the random number
# generators and prints the device, the hardware, the data root and the mode.

# %%
import sys

if "google.colab" in sys.modules:  # on Colab, install the course package first
    get_ipython().run_line_magic("pip", "install -q 'nplib[colab] @ git+https://github.com/nplib/noprop-course'")
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import nplib
from nplib.blocks import count_parameters
from nplib.continuous import (LearnedSchedule, build, ct_step_coefficients, euler_integrate, fm_path, fm_target)
from nplib.data import load_train_test
from nplib.notebook import check_near, setup
from nplib.schedules import DTSchedule, make_schedule
from nplib import pretrained, reference
from nplib.train import (accuracy, evaluate_runs, fit, hardware_info,
                         trained_models)

S = setup(seed=0)          # prints device, hardware, data root, full/quick mode
SMOKE = S.smoke            # quick mode: tiny data, 1 epoch
DEVICE = S.device
MODEL = "small"            # network widths: 'small' (CPU) or 'paper' (the paper's widths)
TRAIN_STEPS = 100          # sampler steps of the per-epoch evaluation while training (the CLI's --inference-steps)
PAPER_STEPS = 1000         # the paper's number of inference steps
EPOCHS = {"ct": 3, "fm": 3} if SMOKE else {"ct": 54, "fm": 12}   # epochs when (re)training
RUNS = 2 if SMOKE else 5   # stochastic inference runs for mean +- s.e. (the paper: 5)
train, test = load_train_test("mnist")
print(f"MNIST: {len(train)} training and {len(test)} test images")

# %% [markdown]
# ## 1. From the DT chain to its continuous limit
#
# ### 1.1 The loss
#
# NoProp-DT with $T$ blocks minimises, besides the classifier and KL terms,
# $$\frac{T}{2}\,\eta\;\mathbb{E}_{t \sim U\{1..T\}}\Big[\big(\mathrm{SNR}(t) - \mathrm{SNR}(t-1)\big)\,
#   \big\|\hat u_t(z_{t-1}, x) - u_y\big\|^2\Big]
#   = \frac{\eta}{2} \sum_{t=1}^{T} \big(\mathrm{SNR}(t) - \mathrm{SNR}(t-1)\big)\,\big\|\hat u_t - u_y\big\|^2 .$$
# Put the $T$ steps on the grid $t_k = k/T$ of $[0, 1]$ and let $T \to \infty$: the sum of
# $\Delta\mathrm{SNR}\cdot f$ becomes the integral $\int_0^1 \mathrm{SNR}'(t)\, f(t)\, dt$, i.e.
# $$\frac{\eta}{2}\;\mathbb{E}_{t \sim U[0,1]}\Big[\mathrm{SNR}'(t)\,\big\|\hat u(z_t, x, t) - u_y\big\|^2\Big],
#   \qquad z_t \sim q(z_t \mid y) = \mathcal N\big(\sqrt{\bar\alpha(t)}\,u_y,\ (1-\bar\alpha(t)) I\big),$$
# the NoProp-CT denoising term (the paper's equation for NoProp-CT). The $T$ blocks have become one network that is
# told the time $t$. The other two terms stay: $-\log p(y \mid z_1)$ with $z_1 \sim q(z_1 \mid y)$,
# and $\mathrm{KL}(q(z_0 \mid y)\,\|\,\mathcal N(0, I))$.
#
# The check below takes the CT schedule of section 2 (before training) and compares the DT loss
# weights $T\,(\mathrm{SNR}(t_k) - \mathrm{SNR}(t_{k-1}))$ with $\mathrm{SNR}'$ at the middle of each
# step: the gap shrinks like $1/T^2$ (the midpoint rule).

# %%
schedule0 = LearnedSchedule()   # the initial schedule of every NoProp-CT model (our choice of ends: g0 = -3, g1 = +3)
for T in (10, 100, 1000):
    t_k = torch.linspace(0, 1, T + 1, dtype=torch.float64)
    with torch.no_grad():
        snr_k = schedule0.snr(t_k)
    # T (SNR(t_k) - SNR(t_{k-1}))  vs  SNR'((t_{k-1} + t_k) / 2)
    dt_weight = T * (snr_k[1:] - snr_k[:-1])
    _, dsnr_mid = schedule0.snr_derivative((t_k[1:] + t_k[:-1]) / 2, create_graph=False)
    rel = float(((dt_weight - dsnr_mid).abs() / dsnr_mid).max())
    print(f"T = {T:>4}: largest relative gap between T*dSNR and SNR'(t) = {rel:.2e}")
assert rel < 1e-4

# %% [markdown]
# ### 1.2 The sampler
#
# The DT chain steps with the posterior $q(z_t \mid z_{t-1}, y)$, $u_y$ replaced by the block's
# prediction. NoProp-CT does the same on the grid $t_k = k/N$ (the paper: $N = 1000$). For
# $s = t_{k-1}$, $t = t_k$ and $\alpha_s = \bar\alpha(s)/\bar\alpha(t)$:
# $$z_t = a\,\hat u(z_s, x, s) + b\,z_s + \sqrt{c}\,\epsilon,\quad
#   a = \frac{\sqrt{\bar\alpha(t)}\,(1-\alpha_s)}{1-\bar\alpha(s)},\
#   b = \frac{\sqrt{\alpha_s}\,(1-\bar\alpha(t))}{1-\bar\alpha(s)},\
#   c = \frac{(1-\bar\alpha(t))(1-\alpha_s)}{1-\bar\alpha(s)} .$$
# **Our sampler choice (the paper leaves it open):** the network is evaluated at the *start* $s$ of each
# step; stochastic: $z_0 \sim \mathcal N(0, I)$ and a fresh $\epsilon$ per step; noise-free:
# $z_0 = 0$, $\epsilon = 0$; the class is $\arg\max$ of the classifier on $z_1$. The coefficients are
# exactly those of a DT schedule whose $\bar\alpha_k$ is $\bar\alpha(k/N)$; the cell checks it against
# `DTSchedule` from notebook 01.

# %%
N = 10
co = ct_step_coefficients(schedule0, N)
with torch.no_grad():
    dt_equiv = DTSchedule.from_alpha_bar(schedule0.alpha_bar(co["t"]), kind="CT schedule on t_k = k/10")
for name in ("a", "b", "c"):
    assert torch.allclose(co[name], getattr(dt_equiv, name), rtol=1e-9), name
print("CT sampler coefficients on t_k = k/10 equal the DT chain's a_t, b_t, c_t for alpha_bar_k = alpha_bar(k/10)")
print(dt_equiv.table(digits=4))

# %% [markdown]
# ### 1.3 One network for every $t$
#
# The CT network (`nplib.continuous.ContinuousNet`, the paper's architecture) has three input paths and no
# batch norm: the image path of the DT block (unpadded convolutions, then FC + ReLU); the latent
# path FC + ReLU; and the time path, a **sinusoidal embedding** of $t$ (64 numbers,
# $\sin(1000\,t\,f_k)$ and $\cos(1000\,t\,f_k)$ with $f_k = 10000^{-k/32}$) followed by FC + ReLU. A
# head maps the concatenation to $m$ logits. CT turns them into $\hat u = \mathrm{softmax}(\cdot)\,W_{embed}$;
# FM uses them directly as a velocity $v = \text{logits}\; W_{embed}$. `MODEL = "small"` uses the widths of
# `BlockConfig.small()` (hidden 64); `"paper"` the paper's (hidden 256).

# %%
torch.manual_seed(S.seed)
ct_model = build("ct", MODEL, train.image_shape, train.num_classes, inference_steps=TRAIN_STEPS).to(DEVICE)
fm_model = build("fm", MODEL, train.image_shape, train.num_classes, inference_steps=TRAIN_STEPS).to(DEVICE)
net = ct_model.net
parts = {"image path": net.image_path, "z path": net.z_path, "time path": net.time_path,
         "head (concat -> FC -> FC -> FC(m))": torch.nn.ModuleList([net.fuse, net.head]),
         "classifier p(y|z_1)": ct_model.classifier, "learned schedule": ct_model.schedule}
for name, mod in parts.items():
    print(f"{name:>36}: {count_parameters(mod):>7,d} parameters")
print(f"{'NoProp-CT in all':>36}: {count_parameters(ct_model):>7,d}")
print(f"{'NoProp-FM in all':>36}: {count_parameters(fm_model):>7,d} (same network; no classifier, no schedule)")

# %% [markdown]
# **Why 1000 steps are affordable.** The image path depends on neither $z$ nor $t$. The sampler
# computes it once per batch, together with its share of the first head layer
# ($W[h_x; h_z; h_t] = W_x h_x + W_z h_z + W_t h_t$), and each step then costs one pass of a small MLP.
# The cell times 50 steps both ways on the same images and checks that the results agree.

# %%
x_time = test.x[:1000].to(DEVICE)
steps_time = 50
ct_model.eval()
with torch.no_grad():
    t0 = time.perf_counter()
    logits_fast = ct_model.sample(x_time, noise=False, steps=steps_time)
    fast = time.perf_counter() - t0
    # the naive sampler: the whole network, CNN included, at every step
    co50 = ct_step_coefficients(ct_model.schedule, steps_time)
    t0 = time.perf_counter()
    z = torch.zeros(len(x_time), ct_model.d, device=DEVICE)
    for k in range(1, steps_time + 1):
        u_hat, _ = ct_model.u_hat(x_time, z, float(co50["t"][k - 1]))
        z = float(co50["a"][k - 1]) * u_hat + float(co50["b"][k - 1]) * z
    logits_naive = ct_model.classifier(z)
    naive = time.perf_counter() - t0
assert torch.allclose(logits_fast, logits_naive, atol=1e-4)
print(f"{steps_time} steps on {len(x_time)} images: image features once {fast:.2f} s, "
      f"whole network every step {naive:.2f} s ({naive / fast:.0f}x slower); same logits")

# %% [markdown]
# ## 2. The learned schedule
#
# NoProp-CT learns its noise schedule together with the network:
# $$\mathrm{SNR}(t) = e^{-\gamma(t)},\quad \bar\alpha(t) = \mathrm{sigmoid}(-\gamma(t)),\quad
#   \gamma(t) = g_0 + (g_1 - g_0)\,(1 - \bar g(t)),\quad \bar g(t) = \frac{g(t) - g(0)}{g(1) - g(0)} .$$
# $\gamma$ must decrease (so that $\bar\alpha$ increases from noise at $t=0$ to label at $t=1$), for
# *any* parameter values the optimiser may visit. `LearnedSchedule` guarantees it by construction:
# $g(t) = w_1 t + \sum_j w_{2j}\,\mathrm{sigmoid}(w_{3j} t + b_j)$ with every $w = \mathrm{softplus}(\cdot) > 0$,
# and $g_1 = g_0 + \mathrm{softplus}(\cdot) > g_0$. `tests/test_continuous.py` checks monotonicity for
# random parameters, and $\mathrm{SNR}'(t)$ (computed by autograd, with `create_graph=True` so that the
# loss also trains the schedule) against a finite difference.
#
# **Our choices, where the paper leaves them open:** $g_0 = -3$, $g_1 = +3$ initially ($\bar\alpha$ from 0.047 to 0.953,
# SNR from 0.05 to 20), both learned (a public reimplementation starts from $(-7, +7)$, SNR from
# 0.0009 to 1097; the reason for ours is below, and Exercise 4 measures the difference); 16 sigmoid units; initialised close to a straight line in $\gamma$; Adam's weight decay
# is not applied to the schedule (it would pull $g_0, g_1$ towards 0); the $t$ of a minibatch are
# stratified, $t_i = (i + u)/B$, each still uniform on $[0, 1]$.
#
# Look at the loss weight $\mathrm{SNR}'(t)$ (right, log scale): it grows like $\mathrm{SNR}(t)$ and
# spans $e^{g_1 - g_0}$, here more than two orders of magnitude (six with $(-7, +7)$). In DT, each
# block had its **own** Adam, which rescales its gradients, so a block's weight mattered little.
# Here one Adam serves every $t$, and the denoising term is dominated by $t$ close to 1, where
# $z_t$ already shows the label, while the small-$t$ region, where only the image can tell the
# class, gets little signal. That is why we start from a narrower range than the public choice.
# The narrower range has a price too, at the other end: $\bar\alpha(1)$ starts at 0.953, not 0.999,
# so $z_1$ stays noisier. Exercise 4 measures both sides.

# %%
def schedule_curves(schedule, n=401):
    """alpha_bar, SNR and SNR' of ``schedule`` on n times (numpy arrays)."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    gamma, dsnr = schedule.snr_derivative(t, create_graph=False)
    gamma = gamma.detach()
    return {"t": t.numpy(), "alpha_bar": torch.sigmoid(-gamma).numpy(), "snr": torch.exp(-gamma).numpy(),
            "dsnr": dsnr.detach().numpy()}


def plot_schedules(curves: dict):
    """alpha_bar(t), SNR(t) and SNR'(t) of several schedules, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for label, c in curves.items():
        axes[0].plot(c["t"], c["alpha_bar"], label=label)
        axes[1].semilogy(c["t"], c["snr"], label=label)
        axes[2].semilogy(c["t"], c["dsnr"], label=label)
    for ax, title in zip(axes, [r"$\bar\alpha(t)$", r"SNR$(t)$", r"loss weight SNR$'(t)$"]):
        ax.set_xlabel("t  (0 = noise, 1 = label)")
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    return fig


curves = {"initial": schedule_curves(schedule0)}
dt_cos = make_schedule("cosine", 10)
plot_schedules(curves)
plt.show()
print(schedule0.table())
c0 = curves["initial"]
print(f"SNR'(t) from {c0['dsnr'].min():.2g} (t = 0) to {c0['dsnr'].max():.3g} (t = 1); "
      f"share of the weight in t > 0.8: {c0['dsnr'][c0['t'] > 0.8].sum() / c0['dsnr'].sum():.3f}")
print(f"(for comparison, the DT cosine schedule of notebook 04: block weights from "
      f"{float(dt_cos.snr_delta.min()):.3g} to {float(dt_cos.snr_delta.max()):.3g}, one Adam per block)")
plt.show()

# %% [markdown]
# ## 3. Training NoProp-CT
#
# The loss (`NoPropCT.loss_terms`) is the sum of three terms, each averaged over the minibatch:
# $-\log p(y \mid z_1)$ with $z_1 \sim q(z_1 \mid y)$, $\mathrm{KL}(q(z_0 \mid y)\,\|\,\mathcal N(0, I))$
# (with the learned $\bar\alpha(0)$), and $\tfrac{\eta}{2}\,\mathrm{SNR}'(t)\,\|\hat u(z_t, x, t) - u_y\|^2$
# with $\eta = 1$. One Adam (lr $10^{-3}$, weight decay $10^{-3}$) updates everything, one backward
# pass per minibatch. The model follows the same protocol as NoProp-DT, so `fit` and the command
# line train it unchanged. The course ships both trained models (`nplib/checkpoints/`), made by
#
# ```bash
# python -m nplib train --variant ct --model small --epochs 54 --inference-steps 100
# python -m nplib train --variant fm --model small --epochs 12 --inference-steps 100
# ```
#
# The cell below loads a shipped checkpoint (after checking its SHA-256 and the model's
# configuration) and plots the per-epoch history recorded when it was trained (loss, and accuracy
# on a training subset and on the test set); the per-epoch test accuracy there is one run of the
# stochastic sampler with `TRAIN_STEPS = 100` steps. To train the
# models yourself, set `NPLIB_RETRAIN=nb05_ct` (or `nb05_fm`, or `1` for every model) before
# starting the notebook; each then trains for `EPOCHS` epochs, as the commands above do. Quick mode
# always trains, on its small data.

# %%
def load_or_train(variant: str, model):
    """Load the shipped checkpoint nb05_<variant> (or train when asked to, and in quick mode)."""
    name = f"nb05_{variant}"

    def train_it():
        ckpt = S.runs / f"{name}_{MODEL}{'_smoke' if SMOKE else ''}.pt"
        return fit(model, train, test, EPOCHS[variant], seed=S.seed, checkpoint=ckpt, resume=not SMOKE, device=DEVICE)

    history, _ = pretrained.load_or_train(name, model, train_it, device=DEVICE)
    model.eval()
    plot_history(history, f"NoProp-{variant.upper()}, {MODEL} model: training history")
    plt.show()
    best = max(history, key=lambda r: r["test_acc"])
    print(f"{len(history)} epochs: last test accuracy {100 * history[-1]['test_acc']:.2f} %, best "
          f"{100 * best['test_acc']:.2f} % (epoch {best['epoch']}), one stochastic run with {TRAIN_STEPS} steps; "
          f"trained in {sum(r['seconds'] + r['eval_seconds'] for r in history) / 60:.1f} min (evaluation included)")
    return history


def plot_history(history, title):
    """Loss (left) and train / test accuracy (right) per epoch, from a history of ``fit``."""
    epochs = [r["epoch"] for r in history]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.2))
    ax0.plot(epochs, [r["loss"] for r in history], "o-", ms=3)
    ax0.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss (mean over the epoch)")
    ax1.plot(epochs, [100 * r["train_acc"] for r in history], "o-", ms=3, label="training subset")
    ax1.plot(epochs, [100 * r["test_acc"] for r in history], "s-", ms=3, label="test")
    ax1.set(xlabel="epoch", ylabel="accuracy (%)", title=f"accuracy (stochastic sampler, {TRAIN_STEPS} steps)")
    ax1.legend(fontsize=8)
    for ax in (ax0, ax1):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


ct_history = load_or_train("ct", ct_model)
# full mode: a working classifier; quick mode (3 short epochs): at least the loss went down
assert ct_history[-1]["test_acc"] > 0.9 if not SMOKE else ct_history[-1]["loss"] < ct_history[0]["loss"]
plt.show()

# %% [markdown]
# **The schedule after training.** Both ends $g_0, g_1$ and the shape are learned. The
# cross-entropy on $z_1$ pulls $\bar\alpha(1)$ up (a cleaner $z_1$ is easier to classify), the KL term
# pulls $\bar\alpha(0)$ down, and the denoising term, which grows with $\mathrm{SNR}(1)$, pulls
# $\bar\alpha(1)$ down.

# %%
curves["after training"] = schedule_curves(ct_model.schedule)
plot_schedules(curves)
plt.show()
print(ct_model.schedule.table())
with torch.no_grad():
    g0, g1 = float(ct_model.schedule.g0), float(ct_model.schedule.g1)
print(f"g0 = {g0:.3f} (alpha_bar(1) = {1 / (1 + math.exp(g0)):.5f}),  g1 = {g1:.3f} "
      f"(alpha_bar(0) = {1 / (1 + math.exp(g1)):.5f});  initial -3 and +3")
assert g0 < g1
plt.show()

# %% [markdown]
# **Where did the network learn to use the image?** Feed it a *noised label* $z_t \sim q(z_t \mid y)$
# at a fixed $t$ (as in training) and read off $\arg\max \hat u$. At $t = 0$, $z_t$ is pure noise
# and only the image can tell the class; near $t = 1$ the latent alone gives it away (dashed line:
# the accuracy of $\arg\max z_t$ itself). Because $\mathrm{SNR}'(t)$ is tiny at small $t$, the
# network gets little training signal exactly where the image matters most.

# %%
@torch.no_grad()
def ct_accuracy_vs_t(model, data, ts, seed=0, batch=2000):
    """Accuracy of argmax u_hat(z_t, x, t) and of argmax z_t, with z_t ~ q(z_t | y) (noised labels)."""
    g = torch.Generator().manual_seed(seed)
    hits_u, hits_z = np.zeros(len(ts)), np.zeros(len(ts))
    for i in range(0, len(data), batch):
        x, y = data.x[i:i + batch].to(DEVICE), data.y[i:i + batch].to(DEVICE)
        feat_x = model.net.image_features(x)       # once per batch
        u_y = model.embedding(y)
        for j, t in enumerate(ts):
            gamma = float(model.schedule.gamma(torch.tensor([t], dtype=torch.float64, device=DEVICE)))
            eps = torch.randn(u_y.shape, generator=g).to(DEVICE)
            # z_t = sqrt(alpha_bar(t)) u_y + sqrt(1 - alpha_bar(t)) eps
            z_t = math.sqrt(1 / (1 + math.exp(gamma))) * u_y + math.sqrt(1 / (1 + math.exp(-gamma))) * eps
            logits = model.net.logits_from_features(feat_x, z_t, model.net.time_features(t))
            hits_u[j] += int((logits.argmax(1) == y).sum())
            hits_z[j] += int((z_t.argmax(1) == y).sum())
    return hits_u / len(data), hits_z / len(data)


ts = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
ct_tf_u, ct_tf_z = ct_accuracy_vs_t(ct_model, test, ts)
for t, a, b in zip(ts, ct_tf_u, ct_tf_z):
    print(f"t = {t:.1f}: argmax u_hat {100 * a:6.2f} %   argmax z_t {100 * b:6.2f} %")

# %% [markdown]
# **The sampler at work.** The latent of four test images along the stochastic and the noise-free
# sampler (200 steps), one line per coordinate of $z_t \in \mathbb R^{10}$; the thick line is the
# coordinate of the predicted class.

# %%
def plot_trajectories(model, x, y, steps=200, seed=0, title=""):
    """z_t of each image in ``x`` along the stochastic (top) and the noise-free (bottom) sampler."""
    fig, axes = plt.subplots(2, len(x), figsize=(3.2 * len(x), 5.2), sharex=True)
    for row, noise in enumerate((True, False)):
        g = torch.Generator(DEVICE).manual_seed(seed)   # on the device of the model's tensors
        logits, traj = model.sample(x.to(DEVICE), noise=noise, generator=g, steps=steps, return_trajectory=True)
        pred = logits.argmax(1).cpu()
        t = traj["t"].cpu().numpy()
        for i in range(len(x)):
            ax = axes[row, i]
            z = traj["z"][:, i].cpu().numpy()
            for k in range(z.shape[1]):
                ax.plot(t, z[:, k], lw=2.5 if k == pred[i] else 0.7, color=f"C{k}")
            ax.set_title(f"{'stochastic' if noise else 'noise-free'}: pred {int(pred[i])} (true {int(y[i])})",
                         fontsize=9)
            ax.set_xlabel("t")
            ax.tick_params(labelbottom=True)   # sharex hides the top row's tick labels otherwise
        axes[row, 0].set_ylabel("coordinates of $z_t$")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


plot_trajectories(ct_model, test.x[:4], test.y[:4], title="NoProp-CT: z_t along the sampler")
plt.show()

# %% [markdown]
# ## 4. Flow matching: the deterministic cousin
#
# NoProp-FM keeps the network and drops the diffusion. Draw $z_0 \sim \mathcal N(0, I)$, set
# $z_1 = u_y$ and join them by a straight line:
# $$z_t = t\,z_1 + (1 - t)\,z_0,\qquad \frac{dz_t}{dt} = z_1 - z_0 .$$
# The network's velocity $v(z_t, x, t) = \text{logits}\;W_{embed}$ (no softmax) regresses that target:
# $\mathcal L = \|v(z_t, x, t) - (z_1 - z_0)\|^2$; no KL, no $\eta$, no schedule. At inference,
# Euler's method integrates $dz/dt = v$ from $t = 0$ to 1 in $N$ steps,
# $z_{k+1} = z_k + \tfrac1N v(z_k, x, t_k)$, and the class is the nearest class embedding of $z_1$.
# (With a learned $W_{embed}$ an anchor term $-\log p(y \mid \tilde z_1)$, $\tilde z_1 = z_t + (1-t)v$,
# keeps the embeddings apart; with one-hot embeddings, as here, it is not needed. Our choices where
# the paper leaves them open: no extra path noise, $\sigma = 0$; the noise-free sampler starts from $z_0 = 0$.)
#
# The path and the target, checked on three points:

# %%
z0_demo = torch.tensor([[0.5, -1.0, 0.2]])
z1_demo = torch.tensor([[0.0, 1.0, 0.0]])
for t in (0.0, 0.5, 1.0):
    print(f"t = {t:.1f}: z_t = {fm_path(z0_demo, z1_demo, torch.tensor([t]))[0].tolist()}")
print(f"target z_1 - z_0 = {fm_target(z0_demo, z1_demo)[0].tolist()}")
# Euler is exact for a constant field: one step lands on z_1
assert torch.allclose(euler_integrate(lambda z, t: fm_target(z0_demo, z1_demo), z0_demo, 1), z1_demo)

# %%
fm_history = load_or_train("fm", fm_model)
assert fm_history[-1]["test_acc"] > 0.95 if not SMOKE else fm_history[-1]["loss"] < fm_history[0]["loss"]
plt.show()

# %% [markdown]
# The same two views as for CT. For FM the "denoised" guess from a point of the path is
# $\tilde z_1 = z_t + (1 - t)\,v$ (where the straight line through $z_t$ with velocity $v$ lands).

# %%
@torch.no_grad()
def fm_accuracy_vs_t(model, data, ts, seed=0, batch=2000):
    """Accuracy of the nearest embedding of z_t + (1 - t) v, and of z_t, on the training path."""
    g = torch.Generator().manual_seed(seed)
    hits_v, hits_z = np.zeros(len(ts)), np.zeros(len(ts))
    for i in range(0, len(data), batch):
        x, y = data.x[i:i + batch].to(DEVICE), data.y[i:i + batch].to(DEVICE)
        feat_x = model.net.image_features(x)
        z_1 = model.embedding(y)
        for j, t in enumerate(ts):
            z_0 = torch.randn(z_1.shape, generator=g).to(DEVICE)
            z_t = fm_path(z_0, z_1, torch.full((len(y),), t, device=DEVICE))
            v = model.net.logits_from_features(feat_x, z_t, model.net.time_features(t)) @ model.W_embed
            hits_v[j] += int((model.class_logits(z_t + (1 - t) * v).argmax(1) == y).sum())
            hits_z[j] += int((model.class_logits(z_t).argmax(1) == y).sum())
    return hits_v / len(data), hits_z / len(data)


fm_tf_v, fm_tf_z = fm_accuracy_vs_t(fm_model, test, ts)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
axes[0].plot(ts, 100 * ct_tf_u, "o-", label=r"argmax $\hat u(z_t, x, t)$")
axes[0].plot(ts, 100 * ct_tf_z, "k--", label=r"argmax $z_t$ (label only)")
axes[0].set_title("NoProp-CT, z_t ~ q(z_t | y)")
axes[1].plot(ts, 100 * fm_tf_v, "o-", label=r"nearest of $z_t + (1-t)v$")
axes[1].plot(ts, 100 * fm_tf_z, "k--", label=r"nearest of $z_t$ (label only)")
axes[1].set_title("NoProp-FM, z_t on the straight path")
for ax in axes:
    ax.set_xlabel("t")
    ax.legend(fontsize=8)
axes[0].set_ylabel("test accuracy (%)")
fig.tight_layout()
plt.show()
for t, a, b in zip(ts, fm_tf_v, fm_tf_z):
    print(f"t = {t:.1f}: nearest of z_t + (1-t) v {100 * a:6.2f} %   nearest of z_t {100 * b:6.2f} %")
plt.show()

# %%
plot_trajectories(fm_model, test.x[:4], test.y[:4], title="NoProp-FM: z_t along Euler's method")
plt.show()

# %% [markdown]
# ## 5. Accuracy against the number of inference steps
#
# The paper integrates with 1000 steps. How many are needed? First the headline number at 1000
# steps: the stochastic sampler over `RUNS` seeded runs (mean ± standard error, as the paper
# reports) and the noise-free sampler. Then a sweep from 1000 down to a single step (one seeded
# stochastic run and the noise-free run at each). Everything on the full test set.

# %%
def with_steps(model, steps, fn):
    """Run ``fn()`` with ``model.inference_steps = steps``, then restore it."""
    old = model.inference_steps
    model.inference_steps = steps
    try:
        return fn()
    finally:
        model.inference_steps = old


final = {}
for variant, model in (("ct", ct_model), ("fm", fm_model)):
    t0 = time.perf_counter()
    final[variant] = with_steps(model, PAPER_STEPS, lambda: evaluate_runs(model, test, runs=RUNS, seed=S.seed,
                                                                          device=DEVICE))
    final[variant]["seconds"] = time.perf_counter() - t0
    f = final[variant]
    print(f"NoProp-{variant.upper()}, {PAPER_STEPS} steps: {100 * f['mean']:.2f} ± {100 * f['se']:.2f} % "
          f"(stochastic, {RUNS} runs), noise-free {100 * f['noise_free']:.2f} %")

# %%
STEP_LIST = [1, 2, 5, 10, 20, 50, 100, 200, 1000]
sweep = {}
for variant, model in (("ct", ct_model), ("fm", fm_model)):
    rows = []
    for steps in STEP_LIST:
        t0 = time.perf_counter()
        if steps == PAPER_STEPS:   # already measured above: reuse the first stochastic run
            acc_noise, acc_free = final[variant]["runs"][0], final[variant]["noise_free"]
        else:
            acc_noise = with_steps(model, steps, lambda: accuracy(model, test, noise=True, seed=S.seed + 1000,
                                                                  device=DEVICE))
            acc_free = with_steps(model, steps, lambda: accuracy(model, test, noise=False, device=DEVICE))
        rows.append({"steps": steps, "stochastic": acc_noise, "noise_free": acc_free,
                     "seconds": time.perf_counter() - t0})
    sweep[variant] = rows
print(f"{'steps':>6} | {'CT stochastic':>13} {'CT noise-free':>13} | {'FM stochastic':>13} {'FM noise-free':>13}")
for r_ct, r_fm in zip(sweep["ct"], sweep["fm"]):
    print(f"{r_ct['steps']:>6} | {100 * r_ct['stochastic']:>12.2f}% {100 * r_ct['noise_free']:>12.2f}% | "
          f"{100 * r_fm['stochastic']:>12.2f}% {100 * r_fm['noise_free']:>12.2f}%")

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for variant, c in (("ct", "C0"), ("fm", "C1")):
    s = [r["steps"] for r in sweep[variant]]
    ax.semilogx(s, [100 * r["stochastic"] for r in sweep[variant]], "o-", color=c,
                label=f"{variant.upper()} stochastic")
    ax.semilogx(s, [100 * r["noise_free"] for r in sweep[variant]], "s--", color=c,
                label=f"{variant.upper()} noise-free")
ax.set_xlabel("inference steps N")
ax.set_ylabel("test accuracy (%)")
ax.set_ylim(max(0, ax.get_ylim()[0]), 100)
ax.legend()
ax.set_title("MNIST test accuracy against the number of steps")
plt.show()
assert final["fm"]["noise_free"] > (0.97 if not SMOKE else 0.2)
plt.show()

# %% [markdown]
# Read the table with the time in mind: a step costs the same for CT and FM, and the image path is
# paid once whatever $N$ is. Flow matching's straight paths make few Euler steps sufficient; the
# CT sampler also reaches its plateau far below 1000 steps.

# %% [markdown]
# ## 6. DT, CT and FM side by side, and the paper's table
#
# The rows below are read from the result files that ship with nplib (`nplib/results/`, written by
# the course's full runs: notebook 04's `nb04_mnist.json`, the command line's
# `mnist_<variant>_<model>.json`), plus this notebook's own CT and FM evaluation with 1000 steps.
# The source column names the file. The paper's numbers are for the paper's network after 100
# epochs on a GPU, mean over 3 seeds $\times$ 5 inference runs (its Table 1).

# %%
PAPER_MNIST = {"dt": 99.47, "ct": 97.84, "fm": 99.21, "backprop": 99.46}   # one-hot, the paper's Table 1
rows = []
for name in reference.result_names():       # the result files that ship with nplib
    rep = reference.load_result(name)
    for rec in trained_models(rep):   # a python -m nplib train report, or notebook 04's two models
        if rec["dataset"] != "mnist" or (rec["embedding"] or "onehot") != "onehot" or rec["smoke"]:
            continue
        # older command-line reports did not keep the block size's name: show its channels
        size = rec["block"] or f"block {tuple(rec['model_config'].get('block', {}).get('channels', ()))}"
        acc = rec["test_accuracy"]
        rows.append((rec["variant"], name, f"{size}, {rec['epochs']} ep."
                     + (f", {rec['steps']} steps" if rec["steps"] else ""), acc["mean"], acc["se"], acc["noise_free"]))
for variant in ("ct", "fm"):
    rows.append((variant, "this notebook", f"{MODEL}, {len(ct_history if variant == 'ct' else fm_history)} ep., "
                 f"{PAPER_STEPS} steps", final[variant]["mean"], final[variant]["se"], final[variant]["noise_free"]))
order = {"backprop": 0, "dt": 1, "ct": 2, "fm": 3}
print(f"{'method':>10} {'paper':>7} | {'ours: stochastic':>17} {'noise-free':>10}  {'source':<28} configuration")
for variant in sorted(order, key=order.get):
    mine = [r for r in rows if r[0] == variant]
    if not mine:
        print(f"{variant.upper():>10} {PAPER_MNIST[variant]:>7.2f} | {'not run':>17} {'':>10}  "
              "(run notebook 04 or python -m nplib train --variant " + variant + ")")
    for r in mine:
        print(f"{variant.upper():>10} {PAPER_MNIST[variant]:>7.2f} | {100 * r[3]:>9.2f} ± {100 * r[4]:.2f} "
              f"{100 * r[5]:>10.2f}  {r[1]:<28} {r[2]}")

# %% [markdown]
# ## 7. Saving the measured numbers
#
# The sweep and the diagnostics of this run go to the runs directory, `runs/mnist_ct_<model>_nb05.json`
# and `runs/mnist_fm_<model>_nb05.json` (quick mode adds `_smoke`). The copies that ship with nplib
# (`nplib/results/`) are refreshed by hand after a full run (README, "Refreshing the results").

# %%
for variant, model, history in (("ct", ct_model, ct_history), ("fm", fm_model, fm_history)):
    result = {
        "notebook": "notebooks/05_continuous_time_and_flow_matching.ipynb",
        "command": "jupyter nbconvert --to notebook --execute --inplace "
                   "notebooks/05_continuous_time_and_flow_matching.ipynb",
        "mode": "quick" if SMOKE else "full", "hardware": hardware_info(),
        "config": {"dataset": "mnist", "train_size": len(train), "test_size": len(test), "model": model.config(),
                   "parameters": count_parameters(model), "epochs_run": len(history), "optimizer": "Adam",
                   "lr": 1e-3, "weight_decay": 1e-3, "batch_size": 128, "seed": S.seed, "inference_runs": RUNS},
        "history": history,
        "test_accuracy_1000_steps": {k: v for k, v in final[variant].items()},
        "steps_sweep": sweep[variant],
        "accuracy_vs_t": {"t": ts, "model": (ct_tf_u if variant == "ct" else fm_tf_v).tolist(),
                          "latent_only": (ct_tf_z if variant == "ct" else fm_tf_z).tolist()},
    }
    if variant == "ct":
        result["schedule_after_training"] = {"g0": g0, "g1": g1, "table": ct_model.schedule.table()}
    out = S.runs / f"mnist_{variant}_{MODEL}_nb05{'_smoke' if SMOKE else ''}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out.name} in the runs directory")

# %% [markdown]
# ## Summary
#
# * Letting the number of DT blocks go to infinity turns the weighted sum of block losses into
#   $\tfrac{\eta}{2}\mathbb E_t[\mathrm{SNR}'(t)\|\hat u - u_y\|^2]$ and the chain into a sampler on a
#   fine time grid; the $T$ blocks become one network that is told $t$.
# * NoProp-CT learns its schedule. Monotonicity is built in (positive weights), $\mathrm{SNR}'$ comes
#   from autograd. The weight $\mathrm{SNR}'(t)$ spans many orders of magnitude, and with a single
#   optimiser the training signal concentrates near $t = 1$, where the latent already shows the
#   label: the network learns to use the image late, which is one reason CT trails DT (also in the
#   paper).
# * NoProp-FM regresses the straight-line velocity $z_1 - z_0$; Euler's method needs few steps.
# * The image path is computed once per batch at inference, so 1000 steps cost 1000 small MLP
#   passes. Both models are one network trained end to end inside itself.
#
# ## Exercises
#
# **Exercise 1 (Heun's method).** Euler uses the slope at the start of a step. Heun averages it
# with the slope at the Euler end point: $\tilde z = z_k + h v(z_k, t_k)$,
# $z_{k+1} = z_k + \tfrac h2 [v(z_k, t_k) + v(\tilde z, t_{k+1})]$. Write `heun_predict` for the FM
# model (noise-free, $z_0 = 0$) and compare its accuracy with Euler's at 2, 4 and 10 *network calls*
# (Heun makes two calls per step, so it needs an even number).

# %% tags=["raises-exception"]
x_ex, y_ex = test.x[:2000].to(DEVICE), test.y[:2000].to(DEVICE)   # the images exercises 1 and 3 score


def heun_predict(model, x, steps):
    """Classes from Heun's method with ``steps`` steps (2 network calls per step), z_0 = 0."""
    raise NotImplementedError("use model.net.image_features once, then model.net.logits_from_features")


pred = heun_predict(fm_model, test.x[:10].to(DEVICE), 2)
assert pred.shape == (10,) and pred.dtype == torch.long   # then compare with Euler, as in the solution

# %% tags=["solution"]
@torch.no_grad()
def heun_predict(model, x, steps):
    """Classes from Heun's method with ``steps`` steps (2 network calls per step), z_0 = 0."""
    feat_x = model.net.image_features(x)

    def v(z, t):
        return model.net.logits_from_features(feat_x, z, model.net.time_features(t)) @ model.W_embed

    z, h = torch.zeros(len(x), model.d, device=x.device), 1.0 / steps
    for k in range(steps):
        v0 = v(z, k * h)
        v1 = v(z + h * v0, (k + 1) * h)
        # z_{k+1} = z_k + h/2 (v(z_k, t_k) + v(z~, t_{k+1}))
        z = z + 0.5 * h * (v0 + v1)
    return model.class_logits(z).argmax(1)


for calls in (2, 4, 10):
    acc_heun = float((heun_predict(fm_model, x_ex, calls // 2) == y_ex).float().mean())
    acc_euler = float((fm_model.predict(x_ex, noise=False, steps=calls) == y_ex).float().mean())
    print(f"{calls:>2} network calls: Euler {100 * acc_euler:.2f} %   Heun {100 * acc_heun:.2f} %")

# Why Heun loses at 2 calls: its one step evaluates v a second time at t = 1, at Euler's end point z~.
with torch.no_grad():
    feat_x = fm_model.net.image_features(x_ex)

    def v_fm(z, t):
        return fm_model.net.logits_from_features(feat_x, z, fm_model.net.time_features(t)) @ fm_model.W_embed

    v_start = v_fm(torch.zeros(len(x_ex), fm_model.d, device=DEVICE), 0.0)
    z_tilde = v_start                               # z~ = z_0 + 1 * v(z_0, 0), with z_0 = 0
    v_end = v_fm(z_tilde, 1.0)                      # Heun's second call
    dist = (z_tilde - fm_model.W_embed[y_ex]).norm(dim=1)
    heun_right = fm_model.class_logits(0.5 * (v_start + v_end)).argmax(1) == y_ex
    end_right = fm_model.class_logits(v_end).argmax(1) == y_ex
print(f"Euler's end point z~ lies a median {float(dist.median()):.2f} from u_y; the nearest class of "
      f"v(z~, t = 1) alone is right for {100 * float(end_right.float().mean()):.1f} % of the images")
for lo, hi in ((0.0, 0.25), (0.25, 0.5), (0.5, float("inf"))):
    sel = (dist >= lo) & (dist < hi)
    print(f"  ||z~ - u_y|| in [{lo}, {hi}): {int(sel.sum()):>4} images, Heun (2 calls) right for "
          f"{100 * float(heun_right[sel].float().mean()):.1f} %")

# %% [markdown] tags=["solution"]
# **Why Heun loses at 2 network calls.** With one step, Heun's second call asks for the velocity
# at $t = 1$ at Euler's end point $\tilde z$. In training the path at $t = 1$ is
# $z_1 = u_y$ exactly ($z_t = t\,u_y + (1-t)\,z_0$): at $t = 1$ the network has only ever seen the
# ten class embeddings, and $\tilde z$ misses them by a median 0.32. There its velocity is
# meaningless (the nearest class of $v(\tilde z, 1)$ alone is right for 10.9 % of the images,
# chance level), and Heun averages it in with weight 1/2. The split by distance shows it: where
# $\tilde z$ lands within 0.25 of $u_y$, Heun is right for 98.3 % of the images; between 0.25 and 0.5,
# 64.6 %; further away, 29.9 %. With two steps (4 calls) the second call at $t = 1$ starts from a
# point already close to the label, and Heun is back at Euler's level.

# %% [markdown]
# **Exercise 2 (only the ends of the schedule matter).** Substitute $s = \mathrm{SNR}(t)$:
# $\int_0^1 \mathrm{SNR}'(t)\, f(\mathrm{SNR}(t))\, dt = \int_{\mathrm{SNR}(0)}^{\mathrm{SNR}(1)} f(s)\, ds$.
# So for an error that depends on $t$ only through the SNR, the CT loss depends only on the two
# ends of the schedule, not on its shape. Check it numerically: take two random `LearnedSchedule`s
# with the same ends, $f(s) = 1/(1+s)^2$, and estimate $\mathbb E_{t \sim U[0,1]}[\mathrm{SNR}'(t) f(\mathrm{SNR}(t))]$
# with 200 000 values of $t$ for each.

# %% tags=["raises-exception"]
def loss_for_shape(seed):
    """E_t[SNR'(t) f(SNR(t))] for a LearnedSchedule whose shape parameters are randomised by ``seed``."""
    raise NotImplementedError("randomise raw_w1, raw_w2, raw_w3, b (not g0, raw_gap); use snr_derivative")


values = [loss_for_shape(seed) for seed in range(3)]
assert max(values) - min(values) < 1e-2 * max(values), values   # the same for every shape

# %% tags=["solution"]
def loss_for_shape(seed, n=200_000):
    """E_t[SNR'(t) f(SNR(t))] for a LearnedSchedule whose shape parameters are randomised by ``seed``."""
    sched = LearnedSchedule().double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (sched.raw_w1, sched.raw_w2, sched.raw_w3, sched.b):
            p.add_(2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    gamma, dsnr = sched.snr_derivative(t, create_graph=False)
    snr = torch.exp(-gamma.detach())
    return float((dsnr * (1 + snr) ** -2).mean())


with torch.no_grad():
    s0, s1 = float(schedule0.snr(torch.zeros(1))), float(schedule0.snr(torch.ones(1)))
exact = 1 / (1 + s0) - 1 / (1 + s1)   # int_{s0}^{s1} (1 + s)^-2 ds
for seed in (0, 1, 2):
    print(f"shape {seed}: {loss_for_shape(seed):.6f}   (exact integral over SNR: {exact:.6f})")

# %% [markdown]
# **Exercise 3 (which noise matters?).** The stochastic CT sampler has two sources of randomness:
# the start $z_0 \sim \mathcal N(0, I)$ and the $\sqrt{c}\,\epsilon$ added at each step. Write a sampler
# with a switch for each and measure the four combinations with 100 steps on 2000 test images.

# %% tags=["raises-exception"]
def ct_predict(model, x, steps, random_start, step_noise, seed=0):
    """Classes from the CT sampler with the start noise and the per-step noise switched separately."""
    raise NotImplementedError("use ct_step_coefficients(model.schedule, steps) and model.net's feature methods")


pred = ct_predict(ct_model, test.x[:10].to(DEVICE), 10, True, False)
assert pred.shape == (10,) and pred.dtype == torch.long

# %% tags=["solution"]
@torch.no_grad()
def ct_predict(model, x, steps, random_start, step_noise, seed=0):
    """Classes from the CT sampler with the start noise and the per-step noise switched separately."""
    g = torch.Generator().manual_seed(seed)
    co = ct_step_coefficients(model.schedule, steps)
    feat_x = model.net.image_features(x)
    z = torch.randn(len(x), model.d, generator=g).to(x.device) if random_start else \
        torch.zeros(len(x), model.d, device=x.device)
    for k in range(1, steps + 1):
        logits = model.net.logits_from_features(feat_x, z, model.net.time_features(float(co["t"][k - 1])))
        u_hat = F.softmax(logits, dim=1) @ model.W_embed
        # z_t = a u_hat + b z_s + sqrt(c) eps
        z = float(co["a"][k - 1]) * u_hat + float(co["b"][k - 1]) * z
        if step_noise:
            z = z + math.sqrt(float(co["c"][k - 1])) * torch.randn(z.shape, generator=g).to(x.device)
    return model.classifier(z).argmax(1)


for random_start in (False, True):
    for step_noise in (False, True):
        acc = float((ct_predict(ct_model, x_ex, 100, random_start, step_noise) == y_ex).float().mean())
        print(f"random z_0: {random_start!s:>5}, noise at each step: {step_noise!s:>5} -> {100 * acc:.2f} %")

# %% [markdown]
# **Exercise 4 (the ends of the schedule as training knobs).** Section 2 argued that with one
# optimiser the range of $\mathrm{SNR}'$ decides how much training signal reaches the small-$t$,
# image-driven region, and that range is $e^{g_1 - g_0}$. Train two NoProp-CT models for
# `EX_EPOCHS` epochs on `EX_TRAIN` training images, one from a public choice $(g_0, g_1) = (-7, +7)$
# and one from ours, and compare the accuracy of $\hat u$ at $t = 0$ (image only, with
# `ct_accuracy_vs_t`) and of both samplers (100 steps) on the test set.

# %% tags=["raises-exception"]
from nplib.continuous import NoPropCT

EX_TRAIN, EX_EPOCHS = (2000, 1) if SMOKE else (20_000, 2)   # the exercise's training budget


def train_ct_with_ends(g0, g1):
    """A NoProp-CT model with initial ends (g0, g1), trained for EX_EPOCHS epochs on EX_TRAIN images."""
    raise NotImplementedError("nplib.continuous.NoPropCT(..., g0=g0, g1=g1), then fit(...) on train.subset(EX_TRAIN)")


m_ex = train_ct_with_ends(-7.0, 7.0)
assert isinstance(m_ex, NoPropCT) and not m_ex.training

# %% tags=["solution"]
# NBVAL_IGNORE_OUTPUT
# (two trainings in this cell: their digits differ from CPU to CPU; the checks at the end test what the text reads)
def train_ct_with_ends(g0, g1):
    """A NoProp-CT model with initial ends (g0, g1), trained for EX_EPOCHS epochs on EX_TRAIN images."""
    torch.manual_seed(S.seed)
    model = NoPropCT(train.image_shape, train.num_classes, model=MODEL, g0=g0, g1=g1, inference_steps=100)
    fit(model, train.subset(EX_TRAIN, seed=S.seed), None, EX_EPOCHS, seed=S.seed, progress=False, log=None,
        train_eval_size=1000, device=DEVICE)
    return model.eval()


ours = (LearnedSchedule().g0_init, LearnedSchedule().g1_init)
ends_result = {}
for ends in ((-7.0, 7.0), ours):
    m_ex = train_ct_with_ends(*ends)
    acc_t0 = ct_accuracy_vs_t(m_ex, test, [0.0])[0][0]
    acc_free = accuracy(m_ex, test, noise=False, device=DEVICE)
    print(f"(g0, g1) = {ends}: argmax u_hat at t = 0 {100 * acc_t0:.2f} %, noise-free sampler "
          f"{100 * acc_free:.2f} %, stochastic "
          f"{100 * accuracy(m_ex, test, noise=True, seed=1, device=DEVICE):.2f} %")
    # Where does the stochastic sampler lose? The learned end of the schedule, a perfect chain's z_1,
    # and the two noise sources of exercise 3 switched separately (100 steps, the 2000 images x_ex).
    with torch.no_grad():
        g0_ex, g1_ex = float(m_ex.schedule.g0), float(m_ex.schedule.g1)
        ab1 = 1 / (1 + math.exp(g0_ex))                     # alpha_bar(1) = sigmoid(-g0)
        u_ex = m_ex.embedding(y_ex)
        eps = torch.randn(u_ex.shape, generator=torch.Generator().manual_seed(0)).to(DEVICE)
        # z_1 ~ q(z_1 | y) = N(sqrt(alpha_bar(1)) u_y, (1 - alpha_bar(1)) I): what a perfect chain would end at
        z1_q = math.sqrt(ab1) * u_ex + math.sqrt(1 - ab1) * eps
        acc_q = float((m_ex.classifier(z1_q).argmax(1) == y_ex).float().mean())
    acc_noise = {(rs, sn): float((ct_predict(m_ex, x_ex, 100, rs, sn) == y_ex).float().mean())
                 for rs in (False, True) for sn in (False, True)}
    print(f"    learned ends g0 = {g0_ex:.2f}, g1 = {g1_ex:.2f}: alpha_bar(1) = {ab1:.4f}, SNR(1) = {ab1 / (1 - ab1):.1f}; "
          f"classifier on z_1 ~ q(z_1|y): {100 * acc_q:.2f} %")
    print(f"    sampler: no noise {100 * acc_noise[False, False]:.2f} %, random z_0 only "
          f"{100 * acc_noise[True, False]:.2f} %, noise at each step only {100 * acc_noise[False, True]:.2f} %, "
          f"both {100 * acc_noise[True, True]:.2f} %")
    ends_result[ends] = {"t0": acc_t0, "free": acc_free, "ab1": ab1, "step_noise": acc_noise[False, True]}
if not SMOKE:   # what the reading below says, on any CPU (reference run: t = 0 86.9 % vs 51.5 %)
    theirs, mine = ends_result[(-7.0, 7.0)], ends_result[ours]
    assert mine["t0"] > theirs["t0"] + 0.2, "our start must make u_hat at t = 0 far better"
    assert mine["ab1"] < theirs["ab1"] and mine["step_noise"] < mine["free"] - 0.15, "the price: a noisier end"
    check_near("noise-free accuracy from our start", mine["free"], reference=0.92, tolerance=0.03)

# %% [markdown] tags=["solution"]
# **Reading the result.** (The two trainings above ran in this notebook, so their last digits
# differ from machine to machine; the figures here are the course's reference run, and the checks at
# the end of the cell test the comparisons on yours.) The start we argue for does what section 2
# says: after the same short training, $\hat u$ at $t = 0$ (the image alone) is right for about 87 %
# of the test images against about 52 % from $(-7, +7)$, and the noise-free sampler reaches about
# 92 % against 90 %. Its price is the noisier end: $\bar\alpha(1) \approx 0.95$ (SNR about 18)
# against 0.999 (SNR about 980). The stochastic sampler's noise at each step leaves that much noise
# in $z_1$, and after two short epochs the classifier $p(y \mid z_1)$ reads such a $z_1$ right only
# about 70 % of the time, even a $z_1$ drawn from $q(z_1 \mid y)$ with the true label, i.e. the end
# point of a perfect chain (about 99 % for the nearly clean $z_1$ of $(-7, +7)$). Switching the two
# noise sources separately points to the same place: for our start the random $z_0$ costs about one
# point, the noise at each step about 29. Longer training removes the price: the
# 54-epoch model of section 3 moved $g_0$ to $-4.34$, $\bar\alpha(1) = 0.987$, and its stochastic
# sampler trails the noise-free one by one point (97.78 % against 98.78 %, section 5).
