r"""What the denoising chain does: where NoProp-DT decides, why, and one remedy.

Introduced in notebooks/08_what_the_chain_does (README.md, "What the chain contributes").

The ablation of :mod:`nplib.lab.ablation` shows that in NoProp-DT the first block alone already
classifies almost as well as the whole chain. This module holds the pieces that explain it and the
remedy that notebook 08 tries:

* **The share of the training signal** (section 3). Block t's loss is
  ``L_t = (T / 2) eta (SNR(t) - SNR(t-1)) ||u_hat_t - u_y||^2`` (:meth:`nplib.models.NoPropDT.block_loss`),
  so block t's share of the total weight is ``(SNR(t) - SNR(t-1)) / (SNR(T) - SNR(0))``
  (:func:`signal_shares`; ``T`` and ``eta`` cancel).
* **Block 1 trained alone** (section 3). Block 1 sees the image and ``z_0`` at ``alpha_bar_0``
  (almost pure noise) and must output ``u_y``: a complete image classifier. :func:`train_block_alone`
  trains the same CNN block on exactly that loss and nothing else (and, for comparison, on plain
  cross-entropy), reusing :meth:`nplib.models.NoPropDT.training_step` restricted to block 1.
* **The remedy: equal probability mass per block** (section 4), the idea of DiffusionBlocks
  (Shing, Koyama, Akiba 2025), implemented here from its description: instead of spacing the
  blocks evenly in t, give each block the same share of probability mass under a noise-level
  distribution, EDM's ``log sigma ~ N(P_mean, P_std^2)`` with ``P_mean = -1.2``, ``P_std = 1.2``,
  where ``sigma^2 = 1 / SNR = (1 - alpha_bar) / alpha_bar`` (:func:`equal_mass_alpha_bar`,
  :func:`equal_mass_schedule`, schedule kind ``"equal_mass"`` of :func:`nplib.schedules.make_schedule`).

Choices the description leaves open (our choices, shown in notebook 08, section 4):

* **Truncation.** The log-normal puts mass on every sigma in (0, inf); NoProp-DT's schedules live
  in ``[alpha_bar_min, alpha_bar_max] = [1e-4, 0.99]`` (:mod:`nplib.schedules` says why
  ``alpha_bar_T = 1`` is excluded). We truncate the distribution to the sigma range of that interval,
  ``sigma in [sigma(0.99), sigma(1e-4)] = [0.1005, 99.99]``, and split the TRUNCATED mass into T
  equal parts. Without truncation, 18 % of the mass lies above ``alpha_bar = 0.99``, where
  no NoProp block can sit.
* **Where the discrete levels go.** In NoProp-DT block t takes ``z_{t-1}`` (level ``alpha_bar_{t-1}``)
  and the chain moves to ``z_t`` (level ``alpha_bar_t``): block t covers the interval
  ``[alpha_bar_{t-1}, alpha_bar_t]`` and its loss weight is that interval's SNR difference. We put the
  T + 1 levels ``alpha_bar_t`` at the boundaries between the T equal-mass intervals: ``alpha_bar_t``
  is the noise level at the quantile ``t / T`` of the truncated distribution counted from the noisy
  end. Then ``alpha_bar_0 = alpha_bar_min`` (so ``z_0`` is pure noise at training time, as it is at
  inference, where the chain starts from ``N(0, I)``), ``alpha_bar_T = alpha_bar_max`` (as the cosine
  schedule), and every block's interval holds the same mass ``1 / T``. Placing a block's level at
  the middle quantile of its interval instead would leave ``z_0`` with a visible label (for T = 10,
  ``alpha_bar_0`` near 0.15) while inference starts from pure noise.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nplib.reference import write_result
from nplib.schedules import (EDM_P_MEAN, EDM_P_STD, DTSchedule, _check_dist, alpha_bar_from_sigma,  # noqa: F401 (re-exported)
                        equal_mass_alpha_bar, equal_mass_schedule, make_schedule, noise_mass,
                        sigma_from_alpha_bar)

__all__ = ["EDM_P_MEAN", "EDM_P_STD", "signal_shares", "sigma_from_alpha_bar", "alpha_bar_from_sigma",
           "noise_mass", "block_masses", "equal_mass_alpha_bar", "equal_mass_schedule", "train_block_alone",
           "block_alone_accuracy", "decided_levels", "plot_signal_shares", "plot_chain_accuracy",
           "plot_decided", "remedy_report", "COMMANDS", "add_parser", "add_remedy_parser"]

def _check_schedule(schedule) -> DTSchedule:
    if not isinstance(schedule, DTSchedule):
        raise ValueError(f"expected a nplib.schedules.DTSchedule, got {type(schedule).__name__}")
    return schedule


# ------------------------------------------------------------------------- section 3: signal shares
def signal_shares(schedule: DTSchedule) -> torch.Tensor:
    """Each block's share of the total denoising-loss weight, entry ``t - 1`` for block t.

    Introduced in notebooks/08_what_the_chain_does, section 3. Block t's loss weight is
    ``(T / 2) eta (SNR(t) - SNR(t-1))``; ``T / 2`` and ``eta`` are the same for every block, so
    the share is ``(SNR(t) - SNR(t-1)) / sum_s (SNR(s) - SNR(s-1)) = (SNR(t) - SNR(t-1)) / (SNR(T) - SNR(0))``.
    The shares are positive and sum to 1 (float64).
    """
    schedule = _check_schedule(schedule)
    delta = schedule.snr_delta
    # share_t = (SNR(t) - SNR(t-1)) / (SNR(T) - SNR(0))
    return delta / (schedule.snr[-1] - schedule.snr[0])


# ------------------------------------------------------------------ section 4: equal-mass schedule
def block_masses(schedule: DTSchedule, p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD) -> torch.Tensor:
    """The share of the (truncated) noise-level mass in each block's interval ``[alpha_bar_{t-1}, alpha_bar_t]``.

    Introduced in notebooks/08_what_the_chain_does, section 4. Truncated to the schedule's own range
    ``[alpha_bar_0, alpha_bar_T]``, so the T entries sum to 1; :func:`equal_mass_schedule` makes
    them all ``1 / T``.
    """
    schedule = _check_schedule(schedule)
    ab = schedule.alpha_bar.tolist()
    masses = [noise_mass(ab[t - 1], ab[t], p_mean, p_std) for t in range(1, schedule.T + 1)]
    total = sum(masses)
    return torch.tensor([m / total for m in masses], dtype=torch.float64)


# ------------------------------------------------------------------ section 3: block 1 trained alone
def _batches(n: int, batch_size: int, generator: torch.Generator):
    perm = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def _check_data(data, what: str):
    x, y = getattr(data, "x", None), getattr(data, "y", None)
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise ValueError(f"{what} must have tensors .x (N, C, H, W) and .y (N,), got {type(data).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{what}.x must be a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{what}.y must hold one label per image: x has {x.shape[0]} images, y has shape "
                         f"{tuple(y.shape)}")
    return x, y


def block_alone_accuracy(model, data, batch_size: int = 1000) -> float:
    """Accuracy of block 1 of ``model`` read out alone: ``argmax`` of its logits on ``(x, z_0 = 0)``.

    Introduced in notebooks/08_what_the_chain_does, section 3. This is the ablation's
    ``first_block_alone`` for a noise-free chain with a one-hot embedding (nearest one-hot
    embedding = argmax of the softmax).
    """
    x, y = _check_data(data, "data")
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(device)
            z0 = torch.zeros(xb.shape[0], model.d, device=device)
            right += int((model.blocks[0](xb, z0).argmax(dim=1).cpu() == y[i:i + batch_size]).sum())
    model.train(was)
    return right / x.shape[0]


def train_block_alone(train, epochs: int, *, objective: str = "denoise", test=None, T: int = 10,
                      schedule: DTSchedule | None = None, eta: float = 0.1, block="small",
                      batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-3, seed: int = 0,
                      device: str | torch.device = "cpu", log=None):
    """Train ONLY block 1 of a NoProp-DT model (one-hot embedding), on its own; ``(model, history)``.

    Introduced in notebooks/08_what_the_chain_does, section 3. The model is a
    :class:`nplib.models.NoPropDT` built with the same block, T, schedule and eta as the chain;
    only ``model.blocks[0]`` is trained, with its own AdamW (the chain's optimizer settings):

    * ``objective="denoise"``: block 1's NoProp loss and nothing else,
      ``(T / 2) eta (SNR(1) - SNR(0)) ||softmax(logits_1(x, z_0)) @ W_embed - u_y||^2`` with
      ``z_0 ~ q(z_0 | y)`` (``alpha_bar_0``, almost pure noise), through
      :meth:`~nplib.models.NoPropDT.training_step` with ``blocks=[1], shared=False``. In the chain
      block 1 gets exactly these updates (no other block's loss reaches it), so this is block 1 of
      the chain trained on its own, with other random draws.
    * ``objective="ce"``: the same CNN on the same inputs ``(x, z_0 ~ q(z_0 | y))`` as a plain
      classifier: cross-entropy of ``logits_1`` instead of the denoising loss.

    Either way block 1 is read out as a classifier by :func:`block_alone_accuracy`. ``history``
    holds one row per epoch: ``epoch``, ``loss``, ``test_acc`` (when ``test`` is given), ``seconds``.
    """
    from nplib.diffusion import q_sample
    from nplib.models import NoPropDT
    from nplib.train import set_seed

    if objective not in ("denoise", "ce"):
        raise ValueError(f"objective must be 'denoise' or 'ce', got {objective!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2 (BatchNorm), got {batch_size!r}")
    x, y = _check_data(train, "train")
    if test is not None:
        _check_data(test, "test")
    num_classes = int(y.max()) + 1
    if num_classes < 2:
        raise ValueError("train needs at least two classes")
    set_seed(seed)
    model = NoPropDT(tuple(x.shape[1:]), num_classes, T=T, block=block, embedding="onehot",
                     schedule=schedule or make_schedule("cosine", T), eta=eta).to(device)
    opt = {"block1": model.configure_optimizers(lr, weight_decay)["block1"]}
    g = torch.Generator().manual_seed(seed)
    say = log or (lambda s: None)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        t0, total, n = time.perf_counter(), 0.0, 0
        for idx in _batches(x.shape[0], batch_size, g):
            if idx.numel() < 2:
                continue   # BatchNorm needs two examples
            xb, yb = x[idx].to(device), y[idx].to(device)
            if objective == "denoise":
                # block 1 only: L_1 = (T/2) eta (SNR(1) - SNR(0)) ||u_hat_1(z_0, x) - u_y||^2, z_0 ~ q(z_0 | y)
                loss = model.training_step(xb, yb, opt, blocks=[1], shared=False)["loss_blocks"]
            else:
                opt["block1"].zero_grad(set_to_none=True)
                # z_0 ~ q(z_0 | y): the input block 1 sees in training (a constant z would leave the label
                # path's BatchNorm with zero variance, and its eval-mode statistics degenerate)
                z0 = q_sample(model.embedding(yb), 0, model.schedule)
                # -log softmax(logits_1(x, z_0))_y
                ce = F.cross_entropy(model.blocks[0](xb, z0), yb)
                ce.backward()
                opt["block1"].step()
                loss = ce.item()
            total, n = total + loss, n + 1
        row = {"epoch": epoch, "loss": total / max(n, 1), "seconds": time.perf_counter() - t0}
        if test is not None:
            row["test_acc"] = block_alone_accuracy(model, test)
        history.append(row)
        say(f"block 1 alone ({objective}) epoch {epoch}: loss {row['loss']:.4f}"
            + (f", test accuracy {100 * row['test_acc']:.2f} %" if "test_acc" in row else "")
            + f", {row['seconds']:.1f} s")
    model.eval()
    return model, history


# ---------------------------------------------------------------------- section 2: reading ablations
def decided_levels(result: dict) -> list[dict]:
    """Per block of an :func:`nplib.lab.ablation.ablate` result: ``block``, ``alpha_bar``, ``snr``, ``accuracy``,
    ``decided_fraction`` and ``cumulative`` (the fraction decided at this block or before).

    Introduced in notebooks/08_what_the_chain_does, section 2. "Decided at block t" is the
    ablation's: blocks t..T are all right and block t-1 is not.
    """
    if not isinstance(result, dict) or result.get("metric") != "accuracy" or "blocks" not in result:
        raise ValueError("expected the result of nplib.lab.ablation.ablate for a classifier (metric 'accuracy')")
    out, cum = [], 0.0
    for b in result["blocks"]:
        cum += b["decided_fraction"]
        out.append({"block": b["block"], "alpha_bar": b["alpha_bar"], "snr": b["snr"], "accuracy": b["accuracy"],
                    "decided_fraction": b["decided_fraction"], "cumulative": cum})
    return out


# ---------------------------------------------------------------------------------------- plots
def plot_signal_shares(schedules: dict, ax=None):
    """Bars of :func:`signal_shares` per block for each named schedule (``{label: DTSchedule}``), log y axis.

    Introduced in notebooks/08_what_the_chain_does, section 3.
    """
    import matplotlib.pyplot as plt

    if not schedules:
        raise ValueError("give at least one schedule")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    k = len(schedules)
    width = 0.8 / k
    for i, (label, s) in enumerate(schedules.items()):
        share = signal_shares(s)
        pos = [t + (i - (k - 1) / 2) * width for t in range(1, s.T + 1)]
        ax.bar(pos, (100 * share).tolist(), width=width, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("block t")
    ax.set_ylabel("share of the loss weight (%)")
    ax.set_title("(SNR(t) - SNR(t-1)) / (SNR(T) - SNR(0))")
    ax.legend(fontsize=8)
    return ax.figure


def plot_chain_accuracy(results: dict, ax=None):
    """Accuracy of each block read out alone along the chain, one line per ablation result (``{label: result}``).

    Introduced in notebooks/08_what_the_chain_does, section 2. A dashed line of the same colour marks
    the whole chain's accuracy.
    """
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("give at least one ablation result")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.4))
    for label, r in results.items():
        rows = decided_levels(r)
        line, = ax.plot([b["block"] for b in rows], [100 * b["accuracy"] for b in rows], "o-", label=label)
        ax.axhline(100 * r["rows"]["chain"], color=line.get_color(), ls="--", lw=0.8)
    ax.set_xlabel("block t (read out alone on the chain's z_{t-1})")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("per-block accuracy along the chain (dashed: the whole chain)")
    ax.legend(fontsize=8)
    return ax.figure


def plot_decided(results: dict, ax=None):
    """Cumulative fraction of test images decided at or before each block, against the block's input noise level.

    Introduced in notebooks/08_what_the_chain_does, section 2. x axis: the input's ``alpha_bar``
    (log scale), one line per ablation result (``{label: result}``).
    """
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("give at least one ablation result")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.4))
    for label, r in results.items():
        rows = decided_levels(r)
        ax.plot([b["alpha_bar"] for b in rows], [100 * b["cumulative"] for b in rows], "o-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("alpha_bar of the block's input z_{t-1} (log scale; left: pure noise)")
    ax.set_ylabel("decided at or before (%)")
    ax.set_title("where each test image's prediction becomes right and stays right")
    ax.legend(fontsize=8)
    return ax.figure


def remedy_report(ablation: dict, checkpoints: dict, note: str = "") -> dict:
    """The remedy's comparison (notebooks/08_what_the_chain_does, section 4) from an ablation file and manifests.

    Introduced in notebooks/08_what_the_chain_does, section 4. ``ablation`` is the JSON of
    ``python -m nplib ablation --checkpoint ... --out FILE``; ``checkpoints`` maps a key
    (``cosine_T10``, ...) to a shipped checkpoint name. Per model: the training command, schedule,
    epochs, training time and test accuracy of its manifest, and from the noise-free ablation the
    chain's and block 1's accuracy, their difference and the fraction of test images decided at
    each block.
    """
    from nplib import pretrained

    if not isinstance(ablation, dict) or "results" not in ablation:
        raise ValueError("ablation must be the JSON written by python -m nplib ablation --out")
    models = {}
    for key, name in checkpoints.items():
        if name not in ablation["results"]:
            raise ValueError(f"{name!r} is not in the ablation file (it holds {', '.join(ablation['results'])})")
        m = pretrained.manifest(name)
        r = next(a for a in ablation["results"][name]["ablation"] if not a["noise"])
        chain_acc, first = r["rows"]["chain"], r["rows"]["first_block_alone"]
        models[key] = {
            "checkpoint": name, "command": m["command"], "schedule": m["config"]["schedule"], "T": m["config"]["T"],
            "alpha_bar": [b["alpha_bar"] for b in r["blocks"]] + [m["config"]["alpha_bar_max"]],
            "epochs": m["epochs"], "train_seconds": m["train_seconds"], "test_accuracy": m["test_accuracy"],
            "ablation_noise_free": {
                "test_images": ablation["results"][name]["info"]["test_images"],
                "chain": chain_acc, "first_block_alone": first,
                # the chain's gain over block 1 alone
                "chain_minus_first_block": chain_acc - first,
                "decided_fraction": [b["decided_fraction"] for b in r["blocks"]],
                "decided_after_block_1": sum(b["decided_fraction"] for b in r["blocks"][1:]),
                "never_decided": r["summary"]["never_decided_fraction"],
                "block_accuracy": [b["accuracy"] for b in r["blocks"]],
                "chain_z_prior": r["rows"]["chain_z_prior"]}}
    return {"models": models, "ablation_command": ablation.get("command"),
            "hardware": {**(ablation.get("hardware") or {}), "note": note}}


# ---------------------------------------------------------------------------------------------- CLI
def _cmd(args) -> int:
    from nplib.data import load_train_test, smoke_mode
    from nplib.train import hardware_info

    if args.threads:
        torch.set_num_threads(args.threads)
    smoke = smoke_mode()
    train, test = load_train_test(args.dataset, smoke=smoke)
    epochs = 1 if smoke else args.epochs
    out = {"command": " ".join(["python -m nplib"] + sys.argv[1:]),
           "config": {"dataset": args.dataset, "epochs": epochs, "T": args.T, "schedule": args.schedule,
                      "block": "small", "eta": 0.1, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-3,
                      "seed": args.seed, "smoke": smoke, "train_size": len(train), "test_size": len(test),
                      "readout": "argmax of block 1's logits on (x, z_0 = 0)"},
           "hardware": {**hardware_info(), "note": args.note}, "results": {}}
    for objective in args.objective:
        t0 = time.perf_counter()
        _, hist = train_block_alone(train, epochs, objective=objective, test=test, T=args.T,
                                    schedule=make_schedule(args.schedule, args.T), seed=args.seed, log=print)
        out["results"][objective] = {"test_accuracy": hist[-1]["test_acc"], "history": hist,
                                     "train_seconds": time.perf_counter() - t0}
    if args.out:
        write_result(args.out, out)
    return 0


def add_parser(subparsers):
    """Register ``python -m nplib block-alone``: block 1 trained alone (denoising loss, cross-entropy)."""
    p = subparsers.add_parser("block-alone", help="train block 1 of NoProp-DT alone on its own loss (and on "
                                                  "cross-entropy) and report its test accuracy")
    p.add_argument("--dataset", default="fashionmnist", choices=["mnist", "fashionmnist"])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--T", type=int, default=10)
    p.add_argument("--schedule", default="cosine", choices=["cosine", "linear", "equal_mass"])
    p.add_argument("--objective", nargs="+", default=["denoise", "ce"], choices=["denoise", "ce"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--note", default="", help="a note stored with the hardware (for example: contended CPU)")
    p.add_argument("--out", default=None, help="write the results as JSON")
    p.set_defaults(func=_cmd)
    return p


def _cmd_remedy(args) -> int:
    pairs = dict(kv.split("=", 1) for kv in args.model)
    out = {"command": " ".join(["python -m nplib"] + sys.argv[1:]),
           **remedy_report(json.loads(Path(args.ablation).read_text()), pairs, args.note)}
    for key, r in out["models"].items():
        a = r["ablation_noise_free"]
        print(f"{key:16s} chain {100 * a['chain']:6.2f} %  block 1 {100 * a['first_block_alone']:6.2f} %  "
              f"gain {100 * a['chain_minus_first_block']:+5.2f}  decided at 1 {100 * a['decided_fraction'][0]:5.1f} %  "
              f"stochastic {100 * r['test_accuracy']['mean']:.2f} %  {r['train_seconds'] / 60:.1f} min")
    if args.out:
        write_result(args.out, out)
    return 0


def add_remedy_parser(subparsers):
    """Register ``python -m nplib chain-remedy --ablation FILE --model KEY=CHECKPOINT ... [--out FILE]``."""
    p = subparsers.add_parser("chain-remedy", help="compare schedules: the chain's share of the decision, from an "
                                                   "ablation file and the checkpoint manifests")
    p.add_argument("--ablation", required=True, help="the JSON of python -m nplib ablation --out")
    p.add_argument("--model", nargs="+", required=True, help="KEY=CHECKPOINT, e.g. cosine_T10=nb08_fashion_dt_onehot")
    p.add_argument("--note", default="", help="a note stored with the hardware")
    p.add_argument("--out", default=None)
    p.set_defaults(func=_cmd_remedy)
    return p


#: Picked up by :mod:`nplib.cli`.
COMMANDS = {"block-alone": add_parser, "chain-remedy": add_remedy_parser}
