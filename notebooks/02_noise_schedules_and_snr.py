# %% [markdown]
# # 02 · Noise schedules and the SNR
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nplib/noprop-course/blob/main/student/02_noise_schedules_and_snr.ipynb) exercises (no solutions) · [solved version in Colab](https://colab.research.google.com/github/nplib/noprop-course/blob/main/notebooks/02_noise_schedules_and_snr.ipynb)
#
# The paper says only that NoProp-DT uses a "fixed cosine" noise schedule. Everything the blocks
# learn is shaped by that choice: how noisy each block's input is, and how much each block's loss
# counts. This notebook makes the choice explicit, shows its consequences in numbers, and guards
# each known schedule bug with an assert.
#
# **Learning goals.** After this notebook you can
# 1. build the cosine and linear discrete-time schedules and read $\bar\alpha_t$, SNR$(t)$, the
#    per-block loss weights SNR$(t)-$SNR$(t-1)$ and $a_t, b_t, c_t$ off a table or a plot;
# 2. explain why $\bar\alpha$ must be clipped below 1 and compute what the clip does to the last
#    block's weight;
# 3. recognise the schedule bugs of public reimplementations (wrong time direction, $b_t$ with
#    $\bar\alpha$, $\bar\alpha_T$ far from 1, $\bar\alpha$ instead of $\sqrt{\bar\alpha}$);
# 4. describe the learnable continuous-time schedule of NoProp-CT.
#
# **Prerequisites.** Notebook 01 (the marginal $q(z_t\mid y)$ and the direction of time).
#
# **Run time:** under a minute on a 2-core CPU; nothing is trained.

# %% [markdown]
# ## 0. Setup

# %%
import sys

if "google.colab" in sys.modules:  # on Colab, install the course package first
    get_ipython().run_line_magic("pip", "install -q 'nplib[colab] @ git+https://github.com/nplib/noprop-course'")
import math

import matplotlib.pyplot as plt
import torch

import nplib
from nplib.course import plots, widgets
from nplib.diffusion import q_sample
from nplib.schedules import DTSchedule, make_schedule
from nplib.notebook import setup

S = setup(seed=0)          # prints device, hardware, data root, full/quick mode
SMOKE = S.smoke            # quick mode: fewer Monte-Carlo samples
N_MC = 5_000 if SMOKE else 50_000
# Every tensor of this notebook is small and stays on the CPU, even when S.device is a GPU:
# the random generators below are CPU generators, torch.Generator(), to match.

# %% [markdown]
# ## 1. Two fixed schedules: cosine and linear
#
# A NoProp-DT schedule is fully described by $\bar\alpha_0 < \bar\alpha_1 < \dots < \bar\alpha_T$
# (time runs from noise at $t=0$ to the label at $t=T$). Everything else follows:
# $\alpha_T = \bar\alpha_T$, $\alpha_{t-1} = \bar\alpha_{t-1}/\bar\alpha_t$,
# SNR$(t) = \bar\alpha_t/(1-\bar\alpha_t)$ and the posterior coefficients $a_t, b_t, c_t$.
#
# * **cosine** (the course's reading of the paper's "fixed cosine"): the Nichol-Dhariwal cosine,
#   reversed in time, $f(s) = \cos^2\!\big(\tfrac{s+0.008}{1.008}\tfrac{\pi}{2}\big)/\cos^2\!\big(\tfrac{0.008}{1.008}\tfrac{\pi}{2}\big)$,
#   $\bar\alpha_t = \mathrm{clip}(f(1-t/T),\ \bar\alpha_{\min},\ \bar\alpha_{\max})$ with
#   $\bar\alpha_{\min}=10^{-4}$ and $\bar\alpha_{\max} = 0.99$ (section 3 says why).
# * **linear**: $\bar\alpha_t$ linear in $t$ from $\bar\alpha_{\min}$ to $\bar\alpha_{\max}$ (linear in
#   $\bar\alpha$; DDPM's linear *betas* make no sense for $T = 10$).
#
# Both are in `nplib.schedules`, whose module docstring documents these choices.

# %%
# NBVAL_CHECK_OUTPUT
cosine = make_schedule("cosine", T=10)
linear = make_schedule("linear", T=10)
T = cosine.T
print("cosine, alpha_bar clipped to [1e-4, 0.99]")
print(cosine.table())
print("\nlinear, alpha_bar from 1e-4 to 0.99")
print(linear.table())

# %%
plots.plot_schedules([cosine, linear], labels=["cosine", "linear"]);
plt.show()

# %% [markdown]
# Read the SNR column of the two tables. The cosine schedule keeps $\bar\alpha_t$ small for the
# first blocks and rises late; on the log scale its SNR grows almost linearly in $t$, from 0.0247
# at $t = 1$ to 34.83 at $t = 9$ (a factor of about 1400), so every block sees a different noise
# level. The linear schedule starts less noisy (SNR 0.11 at $t = 1$) but stays noisy longer: its
# SNR is still 8.175 at $t = 9$, then jumps to 99 in the very last step. Between $t = 1$ and
# $t = 9$ it spans only a factor of about 74, so most of its blocks see similar, low-to-moderate
# SNRs, and the last step carries most of the rise (section 2: the last block gets 90.8 of the
# total weight 99).
#
# ## 2. The per-block loss weights
#
# Block $t$'s loss is $\tfrac{T}{2}\,\eta\,\big(\mathrm{SNR}(t)-\mathrm{SNR}(t-1)\big)\,\|\hat u_t(z_{t-1},x)-u_y\|^2$
# with $\eta = 0.1$. The weight is a difference of SNRs, so the weights **telescope**: they sum to
# SNR$(T)-$SNR$(0)$ whatever happens in between. A schedule therefore only decides how that total is
# *shared* among the blocks.

# %%
for s in (cosine, linear):
    w = s.snr_delta
    # SNR(t) - SNR(t-1) summed over t = 1..T  ==  SNR(T) - SNR(0)
    assert torch.isclose(w.sum(), s.snr[-1] - s.snr[0])
    scale = (T / 2) * 0.1 * w   # the factor in front of each block's squared error (eta = 0.1)
    print(f"{s.kind:>6}: weights {[f'{v:.3g}' for v in w.tolist()]}")
    print(f"        (T/2) eta weight: block 1 {float(scale[0]):.3g}, block T {float(scale[-1]):.3g}; "
          f"sum of weights {float(w.sum()):.4g} = SNR(T) - SNR(0)")

# %% [markdown]
# ## 3. Clipping $\bar\alpha$ near 1, in numbers
#
# The unclipped reversed cosine has $f(0) = 1$, i.e. $\bar\alpha_T = 1$ and SNR$(T) = \infty$: the last
# block's weight would be infinite. So $\bar\alpha$ must be clipped, and the clip value $\bar\alpha_{\max}$
# **sets the last block's weight alone**: SNR$(T) = \bar\alpha_{\max}/(1-\bar\alpha_{\max})$, while
# SNR$(T-1)$ comes from the unclipped $f(0.1)$. Compute it for three clips:

# %%
# NBVAL_CHECK_OUTPUT
clips = (0.99, 0.999, 0.9999)
last = {}
print(f"{'clip':>7} {'SNR(T)':>8} {'SNR(T-1)':>9} {'last weight':>12} {'others: min':>12} {'max':>7} {'last share':>11}")
for clip in clips:
    s = make_schedule("cosine", T, alpha_bar_max=clip)
    w = s.snr_delta
    last[clip] = float(w[-1])
    print(f"{clip:>7} {float(s.snr[-1]):8.1f} {float(s.snr[-2]):9.2f} {float(w[-1]):12.2f} "
          f"{float(w[:-1].min()):12.4f} {float(w[:-1].max()):7.2f} {100 * float(w[-1] / w.sum()):10.1f}%")
    # only the last block changes: the other nine weights do not depend on the clip
    assert torch.allclose(w[:-1], cosine.snr_delta[:-1])
    assert 0.02 < float(w[:-1].min()) < 0.03 and 25 < float(w[:-1].max()) < 27

# the last weight is SNR(T) - SNR(T-1) = clip / (1 - clip) - 34.83
assert round(last[0.99]) == 64 and round(last[0.999]) == 964 and round(last[0.9999]) == 9964

# %%
sched_clips = [make_schedule("cosine", T, alpha_bar_max=c) for c in clips]
plots.plot_loss_weights(sched_clips, labels=[f"clip {c}" for c in clips]);
plt.show()

# %% [markdown]
# With the clip at 0.99 the last weight (64) is 2.5 times the next largest (26) and about 65 % of
# the total; at 0.999 it is 964, 37 times the next one, and the last block's loss dominates
# everything the shared classifier and a learned $W_{embed}$ see; at 0.9999 it is 9964.
# Meanwhile the first blocks' weights (0.025, 0.079, ...) are tiny: with $\eta = 0.1$ block 1's squared
# error is multiplied by about 0.012. The course uses **0.99** (the default of `make_schedule`); the
# paper does not say what it used. The lower clip $\bar\alpha_{\min} = 10^{-4}$ only touches $t=0$
# (where $f(1) = 0$) and keeps SNR(0) positive.
#
# The hard clip has a second cost: for larger $T$ several final $f(1-t/T)$ exceed 0.99, get clipped to
# the same value, and the schedule is no longer strictly increasing (a zero weight), so `make_schedule`
# refuses it. `clip="rescale"` maps $f$ affinely onto $[\bar\alpha_{\min}, \bar\alpha_{\max}]$ instead:

# %%
def hard_clip_works(n):
    try:
        make_schedule("cosine", n)
        return True
    except ValueError:
        return False


max_T = max(n for n in range(2, 41) if hard_clip_works(n))
assert all(hard_clip_works(n) for n in range(2, max_T + 1)) and not hard_clip_works(max_T + 1)
rescaled = make_schedule("cosine", 10, clip="rescale")
print(f"hard clip at 0.99 works for T = 2..{max_T}; T = {max_T + 1} is refused")
print(f"clip='rescale', T = 10: last weight {float(rescaled.snr_delta[-1]):.2f}, "
      f"others {float(rescaled.snr_delta[:-1].min()):.4f} .. {float(rescaled.snr_delta[:-1].max()):.2f}; "
      f"T = 30 works: {make_schedule('cosine', 30, clip='rescale').T == 30}")

# %% [markdown]
# ## 4. The posterior coefficients $a_t, b_t, c_t$
#
# Each step of the model is $z_t = a_t\hat u_t + b_t z_{t-1} + \sqrt{c_t}\,\epsilon$ (notebook 01,
# section 3.2). $a_t$ is how much of the block's prediction enters, $b_t$ how much of the previous
# latent is kept and $c_t$ the fresh noise.

# %%
plots.plot_abc([cosine, linear], labels=["cosine", "linear"]);
plt.show()

# %%
for s in (cosine, linear):
    ab_prev, ab_t = s.alpha_bar[:-1], s.alpha_bar[1:]
    # a_t + b_t sqrt(alpha_bar_{t-1}) = sqrt(alpha_bar_t): a noiseless label stays on its mean
    assert torch.allclose(s.a + s.b * ab_prev.sqrt(), ab_t.sqrt())
    # c_t = (1 - alpha_bar_t) - b_t^2 (1 - alpha_bar_{t-1}): the variance of q(z_t | y) is kept
    assert torch.allclose(s.c + s.b ** 2 * (1 - ab_prev), 1 - ab_t)
    assert ((s.a > 0) & (s.b > 0) & (s.c > 0)).all()
print("a_t, b_t, c_t map q(z_{t-1}|y) onto q(z_t|y) in mean and variance, for both schedules")

# %% [markdown]
# ## 5. A preview: the learnable schedule of NoProp-CT
#
# NoProp-CT (notebook 05) replaces the $T$ fixed steps by continuous time $t\in[0,1]$ and **learns**
# the schedule: SNR$(t) = e^{-\gamma(t)}$, $\bar\alpha(t) = \mathrm{sigmoid}(-\gamma(t))$ with
#
# $$\gamma(t) = \gamma_0 + (\gamma_1-\gamma_0)\big(1-\bar\gamma(t)\big),\qquad
#   \bar\gamma(t) = \frac{\tilde\gamma(t)-\tilde\gamma(0)}{\tilde\gamma(1)-\tilde\gamma(0)},$$
#
# where $\tilde\gamma$ is a small network with positive weights, hence increasing in $t$. Then
# $\gamma$ decreases from $\gamma_1$ to $\gamma_0$ and the SNR increases, whatever the network learns.
# The per-time loss weight is SNR$'(t)$, by autograd. `nplib.continuous.LearnedSchedule` implements it
# (notebook 05 trains it); here we only look at it at initialisation, for two choices of the end
# points the paper leaves open: nplib's defaults (printed below; notebook 05 explains them) and the
# public choice $\gamma_0=-7, \gamma_1=7$.

# %%
from nplib.continuous import LearnedSchedule

t = torch.linspace(0, 1, 401, dtype=torch.float64)
fig, axs = plt.subplots(1, 3, figsize=(12, 3.3))
totals = {}
for ct in (LearnedSchedule(), LearnedSchedule(g0=-7.0, g1=7.0)):
    name = f"CT, g0 = {ct.g0_init:g}, g1 = {ct.g1_init:g}"
    with torch.no_grad():
        alpha_bar_ct = ct.alpha_bar(t)                  # alpha_bar(t) = sigmoid(-gamma(t))
        snr = ct.snr(t)                                 # SNR(t) = exp(-gamma(t))
    _, snr_prime = ct.snr_derivative(t, create_graph=False)   # SNR'(t), the CT loss weight, by autograd
    snr_prime = snr_prime.detach()
    assert (alpha_bar_ct[1:] > alpha_bar_ct[:-1]).all() and (snr_prime > 0).all()
    # the weights telescope here too: int_0^1 SNR'(t) dt = SNR(1) - SNR(0)
    integral = torch.trapezoid(snr_prime, t)
    assert abs(integral - (snr[-1] - snr[0])) < 0.01 * (snr[-1] - snr[0])
    totals[ct.g0_init] = float(snr[-1] - snr[0])
    print(f"{name}: alpha_bar(0) = {alpha_bar_ct[0]:.2e}, alpha_bar(1) = {alpha_bar_ct[-1]:.4f}; "
          f"int SNR' dt = {integral:.1f} vs SNR(1) - SNR(0) = {snr[-1] - snr[0]:.1f}")
    axs[0].plot(t, alpha_bar_ct, label=name)
    axs[1].semilogy(t, snr, label=name)
    axs[2].semilogy(t, snr_prime, label=name)
axs[0].plot(torch.arange(T + 1) / T, cosine.alpha_bar, "o", label="DT cosine at t/T")
axs[1].semilogy(torch.arange(T + 1) / T, cosine.snr, "o", label="DT cosine at t/T")
for ax, title in zip(axs, [r"$\bar\alpha(t)$", "SNR(t)", "SNR'(t): the CT loss weight"]):
    ax.set_title(title)
    ax.set_xlabel("t (0 = noise, 1 = label)")
    ax.grid(alpha=0.3)
axs[0].legend(fontsize=7)
fig.tight_layout()
print(f"total weight SNR(1) - SNR(0): {totals[-7.0] / totals[LearnedSchedule().g0_init]:.0f} times larger with g0 = -7");
plt.show()

# %% [markdown]
# The continuous weight SNR$'(t)$ spans orders of magnitude too, and the end point
# $\bar\alpha(1) = \mathrm{sigmoid}(-\gamma_0)$ plays the role of the DT clip (printed above for both
# choices): moving $\gamma_0$ from nplib's default to $-7$ multiplies the total weight SNR$(1)-$SNR$(0)$ by the
# factor printed under the plot. In nplib the end points are learned too (with $\gamma_0<\gamma_1$
# kept by construction).
#
# ## 6. Every schedule trap of `docs/pitfalls.md`, as an assert
#
# Public reimplementations got the schedule wrong in four ways. Each is checked here, for both
# schedules and all three clips.

# %%
all_schedules = [cosine, linear, *sched_clips, make_schedule("linear", T, alpha_bar_max=0.999)]
for s in all_schedules:
    ab_prev, ab_t, alpha_prev = s.alpha_bar[:-1], s.alpha_bar[1:], s.alpha[:-1]
    # bug 1: alpha_bar increasing in t (noise at t = 0) and every weight positive
    assert (ab_t > ab_prev).all() and (s.snr_delta > 0).all()
    # bug 2: b_t uses sqrt(alpha_{t-1}), not sqrt(alpha_bar_{t-1})
    assert torch.allclose(s.b, alpha_prev.sqrt() * (1 - ab_t) / (1 - ab_prev))
    assert not torch.allclose(s.b, ab_prev.sqrt() * (1 - ab_t) / (1 - ab_prev))
    # bug 3: alpha_bar_T near 1, so z_T is close to the label
    assert s.alpha_bar[-1] >= 0.99
print(f"bugs 1-3 absent from {len(all_schedules)} schedules")

# bug 1 again: the DDPM-direction cumulative product is refused by nplib
try:
    DTSchedule.from_alpha_bar(torch.cumprod(cosine.alpha, 0))
    raise AssertionError("a decreasing alpha_bar must be rejected")
except ValueError as err:
    print("DDPM-direction alpha_bar refused:", str(err)[:90], "...")

# bug 7: the noised label is sqrt(alpha_bar_t) u_y + sqrt(1 - alpha_bar_t) eps
u = torch.eye(10, dtype=torch.float64)[:4]
for t_ in range(T + 1):
    z = q_sample(u, t_, cosine, eps=torch.zeros_like(u))      # no noise: the mean
    assert torch.allclose(z, cosine.alpha_bar[t_].sqrt() * u)
print("q_sample's mean is sqrt(alpha_bar_t) u_y at every t")

# %% [markdown]
# Why bug 3 matters, in one number. The classifier $p(y\mid z_T)$ sees $z_T\sim q(z_T\mid y)$. With
# isotropic Gaussian classes of equal variance the best any classifier can do is to pick the nearest
# mean $\sqrt{\bar\alpha_T}u_k$, so its accuracy bounds what the model can reach even with perfect
# blocks. One public notebook used $\bar\alpha_T = 0.05$:

# %%
g = torch.Generator().manual_seed(0)
W = torch.eye(10, dtype=torch.float64)
ys = torch.arange(10).repeat_interleave(N_MC // 10)
bound = {}
for ab_T in (0.05, 0.5, 0.9, 0.99):
    s = make_schedule("linear", T, alpha_bar_max=ab_T)
    z_T = q_sample(W[ys], T, s, generator=g)
    guess = torch.cdist(z_T, math.sqrt(ab_T) * W).argmin(1)
    bound[ab_T] = float((guess == ys).double().mean())
    print(f"alpha_bar_T = {ab_T:<5}: best possible accuracy from z_T (one-hot, d = 10) = {100 * bound[ab_T]:5.1f}%")
assert bound[0.05] < 0.2 and bound[0.5] < 0.5 and bound[0.99] > 0.999

# %% [markdown]
# With $\bar\alpha_T = 0.05$ no classifier on $z_T$ can do much better than chance (10 %), however good
# the blocks are; at 0.5 it is still wrong most of the time. (Trap 4 of `docs/pitfalls.md`, a CNN classifier trained with
# cross-entropy on the images, "fixes" this by ignoring the chain: notebook 04 measures how much of
# the accuracy the chain itself carries.)
#
# ## 7. Explore: kind, $T$ and the clip
#
# The explorer redraws the four schedule panels; its title gives the last block's weight and its
# share of the total. It only calls `nplib.course.plots.plot_schedule_explorer(kind, T, alpha_bar_max)`,
# which you can also call directly (a static copy of this notebook shows only the default view).
# A setting the schedule refuses (for example cosine, $T > 17$, clip 0.99) prints the reason instead.

# %%
# NBVAL_IGNORE_OUTPUT
# (for `pytest --nbval`: a widget's output is its live view, re-created by every run; its static figure is
# the PNG stored with it)
widgets.schedule_explorer(kind="cosine", T=10, alpha_bar_max=0.99);

# %% [markdown]
# ## Summary
#
# * A NoProp-DT schedule is an increasing sequence $\bar\alpha_0<\dots<\bar\alpha_T$ in $(0,1)$; the
#   course uses the reversed cosine clipped to $[10^{-4}, 0.99]$.
# * The loss weights SNR$(t)-$SNR$(t-1)$ telescope to SNR$(T)-$SNR$(0)$. The clip alone sets the last
#   weight: 64 at 0.99, 964 at 0.999, 9964 at 0.9999, against 0.025 to 26 for the nine others.
# * $a_t, b_t, c_t$ carry $q(z_{t-1}\mid y)$ to $q(z_t\mid y)$; $b_t$ uses $\alpha_{t-1}$.
# * $\bar\alpha_T$ must be near 1: at 0.05 even a perfect model cannot classify from $z_T$.
# * NoProp-CT learns the shape of a monotone $\gamma(t)$ between fixed ends.
#
# ## Exercises
#
# Each exercise cell is a skeleton: fill in the function that raises `NotImplementedError`, and the
# rest of the cell (already written) uses it and checks it with an `assert` or a plot. Until then the
# cell stops with `NotImplementedError`, which is expected: the cell is tagged `raises-exception`, so
# Run-All goes on. The student copies in `student/` leave the solution cells out.
#
# **Exercise 1.** Compute the loss weights of the linear schedule from `linear.alpha_bar` alone and
# compare with `linear.snr_delta`.

# %% tags=["raises-exception"]
def loss_weights(alpha_bar):
    # SNR(t) = alpha_bar_t / (1 - alpha_bar_t);  weight of block t: SNR(t) - SNR(t-1)
    raise NotImplementedError("Exercise 1")


assert torch.allclose(loss_weights(linear.alpha_bar), linear.snr_delta)


# %% tags=["solution"]
def loss_weights(alpha_bar):
    # SNR(t) = alpha_bar_t / (1 - alpha_bar_t)
    snr = alpha_bar / (1 - alpha_bar)
    # weight of block t: SNR(t) - SNR(t-1)
    return snr[1:] - snr[:-1]


assert torch.allclose(loss_weights(linear.alpha_bar), linear.snr_delta)
print(loss_weights(linear.alpha_bar))


# %% [markdown]
# **Exercise 2.** Which clip $\bar\alpha_{\max}$ makes the last block's weight of the cosine schedule
# (T = 10) exactly equal to the next largest weight (block 9's)? Compute it in closed form, then
# check it with `make_schedule`.

# %% tags=["raises-exception"]
def clip_for_equal_last_weights(schedule):
    """The alpha_bar_max that makes the last weight SNR(T) - SNR(T-1) equal to SNR(T-1) - SNR(T-2)."""
    # alpha_bar_max = SNR(T) / (1 + SNR(T)), with SNR(T) from the condition above
    raise NotImplementedError("Exercise 2: solve SNR(T) - SNR(T-1) = SNR(T-1) - SNR(T-2) for alpha_bar_max")


clip_eq = clip_for_equal_last_weights(cosine)
s = make_schedule("cosine", T, alpha_bar_max=clip_eq)
print(f"alpha_bar_max = {clip_eq:.5f}: weights of blocks 9 and 10 = {s.snr_delta[-2]:.3f}, {s.snr_delta[-1]:.3f}")
assert torch.isclose(s.snr_delta[-1], s.snr_delta[-2])

# %% tags=["solution"]
def clip_for_equal_last_weights(schedule):
    """The alpha_bar_max that makes the last weight SNR(T) - SNR(T-1) equal to SNR(T-1) - SNR(T-2)."""
    # SNR(T) = 2 SNR(T-1) - SNR(T-2)
    snr_T = 2 * schedule.snr[-2] - schedule.snr[-3]
    # alpha_bar_max = SNR(T) / (1 + SNR(T))
    return float(snr_T / (1 + snr_T))


clip_eq = clip_for_equal_last_weights(cosine)
s = make_schedule("cosine", T, alpha_bar_max=clip_eq)
print(f"alpha_bar_max = {clip_eq:.5f}: weights of blocks 9 and 10 = {s.snr_delta[-2]:.3f}, {s.snr_delta[-1]:.3f}")
assert torch.isclose(s.snr_delta[-1], s.snr_delta[-2])

# %% [markdown]
# **Exercise 3.** Build a schedule whose log-SNR is linear in $t$, from $-9$ at $t=0$ to $+4.6$ at
# $t=T$ ($\bar\alpha = \mathrm{sigmoid}(\log\mathrm{SNR})$), with `DTSchedule.from_alpha_bar`, and compare
# its loss weights with the cosine's in one bar plot. Which blocks lose weight, and by what factor?

# %% tags=["raises-exception"]
def log_snr_linear_schedule(T, log_snr_0=-9.0, log_snr_T=4.6):
    """A DTSchedule whose log SNR(t) is linear in t, from log_snr_0 to log_snr_T."""
    # alpha_bar_t = sigmoid(log SNR(t))
    raise NotImplementedError("Exercise 3: a log-SNR-linear schedule with DTSchedule.from_alpha_bar")


loglin = log_snr_linear_schedule(T)
# log SNR(t) = log(alpha_bar_t / (1 - alpha_bar_t)) is linear in t
assert torch.allclose(loglin.snr.log(), torch.linspace(-9.0, 4.6, T + 1, dtype=torch.float64))
plots.plot_loss_weights([cosine, loglin], labels=["cosine", "log-SNR linear"])
ratio = loglin.snr_delta / cosine.snr_delta
print("weight ratio log-SNR-linear / cosine, blocks 1..T:", [f"{v:.3g}" for v in ratio.tolist()])
print("blocks that lose weight:", ((ratio < 1).nonzero().flatten() + 1).tolist());

# %% tags=["solution"]
def log_snr_linear_schedule(T, log_snr_0=-9.0, log_snr_T=4.6):
    """A DTSchedule whose log SNR(t) is linear in t, from log_snr_0 to log_snr_T."""
    log_snr = torch.linspace(log_snr_0, log_snr_T, T + 1, dtype=torch.float64)
    # alpha_bar_t = sigmoid(log SNR(t))
    return DTSchedule.from_alpha_bar(torch.sigmoid(log_snr), kind="log-SNR linear")


loglin = log_snr_linear_schedule(T)
# log SNR(t) = log(alpha_bar_t / (1 - alpha_bar_t)) is linear in t
assert torch.allclose(loglin.snr.log(), torch.linspace(-9.0, 4.6, T + 1, dtype=torch.float64))
plots.plot_loss_weights([cosine, loglin], labels=["cosine", "log-SNR linear"])
ratio = loglin.snr_delta / cosine.snr_delta
print("weight ratio log-SNR-linear / cosine, blocks 1..T:", [f"{v:.3g}" for v in ratio.tolist()])
print("blocks that lose weight:", ((ratio < 1).nonzero().flatten() + 1).tolist());
plt.show()
