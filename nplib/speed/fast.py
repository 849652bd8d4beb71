r"""A fast path for NoProp-DT training: all T block updates of a minibatch as ONE batched computation.

Introduced in README.md ("Two ways to train NoProp-DT"); the per-block loop it reproduces is
:meth:`nplib.models.NoPropDT.training_step` (notebooks/04_noprop_dt_mnist, section 1).

**Why it is possible.** Block t's loss

    L_t = (T/2) eta (SNR(t) - SNR(t-1)) || u_hat_t(z_{t-1}, x) - u_y ||^2,   z_{t-1} ~ q(z_{t-1} | y)

depends on block t's parameters, the images and a NOISED LABEL only (with a fixed ``W_embed``), so
the T blocks are T independent problems that share the minibatch. :class:`FastDTTrainer` stacks
the T blocks' parameters and buffers (``torch.func.stack_module_state``) and evaluates all of them
with ``torch.func.vmap`` over ``torch.func.functional_call``: the convolutions become one
convolution with T times the channels (first layer) and grouped convolutions (later layers), the
linear layers batched matrix products. One backward pass of ``sum_t L_t`` gives each block exactly
the gradient of its own ``L_t`` (the parameter sets are disjoint), and one AdamW over the stacked
tensors is, element by element, T independent AdamWs with the same hyper-parameters (every block
steps on every minibatch, so their step counts agree).

**What it computes: exactly the loop's numbers (to float rounding).**

* Random numbers: the loop draws ONE base seed from the global generator per minibatch, and block
  t draws its noise ``eps`` for ``z_{t-1}`` and then its dropout masks, in the order the dropout
  layers run, from the stream seeded ``base * 4099 + t``. The fast path draws the same base seed,
  re-seeds the same streams and draws the same tensors in the same order (the masks by applying
  the same ``F.dropout`` to a tensor of ones), OUTSIDE the vmap, and feeds them to the batched
  forward. No vmap randomness is used, so the masks are identical to the loop's on the CPU (on a
  GPU too when the loop's dropout and ours call the same kernel, which they do for CUDA tensors).
* Batch norm: each block keeps its own running statistics (stacked buffers, updated in place in
  the vmapped forward) and normalises with its own batch statistics, as in the loop.
* The classifier's T updates (step t on ``-log p(y | z_T) + KL``, stream ``base * 4099 + T + t``)
  are sequential in the loop and stay sequential here: they are tiny (a d x m linear layer).

**Learned W_embed: refused.** With a trainable ``W_embed`` the loop updates it T times per
minibatch, interleaved with the blocks: block t reads ``W_embed`` after the shared updates
1..t-1, each of which used block t-1's gradient. Block t then depends on block t-1's update
within the minibatch, and no batched computation can reproduce that order exactly. The fast path
therefore raises a ValueError for trainable embeddings ('learned', 'prototype'), as block-parallel
training does (:func:`nplib.speed.parallel.check_parallelisable`); train those with the loop.

**No host synchronisation inside a step.** The loop calls ``.item()`` and ``isfinite`` 2T times
per minibatch, each a GPU -> CPU synchronisation. :meth:`FastDTTrainer.step` returns its losses as
device tensors and checks them for NaN/inf once every ``check_every`` steps (one synchronisation),
raising a FloatingPointError that names the steps. :meth:`FastDTTrainer.training_step` is the
drop-in replacement for ``NoPropDT.training_step`` that :func:`nplib.train.fit` calls; fit needs
Python floats for its history, so it converts the losses (ONE synchronisation per minibatch, against
the loop's 4T).

**What it costs.** The batched forward keeps the activations of all T blocks alive until the
backward pass, so the peak training memory grows like T times one block's, where the loop keeps
one block's at a time (the paper's memory claim, notebook 06). The fast path trades that memory
for throughput.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from nplib.diffusion import kl_prior, q_sample
from nplib.models import NoPropDT

__all__ = ["FastDTTrainer", "check_fast_supported"]


def check_fast_supported(model) -> None:
    """Raise a ValueError unless ``model`` is a NoProp-DT with a fixed ``W_embed`` (module docstring)."""
    if not isinstance(model, NoPropDT):
        raise ValueError(f"the fast path trains NoProp-DT models only, got {type(model).__name__}")
    if model.embedding.trainable:
        raise ValueError(
            f"the fast path cannot reproduce the loop with a trainable W_embed ({model.embedding.kind!r} "
            "embedding): the loop updates W_embed after every block, so block t reads the W_embed that "
            "block t-1's update produced, an order no batched step can match. Use the per-block loop "
            "(NoPropDT.training_step) for learned and prototype embeddings, or a one-hot embedding.")


class _MaskedDropout(nn.Module):
    """Stands in for ``nn.Dropout`` in the batched forward: multiplies by a pre-drawn (scaled) mask."""

    def __init__(self, owner: "FastDTTrainer", index: int):
        super().__init__()
        self._owner = [owner]  # a list, so the trainer is not registered as a submodule
        self.index = index

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        masks = self._owner[0]._current_masks
        return h * masks[self.index] if masks else h     # no masks in eval mode: dropout is the identity


class FastDTTrainer:
    """Trains a :class:`~nplib.models.NoPropDT` with all T block updates of a minibatch batched.

    Introduced in README.md ("Two ways to train NoProp-DT"); the maths is the loop's
    (notebooks/04_noprop_dt_mnist, section 1) and the module docstring says what is equal.

    Args:
        model: a NoPropDT with a fixed (one-hot) embedding, already on its training device. The
            model's block parameters and buffers become views into the trainer's stacked tensors,
            so the model always holds the trained weights (``model.predict`` and ``state_dict``
            work as usual). Do not move the model to another device afterwards.
        check_every: check the losses for NaN/inf once per this many :meth:`step` calls.

    Use :meth:`step` in your own loop, or pass the trainer to :func:`nplib.train.fit` in place of
    the model (it forwards everything else to the model).
    """

    def __init__(self, model: NoPropDT, check_every: int = 50):
        check_fast_supported(model)
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"check_every must be a positive integer, got {check_every!r}")
        self.model = model
        self.check_every = check_every
        self._current_masks = None
        self._pending: list[torch.Tensor] = []
        self._steps = 0
        blocks = list(model.blocks)
        params, buffers = stack_module_state(blocks)
        # the model's blocks become views of the stacked tensors: one copy of the weights
        with torch.no_grad():
            for t, block in enumerate(blocks):
                for name, p in block.named_parameters():
                    p.data = params[name][t]
                for name, b in block.named_buffers():
                    _set_buffer(block, name, buffers[name][t])
        self.params, self.buffers = params, buffers
        # a template block on the meta device whose Dropout layers read the pre-drawn masks
        template = copy.deepcopy(blocks[0]).to("meta")
        self._dropouts: list[tuple[float, tuple[int, ...]]] = []
        self._replace_dropouts(template)
        self.template = template
        self._mask_shapes = self._dropout_shapes(blocks[0])
        # per-block constant of L_t: (T/2) eta (SNR(t) - SNR(t-1))
        T = model.T
        self._weights = [(T / 2) * model.eta * float(model.schedule.snr_delta[t - 1]) for t in range(1, T + 1)]
        ab = [float(model.schedule.alpha_bar[t - 1]) for t in range(1, T + 1)]
        self._sqrt_ab = [math.sqrt(a) for a in ab]
        self._sqrt_1mab = [math.sqrt(1.0 - a) for a in ab]
        self._consts: dict = {}

    # ------------------------------------------------------------------ set-up helpers
    def _replace_dropouts(self, module: nn.Module) -> None:
        # execution order of the Dropout layers equals registration order in DenoisingBlock
        # (image path first, then the label path); _dropout_shapes checks it with hooks
        for name, child in module.named_children():
            if isinstance(child, nn.Dropout):
                setattr(module, name, _MaskedDropout(self, len(self._dropouts)))
                self._dropouts.append((float(child.p), ()))
            else:
                self._replace_dropouts(child)

    def _dropout_shapes(self, block: nn.Module) -> list[tuple[int, ...]]:
        """Per-example shape of each dropout layer's input, in the order the layers run."""
        order, hooks = [], []
        for m in block.modules():
            if isinstance(m, nn.Dropout):
                hooks.append(m.register_forward_hook(lambda mod, inp, out: order.append((mod, tuple(inp[0].shape[1:])))))
        was = block.training
        block.eval()
        try:
            with torch.no_grad():
                ref = next(block.parameters())
                kw = {"device": ref.device, "dtype": ref.dtype}
                block(torch.zeros(2, *block.image_shape, **kw), torch.zeros(2, block.z_dim, **kw))
        finally:
            block.train(was)
            for h in hooks:
                h.remove()
        registered = [m for m in block.modules() if isinstance(m, nn.Dropout)]
        if [m for m, _ in order] != registered:
            raise ValueError("the block's dropout layers do not run in the order they are registered; "
                             "the fast path cannot reproduce the loop's masks")
        return [s for _, s in order]

    # ------------------------------------------------------------------ random numbers, as the loop draws them
    def _draw(self, t: int, base: int, batch: int, d: int, device, dtype):
        """eps for z_{t-1} and block t's dropout masks, from the loop's stream (base * 4099 + t)."""
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(base * 4099 + t)
            # q_sample's noise: eps ~ N(0, I), drawn first
            eps = torch.randn((batch, d), dtype=dtype, device=device)
            masks = []
            if self.model.training:
                for (p, _), shape in zip(self._dropouts, self._mask_shapes):
                    # the loop's nn.Dropout on an activation of this shape, applied to ones: mask / (1 - p)
                    masks.append(F.dropout(torch.ones((batch, *shape), dtype=dtype, device=device), p, True))
        return eps, masks

    # ------------------------------------------------------------------ the batched block losses
    def _constants(self, device, dtype):
        # built once per device: a host -> device copy inside every step would synchronise
        key = (str(device), dtype)
        if key not in self._consts:
            T = self.model.T
            self._consts[key] = tuple(torch.tensor(v, dtype=dtype, device=device) for v in
                                      (self._weights, self._sqrt_ab, self._sqrt_1mab))
            self._consts[key] = (self._consts[key][0], self._consts[key][1].view(T, 1, 1),
                                 self._consts[key][2].view(T, 1, 1))
        return self._consts[key]

    def _block_losses(self, params, x, z_prev, u_y, masks):
        """(T,) losses L_t of all blocks, from the stacked parameters (vmapped over t)."""
        W = self.model.W_embed
        weights = self._constants(x.device, x.dtype)[0]

        def one_block(p, b, z, mask_list):
            self._current_masks = mask_list
            try:
                logits = functional_call(self.template, (p, b), (x, z))
            finally:
                self._current_masks = None
            # u_hat_t = softmax(logits_t) @ W_embed
            u_hat = F.softmax(logits, dim=1) @ W
            # ||u_hat_t(z_{t-1}, x) - u_y||^2, summed over d, averaged over the batch
            return (u_hat - u_y).pow(2).sum(dim=1).mean()

        sq = vmap(one_block, in_dims=(0, 0, 0, 0))(params, self.buffers, z_prev, masks)
        # L_t = (T/2) eta (SNR(t) - SNR(t-1)) ||u_hat_t - u_y||^2
        return weights * sq

    # ------------------------------------------------------------------ optimizers and steps
    def configure_optimizers(self, lr: float = 1e-3, weight_decay: float = 1e-3) -> dict:
        """One AdamW over the stacked block tensors (= T per-block AdamWs) and one for the classifier."""
        return {"blocks_stacked": torch.optim.AdamW(list(self.params.values()), lr=lr, weight_decay=weight_decay),
                "shared": torch.optim.AdamW(self.model.shared_parameters(), lr=lr, weight_decay=weight_decay)}

    def step(self, x: torch.Tensor, y: torch.Tensor, optimizers: dict) -> dict:
        """One minibatch of Algorithm 1, all T blocks at once; losses as device tensors (no sync).

        Introduced in README.md ("Two ways to train NoProp-DT"). Returns ``loss``,
        ``loss_blocks`` (mean of the T block losses) and ``loss_classifier`` (mean of the T
        classifier losses), as the loop does, and ``block_losses`` (T,).
        """
        model = self.model
        model._check_x(x)
        T, B, d = model.T, x.shape[0], model.d
        if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or y.shape != (B,):
            raise ValueError(f"labels must be integers of shape ({B},), got {y.dtype} {tuple(y.shape)}")
        if y.device.type == "cpu" and B and (int(y.min()) < 0 or int(y.max()) >= model.num_classes):
            raise ValueError(f"labels must lie in [0, {model.num_classes - 1}]")   # checked on CPU only: no sync
        base = int(torch.randint(0, 2**31 - 1, (1,)))        # the loop's one draw per minibatch (CPU generator)
        # u_y = W_embed[y]   (LabelEmbedding.forward would check the label range: a sync on a GPU)
        u_y = model.W_embed[y.long()]
        eps, masks = [], []
        for t in range(1, T + 1):
            e, m = self._draw(t, base, B, d, x.device, x.dtype)
            eps.append(e)
            masks.append(m)
        eps = torch.stack(eps)                                                   # (T, B, d)
        masks = [torch.stack([m[k] for m in masks]) for k in range(len(self._dropouts))] if masks[0] else []
        _, sa, s1 = self._constants(x.device, x.dtype)
        # z_{t-1} = sqrt(alpha_bar_{t-1}) u_y + sqrt(1 - alpha_bar_{t-1}) eps     for every t at once
        z_prev = sa * u_y.unsqueeze(0) + s1 * eps
        # batch norm and dropout of the template follow the model's mode (train() / eval())
        self.template.train(model.training)
        opt = optimizers["blocks_stacked"]
        opt.zero_grad(set_to_none=True)
        losses = self._block_losses(self.params, x, z_prev, u_y, masks)
        # one backward of sum_t L_t: block t's parameters get exactly dL_t/dtheta_t
        losses.sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        # the classifier's T updates, sequential as in the loop (stream base * 4099 + T + t)
        shared_opt = optimizers.get("shared")
        devices = [x.device] if x.device.type == "cuda" else []
        out_losses = []
        for t in range(1, T + 1):
            shared_opt.zero_grad(set_to_none=True)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(base * 4099 + T + t)
                loss_out = self._classifier_loss(u_y, y)
                loss_out.backward()
            shared_opt.step()
            out_losses.append(loss_out.detach())
        block_losses = losses.detach()
        loss_out = torch.stack(out_losses).mean()
        out = {"loss": block_losses.mean() + loss_out, "loss_blocks": block_losses.mean(),
               "loss_classifier": loss_out, "block_losses": block_losses}
        self._steps += 1
        self._pending.append(out["loss"])
        if self._steps % self.check_every == 0:
            self.check_finite()
        return out

    def _classifier_loss(self, u_y: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # NoPropDT.classifier_loss without LabelEmbedding's label check (a host sync on a GPU)
        model = self.model
        # z_T ~ q(z_T | y)
        z_T = q_sample(u_y, model.T, model.schedule)
        # -log p(y | z_T) + KL(q(z_0 | y) || N(0, I))
        return F.cross_entropy(model.classifier(z_T), y) + kl_prior(u_y, model.schedule).mean()

    def check_finite(self) -> None:
        """One host synchronisation: raise FloatingPointError if a loss since the last check was NaN/inf."""
        if not self._pending:
            return
        pending, self._pending = torch.stack(self._pending), []
        if not bool(torch.isfinite(pending).all()):
            first = self._steps - len(pending) + int((~torch.isfinite(pending)).nonzero()[0, 0]) + 1
            raise FloatingPointError(f"NoProp-DT fast path: non-finite loss at step {first} "
                                     f"(checked steps {self._steps - len(pending) + 1}..{self._steps})")

    def training_step(self, x: torch.Tensor, y: torch.Tensor, optimizers: dict) -> dict:
        """Drop-in for ``NoPropDT.training_step`` as :func:`nplib.train.fit` calls it; floats out.

        Introduced in README.md ("Two ways to train NoProp-DT"). One synchronisation per minibatch
        (fit's history needs Python floats); it also checks the loss for NaN/inf.
        """
        out = self.step(x, y, optimizers)
        vals = torch.stack([out["loss"], out["loss_blocks"], out["loss_classifier"]]).tolist()
        self._pending.clear()
        if not all(math.isfinite(v) for v in vals):
            raise FloatingPointError(f"NoProp-DT fast path: loss is {vals[0]}")
        return {"loss": vals[0], "loss_blocks": vals[1], "loss_classifier": vals[2]}

    # ------------------------------------------------------------------ the model's interface, forwarded
    def __getattr__(self, name):
        # everything else (predict, sample, config, state_dict, train, eval, to, parameters...) is the model's
        if name in ("model", "params", "buffers", "template"):
            raise AttributeError(name)
        return getattr(self.model, name)

    @property
    def training(self) -> bool:
        return self.model.training


def _set_buffer(module: nn.Module, name: str, value: torch.Tensor) -> None:
    *path, leaf = name.split(".")
    for p in path:
        module = getattr(module, p)
    module._buffers[leaf] = value


# ---------------------------------------------------------------------------------------- measurement
def measure_throughput_side_by_side(block: str = "small", T: int = 10, batch_size: int = 128,
                                    image_shape=(1, 28, 28), num_classes: int = 10, warmup: int = 3,
                                    steps: int = 24, device: str | torch.device = "cpu", seed: int = 0) -> dict:
    """Training images per second of the per-block loop and of the fast path, interleaved.

    Introduced in README.md ("Two ways to train NoProp-DT"). Both paths start from the same
    initial model and train on the same random minibatches (compute does not depend on the values).
    After ``warmup`` steps each, the two paths alternate in chunks of ``steps // 4`` timed steps, so a
    change in the machine's load affects both alike. On a GPU every timed chunk ends with
    ``torch.cuda.synchronize()``. Reports images per wall-clock second and per CPU-second of this
    process (``time.process_time``, all threads), the honest figure on a shared machine.
    """
    import time

    device = torch.device(device)
    torch.manual_seed(seed)
    loop_model = NoPropDT(image_shape, num_classes, T=T, block=block).to(device)
    fast_model = copy.deepcopy(loop_model)
    fast = FastDTTrainer(fast_model)
    runners = {"loop": (loop_model.training_step, loop_model.configure_optimizers()),
               "fast": (fast.training_step, fast.configure_optimizers())}
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *image_shape, generator=g).to(device)
    y = torch.randint(0, num_classes, (batch_size,), generator=g).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for name, (fn, opts) in runners.items():
        for _ in range(warmup):
            fn(x, y, opts)
    sync()
    chunk = max(1, steps // 4)
    seconds = {"loop": 0.0, "fast": 0.0}
    cpu_seconds = {"loop": 0.0, "fast": 0.0}
    done = {"loop": 0, "fast": 0}
    while min(done.values()) < steps:
        for name, (fn, opts) in runners.items():
            n = min(chunk, steps - done[name])
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                fn(x, y, opts)
            sync()
            seconds[name] += time.perf_counter() - t0
            cpu_seconds[name] += time.process_time() - c0
            done[name] += n
    out = {"block": block, "T": T, "batch_size": batch_size, "image_shape": list(image_shape),
           "warmup_steps": warmup, "timed_steps": steps}
    for name in runners:
        out[f"{name}_images_per_s"] = steps * batch_size / seconds[name]
        out[f"{name}_seconds_per_step"] = seconds[name] / steps
        # CPU time of this process (all its threads): on a shared, overloaded machine the wall time
        # mostly measures the other processes; images per CPU-second does not
        out[f"{name}_images_per_cpu_s"] = steps * batch_size / cpu_seconds[name]
    out["speedup_wall"] = out["fast_images_per_s"] / out["loop_images_per_s"]
    out["speedup_cpu"] = out["fast_images_per_cpu_s"] / out["loop_images_per_cpu_s"]
    return out


def _main(argv=None) -> int:
    """``python -m nplib.speed.fast --out runs/bench_fast_path.json``: the side-by-side throughput table."""
    import argparse
    import datetime
    import json
    import os
    import sys

    from nplib.reference import write_result
    from nplib.train import hardware_info

    p = argparse.ArgumentParser(prog="python -m nplib.speed.fast", description=measure_throughput_side_by_side.__doc__)
    p.add_argument("--blocks", default="small,paper")
    p.add_argument("--steps", default="24", help="timed steps per path: N, or per block, e.g. small:24,paper:6")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--T", type=int, default=10)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/bench_fast_path.json")
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    steps = ({k: int(v) for k, v in (kv.split(":") for kv in args.steps.split(","))} if ":" in args.steps
             else dict.fromkeys(args.blocks.split(","), int(args.steps)))
    rows = []
    for block in args.blocks.split(","):
        row = measure_throughput_side_by_side(block, T=args.T, batch_size=args.batch_size, warmup=args.warmup,
                                              steps=steps[block], device=device)
        print(json.dumps(row), flush=True)
        rows.append(row)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    result = {"command": " ".join(["python -m nplib.speed.fast"] + (sys.argv[1:] if argv is None else list(argv))),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "hardware": hardware_info(), "device": str(device), "niceness": os.nice(0),
              "load_average_1_5_15_at_start": load_start, "load_average_1_5_15_at_end": load,
              "rows": rows}
    write_result(args.out, result, indent=2, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
