r"""NoProp-DT and the backprop baseline built from the same blocks.

NoProp-DT is introduced in notebooks/04_noprop_dt_mnist; its pieces in notebooks 01-03.

**Model (the chain, the paper's section 2.1).** ``z_0 ~ N(0, I)`` and for t = 1..T

    z_t = a_t u_hat_t(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) eps_t,   eps_t ~ N(0, I)
    u_hat_t(z_{t-1}, x) = softmax(logits_t(z_{t-1}, x)) @ W_embed

then ``p(y | z_T) = softmax(Linear_{d->m}(z_T))``.

**Loss (per example).** With ``z_{t-1} ~ q(z_{t-1} | y)`` and ``z_T ~ q(z_T | y)`` (noised LABELS,
never the chain's output):

    L_t   = (T / 2) eta (SNR(t) - SNR(t-1)) || u_hat_t(z_{t-1}, x) - u_y ||^2     (block t only)
    L_out = -log p(y | z_T)                                                         (classifier)
    L_KL  = KL(q(z_0 | y) || N(0, I))

The paper's Algorithm 1 updates block t, the classifier and ``W_embed`` from ``L_t + L_out + L_KL``
for every block and minibatch. Block t sees only ``x`` and a ``z_{t-1}`` sampled from q, so no
gradient ever flows from block t's loss into another block: back-propagation happens inside a
block only. Each block's forward and backward finish (and its gradients are applied and freed)
before the next block starts, so only one block's activations are alive at a time.

A choice the paper leaves open: an epoch is "one pass over the data, every minibatch updates every block"
(loops of Algorithm 1 swapped). Each block still sees the data once per epoch, and each image
batch is loaded once instead of T times.

**Inference.** The chain above from ``z_0``. ``noise=True`` is the paper's stochastic chain.
``noise=False`` is the deterministic variant: ``z_0 = 0`` (the prior's mean) and ``eps_t = 0``, so
the prediction is a fixed function of ``x``. Labels are never used at inference.

**Devices.** ``model.to(device)`` moves the blocks, the classifier and ``W_embed``; the schedule
stays a float64 CPU object read as Python floats. ``sample``/``predict`` take a ``generator`` on
any device: it draws the noise on its own device and the result is moved to the images' device
(:mod:`nplib.devices`), so a CPU generator gives the same ``z_0`` on the CPU and on a GPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nplib.blocks import BlockConfig, DenoisingBlock
from nplib.devices import randn
from nplib.diffusion import kl_prior, posterior_step, q_sample
from nplib.embeddings import LabelEmbedding
from nplib.schedules import DTSchedule, make_schedule

__all__ = ["NoPropDT", "BackpropBaseline", "build_embedding", "EmbeddingModelMixin"]


def build_embedding(kind: str, num_classes: int, dim: int | None = None,
                    prototypes: torch.Tensor | None = None) -> LabelEmbedding:
    """A :class:`LabelEmbedding` from its kind name (see :mod:`nplib.embeddings`)."""
    return LabelEmbedding(kind, num_classes, dim=dim, prototypes=prototypes)


def _as_block_config(block) -> BlockConfig:
    return block if isinstance(block, BlockConfig) else BlockConfig.named(block)


class EmbeddingModelMixin:
    """What every model of the course shares: ``W_embed``, ``d`` and the input-shape check.

    Needs ``self.embedding`` (a :class:`LabelEmbedding`) and ``self.image_shape``.
    """

    @property
    def W_embed(self) -> torch.Tensor:
        return self.embedding.W_embed

    @property
    def d(self) -> int:
        return self.embedding.dim

    def _check_x(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images of shape (batch, {', '.join(map(str, self.image_shape))}), "
                             f"got {tuple(x.shape)}")


class _BlockStack(EmbeddingModelMixin, nn.Module):
    """Shared construction of T blocks, W_embed and the classifier on z_T."""

    def __init__(self, image_shape, num_classes: int, T: int, block, embedding: LabelEmbedding | str,
                 embed_dim: int | None, prototypes: torch.Tensor | None):
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape}")
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.T = T
        self.block_config = _as_block_config(block)
        if isinstance(embedding, str):
            embedding = build_embedding(embedding, num_classes, embed_dim, prototypes)
        if embedding.num_classes != num_classes:
            raise ValueError(f"embedding has {embedding.num_classes} classes, model has {num_classes}")
        self.embedding = embedding
        d = embedding.dim
        self.blocks = nn.ModuleList(
            DenoisingBlock(self.image_shape, d, num_classes, self.block_config, embedding.image_shape)
            for _ in range(T)
        )
        # p(y | z_T) = softmax(Linear_{d->m}(z_T))
        self.classifier = nn.Linear(d, num_classes)

    def u_hat(self, t: int, x: torch.Tensor, z_prev: torch.Tensor):
        """Block t's prediction of the clean embedding, and its logits.

        Introduced in notebooks/03_one_denoising_block, section 1.
        """
        logits = self.blocks[t - 1](x, z_prev)
        # u_hat_t = softmax(logits_t) @ W_embed     (a convex combination of class embeddings)
        return F.softmax(logits, dim=1) @ self.W_embed, logits

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters shared by all blocks: the classifier and a trainable W_embed."""
        params = list(self.classifier.parameters())
        if self.embedding.trainable:
            params.append(self.embedding.W_embed)
        return params

    def _initial_z(self, batch: int, noise: bool, generator, device) -> torch.Tensor:
        if noise:
            # z_0 ~ N(0, I)      (on ``device``; a generator elsewhere draws there, nplib.devices)
            return randn(batch, self.d, generator=generator, device=device)
        return torch.zeros(batch, self.d, device=device)



