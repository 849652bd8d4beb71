r"""Figures of the course: plain matplotlib functions, each returning its ``Figure``.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings and
notebooks/02_noise_schedules_and_snr; the interactive explorers of :mod:`nplib.course.widgets` only call
these functions, so everything drawn interactively is also unit-tested (tests/test_plots.py).

Conventions: time runs from noise (t = 0) to label (t = T); arrays indexed t = 1..T (``snr_delta``,
``a``, ``b``, ``c``) hold block t at position t - 1 (see :mod:`nplib.schedules`). Bad input raises
``ValueError``. Figures are created with ``pyplot`` so that the inline backend shows them; close
them with ``plt.close(fig)`` when drawing many.

Devices: the plots take tensors from any device (a model's ``W_embed`` on a GPU, a chain's ``z``)
and compute on the CPU in float64; their noise comes from a CPU generator seeded with ``seed``, so a
figure is the same whatever device its inputs came from. :func:`sample_label_trajectories` returns
its trajectories on the device of ``u_y`` (same numbers: the CPU generator draws on the CPU).
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
import torch

from nplib.diffusion import posterior_step, q_sample
from nplib.schedules import DTSchedule, make_schedule

__all__ = [
    "plot_alpha_bar", "plot_snr", "plot_loss_weights", "plot_abc", "plot_schedules",
    "plot_schedule_explorer", "plot_marginals", "plot_label_trajectories", "sample_label_trajectories",
    "plot_noised_labels_at", "plot_images", "plot_loss_curve", "embedding_projection",
]


# ---------------------------------------------------------------------------------------- helpers
def _as_schedules(schedules) -> list[DTSchedule]:
    if isinstance(schedules, DTSchedule):
        return [schedules]
    if not isinstance(schedules, (list, tuple)) or not schedules:
        raise ValueError("pass a DTSchedule or a non-empty list of DTSchedule objects")
    for s in schedules:
        if not isinstance(s, DTSchedule):
            raise ValueError(f"expected DTSchedule objects, got {type(s).__name__}")
    return list(schedules)


def _labels(schedules: list[DTSchedule], labels) -> list[str]:
    if labels is None:
        return [f"{s.kind}, T={s.T}, " + r"$\bar\alpha_T$" + f"={float(s.alpha_bar[-1]):.4g}" for s in schedules]
    labels = list(labels)
    if len(labels) != len(schedules):
        raise ValueError(f"{len(labels)} labels for {len(schedules)} schedules")
    return labels


def _axes(ax, figsize=(5, 3.5)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


# ---------------------------------------------------------------------------------------- schedules
def plot_alpha_bar(schedules, labels=None, ax=None):
    """``alpha_bar_t`` against t (increasing: noise at t = 0, label at t = T).

    Introduced in notebooks/02_noise_schedules_and_snr, section 1.
    """
    schedules = _as_schedules(schedules)
    fig, ax = _axes(ax)
    for s, lab in zip(schedules, _labels(schedules, labels)):
        ax.plot(range(s.T + 1), _np(s.alpha_bar), marker="o", ms=3, label=lab)
    ax.set_xlabel("t  (0 = noise, T = label)")
    ax.set_ylabel(r"$\bar\alpha_t$")
    ax.set_title(r"$\bar\alpha_t=\prod_{s=t}^{T}\alpha_s$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_snr(schedules, labels=None, ax=None):
    """``SNR(t) = alpha_bar_t / (1 - alpha_bar_t)`` on a log scale.

    Introduced in notebooks/02_noise_schedules_and_snr, section 1.
    """
    schedules = _as_schedules(schedules)
    fig, ax = _axes(ax)
    for s, lab in zip(schedules, _labels(schedules, labels)):
        ax.semilogy(range(s.T + 1), _np(s.snr), marker="o", ms=3, label=lab)
    ax.set_xlabel("t")
    ax.set_ylabel("SNR(t)")
    ax.set_title(r"SNR$(t)=\bar\alpha_t/(1-\bar\alpha_t)$ (log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig


def plot_loss_weights(schedules, labels=None, ax=None, log: bool = True, annotate: bool = True):
    """Block t's loss weight ``SNR(t) - SNR(t-1)`` as bars (grouped for several schedules).

    Introduced in notebooks/02_noise_schedules_and_snr, section 3. ``log=True`` uses a log axis
    (the weights span several orders of magnitude); non-positive weights (a bug) are drawn in red
    and force a linear axis so that they are visible. ``annotate`` writes the last block's weight
    (the one the clip sets): above its bar for one schedule, in the legend entry for several
    (side-by-side bars leave no room for a label each).
    """
    schedules = _as_schedules(schedules)
    fig, ax = _axes(ax)
    labs = _labels(schedules, labels)
    n = len(schedules)
    width = 0.8 / n
    any_bad = False
    for i, (s, lab) in enumerate(zip(schedules, labs)):
        w = _np(s.snr_delta)
        t = np.arange(1, s.T + 1) + (i - (n - 1) / 2) * width
        colors = [f"C{i}" if v > 0 else "red" for v in w]
        any_bad |= bool((w <= 0).any())
        if annotate and n > 1:
            lab = f"{lab}: last weight {w[-1]:.4g}"
        ax.bar(t, w, width=width, color=colors, label=lab)
        if annotate and n == 1 and s.T <= 20:
            ax.annotate(f"{w[-1]:.4g}", (t[-1], w[-1]), ha="center", va="bottom", fontsize=7)
    if log and not any_bad:
        ax.set_yscale("log")
    ax.set_xlabel("block t")
    ax.set_ylabel("SNR(t) - SNR(t-1)")
    ax.set_title("loss weight of block t")
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=7)
    return fig


def plot_abc(schedules, labels=None, ax=None):
    """The posterior coefficients ``a_t``, ``b_t`` and ``c_t`` against t = 1..T.

    Introduced in notebooks/02_noise_schedules_and_snr, section 4. Solid ``a_t``, dashed ``b_t``,
    dotted ``c_t``; one colour per schedule.
    """
    schedules = _as_schedules(schedules)
    fig, ax = _axes(ax)
    for i, (s, lab) in enumerate(zip(schedules, _labels(schedules, labels))):
        t = np.arange(1, s.T + 1)
        ax.plot(t, _np(s.a), "-", color=f"C{i}", marker="o", ms=3, label=f"$a_t$ {lab}")
        ax.plot(t, _np(s.b), "--", color=f"C{i}", marker="s", ms=3, label=f"$b_t$ {lab}")
        ax.plot(t, _np(s.c), ":", color=f"C{i}", marker="^", ms=3, label=f"$c_t$ {lab}")
    ax.set_xlabel("t")
    ax.set_title(r"$z_t = a_t u_y + b_t z_{t-1} + \sqrt{c_t}\,\epsilon$")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=1 if len(schedules) == 1 else 2)
    return fig


def plot_schedules(schedules, labels=None, figsize=(11, 7)):
    """Four panels: ``alpha_bar``, SNR (log), the loss weights (bars) and ``a_t, b_t, c_t``.

    Introduced in notebooks/02_noise_schedules_and_snr, section 1.
    """
    schedules = _as_schedules(schedules)
    labels = _labels(schedules, labels)
    fig, axs = plt.subplots(2, 2, figsize=figsize)
    plot_alpha_bar(schedules, labels, ax=axs[0, 0])
    plot_snr(schedules, labels, ax=axs[0, 1])
    plot_loss_weights(schedules, labels, ax=axs[1, 0])
    plot_abc(schedules, labels, ax=axs[1, 1])
    fig.tight_layout()
    return fig


def plot_schedule_explorer(kind: str = "cosine", T: int = 10, alpha_bar_max: float = 0.99,
                           alpha_bar_min: float = 1e-4):
    """The four schedule panels for one schedule, with the last block's share of the total weight.

    Introduced in notebooks/02_noise_schedules_and_snr, section 7 (the interactive explorer of
    :func:`nplib.course.widgets.schedule_explorer` calls it). Invalid settings raise ``ValueError`` from
    :func:`nplib.schedules.make_schedule`.
    """
    s = make_schedule(kind, T, alpha_bar_min=alpha_bar_min, alpha_bar_max=alpha_bar_max)
    fig = plot_schedules(s)
    w = _np(s.snr_delta)
    others = w[:-1]
    rng = f"; others {others.min():.3g} .. {others.max():.3g}" if others.size else ""
    fig.suptitle(f"{kind}, T = {T}, alpha_bar clipped to [{alpha_bar_min:g}, {alpha_bar_max:g}]: "
                 f"last weight {w[-1]:.4g} = {100 * w[-1] / w.sum():.1f}% of the total{rng}", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- marginals
def embedding_projection(W_embed: torch.Tensor) -> torch.Tensor:
    """A fixed (d, 2) orthonormal basis: the two leading principal axes of the class embeddings.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 2. Every latent z
    (and u_y) is drawn as ``z @ P``; for d = 2 the identity is used.
    """
    W = torch.as_tensor(W_embed).detach().cpu().double()
    if W.ndim != 2 or W.shape[0] < 2 or W.shape[1] < 2:
        raise ValueError(f"W_embed must be (m >= 2 classes, d >= 2 dims), got shape {tuple(W.shape)}")
    if W.shape[1] == 2:
        return torch.eye(2, dtype=torch.float64)
    Wc = W - W.mean(0, keepdim=True)
    _, _, Vh = torch.linalg.svd(Wc, full_matrices=False)
    P = Vh[:2].T.clone()
    # fix the signs so the picture does not flip between runs
    for k in range(2):
        i = int(P[:, k].abs().argmax())
        if P[i, k] < 0:
            P[:, k] = -P[:, k]
    return P


def _check_W_sched(W_embed, schedule):
    if not isinstance(schedule, DTSchedule):
        raise ValueError(f"schedule must be a DTSchedule, got {type(schedule).__name__}")
    W = torch.as_tensor(W_embed).detach().cpu().double()   # plots compute on the CPU
    if W.ndim != 2:
        raise ValueError(f"W_embed must be a 2-D (m, d) tensor, got shape {tuple(W.shape)}")
    return W


def _check_ts(ts, schedule) -> list[int]:
    ts = list(ts)
    if not ts:
        raise ValueError("ts must name at least one time step")
    for t in ts:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) <= schedule.T:
            raise ValueError(f"every t must be an integer in [0, {schedule.T}], got {t!r}")
    return [int(t) for t in ts]


def plot_marginals(W_embed, schedule: DTSchedule, ts: Sequence[int] = (0, 3, 6, 10), n_per_class: int = 100,
                   classes: Sequence[int] | None = None, seed: int = 0, figsize=None):
    """Scatter of samples of ``q(z_t | y) = N(sqrt(alpha_bar_t) u_y, (1 - alpha_bar_t) I)``, one colour per class.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 2. One panel per t,
    every point projected on the two leading principal axes of the drawn classes' embeddings
    (:func:`embedding_projection`; with 3 one-hot or orthogonal classes the picture is exact, with
    more classes some overlap in 2-D); the crosses are the clean embeddings ``u_y``. The first
    panel's legend names the class of each colour.
    """
    W = _check_W_sched(W_embed, schedule)
    ts = _check_ts(ts, schedule)
    m = W.shape[0]
    classes = list(range(m)) if classes is None else list(classes)
    if not classes or any(not 0 <= c < m for c in classes):
        raise ValueError(f"classes must be indices in [0, {m - 1}], got {classes}")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    P = embedding_projection(W[classes] if len(classes) >= 2 else W)
    g = torch.Generator().manual_seed(seed)
    fig, axs = plt.subplots(1, len(ts), figsize=figsize or (3.2 * len(ts), 3.3), squeeze=False)
    U = _np(W[classes] @ P)
    lim = float(np.abs(U).max()) + 2.5
    for ax, t in zip(axs[0], ts):
        for k, c in enumerate(classes):
            u = W[c].expand(n_per_class, -1)
            # z_t = sqrt(alpha_bar_t) u_y + sqrt(1 - alpha_bar_t) eps
            z = _np(q_sample(u, t, schedule, generator=g) @ P)
            ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.5, color=f"C{k % 10}", label=f"y = {c}")
        ax.scatter(U[:, 0], U[:, 1], marker="x", s=50, c="k", label=r"clean $u_y$")
        ab = float(schedule.alpha_bar[t])
        ax.set_title(f"t = {t}: " + r"$\bar\alpha_t$" + f" = {ab:.3g}", fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    axs[0, 0].legend(fontsize=7, loc="lower left", markerscale=2, framealpha=0.9)
    fig.suptitle(r"samples of $q(z_t\mid y)$ for classes " + ", ".join(map(str, classes)) + " (2 leading principal axes of their $u_y$)", fontsize=10)
    fig.tight_layout()
    return fig


def sample_label_trajectories(u_y: torch.Tensor, schedule: DTSchedule, seed: int = 0) -> torch.Tensor:
    """Noisy label trajectories ``z_0 .. z_T`` given the true label, shape (T+1, batch, d).

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 4.
    ``z_0 ~ q(z_0 | y)``, then ``z_t = a_t u_y + b_t z_{t-1} + sqrt(c_t) eps`` (the posterior step
    with the true label: what the chain would do if every block predicted ``u_hat_t = u_y``).
    The noise comes from a CPU generator seeded with ``seed`` (the same numbers on every device);
    the result is float64 on the device of ``u_y``.
    """
    if not isinstance(schedule, DTSchedule):
        raise ValueError(f"schedule must be a DTSchedule, got {type(schedule).__name__}")
    u_y = torch.as_tensor(u_y).detach().double()
    if u_y.ndim != 2:
        raise ValueError(f"u_y must be (batch, d), got shape {tuple(u_y.shape)}")
    g = torch.Generator().manual_seed(seed)
    z = q_sample(u_y, 0, schedule, generator=g)
    zs = [z]
    for t in range(1, schedule.T + 1):
        z = posterior_step(u_y, z, t, schedule, noise=True, generator=g)
        zs.append(z)
    return torch.stack(zs)


def plot_label_trajectories(z: torch.Tensor, u_y: torch.Tensor, schedule: DTSchedule | None = None,
                            figsize=(11, 3.6)):
    """Noisy label trajectories ``z_0 .. z_T``: the component along ``u_y``, and one trajectory as a heat map.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 4. ``z`` is
    (T+1, batch, d) (from :func:`sample_label_trajectories` or a model's chain) and ``u_y``
    (batch, d). Left: ``<z_t, u_y> / ||u_y||^2`` for every trajectory, with the marginal's mean
    ``sqrt(alpha_bar_t)`` and +-1 standard deviation ``sqrt((1 - alpha_bar_t)) / ||u_y||`` when a
    schedule is given. Right: every coordinate of the first trajectory over t.
    """
    z = torch.as_tensor(z).detach().cpu().double()
    u_y = torch.as_tensor(u_y).detach().cpu().double()
    if z.ndim != 3:
        raise ValueError(f"z must be (T+1, batch, d), got shape {tuple(z.shape)}")
    if u_y.shape != z.shape[1:]:
        raise ValueError(f"u_y must be (batch, d) = {tuple(z.shape[1:])}, got {tuple(u_y.shape)}")
    if schedule is not None and schedule.T + 1 != z.shape[0]:
        raise ValueError(f"z has {z.shape[0]} time steps but the schedule has T + 1 = {schedule.T + 1}")
    T = z.shape[0] - 1
    norm2 = u_y.pow(2).sum(-1)
    if (norm2 == 0).any():
        raise ValueError("every u_y must be non-zero")
    proj = (z * u_y).sum(-1) / norm2  # (T+1, batch)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=figsize, gridspec_kw={"width_ratios": [1.2, 1]})
    t = np.arange(T + 1)
    ax0.plot(t, _np(proj), color="C0", alpha=0.35, lw=1)
    if schedule is not None:
        mean = _np(schedule.alpha_bar.sqrt())
        sd = _np((1 - schedule.alpha_bar).sqrt()) / float(norm2.sqrt().mean())
        ax0.plot(t, mean, "k-", lw=2, label=r"mean $\sqrt{\bar\alpha_t}$")
        ax0.fill_between(t, mean - sd, mean + sd, color="k", alpha=0.12, label=r"$\pm 1$ s.d. of $q(z_t|y)$")
        ax0.legend(fontsize=7, loc="upper left")
    ax0.set_xlabel("t  (0 = noise, T = label)")
    ax0.set_ylabel(r"$\langle z_t, u_y\rangle / \|u_y\|^2$")
    ax0.set_title(f"{z.shape[1]} noisy label trajectories", fontsize=10)
    ax0.grid(alpha=0.3)
    lim = float(z[:, 0].abs().max())
    im = ax1.imshow(_np(z[:, 0].T), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                    extent=(-0.5, T + 0.5, z.shape[2] - 0.5, -0.5))
    # t and the coordinate are indices: integer ticks only
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_xlabel("t")
    ax1.set_ylabel("coordinate of z")
    ax1.set_title("first trajectory, every coordinate", fontsize=10)
    fig.colorbar(im, ax=ax1, fraction=0.05)
    fig.tight_layout()
    return fig


def plot_noised_labels_at(t: int, W_embed=None, schedule: DTSchedule | None = None, y: int = 3,
                          n_per_class: int = 60, seed: int = 0, figsize=(10, 3.6)):
    """One noised label ``z_t ~ q(z_t | y)`` as bars next to ``u_y``, and samples of 3 classes at time t.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 5 (the slider of
    :func:`nplib.course.widgets.noised_labels_slider` calls it). Defaults: one-hot ``W_embed`` (10
    classes) and the course's cosine schedule with T = 10. The right panel's title gives the
    accuracy of guessing y as the class whose mean ``sqrt(alpha_bar_t) u_k`` is nearest to ``z_t``
    (``n_per_class`` samples of every class): how much of the label is left at time t.
    """
    schedule = make_schedule("cosine", 10) if schedule is None else schedule
    W = _check_W_sched(torch.eye(10) if W_embed is None else W_embed, schedule)
    (t,) = _check_ts([t], schedule)
    m, d = W.shape
    if not 0 <= y < m:
        raise ValueError(f"y must be a class index in [0, {m - 1}], got {y}")
    g = torch.Generator().manual_seed(seed)
    z = q_sample(W[y:y + 1], t, schedule, generator=g)[0]
    ab = float(schedule.alpha_bar[t])
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=figsize, gridspec_kw={"width_ratios": [1.3, 1]})
    idx = np.arange(d)
    ax0.bar(idx - 0.2, _np(math.sqrt(ab) * W[y]), width=0.4, color="k", alpha=0.5,
            label=r"mean $\sqrt{\bar\alpha_t}\,u_y$")
    ax0.bar(idx + 0.2, _np(z), width=0.4, color="C1", label=r"a sample $z_t$")
    ax0.axhline(0, color="k", lw=0.5)
    ax0.set_xlabel("coordinate")
    ax0.set_title(f"y = {y}, t = {t}: " + r"$\bar\alpha_t$" + f" = {ab:.3g}, SNR = {ab / (1 - ab):.3g}",
                  fontsize=10)
    ax0.legend(fontsize=7)
    # nearest-embedding guess of the label from z_t alone, over many samples: how much label is left
    shown = [y, (y + 1) % m, (y + 2) % m]          # drawn: y and two other classes, in their plane
    P = embedding_projection(W[shown])
    ys = torch.arange(m).repeat_interleave(n_per_class)
    Z = q_sample(W[ys], t, schedule, generator=g)
    guess = torch.cdist(Z, math.sqrt(ab) * W).argmin(1)
    acc = float((guess == ys).double().mean())
    Zp = _np(Z @ P)
    ys = ys.numpy()
    for k in shown:
        sel = ys == k
        ax1.scatter(Zp[sel, 0], Zp[sel, 1], s=4, alpha=0.5, color=f"C{k % 10}", label=f"y = {k}")
    U = _np(W[shown] @ P)
    ax1.scatter(U[:, 0], U[:, 1], marker="x", s=50, c="k")
    lim = float(np.abs(U).max()) + 2.5
    ax1.set_xlim(-lim, lim)
    ax1.set_ylim(-lim, lim)
    ax1.set_aspect("equal")
    ax1.legend(fontsize=7, loc="lower left", markerscale=3)
    ax1.set_title(f"3 classes at t = {t}; nearest-mean guess of y\n(all {m} classes): {100 * acc:.0f}%",
                  fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- misc
def plot_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10, cmap="gray",
                figsize=None):
    """A grid of images (N, C, H, W), e.g. the prototype (medoid) embeddings.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 1.
    """
    x = torch.as_tensor(images).detach().float().cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize or (1.3 * ncols, 1.45 * nrows), squeeze=False)
    for i, ax in enumerate(axs.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = x[i]
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo + 1e-12)
        ax.imshow((img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy(), cmap=cmap)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_curve(losses: Sequence[float], smooth: int = 20, title: str = "training loss", ax=None,
                    ylabel: str = "loss", logy: bool = False):
    """A loss per step, with a running mean over ``smooth`` steps.

    Introduced in notebooks/03_one_denoising_block, section 3.
    """
    v = _np(list(losses) if not isinstance(losses, torch.Tensor) else losses).ravel()
    if v.size == 0:
        raise ValueError("losses is empty")
    if not np.isfinite(v).all():
        raise ValueError("losses contains NaN or infinite values")
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    fig, ax = _axes(ax, figsize=(6, 3.5))
    ax.plot(np.arange(1, v.size + 1), v, color="C0", alpha=0.35, lw=1, label="per step")
    k = min(smooth, v.size)
    if k > 1:
        run = np.convolve(v, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, v.size + 1), run, color="C0", lw=2, label=f"running mean ({k} steps)")
    if logy and (v > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig
