# %% [markdown]
# # 01 · Forward diffusion on label embeddings
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nplib/noprop-course/blob/main/student/01_forward_diffusion_on_label_embeddings.ipynb) exercises (no solutions) · [solved version in Colab](https://colab.research.google.com/github/nplib/noprop-course/blob/main/notebooks/01_forward_diffusion_on_label_embeddings.ipynb)
#
# NoProp (Li, Teh, Pascanu 2025) trains a classifier as a chain of **denoisers**. The thing being
# denoised is not the image: it is the **label**. Each class $y$ gets an embedding $u_y$; noise is
# added to $u_y$; block $t$ of the network learns to undo one step of that noise, given the image.
# This notebook builds the noise process on labels and checks every formula of it numerically.
#
# **Learning goals.** After this notebook you can
# 1. build the three kinds of label embeddings of the paper (one-hot, learned, prototype);
# 2. sample the marginal $q(z_t \mid y)$ and say why NoProp's time runs from **noise at $t=0$ to
#    label at $t=T$**, the reverse of DDPM, and what goes wrong if you mix the two up;
# 3. verify by Monte Carlo the mean and variance of $q(z_t\mid y)$, the one-step posterior
#    coefficients $a_t, b_t, c_t$ and the closed-form KL term;
# 4. draw noisy label trajectories $z_0, \dots, z_T$ and explore them with a slider.
#
# **Prerequisites.** Gaussians (mean, variance, sums of independent Gaussians), least squares,
# PyTorch tensors. No diffusion-model background is needed.
#
# **Run time:** under a minute on a 2-core CPU; nothing is trained.

# %% [markdown]
# ## 0. Setup
#
# One cell: on Colab it installs the course package; everywhere it seeds the random number
# generators and prints the device, the hardware, the data root and the mode (full or quick).

# %%
import sys

if "google.colab" in sys.modules:  # on Colab, install the course package first
    get_ipython().run_line_magic("pip", "install -q 'nplib[colab] @ git+https://github.com/nplib/noprop-course'")
import math

import matplotlib.pyplot as plt
import torch

import nplib
from nplib.course import plots, widgets
from nplib.diffusion import kl_prior, posterior_step, q_sample
from nplib.embeddings import LabelEmbedding, class_medoids
from nplib.schedules import DTSchedule, make_schedule
from nplib.notebook import setup

S = setup(seed=0)          # prints device, hardware, data root, full/quick mode
SMOKE = S.smoke            # quick mode: tiny data, fewer Monte-Carlo samples
N_MC = 20_000 if SMOKE else 200_000   # Monte-Carlo sample size of section 3
torch.set_default_dtype(torch.float64)  # the checks of section 3 compare to 3-4 digits
# Every tensor of this notebook is small and stays on the CPU, even when S.device is a GPU:
# the random generators below are CPU generators, torch.Generator(), to match.

# %% [markdown]
# ## 1. Label embeddings $W_{embed}$
#
# Every class $y \in \{0,\dots,m-1\}$ is a vector $u_y \in \mathbb{R}^d$, row $y$ of an $m\times d$
# matrix $W_{embed}$. The paper uses three kinds (`nplib.embeddings.LabelEmbedding`):
#
# | kind | $d$ | initialisation | trained? |
# |---|---|---|---|
# | one-hot | $m$ | identity | no |
# | learned | 20 | orthogonal rows (every pair of classes equally far apart) | yes |
# | prototype | $C\cdot H\cdot W$ | each class's **medoid** training image | yes |
#
# ### 1.1 One-hot and learned

# %%
m = 10
onehot = LabelEmbedding("onehot", m)
learned = LabelEmbedding("learned", m, dim=20)
print(onehot, "\n", learned)
W1 = onehot.W_embed.double()
W2 = learned.W_embed.detach().double()

# orthogonal initialisation: W W^T = I, so ||u_y|| = 1 and ||u_y - u_y'|| = sqrt(2) for y != y'
assert torch.allclose(W1 @ W1.T, torch.eye(m))
assert torch.allclose(W2 @ W2.T, torch.eye(m), atol=1e-5)
print("pairwise distances, learned:", torch.cdist(W2, W2)[~torch.eye(m, dtype=torch.bool)].unique(sorted=True)[[0, -1]])

# %% [markdown]
# With $m \le d$ the learned rows start orthonormal, exactly like one-hot vectors but in 20
# dimensions; training may then move them. (For CIFAR-100, $m = 100 > d = 20$ and the rows cannot
# all be orthogonal: the paper leaves this open; `nplib` then makes the *columns* orthonormal.)
#
# ### 1.2 Prototypes: the medoid image of each class
#
# The medoid of a class is the training image with the smallest **median** Euclidean distance to
# the other images of its class: a real, typical digit (unlike the mean image, which is a blur).
# With prototype embeddings $z_t$ is an *image* (784 numbers on MNIST) and $u_y$ has a large norm.

# %%
train, test = nplib.load_train_test("mnist")
g = torch.Generator().manual_seed(0)
per_class = 500 if SMOKE else 2000   # images per class used for the N x N distance matrix
medoids = class_medoids(train.x, train.y, m, max_per_class=per_class, generator=g)
proto = LabelEmbedding("prototype", m, prototypes=medoids)
W3 = proto.W_embed.detach().double()
print(f"{len(train)} training images; medoids from {per_class} images per class; W_embed {tuple(W3.shape)}")
plots.plot_images(medoids, titles=[f"class {k}" for k in range(m)]);
plt.show()

# %%
# norms and nearest-other-class distances of the three embeddings
for name, W in [("one-hot", W1), ("learned", W2), ("prototype", W3)]:
    D = torch.cdist(W, W) + torch.diag(torch.full((m,), float("inf")))
    print(f"{name:>9}: d = {W.shape[1]:>3}, ||u_y|| in [{W.norm(dim=1).min():.2f}, {W.norm(dim=1).max():.2f}], "
          f"nearest other class at distance >= {D.min():.2f}")
# the medoid of class k is one of the training images of class k: its label is k
for k in range(m):
    idx = (train.x.flatten(1) == medoids[k].flatten()).all(1).nonzero()
    assert train.y[idx[0, 0]] == k

# %% [markdown]
# The prototypes are far apart (at least 18.8 units, in normalised pixel space) while the noise we add has
# standard deviation at most 1 per coordinate: the label survives much more noise than a one-hot
# vector does. That is one reason the three kinds behave differently for the same schedule.
#
# ## 2. The forward process on labels, and the direction of time
#
# NoProp fixes a schedule $\alpha_0,\dots,\alpha_T$ and
# $\bar\alpha_t = \prod_{s=t}^{T}\alpha_s$ (a product from $t$ **up to $T$**). The noised label at
# time $t$ has the marginal
#
# $$q(z_t \mid y) = \mathcal N\!\big(\sqrt{\bar\alpha_t}\,u_y,\ (1-\bar\alpha_t) I\big).$$
#
# $\bar\alpha_t$ **increases** with $t$: $z_0$ is (almost) pure noise and $z_T$ is (almost) the
# label. The model runs in the same direction: it starts from noise $z_0\sim\mathcal N(0,I)$ and each
# block moves $z$ a step towards the label. The course's default schedule is a reversed, clipped
# cosine (notebook 02 studies it); `nplib.schedules.make_schedule` builds it with every derived array.

# %%
# NBVAL_CHECK_OUTPUT
schedule = make_schedule("cosine", T=10)
T = schedule.T
print(schedule.table())

# %%
assert (schedule.alpha_bar[1:] > schedule.alpha_bar[:-1]).all(), "alpha_bar must increase with t"
# alpha_bar_t = prod_{s=t..T} alpha_s
alpha_bar_check = torch.stack([schedule.alpha[t:].prod() for t in range(T + 1)])
assert torch.allclose(alpha_bar_check, schedule.alpha_bar)

# %% [markdown]
# Samples of the marginal for three classes, projected on the plane through their three
# embeddings (one colour per class, named in the first panel's legend; crosses: the clean $u_y$;
# three orthonormal vectors form an equilateral triangle in that plane). At $t=0$ all classes are one blob; at $t=T$ each sits on its embedding. One-hot
# first, then the learned 20-dimensional embedding, which looks the same because its rows start
# orthonormal too.

# %%
plots.plot_marginals(W1, schedule, ts=(0, 4, 7, 10), classes=(0, 1, 2), n_per_class=300);
plt.show()

# %%
plots.plot_marginals(W2, schedule, ts=(0, 4, 7, 10), classes=(0, 1, 2), n_per_class=300);
plt.show()

# %% [markdown]
# ### 2.1 Why the direction matters (trap 1 in `docs/pitfalls.md`)
#
# DDPM numbers time the other way: $t=0$ is the clean data and $\bar\alpha_t = \prod_{s\le t}\alpha_s$ is a
# *forward* cumulative product that **decreases**. Copying that line into NoProp code is the most
# common bug in public reimplementations. With the same $\alpha$'s:
#
# * block 1 is trained on $z_0 \approx u_y$ (a nearly clean label) but at inference it receives
#   pure noise $z_0\sim\mathcal N(0,I)$: train and test inputs have nothing in common;
# * the loss weights $\mathrm{SNR}(t)-\mathrm{SNR}(t-1)$ become **negative**, so gradient descent
#   *increases* those blocks' denoising errors.
#
# Let us compute it rather than believe it.

# %%
# the bug: alpha_bar_t = prod_{s=0..t} alpha_s (DDPM's forward cumulative product)
alpha_bar_ddpm = torch.cumprod(schedule.alpha, dim=0)
snr_ddpm = alpha_bar_ddpm / (1 - alpha_bar_ddpm)
snr_delta_ddpm = snr_ddpm[1:] - snr_ddpm[:-1]
print("DDPM-direction alpha_bar:", [f"{v:.3g}" for v in alpha_bar_ddpm.tolist()])
print("its loss weights SNR(t)-SNR(t-1):", [f"{v:.3g}" for v in snr_delta_ddpm.tolist()])
assert (snr_delta_ddpm < 0).all(), "every weight is negative in the DDPM direction"
try:
    DTSchedule.from_alpha_bar(alpha_bar_ddpm)
except ValueError as err:
    print("\nnplib refuses it:", err)
else:
    raise AssertionError("a decreasing alpha_bar must be rejected")

# %% [markdown]
# ## 3. Monte-Carlo checks of the closed forms
#
# Every formula the training loss relies on can be checked by sampling. Each check below prints
# the closed form next to its estimate and **asserts** agreement within a few standard errors
# (a failing assert stops the notebook).
#
# ### 3.1 Mean and variance of $q(z_t\mid y)$
#
# `q_sample` draws $z_t = \sqrt{\bar\alpha_t}\,u_y + \sqrt{1-\bar\alpha_t}\,\epsilon$. Note the **square
# root**: writing $\bar\alpha_t u_y$ (trap 7 in `docs/pitfalls.md`) gives the wrong mean and a total variance that
# is no longer 1 for a unit $u_y$.

# %%
g = torch.Generator().manual_seed(1)
y = 3
print(f"{'t':>2} {'sqrt(ab_t)':>10} {'MC mean':>8} {'1-ab_t':>7} {'MC var':>7}")
for t in range(T + 1):
    for W in (W1, W2):
        u = W[y].expand(N_MC, -1)
        z = q_sample(u, t, schedule, generator=g)
        ab = float(schedule.alpha_bar[t])
        mean_err = (z.mean(0) - math.sqrt(ab) * W[y]).abs().max()
        var_err = (z.var(0) - (1 - ab)).abs().max()
        # standard error of a mean: sd / sqrt(N); of a variance: var * sqrt(2 / N); 5 s.e., max over d
        assert mean_err < 5 * math.sqrt((1 - ab) / N_MC), (t, float(mean_err))
        assert var_err < 5 * (1 - ab) * math.sqrt(2 / N_MC) + 1e-12, (t, float(var_err))
    # one-hot, the coordinate of the true class
    z = q_sample(W1[y].expand(N_MC, -1), t, schedule, generator=g)
    print(f"{t:>2} {math.sqrt(ab):>10.4f} {float(z[:, y].mean()):>8.4f} {1 - ab:>7.4f} {float(z[:, y].var()):>7.4f}")
print(f"mean and variance agree for every t and both embeddings ({N_MC} samples each)")

# %% [markdown]
# ### 3.2 The one-step posterior $q(z_t \mid z_{t-1}, y)$ by regression
#
# The model's step is $z_t = a_t\,\hat u_t + b_t\,z_{t-1} + \sqrt{c_t}\,\epsilon$. The coefficients come
# from the Gaussian posterior $q(z_t\mid z_{t-1}, y) = \mathcal N(a_t u_y + b_t z_{t-1},\ c_t I)$ with
#
# $$a_t = \frac{\sqrt{\bar\alpha_t}\,(1-\alpha_{t-1})}{1-\bar\alpha_{t-1}},\qquad
#   b_t = \frac{\sqrt{\alpha_{t-1}}\,(1-\bar\alpha_t)}{1-\bar\alpha_{t-1}},\qquad
#   c_t = \frac{(1-\bar\alpha_t)(1-\alpha_{t-1})}{1-\bar\alpha_{t-1}}.$$
#
# To check them without trusting the algebra, simulate the *noising* direction, which is simple:
# draw $z_t\sim q(z_t\mid y)$ and then $z_{t-1} = \sqrt{\alpha_{t-1}}\,z_t + \sqrt{1-\alpha_{t-1}}\,\epsilon$
# (this gives exactly the marginal $q(z_{t-1}\mid y)$, because $\bar\alpha_{t-1}=\alpha_{t-1}\bar\alpha_t$).
# Then **regress** $z_t$ on $(u_y, z_{t-1})$ by least squares: the slopes are $a_t$ and $b_t$ and the
# residual variance is $c_t$. Random $u_y\sim\mathcal N(0,I)$ make the two regressors
# distinguishable; the formulas hold for any $u_y$.

# %%
g = torch.Generator().manual_seed(2)
d = 4
rows = []
for t in range(1, T + 1):
    n = N_MC // d
    u = torch.randn(n, d, generator=g)
    z_t = q_sample(u, t, schedule, generator=g)
    alpha_prev = float(schedule.alpha[t - 1])
    # noising step: z_{t-1} = sqrt(alpha_{t-1}) z_t + sqrt(1 - alpha_{t-1}) eps
    z_prev = math.sqrt(alpha_prev) * z_t + math.sqrt(1 - alpha_prev) * torch.randn(n, d, generator=g)
    X = torch.stack([u.flatten(), z_prev.flatten()], dim=1)       # (n*d, 2)
    coef = torch.linalg.lstsq(X, z_t.flatten().unsqueeze(1)).solution.flatten()
    resid = z_t.flatten() - X @ coef
    rows.append((t, float(coef[0]), float(coef[1]), float(resid.var())))
print(f"{'t':>2} {'a_t':>7} {'a_t MC':>7} {'b_t':>7} {'b_t MC':>7} {'c_t':>8} {'c_t MC':>8}")
for t, a_mc, b_mc, c_mc in rows:
    a, b, c = (float(v[t - 1]) for v in (schedule.a, schedule.b, schedule.c))
    print(f"{t:>2} {a:7.4f} {a_mc:7.4f} {b:7.4f} {b_mc:7.4f} {c:8.5f} {c_mc:8.5f}")
    tol = 6 * math.sqrt(c / (N_MC / 2))   # a few standard errors of a regression slope
    assert abs(a - a_mc) < tol and abs(b - b_mc) < tol, (t, a, a_mc, b, b_mc)
    assert abs(c - c_mc) < 6 * c * math.sqrt(2 / N_MC), (t, c, c_mc)

# %% [markdown]
# The regression recovers $a_t, b_t, c_t$ for every block. Trap 2 of `docs/pitfalls.md` writes $b_t$ with
# $\sqrt{\bar\alpha_{t-1}}$ instead of $\sqrt{\alpha_{t-1}}$. Since $\alpha_{t-1} = \bar\alpha_{t-1}/\bar\alpha_t$,
# the correct $b_t$ is exactly $1/\sqrt{\bar\alpha_t}$ times the buggy one: the bug shrinks $b_t$
# most in the noisy blocks, where $\bar\alpha_t$ is small (and more for schedules that start closer
# to pure noise than ours):

# %%
alpha_prev, ab_prev, ab_t = schedule.alpha[:-1], schedule.alpha_bar[:-1], schedule.alpha_bar[1:]
b_bug = ab_prev.sqrt() * (1 - ab_t) / (1 - ab_prev)
print("b_t / b_t(bug):", [f"{v:.1f}" for v in (schedule.b / b_bug).tolist()])
# b_t / b_t(bug) = sqrt(alpha_{t-1} / alpha_bar_{t-1}) = 1 / sqrt(alpha_bar_t)
assert torch.allclose(schedule.b / b_bug, 1 / ab_t.sqrt())
assert (schedule.b / b_bug)[0] > 5, "block 1's b_t is several times too small with the bug"

# %% [markdown]
# Two more consequences worth checking. (i) With no noise, $z_{t-1}=\sqrt{\bar\alpha_{t-1}}u_y$ is
# mapped to $\sqrt{\bar\alpha_t}u_y$: $a_t + b_t\sqrt{\bar\alpha_{t-1}} = \sqrt{\bar\alpha_t}$.
# (ii) `posterior_step` with the true label maps a sample of $q(z_{t-1}\mid y)$ to a sample of
# $q(z_t\mid y)$: the chain, fed a perfect denoiser, walks along the marginals.

# %%
# (i) a_t + b_t sqrt(alpha_bar_{t-1}) = sqrt(alpha_bar_t)
assert torch.allclose(schedule.a + schedule.b * ab_prev.sqrt(), ab_t.sqrt())
# (ii) z_{t-1} ~ q(z_{t-1}|y)  ->  posterior_step  ->  z_t ~ q(z_t|y)
g = torch.Generator().manual_seed(3)
u = W2[y].expand(N_MC, -1)
for t in range(1, T + 1):
    z_prev = q_sample(u, t - 1, schedule, generator=g)
    z_t = posterior_step(u, z_prev, t, schedule, generator=g)
    ab = float(schedule.alpha_bar[t])
    assert (z_t.mean(0) - math.sqrt(ab) * W2[y]).abs().max() < 5 * math.sqrt((1 - ab) / N_MC)
    assert (z_t.var(0) - (1 - ab)).abs().max() < 5 * (1 - ab) * math.sqrt(2 / N_MC)
print("posterior_step carries q(z_{t-1}|y) to q(z_t|y) for t = 1 ..", T)

# %% [markdown]
# ### 3.3 The KL term
#
# The loss contains $\mathrm{KL}(q(z_0\mid y)\,\|\,\mathcal N(0,I))$, in closed form
#
# $$\mathrm{KL} = \tfrac12\big[\bar\alpha_0(\|u_y\|^2 - d) - d\ln(1-\bar\alpha_0)\big].$$
#
# We compare it with the Monte-Carlo average of $\log q(z_0\mid y) - \log\mathcal N(z_0; 0, I)$ over
# samples $z_0 \sim q(z_0\mid y)$. With the course's $\bar\alpha_0 = 10^{-4}$ the KL is tiny, so we
# also use a linear schedule whose $\bar\alpha_0 = 0.3$, where the term is large.

# %%
g = torch.Generator().manual_seed(4)
n = N_MC // 40   # the prototype embedding has d = 784: keep the sample matrix small
for sched in (schedule, make_schedule("linear", T, alpha_bar_min=0.3)):
    ab0 = float(sched.alpha_bar[0])
    for name, W in [("one-hot", W1), ("learned", W2), ("prototype", W3)]:
        u = W[y].expand(n, -1)
        z0 = q_sample(u, 0, sched, generator=g)
        q = torch.distributions.Normal(math.sqrt(ab0) * u, math.sqrt(1 - ab0))
        p = torch.distributions.Normal(torch.zeros_like(u), 1.0)
        ratio = (q.log_prob(z0) - p.log_prob(z0)).sum(1)          # log q(z_0|y) - log p(z_0)
        mc, se = float(ratio.mean()), float(ratio.std() / math.sqrt(n))
        kl = float(kl_prior(W[y:y + 1], sched))
        print(f"alpha_bar_0 = {ab0:<6g} {name:>9}: closed form {kl:10.4f}   MC {mc:10.4f} +- {se:.4f}")
        assert abs(kl - mc) < 5 * se + 1e-9, (name, kl, mc, se)

# %% [markdown]
# For one-hot labels the KL is a constant (nothing to learn). For learned and prototype embeddings
# it grows with $\|u_y\|^2$, but with slope $\bar\alpha_0/2$: at the course's $\bar\alpha_0 = 10^{-4}$ it is
# 0.0342 even for a prototype (norm above 20), so it hardly restrains the norms of the embeddings;
# with $\bar\alpha_0 = 0.3$ the same prototype costs 124.8 and it would.
#
# ## 4. Noisy label trajectories $z_0,\dots,z_T$
#
# Chain the posterior steps with the **true** label, starting from $z_0\sim q(z_0\mid y)$: this is
# what NoProp's inference chain would do if every block predicted $\hat u_t = u_y$ exactly. Left:
# the component of $z_t$ along $u_y$ for 40 trajectories, with the mean $\sqrt{\bar\alpha_t}$ and one
# standard deviation of $q(z_t\mid y)$. Right: all 10 coordinates of one trajectory (one-hot
# label 3): the label's row lights up as $t\to T$.

# %%
u = W1[y].expand(40, -1)
Z = plots.sample_label_trajectories(u, schedule, seed=5)
plots.plot_label_trajectories(Z, u, schedule);
plt.show()

# %%
# the same with the learned 20-dimensional embedding
u = W2[y].expand(40, -1)
Z2 = plots.sample_label_trajectories(u, schedule, seed=6)
plots.plot_label_trajectories(Z2, u, schedule);
plt.show()

# %% [markdown]
# How much of the label is left at each $t$? Guess $y$ as the class whose mean $\sqrt{\bar\alpha_t}u_k$ is
# nearest to $z_t$. At $t=0$ the guess is chance (10 %); at $t=T$ it is essentially always right. Blocks near
# $t=1$ must therefore find the class from the **image**; blocks near $T$ mostly clean up a
# label that is already visible. (This is also why evaluating a model with $z$ built from the true
# label, trap 6, says nothing about its accuracy.)

# %%
g = torch.Generator().manual_seed(7)
n = 2000
ys = torch.arange(m).repeat_interleave(n // m)
acc_t = []
for t in range(T + 1):
    z = q_sample(W1[ys], t, schedule, generator=g)
    guess = torch.cdist(z, schedule.alpha_bar[t].sqrt() * W1).argmin(1)
    acc_t.append(float((guess == ys).double().mean()))
print("nearest-mean accuracy from z_t alone, t = 0..T:", [f"{100 * a:.0f}%" for a in acc_t])
assert acc_t[0] < 0.2 and acc_t[-1] > 0.99

# %% [markdown]
# ## 5. Explore: a slider over $t$
#
# Move the slider from $t=0$ (noise) to $t=T$ (label) and change the class. Left: one sample $z_t$
# next to its mean; right: all classes at that $t$, and the nearest-mean accuracy. The widget only
# calls `nplib.course.plots.plot_noised_labels_at`, which you can also call directly with any $W_{embed}$
# and schedule (in a static copy of this notebook only the default view is shown).

# %%
# NBVAL_IGNORE_OUTPUT
# (for `pytest --nbval`: a widget's output is its live view, re-created by every run; its static figure is
# the PNG stored with it)
widgets.noised_labels_slider(W1, schedule, y=3, t=5);

# %% [markdown]
# ## Summary
#
# * Labels are vectors $u_y$ (one-hot, learned orthogonal, or a medoid image). NoProp diffuses
#   **labels**, not images.
# * $q(z_t\mid y) = \mathcal N(\sqrt{\bar\alpha_t}u_y, (1-\bar\alpha_t)I)$ with
#   $\bar\alpha_t = \prod_{s=t}^T\alpha_s$ **increasing** in $t$: time runs from noise ($t=0$) to
#   label ($t=T$). A DDPM-direction cumulative product makes every loss weight negative.
# * The posterior step $z_t = a_t u_y + b_t z_{t-1} + \sqrt{c_t}\,\epsilon$ was recovered by
#   regression; $b_t$ uses $\alpha_{t-1}$, not $\bar\alpha_{t-1}$; the KL term matches its closed
#   form by Monte Carlo.
# * Next: notebook 02 chooses the schedule and studies the loss weights $\mathrm{SNR}(t)-\mathrm{SNR}(t-1)$.
#
# ## Exercises
#
# Each exercise cell is a skeleton: fill in the function that raises `NotImplementedError`, and the
# rest of the cell (already written) uses it and checks it with an `assert` or a table. Until then the
# cell stops with `NotImplementedError`, which is expected: the cell is tagged `raises-exception`, so
# Run-All goes on. In the solved notebook the cell after each exercise is its solution; the student
# copies (`student/`, made by `python -m nplib student`) leave the solutions out.
#
# **Exercise 1.** Compute $\bar\alpha_t = \prod_{s=t}^{T}\alpha_s$ from `schedule.alpha` with one
# cumulative product (hint: `torch.flip`).

# %% tags=["raises-exception"]
def alpha_bar_from_alpha(alpha):
    # alpha_bar_t = prod_{s=t..T} alpha_s
    raise NotImplementedError("Exercise 1: a reversed cumulative product")


assert torch.allclose(alpha_bar_from_alpha(schedule.alpha), schedule.alpha_bar)


# %% tags=["solution"]
def alpha_bar_from_alpha(alpha):
    # alpha_bar_t = prod_{s=t..T} alpha_s
    return torch.flip(torch.cumprod(torch.flip(alpha, [0]), 0), [0])


assert torch.allclose(alpha_bar_from_alpha(schedule.alpha), schedule.alpha_bar)
print(alpha_bar_from_alpha(schedule.alpha))


# %% [markdown]
# **Exercise 2.** Trap 7 (`docs/pitfalls.md`) computes the noised label as $\bar\alpha_t u_y + \sqrt{1-\bar\alpha_t}\,\epsilon$.
# Sample it for the one-hot label 3 at every $t$ and report the total variance
# $E\|z_t\|^2$ next to the correct one. For a unit $u_y$ the correct value is $1\cdot\bar\alpha_t + d(1-\bar\alpha_t)$;
# which $t$ is hurt most?

# %% tags=["raises-exception"]
def noised_label_bug7(u, t, schedule, generator):
    # trap 7: z_t = alpha_bar_t u_y + sqrt(1 - alpha_bar_t) eps   (alpha_bar_t, not its square root)
    raise NotImplementedError("Exercise 2: alpha_bar_t * u + sqrt(1 - alpha_bar_t) * eps, eps drawn with `generator`")


d = W1.shape[1]
u = W1[3].expand(20_000, -1)
lost = []
for t in range(T + 1):
    ab = float(schedule.alpha_bar[t])
    # the same seed for both: the two samples share their eps, so the difference is not Monte-Carlo noise
    right = q_sample(u, t, schedule, generator=torch.Generator().manual_seed(t)).pow(2).sum(1).mean()
    wrong = noised_label_bug7(u, t, schedule, torch.Generator().manual_seed(t)).pow(2).sum(1).mean()
    lost.append(float(right - wrong))
    # E||z_t||^2 = alpha_bar_t ||u_y||^2 + d (1 - alpha_bar_t); with the bug alpha_bar_t^2 ||u_y||^2 + d (1 - alpha_bar_t)
    print(f"t={t:>2}: E||z_t||^2 right {right:.3f} (theory {ab + d * (1 - ab):.3f}), "
          f"bug {wrong:.3f} (theory {ab ** 2 + d * (1 - ab):.3f})")
    assert abs(float(wrong) - (ab ** 2 + d * (1 - ab))) < 0.1, "the bug's E||z_t||^2 is alpha_bar_t^2 + d (1 - alpha_bar_t)"
print("hurt most at t =", max(range(T + 1), key=lambda t: lost[t]))

# %% tags=["solution"]
def noised_label_bug7(u, t, schedule, generator):
    # trap 7: z_t = alpha_bar_t u_y + sqrt(1 - alpha_bar_t) eps   (alpha_bar_t, not its square root)
    ab = float(schedule.alpha_bar[t])
    eps = torch.randn(u.shape, dtype=u.dtype, device=u.device, generator=generator)
    return ab * u + math.sqrt(1 - ab) * eps


d = W1.shape[1]
u = W1[3].expand(20_000, -1)
lost = []
for t in range(T + 1):
    ab = float(schedule.alpha_bar[t])
    # the same seed for both: the two samples share their eps, so the difference is not Monte-Carlo noise
    right = q_sample(u, t, schedule, generator=torch.Generator().manual_seed(t)).pow(2).sum(1).mean()
    wrong = noised_label_bug7(u, t, schedule, torch.Generator().manual_seed(t)).pow(2).sum(1).mean()
    lost.append(float(right - wrong))
    # E||z_t||^2 = alpha_bar_t ||u_y||^2 + d (1 - alpha_bar_t); with the bug alpha_bar_t^2 ||u_y||^2 + d (1 - alpha_bar_t)
    print(f"t={t:>2}: E||z_t||^2 right {right:.3f} (theory {ab + d * (1 - ab):.3f}), "
          f"bug {wrong:.3f} (theory {ab ** 2 + d * (1 - ab):.3f})")
    assert abs(float(wrong) - (ab ** 2 + d * (1 - ab))) < 0.1, "the bug's E||z_t||^2 is alpha_bar_t^2 + d (1 - alpha_bar_t)"
print("hurt most at t =", max(range(T + 1), key=lambda t: lost[t]))
# the lost signal energy alpha_bar_t - alpha_bar_t^2 is largest where alpha_bar_t is nearest 1/2
assert lost.index(max(lost)) == min(range(T + 1), key=lambda t: abs(float(schedule.alpha_bar[t]) - 0.5))


# %% [markdown]
# **Exercise 3.** Check the KL closed form for a *custom* schedule: build one with
# `DTSchedule.from_alpha_bar` whose $\bar\alpha_0 = 0.5$, and compare `kl_prior` with a Monte-Carlo
# estimate for the prototype of class 0 (two functions to fill in).

# %% tags=["raises-exception"]
def schedule_with_alpha_bar_0(alpha_bar_0, T):
    """A DTSchedule whose alpha_bar rises from alpha_bar_0 at t = 0 to 0.99 at t = T (any increasing shape)."""
    raise NotImplementedError("Exercise 3a: DTSchedule.from_alpha_bar(...)")


def kl_monte_carlo(u, schedule, generator):
    """Mean and standard error of log q(z_0|y) - log N(z_0; 0, I) over z_0 ~ q(z_0|y), one z_0 per row of u."""
    raise NotImplementedError("Exercise 3b: q_sample at t = 0, then torch.distributions.Normal(...).log_prob")


custom = schedule_with_alpha_bar_0(0.5, T)
assert custom.T == T and abs(float(custom.alpha_bar[0]) - 0.5) < 1e-12
mc, se = kl_monte_carlo(W3[0].expand(5000, -1), custom, torch.Generator().manual_seed(0))
kl = float(kl_prior(W3[:1], custom))
print(f"closed form {kl:.2f}, Monte Carlo {mc:.2f} +- {se:.2f}")
assert abs(kl - mc) < 5 * se

# %% tags=["solution"]
def schedule_with_alpha_bar_0(alpha_bar_0, T):
    """A DTSchedule whose alpha_bar rises from alpha_bar_0 at t = 0 to 0.99 at t = T (any increasing shape)."""
    return DTSchedule.from_alpha_bar(torch.linspace(alpha_bar_0, 0.99, T + 1), kind="custom")


def kl_monte_carlo(u, schedule, generator):
    """Mean and standard error of log q(z_0|y) - log N(z_0; 0, I) over z_0 ~ q(z_0|y), one z_0 per row of u."""
    ab0 = float(schedule.alpha_bar[0])
    z0 = q_sample(u, 0, schedule, generator=generator)
    q = torch.distributions.Normal(math.sqrt(ab0) * u, math.sqrt(1 - ab0))
    p = torch.distributions.Normal(torch.zeros_like(u), 1.0)
    ratio = (q.log_prob(z0) - p.log_prob(z0)).sum(1)          # log q(z_0|y) - log p(z_0)
    return float(ratio.mean()), float(ratio.std() / math.sqrt(len(u)))


custom = schedule_with_alpha_bar_0(0.5, T)
assert custom.T == T and abs(float(custom.alpha_bar[0]) - 0.5) < 1e-12
mc, se = kl_monte_carlo(W3[0].expand(5000, -1), custom, torch.Generator().manual_seed(0))
kl = float(kl_prior(W3[:1], custom))
print(f"closed form {kl:.2f}, Monte Carlo {mc:.2f} +- {se:.2f}")
assert abs(kl - mc) < 5 * se
