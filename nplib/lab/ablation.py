r"""What does the denoising chain contribute? One ablation for every model of the course.

Introduced in README.md ("What the chain contributes"); it generalises the ablation of
notebooks/04_noprop_dt_mnist, section 6 (:func:`nplib.evaluation.ablation`, DT and backprop only)
to NoProp-CT and NoProp-FM (notebook 05) and to the forecaster of notebook 07.

:func:`ablate` measures, on a test set, the accuracy (classifiers) or the test MSE (forecaster,
standardised scale) of

* ``chain``: the model itself (its own inference chain, read out as the model reads it out);
* every block ALONE, given the input it would see at its step: the chain is run and, at every
  step, the block's own prediction is read out directly (no later block, no classifier);
* the chain with the latent replaced BEFORE EVERY block (every step for CT/FM): by fresh
  ``N(0, I)`` noise (``chain_z_prior``), by zeros (``chain_z_zeros``) or by the chain state of
  another example of the batch (``chain_z_shuffle``, one random permutation per step);
* ``first_block_alone``: block 1 on ``z_0`` (``0`` for the noise-free chain, ``N(0, I)``
  otherwise), which is what block 1 sees in the chain;
* ``last_block_alone_zeros`` / ``last_block_alone_prior``: the last block with its input latent
  set to 0 or drawn from ``N(0, I)``, no chain behind it;
* ``chain_last_block``: the last block's own prediction on the chain's state;

and, per block, the noise level of its input (``alpha_bar`` and ``SNR`` at its step) with the
fraction of examples whose prediction BECOMES RIGHT there: for a classifier, example i is
"decided at step t" when the block predictions of steps t, t+1, ..., T are all right and the one of
step t-1 is not (``decided_at``; ``never`` when the last block is wrong). For the forecaster, whose
answers are never exactly right, ``decision_block`` is the first block whose own forecast has a
test MSE within ``tolerance`` (5 %) of the chain's.

What "block t alone, given its input" means per model (the choices made here):

* **NoPropDT** (:class:`nplib.models.NoPropDT`): block t on the chain's own ``z_{t-1}``, read out as
  the class embedding nearest to ``u_hat_t = softmax(logits_t) @ W_embed`` (for one-hot embeddings
  the argmax of block t's softmax). Its input noise level is that of ``q(z_{t-1} | y)``:
  ``alpha_bar_{t-1}``, ``SNR(t-1)``.
* **BackpropBaseline**: the same read-out; it has no noise schedule, so no noise level.
* **NoPropCT / NoPropFM**: one network shared over time, so the "blocks" are the network at
  ``points`` (default 10) times of the sampler's grid ``t_k = k / N``: ``k = j N / points``,
  j = 0..points-1 (the step STARTS, where the sampler evaluates the network), on the chain's own
  ``z_{t_k}``. CT is read out as the class nearest to ``u_hat(z_t, x, t)``; FM, whose network gives
  a velocity ``v``, as the class nearest to the end point it implies,
  ``z_1~ = z_t + (1 - t) v`` (the quantity of FM's anchor loss). "The last block" is the network at
  the last step start ``t = (N - 1) / N``. CT's noise level is its learned
  ``alpha_bar(t) = sigmoid(-gamma(t))``; FM's path ``z_t = t u_y + (1 - t) z_0`` has
  ``SNR = t^2 / (1 - t)^2`` and we report ``alpha_bar = t^2 / (t^2 + (1 - t)^2)`` (the same SNR).
  The replacements of z happen before every one of the N steps.
* **NoPropForecaster** (:class:`nplib.timeseries.NoPropForecaster`): block t on the chain's own
  ``z_{t-1}``, read out as the decoded forecast ``D(u_hat_t)``. ``first_block_alone`` with the
  noise-free chain is "block 1 alone, z_0 = 0"; ``last_block_alone_zeros`` is "block T alone".

Labels are used only to score predictions. ``noise=False`` (default) runs the noise-free chain
(``z_0 = 0``, no ``eps``); ``noise=True`` the stochastic chain, seeded by ``seed``.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nplib.devices import make_generator, model_device, randn, randperm

__all__ = ["ablate", "ROW_LABELS", "MODEL_KINDS", "format_table", "load_model", "COMMANDS", "add_parser"]

#: Model classes :func:`ablate` knows, and the kind of chain each one runs.
MODEL_KINDS = {"NoPropDT": "dt", "BackpropBaseline": "backprop", "NoPropCT": "ct", "NoPropFM": "fm",
               "NoPropForecaster": "forecaster"}

#: What each row of the table measures (module docstring).
ROW_LABELS = {
    "chain": "the model: its own chain, read out as the model does",
    "first_block_alone": "block 1 alone on z_0 (no chain before it, nothing after it)",
    "chain_last_block": "the last block's own prediction on the chain's state",
    "last_block_alone_zeros": "the last block alone, its input latent = 0",
    "last_block_alone_prior": "the last block alone, its input latent ~ N(0, I)",
    "chain_z_prior": "chain, z replaced by fresh N(0, I) before every block/step",
    "chain_z_zeros": "chain, z replaced by 0 before every block/step",
    "chain_z_shuffle": "chain, z replaced by another example's z before every block/step",
}

_Z_MODES = ("chain", "prior", "zeros", "shuffle")


def _kind(model) -> str:
    for cls in type(model).__mro__:
        if cls.__name__ in MODEL_KINDS:
            return MODEL_KINDS[cls.__name__]
    raise ValueError(f"ablate does not know models of type {type(model).__name__}; it handles "
                     f"{', '.join(MODEL_KINDS)}")


def _replace(z: torch.Tensor, mode: str, generator) -> torch.Tensor:
    """The latent a block receives in place of the chain's ``z`` (``mode`` in ``_Z_MODES``)."""
    if mode == "chain":
        return z
    if mode == "prior":
        return randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    if mode == "zeros":
        return torch.zeros_like(z)
    return z[randperm(z.shape[0], generator=generator, device=z.device)]


