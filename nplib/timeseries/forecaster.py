r"""The NoProp forecaster (NoProp-DT in the latent space of an autoencoder of futures) and its training.

Introduced in notebooks/07_timeseries_autoencoder, sections 2 and 3. One of the time-series modules
(:mod:`nplib.timeseries` says where each part lives); it builds on :mod:`nplib.timeseries.ett` and
:mod:`nplib.timeseries.forecast_baselines` (the trend / seasonal decomposition, the supervised loop).

**The NoProp autoencoder (notebook 07, section 2).** The "label" is the future window ``y``
(length H). An autoencoder gives it a latent label embedding

    u_y = E(y) in R^d,      y ~ D(u_y)

and NoProp-DT (spec section 2) runs in that latent space: ``z_0 ~ N(0, I)`` and for t = 1..T

    z_t = a_t u_hat_t(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) eps_t

where block t has a temporal encoder of the past window ``x`` and a latent path for ``z_{t-1}``;
the forecast is ``D(z_T)``. Each block is trained by its own local loss on noised targets,

    L_t = (T/2) eta (SNR(t) - SNR(t-1)) || u_hat_t(z_{t-1}, x) - u_y ||^2,   z_{t-1} ~ q(z_{t-1} | y)

with no gradient across blocks (``z_{t-1}`` is sampled from q, never taken from block t-1).

**Guarding against collapse (our choice; the paper's learned W_embed uses an anchor loss).** If
the embedding E were trained by the denoising losses, the trivial solution ``E(y) = constant``
would make every ``L_t`` zero and the forecasts useless. We therefore

1. train the autoencoder FIRST, alone, with a reconstruction loss through the noised latent,
   ``|| D(z_T) - y ||^2`` with ``z_T ~ q(z_T | y) = N(sqrt(alpha_bar_T) E(y), (1 - alpha_bar_T) I)``
   (the analogue of the paper's classifier trained on noised labels);
2. end E with a batch normalisation without learned scale (``affine=False``): every latent
   dimension has zero mean and unit variance over the training futures, the scale of the prior
   N(0, I), so the embedding can neither shrink to a point nor grow until the noise is irrelevant;
3. FREEZE E and use ``u_y = E(y).detach()`` as fixed targets while the T blocks train; the decoder
   keeps training on noised latents ``z_T ~ q(z_T | y)`` (shared parameters, as the paper's
   classifier).

The KL term of the paper is constant once E is frozen, so it is left out of the optimisation.

**The backprop baseline (notebook 07, section 4)**, :class:`BackpropForecaster`: the same blocks
and decoder trained END TO END with backprop (spec section 5: ``z_t = (1 - alpha_t) z_{t-1} +
alpha_t u_hat_t``, ``alpha_t = tanh(w_t)``, decoder on ``z_T``, MSE loss), trained by
:func:`fit_backprop` with the supervised loop of :mod:`nplib.timeseries.forecast_baselines`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nplib import devices
from nplib.diffusion import posterior_step, q_sample
from nplib.timeseries.ett import ForecastConfig, ForecastData, _batch, _generator, _pairs, _val_mse, smoke_config  # noqa: F401
from nplib.timeseries.forecast_baselines import _fit_supervised, moving_average
from nplib.schedules import DTSchedule, make_schedule

__all__ = [
    "FutureAutoencoder", "ForecastBlock", "NoPropForecaster", "BackpropForecaster", "ForecastConfig",
    "smoke_config", "fit_backprop", "fit_noprop",
]


class FutureAutoencoder(nn.Module):
    """Encoder and decoder of future windows: ``u_y = E(y)`` (d numbers), ``y ~ D(u_y)``.

    Introduced in notebooks/07_timeseries_autoencoder, section 2.
    Default (``hidden = 0``), a LINEAR autoencoder: E = Linear(H -> d) then BatchNorm(affine=False)
    (unit-variance latents, module docstring), D = Linear(d -> H): a learned PCA of the futures.
    Why linear (our choice, measured in notebook 07's development): with a linear decoder,
    decoding commutes with averaging, ``D(E[u | x]) = E[D(u) | x]``, so a block that predicts the
    conditional MEAN latent yields the mean forecast, the MSE-optimal point forecast; an MLP
    decoder (``hidden > 0``: E = Linear GELU Linear, D = GELU MLP plus a linear skip) decodes the
    mean latent to something else and gave a slightly worse test MSE on ETTh1.
    ``sigma_rec`` (H,) is the decoder's residual standard deviation, set by :func:`fit_noprop`.
    """

    def __init__(self, horizon: int, d: int = 64, hidden: int = 0):
        super().__init__()
        self.horizon, self.d, self.hidden = horizon, d, hidden
        if hidden:
            self.enc = nn.Sequential(nn.Linear(horizon, hidden), nn.GELU(), nn.Linear(hidden, d))
            self.dec_mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, horizon))
        else:
            self.enc = nn.Linear(horizon, d)
            self.dec_mlp = None
        self.norm = nn.BatchNorm1d(d, affine=False)
        self.dec_lin = nn.Linear(d, horizon)
        self.register_buffer("sigma_rec", torch.zeros(horizon))

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """(N, H) -> u_y (N, d)."""
        return self.norm(self.enc(y))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, H)."""
        out = self.dec_lin(z)
        return out + self.dec_mlp(z) if self.dec_mlp is not None else out


class TemporalEncoder(nn.Module):
    """Past window -> features: trend / seasonal decomposition, one linear map each, then GELU MLP.

    Introduced in notebooks/07_timeseries_autoencoder, section 2. Returns ``(h_lin, h)``: the linear
    features (so that a block can be at least a linear forecaster, like DLinear) and a nonlinear one.
    """

    def __init__(self, lookback: int, hidden: int = 64, kernel: int = 25, nonlinear: bool = True):
        super().__init__()
        self.kernel = kernel
        self.seasonal = nn.Linear(lookback, hidden)
        self.trend = nn.Linear(lookback, hidden)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()) if nonlinear else nn.Identity()

    def forward(self, x: torch.Tensor):
        trend = moving_average(x, self.kernel)
        h_lin = self.seasonal(x - trend) + self.trend(trend)
        return h_lin, self.mlp(h_lin)


