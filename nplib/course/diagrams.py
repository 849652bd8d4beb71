r"""Data-flow diagrams of NoProp-DT, drawn from code (matplotlib boxes and arrows, no stored image).

Introduced in notebooks/03_one_denoising_block, sections 2 (training: one block's local loss) and
5 (inference: the chain). The names are the course's (docs/STYLE.md): ``x``, ``z_t``, ``u_hat_t``,
``u_y``, ``W_embed``, ``alpha_bar``, ``T``; time runs from noise (``z_0``) to label (``z_T``).

* Training, block t: the label y gives ``u_y`` (row y of ``W_embed``), a noisy
  ``z_{t-1} ~ q(z_{t-1} | y)`` is SAMPLED from it (no other block runs), block t maps
  ``(x, z_{t-1})`` to ``u_hat_t = softmax(logits) W_embed``, and the loss is the weighted squared
  error ``(T/2) eta (SNR(t) - SNR(t-1)) ||u_hat_t - u_y||^2``. Its gradient stays in block t
  (and a learned ``W_embed``).
* Inference: ``z_0 ~ N(0, I)``, then block 1, ..., block T in sequence, each step
  ``z_t = a_t u_hat_t + b_t z_{t-1} + sqrt(c_t) eps``, the image x entering every block; the
  classifier reads ``z_T``.

Bad input (a ``T`` that is not an integer >= 1, a ``t`` outside 1..T, an unknown ``which``)
raises ``ValueError``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

__all__ = ["plot_data_flow", "WHICH"]

#: The parts :func:`plot_data_flow` can draw.
WHICH = ("training", "inference", "both")

_FILL = {"data": "#e8f0fb", "block": "#fde9c8", "loss": "#fbe0e0", "sample": "#e6f4e6", "off": "#f2f2f2"}


def _check(T, t, which) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer >= 1 (the number of blocks), got {T!r}")
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if t is None:
        return max(1, (T + 1) // 2)
    if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= T:
        raise ValueError(f"t must be a block index in 1..T = 1..{T}, got {t!r}")
    return t


def _box(ax, x, y, w, h, text, kind="data", fontsize=9, **kw):
    """A rounded box centred at (x, y), w x h in data units, with ``text`` inside; returns its edges."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.3,rounding_size=0.8",
                                fc=_FILL[kind], ec=kw.pop("ec", "0.25"), lw=kw.pop("lw", 1.0),
                                ls=kw.pop("ls", "-"), zorder=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, zorder=3, **kw)
    return {"l": (x - w / 2 - 0.4, y), "r": (x + w / 2 + 0.4, y), "t": (x, y + h / 2 + 0.4),
            "b": (x, y - h / 2 - 0.4)}


def _arrow(ax, start, end, text=None, color="0.2", ls="-", fontsize=9, offset=(0, 1.2), **kw):
    ax.annotate("", xy=end, xytext=start, zorder=1,
                arrowprops=dict(arrowstyle="-|>", color=color, lw=1.3, ls=ls, shrinkA=0, shrinkB=0, **kw))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, ha="center",
                va="bottom", fontsize=fontsize, color=color)


def _path(ax, points, color="0.2", ls="-"):
    """Straight segments through ``points``, with an arrow head on the last one."""
    xs, ys = zip(*points[:-1])
    ax.plot(xs, ys, color=color, lw=1.3 if ls == "-" else 1.5, ls=ls, zorder=1, solid_capstyle="butt")
    _arrow(ax, points[-2], points[-1], color=color, ls=ls)


