r"""Diffusion maths on label embeddings: the marginal q(z_t | y), one posterior step, the KL term.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings (sections 2-4).

Time runs from noise (t = 0) to label (t = T); see :mod:`nplib.schedules` for the notation.

Devices: the schedule's numbers enter as Python floats, so the inputs may live on any device and
have any dtype (float64 CPU tensors included); the noise follows the rule of :mod:`nplib.devices`
(a ``generator`` on another device than the tensors draws there and the result is moved).

* Marginal (a sample of the "noised label"):

      z_t = sqrt(alpha_bar_t) u_y + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I)

* One step of the model's chain, which is also the posterior q(z_t | z_{t-1}, y) when ``u`` is the
  true ``u_y``:

      z_t = a_t u + b_t z_{t-1} + sqrt(c_t) eps

* KL of the first latent against the prior, per example, with d the embedding dimension:

      KL(q(z_0 | y) || N(0, I)) = 0.5 [ alpha_bar_0 (||u_y||^2 - d) - d ln(1 - alpha_bar_0) ]
"""
from __future__ import annotations

import math

import torch

from nplib.devices import randn_like_on
from nplib.schedules import DTSchedule

__all__ = ["q_sample", "posterior_step", "kl_prior", "check_t"]


def check_t(schedule: DTSchedule, t: int, lo: int = 0) -> int:
    """Raise a ValueError unless ``lo <= t <= T``."""
    if isinstance(t, bool) or not isinstance(t, int) or not (lo <= t <= schedule.T):
        raise ValueError(f"t must be an integer in [{lo}, {schedule.T}] for this schedule, got {t!r}")
    return t


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # eps ~ N(0, I) like ``like``; an explicit generator draws on its own device (nplib.devices)
    return randn_like_on(like, generator)


def q_sample(u_y: torch.Tensor, t: int, schedule: DTSchedule, eps: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``z_t ~ q(z_t | y) = N(sqrt(alpha_bar_t) u_y, (1 - alpha_bar_t) I)``.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 2.

    ``u_y`` has shape (batch, d) (rows of ``W_embed`` picked by the labels). Gradients flow into
    ``u_y`` (the reparameterisation trick), which is how a learned ``W_embed`` is trained.
    """
    check_t(schedule, t)
    if eps is None:
        eps = _noise(u_y, generator)
    elif eps.shape != u_y.shape:
        raise ValueError(f"eps has shape {tuple(eps.shape)} but u_y has shape {tuple(u_y.shape)}")
    else:
        eps = eps.to(u_y.device)  # a given eps joins u_y on its device
    alpha_bar_t = float(schedule.alpha_bar[t])
    # z_t = sqrt(alpha_bar_t) u_y + sqrt(1 - alpha_bar_t) eps      (sqrt! not alpha_bar_t u_y)
    return math.sqrt(alpha_bar_t) * u_y + math.sqrt(1.0 - alpha_bar_t) * eps


def posterior_step(u: torch.Tensor, z_prev: torch.Tensor, t: int, schedule: DTSchedule,
                   noise: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """One step ``z_t = a_t u + b_t z_{t-1} + sqrt(c_t) eps`` for t = 1..T.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 4, and used by the
    NoProp-DT chain at inference (notebook 04), where ``u`` is the block's prediction ``u_hat_t``.
    ``noise=False`` drops the ``sqrt(c_t) eps`` term (deterministic inference).
    """
    check_t(schedule, t, lo=1)
    if u.shape != z_prev.shape:
        raise ValueError(f"u has shape {tuple(u.shape)} but z_prev has shape {tuple(z_prev.shape)}")
    a_t, b_t, c_t = (float(v[t - 1]) for v in (schedule.a, schedule.b, schedule.c))
    # z_t = a_t u + b_t z_{t-1} + sqrt(c_t) eps
    z_t = a_t * u + b_t * z_prev
    if noise:
        z_t = z_t + math.sqrt(c_t) * _noise(z_prev, generator)
    return z_t


def kl_prior(u_y: torch.Tensor, schedule: DTSchedule) -> torch.Tensor:
    """Per-example ``KL(q(z_0 | y) || N(0, I))`` for ``u_y`` of shape (batch, d).

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 3. For one-hot
    embeddings it is a constant; for a learned ``W_embed`` it keeps the embeddings from growing.
    """
    d = u_y.shape[-1]
    alpha_bar_0 = float(schedule.alpha_bar[0])
    # KL = 0.5 [ alpha_bar_0 (||u_y||^2 - d) - d ln(1 - alpha_bar_0) ]
    return 0.5 * (alpha_bar_0 * (u_y.pow(2).sum(-1) - d) - d * math.log1p(-alpha_bar_0))