class ForecastBlock(nn.Module):
    """Block t: ``u_hat_t(z_{t-1}, x)`` in R^d from a temporal encoder of x and a latent path of z.

    Introduced in notebooks/07_timeseries_autoencoder, section 2.

        h_lin, h_x = TemporalEncoder(x);   h_z = GELU(Linear(z_{t-1}))
        u_hat_t    = Linear(h_lin) + MLP(concat(h_x, h_z))

    The regression analogue of the paper's block (which ends in softmax(logits) @ W_embed): the
    target is a continuous latent, so the head outputs it directly.
    """

    def __init__(self, lookback: int, d: int, hidden: int = 64, kernel: int = 25, nonlinear: bool = True):
        super().__init__()
        self.temporal = TemporalEncoder(lookback, hidden, kernel, nonlinear)
        self.latent = nn.Sequential(nn.Linear(d, hidden), nn.GELU())
        self.skip = nn.Linear(hidden, d)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor, z_prev: torch.Tensor, h=None) -> torch.Tensor:
        h_lin, h_x = self.temporal(x) if h is None else h
        return self.skip(h_lin) + self.head(torch.cat([h_x, self.latent(z_prev)], dim=1))

    def past_features(self, x: torch.Tensor):
        """Everything of ``u_hat_t`` that depends on x only (computed once per window, reused by
        every chain sample): ``Linear(h_lin)`` and the x half of the head's first layer."""
        h_lin, h_x = self.temporal(x)
        first = self.head[0]
        hid = h_x.shape[1]
        return self.skip(h_lin), F.linear(h_x, first.weight[:, :hid], first.bias)

    def from_features(self, feats, z_prev: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """``u_hat_t`` from :meth:`past_features` (N windows) and z_prev (samples * N, d), same
        value as :meth:`forward`."""
        skip, pre_x = feats
        first = self.head[0]
        hid = pre_x.shape[1]
        pre = pre_x.repeat(samples, 1) + F.linear(self.latent(z_prev), first.weight[:, hid:])
        return skip.repeat(samples, 1) + self.head[2](self.head[1](pre))


class NoPropForecaster(nn.Module):
    """NoProp-DT on latent embeddings of future windows (module docstring).

    Introduced in notebooks/07_timeseries_autoencoder, section 2.
    """

    def __init__(self, lookback: int, horizon: int, T: int = 10, d: int = 64, hidden: int = 64,
                 ae_hidden: int = 0, eta: float = 0.1, schedule: DTSchedule | None = None, kernel: int = 25):
        super().__init__()
        self.lookback, self.horizon, self.T, self.d, self.eta = lookback, horizon, T, d, eta
        self.schedule = schedule or make_schedule("cosine", T)
        if self.schedule.T != T:
            raise ValueError(f"schedule has T = {self.schedule.T}, the model T = {T}")
        self.hidden, self.ae_hidden, self.kernel = hidden, ae_hidden, kernel
        self.autoencoder = FutureAutoencoder(horizon, d, ae_hidden)
        self.blocks = nn.ModuleList(ForecastBlock(lookback, d, hidden, kernel) for _ in range(T))

    @classmethod
    def from_config(cls, lookback: int, horizon: int, cfg: "ForecastConfig | None" = None) -> "NoPropForecaster":
        """The model :func:`fit_noprop` trains for ``cfg`` (cosine schedule clipped at ``cfg.alpha_bar_max``).

        Introduced in notebooks/07_timeseries_autoencoder, section 2. Its parameters are freshly
        initialised from the global RNG: :func:`fit_noprop` seeds it with ``cfg.seed`` first.
        """
        cfg = cfg or ForecastConfig()
        sched = make_schedule("cosine", cfg.T, alpha_bar_max=cfg.alpha_bar_max)
        return cls(lookback, horizon, cfg.T, cfg.d, cfg.hidden, cfg.ae_hidden, cfg.eta, sched, cfg.kernel)

    def config(self) -> dict:
        """Everything that fixes the shapes and the chain (JSON-able): checked when a checkpoint loads.

        Introduced in notebooks/07_timeseries_autoencoder, section 3.
        """
        return {"model": "NoPropForecaster", "lookback": self.lookback, "horizon": self.horizon, "T": self.T,
                "d": self.d, "hidden": self.hidden, "ae_hidden": self.ae_hidden, "kernel": self.kernel,
                "eta": self.eta, "schedule": self.schedule.kind,
                "alpha_bar_min": float(self.schedule.alpha_bar[0]),
                "alpha_bar_max": float(self.schedule.alpha_bar[-1])}

    # ---------------------------------------------------------------- losses
    def reconstruction_loss(self, y: torch.Tensor) -> torch.Tensor:
        """Stage 1 (and the decoder in stage 2): ``|| D(z_T) - y ||^2 / H``, ``z_T ~ q(z_T | y)``.

        Introduced in notebooks/07_timeseries_autoencoder, section 3.
        """
        u_y = self.autoencoder.encode(y)
        # z_T ~ q(z_T | y) = N(sqrt(alpha_bar_T) u_y, (1 - alpha_bar_T) I)
        z_T = q_sample(u_y, self.T, self.schedule)
        return (self.autoencoder.decode(z_T) - y).pow(2).mean()

    def decoder_loss(self, u_y: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Decoder only, on noised latents of the FROZEN encoder (``u_y`` detached)."""
        z_T = q_sample(u_y.detach(), self.T, self.schedule)
        return (self.autoencoder.decode(z_T) - y).pow(2).mean()

    def block_loss(self, t: int, x: torch.Tensor, u_y: torch.Tensor) -> torch.Tensor:
        """Block t's local loss; ``u_y`` are fixed targets and ``z_{t-1}`` comes from q, not block t-1.

        Introduced in notebooks/07_timeseries_autoencoder, section 3.
        """
        u_y = u_y.detach()
        # z_{t-1} ~ q(z_{t-1} | y)
        z_prev = q_sample(u_y, t - 1, self.schedule)
        u_hat = self.blocks[t - 1](x, z_prev)
        weight = float(self.schedule.snr_delta[t - 1])
        # L_t = (T/2) eta (SNR(t) - SNR(t-1)) ||u_hat_t(z_{t-1}, x) - u_y||^2   (sum over d)
        return (self.T / 2) * self.eta * weight * (u_hat - u_y).pow(2).sum(dim=1).mean()

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def sample_latent(self, x: torch.Tensor, samples: int = 1, noise: bool = True,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The chain ``z_0 -> z_T`` for x (N, L); returns (samples, N, d). Never sees the future.

        Introduced in notebooks/07_timeseries_autoencoder, section 3. ``noise=False`` is the
        deterministic chain (``z_0 = 0``, ``eps_t = 0``). The noise joins ``x`` on its device; a
        ``generator`` draws on its own device (:mod:`nplib.devices`: a CPU generator gives the same
        numbers for a model on a GPU, a generator on the GPU draws there).
        """
        n = x.shape[0]
        # z_0 ~ N(0, I)   (or 0 for the deterministic chain)
        z = (devices.randn(samples * n, self.d, generator=generator, dtype=x.dtype, device=x.device) if noise
             else torch.zeros(samples * n, self.d, dtype=x.dtype, device=x.device))
        for t in range(1, self.T + 1):
            block = self.blocks[t - 1]
            feats = block.past_features(x)  # the past is encoded once and shared by the samples
            u_hat = block.from_features(feats, z, samples)
            # z_t = a_t u_hat_t(z_{t-1}, x) + b_t z_{t-1} + sqrt(c_t) eps_t
            z = posterior_step(u_hat, z, t, self.schedule, noise=noise, generator=generator)
        return z.reshape(samples, n, self.d)

    @torch.no_grad()
    def forecast(self, x: torch.Tensor, noise: bool = False, samples: int = 1,
                 generator: torch.Generator | None = None, decoder_noise: bool = False) -> torch.Tensor:
        """Decoded futures (samples, N, H) = ``D(z_T)`` (+ the decoder's residual noise if asked)."""
        z = self.sample_latent(x, samples, noise, generator)
        y = self.autoencoder.decode(z.reshape(-1, self.d)).reshape(samples, x.shape[0], self.horizon)
        if decoder_noise:
            # y = D(z_T) + sigma_rec * eps
            y = y + self.autoencoder.sigma_rec * devices.randn(y.shape, generator=generator, dtype=y.dtype,
                                                               device=y.device)
        return y

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic-chain point forecast, (N, L) -> (N, H)."""
        return self.forecast(x, noise=False)[0]


class BackpropForecaster(nn.Module):
    """The same blocks and decoder trained END TO END with backprop (spec section 5).

    Introduced in notebooks/07_timeseries_autoencoder, section 4.

        z_0 = 0;  z_t = (1 - alpha_t) z_{t-1} + alpha_t u_hat_t(z_{t-1}, x),  alpha_t = tanh(w_t);  y_hat = D(z_T)

    OPEN: z_0 = 0 (the prior's mean) in training and at test, since a point forecast trained with
    MSE has no use for input noise; w_t = 0.5 initially. Loss: ``|| y_hat - y ||^2``.
    """

    def __init__(self, lookback: int, horizon: int, T: int = 10, d: int = 64, hidden: int = 64,
                 ae_hidden: int = 0, kernel: int = 25):
        super().__init__()
        self.T, self.d = T, d
        self.blocks = nn.ModuleList(ForecastBlock(lookback, d, hidden, kernel) for _ in range(T))
        self.autoencoder = FutureAutoencoder(horizon, d, ae_hidden)  # only its decoder is used
        self.w = nn.Parameter(torch.full((T,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(x.shape[0], self.d, dtype=x.dtype, device=x.device)
        for t in range(1, self.T + 1):
            alpha_t = torch.tanh(self.w[t - 1])
            # z_t = (1 - alpha_t) z_{t-1} + alpha_t u_hat_t(z_{t-1}, x)
            z = (1 - alpha_t) * z + alpha_t * self.blocks[t - 1](x, z)
        return self.autoencoder.decode(z)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


# ============================================================================ training
def noprop_training_step(model: NoPropForecaster, x: torch.Tensor, y: torch.Tensor, optimizers: dict) -> dict:
    """One minibatch of stage 2: for t = 1..T update block t alone, then the decoder.

    Introduced in notebooks/07_timeseries_autoencoder, section 3. The targets ``u_y = E(y)`` come
    from the frozen encoder without gradient; block t's forward, backward and update finish
    before block t+1 starts, so no gradient crosses blocks and one block's activations are alive.
    """
    with torch.no_grad():
        u_y = model.autoencoder.encode(y)
    losses = []
    for t in range(1, model.T + 1):
        opt = optimizers[f"block{t}"]
        opt.zero_grad(set_to_none=True)
        loss_t = model.block_loss(t, x, u_y)
        if not torch.isfinite(loss_t):
            raise FloatingPointError(f"loss of block {t} is {loss_t.item()}")
        loss_t.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss_t.item())
    opt = optimizers["decoder"]
    opt.zero_grad(set_to_none=True)
    loss_dec = model.decoder_loss(u_y, y)
    loss_dec.backward()
    opt.step()
    return {"loss_blocks": sum(losses) / len(losses), "loss_decoder": loss_dec.item(), "per_block": losses}


def fit_noprop(data: ForecastData, cfg: ForecastConfig, log=print, into: NoPropForecaster | None = None):
    """Stage 1: the autoencoder; stage 2: the T blocks by local losses (+ decoder). Returns (model, info).

    Introduced in notebooks/07_timeseries_autoencoder, section 3. The model of the stage-2 epoch
    with the best validation MSE (deterministic chain) is kept. Training runs on ``data.device``
    (model, batches, generators and every noise draw there). The model is always built here,
    right after ``torch.manual_seed(cfg.seed)`` (:meth:`NoPropForecaster.from_config`), so a run is
    reproducible; ``into`` (a model of the same :meth:`~NoPropForecaster.config`, e.g. the one
    :func:`nplib.pretrained.load_or_train` fills) receives the trained parameters and is returned.
    """
    if into is not None:
        want = NoPropForecaster.from_config(data.lookback, data.horizon, cfg).config()
        if into.config() != want:
            raise ValueError(f"fit_noprop(into=...): the model has the configuration {into.config()}, "
                             f"cfg and the data give {want}")
    torch.manual_seed(cfg.seed)
    g = _generator(data.device, cfg.seed + 1)
    model = NoPropForecaster.from_config(data.lookback, data.horizon, cfg).to(data.device)
    ae = model.autoencoder
    # ---- stage 1: the autoencoder alone
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    for epoch in range(1, cfg.ae_epochs + 1):
        t0 = time.perf_counter()
        ae.train()
        total, nb = 0.0, 0
        order = _pairs(data.train, cfg.max_train_examples, g)
        for i in range(0, len(order), cfg.batch_size):
            _, y = _batch(data.train, order[i:i + cfg.batch_size])
            loss = model.reconstruction_loss(y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, nb = total + loss.item(), nb + 1
        history.append({"stage": "autoencoder", "epoch": epoch, "loss": total / nb,
                        "seconds": time.perf_counter() - t0})
        log(f"  NoProp stage 1 (autoencoder) epoch {epoch}: reconstruction MSE {total / nb:.4f} "
            f"({history[-1]['seconds']:.1f} s)")
    ae.eval()  # the encoder is frozen from here on (BatchNorm uses its running statistics)
    for p in ae.enc.parameters():
        p.requires_grad_(False)
    # ---- stage 2: the blocks, each by its local loss; the decoder on noised latents
    opts = {f"block{t}": torch.optim.AdamW(model.blocks[t - 1].parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay) for t in range(1, cfg.T + 1)}
    dec_params = list(ae.dec_lin.parameters()) + (list(ae.dec_mlp.parameters()) if ae.dec_mlp is not None else [])
    opts["decoder"] = torch.optim.AdamW(dec_params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state = math.inf, None
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.blocks.train()
        tot_b, tot_d, per_block, nb = 0.0, 0.0, np.zeros(cfg.T), 0
        order = _pairs(data.train, cfg.max_train_examples, g)
        for i in range(0, len(order), cfg.batch_size):
            x, y = _batch(data.train, order[i:i + cfg.batch_size])
            out = noprop_training_step(model, x, y, opts)
            tot_b, tot_d, nb = tot_b + out["loss_blocks"], tot_d + out["loss_decoder"], nb + 1
            per_block += np.array(out["per_block"])
        model.eval()
        val = _val_mse(model.predict, data.val)
        history.append({"stage": "blocks", "epoch": epoch, "loss_blocks": tot_b / nb, "loss_decoder": tot_d / nb,
                        "per_block": (per_block / nb).tolist(), "val_mse": val,
                        "seconds": time.perf_counter() - t0})
        log(f"  NoProp stage 2 (blocks) epoch {epoch}: mean block loss {tot_b / nb:.4f}  decoder MSE "
            f"{tot_d / nb:.4f}  val MSE {val:.4f} ({history[-1]['seconds']:.1f} s)")
        if val < best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    # ---- the decoder's residual: sigma_rec[h] = std of y - D(E(y)) over training futures
    with torch.no_grad():
        order = _pairs(data.train, 8192, _generator(data.device, cfg.seed + 2))
        _, y = _batch(data.train, order)
        # sigma_rec[h] = std over training futures of (y - D(E(y)))[h]
        resid = y - ae.decode(ae.encode(y))
        ae.sigma_rec.copy_(resid.std(dim=0))
    info = {"history": history, "best_val_mse": best, "reconstruction_mse_train": float(resid.pow(2).mean())}
    if into is not None:
        into.load_state_dict(model.state_dict())
        into.to(data.device).eval()
        model = into
    return model, info


def fit_backprop(data: ForecastData, cfg: ForecastConfig, log=print):
    """Train :class:`BackpropForecaster` end to end. Returns (model, info).

    Introduced in notebooks/07_timeseries_autoencoder, section 4. Trains on ``data.device``.
    """
    torch.manual_seed(cfg.seed)
    model = BackpropForecaster(data.lookback, data.horizon, cfg.T, cfg.d, cfg.hidden, cfg.ae_hidden,
                               cfg.kernel).to(data.device)
    info = _fit_supervised(model, data, cfg, cfg.baseline_epochs, lr=cfg.lr, log=log, name="backprop")
    return model, info
