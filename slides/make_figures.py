r"""Generate every figure and every number-bearing table of the slides from nplib.

Run from anywhere (``make -C slides`` runs it from ``slides/``)::

    python make_figures.py [--out figures] [--results ../nplib/results] [--checkpoints ../nplib/checkpoints]

Everything lands in ``slides/figures/`` (git-ignored; never committed):

* ``*.pdf``           matplotlib figures (vector PDF), all text at one size ``FONT_PT``, each figure
                      drawn at most ``FONT_PT / FOOTNOTE_PT`` times wider than the slide shows it;
* ``numbers.tex``     ``\newcommand`` macros for every number quoted in the text of a frame
                      (parameter counts, clipping weights, ...), so no number is typed by hand;
  ``ours.tex``        the configuration of our runs quoted in text (inference steps, ...);
* ``tab_*.tex``       tables: the schedule (``make_schedule``), the clipping study, the posterior
                      Monte-Carlo check; the paper's MNIST numbers beside ours (``PAPER_MNIST`` and
                      ``nplib/checkpoints/*.json``); the chain ablation, the memory / speed / parallel
                      measurements and the forecasts (``nplib/results/*.json``), "not measured yet"
                      where a file is missing;
* ``take_*.tex``      the one-line takeaway of each results frame, its numbers computed from the same file.

Numbers are printed by :func:`fmt` (4 significant digits); ``tests/test_slides.py`` parses the
generated tables and compares them with nplib and with the result files.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NPLIB_NO_DOWNLOAD", "1")  # a slide build never downloads data

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import nplib  # noqa: E402
from nplib.blocks import BlockConfig, DenoisingBlock, count_parameters  # noqa: E402
from nplib.diffusion import kl_prior, posterior_step, q_sample  # noqa: E402
from nplib.schedules import make_schedule  # noqa: E402
from nplib.train import trained_models  # noqa: E402

HERE = Path(__file__).resolve().parent
# fontTools warns about the old timestamps of the Computer Modern fonts it embeds; harmless.
logging.getLogger("fontTools").setLevel(logging.ERROR)

# The deck's palette (the same names as in setup.tex).
C_MAIN = "#1f4e79"    # npblue
C_ACC = "#c0504d"     # npred
C_GREEN = "#4f8a3a"   # npgreen
C_GOLD = "#d9a021"    # npgold
C_GREY = "#7f7f7f"
CLASS_COLORS = [C_MAIN, C_ACC, C_GREEN]

#: The clipping values the slides compare (alpha_bar_T = clip).
CLIPS = (0.99, 0.999, 0.9999)

#: Results the course's runs write; the table says "not measured yet" for a missing one.
EXPECTED_RESULTS = {
    "mnist_dt_small_5ep.json": "NoProp-DT, small block, one-hot, MNIST, 5 epochs",
    "mnist_dt_small_16ep.json": "NoProp-DT, small block, one-hot, MNIST, up to 16 epochs in a 28-minute guard (the README's main job)",
}


# ----------------------------------------------------------------------------- formatting
def fmt(v: float, digits: int = 4) -> str:
    r"""A number for LaTeX math mode, ``digits`` significant digits, ``a\times10^{b}`` if tiny/huge."""
    v = float(v)
    if not math.isfinite(v):
        return r"\infty" if v > 0 else r"-\infty"
    if v == 0:
        return "0"
    e = math.floor(math.log10(abs(v)))
    if -3 <= e < 5:
        dec = max(digits - 1 - e, 0)
        s = f"{v:.{dec}f}"
        return s
    mant = v / 10 ** e
    s = f"{mant:.{digits - 1}f}"
    if abs(float(s)) >= 10:  # rounding 9.9995 -> 10.000
        e += 1
        s = f"{v / 10 ** e:.{digits - 1}f}"
    return rf"{s}\times10^{{{e}}}"


def ratio(v) -> str:
    """A ratio: one decimal below 10, an integer above."""
    v = float(v)
    return f"{v:.1f}" if v < 10 else f"{v:.0f}"


def tex_escape(s: str) -> str:
    """Escape text for LaTeX (file names, config values)."""
    rep = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(rep.get(ch, ch) for ch in str(s))


def write(path: Path, text: str) -> None:
    path.write_text(text)
    print(f"  wrote {path.relative_to(path.parent.parent) if path.parent.parent in path.parents else path}")


def savefig(fig, path: Path) -> None:
    fig.savefig(path, bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    print(f"  wrote {path.name}")


#: Every text size of every figure, in points at the figure's own size: ONE value. Each figure is
#: drawn at most FONT_PT / FOOTNOTE_PT times wider than it is shown on its slide, so its smallest text
#: is at least the slide's \footnotesize (tests/test_slides.py checks this against the .tex widths).
FONT_PT = 9.0
#: \footnotesize of the 10 pt beamer class, in points.
FOOTNOTE_PT = 8.0
#: \textwidth of the 16:9 metropolis slide in points (main.tex writes it into main.log; the build test compares).
TEXTWIDTH_PT = 398.34


def style() -> None:
    plt.rcParams.update({
        "font.size": FONT_PT, "axes.titlesize": FONT_PT, "axes.labelsize": FONT_PT, "legend.fontsize": FONT_PT,
        "xtick.labelsize": FONT_PT, "ytick.labelsize": FONT_PT, "figure.titlesize": FONT_PT,
        "legend.title_fontsize": FONT_PT,
        "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "grid.alpha": 0.25, "figure.dpi": 100, "pdf.fonttype": 42,
        "mathtext.fontset": "dejavusans", "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
        "savefig.pad_inches": 0.02,
        # lines drawn without a colour (e.g. the 'others' of plot_forecast_bands) never take the blue
        # that the deck uses for NoProp
        "axes.prop_cycle": matplotlib.cycler(color=[C_ACC, C_GREEN, C_GOLD, C_GREY]),
    })


# ----------------------------------------------------------------------------- tables
def schedule_table(sched, label: str) -> str:
    """The full schedule, one row per t: alpha, alpha_bar, SNR, weight, a, b, c (notebook 02)."""
    T = sched.T
    lines = [
        r"% generated by slides/make_figures.py from nplib.schedules.make_schedule: do not edit",
        rf"% schedule: {label}",
        r"\begin{tabular}{r*{7}{>{$}r<{$}}}",
        r"\toprule",
        r"$t$ & \alpha_t & \alphabar_t & \SNR(t) & \SNR(t)-\SNR(t-1) & a_t & b_t & c_t \\",
        r"\midrule",
    ]
    for t in range(T + 1):
        cells = [str(t), fmt(sched.alpha[t]), fmt(sched.alpha_bar[t]), fmt(sched.snr[t])]
        if t == 0:
            cells += [r"\text{--}"] * 4
        else:
            cells += [fmt(sched.snr_delta[t - 1]), fmt(sched.a[t - 1]), fmt(sched.b[t - 1]), fmt(sched.c[t - 1])]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def clip_table(scheds: dict) -> str:
    """Clipping alpha_bar_T at 0.99 / 0.999 / 0.9999: the last block's weight against the others."""
    lines = [
        r"% generated by slides/make_figures.py from nplib.schedules.make_schedule: do not edit",
        r"\begin{tabular}{>{$}r<{$}>{$}r<{$}>{$}r<{$}>{$}r<{$}>{$}r<{$}}",
        r"\toprule",
        r"\alphabar_T & \SNR(T) & \text{weight of block } T & \text{blocks } 1..T{-}1 & \text{ratio to block } T{-}1 \\",
        r"\midrule",
    ]
    for clip, s in scheds.items():
        w = s.snr_delta
        others = w[:-1]
        lines.append(
            f"{clip:g} & {fmt(s.snr[-1])} & {float(w[-1]):.0f} & "
            f"{fmt(others.min(), 2)} \\text{{ to }} {fmt(others.max(), 2)} & {ratio(w[-1] / w[-2])} \\\\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures
def class_embeddings_2d(m: int = 3) -> torch.Tensor:
    """m unit vectors in the plane: a 2-D stand-in for W_embed to draw diffusion on labels."""
    ang = torch.tensor([math.pi / 2 + 2 * math.pi * k / m for k in range(m)], dtype=torch.float64)
    return torch.stack([ang.cos(), ang.sin()], dim=1)


def fig_forward_diffusion(out: Path, sched) -> None:
    """Samples of q(z_t | y) = N(sqrt(alpha_bar_t) u_y, (1 - alpha_bar_t) I) for 3 classes in 2-D."""
    W = class_embeddings_2d()
    g = torch.Generator().manual_seed(0)
    ts = [0, 4, 7, 10]
    fig, axes = plt.subplots(1, len(ts), figsize=(6.1, 1.95), sharex=True, sharey=True)
    for ax, t in zip(axes, ts):
        for k in range(W.shape[0]):
            u = W[k].expand(300, 2)
            z = q_sample(u, t, sched, generator=g)
            ax.scatter(z[:, 0], z[:, 1], s=3, alpha=0.45, color=CLASS_COLORS[k], lw=0)
            ax.scatter(*W[k], marker="*", s=90, color=CLASS_COLORS[k], edgecolor="k", lw=0.5, zorder=3)
        ax.set_title(rf"$t={t}$: $\bar\alpha_t={float(sched.alpha_bar[t]):.3g}$")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.set_xticks([-2, 0, 2])
        ax.set_yticks([-2, 0, 2])
    fig.tight_layout(w_pad=0.4)
    savefig(fig, out / "forward_diffusion.pdf")


def fig_schedules(out: Path) -> None:
    """alpha_bar_t and SNR(t) for the cosine and linear schedules (T = 10)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(4.75, 1.45))
    for kind, col in (("cosine", C_MAIN), ("linear", C_ACC)):
        s = make_schedule(kind, 10)
        t = np.arange(11)
        ax1.plot(t, s.alpha_bar.numpy(), "o-", color=col, ms=3.5, label=kind)
        ax2.semilogy(t, s.snr.numpy(), "o-", color=col, ms=3.5, label=kind)
    for ax in (ax1, ax2):
        ax.set_xticks(range(0, 11, 2))
    ax2.legend(frameon=False, loc="lower right", handlelength=1.2)
    ax1.set_xlabel("$t$ (0 noise, $T$ label)")
    ax1.set_ylabel(r"$\bar\alpha_t$")
    ax2.set_xlabel("$t$")
    ax2.set_ylabel(r"SNR$(t)$")
    fig.tight_layout()
    savefig(fig, out / "schedules.pdf")


def fig_weights(out: Path, scheds: dict) -> None:
    """The loss weights SNR(t) - SNR(t-1) for three clipping values (log scale)."""
    fig, ax = plt.subplots(figsize=(3.6, 2.5))
    width = 0.27
    cols = [C_MAIN, C_GOLD, C_ACC]
    for i, ((clip, s), col) in enumerate(zip(scheds.items(), cols)):
        t = np.arange(1, s.T + 1)
        ax.bar(t + (i - 1) * width, s.snr_delta.numpy(), width=width, color=col,
               label=rf"$\bar\alpha_T={clip:g}$: last {float(s.snr_delta[-1]):.0f}")
    ax.set_yscale("log")
    ax.set_ylim(1e-2, 3e5)
    ax.set_xticks(np.arange(1, 11))
    ax.set_xlabel("block $t$")
    ax.set_ylabel(r"SNR$(t)-$SNR$(t-1)$")
    ax.legend(frameon=False, loc="upper left", handlelength=1.0, borderaxespad=0.1)
    fig.tight_layout()
    savefig(fig, out / "weights.pdf")


def fig_coefficients(out: Path, sched) -> None:
    """a_t, b_t and sqrt(c_t) of the posterior step, per block."""
    fig, ax = plt.subplots(figsize=(2.9, 1.6))
    t = np.arange(1, sched.T + 1)
    ax.plot(t, sched.a.numpy(), "o-", color=C_MAIN, ms=3.5, label=r"$a_t$")
    ax.plot(t, sched.b.numpy(), "s-", color=C_GREEN, ms=3.5, label=r"$b_t$")
    ax.plot(t, sched.c.sqrt().numpy(), "^-", color=C_ACC, ms=3.5, label=r"$\sqrt{c_t}$")
    ax.set_xticks(t[::3])
    ax.set_xlabel("block $t$")
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3)
    fig.tight_layout()
    savefig(fig, out / "coefficients.pdf")


def posterior_mc(sched, n: int = 200_000, seed: int = 0) -> list[dict]:
    """Monte-Carlo check: z_{t-1} ~ q(z_{t-1}|y), z_t = a_t u_y + b_t z_{t-1} + sqrt(c_t) eps.

    The result must have the marginal q(z_t | y): mean sqrt(alpha_bar_t) u_y, variance 1 - alpha_bar_t.
    """
    g = torch.Generator().manual_seed(seed)
    u = torch.ones(n, 1, dtype=torch.float64)
    rows = []
    for t in range(1, sched.T + 1):
        z_prev = q_sample(u, t - 1, sched, generator=g)
        z_t = posterior_step(u, z_prev, t, sched, noise=True, generator=g)
        rows.append({"t": t, "n": n, "mean": float(z_t.mean()), "var": float(z_t.var()),
                     "mean_true": math.sqrt(float(sched.alpha_bar[t])), "var_true": 1 - float(sched.alpha_bar[t])})
    return rows


def mc_table(rows: list[dict], n: int) -> str:
    lines = [
        rf"% generated by slides/make_figures.py: Monte-Carlo check with {n} samples per t, do not edit",
        r"\begin{tabular}{r>{$}r<{$}>{$}r<{$}>{$}r<{$}>{$}r<{$}}",
        r"\toprule",
        r"$t$ & \text{mean of } z_t & \sqrt{\alphabar_t} & \text{variance of } z_t & 1-\alphabar_t \\",
        r"\midrule",
    ]
    for r in rows:
        lines.append(f"{r['t']} & {r['mean']:.4f} & {r['mean_true']:.4f} & {r['var']:.4f} & {r['var_true']:.4f} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def fig_chain(out: Path, sched) -> None:
    """The inference chain z_t = a_t u_hat + b_t z_{t-1} + sqrt(c_t) eps in 2-D.

    Left: a perfect block (u_hat = u_y), stochastic chain from z_0 ~ N(0, I).
    Right: an unsure block (u_hat = softmax(logits) @ W_embed with probabilities 0.6 / 0.3 / 0.1),
    noise-free chain from z_0 = 0: the chain still walks towards the favoured class.
    """
    W = class_embeddings_2d()
    g = torch.Generator().manual_seed(1)
    fig, axes = plt.subplots(1, 2, figsize=(4.4, 2.25), sharex=True, sharey=True)
    n = 6
    probs = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    for ax, (title, noise, u_hat) in zip(axes, [
        ("perfect block, noisy chain", True, W[0].expand(n, 2)),
        ("unsure block, noise-free", False, (probs @ W).expand(n, 2)),
    ]):
        z = torch.randn(n, 2, dtype=torch.float64, generator=g) if noise else torch.zeros(n, 2, dtype=torch.float64)
        path = [z]
        for t in range(1, sched.T + 1):
            z = posterior_step(u_hat, z, t, sched, noise=noise, generator=g)
            path.append(z)
        P = torch.stack(path).numpy()  # (T+1, n, 2)
        for i in range(n if noise else 1):
            ax.plot(P[:, i, 0], P[:, i, 1], "o-", color=C_GREY, lw=0.7, ms=2, alpha=0.7)
            ax.scatter(P[0, i, 0], P[0, i, 1], s=10, color=C_GREY, zorder=3)
            ax.scatter(P[-1, i, 0], P[-1, i, 1], s=14, color=C_ACC, zorder=4)
        for k in range(W.shape[0]):
            ax.scatter(*W[k], marker="*", s=120, color=CLASS_COLORS[k], edgecolor="k", lw=0.5, zorder=5)
        if not noise:
            ax.scatter(*(probs @ W).numpy(), marker="x", s=50, color="k", zorder=5)
            ax.annotate(r"$\hat u$", (probs @ W).numpy(), textcoords="offset points", xytext=(5, -10))
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    fig.tight_layout()
    savefig(fig, out / "chain.pdf")


def fig_ct_schedule(out: Path) -> None:
    """NoProp-CT's schedule alpha_bar(t) = sigmoid(-gamma(t)) (SNR(t) = exp(-gamma(t))).

    Draws ``nplib.continuous.LearnedSchedule()`` at initialisation (the course's g0 = -3, g1 = +3) and two other
    members of the same monotone family (gbar(t) = t^2 and sqrt(t), same endpoints), with the
    discrete cosine schedule of NoProp-DT at t/T for comparison.
    """
    t = torch.linspace(0, 1, 401, dtype=torch.float64)
    curves = {}
    try:
        from nplib.continuous import LearnedSchedule
        sched = LearnedSchedule()
        with torch.no_grad():
            gamma0 = sched.gamma(t)
        g0, g1 = float(sched.g0.detach()), float(sched.g1.detach())
        curves[f"learned, at init ($g_0={g0:g}$, $g_1={g1:g}$)"] = gamma0
    except ImportError:  # the continuous-time module is optional for the slides
        g0, g1 = -3.0, 3.0
    for name, gbar in ((r"$\bar g(t)=t^2$", t ** 2), (r"$\bar g(t)=\sqrt{t}$", t.sqrt())):
        # gamma(t) = g0 + (g1 - g0)(1 - gbar(t))
        curves[name] = g0 + (g1 - g0) * (1 - gbar)
    fig, ax1 = plt.subplots(figsize=(4.4, 1.5))
    for (name, gamma), col in zip(curves.items(), [C_MAIN, C_ACC, C_GREEN]):
        # alpha_bar(t) = sigmoid(-gamma(t))
        ax1.plot(t, torch.sigmoid(-gamma), color=col, label=name)
    dt = make_schedule("cosine", 10)
    tk = np.arange(11) / 10
    ax1.plot(tk, dt.alpha_bar.numpy(), "o", color=C_GREY, ms=3, label="DT cosine at $t/T$")
    ax1.set_xlabel("$t$ (0 noise, 1 label)")
    ax1.set_ylabel(r"$\bar\alpha(t)$")
    ax1.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.05), handlelength=1.2)
    fig.tight_layout()
    savefig(fig, out / "ct_schedule.pdf")


def fig_fm_paths(out: Path, sched) -> None:
    """Flow matching's straight paths z_t = t u_y + (1 - t) z_0 against the DT posterior chain."""
    W = class_embeddings_2d()
    g = torch.Generator().manual_seed(3)
    n = 10
    z0 = torch.randn(n, 2, dtype=torch.float64, generator=g)
    fig, axes = plt.subplots(1, 2, figsize=(3.65, 2.1), sharex=True, sharey=True)
    ts = torch.linspace(0, 1, 21, dtype=torch.float64)
    for i in range(n):
        # z_t = t z_1 + (1 - t) z_0 with z_1 = u_y
        path = ts[:, None] * W[0] + (1 - ts[:, None]) * z0[i]
        axes[0].plot(path[:, 0], path[:, 1], color=C_GREY, lw=0.8)
        axes[0].scatter(*z0[i], s=10, color=C_GREY)
    z = z0.clone()
    P = [z]
    for t in range(1, sched.T + 1):
        z = posterior_step(W[0].expand(n, 2), z, t, sched, noise=True, generator=g)
        P.append(z)
    P = torch.stack(P)
    for i in range(n):
        axes[1].plot(P[:, i, 0], P[:, i, 1], color=C_GREY, lw=0.8)
        axes[1].scatter(*P[0, i], s=10, color=C_GREY)
    for ax, title in zip(axes, ["flow matching", "NoProp-DT chain"]):
        for k in range(W.shape[0]):
            ax.scatter(*W[k], marker="*", s=120, color=CLASS_COLORS[k], edgecolor="k", lw=0.5, zorder=5)
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    fig.tight_layout()
    savefig(fig, out / "fm_paths.pdf")


# ----------------------------------------------------------------------------- results
def load_results(results_dir: Path) -> dict[str, dict]:
    """Every readable ``results/*.json`` (name -> content); unreadable files are reported and skipped."""
    found = {}
    if not results_dir.is_dir():
        return found
    for p in sorted(results_dir.glob("*.json")):
        try:
            found[p.name] = json.loads(p.read_text())
        except (OSError, ValueError) as err:
            print(f"  skipping {p.name}: {err}")
    return found


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _pct(v) -> str | None:
    """A fraction (0..1) or a percentage as 'xx.xx'; None when it is not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return f"{100 * v:.2f}" if v <= 1.0 else f"{v:.2f}"


def describe_accuracy(name: str, r: dict) -> dict | None:
    """Extract (what, epochs, accuracy, noise-free, time, hardware) from a training result, or None."""
    acc = _get(r, "final_test_accuracy")
    if acc is None:
        acc = _get(r, "test_accuracy", default=_get(r, "accuracy"))
    if isinstance(acc, dict):
        mean, se, nf = _pct(acc.get("mean")), _pct(acc.get("se")), _pct(acc.get("noise_free"))
        runs = acc.get("runs")
        n_runs = len(runs) if isinstance(runs, list) else None
    else:
        mean, se, nf, n_runs = _pct(acc), None, None, None
    if mean is None:
        return None
    cfg = r.get("config") if isinstance(r.get("config"), dict) else {}
    model = cfg.get("model")
    block = model if isinstance(model, str) else (model.get("model") if isinstance(model, dict) else None)
    variant = cfg.get("variant") or (model.get("variant") if isinstance(model, dict) else None)
    parts = [str(v) for v in (cfg.get("dataset"), variant, block and f"{block} block", cfg.get("embedding"))
             if isinstance(v, (str, int)) and v]
    what = " / ".join(parts) if parts else name[:-5]
    if cfg.get("smoke"):
        what += " (quick mode)"
    epochs = cfg.get("epochs_run", cfg.get("epochs"))
    hw = r.get("hardware") if isinstance(r.get("hardware"), dict) else {}
    dev = hw.get("gpu") or (f"{hw.get('cpu_count')}-core CPU" if hw.get("cpu_count") else hw.get("device", ""))
    secs = r.get("wall_seconds")
    if not isinstance(secs, (int, float)):
        hist = r.get("history") if isinstance(r.get("history"), list) else []
        secs = sum(h.get("seconds", 0) for h in hist if isinstance(h, dict)) or None
    return {"file": name, "what": what, "epochs": epochs, "mean": mean, "se": se, "noise_free": nf,
            "runs": n_runs, "minutes": None if secs is None else secs / 60, "device": dev}


def describe_model(name: str, rec: dict) -> dict:
    """The table row of one record of :func:`nplib.train.trained_models` (through describe_accuracy)."""
    flat = {"config": {k: rec[k] for k in ("dataset", "variant", "embedding", "epochs", "smoke")},
            "hardware": rec["hardware"], "test_accuracy": rec["test_accuracy"], "wall_seconds": rec["seconds"]}
    if rec["block"]:
        flat["config"]["model"] = rec["block"]
    return describe_accuracy(f"{name} ({rec['key']})" if rec["key"] else name, flat)


def results_table(results: dict[str, dict]) -> tuple[str, list[str]]:
    """Our measured accuracies (one row per result file), expected-but-missing files flagged."""
    rows, others = [], []
    for name, r in results.items():
        if not isinstance(r, dict):
            others.append(name)
            continue
        models = trained_models(r)   # the command line's reports, notebook 04's file
        if models:
            rows += [describe_model(name, rec) for rec in models]
            continue
        d = describe_accuracy(name, r)
        if d is None:
            others.append(name)
        else:
            rows.append(d)
    lines = [
        r"% generated by slides/make_figures.py from ../results/*.json: do not edit",
        r"\begin{tabular}{@{}>{\raggedright\arraybackslash}p{0.4\linewidth}rllll@{}}",
        r"\toprule",
        r"run (\texttt{results/}) & epochs & test acc.\ (\%) & noise-free & time & hardware \\",
        r"\midrule",
    ]
    for name, what in EXPECTED_RESULTS.items():
        if name not in results:
            lines.append(rf"{tex_escape(what)}\newline\texttt{{\scriptsize {tex_escape(name)}}} & "
                         r"\multicolumn{5}{l}{\emph{not measured yet}} \\")
    for d in rows:
        acc = d["mean"] + (rf" $\pm$ {d['se']}" if d["se"] is not None else "")
        if d["runs"]:
            acc += rf" \tiny({d['runs']} runs)"
        mins = "--" if d["minutes"] is None else f"{d['minutes']:.1f} min"
        lines.append(rf"{tex_escape(d['what'])}\newline\texttt{{\scriptsize {tex_escape(d['file'])}}} & "
                     rf"{tex_escape(d['epochs'] if d['epochs'] is not None else '--')} & {acc} & "
                     rf"{d['noise_free'] or '--'} & {mins} & {tex_escape(d['device'])} \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    if others:
        # grouped by the name's first word (ablation_*, bench_*, ...), so the line stays one or two lines long
        groups: dict[str, list[str]] = {}
        for n in others:
            groups.setdefault(n.split("_")[0] if "_" in n else n, []).append(n)
        names = [rf"\texttt{{{tex_escape(ns[0] if len(ns) == 1 else g + '_*.json')}}}"
                 + ("" if len(ns) == 1 else f" ({len(ns)})") for g, ns in groups.items()]
        lines.append(r"\par\smallskip{\scriptsize Other result files (not accuracies): " + ", ".join(names) + ".}")
    return "\n".join(lines), others


def provenance(r: dict) -> str:
    """One line: command, date, hardware, quick mode, wall time, as the result file records them."""
    hw = r.get("hardware") if isinstance(r.get("hardware"), dict) else {}
    bits = []
    if r.get("command"):
        bits.append(rf"\texttt{{{tex_escape(str(r['command'])[:90])}}}")
    if hw:
        dev = hw.get("gpu") or f"{hw.get('cpu_count', '?')}-core CPU {tex_escape(hw.get('cpu_model', ''))}".strip()
        bits.append(dev + (f", {hw['torch_threads']} torch threads" if "torch_threads" in hw else ""))
    if isinstance(r.get("wall_seconds"), (int, float)):
        bits.append(rf"wall {r['wall_seconds']:.0f}\,s")
    if r.get("quick") or (isinstance(r.get("config"), dict) and r["config"].get("smoke")):
        bits.append(r"\textbf{quick mode}")
    if r.get("date_utc"):
        bits.append(tex_escape(r["date_utc"]))
    return "; ".join(bits)


def _device(hw) -> str:
    hw = hw if isinstance(hw, dict) else {}
    if hw.get("gpu"):
        return tex_escape(hw["gpu"])
    return f"{hw['cpu_count']}-core CPU" if hw.get("cpu_count") else tex_escape(hw.get("device", "?"))


def _not_measured(what: str, ncols: int) -> str:
    return rf"\multicolumn{{{ncols}}}{{l}}{{\emph{{not measured yet}} ({tex_escape(what)})}} \\"


# ----------------------------------------------------------------------------- paper vs ours
#: The paper's Table 1, MNIST column: PUBLISHED test accuracies (%), mean over 3 seeds x 5 inference
#: runs, quoted from Li, Teh & Pascanu (2025) and never measured here. Paper setup: the paper block on a
#: GPU; inference with T = 10 blocks (DT, backprop) or 1000 steps (CT, FM); 100 epochs for DT and
#: backprop (the paper's Algorithm 1). Each row: (method, paper accuracy, paper inference steps, paper
#: epochs or None where this course does not quote them, our shipped checkpoint or None).
PAPER_MNIST = [
    ("Backprop (one-hot)", 99.46, 10, 100, "nb04_backprop"),
    ("NoProp-DT (one-hot)", 99.47, 10, 100, "nb04_dt"),
    ("NoProp-DT (dim 20)", 99.49, 10, 100, None),
    ("NoProp-DT (prototype)", 99.54, 10, 100, None),
    ("NoProp-CT (one-hot)", 97.84, 1000, None, "nb05_ct"),
    ("NoProp-FM (one-hot)", 99.21, 1000, None, "nb05_fm"),
    ("NoProp-FM (prototype)", 98.52, 1000, None, None),
]


def load_manifests(ckpt_dir: Path) -> dict[str, dict]:
    """The checkpoint manifests ``nplib/checkpoints/NAME.json`` (name -> content)."""
    out = {}
    if ckpt_dir.is_dir():
        for p in sorted(ckpt_dir.glob("*.json")):
            try:
                out[p.stem] = json.loads(p.read_text())
            except (OSError, ValueError) as err:
                print(f"  skipping {p.name}: {err}")
    return out


def our_run(m: dict) -> dict | None:
    """Accuracy, configuration and hardware of one classifier checkpoint manifest (None if it has none)."""
    acc = m.get("test_accuracy") if isinstance(m, dict) else None
    if not isinstance(acc, dict) or not isinstance(acc.get("mean"), (int, float)):
        return None
    cfg = m.get("config", {})
    build = m.get("build", {})
    steps = cfg.get("inference_steps") if cfg.get("variant") in ("ct", "fm") else cfg.get("T")
    return {"mean": 100 * acc["mean"], "se": 100 * acc["se"] if isinstance(acc.get("se"), (int, float)) else None,
            "noise_free": 100 * acc["noise_free"] if isinstance(acc.get("noise_free"), (int, float)) else None,
            "runs": len(acc["runs"]) if isinstance(acc.get("runs"), list) else None,
            "epochs": m.get("epochs"), "steps": steps, "block": build.get("model") or cfg.get("model"),
            "device": _device(m.get("hardware")), "minutes": m.get("train_seconds", 0) / 60,
            "dataset": build.get("dataset", "?")}


def paper_vs_ours_table(manifests: dict[str, dict]) -> tuple[str, dict]:
    """ONE table: per (dataset, method) the paper's published accuracy and ours, with configuration,
    epochs, inference steps and hardware. Returns the tabular and our runs by checkpoint name."""
    lines = [
        r"% generated by slides/make_figures.py: paper = PAPER_MNIST (published, quoted), ours = "
        r"nplib/checkpoints/*.json; do not edit",
        r"\begin{tabular}{@{}llrrrcc>{\raggedright\arraybackslash}p{2.7cm}@{}}",
        r"\toprule",
        r"data & method & \multicolumn{1}{c}{paper} & \multicolumn{1}{c}{ours} & \multicolumn{1}{c}{noise-free}"
        r" & epochs & inference steps & our run: block, \\",
        r" & & \multicolumn{3}{c}{test accuracy (\%)} & paper / ours & paper / ours & hardware, training \\",
        r"\midrule",
    ]
    ours = {}
    for method, paper, p_steps, p_epochs, ckpt in PAPER_MNIST:
        r = our_run(manifests.get(ckpt, {})) if ckpt else None
        p_ep = str(p_epochs) if p_epochs else "--"
        if r is None:
            why = "not run in the course" if ckpt is None else "not measured yet"
            lines.append(rf"MNIST & {method} & {paper:.2f} & \multicolumn{{2}}{{c}}{{\emph{{{tex_escape(why)}}}}} & "
                         rf"{p_ep}/-- & {p_steps}/-- & -- \\")
            continue
        ours[ckpt] = r
        se = None if r["se"] is None else (f"{r['se']:.2f}" if r["se"] >= 0.005 else f"{r['se']:.1g}")
        acc = f"{r['mean']:.2f}" + (rf" $\pm$ {se}" if se is not None else "")
        nf = f"{r['noise_free']:.2f}" if r["noise_free"] is not None else "--"
        steps = rf"{p_steps}/\textbf{{{r['steps']}}}" if r["steps"] != p_steps else f"{p_steps}/{r['steps']}"
        lines.append(rf"MNIST & {method} & {paper:.2f} & {acc} & {nf} & {p_ep}/{r['epochs']} & {steps} & "
                     rf"{tex_escape(r['block'])}, {r['device']}, {r['minutes']:.0f} min \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines), ours


def results_takeaway(ours: dict) -> str:
    """One line computed from the table: our gap to the paper per method, and DT against backprop."""
    paper = {ck: acc for _, acc, _, _, ck in PAPER_MNIST if ck}
    names = {"nb04_backprop": "backprop", "nb04_dt": "DT", "nb05_ct": "CT", "nb05_fm": "FM"}
    gaps = [f"{names[k]} ${ours[k]['mean'] - paper[k]:+.2f}$" for k in names if k in ours]
    if not gaps:
        return r"\emph{Our runs: not measured yet.}"
    s = "Ours minus the paper (points): " + ", ".join(gaps) + "."
    if "nb04_dt" in ours and "nb04_backprop" in ours:
        dt, bp = ours["nb04_dt"], ours["nb04_backprop"]
        s += (rf" DT minus backprop: ${dt['mean'] - bp['mean']:+.2f}$ stochastic"
              + (rf", ${dt['noise_free'] - bp['noise_free']:+.2f}$ noise-free" if dt["noise_free"] and bp["noise_free"] else "")
              + rf" (paper: ${paper['nb04_dt'] - paper['nb04_backprop']:+.2f}$): parity, as the paper claims.")
    return s + "\n"


def fig_history(out: Path, manifests: dict[str, dict]) -> None:
    """Test error per epoch (log scale) of our four MNIST runs, in two panels with the legends below."""
    fig, axes = plt.subplots(1, 2, figsize=(5.5, 2.35))
    panels = [(axes[0], [("nb04_dt", "NoProp-DT", C_MAIN, "o"), ("nb04_backprop", "backprop", C_ACC, "s")]),
              (axes[1], [("nb05_ct", "NoProp-CT", C_GREEN, "^"), ("nb05_fm", "NoProp-FM", C_GOLD, "D")])]
    for ax, runs in panels:
        drawn = 0
        for name, label, col, mk in runs:
            hist = manifests.get(name, {}).get("history")
            if not isinstance(hist, list) or not hist:
                continue
            ep = [int(h["epoch"]) for h in hist]
            err = [100 * (1 - float(h["test_acc"])) for h in hist]
            ax.semilogy(ep, err, marker=mk, ms=3, lw=1.2, color=col, label=f"{label} ({len(ep)} epochs)")
            drawn += 1
        if drawn:
            ax.set_xlabel("epoch")
            ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=1)
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes, color=C_GREY)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0].set_ylabel("test error (%)")
    fig.tight_layout(w_pad=1.5)
    savefig(fig, out / "history.pdf")


#: Short slide labels of the ablation variants of nplib.evaluation.ablation (notebook 04, section 7).
ABLATION_SHORT = {
    "chain": "the model: chain, classifier on $z_T$",
    "chain_last_block": "the chain, block $T$'s own softmax",
    "first_block": "block 1 alone (it sees only $z_0$)",
    "last_block_prior": "block $T$ alone, $z_{T-1}\\sim\\mathcal N(0,I)$",
    "last_block_zeros": "block $T$ alone, $z_{T-1}=0$",
    "shuffle": "chain, each $z_{t-1}$ shuffled across the batch",
    "prior": "chain, each $z_{t-1}$ replaced by fresh noise",
    "zeros": "chain, each $z_{t-1}$ replaced by $0$",
}


def ablation_table(nb04: dict | None) -> tuple[str, str]:
    """The chain ablation of notebook 04 (noise-free chain, MNIST test set): table and takeaway."""
    dt = _get(nb04, "noprop_dt", "ablation")
    bp = _get(nb04, "backprop", "ablation")
    head = [r"% generated by slides/make_figures.py from nplib/results/nb04_mnist.json: do not edit",
            r"\begin{tabular}{@{}lrr@{}}", r"\toprule",
            r"test accuracy (\%), noise-free & NoProp-DT & backprop \\", r"\midrule"]
    if not isinstance(dt, dict) or not isinstance(bp, dict):
        return "\n".join(head + [_not_measured("nplib/results/nb04_mnist.json", 3), r"\bottomrule",
                                 r"\end{tabular}", ""]), r"\emph{not measured yet}"
    for k, label in ABLATION_SHORT.items():
        if k in dt and k in bp:
            lines_k = rf"{label} & {100 * dt[k]:.2f} & {100 * bp[k]:.2f} \\"
            head.append(lines_k)
    head += [r"\bottomrule", r"\end{tabular}", ""]
    p = {k: f"{100 * v:.1f}" for k, v in dt.items()}
    q = {k: f"{100 * v:.1f}" for k, v in bp.items()}
    take = (rf"\textbf{{NoProp-DT}}: block 1 alone scores {p['first_block']}\,\% against the chain's {p['chain']}\,\%: "
            rf"the first block decides. Fed another image's state (shuffle) the chain falls to {p['shuffle']}\,\% and "
            rf"block $T$ fed noise to {p['last_block_prior']}\,\%: the later blocks follow the latent, the chain "
            rf"carries the decision. \textbf{{Backprop}}: block 1 alone {q['first_block']}\,\%, shuffle still "
            rf"{q['shuffle']}\,\%, block $T$ alone ($z_{{T-1}}=0$) {q['last_block_zeros']}\,\%: its last block "
            rf"classifies from the image." + "\n")
    return "\n".join(head), take


def ours_tex(manifests: dict[str, dict], results: dict) -> str:
    r"""Macros for the configuration of our runs quoted in running text (``\OurStepsCT`` ...); '?' if missing."""
    def get(d, *keys):
        v = _get(d, *keys)
        return "?" if v is None else f"{v:g}" if isinstance(v, float) else tex_escape(v)
    bp = manifests.get("nb04_backprop", {})
    macros = {
        "OurStepsCT": get(manifests.get("nb05_ct"), "config", "inference_steps"),
        "OurStepsFM": get(manifests.get("nb05_fm"), "config", "inference_steps"),
        "OurBPWInit": get(bp, "config", "w_init"),
        "OurBPScale": get(bp, "config", "classifier_scale"),
        "OurForecastSamples": get(results.get(FORECAST_FILE), "config", "samples"),
    }
    if bp:
        # alpha_t = tanh(w_t) at initialisation
        macros["OurBPAlphaInit"] = f"{math.tanh(float(_get(bp, 'config', 'w_init'))):.2f}"
    else:
        macros["OurBPAlphaInit"] = "?"
    lines = ["% generated by slides/make_figures.py from nplib/checkpoints/*.json and nplib/results: do not edit"]
    return "\n".join(lines + [rf"\newcommand{{\{k}}}{{{v}}}" for k, v in macros.items()]) + "\n"


# ----------------------------------------------------------------------------- measurements (notebook 06)
def _rows(r, **match) -> list[dict]:
    rows = r.get("rows") if isinstance(r, dict) else None
    return [x for x in rows or [] if isinstance(x, dict) and all(x.get(k) == v for k, v in match.items())]


def _pair(r: dict, **match) -> tuple[dict | None, dict | None]:
    """The NoProp and backprop rows of a benchmark for the same settings."""
    a, b = _rows(r, kind="noprop", **match), _rows(r, kind="backprop", **match)
    return (a[0] if a else None), (b[0] if b else None)


def _frame_source(name: str, r: dict) -> str:
    return rf"{{\scriptsize\color{{npgrey}} Read from \texttt{{nplib/results/{tex_escape(name)}}}: {provenance(r)}.\par}}"


def memory_frame(results: dict) -> tuple[str, str]:
    """Peak training memory above idle, NoProp-DT against backprop (bench_memory.json)."""
    name = "bench_memory.json"
    r = results.get(name)
    head = [r"% generated by slides/make_figures.py from nplib/results/bench_memory.json: do not edit",
            r"\begin{tabular}{@{}lrrrr@{}}", r"\toprule",
            r"block & batch & NoProp-DT (MiB) & backprop (MiB) & NoProp / backprop \\", r"\midrule"]
    if not isinstance(r, dict):
        return "\n".join(head + [_not_measured(name, 5), r"\bottomrule", r"\end{tabular}", ""]), r"\emph{not measured yet}"
    ratios = {}
    for block in ("small", "paper"):
        for bs in sorted({x["batch_size"] for x in _rows(r, block=block, allocator="fixed")}):
            a, b = _pair(r, block=block, batch_size=bs, allocator="fixed")
            if a and b:
                ratios[(block, bs)] = a["peak_delta_mib"] / b["peak_delta_mib"]
                head.append(rf"{block} & {bs} & {a['peak_delta_mib']:.0f} & {b['peak_delta_mib']:.0f} & "
                            rf"{ratios[(block, bs)]:.2f} \\")
    head += [r"\bottomrule", r"\end{tabular}", "", _frame_source(name, r)]
    paper = sorted((bs, v) for (blk, bs), v in ratios.items() if blk == "paper")
    take = ""
    if len(paper) >= 2:
        (b0, v0), (b1, v1) = paper[0], paper[-1]
        take = (rf"Paper block: NoProp-DT needs {v0:.2f}$\times$ backprop's memory at batch {b0} and "
                rf"{v1:.2f}$\times$ at batch {b1} ({1 / v1:.1f}$\times$ less): the gap grows with the batch, because "
                r"backprop keeps all $T$ blocks' activations and NoProp one block's." + "\n")
    return "\n".join(head), take


def speed_frame(results: dict) -> tuple[str, str]:
    """Training throughput (bench_throughput.json) and inference time (bench_inference.json)."""
    tr, inf = results.get("bench_throughput.json"), results.get("bench_inference.json")
    lines = [r"% generated by slides/make_figures.py from nplib/results/bench_{throughput,inference}.json",
             r"\begin{tabular}{@{}lrrr@{}}", r"\toprule",
             r"\multicolumn{4}{@{}l}{\textbf{training} (batch 128)} \\",
             r"block & NoProp-DT (images/s) & backprop (images/s) & NoProp / backprop \\", r"\midrule"]
    rel = {}
    if isinstance(tr, dict):
        for block in ("small", "paper"):
            a, b = _pair(tr, block=block)
            if a and b:
                rel[block] = a["images_per_s"] / b["images_per_s"]
                lines.append(rf"{block} & {a['images_per_s']:.0f} & {b['images_per_s']:.0f} & {rel[block]:.2f} \\")
    else:
        lines.append(_not_measured("bench_throughput.json", 4))
    lines += [r"\midrule", r"\multicolumn{4}{@{}l}{\textbf{inference}, stochastic chain, batch 128} \\",
              r"block & NoProp-DT (ms/image) & backprop (ms/image) & NoProp / backprop \\", r"\midrule"]
    inf_rel = {}
    if isinstance(inf, dict):
        for block in ("small", "paper"):
            a = _rows(inf, kind="noprop", block=block, batch_size=128, noise=True)
            b = _rows(inf, kind="backprop", block=block, batch_size=128)
            if a and b:
                inf_rel[block] = a[0]["ms_per_image"] / b[0]["ms_per_image"]
                lines.append(rf"{block} & {a[0]['ms_per_image']:.2f} & {b[0]['ms_per_image']:.2f} & {inf_rel[block]:.2f} \\")
    else:
        lines.append(_not_measured("bench_inference.json", 4))
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    src = [(n, results[n]) for n in ("bench_throughput.json", "bench_inference.json") if isinstance(results.get(n), dict)]
    if src:
        lines.append(r"{\scriptsize\color{npgrey} Read from " + " and ".join(
            rf"\texttt{{nplib/results/{tex_escape(n)}}}" for n, _ in src) + f" ({_device(src[0][1].get('hardware'))}, "
            + f"{src[0][1]['hardware'].get('torch_threads', '?')} threads).\\par}}")
    take = ""
    if "small" in rel and "paper" in rel:
        take = (rf"Training: NoProp-DT runs at {rel['small']:.2f}$\times$ backprop's throughput with the small block "
                rf"and {rel['paper']:.2f}$\times$ with the paper block: the gap closes as the blocks grow.")
        if inf_rel:
            take += (rf" Inference: both run $T$ blocks in sequence ({min(inf_rel.values()):.2f}--"
                     rf"{max(inf_rel.values()):.2f}$\times$).")
        take += "\n"
    return "\n".join(lines), take


def parallel_frame(results: dict) -> tuple[str, str]:
    """Block-parallel NoProp-DT training: 2 processes x 1 thread against 1 process (bench_parallel.json)."""
    name = "bench_parallel.json"
    r = results.get(name)
    lines = [r"% generated by slides/make_figures.py from nplib/results/bench_parallel.json: do not edit",
             r"\begin{tabular}{@{}llrrrc@{}}", r"\toprule",
             r"block & run & processes $\times$ threads & train time (s) & speed-up vs & parameters equal \\",
             r" & & & & 1 process, 2 threads & to 1 thread's \\", r"\midrule"]
    if not isinstance(r, dict):
        return "\n".join(lines + [_not_measured(name, 6), r"\bottomrule", r"\end{tabular}", ""]), r"\emph{not measured yet}"
    par = {}
    for block in ("small", "paper"):
        rows = _rows(r, block=block)
        single2 = [x for x in rows if x.get("processes") == 1 and x.get("threads_per_process") == 2]
        for x in rows:
            sp = single2[0]["train_seconds"] / x["train_seconds"] if single2 else None
            eq = {True: "yes", False: "no"}.get(x.get("equal_to_single_1_thread"), "")
            lines.append(rf"{block} & {tex_escape(x['run'])} & {x['processes']} $\times$ {x['threads_per_process']} & "
                         rf"{x['train_seconds']:.1f} & {'--' if sp is None else f'{sp:.2f}'} & {eq} \\")
            if x.get("processes", 1) > 1:
                par[block] = x
        if block == "small":
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", "", _frame_source(name, r)]
    take = ""
    s = par.get("small")
    if s:
        take = (rf"Small block, {s['images']} images: 2 processes $\times$ 1 thread train "
                rf"{s['speedup_vs_single_all_threads']:.2f}$\times$ faster than 1 process with 2 threads "
                rf"({s['speedup_vs_single_1_thread']:.2f}$\times$ against 1 thread"
                + (": super-linear" if s["speedup_vs_single_1_thread"] > 2 else "")
                + r"), with exactly the 1-thread parameters; counting process start-up, "
                rf"{s['speedup_vs_single_all_threads_incl_startup']:.2f}$\times$: at this size start-up dominates." + "\n")
    return "\n".join(lines), take


# ----------------------------------------------------------------------------- time series (notebook 07)
FORECAST_FILE = "forecast_notebook07_ETTh1_L336.json"


def forecast_table(results: dict) -> tuple[str, str, dict]:
    """The notebook-07 forecast comparison (one horizon): model, MSE, MAE, interval coverage."""
    r = results.get(FORECAST_FILE)
    sets = r.get("results") if isinstance(r, dict) else None
    lines = [rf"% generated by slides/make_figures.py from nplib/results/{FORECAST_FILE}: do not edit",
             r"\begin{tabular}{@{}lrrrr@{}}", r"\toprule",
             r"model & MSE & MAE & 80\,\% interval covers & 95\,\% interval covers \\", r"\midrule"]
    if not isinstance(sets, list) or not sets or not isinstance(sets[0], dict):
        return "\n".join(lines + [_not_measured(FORECAST_FILE, 5), r"\bottomrule", r"\end{tabular}", ""]), \
            r"\emph{not measured yet}", {}
    s = sets[0]
    rows = {x["model"].strip(): x for x in s["rows"]}
    for x in s["rows"]:
        cov = x.get("coverage") or {}
        c80 = f"{100 * cov['80']:.1f}\\,\\%" if "80" in cov else "--"
        c95 = f"{100 * cov['95']:.1f}\\,\\%" if "95" in cov else "--"
        lines.append(rf"{tex_escape(x['model'].strip())} & {x['mse']:.3f} & {x['mae']:.3f} & {c80} & {c95} \\")
    lines += [r"\bottomrule", r"\end{tabular}", "",
              rf"{{\scriptsize\color{{npgrey}} ETTh1 {tex_escape(s['mode'])}, \texttt{{lookback}} {s['lookback']}, "
              rf"horizon {s['horizon']}, {s['rows'][5].get('windows', '?') if len(s['rows']) > 5 else '?'} test windows, "
              rf"standardised; read from \texttt{{nplib/results/{tex_escape(FORECAST_FILE)}}} "
              rf"({tex_escape(r.get('source', ''))}; {_device(r.get('hardware'))}).\par}}"]
    take = ""
    mean = rows.get("NoProp AE, mean of 40 samples")
    dl, bp = rows.get("DLinear-style"), rows.get("same network, backprop end to end")
    if mean and dl and bp:
        take = (rf"NoProp's mean forecast (MSE {mean['mse']:.3f}) is {100 * (mean['mse'] / dl['mse'] - 1):.0f}\,\% "
                rf"above DLinear's ({dl['mse']:.3f}) and {100 * (mean['mse'] / bp['mse'] - 1):.1f}\,\% above the same "
                rf"network trained end to end ({bp['mse']:.3f}); its raw 80\,\% interval covers only "
                rf"{100 * mean['coverage']['80']:.1f}\,\%: the chain's spread is too narrow." + "\n")
    return "\n".join(lines), take, s


def fig_forecast(out: Path, overall: dict, window: int = 1000, variable: str = "OT", samples: int = 200) -> str:
    """One ETTh1 test window: the shipped forecaster's bands (nplib.timeseries.plot_forecast_bands).

    Loads ``nplib.timeseries.load_pretrained("nb07_forecaster")`` and the ETTh1 test windows it was
    trained for; returns a one-line takeaway (or why there is no plot)."""
    fig, ax = plt.subplots(figsize=(5.5, 2.2))
    take = ""
    try:
        from nplib import timeseries as ts

        model, man = ts.load_pretrained("nb07_forecaster", "cpu")
        b = man["build"]
        data = ts.prepare_forecast_data(b["dataset"], b["lookback"], b["horizon"], b["mode"])
        c = list(data.columns).index(variable)
        i = min(window, len(data.test) - 1)
        idx = torch.tensor([i])
        x, y = data.test.x(idx), data.test.y(idx)  # (1, lookback, C), (1, horizon, C)
        g = torch.Generator().manual_seed(0)
        ys = model.forecast(x.permute(0, 2, 1).reshape(-1, x.shape[1]), noise=True, samples=samples,
                            generator=g, decoder_noise=True)[:, c]  # (S, horizon)
        q = torch.quantile(ys, torch.tensor([0.025, 0.1, 0.9, 0.975]), dim=0)
        bands = {"mean": ys.mean(0), "q0.025": q[0], "q0.1": q[1], "q0.9": q[2], "q0.975": q[3]}
        others = {"seasonal naive (24 h)": ts.seasonal_naive_forecast(x, b["horizon"])[0, :, c]}
        ts.plot_forecast_bands(x[0, -168:, c], y[0, :, c], bands, others, ax=ax)
        ax.set_ylabel(f"{variable} (standardised)")
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        inside = int(((y[0, :, c] >= q[1]) & (y[0, :, c] <= q[2])).sum())
        cov = _get(overall, "rows", default=[])
        cov80 = [x_["coverage"]["80"] for x_ in cov if isinstance(x_.get("coverage"), dict)]
        take = (rf"Test window {i}, variable {variable}, {samples} chains: the true future lies inside the 80\,\% band "
                rf"for {inside} of {b['horizon']} hours here" +
                (rf"; over all test windows and variables the raw 80\,\% band covers only {100 * cov80[0]:.1f}\,\%: "
                 r"on average the chain's spread is too narrow to be a calibrated forecast uncertainty" if cov80 else "")
                + ".\n")
    except Exception as err:  # no ETTh1 CSV (NPLIB_DATA) or no checkpoint: say so on the slide
        print(f"  forecast figure: {type(err).__name__}: {err}")
        ax.text(0.5, 0.5, "no forecast plot: ETTh1 data or the nb07_forecaster checkpoint not found",
                ha="center", va="center", transform=ax.transAxes, color=C_GREY, wrap=True)
        ax.set_xticks([])
        ax.set_yticks([])
        take = (r"\emph{No forecast plot in this build: the ETTh1 CSV was not found (set \texttt{NPLIB\_DATA}) "
                r"or the checkpoint is missing.}" + "\n")
    fig.tight_layout()
    savefig(fig, out / "forecast.pdf")
    return take


# ----------------------------------------------------------------------------- notebooks
#: Notebook names the library's docstrings already fix; others are found in ../notebooks.
KNOWN_NOTEBOOKS = {
    "01": "01_forward_diffusion_on_label_embeddings",
    "02": "02_noise_schedules_and_snr",
    "03": "03_one_denoising_block",
    "04": "04_noprop_dt_mnist",
    "05": "05_continuous_time_and_flow_matching",
    "06": "06_backprop_vs_noprop",
    "07": "07_timeseries_autoencoder",
}


def notebook_names(nb_dir: Path) -> dict[str, str]:
    """NN -> NN_name for every notebooks/NN_name.py or .ipynb (falling back on KNOWN_NOTEBOOKS)."""
    names = dict(KNOWN_NOTEBOOKS)
    if nb_dir.is_dir():
        for p in sorted(nb_dir.iterdir()):
            m = re.fullmatch(r"(\d\d)_([A-Za-z0-9_]+)\.(py|ipynb)", p.name)
            if m:
                names[m.group(1)] = f"{m.group(1)}_{m.group(2)}"
    return names


def notebooks_tex(names: dict[str, str]) -> str:
    r"""``\nb{NN}`` prints the notebook's path, or "notebook NN" when it does not exist yet."""
    lines = ["% generated by slides/make_figures.py from the files in ../notebooks: do not edit",
             r"\newcommand{\nb}[1]{\ifcsname nb@#1\endcsname\texttt{notebooks/\csname nb@#1\endcsname}"
             r"\else notebook~#1\fi}"]
    for nn, name in sorted(names.items()):
        lines.append(rf"\expandafter\def\csname nb@{nn}\endcsname{{{tex_escape(name)}}}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- numbers
def numbers_tex(scheds: dict, sched, mc_rows) -> str:
    r"""Macros for every number quoted in running text (``\NumLastWeightA`` ...)."""
    def block_params(cfg, shape=(1, 28, 28), d=10, m=10):
        return count_parameters(DenoisingBlock(shape, d, m, cfg))

    p_paper = block_params(BlockConfig.paper())
    p_paper_cifar = block_params(BlockConfig.paper(), (3, 32, 32))
    p_small = block_params(BlockConfig.small())
    letters = "ABC"
    macros = {
        "NumT": str(sched.T),
        "NumClipDefault": f"{float(sched.alpha_bar[-1]):g}",
        "NumAlphaBarZero": fmt(sched.alpha_bar[0]),
        "NumSnrT": fmt(sched.snr[-1]),
        "NumWeightMin": fmt(sched.snr_delta[:-1].min(), 2),
        "NumWeightMaxOther": fmt(sched.snr_delta[:-1].max(), 2),
        "NumBlockParamsPaper": f"{p_paper:,}".replace(",", "{,}"),
        "NumBlockParamsPaperM": f"{p_paper / 1e6:.2f}",
        "NumBlockParamsPaperCifarM": f"{p_paper_cifar / 1e6:.2f}",
        "NumBlockParamsSmall": f"{p_small:,}".replace(",", "{,}"),
        "NumMcMaxErr": fmt(max(max(abs(r["mean"] - r["mean_true"]), abs(r["var"] - r["var_true"])) for r in mc_rows), 1),
        # standard error of a sample variance of n Gaussian draws: sqrt(2 / n) * variance
        "NumMcSE": fmt(max(math.sqrt(2 / r["n"]) * r["var_true"] for r in mc_rows), 1),
        "NumMcN": f"{mc_rows[0]['n']:,}".replace(",", "{,}"),
        # bug 2: b_t with sqrt(alpha_bar_{t-1}) instead of sqrt(alpha_{t-1}) is smaller by sqrt(alpha_bar_t)
        "NumBWrongMax": fmt(float((1 / sched.alpha_bar[1:].sqrt()).max()), 2),
        "NumKLOneHot": fmt(float(kl_prior(torch.eye(10, dtype=torch.float64)[:1], sched)[0])),
        "NumAOne": fmt(sched.a[0]), "NumBOne": fmt(sched.b[0]), "NumCOne": fmt(sched.c[0]),
        "NumAT": fmt(sched.a[-1]), "NumBT": fmt(sched.b[-1]), "NumCT": fmt(sched.c[-1]),
    }
    try:  # the course's learned-schedule initialisation (notebook 05)
        from nplib.continuous import LearnedSchedule
        ls = LearnedSchedule()
        g0, g1 = float(ls.g0.detach()), float(ls.g1.detach())
        # alpha_bar(0) = sigmoid(-gamma(0)) = sigmoid(-g1),  alpha_bar(1) = sigmoid(-g0)
        macros.update({"NumCTgZero": f"{g0:+g}", "NumCTgOne": f"{g1:+g}",
                       "NumCTAlphaBarZero": fmt(1 / (1 + math.exp(g1)), 2), "NumCTAlphaBarOne": fmt(1 / (1 + math.exp(g0)), 2),
                       "NumCTAlphaBarZeroSeven": fmt(1 / (1 + math.exp(7.0)), 2)})
    except ImportError:
        pass
    # KL(q(z_0|y) || N(0, I)) = 1/2 [alpha_bar_0 (||u_y||^2 - d) - d ln(1 - alpha_bar_0)]: its gradient in u_y is
    # alpha_bar_0 u_y; doubling ||u_y||^2 from 1 to 2 raises it by alpha_bar_0 / 2
    macros["NumKLGrowth"] = fmt(float(sched.alpha_bar[0]) / 2, 2)
    try:  # what the chain contributes to the forecaster (python -m nplib ablation; nplib/results/ablation_checkpoints.json)
        from nplib import reference
        fc = next(a for a in reference.load_result("ablation_checkpoints")["results"]["nb07_forecaster"]["ablation"]
                  if not a["noise"])["rows"]
        dt = next(a for a in reference.load_result("ablation_checkpoints")["results"]["nb04_dt"]["ablation"]
                  if not a["noise"])["rows"]
        macros.update({"NumFcChainMSE": f"{fc['chain']:.4f}", "NumFcBlockOneMSE": f"{fc['first_block_alone']:.4f}",
                       "NumFcLastBlockMSE": f"{fc['last_block_alone_zeros']:.2f}",
                       "NumDtBlockOneGap": f"{100 * (dt['chain'] - dt['first_block_alone']):.2f}"})
    except (ImportError, FileNotFoundError, KeyError, StopIteration):
        macros.update({"NumFcChainMSE": "?", "NumFcBlockOneMSE": "?", "NumFcLastBlockMSE": "?", "NumDtBlockOneGap": "?"})
    for letter, (clip, s) in zip(letters, scheds.items()):
        macros[f"NumClip{letter}"] = f"{clip:g}"
        macros[f"NumLastWeight{letter}"] = f"{float(s.snr_delta[-1]):.0f}"
        macros[f"NumLastRatio{letter}"] = ratio(s.snr_delta[-1] / s.snr_delta[-2])
    lines = ["% generated by slides/make_figures.py from nplib: do not edit"]
    lines += [rf"\newcommand{{\{k}}}{{{v}}}" for k, v in macros.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ part 13: what the chain does
#: The result files of part 13 (python -m nplib ablation / block-alone; notebook 08).
CHAIN_FILES = {"mnist": "ablation_checkpoints.json", "fashion": "ablation_fashionmnist.json",
               "learned": "ablation_fashionmnist_learned.json", "alone": "chain_block_alone_fashionmnist.json",
               "remedy": "chain_remedy_fashionmnist.json"}


def _noise_free(res, name=None) -> dict | None:
    """The noise-free ablation of checkpoint ``name`` (or of the only result) in a ``python -m nplib ablation`` file."""
    runs = _get(res, "results")
    if not isinstance(runs, dict) or not runs:
        return None
    entry = runs.get(name) if name else next(iter(runs.values()))
    return next((a for a in _get(entry, "ablation", default=[]) if not a.get("noise")), None)


def chain_curves(results: dict) -> dict:
    """Label -> noise-free ablation result for the per-block figure of part 13 (missing files left out)."""
    curves = {"MNIST, one-hot": _noise_free(results.get(CHAIN_FILES["mnist"]), "nb04_dt"),
              "FashionMNIST, one-hot": _noise_free(results.get(CHAIN_FILES["fashion"]), "nb08_fashion_dt_onehot"),
              "FashionMNIST, learned": _noise_free(results.get(CHAIN_FILES["learned"])),
              "FashionMNIST, equal mass": _noise_free(results.get(CHAIN_FILES["fashion"]), "nb08_fashion_dt_equalmass")}
    return {k: v for k, v in curves.items() if v}


def fig_chain_blocks(out: Path, results: dict) -> None:
    """Per-block accuracy along the chain minus the whole chain's (each block read out alone on the chain's latent)."""
    curves = chain_curves(results)
    fig, ax = plt.subplots(figsize=(2.9, 1.55))
    colors = [C_MAIN, C_ACC, C_GOLD, C_GREEN]
    for (label, r), c in zip(curves.items(), colors):
        blocks = r["blocks"]
        # block t alone - the chain, in points
        ax.plot([b["block"] for b in blocks], [100 * (b["accuracy"] - r["rows"]["chain"]) for b in blocks],
                "o-", ms=3, color=c, label=label)
    ax.axhline(0, color=C_GREY, ls="--", lw=0.7)
    if not curves:
        ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes, color=C_GREY)
    ax.set_xlabel("block $t$ (alone, on the chain's $z_{t-1}$)")
    ax.set_ylabel("minus the chain (points)")
    ax.set_xticks(range(1, 11))
    if curves:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    savefig(fig, out / "chain_blocks.pdf")


def chain_tex(results: dict) -> str:
    r"""Macros ``\NumCh...`` for the numbers of part 13; '?' where a file or a key is missing."""
    from nplib.lab.chain import signal_shares

    macros = {}

    def pct(key, v):
        macros[key] = "?" if not isinstance(v, (int, float)) else f"{100 * v:.2f}"

    for key, r in (("Mnist", _noise_free(results.get(CHAIN_FILES["mnist"]), "nb04_dt")),
                   ("Fm", _noise_free(results.get(CHAIN_FILES["fashion"]), "nb08_fashion_dt_onehot")),
                   ("FmL", _noise_free(results.get(CHAIN_FILES["learned"]))),
                   ("Em", _noise_free(results.get(CHAIN_FILES["fashion"]), "nb08_fashion_dt_equalmass")),
                   ("EmThree", _noise_free(results.get(CHAIN_FILES["fashion"]), "nb08_fashion_dt_equalmass_T3"))):
        pct(f"NumCh{key}Chain", _get(r, "rows", "chain"))
        pct(f"NumCh{key}BlockOne", _get(r, "rows", "first_block_alone"))
        pct(f"NumCh{key}DecidedOne", r["blocks"][0]["decided_fraction"] if r else None)
        pct(f"NumCh{key}Prior", _get(r, "rows", "chain_z_prior"))
    alone = results.get(CHAIN_FILES["alone"])
    pct("NumChAloneDenoise", _get(alone, "results", "denoise", "test_accuracy"))
    pct("NumChAloneCE", _get(alone, "results", "ce", "test_accuracy"))
    macros["NumChAloneEpochs"] = str(_get(alone, "config", "epochs", default="?"))
    remedy = _get(results.get(CHAIN_FILES["remedy"]), "models", default={})
    for key, name in (("Fm", "cosine_T10"), ("Em", "equal_mass_T10"), ("EmThree", "equal_mass_T3")):
        pct(f"NumChRem{key}Stoch", _get(remedy, name, "test_accuracy", "mean"))
        m = _get(remedy, name, "train_seconds")
        macros[f"NumChRem{key}Minutes"] = "?" if m is None else f"{m / 60:.0f}"
    macros["NumChEpochs"] = str(_get(remedy, "cosine_T10", "epochs", default="?"))
    cos, em = make_schedule("cosine", 10), make_schedule("equal_mass", 10)
    share = signal_shares(cos)
    macros["NumChShareLastTwo"] = f"{100 * float(share[-2:].sum()):.0f}"
    macros["NumChShareFirst"] = f"{100 * float(share[0]):.2f}"
    macros["NumChShareFirstEm"] = f"{100 * float(signal_shares(em)[0]):.2f}"
    macros["NumChAbOneCos"] = f"{float(cos.alpha_bar[1]):.2f}"
    macros["NumChAbOneEm"] = f"{float(em.alpha_bar[1]):.2f}"
    lines = ["% generated by slides/make_figures.py from nplib/results (part 13): do not edit"]
    return "\n".join(lines + [rf"\newcommand{{\{k}}}{{{v}}}" for k, v in macros.items()]) + "\n"


def chain_remedy_take(results: dict) -> str:
    """Part 13's remedy table (FashionMNIST, cosine vs equal mass; noise-free ablation) and its reading."""
    fa = results.get(CHAIN_FILES["fashion"])
    remedy = _get(results.get(CHAIN_FILES["remedy"]), "models", default={})
    rows = [("cosine, $T=10$", "nb08_fashion_dt_onehot", "cosine_T10"),
            ("equal mass, $T=10$", "nb08_fashion_dt_equalmass", "equal_mass_T10"),
            ("equal mass, $T=3$", "nb08_fashion_dt_equalmass_T3", "equal_mass_T3")]
    head = [r"% generated by slides/make_figures.py from nplib/results: do not edit",
            r"{\centering\scriptsize\setlength{\tabcolsep}{4pt}", r"\begin{tabular}{@{}lrrrrr@{}}", r"\toprule",
            r"FashionMNIST, one-hot & chain & block 1 alone & chain $-$ block 1 & decided at block 1 & stochastic \\",
            r"\midrule"]
    got = {}
    for label, name, key in rows:
        r = _noise_free(fa, name)
        acc = _get(remedy, key, "test_accuracy", "mean")
        if not r:
            head.append(rf"{label} & \multicolumn{{5}}{{c}}{{not measured}} \\")
            continue
        c, b1, d1 = r["rows"]["chain"], r["rows"]["first_block_alone"], r["blocks"][0]["decided_fraction"]
        got[key] = (c, b1, d1)
        st = "?" if acc is None else f"{100 * acc:.2f}"
        head.append(rf"{label} & {100 * c:.2f} & {100 * b1:.2f} & {100 * (c - b1):+.2f} & {100 * d1:.1f} & {st} \\")
    head += [r"\bottomrule", r"\end{tabular}\par}", ""]
    if "cosine_T10" in got and "equal_mass_T10" in got:
        (c0, b0, d0), (c1, b1, d1) = got["cosine_T10"], got["equal_mass_T10"]
        more = (c1 - b1) > (c0 - b0) + 0.002 and d1 < d0 - 0.01
        verdict = (r"Equal mass makes the chain carry \textbf{more} of the decision" if more
                   else r"Equal mass does \textbf{not} make the chain carry the decision")
        head.append(rf"\par\smallskip\footnotesize {verdict}: chain $-$ block 1 {100 * (c1 - b1):+.2f} points "
                    rf"(cosine {100 * (c0 - b0):+.2f}), decided at block 1 {100 * d1:.1f}\,\% (cosine {100 * d0:.1f}\,\%); "
                    rf"the chain scores {100 * (c1 - c0):+.2f} points against the cosine model." + "\n")
    return "\n".join(head)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(HERE / "figures"), help="output folder (default slides/figures)")
    p.add_argument("--results", default=str(HERE.parent / "nplib" / "results"), help="folder of result JSON files")
    p.add_argument("--notebooks", default=str(HERE.parent / "notebooks"), help="folder of the course notebooks")
    p.add_argument("--checkpoints", default=None,
                   help="folder of the checkpoint manifests NAME.json (our accuracies, configurations, hardware); "
                        "default: the installed nplib's shipped checkpoints (nplib.pretrained.CHECKPOINT_DIR)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    style()
    print(f"make_figures: nplib {nplib.__version__}, writing into {out}")

    sched = make_schedule("cosine", 10)  # the course default: cosine, T = 10, alpha_bar in [1e-4, 0.99]
    scheds = {clip: make_schedule("cosine", 10, alpha_bar_max=clip) for clip in CLIPS}

    write(out / "tab_schedule.tex", schedule_table(sched, "cosine, T = 10, alpha_bar clipped to [1e-4, 0.99]"))
    write(out / "tab_schedule_linear.tex", schedule_table(make_schedule("linear", 10),
                                                          "linear, T = 10, alpha_bar from 1e-4 to 0.99"))
    write(out / "tab_clip.tex", clip_table(scheds))
    n_mc = 1_000_000
    mc_rows = posterior_mc(sched, n=n_mc)
    write(out / "tab_posterior_mc.tex", mc_table(mc_rows, n_mc))
    write(out / "numbers.tex", numbers_tex(scheds, sched, mc_rows))
    write(out / "notebooks.tex", notebooks_tex(notebook_names(Path(args.notebooks))))

    fig_forward_diffusion(out, sched)
    fig_schedules(out)
    fig_weights(out, scheds)
    fig_coefficients(out, sched)
    fig_chain(out, sched)
    fig_ct_schedule(out)
    fig_fm_paths(out, sched)

    results = load_results(Path(args.results))
    if args.checkpoints is None:
        from nplib.pretrained import CHECKPOINT_DIR
        args.checkpoints = str(CHECKPOINT_DIR)
    manifests = load_manifests(Path(args.checkpoints))
    print(f"  results: {len(results)} file(s) in {args.results}: {', '.join(results) or 'none'}")
    print(f"  checkpoint manifests: {', '.join(manifests) or 'none'} in {args.checkpoints}")
    # part 9: the paper's numbers and ours in one table; the history; the chain ablation
    table, ours = paper_vs_ours_table(manifests)
    write(out / "tab_paper_vs_ours.tex", table)
    write(out / "take_results.tex", results_takeaway(ours))
    fig_history(out, manifests)
    table, take = ablation_table(results.get("nb04_mnist.json"))
    write(out / "tab_ablation.tex", table)
    write(out / "take_ablation.tex", take)
    write(out / "tab_results.tex", results_table(results)[0])  # appendix: every accuracy result file
    write(out / "ours.tex", ours_tex(manifests, results))
    # part 10: three curated measurement frames (notebook 06's benchmarks)
    for key, fn in (("memory", memory_frame), ("speed", speed_frame), ("parallel", parallel_frame)):
        table, take = fn(results)
        write(out / f"tab_{key}.tex", table)
        write(out / f"take_{key}.tex", take)
    # part 11: the forecast table and one forecast plot
    table, take, overall = forecast_table(results)
    write(out / "tab_forecast.tex", table)
    write(out / "take_forecast.tex", take)
    write(out / "take_forecast_plot.tex", fig_forecast(out, overall))
    # part 13: what the chain does (per-block curves, the explanation, the remedy)
    fig_chain_blocks(out, results)
    write(out / "numbers_chain.tex", chain_tex(results))
    write(out / "take_chain_remedy.tex", chain_remedy_take(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
