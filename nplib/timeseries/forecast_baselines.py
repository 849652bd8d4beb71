r"""The baselines of the forecasting experiment: naive, seasonal naive and DLinear-style.

Introduced in notebooks/07_timeseries_autoencoder, section 4. One of the time-series modules
(:mod:`nplib.timeseries` says where each part lives); it builds on :mod:`nplib.timeseries.ett`.

**Baselines (notebook 07, section 4)**, on exactly the same windows: last value (naive), seasonal
naive (the value 24 h earlier), a DLinear-style model (moving-average trend / seasonal
decomposition, one linear map each, Zeng et al. 2023) and the same blocks trained END TO END with
backprop. That last one is built from the forecaster's blocks, so it lives with them in
:mod:`nplib.timeseries.forecaster` (:class:`~nplib.timeseries.forecaster.BackpropForecaster`); it trains with the
supervised loop of this module (:func:`_fit_supervised`), as DLinear-style does.
"""
from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from nplib.timeseries.ett import ForecastConfig, ForecastData, _batch, _generator, _pairs, _val_mse

__all__ = ["moving_average", "DLinear", "naive_forecast", "seasonal_naive_forecast", "fit_dlinear"]


def naive_forecast(x: torch.Tensor, horizon: int) -> torch.Tensor:
    """Last value repeated: ``y_hat[h] = x[L-1]``; x (B, L, C) -> (B, H, C).

    Introduced in notebooks/07_timeseries_autoencoder, section 4.
    """
    return x[:, -1:, :].expand(-1, horizon, -1).clone()


def seasonal_naive_forecast(x: torch.Tensor, horizon: int, period: int = 24) -> torch.Tensor:
    """The value one period earlier: ``y_hat[h] = x[L - period + (h mod period)]``.

    Introduced in notebooks/07_timeseries_autoencoder, section 4.
    """
    L = x.shape[1]
    if period > L:
        raise ValueError(f"period {period} is longer than the lookback {L}")
    # y_hat[h] = x[L - period + (h mod period)]
    idx = L - period + torch.arange(horizon, device=x.device) % period
    return x[:, idx, :]


def moving_average(x: torch.Tensor, kernel: int = 25) -> torch.Tensor:
    """Trend of each row of x (N, L): a centred moving average with edge replication.

    Introduced in notebooks/07_timeseries_autoencoder, section 4.
    """
    left, right = (kernel - 1) // 2, kernel // 2
    xp = torch.cat([x[:, :1].expand(-1, left), x, x[:, -1:].expand(-1, right)], dim=1)
    return F.avg_pool1d(xp.unsqueeze(1), kernel, stride=1).squeeze(1)


class DLinear(nn.Module):
    """DLinear-style forecaster: ``y_hat = W_s (x - trend) + W_t trend`` (one map L -> H each).

    Introduced in notebooks/07_timeseries_autoencoder, section 4. Channel-independent and shared
    by the variables (DLinear's default). Input (N, L) -> (N, H).
    """

    def __init__(self, lookback: int, horizon: int, kernel: int = 25):
        super().__init__()
        self.kernel = kernel
        self.seasonal = nn.Linear(lookback, horizon)
        self.trend = nn.Linear(lookback, horizon)
        for lin in (self.seasonal, self.trend):  # start as the average of the past (as DLinear does)
            nn.init.constant_(lin.weight, 1.0 / lookback)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trend = moving_average(x, self.kernel)
        # y_hat = W_s seasonal + W_t trend,   seasonal = x - trend
        return self.seasonal(x - trend) + self.trend(trend)


# ============================================================================ training
# (the supervised loop is shared with nplib.timeseries.forecaster.fit_backprop)
def _fit_supervised(model: nn.Module, data: ForecastData, cfg: ForecastConfig, epochs: int, lr: float,
                    log=print, name: str = "") -> dict:
    """MSE training with AdamW, keeping the parameters of the epoch with the best validation MSE.

    The model must already be on ``data.device``; the epoch order is drawn on that device.
    """
    g = _generator(data.device, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    best, best_state, history = math.inf, None, []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, nb = 0.0, 0
        order = _pairs(data.train, cfg.max_train_examples, g)
        for i in range(0, len(order), cfg.batch_size):
            x, y = _batch(data.train, order[i:i + cfg.batch_size])
            loss = (model(x) - y).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, nb = total + loss.item(), nb + 1
        model.eval()
        val = _val_mse(model.predict if hasattr(model, "predict") else model, data.val)
        history.append({"epoch": epoch, "loss": total / nb, "val_mse": val, "seconds": time.perf_counter() - t0})
        log(f"  {name} epoch {epoch}: train loss {total / nb:.4f}  val MSE {val:.4f}  "
            f"({history[-1]['seconds']:.1f} s)")
        if val < best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return {"history": history, "best_val_mse": best}


def fit_dlinear(data: ForecastData, cfg: ForecastConfig, log=print):
    """Train the DLinear-style baseline (AdamW, the same lr as the other models). Returns (model, info).

    Introduced in notebooks/07_timeseries_autoencoder, section 4. Trains on ``data.device``.
    """
    torch.manual_seed(cfg.seed)
    model = DLinear(data.lookback, data.horizon, cfg.kernel).to(data.device)
    model.predict = model.forward
    info = _fit_supervised(model, data, cfg, cfg.baseline_epochs, lr=cfg.lr, log=log, name="DLinear")
    return model, info
