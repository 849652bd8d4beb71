r"""Noise schedules for NoProp-DT (discrete time).

Introduced in notebooks/01_forward_diffusion_on_label_embeddings (section 2) and studied in
notebooks/02_noise_schedules_and_snr.

Notation (the paper's, and the slides'):

* ``T`` blocks, time index ``t = 0 .. T``. Time runs from NOISE to LABEL: ``z_0`` is Gaussian noise
  and ``z_T`` is close to the label embedding ``u_y``. This is the reverse of DDPM's indexing.
* ``alpha_t`` for ``t = 0 .. T`` and

      alpha_bar_t = prod_{s=t..T} alpha_s        (product from t UP TO T)

  so ``alpha_bar_T = alpha_T``, ``alpha_bar_{t-1} = alpha_{t-1} * alpha_bar_t`` and ``alpha_bar_t``
  INCREASES with ``t``.
* The marginal ``q(z_t | y) = N(sqrt(alpha_bar_t) u_y, (1 - alpha_bar_t) I)``.
* ``SNR(t) = alpha_bar_t / (1 - alpha_bar_t)``, increasing in ``t``; block ``t``'s loss weight is
  ``SNR(t) - SNR(t-1) > 0``.
* The posterior of one step, ``q(z_t | z_{t-1}, y) = N(a_t u_y + b_t z_{t-1}, c_t I)``, with

      a_t = sqrt(alpha_bar_t) (1 - alpha_{t-1}) / (1 - alpha_bar_{t-1})
      b_t = sqrt(alpha_{t-1}) (1 - alpha_bar_t) / (1 - alpha_bar_{t-1})
      c_t = (1 - alpha_bar_t) (1 - alpha_{t-1}) / (1 - alpha_bar_{t-1})

Choices the paper leaves open (documented here and shown in notebook 02):

* **cosine** ("fixed cosine" in the paper): the Nichol-Dhariwal cosine, reversed in time,

      f(s) = cos^2( (s + 0.008) / 1.008 * pi / 2 ) / cos^2( 0.008 / 1.008 * pi / 2 )
      alpha_bar_t = clip( f(1 - t / T), alpha_bar_min, alpha_bar_max )

  ``f(0) = 1`` would give ``alpha_bar_T = 1`` and an infinite SNR, so ``alpha_bar`` is clipped.
  Default ``alpha_bar_max = 0.99``: the last block's weight is then about 64 while the other nine
  lie between 0.025 and 26 (T = 10). With 0.999 the last weight is 964 and dominates every other
  block's loss by a factor of 40; notebook 02 plots the effect. ``alpha_bar_min = 1e-4`` only
  touches ``t = 0`` (where ``f(1) = 0``) for ``T <= 100``.
  This hard clip (``clip="hard"``, the default) flattens the top of the curve once ``T`` is large:
  for ``T >= 18`` at least two of the final alpha_bar values clip to 0.99, the schedule is no longer strictly
  increasing and :class:`DTSchedule` refuses it with a ValueError. ``clip="rescale"`` maps ``f``
  affinely onto ``[alpha_bar_min, alpha_bar_max]`` instead, strictly increasing for every ``T``
  (at T = 10 the last weight is then 73 instead of 64).
* **linear**: ``alpha_bar_t`` linear in ``t`` from ``alpha_bar_min`` to ``alpha_bar_max``
  (linear in alpha_bar, not DDPM's linear betas, which make no sense for T = 10).

All arrays are float64 torch tensors: ``alpha``, ``alpha_bar`` and ``snr`` have ``T + 1`` entries
(index ``t = 0 .. T``); ``snr_delta``, ``a``, ``b`` and ``c`` have ``T`` entries for
``t = 1 .. T`` (entry ``t - 1`` belongs to block ``t``).

Devices: the arrays always live on the CPU (a schedule is not an ``nn.Module``, so
``model.to("cuda")`` leaves it where it is, and :meth:`DTSchedule.from_alpha_bar` copies a GPU
``alpha_bar`` to the CPU). The library reads them as Python floats (``float(schedule.a[t - 1])``),
which combine with tensors on any device and of any dtype; one entry, ``schedule.alpha_bar[t]``,
is a 0-dimensional CPU tensor, which torch also lets multiply a GPU tensor. For a whole array next
to a tensor ``z``, convert it: ``schedule.alpha_bar.to(z)`` (device AND dtype of ``z``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch

__all__ = ["DTSchedule", "cosine_alpha_bar", "linear_alpha_bar", "equal_mass_alpha_bar", "equal_mass_schedule",
           "sigma_from_alpha_bar", "alpha_bar_from_sigma", "noise_mass", "EDM_P_MEAN", "EDM_P_STD", "make_schedule",
           "SCHEDULE_KINDS", "ALL_SCHEDULE_KINDS"]

SCHEDULE_KINDS = ("cosine", "linear")
#: Every kind :func:`make_schedule` builds: also "equal_mass" (:func:`equal_mass_alpha_bar`, notebook 08), which the
#: schedule explorer of notebook 02 (SCHEDULE_KINDS) does not offer.
ALL_SCHEDULE_KINDS = SCHEDULE_KINDS + ("equal_mass",)

#: Offset of the Nichol-Dhariwal cosine schedule.
COSINE_OFFSET = 0.008


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int):
        raise ValueError(f"T must be an integer number of blocks >= 1, got {T!r}")
    if T < 1:
        raise ValueError(f"T must be >= 1 (the number of blocks), got T={T}")
    return T


def _check_clip(alpha_bar_min: float, alpha_bar_max: float) -> None:
    if not (0.0 < alpha_bar_min < 1.0):
        raise ValueError(f"alpha_bar_min must lie in (0, 1), got {alpha_bar_min}")
    if not (0.0 < alpha_bar_max < 1.0):
        raise ValueError(
            f"alpha_bar_max must lie in (0, 1), got {alpha_bar_max} "
            "(alpha_bar_T = 1 would make SNR(T) infinite)"
        )
    if not alpha_bar_min < alpha_bar_max:
        raise ValueError(f"need alpha_bar_min < alpha_bar_max, got {alpha_bar_min} >= {alpha_bar_max}")


def cosine_alpha_bar(T: int, alpha_bar_min: float = 1e-4, alpha_bar_max: float = 0.99,
                     clip: str = "hard") -> torch.Tensor:
    """``alpha_bar_t`` for t = 0..T of the reversed, clipped cosine schedule (module docstring).

    Introduced in notebooks/02_noise_schedules_and_snr, section 1. ``clip`` is "hard" (clamp to
    [alpha_bar_min, alpha_bar_max], the default) or "rescale" (affine map onto that interval).
    """
    T = _check_T(T)
    _check_clip(alpha_bar_min, alpha_bar_max)
    if clip not in ("hard", "rescale"):
        raise ValueError(f"clip must be 'hard' or 'rescale', got {clip!r}")
    t = torch.arange(T + 1, dtype=torch.float64)
    s = 1.0 - t / T  # DDPM time: s = 0 is clean, s = 1 is noise
    # f(s) = cos^2((s + 0.008)/1.008 * pi/2) / cos^2(0.008/1.008 * pi/2)
    f = torch.cos((s + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
    f = f / math.cos(COSINE_OFFSET / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
    if clip == "rescale":
        f = f.clamp(0.0, 1.0)  # f(1) is 0 up to rounding
        # alpha_bar_t = alpha_bar_min + (alpha_bar_max - alpha_bar_min) f(1 - t/T)
        return alpha_bar_min + (alpha_bar_max - alpha_bar_min) * f
    # alpha_bar_t = clip(f(1 - t/T), alpha_bar_min, alpha_bar_max)
    alpha_bar = f.clamp(alpha_bar_min, alpha_bar_max)
    ties = int(((alpha_bar[1:] - alpha_bar[:-1]) <= 0).sum())
    if ties:
        raise ValueError(
            f"with T = {T} the hard clip of the cosine schedule to [{alpha_bar_min}, {alpha_bar_max}] makes "
            f"{ties} neighbouring alpha_bar values equal (not strictly increasing); use clip='rescale', "
            "a smaller T, or move the clipping bounds")
    return alpha_bar


def linear_alpha_bar(T: int, alpha_bar_min: float = 1e-4, alpha_bar_max: float = 0.99) -> torch.Tensor:
    """``alpha_bar_t`` linear in t from ``alpha_bar_min`` (t = 0) to ``alpha_bar_max`` (t = T).

    Introduced in notebooks/02_noise_schedules_and_snr, section 1.
    """
    T = _check_T(T)
    _check_clip(alpha_bar_min, alpha_bar_max)
    t = torch.arange(T + 1, dtype=torch.float64)
    # alpha_bar_t = alpha_bar_min + (alpha_bar_max - alpha_bar_min) * t / T
    return alpha_bar_min + (alpha_bar_max - alpha_bar_min) * t / T


@dataclass(frozen=True)
class DTSchedule:
    """A discrete-time NoProp schedule, built from ``alpha_bar_t`` for t = 0..T.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 2.

    Use :func:`make_schedule` (or :meth:`from_alpha_bar`) rather than the constructor. Every
    array is a float64 tensor; see the module docstring for the formulas and the index ranges.
    """

    kind: str
    alpha: torch.Tensor      # (T+1,)  t = 0..T
    alpha_bar: torch.Tensor  # (T+1,)  t = 0..T
    snr: torch.Tensor        # (T+1,)  t = 0..T
    snr_delta: torch.Tensor  # (T,)    t = 1..T : SNR(t) - SNR(t-1)
    a: torch.Tensor          # (T,)    t = 1..T
    b: torch.Tensor          # (T,)    t = 1..T
    c: torch.Tensor          # (T,)    t = 1..T

    @property
    def T(self) -> int:
        return self.alpha_bar.numel() - 1

    @classmethod
    def from_alpha_bar(cls, alpha_bar, kind: str = "custom") -> "DTSchedule":
        """Build every array from ``alpha_bar_t``, t = 0..T (strictly increasing, inside (0, 1))."""
        alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64).cpu().flatten().clone()  # on the CPU
        if alpha_bar.numel() < 2:
            raise ValueError(f"alpha_bar needs T + 1 >= 2 entries (t = 0..T), got {alpha_bar.numel()}")
        if not torch.isfinite(alpha_bar).all():
            raise ValueError("alpha_bar contains NaN or infinite values")
        if not ((alpha_bar > 0) & (alpha_bar < 1)).all():
            bad = alpha_bar[(alpha_bar <= 0) | (alpha_bar >= 1)]
            raise ValueError(f"alpha_bar must lie strictly inside (0, 1); got values {bad.tolist()}")
        diffs = alpha_bar[1:] - alpha_bar[:-1]
        if not (diffs > 0).all():
            t_bad = int(torch.nonzero(diffs <= 0)[0]) + 1
            raise ValueError(
                "alpha_bar must be strictly increasing in t (time runs from noise at t = 0 to the "
                f"label at t = T); alpha_bar[{t_bad}] = {alpha_bar[t_bad]:.6g} <= "
                f"alpha_bar[{t_bad - 1}] = {alpha_bar[t_bad - 1]:.6g}. A forward (DDPM-direction) "
                "cumulative product gives a decreasing alpha_bar and negative loss weights."
            )
        ab_t, ab_prev = alpha_bar[1:], alpha_bar[:-1]
        # alpha_bar_T = alpha_T ;  alpha_{t-1} = alpha_bar_{t-1} / alpha_bar_t
        alpha = torch.empty_like(alpha_bar)
        alpha[-1] = alpha_bar[-1]
        alpha[:-1] = ab_prev / ab_t
        alpha_prev = alpha[:-1]  # alpha_{t-1} for t = 1..T
        # SNR(t) = alpha_bar_t / (1 - alpha_bar_t)
        snr = alpha_bar / (1 - alpha_bar)
        # loss weight of block t: SNR(t) - SNR(t-1)
        snr_delta = snr[1:] - snr[:-1]
        # a_t = sqrt(alpha_bar_t) (1 - alpha_{t-1}) / (1 - alpha_bar_{t-1})
        a = ab_t.sqrt() * (1 - alpha_prev) / (1 - ab_prev)
        # b_t = sqrt(alpha_{t-1}) (1 - alpha_bar_t) / (1 - alpha_bar_{t-1})      (alpha, not alpha_bar)
        b = alpha_prev.sqrt() * (1 - ab_t) / (1 - ab_prev)
        # c_t = (1 - alpha_bar_t) (1 - alpha_{t-1}) / (1 - alpha_bar_{t-1})
        c = (1 - ab_t) * (1 - alpha_prev) / (1 - ab_prev)
        return cls(kind=kind, alpha=alpha, alpha_bar=alpha_bar, snr=snr, snr_delta=snr_delta, a=a, b=b, c=c)

    def as_dict(self) -> dict:
        """Plain lists, the layout of ``python -m nplib schedule --json``."""
        keys = ("alpha", "alpha_bar", "snr", "snr_delta", "a", "b", "c")
        return {"kind": self.kind, "T": self.T, **{k: getattr(self, k).tolist() for k in keys}}

    def table(self, digits: int = 4) -> str:
        """A fixed-width text table of every array, one row per t (notebook 02, section 2)."""
        head = f"{'t':>3} {'alpha':>10} {'alpha_bar':>10} {'SNR':>10} {'dSNR':>10} {'a_t':>10} {'b_t':>10} {'c_t':>10}"
        rows = [head]
        for t in range(self.T + 1):
            vals = [self.alpha[t], self.alpha_bar[t], self.snr[t]]
            tail = [self.snr_delta[t - 1], self.a[t - 1], self.b[t - 1], self.c[t - 1]] if t else []
            cells = [f"{float(v):10.{digits}g}" for v in vals] + [f"{float(v):10.{digits}g}" for v in tail]
            cells += [f"{'-':>10}"] * (7 - len(cells))
            rows.append(f"{t:>3} " + " ".join(cells))
        return "\n".join(rows)


#: EDM's training distribution of noise levels: log sigma ~ N(P_mean, P_std^2).
EDM_P_MEAN = -1.2
EDM_P_STD = 1.2



# ----------------------------------------------------------------------- the equal-mass schedule
def sigma_from_alpha_bar(alpha_bar):
    """``sigma = sqrt((1 - alpha_bar) / alpha_bar)``, the noise level of ``alpha_bar`` (so ``sigma^2 = 1 / SNR``).

    Introduced in notebooks/08_what_the_chain_does, section 4. Accepts a float or a tensor in (0, 1).
    """
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    if not ((ab > 0) & (ab < 1)).all():
        raise ValueError(f"alpha_bar must lie strictly inside (0, 1), got {alpha_bar}")
    # sigma = sqrt((1 - alpha_bar) / alpha_bar) = 1 / sqrt(SNR)
    out = ((1 - ab) / ab).sqrt()
    return float(out) if out.ndim == 0 and not isinstance(alpha_bar, torch.Tensor) else out


def alpha_bar_from_sigma(sigma):
    """``alpha_bar = 1 / (1 + sigma^2)``, the inverse of :func:`sigma_from_alpha_bar`.

    Introduced in notebooks/08_what_the_chain_does, section 4.
    """
    s = torch.as_tensor(sigma, dtype=torch.float64)
    if not ((s > 0) & torch.isfinite(s)).all():
        raise ValueError(f"sigma must be positive and finite, got {sigma}")
    # alpha_bar = 1 / (1 + sigma^2)
    out = 1 / (1 + s**2)
    return float(out) if out.ndim == 0 and not isinstance(sigma, torch.Tensor) else out


def _check_dist(p_mean: float, p_std: float) -> NormalDist:
    if not (isinstance(p_std, (int, float)) and p_std > 0 and math.isfinite(p_std)):
        raise ValueError(f"p_std must be a positive number, got {p_std!r}")
    if not (isinstance(p_mean, (int, float)) and math.isfinite(p_mean)):
        raise ValueError(f"p_mean must be a finite number, got {p_mean!r}")
    return NormalDist(p_mean, p_std)


def noise_mass(alpha_bar_lo: float, alpha_bar_hi: float, p_mean: float = EDM_P_MEAN,
               p_std: float = EDM_P_STD) -> float:
    """Probability that ``log sigma ~ N(p_mean, p_std^2)`` gives a level between ``alpha_bar_lo`` and ``alpha_bar_hi``.

    Introduced in notebooks/08_what_the_chain_does, section 4. ``alpha_bar_lo < alpha_bar_hi``
    (more noise at ``alpha_bar_lo``); not truncated.
    """
    dist = _check_dist(p_mean, p_std)
    if not (0 < alpha_bar_lo < alpha_bar_hi < 1):
        raise ValueError(f"need 0 < alpha_bar_lo < alpha_bar_hi < 1, got {alpha_bar_lo}, {alpha_bar_hi}")
    # P(sigma_hi_noise > sigma > sigma_lo_noise) = Phi(log sigma(alpha_bar_lo)) - Phi(log sigma(alpha_bar_hi))
    return dist.cdf(math.log(sigma_from_alpha_bar(alpha_bar_lo))) - dist.cdf(math.log(sigma_from_alpha_bar(alpha_bar_hi)))


def equal_mass_alpha_bar(T: int, p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD,
                         alpha_bar_min: float = 1e-4, alpha_bar_max: float = 0.99) -> torch.Tensor:
    """``alpha_bar_t``, t = 0..T, with the same noise-level mass ``1 / T`` between consecutive levels.

    Introduced in notebooks/08_what_the_chain_does, section 4 (DiffusionBlocks' equal-mass
    partition, from its description; our choices of truncation and level placement are in the
    module docstring). With ``Phi`` the CDF of ``N(p_mean, p_std^2)`` and
    ``l_lo = log sigma(alpha_bar_max)``, ``l_hi = log sigma(alpha_bar_min)``:

        log sigma_t = Phi^{-1}( Phi(l_hi) - (t / T) (Phi(l_hi) - Phi(l_lo)) )
        alpha_bar_t = 1 / (1 + sigma_t^2)

    so ``alpha_bar_0 = alpha_bar_min``, ``alpha_bar_T = alpha_bar_max`` and the values increase with t.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer number of blocks >= 1, got {T!r}")
    dist = _check_dist(p_mean, p_std)
    if not (0 < alpha_bar_min < alpha_bar_max < 1):
        raise ValueError(f"need 0 < alpha_bar_min < alpha_bar_max < 1, got {alpha_bar_min}, {alpha_bar_max}")
    l_hi = math.log(sigma_from_alpha_bar(alpha_bar_min))   # the noisiest level (t = 0)
    l_lo = math.log(sigma_from_alpha_bar(alpha_bar_max))   # the cleanest level (t = T)
    c_hi, c_lo = dist.cdf(l_hi), dist.cdf(l_lo)
    if not c_hi - c_lo > 1e-12:
        raise ValueError(f"the noise distribution N({p_mean}, {p_std}^2) puts no mass on [alpha_bar_min, "
                         f"alpha_bar_max] = [{alpha_bar_min}, {alpha_bar_max}]")
    ab = [alpha_bar_min]
    for t in range(1, T):
        # log sigma_t = Phi^{-1}(Phi(l_hi) - (t / T) (Phi(l_hi) - Phi(l_lo)))
        log_sigma = dist.inv_cdf(c_hi - t / T * (c_hi - c_lo))
        # alpha_bar_t = 1 / (1 + sigma_t^2)
        ab.append(1.0 / (1.0 + math.exp(2 * log_sigma)))
    ab.append(alpha_bar_max)
    out = torch.tensor(ab, dtype=torch.float64)
    if not (out[1:] > out[:-1]).all():
        raise ValueError(f"T = {T} is too many blocks for this noise range: neighbouring levels coincide")
    return out