def _training(ax, T: int, t: int) -> None:
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 42)
    ax.axis("off")
    ax.set_title(f"Training block t = {t} of T = {T}: one local loss, no other block involved", fontsize=11)
    y_top, y_mid = 34, 18
    lab = _box(ax, 7, y_top, 10, 5, "label $y$")
    uy = _box(ax, 27, y_top, 18, 5, "$u_y$ = row $y$ of $W_{embed}$")
    q = _box(ax, 62, y_top, 34, 6.5,
             r"$z_{t-1} \sim q(z_{t-1}\mid y)$" + "\n" + r"$\sqrt{\bar\alpha_{t-1}}\,u_y+\sqrt{1-\bar\alpha_{t-1}}\,\epsilon$",
             kind="sample")
    x = _box(ax, 7, y_mid, 10, 5, "image $x$")
    blk = _box(ax, 35, y_mid, 14, 6, f"block $t$ = {t}", kind="block", fontsize=10, fontweight="bold")
    uh = _box(ax, 62, y_mid, 22, 6, r"$\hat u_t$ = softmax(logits) $W_{embed}$")
    loss = _box(ax, 89, y_mid, 19, 8.5, "loss $L_t$ =\n" + r"$\frac{T}{2}\eta\,(\mathrm{SNR}(t)-\mathrm{SNR}(t-1))$"
                + "\n" + r"$\times\ \|\hat u_t-u_y\|^2$", kind="loss", fontsize=8.5)
    _arrow(ax, lab["r"], uy["l"])
    _arrow(ax, uy["r"], q["l"])
    _arrow(ax, x["r"], blk["l"])
    # z_{t-1} goes down into block t
    _arrow(ax, (q["b"][0] - 10, q["b"][1]), (blk["t"][0] + 3, blk["t"][1]), r"$z_{t-1}$", offset=(-3.5, 0.2))
    _arrow(ax, blk["r"], uh["l"], "logits", offset=(0, 0.8))
    _arrow(ax, uh["r"], loss["l"])
    # the target u_y, over the top into the loss
    _path(ax, [uy["t"], (uy["t"][0], 40), (loss["t"][0], 40), loss["t"]])
    ax.text(74, 40.6, "target $u_y$", fontsize=9, ha="center", va="bottom")
    # the gradient of L_t: back into block t only
    _path(ax, [loss["b"], (loss["b"][0], 10.5), (blk["b"][0], 10.5), blk["b"]], color="C3", ls="--")
    ax.text(62, 9.6, r"gradient of $L_t$: into block $t$ only (and into $W_{embed}$ if it is learned)",
            color="C3", fontsize=9, ha="center", va="top")
    if T > 1:
        runs = [(1, t - 1), (t + 1, T)]
        names = " and ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs if a <= b)
        _box(ax, 35, 2.8, 58, 3.4, f"the other {T - 1} block{'s' if T > 2 else ''} ({names}): "
             "not run, no gradient", kind="off", fontsize=8.5, color="0.35", ls="--", ec="0.6")


def _inference(ax, T: int) -> None:
    shown = list(range(1, T + 1)) if T <= 4 else [1, 2, None, T]   # None: the elided middle blocks
    n = len(shown)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 30)
    ax.axis("off")
    ax.set_title(f"Inference: the chain $z_0 \\to z_1 \\to \\dots \\to z_T$ through all T = {T} blocks, "
                 "then the classifier", fontsize=11)
    y_x, y_z = 25, 12
    z0 = _box(ax, 6, y_z, 9, 5, "$z_0\\sim\\mathcal{N}(0, I)$", kind="sample", fontsize=8.5)
    clf = _box(ax, 84, y_z, 10, 5, "classifier", kind="block")
    out = _box(ax, 96, y_z, 5, 5, r"$\hat y$")
    left, right = 17, 73
    step = (right - left) / n
    centres = [left + step * (i + 0.5) for i in range(n)]
    xb = _box(ax, (centres[0] + centres[-1]) / 2, y_x, centres[-1] - centres[0] + 10, 4,
              "image $x$ (the same input to every block)")
    prev = z0["r"]
    prev_name = "$z_0$"
    for c, s in zip(centres, shown):
        if s is None:
            ax.text(c, y_z, r"$\cdots$", ha="center", va="center", fontsize=14)
            _arrow(ax, prev, (c - 3, y_z), prev_name)
            prev, prev_name = (c + 3, y_z), f"$z_{{{T - 1}}}$"
            continue
        b = _box(ax, c, y_z, 8, 5, f"block {s}", kind="block")
        _arrow(ax, prev, b["l"], prev_name)
        _arrow(ax, (c, xb["b"][1]), b["t"], color="0.45")
        prev, prev_name = b["r"], f"$z_{{{s}}}$" if s != T else "$z_T$"
    _arrow(ax, prev, clf["l"], prev_name)
    _arrow(ax, clf["r"], out["l"])
    ax.text(50, 3.5, r"block $t$: $\hat u_t$ = softmax(logits) $W_{embed}$, then "
            r"$z_t = a_t\,\hat u_t + b_t\,z_{t-1} + \sqrt{c_t}\,\epsilon$   ($a_t, b_t, c_t$ from $\bar\alpha$; "
            r"$\epsilon = 0$ noise-free)", ha="center", va="center", fontsize=9)


def plot_data_flow(T: int = 10, t: int | None = None, which: str = "both", figsize=None):
    """How data flows in NoProp-DT: one block's local loss in training, and the chain at inference.

    Introduced in notebooks/03_one_denoising_block, sections 2 and 5. ``T`` is the number of
    blocks, ``t`` the block whose training is drawn (default: the middle one), ``which`` one of
    ``"training"``, ``"inference"``, ``"both"``. With more than four blocks the inference chain
    draws blocks 1, 2, ..., T with the middle ones elided. Returns the ``Figure``.
    """
    t = _check(T, t, which)
    parts = ["training", "inference"] if which == "both" else [which]
    heights = {"training": 4.6, "inference": 3.1}
    fig, axes = plt.subplots(len(parts), 1, squeeze=False,
                             figsize=figsize or (12, sum(heights[p] for p in parts)),
                             gridspec_kw={"height_ratios": [heights[p] for p in parts]})
    for ax, part in zip(axes[:, 0], parts):
        if part == "training":
            _training(ax, T, t)
        else:
            _inference(ax, T)
    fig.tight_layout()
    return fig
