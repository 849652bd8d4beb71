r"""Looking inside a trained NoProp-DT model: predictions, the chain step by step, ablations, figures.

Introduced in notebooks/04_noprop_dt_mnist (sections 3-7).

Everything here works for :class:`~nplib.models.NoPropDT` and for the
:class:`~nplib.models.BackpropBaseline` (same blocks, trained end to end), and never looks at a
label to make a prediction: labels enter only where a prediction is scored.

**The chain, re-run with hooks.** :func:`run_chain` repeats the model's own inference loop

    z_0 ~ N(0, I)  (or z_0 = 0 without noise)
    u_hat_t = softmax(logits_t(z_{t-1}, x)) @ W_embed
    z_t = a_t u_hat_t + b_t z_{t-1} + sqrt(c_t) eps_t           (NoProp-DT)
    z_t = (1 - alpha_t) z_{t-1} + alpha_t u_hat_t               (backprop baseline)
    p(y | z_T) = softmax(Linear(z_T))

and keeps every ``z_t``, every ``u_hat_t`` and every block's logits. Its ``z_mode`` argument
replaces the latent a block receives, which is how the ablations of section 6 are built:

* ``"chain"``: the model itself (gives exactly :meth:`NoPropDT.sample`'s logits);
* ``"shuffle"``: before every block, ``z_{t-1}`` is permuted across the batch, so each image is
  processed with the chain state of another image;
* ``"prior"``: before every block, ``z_{t-1}`` is replaced by fresh ``N(0, I)`` noise, so no block
  receives any information from the chain;
* ``"zeros"``: before every block, ``z_{t-1} = 0``.

**Per-step accuracy.** At every step t, block t's own prediction is ``argmax u_hat_t`` (nearest
class embedding for learned embeddings; for one-hot embeddings the same as the argmax of block t's
softmax) and the classifier can be applied to ``z_t`` too: :func:`per_step_accuracy`.

Spec section 8, bug 4: accuracy that comes from a backprop-trained CNN rather than from the chain.
In NoProp-DT each block sees the image, so each block is an image classifier in its own right;
:func:`ablation` measures how much the chain adds on top of one block alone.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from nplib.data import TensorData, TensorLoader
from nplib.devices import make_generator, model_device, randn, randperm
from nplib.diffusion import posterior_step
from nplib.models import BackpropBaseline, NoPropDT

__all__ = ["Z_MODES", "run_chain", "classify_batch", "chain_predictions", "per_step_accuracy",
           "ablation", "ABLATION_LABELS", "confusion_matrix", "mean_se", "estimate_epoch_seconds",
           "plot_learning_curves", "plot_confusion_matrix", "plot_predictions", "plot_chain",
           "plot_per_step_accuracy", "plot_prediction_votes", "plot_ablation"]

#: What a block receives in place of z_{t-1} (module docstring).
Z_MODES = ("chain", "shuffle", "prior", "zeros")


class _EvalMode:
    """Context manager: the model in eval mode (BatchNorm running statistics, no dropout)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        self.model.train(self.was_training)
        return False


def _nearest_class(u: torch.Tensor, W_embed: torch.Tensor) -> torch.Tensor:
    """Index of the class embedding nearest to each row of ``u`` (batch, d) -> (batch,)."""
    # argmin_k ||u - u_k||^2  =  argmin_k ( ||u_k||^2 - 2 u . u_k )
    scores = 2 * u @ W_embed.T - W_embed.pow(2).sum(dim=1)
    return scores.argmax(dim=1)


def _chain_update(model, t: int, u_hat: torch.Tensor, z_prev: torch.Tensor, noise: bool,
                  generator: torch.Generator | None) -> torch.Tensor:
    if isinstance(model, NoPropDT):
        # z_t = a_t u_hat_t(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) eps_t
        return posterior_step(u_hat, z_prev, t, model.schedule, noise=noise, generator=generator)
    if isinstance(model, BackpropBaseline):
        alpha_t = torch.tanh(model.w[t - 1])
        # z_t = (1 - alpha_t) z_{t-1} + alpha_t u_hat_t(z_{t-1}, x)
        return (1 - alpha_t) * z_prev + alpha_t * u_hat
    raise ValueError(f"run_chain needs a NoPropDT or a BackpropBaseline, got {type(model).__name__}")