class NoPropDT(_BlockStack):
    """NoProp-DT: T denoising blocks trained by local losses (module docstring).

    Introduced in notebooks/04_noprop_dt_mnist, section 1.

    Args:
        image_shape: (C, H, W) of the images.
        num_classes: m.
        T: number of blocks (10 in the paper).
        block: 'paper', 'small' or a :class:`~nplib.blocks.BlockConfig`.
        embedding: 'onehot', 'learned', 'prototype' or a :class:`~nplib.embeddings.LabelEmbedding`.
        schedule: a :class:`~nplib.schedules.DTSchedule` with the same T (default: cosine, clipped).
        eta: weight of the denoising losses (0.1 in the paper).
        embed_dim: d for learned embeddings (20 by default).
        prototypes: (m, C, H, W) medoid images for prototype embeddings.
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, T: int = 10, block="small",
                 embedding: LabelEmbedding | str = "onehot", schedule: DTSchedule | None = None,
                 eta: float = 0.1, embed_dim: int | None = None, prototypes: torch.Tensor | None = None):
        super().__init__(image_shape, num_classes, T, block, embedding, embed_dim, prototypes)
        schedule = schedule or make_schedule("cosine", T)
        if schedule.T != T:
            raise ValueError(f"schedule has T = {schedule.T} but the model has T = {T} blocks")
        if not (schedule.snr_delta > 0).all():
            raise ValueError("every loss weight SNR(t) - SNR(t-1) must be positive")
        if eta <= 0:
            raise ValueError(f"eta must be positive, got {eta}")
        self.schedule = schedule
        self.eta = eta

    # ------------------------------------------------------------------ losses
    def block_loss(self, t: int, x: torch.Tensor, y: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Block t's denoising loss, averaged over the batch.

        Introduced in notebooks/03_one_denoising_block, section 2.
        """
        u_y = self.embedding(y)
        # z_{t-1} ~ q(z_{t-1} | y)          (a noised label, not the chain's output)
        z_prev = q_sample(u_y, t - 1, self.schedule, generator=generator)
        u_hat, _ = self.u_hat(t, x, z_prev)
        weight = float(self.schedule.snr_delta[t - 1])
        # L_t = (T/2) eta (SNR(t) - SNR(t-1)) ||u_hat_t(z_{t-1}, x) - u_y||^2   (sum over d)
        return (self.T / 2) * self.eta * weight * (u_hat - u_y).pow(2).sum(dim=1).mean()

    def classifier_loss(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``-log p(y | z_T) + KL(q(z_0|y) || N(0,I))`` with ``z_T ~ q(z_T | y)``, batch mean.

        Introduced in notebooks/03_one_denoising_block, section 2.
        """
        u_y = self.embedding(y)
        # z_T ~ q(z_T | y): the classifier is trained on NOISED LABELS, not on the chain's output
        z_T = q_sample(u_y, self.T, self.schedule, generator=generator)
        # -log p(y | z_T)
        ce = F.cross_entropy(self.classifier(z_T), y)
        # KL(q(z_0 | y) || N(0, I))
        return ce + kl_prior(u_y, self.schedule).mean()

    # ------------------------------------------------------------------ training
    def configure_optimizers(self, lr: float = 1e-3, weight_decay: float = 1e-3) -> dict:
        """One AdamW per block and one for the shared parameters (paper defaults)."""
        opts = {f"block{t}": torch.optim.AdamW(self.blocks[t - 1].parameters(), lr=lr, weight_decay=weight_decay)
                for t in range(1, self.T + 1)}
        opts["shared"] = torch.optim.AdamW(self.shared_parameters(), lr=lr, weight_decay=weight_decay)
        return opts

    def training_step(self, x: torch.Tensor, y: torch.Tensor, optimizers: dict, blocks=None,
                      shared: bool = True) -> dict:
        """One minibatch of Algorithm 1: for t = 1..T, update block t, then the classifier and W_embed.

        Introduced in notebooks/04_noprop_dt_mnist, section 1.

        Block t's forward, backward and update finish (and its gradients are freed) before block
        t+1 starts. The losses of Algorithm 1 are summed per step, ``L_t + L_out + L_KL``; their
        parameters are disjoint except a learned ``W_embed``, so the two backward passes below give
        exactly the gradients of the sum.

        Random numbers: one draw from the global generator per minibatch gives a base seed; block
        t and the t-th classifier update then draw their noise (and dropout masks) from their own
        streams seeded by (base, t). A process that trains only some ``blocks`` (block-parallel
        training, :mod:`nplib.speed.parallel`) therefore computes exactly what the single process computes
        for those blocks. ``shared=False`` skips the classifier / W_embed updates.
        Returns the mean losses as floats.
        """
        train_blocks = set(range(1, self.T + 1)) if blocks is None else set(blocks)
        if not train_blocks <= set(range(1, self.T + 1)):
            raise ValueError(f"blocks must be a subset of 1..{self.T}, got {sorted(train_blocks)}")
        base = int(torch.randint(0, 2**31 - 1, (1,)))
        devices = [x.device] if x.device.type == "cuda" else []
        shared_opt = optimizers.get("shared") if shared else None
        total_block, total_out = 0.0, 0.0
        for t in range(1, self.T + 1):
            if shared_opt is not None:
                shared_opt.zero_grad(set_to_none=True)
            if t in train_blocks:
                opt = optimizers[f"block{t}"]
                opt.zero_grad(set_to_none=True)
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(base * 4099 + t)
                    loss_t = self.block_loss(t, x, y)
                    if not torch.isfinite(loss_t):
                        raise FloatingPointError(f"NoProp-DT loss of block {t} is {loss_t.item()}")
                    loss_t.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)  # free block t's gradients before block t+1 starts
                total_block += loss_t.item()
            if shared_opt is not None:
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(base * 4099 + self.T + t)
                    loss_out = self.classifier_loss(y)
                    if not torch.isfinite(loss_out):
                        raise FloatingPointError(f"classifier loss -log p(y|z_T) + KL is {loss_out.item()}")
                    loss_out.backward()
                shared_opt.step()
                total_out += loss_out.item()
        n_b, n_s = max(len(train_blocks), 1), (self.T if shared_opt is not None else 1)
        return {"loss": total_block / n_b + total_out / n_s, "loss_blocks": total_block / n_b,
                "loss_classifier": total_out / n_s}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def sample(self, x: torch.Tensor, noise: bool = True, generator: torch.Generator | None = None,
               return_trajectory: bool = False):
        """Run the chain ``z_0 -> z_T`` on images ``x``; never looks at a label.

        Introduced in notebooks/04_noprop_dt_mnist, section 3. Returns the classifier's logits on
        ``z_T``; with ``return_trajectory=True`` also a dict with ``z`` (T+1, batch, d) and
        ``u_hat`` (T, batch, d), for plots.
        """
        self._check_x(x)
        z = self._initial_z(x.shape[0], noise, generator, x.device)
        zs, u_hats = [z], []
        for t in range(1, self.T + 1):
            u_hat, _ = self.u_hat(t, x, z)
            # z_t = a_t u_hat_t(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) eps_t
            z = posterior_step(u_hat, z, t, self.schedule, noise=noise, generator=generator)
            if return_trajectory:
                zs.append(z)
                u_hats.append(u_hat)
        logits = self.classifier(z)
        if return_trajectory:
            return logits, {"z": torch.stack(zs), "u_hat": torch.stack(u_hats)}
        return logits

    @torch.no_grad()
    def predict(self, x: torch.Tensor, noise: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Predicted class of each image (argmax of the classifier on the chain's z_T)."""
        return self.sample(x, noise=noise, generator=generator).argmax(dim=1)

    def config(self) -> dict:
        return {"variant": "dt", "T": self.T, "eta": self.eta, "schedule": self.schedule.kind,
                "alpha_bar_min": float(self.schedule.alpha_bar[0]),
                "alpha_bar_max": float(self.schedule.alpha_bar[-1]),
                "embedding": self.embedding.kind, "embed_dim": self.d, "block": vars(self.block_config),
                "image_shape": list(self.image_shape), "num_classes": self.num_classes}


class BackpropBaseline(_BlockStack):
    """The same blocks trained end to end with cross-entropy (the paper's baseline).

    Introduced in notebooks/04_noprop_dt_mnist, section 5.

        z_0 ~ N(0, I);   z_t = (1 - alpha_t) z_{t-1} + alpha_t u_hat_t(z_{t-1}, x),   alpha_t = tanh(w_t)

    then the classifier on z_T and cross-entropy; one AdamW over every parameter. ``noise=False``
    at inference starts from ``z_0 = 0``. Two choices the paper leaves open:

    * the initial ``w_t``: ``w_init = 0.5`` (alpha_t = 0.46), so each step moves z about half way
      to the block's prediction;
    * the classifier's initialisation. With PyTorch's default (weights of size about 1/sqrt(d))
      the logits on z_T, a convex combination of class embeddings, span a tiny range, learning is
      slow and the block softmaxes can settle with two classes on one coordinate of z_T, which no
      linear classifier can undo (measured in notebooks/04_noprop_dt_mnist, section 5: 61 % after
      5 epochs on MNIST). We start the classifier as a scaled nearest-embedding read-out,
      ``logits = classifier_scale * z @ W_embed^T / ||u_k||^2`` (zero bias), which ties coordinate
      k of z_T to class k from the first step; ``classifier_scale=None`` keeps PyTorch's default.
      With the default scale 5 a z_T equal to u_y gives p(y | z_T) of about 0.94 (one-hot).
    """

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, T: int = 10, block="small",
                 embedding: LabelEmbedding | str = "onehot", embed_dim: int | None = None,
                 prototypes: torch.Tensor | None = None, w_init: float = 0.5,
                 classifier_scale: float | None = 5.0):
        super().__init__(image_shape, num_classes, T, block, embedding, embed_dim, prototypes)
        self.w_init = float(w_init)
        self.w = nn.Parameter(torch.full((T,), self.w_init))
        self.classifier_scale = None if classifier_scale is None else float(classifier_scale)
        if self.classifier_scale is not None:
            if not self.classifier_scale > 0:
                raise ValueError(f"classifier_scale must be positive or None, got {classifier_scale}")
            with torch.no_grad():
                W = self.W_embed.detach()
                # logits_k = scale * <z, u_k> / ||u_k||^2     (coordinate k of z_T read as class k)
                self.classifier.weight.copy_(self.classifier_scale * W / W.pow(2).sum(dim=1, keepdim=True))
                self.classifier.bias.zero_()

    def forward(self, x: torch.Tensor, noise: bool = True, generator: torch.Generator | None = None,
                return_trajectory: bool = False):
        self._check_x(x)
        z = self._initial_z(x.shape[0], noise, generator, x.device)
        zs = [z]
        for t in range(1, self.T + 1):
            u_hat, _ = self.u_hat(t, x, z)
            alpha_t = torch.tanh(self.w[t - 1])
            # z_t = (1 - alpha_t) z_{t-1} + alpha_t u_hat_t(z_{t-1}, x)
            z = (1 - alpha_t) * z + alpha_t * u_hat
            zs.append(z)
        logits = self.classifier(z)
        return (logits, {"z": torch.stack(zs)}) if return_trajectory else logits

    def configure_optimizers(self, lr: float = 1e-3, weight_decay: float = 1e-3) -> dict:
        return {"all": torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)}

    def training_step(self, x: torch.Tensor, y: torch.Tensor, optimizers: dict) -> dict:
        opt = optimizers["all"]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"backprop baseline loss is {loss.item()}")
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def sample(self, x, noise: bool = True, generator=None, return_trajectory: bool = False):
        return self(x, noise=noise, generator=generator, return_trajectory=return_trajectory)

    @torch.no_grad()
    def predict(self, x, noise: bool = True, generator=None) -> torch.Tensor:
        return self(x, noise=noise, generator=generator).argmax(dim=1)

    def config(self) -> dict:
        return {"variant": "backprop", "T": self.T, "embedding": self.embedding.kind, "embed_dim": self.d,
                "block": vars(self.block_config), "image_shape": list(self.image_shape),
                "num_classes": self.num_classes, "w_init": self.w_init,
                "classifier_scale": self.classifier_scale}