def equal_mass_schedule(T: int = 10, p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD,
                        alpha_bar_min: float = 1e-4, alpha_bar_max: float = 0.99) -> DTSchedule:
    """The NoProp-DT schedule of :func:`equal_mass_alpha_bar` (kind ``"equal_mass"``).

    Introduced in notebooks/08_what_the_chain_does, section 4. Also ``make_schedule("equal_mass", T)``
    and ``python -m nplib train --schedule equal_mass``.
    """
    return DTSchedule.from_alpha_bar(equal_mass_alpha_bar(T, p_mean, p_std, alpha_bar_min, alpha_bar_max),
                                     kind="equal_mass")


def make_schedule(kind: str = "cosine", T: int = 10, alpha_bar_min: float = 1e-4,
                  alpha_bar_max: float = 0.99, clip: str = "hard") -> DTSchedule:
    """The NoProp-DT schedule of the given ``kind`` ('cosine', 'linear' or 'equal_mass') with ``T`` blocks.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 2.
    Defaults: cosine, T = 10, alpha_bar clipped to [1e-4, 0.99] (module docstring says why).
    ``clip`` ("hard" or "rescale") applies to the cosine schedule only. 'equal_mass' gives every
    block the same probability mass of noise levels (:func:`equal_mass_alpha_bar`,
    notebooks/08_what_the_chain_does, section 4).
    """
    if kind == "cosine":
        alpha_bar = cosine_alpha_bar(T, alpha_bar_min, alpha_bar_max, clip)
    elif kind == "linear":
        alpha_bar = linear_alpha_bar(T, alpha_bar_min, alpha_bar_max)
    elif kind == "equal_mass":
        alpha_bar = equal_mass_alpha_bar(_check_T(T), alpha_bar_min=alpha_bar_min, alpha_bar_max=alpha_bar_max)
    else:
        raise ValueError(f"unknown schedule kind {kind!r}; choose one of {ALL_SCHEDULE_KINDS}")
    return DTSchedule.from_alpha_bar(alpha_bar, kind=kind)