@torch.no_grad()
def run_chain(model, x: torch.Tensor, noise: bool = False, generator: torch.Generator | None = None,
              z_mode: str = "chain") -> dict:
    """Run the inference chain on images ``x`` and keep everything; never looks at a label.

    Introduced in notebooks/04_noprop_dt_mnist, section 3 (``z_mode`` in section 6).

    Returns a dict with ``logits`` (batch, m) of the classifier on z_T, ``z`` (T+1, batch, d) the
    chain's states, ``u_hat`` (T, batch, d) and ``block_logits`` (T, batch, m) the blocks' outputs.
    With ``z_mode="chain"`` the logits are those of ``model.sample(x, noise, generator)`` for the
    same generator state. The model is put in eval mode for the call. ``x`` must be on the model's
    device; ``generator`` may be on any device (it draws there, :mod:`nplib.devices`).
    """
    if z_mode not in Z_MODES:
        raise ValueError(f"unknown z_mode {z_mode!r}; choose one of {Z_MODES}")
    model._check_x(x)
    with _EvalMode(model):
        batch = x.shape[0]
        z = model._initial_z(batch, noise, generator, x.device)
        zs, u_hats, block_logits = [z], [], []
        for t in range(1, model.T + 1):
            if z_mode == "shuffle":
                perm = randperm(batch, generator=generator, device=x.device)
                z = z[perm]
            elif z_mode == "prior":
                z = randn(z.shape, generator=generator, device=x.device)
            elif z_mode == "zeros":
                z = torch.zeros_like(z)
            u_hat, logits_t = model.u_hat(t, x, z)
            z = _chain_update(model, t, u_hat, z, noise, generator)
            zs.append(z)
            u_hats.append(u_hat)
            block_logits.append(logits_t)
        logits = model.classifier(z)
    return {"logits": logits, "z": torch.stack(zs), "u_hat": torch.stack(u_hats),
            "block_logits": torch.stack(block_logits)}


@torch.no_grad()
def classify_batch(model, x: torch.Tensor, noise: bool = False, generator: torch.Generator | None = None,
                   seed: int | None = None):
    """Predicted classes and class probabilities ``p(y | z_T)`` for a batch of images.

    Introduced in notebooks/04_noprop_dt_mnist, section 2. ``noise=False`` is the deterministic
    chain (z_0 = 0, no eps); ``noise=True`` the paper's stochastic chain, seeded by ``seed`` when no
    ``generator`` is given. Only the images are used: there is no label argument.
    """
    if generator is None and seed is not None:
        generator = make_generator(x.device, seed)
    with _EvalMode(model):
        logits = model.sample(x, noise=noise, generator=generator)
    probs = F.softmax(logits, dim=1)
    return probs.argmax(dim=1), probs


def _batches(data: TensorData, batch_size: int):
    for i in range(0, len(data), batch_size):
        yield data.x[i:i + batch_size], data.y[i:i + batch_size]


@torch.no_grad()
def chain_predictions(model, x: torch.Tensor, noise: bool = False, generator: torch.Generator | None = None,
                      z_mode: str = "chain") -> dict:
    """Every prediction one can read off the chain, for images ``x`` (no labels involved).

    Introduced in notebooks/04_noprop_dt_mnist, section 3. Returns (all LongTensors):

    * ``model``: argmax of the classifier on z_T (the model's prediction);
    * ``u_hat``: (T, batch) the class nearest to ``u_hat_t`` at each step t;
    * ``block``: (T, batch) argmax of block t's softmax;
    * ``classifier_z``: (T+1, batch) argmax of the classifier applied to ``z_t``, t = 0..T;
    * ``nearest_z``: (T+1, batch) the class embedding nearest to ``z_t`` (t = 0 is arbitrary).
    """
    out = run_chain(model, x, noise=noise, generator=generator, z_mode=z_mode)
    W = model.W_embed
    T = model.T
    return {
        "model": out["logits"].argmax(dim=1),
        "u_hat": torch.stack([_nearest_class(out["u_hat"][t], W) for t in range(T)]),
        "block": out["block_logits"].argmax(dim=2),
        "classifier_z": model.classifier(out["z"]).argmax(dim=2),
        "nearest_z": torch.stack([_nearest_class(out["z"][t], W) for t in range(T + 1)]),
    }


