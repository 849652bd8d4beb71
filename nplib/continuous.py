r"""NoProp-CT (continuous time) and NoProp-FM (flow matching): ONE network shared over t in [0, 1].

Introduced in notebooks/05_continuous_time_and_flow_matching.

Time runs from noise (t = 0) to label (t = 1), as in NoProp-DT (the paper's sections 2.2 and 2.3).

**The network** ``u_hat(z_t, x, t)`` (no batch norm anywhere):

* image path: the DT block's unpadded conv stack (:func:`nplib.blocks.conv_path` with
  ``batch_norm=False``) -> FC(h) -> ReLU;
* z path: FC(h) ReLU (for prototype embeddings, where z is an image, its own conv path);
* time path: sinusoidal embedding of t (dim 64) -> FC(h) ReLU;
* head: concat(3h) -> FC(h) ReLU -> FC(h2) ReLU -> FC(m) = logits.

``paper``: h = 256, h2 = 128, channels 32-64-128 (the paper's); ``small``: the widths of
:meth:`nplib.blocks.BlockConfig.small` (h = h2 = 64, channels 16-32), for CPU runs.

The image path depends on neither z nor t, so inference computes it ONCE per batch; the first head
layer is split into its image, z and time parts (``W [h_x; h_z; h_t] = W_x h_x + W_z h_z + W_t h_t``),
so each of the N inference steps costs one small MLP pass, not one CNN pass.

**NoProp-CT.** Learnable schedule (a variational-diffusion-style monotone network):

    SNR(t) = exp(-gamma(t)),   alpha_bar(t) = sigmoid(-gamma(t))
    gamma(t) = g0 + (g1 - g0) (1 - gbar(t)),   gbar(t) = (gt(t) - gt(0)) / (gt(1) - gt(0))

so ``gamma(0) = g1`` (noise) and ``gamma(1) = g0`` (label). Loss per example:

    L = -log p(y | z_1) + KL(q(z_0 | y) || N(0, I)) + (eta / 2) E_{t~U[0,1]}[ SNR'(t) ||u_hat(z_t, x, t) - u_y||^2 ]

with ``z_t ~ q(z_t | y) = N(sqrt(alpha_bar(t)) u_y, (1 - alpha_bar(t)) I)``, ``p(y | z) =
softmax(Linear_{d->m}(z))``, ``u_hat = softmax(logits) @ W_embed``, eta = 1 and SNR'(t) by autograd
(with ``create_graph`` so the schedule is trained by the same loss).

**NoProp-FM.** ``z_0 ~ N(0, I)``, ``z_1 = u_y``, ``z_t = t z_1 + (1 - t) z_0 (+ sigma eps)``,
``v = logits @ W_embed`` (no softmax) and

    L = || v(z_t, x, t) - (z_1 - z_0) ||^2   (+ -log p(y | z_1~),  z_1~ = z_t + (1 - t) v, when W_embed is learned)

Inference: Euler from t = 0 to 1, then the nearest class embedding.

Choices the paper leaves open, made here and each shown in notebook 05:

* ``gt(t) = w_1 t + sum_j w_{2j} sigmoid(w_{3j} t + b_j)`` with ``w = softplus(raw)`` > 0 (monotone
  increasing for ANY parameters), ``schedule_hidden = 16`` sigmoid units, initialised almost
  linear (w_1 = 1, w_2j = 0.05), so gamma starts close to a straight line from g1 to g0.
* ``g0 = -3``, ``g1 = +3`` initially (alpha_bar from 0.047 at t = 0 to 0.953 at t = 1, SNR from
  0.05 to 20), both LEARNED, with ``g1 = g0 + softplus(raw_gap)`` so that ``g0 < g1`` always holds.
  Why not the public choice (-7, +7)? The loss weight SNR'(t) grows like SNR(t) and ONE Adam serves
  every t, so the range exp(g1 - g0) of SNR' decides how much training signal reaches small t,
  where only the image tells the class: 1.2e6 for (-7, +7), 400 for (-3, +3). With (-3, +3) the
  image-only accuracy of u_hat at t = 0 rises much faster (notebook 05, Exercise 4, measures it
  after a short training), and the 12-minute MNIST run reaches the accuracy recorded in
  results/mnist_ct_small.json; (-7, +7) was only tried in short development runs, where its
  stochastic sampler stayed far lower on full MNIST. The price:
  z_1 is noisier (sqrt(alpha_bar(1)) = 0.976 against a noise standard deviation of 0.22 per
  coordinate, still separable by the linear classifier), and z_0 keeps a trace of the label
  (sqrt(alpha_bar(0)) = 0.22), a mismatch with the sampler's start N(0, I) that the KL term measures
  and that training reduces by raising g1.
* Adam's weight decay (L2, 1e-3) applies to the network, classifier and W_embed, NOT to the four
  kinds of schedule parameters: an L2 pull would drag g0 and g1 towards 0 and shrink the SNR range.
* t in a minibatch is drawn STRATIFIED: ``t_i = (i + u) / B`` with one ``u ~ U[0, 1)``, then
  shuffled. Each t_i is still U[0, 1] (the loss is unbiased) but the batch covers [0, 1] evenly,
  which lowers the variance of the heavily weighted SNR'(t) term.
* Sinusoidal time embedding: ``[sin(1000 t f_k), cos(1000 t f_k)]``, ``f_k = 10000^(-k/32)``, k < 32.
* CT sampler (the DT update on the grid ``t_k = k / N``): for ``s = t_{k-1}``, ``t = t_k``,
  ``alpha_s := alpha_bar(s) / alpha_bar(t)`` and

      z_t = a u_hat(z_s, x, s) + b z_s + sqrt(c) eps
      a = sqrt(alpha_bar(t)) (1 - alpha_s) / (1 - alpha_bar(s))
      b = sqrt(alpha_s) (1 - alpha_bar(t)) / (1 - alpha_bar(s))
      c = (1 - alpha_bar(t)) (1 - alpha_s) / (1 - alpha_bar(s))

  i.e. the posterior q(z_t | z_s, y) with u_y replaced by the network's prediction, the network
  evaluated at the START of each step. Coefficients in float64. ``noise=True``: ``z_0 ~ N(0, I)``
  and fresh eps each step (the paper's stochastic sampler); ``noise=False``: ``z_0 = 0`` and
  ``eps = 0`` (deterministic). The class is then ``argmax classifier(z_1)``.
* FM: ``sigma = 0`` by default (the plain linear path); ``noise=False`` starts Euler from
  ``z_0 = 0``. The anchor loss for a learned W_embed uses ``p(y | z) = softmax_k(-||z - u_k||^2)``,
  the distance-based classifier that matches the nearest-embedding prediction (and keeps the
  embeddings apart).

**Devices.** Random draws follow :mod:`nplib.devices` (a ``generator`` draws on its own device,
the result joins the images' device). The learned schedule computes on the device and in the dtype
of the ``t`` it is given; the network moves a time tensor to its own device. The sampler's
coefficients and the time grid ``t`` of a returned trajectory are float64 CPU tensors (read as
Python floats, and ready for plotting); ``z`` lives on the model's device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nplib.blocks import BlockConfig, conv_path
from nplib.devices import draw_device, rand, randn, randperm
from nplib.embeddings import LabelEmbedding
from nplib.models import EmbeddingModelMixin

__all__ = ["LearnedSchedule", "ContinuousNet", "NoPropCT", "NoPropFM", "build", "sinusoidal_embedding",
           "stratified_times", "ct_step_coefficients", "fm_target", "fm_path", "euler_integrate"]

TIME_EMBED_DIM = 64


def _inv_softplus(y: float) -> float:
    # softplus(x) = log(1 + e^x)  =>  x = log(e^y - 1)
    return y + math.log(-math.expm1(-y))


def _check_int(name: str, value, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------- schedule
class LearnedSchedule(nn.Module):
    r"""The learnable noise schedule of NoProp-CT: ``gamma(t)``, ``alpha_bar(t)``, ``SNR(t)``, ``SNR'(t)``.

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 2.

        gt(t)     = w_1 t + sum_j w_{2j} sigmoid(w_{3j} t + b_j),   w = softplus(raw) > 0
        gbar(t)   = (gt(t) - gt(0)) / (gt(1) - gt(0))              (0 at t = 0, 1 at t = 1, increasing)
        gamma(t)  = g0 + (g1 - g0) (1 - gbar(t))                   (decreasing from g1 to g0)
        alpha_bar = sigmoid(-gamma),  SNR = exp(-gamma)             (increasing in t)

    Monotone for ANY parameter values (positive weights, increasing activations, ``g1 > g0`` by
    construction). Our choices (the paper leaves them open): ``g0``, ``g1`` initial values (-3, +3) and ``hidden`` (16).
    Computations follow the device AND dtype of ``t``: the parameters are converted with
    ``.to(t)`` (differentiably), so a float64 CPU grid ``t`` gives float64 CPU values (float64 for
    the sampler's coefficients, CPU arrays for plots) whatever device the model is on.
    """

    def __init__(self, g0: float = -3.0, g1: float = 3.0, hidden: int = 16, learn_endpoints: bool = True):
        super().__init__()
        if not (math.isfinite(g0) and math.isfinite(g1)) or not g0 < g1:
            raise ValueError(f"need finite g0 < g1 (gamma(1) = g0 at the label end), got g0={g0}, g1={g1}")
        _check_int("hidden", hidden)
        self.g0_init, self.g1_init, self.hidden = float(g0), float(g1), hidden
        self.g0 = nn.Parameter(torch.tensor(float(g0)), requires_grad=learn_endpoints)
        # g1 = g0 + softplus(raw_gap) > g0
        self.raw_gap = nn.Parameter(torch.tensor(_inv_softplus(g1 - g0)), requires_grad=learn_endpoints)
        self.raw_w1 = nn.Parameter(torch.tensor(_inv_softplus(1.0)))
        self.raw_w2 = nn.Parameter(torch.full((hidden,), _inv_softplus(0.05)))
        gen = torch.Generator().manual_seed(1234)  # fixed, so that every model starts from the same schedule
        self.raw_w3 = nn.Parameter(randn(hidden, generator=gen) + _inv_softplus(5.0))
        self.b = nn.Parameter(torch.linspace(-5.0, 0.0, hidden))

    @property
    def g1(self) -> torch.Tensor:
        return self.g0 + F.softplus(self.raw_gap)

    def gt(self, t: torch.Tensor) -> torch.Tensor:
        """The unnormalised monotone network ``gt(t)`` (same shape as ``t``)."""
        # the parameters join t: its device and dtype
        w1 = F.softplus(self.raw_w1.to(t))
        w2 = F.softplus(self.raw_w2.to(t))
        w3 = F.softplus(self.raw_w3.to(t))
        tt = t.unsqueeze(-1)
        # gt(t) = w_1 t + sum_j w_2j sigmoid(w_3j t + b_j)
        return w1 * t + (w2 * torch.sigmoid(w3 * tt + self.b.to(t))).sum(-1)

    def gamma(self, t: torch.Tensor) -> torch.Tensor:
        """``gamma(t) = g0 + (g1 - g0)(1 - gbar(t))``; ``t`` is a tensor with values in [0, 1]."""
        if not torch.is_tensor(t):
            raise ValueError(f"t must be a tensor, got {type(t).__name__}")
        ends = self.gt(torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device))
        # gbar(t) = (gt(t) - gt(0)) / (gt(1) - gt(0))
        gbar = (self.gt(t) - ends[0]) / (ends[1] - ends[0])
        g0 = self.g0.to(t)
        g1 = self.g1.to(t)
        # gamma(t) = g0 + (g1 - g0)(1 - gbar(t))
        return g0 + (g1 - g0) * (1 - gbar)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """``alpha_bar(t) = sigmoid(-gamma(t))``."""
        return torch.sigmoid(-self.gamma(t))

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """``SNR(t) = exp(-gamma(t)) = alpha_bar(t) / (1 - alpha_bar(t))``."""
        return torch.exp(-self.gamma(t))

    def snr_derivative(self, t: torch.Tensor, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gamma(t), SNR'(t))`` with ``SNR'`` by autograd (``d SNR / d t`` at each entry of ``t``).

        Introduced in notebooks/05_continuous_time_and_flow_matching, section 2. With
        ``create_graph=True`` (training) the derivative is itself differentiable, so the loss trains
        the schedule's parameters through it.
        """
        t = t.detach().requires_grad_(True)
        with torch.enable_grad():
            gamma = self.gamma(t)
            # SNR(t) = exp(-gamma(t))
            snr = torch.exp(-gamma)
            (dsnr,) = torch.autograd.grad(snr.sum(), t, create_graph=create_graph)
        return gamma, dsnr

    def table(self, n: int = 11) -> str:
        """``t, gamma, alpha_bar, SNR`` on ``n`` evenly spaced times, as fixed-precision text."""
        with torch.no_grad():
            t = torch.linspace(0, 1, n, dtype=torch.float64)
            g = self.gamma(t)
        rows = [f"{'t':>5} {'gamma':>9} {'alpha_bar':>10} {'SNR':>11}"]
        for ti, gi in zip(t.tolist(), g.tolist()):
            rows.append(f"{ti:5.2f} {gi:9.4f} {1 / (1 + math.exp(gi)):10.6f} {math.exp(-gi):11.4e}")
        return "\n".join(rows)

    def config(self) -> dict:
        return {"g0_init": self.g0_init, "g1_init": self.g1_init, "hidden": self.hidden,
                "learn_endpoints": bool(self.g0.requires_grad)}


def ct_step_coefficients(schedule: LearnedSchedule, steps: int) -> dict:
    """Float64 ``a, b, c`` (each ``steps`` long) of the CT sampler on the grid ``t_k = k / steps``.

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 3. Entry ``k - 1`` is the
    step from ``s = t_{k-1}`` to ``t = t_k`` (formulas in the module docstring).
    """
    _check_int("steps", steps)
    with torch.no_grad():
        ts = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        gamma = schedule.gamma(ts.to(schedule.g0.device)).cpu()
    log_ab = F.logsigmoid(-gamma)            # log alpha_bar
    one_minus_ab = torch.sigmoid(gamma)      # 1 - alpha_bar = sigmoid(gamma)
    s, t = slice(0, steps), slice(1, steps + 1)
    # alpha_s = alpha_bar(s) / alpha_bar(t);  1 - alpha_s = -expm1(log alpha_bar(s) - log alpha_bar(t))
    log_alpha = log_ab[s] - log_ab[t]
    one_minus_alpha = -torch.expm1(log_alpha)
    # a = sqrt(alpha_bar(t)) (1 - alpha_s) / (1 - alpha_bar(s))
    a = torch.exp(0.5 * log_ab[t]) * one_minus_alpha / one_minus_ab[s]
    # b = sqrt(alpha_s) (1 - alpha_bar(t)) / (1 - alpha_bar(s))
    b = torch.exp(0.5 * log_alpha) * one_minus_ab[t] / one_minus_ab[s]
    # c = (1 - alpha_bar(t)) (1 - alpha_s) / (1 - alpha_bar(s))
    c = one_minus_ab[t] * one_minus_alpha / one_minus_ab[s]
    return {"t": ts, "a": a, "b": b, "c": c}


# ---------------------------------------------------------------------------------------------- network
def sinusoidal_embedding(t: torch.Tensor, dim: int = TIME_EMBED_DIM) -> torch.Tensor:
    """``[sin(1000 t f_k), cos(1000 t f_k)]`` with ``f_k = 10000^(-k / (dim/2))``; shape (*t.shape, dim).

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 1.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"time embedding dim must be an even number >= 2, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    args = 1000.0 * t.unsqueeze(-1) * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def _as_config(model) -> BlockConfig:
    if isinstance(model, BlockConfig):
        return model
    if model not in ("paper", "small"):
        raise ValueError(f"unknown model size {model!r}; choose 'paper' or 'small' (or pass a BlockConfig)")
    return BlockConfig.named(model)


class ContinuousNet(nn.Module):
    """The network shared over t: ``logits(z_t, x, t)`` (module docstring).

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 1.

    ``image_features(x)`` is the part that depends on x only; ``logits_from_features(h_x, z, t)``
    the rest. ``forward(x, z, t)`` composes them. ``t`` is a tensor of shape (batch,) or a float
    (the same time for the whole batch, as in the samplers).
    """

    def __init__(self, image_shape, z_dim: int, num_classes: int, cfg: BlockConfig,
                 z_image_shape: tuple[int, int, int] | None = None, time_dim: int = TIME_EMBED_DIM):
        super().__init__()
        h, h2 = cfg.hidden, cfg.head_hidden
        self.image_shape, self.z_dim, self.num_classes, self.time_dim = tuple(image_shape), z_dim, num_classes, time_dim
        self.z_image_shape = tuple(z_image_shape) if z_image_shape is not None else None
        # image path: conv stack -> FC(h) -> ReLU   (no batch norm)
        self.image_path = nn.Sequential(conv_path(self.image_shape, cfg, batch_norm=False), nn.ReLU())
        if self.z_image_shape is not None:
            self.z_path = nn.Sequential(conv_path(self.z_image_shape, cfg, batch_norm=False), nn.ReLU())
        else:
            # z path: FC(h) ReLU
            self.z_path = nn.Sequential(nn.Linear(z_dim, h), nn.ReLU())
        # time path: sinusoidal(64) -> FC(h) ReLU
        self.time_path = nn.Sequential(nn.Linear(time_dim, h), nn.ReLU())
        # head: concat(3h) -> FC(h) ReLU -> FC(h2) ReLU -> FC(m)
        self.fuse = nn.Linear(3 * h, h)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(h, h2), nn.ReLU(), nn.Linear(h2, num_classes))
        self.hidden = h

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """``W_x h_x + bias``: the image path and its share of the first head layer (once per batch)."""
        h = self.hidden
        return F.linear(self.image_path(x), self.fuse.weight[:, :h], self.fuse.bias)

    def time_features(self, t) -> torch.Tensor:
        """``W_t h_t``: time path and its share of the first head layer; t a float or (batch,) tensor."""
        h = self.hidden
        w = self.fuse.weight
        if not torch.is_tensor(t):
            t = torch.tensor([float(t)], dtype=w.dtype, device=w.device)
        # a time tensor from anywhere (e.g. a float64 CPU grid) joins the network's device and dtype
        emb = sinusoidal_embedding(t.to(device=w.device, dtype=w.dtype).reshape(-1), self.time_dim)
        return F.linear(self.time_path(emb), w[:, 2 * h:])

    def logits_from_features(self, feat_x: torch.Tensor, z: torch.Tensor, feat_t: torch.Tensor) -> torch.Tensor:
        """Logits from precomputed image and time features and the latent ``z``."""
        h = self.hidden
        if self.z_image_shape is not None:
            h_z = self.z_path(z.view(z.shape[0], *self.z_image_shape))
        else:
            h_z = self.z_path(z)
        # fuse(concat(h_x, h_z, h_t)) = W_x h_x + W_z h_z + W_t h_t + bias
        return self.head(feat_x + F.linear(h_z, self.fuse.weight[:, h:2 * h]) + feat_t)

    def forward(self, x: torch.Tensor, z: torch.Tensor, t) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images of shape (batch, {', '.join(map(str, self.image_shape))}), "
                             f"got {tuple(x.shape)}")
        if z.ndim != 2 or z.shape != (x.shape[0], self.z_dim):
            raise ValueError(f"expected z of shape ({x.shape[0]}, {self.z_dim}), got {tuple(z.shape)}")
        if torch.is_tensor(t) and t.numel() not in (1, x.shape[0]):
            raise ValueError(f"t must be a float or hold 1 or {x.shape[0]} values, got shape {tuple(t.shape)}")
        return self.logits_from_features(self.image_features(x), z, self.time_features(t))


def stratified_times(batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """``batch`` times in [0, 1): ``t_i = (i + u) / B``, one ``u ~ U[0,1)``, shuffled (each t_i ~ U[0,1]).

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 2 (a choice the paper leaves open, that
    lowers the variance of the time average without biasing it). The times are drawn where
    ``generator`` lives (the CPU without one) and returned on ``device`` (rule of :mod:`nplib.devices`).
    """
    _check_int("batch", batch)
    where = draw_device(generator, "cpu")
    u = rand(1, generator=generator, device=where)
    # t_i = (i + u) / B
    t = (torch.arange(batch, dtype=torch.float32, device=where) + u) / batch
    t = t[randperm(batch, generator=generator, device=where)]
    return t.to(device) if device is not None else t


def fm_path(z_0: torch.Tensor, z_1: torch.Tensor, t: torch.Tensor, sigma: float = 0.0,
            eps: torch.Tensor | None = None) -> torch.Tensor:
    """``z_t = t z_1 + (1 - t) z_0 (+ sigma eps)``, ``t`` of shape (batch,).

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 4.
    """
    if z_0.shape != z_1.shape:
        raise ValueError(f"z_0 has shape {tuple(z_0.shape)} but z_1 has shape {tuple(z_1.shape)}")
    tt = t.to(z_0.device).reshape(-1, *([1] * (z_0.ndim - 1)))   # t joins z on its device
    # z_t = t z_1 + (1 - t) z_0
    z_t = tt * z_1 + (1 - tt) * z_0
    if sigma:
        z_t = z_t + sigma * (torch.randn_like(z_0) if eps is None else eps)
    return z_t


def fm_target(z_0: torch.Tensor, z_1: torch.Tensor) -> torch.Tensor:
    """The flow-matching target field ``z_1 - z_0`` (= d z_t / d t on the linear path).

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 4.
    """
    if z_0.shape != z_1.shape:
        raise ValueError(f"z_0 has shape {tuple(z_0.shape)} but z_1 has shape {tuple(z_1.shape)}")
    return z_1 - z_0


def euler_integrate(field, z_0: torch.Tensor, steps: int, return_trajectory: bool = False):
    """``z_{k} = z_{k-1} + (1/N) field(z_{k-1}, t_{k-1})``, ``t_k = k / N``, from t = 0 to t = 1.

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 4. ``field(z, t)`` gets a
    float ``t``. Returns ``z_1`` (and the list of all N+1 states with ``return_trajectory``).
    """
    _check_int("steps", steps)
    z, dt = z_0, 1.0 / steps
    zs = [z] if return_trajectory else None
    for k in range(steps):
        # z_{k+1} = z_k + dt v(z_k, t_k)
        z = z + dt * field(z, k * dt)
        if return_trajectory:
            zs.append(z)
    return (z, zs) if return_trajectory else z


# ---------------------------------------------------------------------------------------------- models
class _ContinuousModel(EmbeddingModelMixin, nn.Module):
    """Shared parts of NoProp-CT and NoProp-FM: embedding, network, optimiser, predict/config."""

    variant = ""

    def __init__(self, image_shape, num_classes: int, model, embedding, embed_dim, prototypes,
                 inference_steps: int):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape}")
        _check_int("inference_steps", inference_steps)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = num_classes
        self.model_name = model if isinstance(model, str) else "custom"
        self.block_config = _as_config(model)
        if isinstance(embedding, str):
            embedding = LabelEmbedding(embedding, num_classes, dim=embed_dim, prototypes=prototypes)
        if embedding.num_classes != num_classes:
            raise ValueError(f"embedding has {embedding.num_classes} classes, model has {num_classes}")
        self.embedding = embedding
        self.net = ContinuousNet(self.image_shape, embedding.dim, num_classes, self.block_config,
                                 embedding.image_shape)
        self.inference_steps = inference_steps

    def _steps(self, steps) -> int:
        return self.inference_steps if steps is None else _check_int("steps", steps)

    def _initial_z(self, batch: int, noise: bool, generator, device) -> torch.Tensor:
        if noise:
            # z_0 ~ N(0, I)
            return randn(batch, self.d, generator=generator, device=device)
        return torch.zeros(batch, self.d, device=device)

    def _no_decay_parameters(self) -> list[nn.Parameter]:
        return []

    def configure_optimizers(self, lr: float = 1e-3, weight_decay: float = 1e-3) -> dict:
        """One Adam (the paper's: lr 1e-3, weight decay 1e-3) over everything; no decay on the schedule."""
        skip = {id(p) for p in self._no_decay_parameters()}
        decay = [p for p in self.parameters() if p.requires_grad and id(p) not in skip]
        groups = [{"params": decay, "weight_decay": weight_decay}]
        no_decay = [p for p in self._no_decay_parameters() if p.requires_grad]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return {"all": torch.optim.Adam(groups, lr=lr)}

    def training_step(self, x: torch.Tensor, y: torch.Tensor, optimizers: dict) -> dict:
        """One minibatch: the loss, one backward pass through the one network, one Adam step."""
        opt = optimizers["all"]
        opt.zero_grad(set_to_none=True)
        parts = self.loss_terms(x, y)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"NoProp-{self.variant.upper()} loss is {loss.item()}")
        loss.backward()
        opt.step()
        return {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, noise: bool = True, generator: torch.Generator | None = None,
                steps: int | None = None) -> torch.Tensor:
        """Predicted class of each image (``argmax`` of :meth:`sample`'s logits); never sees a label."""
        return self.sample(x, noise=noise, generator=generator, steps=steps).argmax(dim=1)

    def _base_config(self) -> dict:
        return {"variant": self.variant, "model": self.model_name, "block": vars(self.block_config),
                "time_embed_dim": self.net.time_dim, "embedding": self.embedding.kind, "embed_dim": self.d,
                "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "inference_steps": self.inference_steps}


class NoPropCT(_ContinuousModel):
    """NoProp-CT: one network, a learned schedule, the SNR'-weighted denoising loss (module docstring).

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 2.

    Args:
        image_shape: (C, H, W). num_classes: m.
        model: 'paper', 'small' or a :class:`~nplib.blocks.BlockConfig` (widths).
        embedding: 'onehot', 'learned', 'prototype' or a :class:`~nplib.embeddings.LabelEmbedding`.
        eta: weight of the denoising term (1 in the paper).
        inference_steps: N of the sampler (1000 in the paper).
        g0, g1, schedule_hidden: the schedule's initial values (our choices) (see :class:`LearnedSchedule`).
    """

    variant = "ct"

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, model="small", embedding="onehot",
                 embed_dim: int | None = None, prototypes: torch.Tensor | None = None, eta: float = 1.0,
                 inference_steps: int = 1000, g0: float = -3.0, g1: float = 3.0, schedule_hidden: int = 16):
        super().__init__(image_shape, num_classes, model, embedding, embed_dim, prototypes, inference_steps)
        if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
            raise ValueError(f"eta must be a positive number, got {eta!r}")
        self.eta = float(eta)
        self.schedule = LearnedSchedule(g0, g1, schedule_hidden)
        # p(y | z_1) = softmax(Linear_{d->m}(z_1))
        self.classifier = nn.Linear(self.d, num_classes)

    def _no_decay_parameters(self):
        return list(self.schedule.parameters())

    def u_hat(self, x: torch.Tensor, z_t: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """``u_hat(z_t, x, t) = softmax(logits) @ W_embed`` and the logits.

        Introduced in notebooks/05_continuous_time_and_flow_matching, section 1.
        """
        logits = self.net(x, z_t, t)
        return F.softmax(logits, dim=1) @ self.W_embed, logits

    def kl_prior(self, u_y: torch.Tensor) -> torch.Tensor:
        """Per-example ``KL(q(z_0|y) || N(0,I))`` with the LEARNED ``alpha_bar(0) = sigmoid(-g1)``."""
        d = u_y.shape[-1]
        t0 = torch.zeros(1, device=u_y.device)
        gamma_0 = self.schedule.gamma(t0)[0]
        alpha_bar_0 = torch.sigmoid(-gamma_0)
        # KL = 0.5 [ alpha_bar_0 (||u_y||^2 - d) - d ln(1 - alpha_bar_0) ],  ln(1 - alpha_bar_0) = logsigmoid(gamma_0)
        return 0.5 * (alpha_bar_0 * (u_y.pow(2).sum(-1) - d) - d * F.logsigmoid(gamma_0))

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """The three terms of the CT loss (batch means) and their sum ``loss``.

        Introduced in notebooks/05_continuous_time_and_flow_matching, section 2.
        """
        self._check_x(x)
        B = x.shape[0]
        u_y = self.embedding(y)
        # t ~ U[0, 1]  (stratified over the batch)
        t = stratified_times(B, generator, device=x.device)
        gamma, dsnr = self.schedule.snr_derivative(t, create_graph=True)
        eps = randn(u_y.shape, generator=generator, device=x.device)
        # z_t = sqrt(alpha_bar(t)) u_y + sqrt(1 - alpha_bar(t)) eps,  alpha_bar = sigmoid(-gamma)
        z_t = torch.sigmoid(-gamma).sqrt().unsqueeze(1) * u_y + torch.sigmoid(gamma).sqrt().unsqueeze(1) * eps
        u_hat, _ = self.u_hat(x, z_t, t)
        # (eta / 2) SNR'(t) ||u_hat(z_t, x, t) - u_y||^2     (sum over d)
        denoise = (0.5 * self.eta * dsnr * (u_hat - u_y).pow(2).sum(dim=1)).mean()
        # z_1 ~ q(z_1 | y):  the classifier is trained on noised LABELS
        gamma_1 = self.schedule.gamma(torch.ones(1, device=x.device))[0]
        eps1 = randn(u_y.shape, generator=generator, device=x.device)
        z_1 = torch.sigmoid(-gamma_1).sqrt() * u_y + torch.sigmoid(gamma_1).sqrt() * eps1
        # -log p(y | z_1)
        ce = F.cross_entropy(self.classifier(z_1), y)
        kl = self.kl_prior(u_y).mean()
        return {"loss": ce + kl + denoise, "loss_ce": ce.detach(), "loss_kl": kl.detach(),
                "loss_denoise": denoise.detach()}

    @torch.no_grad()
    def sample(self, x: torch.Tensor, noise: bool = True, generator: torch.Generator | None = None,
               steps: int | None = None, return_trajectory: bool = False):
        """The sampler ``z_0 -> z_1`` on images ``x`` (module docstring); returns ``classifier(z_1)``.

        Introduced in notebooks/05_continuous_time_and_flow_matching, section 3. The image features
        are computed once; each of the N steps is one pass of the small head. With
        ``return_trajectory`` also a dict with ``t`` (N+1,) and ``z`` (N+1, batch, d).
        """
        self._check_x(x)
        N = self._steps(steps)
        co = ct_step_coefficients(self.schedule, N)
        feat_x = self.net.image_features(x)
        z = self._initial_z(x.shape[0], noise, generator, x.device)
        zs = [z] if return_trajectory else None
        for k in range(1, N + 1):
            s = float(co["t"][k - 1])
            logits = self.net.logits_from_features(feat_x, z, self.net.time_features(s))
            u_hat = F.softmax(logits, dim=1) @ self.W_embed
            a, b, c = float(co["a"][k - 1]), float(co["b"][k - 1]), float(co["c"][k - 1])
            # z_t = a u_hat(z_s, x, s) + b z_s + sqrt(c) eps
            z = a * u_hat + b * z
            if noise:
                z = z + math.sqrt(c) * randn(z.shape, generator=generator, device=z.device)
            if return_trajectory:
                zs.append(z)
        logits = self.classifier(z)
        if return_trajectory:
            return logits, {"t": co["t"], "z": torch.stack(zs)}
        return logits

    def config(self) -> dict:
        return {**self._base_config(), "eta": self.eta, "schedule": self.schedule.config(),
                "sampler": "DT posterior update on t_k = k/N, network at the step start"}


class NoPropFM(_ContinuousModel):
    """NoProp-FM: flow matching on label embeddings with the same network (module docstring).

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 4.

    Args as :class:`NoPropCT` (no eta, no schedule), plus ``sigma``: the noise (our choice; the paper leaves it open) added to the
    path (default 0).
    """

    variant = "fm"

    def __init__(self, image_shape=(1, 28, 28), num_classes: int = 10, model="small", embedding="onehot",
                 embed_dim: int | None = None, prototypes: torch.Tensor | None = None,
                 inference_steps: int = 1000, sigma: float = 0.0):
        super().__init__(image_shape, num_classes, model, embedding, embed_dim, prototypes, inference_steps)
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be a number >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def velocity(self, x: torch.Tensor, z_t: torch.Tensor, t) -> torch.Tensor:
        """``v(z_t, x, t) = logits @ W_embed`` (no softmax).

        Introduced in notebooks/05_continuous_time_and_flow_matching, section 4.
        """
        return self.net(x, z_t, t) @ self.W_embed

    def class_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``-||z - u_k||^2`` for every class k: its argmax is the nearest class embedding."""
        return -torch.cdist(z, self.W_embed).pow(2)

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """``||v - (z_1 - z_0)||^2`` (batch mean), plus the anchor term when W_embed is learned.

        Introduced in notebooks/05_continuous_time_and_flow_matching, section 4.
        """
        self._check_x(x)
        B = x.shape[0]
        z_1 = self.embedding(y)
        z_0 = randn(z_1.shape, generator=generator, device=x.device)
        t = stratified_times(B, generator, device=x.device)
        eps = randn(z_1.shape, generator=generator, device=x.device) if self.sigma else None
        z_t = fm_path(z_0, z_1, t, self.sigma, eps)
        v = self.velocity(x, z_t, t)
        # ||v(z_t, x, t) - (z_1 - z_0)||^2
        fm = (v - fm_target(z_0, z_1)).pow(2).sum(dim=1).mean()
        out = {"loss": fm, "loss_fm": fm.detach()}
        if self.embedding.trainable:
            # z_1~ = z_t + (1 - t) v;   -log p(y | z_1~),  p(y | z) = softmax_k(-||z - u_k||^2)
            z1_tilde = z_t + (1 - t).unsqueeze(1) * v
            anchor = F.cross_entropy(-torch.cdist(z1_tilde, self.W_embed).pow(2), y)
            out["loss"] = fm + anchor
            out["loss_anchor"] = anchor.detach()
        return out

    @torch.no_grad()
    def sample(self, x: torch.Tensor, noise: bool = True, generator: torch.Generator | None = None,
               steps: int | None = None, return_trajectory: bool = False):
        """Euler from ``z_0`` (N(0, I), or 0 when ``noise=False``) to ``z_1``; returns ``-||z_1 - u_k||^2``.

        Introduced in notebooks/05_continuous_time_and_flow_matching, section 4. The image features
        are computed once. With ``return_trajectory`` also a dict with ``t`` and ``z`` (N+1, batch, d).
        """
        self._check_x(x)
        N = self._steps(steps)
        feat_x = self.net.image_features(x)
        W = self.W_embed

        def field(z, t):
            return self.net.logits_from_features(feat_x, z, self.net.time_features(t)) @ W

        z_0 = self._initial_z(x.shape[0], noise, generator, x.device)
        out = euler_integrate(field, z_0, N, return_trajectory)
        if return_trajectory:
            z_1, zs = out
            return self.class_logits(z_1), {"t": torch.linspace(0, 1, N + 1, dtype=torch.float64),
                                            "z": torch.stack(zs)}
        return self.class_logits(out)

    def config(self) -> dict:
        return {**self._base_config(), "sigma": self.sigma,
                "sampler": "Euler on t_k = k/N, then the nearest class embedding"}


def build(variant: str, model, image_shape, num_classes: int, embedding="onehot", embed_dim=None,
          prototypes=None, eta=None, inference_steps: int = 1000):
    """NoProp-CT (``variant='ct'``) or NoProp-FM (``'fm'``), as the command line builds them.

    Introduced in notebooks/05_continuous_time_and_flow_matching, section 0. ``eta`` defaults to 1
    for CT; FM has no eta (passing one is an error).
    """
    if variant == "ct":
        return NoPropCT(image_shape, num_classes, model=model, embedding=embedding, embed_dim=embed_dim,
                        prototypes=prototypes, eta=1.0 if eta is None else eta, inference_steps=inference_steps)
    if variant == "fm":
        if eta is not None:
            raise ValueError("NoProp-FM has no eta (its loss is the plain flow-matching loss); drop --eta")
        return NoPropFM(image_shape, num_classes, model=model, embedding=embedding, embed_dim=embed_dim,
                        prototypes=prototypes, inference_steps=inference_steps)
    raise ValueError(f"unknown continuous variant {variant!r}; choose 'ct' or 'fm'")