def _nearest(u: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    # argmin_k ||u - u_k||^2 = argmax_k (2 u . u_k - ||u_k||^2)
    return (2 * u @ W.T - W.pow(2).sum(dim=1)).argmax(dim=1)


class _Eval:
    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)
        return False


# ------------------------------------------------------------------------------------ classifiers
def _dt_chain(model, x, mode: str, noise: bool, g):
    """DT / backprop chain with z replaced before every block: (final class, per-block classes)."""
    from nplib.evaluation import _chain_update

    z = model._initial_z(x.shape[0], noise, g, x.device)
    per_block = []
    for t in range(1, model.T + 1):
        z = _replace(z, mode, g)
        u_hat, _ = model.u_hat(t, x, z)
        per_block.append(_nearest(u_hat, model.W_embed))
        # z_t = a_t u_hat_t + b_t z_{t-1} + sqrt(c_t) eps_t   (backprop: (1 - alpha_t) z_{t-1} + alpha_t u_hat_t)
        z = _chain_update(model, t, u_hat, z, noise, g)
    return model.classifier(z).argmax(dim=1), torch.stack(per_block)


def _dt_last_alone(model, x, z):
    u_hat, _ = model.u_hat(model.T, x, z)
    return _nearest(u_hat, model.W_embed)


def _grid_points(N: int, points: int) -> list[int]:
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    points = min(points, N)
    # k_j = j N / points (rounded down), j = 0..points-1: the step starts where the network is read
    return sorted({(j * N) // points for j in range(points)})


def _continuous_chain(model, kind: str, x, mode: str, noise: bool, g, record: list[int], steps: int,
                      co=None):
    """CT / FM sampler (as ``model.sample``) with z replaced before every step and the network's own
    prediction read out at the grid steps ``record`` (0-based step index k, time k / N)."""
    W = model.W_embed
    net = model.net
    feat_x = net.image_features(x)
    z = model._initial_z(x.shape[0], noise, g, x.device)
    per_point = {}
    dt = 1.0 / steps
    for k in range(steps):
        s = float(co["t"][k]) if kind == "ct" else k * dt
        z = _replace(z, mode, g)
        logits = net.logits_from_features(feat_x, z, net.time_features(s))
        if kind == "ct":
            # u_hat(z_s, x, s) = softmax(logits) @ W_embed
            u_hat = F.softmax(logits, dim=1) @ W
            if k in record:
                per_point[k] = _nearest(u_hat, W)
            a, b, c = float(co["a"][k]), float(co["b"][k]), float(co["c"][k])
            # z_t = a u_hat(z_s, x, s) + b z_s + sqrt(c) eps
            z = a * u_hat + b * z
            if noise:
                z = z + math.sqrt(c) * randn(z.shape, generator=g, device=z.device)
        else:
            # v(z_t, x, t) = logits @ W_embed
            v = logits @ W
            if k in record:
                # z_1~ = z_t + (1 - t) v    (the end point the velocity implies)
                per_point[k] = _nearest(z + (1 - s) * v, W)
            # z_{k+1} = z_k + dt v(z_k, t_k)
            z = z + dt * v
    final = model.classifier(z) if kind == "ct" else model.class_logits(z)
    return final.argmax(dim=1), torch.stack([per_point[k] for k in record])


def _continuous_alone(model, kind: str, x, z, s: float):
    logits = model.net.logits_from_features(model.net.image_features(x), z, model.net.time_features(s))
    if kind == "ct":
        return _nearest(F.softmax(logits, dim=1) @ model.W_embed, model.W_embed)
    return _nearest(z + (1 - s) * (logits @ model.W_embed), model.W_embed)


def _check_images(model, data):
    if not (hasattr(data, "x") and hasattr(data, "y")):
        raise ValueError(f"a classifier's ablation needs a TensorData with x and y, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("ablate needs a non-empty data set")
    if data.x.ndim != 4 or tuple(data.x.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"the model takes images of shape (batch, {', '.join(map(str, model.image_shape))}), "
                         f"the data has {tuple(data.x.shape)}")
    if data.y.ndim != 1 or data.y.shape[0] != data.x.shape[0]:
        raise ValueError(f"need one label per image: x {tuple(data.x.shape)}, y {tuple(data.y.shape)}")


def _decided_at(right: torch.Tensor) -> torch.Tensor:
    """(S, n) booleans "step s is right" -> (n,) first step from which every later step is right
    (0-based), S when the last one is wrong."""
    S = right.shape[0]
    # suffix_all[s] = right[s] & right[s+1] & ... & right[S-1]
    suffix = torch.flip(torch.cumprod(torch.flip(right.long(), [0]), 0), [0]).bool()
    first = torch.where(suffix.any(0), suffix.float().argmax(0), torch.full_like(suffix[0], S, dtype=torch.long))
    return first


@torch.no_grad()
def _ablate_classifier(model, kind: str, data, noise: bool, seed: int, batch_size: int, device, points: int):
    _check_images(model, data)
    g = make_generator(device, seed)
    n = len(data)
    if kind in ("dt", "backprop"):
        S = model.T
        steps, record = S, list(range(S))
    else:
        steps = model.inference_steps
        record = _grid_points(steps, points)
        S = len(record)
    co = None
    if kind == "ct":
        from nplib.continuous import ct_step_coefficients

        co = ct_step_coefficients(model.schedule, steps)
    hits = {k: 0 for k in ROW_LABELS}
    block_hits = torch.zeros(S, dtype=torch.float64)
    decided = torch.zeros(S + 1, dtype=torch.float64)
    with _Eval(model):
        for i in range(0, n, batch_size):
            x = data.x[i:i + batch_size].to(device)
            y = data.y[i:i + batch_size].to(device)
            for mode in _Z_MODES:
                if kind in ("dt", "backprop"):
                    final, per = _dt_chain(model, x, mode, noise, g)
                else:
                    final, per = _continuous_chain(model, kind, x, mode, noise, g, record, steps, co)
                hits["chain" if mode == "chain" else f"chain_z_{mode}"] += int((final == y).sum())
                if mode == "chain":
                    right = per == y
                    block_hits += right.sum(dim=1).double().cpu()
                    hits["first_block_alone"] += int(right[0].sum())
                    hits["chain_last_block"] += int(right[-1].sum())
                    decided += torch.bincount(_decided_at(right).cpu(), minlength=S + 1).double()
            zshape = (x.shape[0], model.d)
            for name, z in (("last_block_alone_zeros", torch.zeros(zshape, device=device)),
                            ("last_block_alone_prior", randn(zshape, generator=g, device=device))):
                if kind in ("dt", "backprop"):
                    pred = _dt_last_alone(model, x, z)
                else:
                    pred = _continuous_alone(model, kind, x, z, (steps - 1) / steps if kind == "fm"
                                             else float(co["t"][steps - 1]))
                hits[name] += int((pred == y).sum())
    rows = {k: v / n for k, v in hits.items()}
    levels = _levels(model, kind, record, steps)
    blocks = []
    for j in range(S):
        row = {"block": j + 1, **levels[j], "accuracy": float(block_hits[j] / n),
               "decided_fraction": float(decided[j] / n)}
        blocks.append(row)
    return rows, blocks, {"never_decided_fraction": float(decided[S] / n), "examples": n,
                          "grid_steps": steps if kind in ("ct", "fm") else None}


def _levels(model, kind: str, record: list[int], steps: int) -> list[dict]:
    """The noise level of each block's INPUT: step t (DT) reads z_{t-1}; grid point k reads z at k/N."""
    out = []
    if kind in ("dt", "forecaster"):
        ab = model.schedule.alpha_bar
        for t in range(1, model.T + 1):
            a = float(ab[t - 1])
            # SNR(t-1) = alpha_bar_{t-1} / (1 - alpha_bar_{t-1})
            out.append({"input": f"z_{t - 1}", "time": None, "alpha_bar": a, "snr": a / (1 - a)})
    elif kind == "backprop":
        out = [{"input": f"z_{t - 1}", "time": None, "alpha_bar": None, "snr": None} for t in range(1, model.T + 1)]
    elif kind == "ct":
        ts = torch.tensor([k / steps for k in record], dtype=torch.float64)
        with torch.no_grad():
            gam = model.schedule.gamma(ts.to(model.schedule.g0.device)).cpu()
        for k, gm in zip(record, gam.tolist()):
            # alpha_bar(t) = sigmoid(-gamma(t)),  SNR(t) = exp(-gamma(t))
            out.append({"input": f"z_t, t = {k}/{steps}", "time": k / steps, "alpha_bar": 1 / (1 + math.exp(gm)),
                        "snr": math.exp(-gm)})
    else:
        for k in record:
            s = k / steps
            # z_t = t u_y + (1 - t) z_0:  SNR = t^2 / (1 - t)^2,  alpha_bar = t^2 / (t^2 + (1 - t)^2)
            out.append({"input": f"z_t, t = {k}/{steps}", "time": s, "alpha_bar": s * s / (s * s + (1 - s) ** 2),
                        "snr": s * s / (1 - s) ** 2})
    return out


# ------------------------------------------------------------------------------------ forecaster
def _check_windows(model, ws):
    for attr in ("lookback", "horizon", "channels", "starts"):
        if not hasattr(ws, attr):
            raise ValueError(f"the forecaster's ablation needs a WindowSet (nplib.timeseries), got {type(ws).__name__}")
    if len(ws) == 0:
        raise ValueError("ablate needs a non-empty window set")
    if ws.lookback != model.lookback or ws.horizon != model.horizon:
        raise ValueError(f"the model forecasts {model.horizon} steps from {model.lookback}, the windows have "
                         f"lookback {ws.lookback} and horizon {ws.horizon}")


@torch.no_grad()
def _ablate_forecaster(model, ws, noise: bool, seed: int, batch_size: int, device, tolerance: float):
    from nplib.timeseries import _back, _per_channel, evaluate_point
    from nplib.diffusion import posterior_step

    _check_windows(model, ws)
    ws = ws.to(device) if hasattr(ws, "to") else ws
    g = make_generator(device, seed)
    T, d = model.T, model.d
    preds = {k: [] for k in ROW_LABELS}
    block_preds = [[] for _ in range(T)]
    dec = model.autoencoder.decode
    with _Eval(model):
        for i in range(0, len(ws), batch_size):
            idx = torch.arange(i, min(i + batch_size, len(ws)), device=ws.starts.device)
            xw = ws.x(idx)
            B, C = xw.shape[0], ws.channels
            x = _per_channel(xw)

            def back(y):
                return _back(y, B, C)

            feats = [blk.past_features(x) for blk in model.blocks]
            for mode in _Z_MODES:
                # z_0 ~ N(0, I)  (0 for the noise-free chain)
                z = (randn(x.shape[0], d, generator=g, dtype=x.dtype, device=x.device) if noise
                     else torch.zeros(x.shape[0], d, dtype=x.dtype, device=x.device))
                for t in range(1, T + 1):
                    z = _replace(z, mode, g)
                    u_hat = model.blocks[t - 1].from_features(feats[t - 1], z, 1)
                    if mode == "chain":
                        # block t alone: y_hat = D(u_hat_t(z_{t-1}, x))
                        block_preds[t - 1].append(back(dec(u_hat)))
                    # z_t = a_t u_hat_t + b_t z_{t-1} + sqrt(c_t) eps_t
                    z = posterior_step(u_hat, z, t, model.schedule, noise=noise, generator=g)
                preds["chain" if mode == "chain" else f"chain_z_{mode}"].append(back(dec(z)))
            for name, z in (("last_block_alone_zeros", torch.zeros(x.shape[0], d, dtype=x.dtype, device=x.device)),
                            ("last_block_alone_prior", randn(x.shape[0], d, generator=g, dtype=x.dtype,
                                                             device=x.device))):
                preds[name].append(back(dec(model.blocks[T - 1].from_features(feats[T - 1], z, 1))))
    block_mse = [evaluate_point(torch.cat(p), ws)["mse"] for p in block_preds]
    rows = {}
    for k in ROW_LABELS:
        if k == "first_block_alone":
            rows[k] = block_mse[0]
        elif k == "chain_last_block":
            rows[k] = block_mse[-1]
        else:
            rows[k] = evaluate_point(torch.cat(preds[k]), ws)["mse"]
    levels = _levels(model, "forecaster", list(range(T)), T)
    blocks = [{"block": t + 1, **levels[t], "mse": block_mse[t]} for t in range(T)]
    limit = (1 + tolerance) * rows["chain"]
    first = next((t + 1 for t in range(T) if block_mse[t] <= limit), None)
    return rows, blocks, {"decision_block": first, "decision_tolerance": tolerance,
                          "decision_rule": f"first block whose own forecast has MSE <= (1 + {tolerance}) x chain MSE",
                          "windows": len(ws), "channels": ws.channels}


# ------------------------------------------------------------------------------------ public
def ablate(model, data, noise: bool = False, seed: int = 0, batch_size: int | None = None, device=None,
           points: int = 10, tolerance: float = 0.05) -> dict:
    """The ablation table of ``model`` on ``data`` (module docstring says what each row means).

    Introduced in README.md ("What the chain contributes"); generalises
    :func:`nplib.evaluation.ablation` of notebooks/04_noprop_dt_mnist, section 7.

    Args:
        model: a NoPropDT, BackpropBaseline, NoPropCT, NoPropFM or NoPropForecaster.
        data: a :class:`nplib.data.TensorData` (classifiers) or a test
            :class:`nplib.timeseries.WindowSet` (forecaster).
        noise: the stochastic chain (``True``) or the noise-free one (``False``, default).
        seed: seeds the generator of every random draw (chain noise, N(0, I) replacements, shuffles).
        batch_size: images (default 1000) or windows (default 512) per batch.
        points: CT / FM: how many grid times are read out as "blocks" (default 10).
        tolerance: forecaster: a block "decides" when its MSE is within this fraction of the chain's.

    Returns a dict with ``model``, ``kind``, ``metric`` (``accuracy`` or ``mse``), ``noise``,
    ``seed``, ``rows`` (``{name: value}`` in the order of :data:`ROW_LABELS`), ``blocks`` (one dict
    per block: its input's ``alpha_bar`` and ``snr``, its own ``accuracy`` or ``mse`` on the chain's
    input, and for classifiers the fraction of examples ``decided_fraction`` there) and
    ``summary`` (never-decided fraction or the forecaster's ``decision_block``).
    """
    kind = _kind(model)
    if not isinstance(noise, bool):
        raise ValueError(f"noise must be True or False, got {noise!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(points, int) and points >= 1):
        raise ValueError(f"points must be a positive integer, got {points!r}")
    device = model_device(model) if device is None else torch.device(device)
    if kind == "forecaster":
        rows, blocks, summary = _ablate_forecaster(model, data, noise, seed, batch_size or 512, device, tolerance)
        metric = "mse"
    else:
        rows, blocks, summary = _ablate_classifier(model, kind, data, noise, seed, batch_size or 1000, device,
                                                   points)
        metric = "accuracy"
    return {"model": type(model).__name__, "kind": kind, "metric": metric, "noise": noise, "seed": seed,
            "rows": rows, "blocks": blocks, "summary": summary}


def format_table(result: dict, title: str = "") -> str:
    """The rows and the per-block table of an :func:`ablate` result, as text.

    Introduced in README.md ("What the chain contributes").
    """
    acc = result["metric"] == "accuracy"

    def fmt(v):
        return f"{100 * v:7.2f} %" if acc else f"{v:9.4f}"

    head = title or result["model"]
    lines = [f"{head}: {'accuracy' if acc else 'test MSE'}, {'stochastic' if result['noise'] else 'noise-free'} chain"]
    for k, v in result["rows"].items():
        lines.append(f"  {fmt(v)}  {k:24s} {ROW_LABELS[k]}")
    lines.append(f"  {'block':>5s} {'input':>16s} {'alpha_bar':>9s} {'SNR':>10s} {'alone':>9s}"
                 + (f" {'decided':>8s}" if acc else ""))
    for b in result["blocks"]:
        ab = "-" if b["alpha_bar"] is None else f"{b['alpha_bar']:.4f}"
        snr = "-" if b["snr"] is None else f"{b['snr']:.3g}"
        val = fmt(b["accuracy"] if acc else b["mse"])
        tail = f" {100 * b['decided_fraction']:7.2f}%" if acc else ""
        lines.append(f"  {b['block']:5d} {b['input']:>16s} {ab:>9s} {snr:>10s} {val}{tail}")
    s = result["summary"]
    if acc:
        lines.append(f"  never decided (last block wrong): {100 * s['never_decided_fraction']:.2f} %")
    else:
        lines.append(f"  decision block: {s['decision_block']} ({s['decision_rule']})")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ checkpoints and CLI
def load_model(checkpoint: str, report: str | None = None, dataset: str | None = None, device=None,
               smoke: bool | None = None):
    """A trained model and its test set: ``(model, test_data, info)``.

    Introduced in README.md ("What the chain contributes"). ``checkpoint`` is a shipped checkpoint name
    (``nb04_dt``, ``nb04_backprop``, ``nb05_ct``, ``nb05_fm``, ``nb07_forecaster``; see
    :mod:`nplib.pretrained`) or the file of a ``python -m nplib train --checkpoint FILE --out REPORT``
    run, which needs ``report``. ``dataset`` overrides the classifier's test set.
    """
    from nplib import pretrained
    from nplib.data import load_train_test, smoke_mode

    smoke = smoke_mode() if smoke is None else smoke
    if checkpoint in pretrained.names():
        m = pretrained.manifest(checkpoint)
        b = m.get("build") or {}
        if b.get("kind") == "forecaster":
            from nplib.timeseries import load_pretrained, prepare_forecast_data

            if dataset is not None and dataset != b["dataset"]:
                raise ValueError(f"{checkpoint} forecasts {b['dataset']}; --dataset {dataset} does not apply")
            model, m = load_pretrained(checkpoint, device)
            data = prepare_forecast_data(b["dataset"], b["lookback"], b["horizon"], b["mode"], smoke=smoke)
            return model, data.test, {"checkpoint": checkpoint, "sha256": m["sha256"], "dataset": b["dataset"],
                                      "mode": b["mode"], "lookback": b["lookback"], "horizon": b["horizon"],
                                      "test_windows": len(data.test), "trained_by": m.get("command")}
        model = pretrained.build(checkpoint, device)
        ds = dataset or b["dataset"]
        info = {"checkpoint": checkpoint, "sha256": m["sha256"], "trained_by": m.get("command")}
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"{checkpoint!r} is neither a shipped checkpoint ({', '.join(pretrained.names())}) "
                                    "nor a file")
        if report is None:
            raise ValueError("a training checkpoint file needs --report (the JSON of the same train run)")
        from nplib.builder import build_model
        from nplib.train import load_checkpoint

        rep = json.loads(Path(report).read_text())
        cfg, mc = rep["config"], rep["config"]["model"]
        torch.manual_seed(0)
        model = build_model(cfg["variant"], cfg["block_name"], tuple(mc["image_shape"]), mc["num_classes"], cfg["T"],
                            cfg["embedding"], cfg.get("embed_dim"), None, cfg.get("schedule", "cosine"),
                            cfg.get("alpha_bar_max", 0.99), cfg.get("eta"), cfg.get("inference_steps", 1000))
        load_checkpoint(path, model, restore_rng=False)
        if device is not None:
            model.to(device)
        model.eval()
        ds = dataset or cfg["dataset"]
        info = {"checkpoint": str(path), "report": str(report), "trained_by": rep.get("command"),
                "final_test_accuracy": rep.get("final_test_accuracy")}
    _, test = load_train_test(ds, smoke=smoke)
    info.update({"dataset": ds, "test_images": len(test)})
    return model, test, info


def _cmd(args) -> int:
    from nplib.data import smoke_mode
    from nplib.reference import write_result
    from nplib.train import hardware_info

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or "cpu"
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.noise]
    if args.report and len(args.checkpoint) > 1:
        raise ValueError("--report goes with a single --checkpoint file")
    out = {"command": " ".join(["python -m nplib"] + sys.argv[1:]),
           "config": {"noise": args.noise, "seed": args.seed, "points": args.points, "smoke": smoke_mode(),
                      "device": device, "definitions": ROW_LABELS},
           "hardware": {**hardware_info(), **({"note": args.note} if args.note else {})}, "results": {}}
    for name in args.checkpoint:
        t0 = time.perf_counter()
        model, test, info = load_model(name, args.report, args.dataset, device)
        runs = []
        for noise in modes:
            r = ablate(model, test, noise=noise, seed=args.seed, points=args.points)
            print(format_table(r, f"{name} ({info['dataset']})"))
            print()
            runs.append(r)
        out["results"][name] = {"info": info, "ablation": runs, "seconds": time.perf_counter() - t0}
    if args.out:
        write_result(args.out, out)
    return 0


def add_parser(subparsers):
    """Register ``python -m nplib ablation --checkpoint NAME [NAME ...] [--out FILE.json]``."""
    p = subparsers.add_parser("ablation", help="what the chain contributes: the ablation table of a trained model")
    p.add_argument("--checkpoint", nargs="+", required=True,
                   help="shipped checkpoint name(s) (python -m nplib pretrained list) or a train --checkpoint file")
    p.add_argument("--report", default=None, help="the train --out JSON of a checkpoint file (rebuilds the model)")
    p.add_argument("--dataset", default=None, help="classifiers: evaluate on this dataset's test set")
    p.add_argument("--noise", choices=["off", "on", "both"], default="both",
                   help="noise-free chain, stochastic chain, or both (default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--points", type=int, default=10, help="CT/FM: grid times read out as blocks")
    p.add_argument("--out", default=None, help="write the results as JSON")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--note", default="", help="a note stored with the hardware (for example: a shared, busy CPU)")
    p.set_defaults(func=_cmd)
    return p


#: Picked up by :mod:`nplib.cli`.
COMMANDS = {"ablation": add_parser}