@torch.no_grad()
def per_step_accuracy(model, data: TensorData, noise: bool = False, seed: int = 0, batch_size: int = 1000,
                      z_mode: str = "chain", device=None) -> dict:
    """Accuracy of every prediction of :func:`chain_predictions` on ``data``, as numpy arrays.

    Introduced in notebooks/04_noprop_dt_mnist, section 3. ``u_hat`` and ``block`` have T entries
    (step t at position t - 1); ``classifier_z`` and ``nearest_z`` have T + 1 (t = 0..T); ``model``
    is a float. The labels of ``data`` are used only to score the predictions. ``device`` (default:
    the model's) is where the batches go; the noise comes from a generator seeded on it.
    """
    if len(data) == 0:
        raise ValueError("per_step_accuracy needs a non-empty data set")
    device = model_device(model) if device is None else torch.device(device)
    g = make_generator(device, seed)
    correct: dict[str, torch.Tensor | float] = {}
    for x, y in _batches(data, batch_size):
        x, y = x.to(device), y.to(device)
        pred = chain_predictions(model, x, noise=noise, generator=g, z_mode=z_mode)
        for k, p in pred.items():
            hits = (p == y).sum(dim=-1).double().cpu()
            correct[k] = correct.get(k, 0) + hits
    n = len(data)
    res = {k: (v / n).numpy() for k, v in correct.items()}
    res["model"] = float(res["model"])
    return res


#: Human-readable names of the ablation variants (notebook 04, section 6).
ABLATION_LABELS = {
    "chain": "the model: chain z_0 -> z_T, classifier on z_T",
    "chain_last_block": "the chain, but read block T's own softmax (argmax u_hat_T)",
    "first_block": "block 1 alone (one CNN block, fed z_0, no chain)",
    "last_block_prior": "block T alone, z_{T-1} ~ N(0, I) (no chain)",
    "last_block_zeros": "block T alone, z_{T-1} = 0 (no chain)",
    "shuffle": "chain with z_{t-1} permuted across the batch before every block",
    "prior": "chain with z_{t-1} replaced by fresh N(0, I) before every block",
    "zeros": "chain with z_{t-1} = 0 before every block",
}


@torch.no_grad()
def ablation(model, data: TensorData, noise: bool = False, seed: int = 0, batch_size: int = 1000,
             device=None) -> dict:
    """How much of the accuracy does the chain carry? Test accuracy of each variant of
    :data:`ABLATION_LABELS`.

    Introduced in notebooks/04_noprop_dt_mnist, section 6 (trap 4 of docs/pitfalls.md).

    * ``chain``: the model (classifier on the chain's z_T);
    * ``chain_last_block``: argmax of ``u_hat_T`` on the same chain (the last block's prediction);
    * ``first_block``: argmax of ``u_hat_1`` (block 1 sees ``z_0``, pure noise or 0: an image
      classifier that never used the chain);
    * ``last_block_prior`` / ``last_block_zeros``: block T alone with ``z_{T-1}`` drawn from the prior
      or set to 0, then its argmax (the image path of the last block with no chain behind it);
    * ``shuffle`` / ``prior`` / ``zeros``: the whole chain with the latent each block receives
      replaced (see :func:`run_chain`), classifier on the resulting z_T.

    Returns ``{name: accuracy}`` (floats in [0, 1]). ``device`` defaults to the model's.
    """
    device = model_device(model) if device is None else torch.device(device)
    g = make_generator(device, seed)
    T = model.T
    hits = {k: 0 for k in ABLATION_LABELS}
    with _EvalMode(model):
        for x, y in _batches(data, batch_size):
            x, y = x.to(device), y.to(device)
            pred = chain_predictions(model, x, noise=noise, generator=g)
            hits["chain"] += int((pred["model"] == y).sum())
            hits["chain_last_block"] += int((pred["u_hat"][T - 1] == y).sum())
            hits["first_block"] += int((pred["u_hat"][0] == y).sum())
            z_shape = (x.shape[0], model.d)
            for name, z in (("last_block_prior", randn(z_shape, generator=g, device=device)),
                            ("last_block_zeros", torch.zeros(z_shape, device=device))):
                u_hat, _ = model.u_hat(T, x, z)
                hits[name] += int((_nearest_class(u_hat, model.W_embed) == y).sum())
            for mode in ("shuffle", "prior", "zeros"):
                logits = run_chain(model, x, noise=noise, generator=g, z_mode=mode)["logits"]
                hits[mode] += int((logits.argmax(dim=1) == y).sum())
    return {k: v / len(data) for k, v in hits.items()}


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of examples of class i predicted as class j.

    Introduced in notebooks/04_noprop_dt_mnist, section 2.
    """
    y_true, y_pred = torch.as_tensor(y_true).long().flatten(), torch.as_tensor(y_pred).long().flatten()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.numel()} labels but {y_pred.numel()} predictions")
    if y_true.numel() and (min(int(y_true.min()), int(y_pred.min())) < 0
                           or max(int(y_true.max()), int(y_pred.max())) >= num_classes):
        raise ValueError(f"labels and predictions must lie in 0..{num_classes - 1}")
    cm = torch.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2)
    return cm.view(num_classes, num_classes).numpy()


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (``std(ddof=1) / sqrt(n)``; nan for one value)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ValueError("mean_se needs at least one value")
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), se


def estimate_epoch_seconds(model, data: TensorData, batches: int = 10, batch_size: int = 128,
                           warmup: int = 2, lr: float = 1e-3, weight_decay: float = 1e-3) -> dict:
    """Time ``batches`` training steps of ``model`` and extrapolate to one epoch over ``data``.

    Introduced in notebooks/04_noprop_dt_mnist, section 1 (choosing a block that fits the CPU
    budget). The model's parameters ARE updated, so call it on a fresh model you will throw away.
    The batches go to the model's device (on a GPU each step is timed to its end).
    Returns ``seconds_per_batch`` and ``seconds_per_epoch``.
    """
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    device = model_device(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    model.train()
    opts = model.configure_optimizers(lr=lr, weight_decay=weight_decay)
    loader = TensorLoader(data, batch_size=batch_size, shuffle=True, seed=0)
    it = iter(loader)
    steps = []
    for i in range(warmup + batches):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        x, y = x.to(device), y.to(device)
        sync(device)
        t0 = time.perf_counter()
        model.training_step(x, y, opts)
        sync(device)
        if i >= warmup:
            steps.append(time.perf_counter() - t0)
    per_batch = float(np.median(steps))
    return {"seconds_per_batch": per_batch, "seconds_per_epoch": per_batch * len(loader),
            "batches_timed": batches, "batch_size": batch_size}


# ---------------------------------------------------------------------------------------- figures

def _plt():
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(histories: dict, title: str | None = None):
    """Training loss and train/test accuracy per epoch, one colour per run; returns the Figure.

    Introduced in notebooks/04_noprop_dt_mnist, section 2. ``histories`` maps a run name to the
    list of rows returned by :func:`nplib.train.fit`.
    """
    if not histories:
        raise ValueError("plot_learning_curves needs at least one history")
    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, hist) in enumerate(histories.items()):
        if not hist:
            raise ValueError(f"history {name!r} is empty")
        color = f"C{i}"
        ep = [r["epoch"] for r in hist]
        ax_loss.plot(ep, [r["loss"] for r in hist], "o-", color=color, label=name)
        ax_acc.plot(ep, [100 * r["test_acc"] for r in hist], "o-", color=color, label=f"{name}: test")
        ax_acc.plot(ep, [100 * r["train_acc"] for r in hist], "s--", color=color, alpha=0.6,
                    label=f"{name}: train")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss", title="loss (each run its own objective)")
    ax_loss.set_yscale("log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm: np.ndarray, classes: Iterable[str] | None = None, title: str = "confusion matrix"):
    """Counts, with the diagonal's colour scale kept separate so the errors stay visible.

    Introduced in notebooks/04_noprop_dt_mnist, section 2.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square matrix, got shape {cm.shape}")
    m = cm.shape[0]
    classes = list(classes) if classes is not None else [str(k) for k in range(m)]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    off = cm.astype(float).copy()
    np.fill_diagonal(off, np.nan)
    im = ax.imshow(off, cmap="Reds")
    fig.colorbar(im, ax=ax, label="errors (off-diagonal counts)")
    for i in range(m):
        for j in range(m):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(m), [c[:8] for c in classes], rotation=90 if m > 10 else 0)
    ax.set_yticks(range(m), [c[:8] for c in classes])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def _show_image(ax, img: torch.Tensor):
    img = img.detach().cpu().float()
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray")
    else:
        img = (img - img.min()) / (img.max() - img.min() + 1e-8)
        ax.imshow(img.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def plot_predictions(x: torch.Tensor, pred: torch.Tensor, y: torch.Tensor | None = None,
                     probs: torch.Tensor | None = None, ncols: int = 8, max_images: int = 32):
    """Images with their predicted label (and the probability); green/red when ``y`` is given.

    Introduced in notebooks/04_noprop_dt_mnist, section 2. ``y`` is only used for the colour.
    """
    n = min(len(x), max_images)
    if n == 0:
        raise ValueError("plot_predictions needs at least one image")
    plt = _plt()
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        _show_image(ax, x[i])
        p = int(pred[i])
        text = f"pred {p}" + (f" ({100 * float(probs[i, p]):.0f}%)" if probs is not None else "")
        color = "black" if y is None else ("green" if int(y[i]) == p else "red")
        ax.set_title(text, fontsize=8, color=color)
    fig.tight_layout()
    return fig


def plot_chain(trajectory: dict, x: torch.Tensor, n: int = 6, labels: torch.Tensor | None = None,
               key: str = "z", title: str | None = None):
    """The chain made visible: for ``n`` images, the image and a heat map of ``z_t`` (rows t = 0..T,
    columns the d dimensions) or of ``u_hat_t`` with ``key="u_hat"``.

    Introduced in notebooks/04_noprop_dt_mnist, section 3. ``trajectory`` is the dict of
    :func:`run_chain` (or ``sample(..., return_trajectory=True)``); ``labels`` only annotate.
    """
    if key not in trajectory:
        raise ValueError(f"trajectory has no {key!r}; it has {sorted(trajectory)}")
    Z = trajectory[key].detach().cpu()
    n = min(n, Z.shape[1], len(x))
    if n < 1:
        raise ValueError("plot_chain needs at least one image")
    t0 = 0 if key == "z" else 1
    plt = _plt()
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.6), gridspec_kw={"height_ratios": [1, 2.2]},
                             squeeze=False)
    # colour scale from the LAST rows (the chain's answer): the early rows hold N(0, I) noise whose
    # extremes (about 3) would otherwise wash the decided rows out; noise beyond it saturates
    vmax = max(float(Z[-1, :n].abs().max()), 1e-6)
    for i in range(n):
        _show_image(axes[0, i], x[i])
        if labels is not None:
            axes[0, i].set_title(f"label {int(labels[i])}", fontsize=8)
        im = axes[1, i].imshow(Z[:, i].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto",
                               extent=(-0.5, Z.shape[2] - 0.5, Z.shape[0] - 0.5 + t0, t0 - 0.5))
        axes[1, i].set_xlabel("dimension of z")
        if Z.shape[2] <= 10:
            axes[1, i].set_xticks(range(Z.shape[2]))
            axes[1, i].tick_params(labelsize=6)
        if i == 0:
            axes[1, i].set_ylabel("t" if key == "z" else "block t")
        else:
            axes[1, i].set_yticklabels([])
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8, label=key + "_t", extend="both")
    fig.suptitle(title or (f"the chain z_0 -> z_T (rows: t = 0 at the top to T at the bottom)" if key == "z"
                           else "block predictions u_hat_t"))
    return fig


def plot_per_step_accuracy(acc: dict, title: str = "error at every step of the chain"):
    """Per-step test ERROR (100 - accuracy, log scale) from :func:`per_step_accuracy` (one dict, or
    ``{name: dict}``).

    Introduced in notebooks/04_noprop_dt_mnist, section 3. The error, on a log axis, separates curves
    that all sit near 99 % accuracy (on a 0-100 % accuracy axis they overlap).
    """
    runs = {"": acc} if "u_hat" in acc else acc
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (name, a) in enumerate(runs.items()):
        prefix = f"{name}: " if name else ""
        T = len(a["u_hat"])
        # error = 100 % - accuracy, floored at 0.01 % so that a perfect step stays on the log axis
        ax.plot(range(1, T + 1), np.maximum(100 * (1 - np.asarray(a["u_hat"])), 1e-2), "o-", color=f"C{i}",
                label=prefix + "block t: argmax u_hat_t")
        ax.plot(range(0, T + 1), np.maximum(100 * (1 - np.asarray(a["classifier_z"])), 1e-2), "s--",
                color=f"C{i}", alpha=0.6, label=prefix + "classifier on z_t")
    ax.set_yscale("log")
    ticks = [v for v in (0.5, 1, 2, 5, 10, 20, 50, 100) if v >= ax.get_ylim()[0] * 0.8]
    ax.set_yticks(ticks, [f"{v:g}" for v in ticks])
    ax.set(xlabel="step t", ylabel="test error (%, log scale)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_prediction_votes(x: torch.Tensor, predictions: torch.Tensor, y: torch.Tensor | None = None,
                          num_classes: int = 10, title: str | None = None):
    """For each image, how often each class was predicted over repeated stochastic runs.

    Introduced in notebooks/04_noprop_dt_mnist, exercise 2. ``predictions`` is (runs, n): one row per
    run. Each column of the figure shows the image (titled with its label when ``y`` is given) and a
    bar chart of the votes; the true class's bar is green, the others grey.
    """
    predictions = torch.as_tensor(predictions)
    if predictions.dim() != 2 or predictions.shape[1] != len(x):
        raise ValueError(f"predictions must be (runs, {len(x)}), got {tuple(predictions.shape)}")
    n = len(x)
    if n == 0:
        raise ValueError("plot_prediction_votes needs at least one image")
    plt = _plt()
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 3.6), gridspec_kw={"height_ratios": [1, 1]}, squeeze=False)
    runs = predictions.shape[0]
    for i in range(n):
        _show_image(axes[0, i], x[i])
        if y is not None:
            axes[0, i].set_title(f"label {int(y[i])}", fontsize=9)
        votes = torch.bincount(predictions[:, i].long().cpu(), minlength=num_classes).numpy()
        colors = ["tab:green" if y is not None and k == int(y[i]) else "0.55" for k in range(num_classes)]
        axes[1, i].bar(range(num_classes), votes, color=colors)
        axes[1, i].set_xticks(range(num_classes))
        axes[1, i].tick_params(labelsize=7)
        axes[1, i].set_ylim(0, runs)
        if i == 0:
            axes[1, i].set_ylabel(f"votes of {runs} runs", fontsize=8)
        axes[1, i].set_xlabel("predicted class", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ablation(results: dict, labels: dict | None = None, title: str = "ablation: what carries the accuracy?"):
    """Horizontal bars, one per variant (``{name: accuracy}`` or ``{run: {name: accuracy}}``).

    Introduced in notebooks/04_noprop_dt_mnist, section 6.
    """
    runs = results if all(isinstance(v, dict) for v in results.values()) else {"": results}
    labels = labels or ABLATION_LABELS
    names = list(next(iter(runs.values())).keys())
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) * max(len(runs), 1) + 1.2))
    h = 0.8 / len(runs)
    for i, (run, res) in enumerate(runs.items()):
        ys = np.arange(len(names)) + i * h
        vals = [100 * res.get(k, np.nan) for k in names]
        ax.barh(ys, vals, height=h, color=f"C{i}", label=run or None)
        for yv, v in zip(ys, vals):
            if not np.isnan(v):
                ax.text(v + 0.5, yv, f"{v:.2f}", va="center", fontsize=7)
    ax.set_yticks(np.arange(len(names)) + h * (len(runs) - 1) / 2, [labels.get(k, k) for k in names], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="test accuracy (%)", xlim=(0, 109), title=title)
    if len(runs) > 1 or next(iter(runs)):
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
