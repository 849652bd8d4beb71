r"""Time-series forecasting with a NoProp autoencoder (ETTh1 / ETTh2).

Introduced in notebooks/07_timeseries_autoencoder; the command line is ``python -m nplib forecast``
(:mod:`nplib.forecast_cli`).

**Data and protocol (notebook 07, section 1).** ETTh1 is hourly, 7 variables
(HUFL, HULL, MUFL, MULL, LUFL, LULL, OT), 17,420 rows. Standard protocol: the first 12 months
(12 x 30 x 24 = 8,640 hours) train, the next 4 months (2,880 h) validation, the next 4 months
(2,880 h) test. The validation and test windows start ``lookback`` hours before their split
boundary so that the first forecast starts exactly at the boundary. Standardisation (mean and
standard deviation per variable) is fitted on the TRAINING rows only. A window is a past of
``L = lookback`` hours and a future of ``H = horizon`` hours, sliding by one hour. Nothing of the
validation or test period reaches training or scaling (spec section 8, bug 9).

Modes: ``multivariate`` forecasts all 7 variables from their pasts (7 -> 7); ``univariate``
forecasts OT from OT. Every learned model here is CHANNEL-INDEPENDENT (as in DLinear's default):
one network maps the past of one variable to its future and is shared by the 7 variables, so a
multivariate window gives 7 training examples. Metrics are MSE and MAE on the standardised test
set, averaged over windows, horizon steps and variables.

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

**Predictive distribution (notebook 07, section 5).** Sampling the stochastic chain S times gives
S latents ``z_T`` per window; the decoder adds its own Gaussian residual with a per-horizon-step
standard deviation ``sigma_rec`` measured on the training futures (``y - D(E(y))``: the part of the
future the d-dimensional latent cannot hold). Quantiles of the S samples give the 80 % and 95 %
prediction intervals; the mean of the samples is the point forecast. Measured on ETTh1, these raw
intervals under-cover even on the TRAINING windows (the chain of T = 10 blocks, each trained to
predict a conditional mean, is under-dispersed), so :func:`run_experiment` also reports intervals
widened by one factor per level chosen on VALIDATION windows (:func:`calibrate_interval_scale`,
split-conformal style; the test set is never used to choose it).

**Baselines (notebook 07, section 4)**, on exactly the same windows: last value (naive), seasonal
naive (the value 24 h earlier), a DLinear-style model (moving-average trend / seasonal
decomposition, one linear map each, Zeng et al. 2023) and the same blocks trained END TO END with
backprop (spec section 5: ``z_t = (1 - alpha_t) z_{t-1} + alpha_t u_hat_t``, ``alpha_t = tanh(w_t)``,
decoder on ``z_T``, MSE loss).
"""
from __future__ import annotations

import copy
import csv
import math
import os
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import devices
from .data import DatasetNotFoundError, data_root, file_digest, smoke_mode
from .diffusion import posterior_step, q_sample
from .schedules import DTSchedule, make_schedule

__all__ = [
    "ETT_URL", "ETT_MD5", "ETT_COLUMNS", "SPLIT_HOURS", "HORIZONS", "LOOKBACKS", "MODES", "ETTSeries",
    "md5sum", "ett_path", "load_ett", "split_borders", "Scaler", "WindowSet", "ForecastData",
    "prepare_forecast_data", "synthetic_series", "data_from_array", "moving_average", "DLinear",
    "FutureAutoencoder", "ForecastBlock", "NoPropForecaster", "BackpropForecaster", "ForecastConfig", "smoke_config",
    "naive_forecast", "seasonal_naive_forecast", "fit_dlinear", "fit_backprop", "fit_noprop",
    "pair_batch", "predict_windows", "evaluate_point", "evaluate_intervals", "calibrate_interval_scale",
    "run_experiment", "format_table", "jsonable_result", "checkpoint_fields", "load_pretrained",
]

ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{name}.csv"
ETT_MD5 = {"ETTh1": "8381763947c85f4be6ac456c508460d6", "ETTh2": "51a229a3fc13579dd939364fefe9c7ab"}
ETT_COLUMNS = ("date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
#: hours in the train / validation / test parts (12, 4 and 4 months of 30 days)
SPLIT_HOURS = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)
HORIZONS = (96, 192, 336, 720)
LOOKBACKS = (96, 336)
MODES = ("multivariate", "univariate")
TARGET = "OT"


# ============================================================================ data
def md5sum(path: str | Path) -> str:
    """Hex md5 of a file (read in chunks)."""
    return file_digest(path, "md5")


def _check_md5(path: Path, name: str) -> None:
    want = ETT_MD5.get(name)
    if want is not None:
        got = md5sum(path)
        if got != want:
            raise ValueError(f"{path} has md5 {got}, expected {want} for {name}.csv as published at "
                             f"{ETT_URL.format(name=name)}: the file is corrupt or a different version. "
                             "Delete it to download it again, or replace it with the published file.")


def ett_path(name: str = "ETTh1", root: str | Path | None = None, download: bool = True) -> Path:
    """``<data root>/ETT/<name>.csv``, downloaded (and md5-checked) on first use.

    Introduced in notebooks/07_timeseries_autoencoder, section 1.
    Known files (ETTh1, ETTh2) are checked against their published md5; any other CSV in the ETT
    column layout under ``<root>/ETT/`` is used as it is. ``NPLIB_NO_DOWNLOAD=1`` never downloads.
    A missing file whose download fails (or is not tried) raises
    :class:`~nplib.data.DatasetNotFoundError` (a ``FileNotFoundError``) naming the file and where to
    put it.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"dataset name must be a plain file stem such as 'ETTh1', got {name!r}")
    root = Path(root) if root is not None else data_root()
    path = root / "ETT" / f"{name}.csv"
    if path.is_file():
        _check_md5(path, name)
        return path
    url = ETT_URL.format(name=name)
    reason = "download=False"
    if download and os.environ.get("NPLIB_NO_DOWNLOAD", "").strip() not in ("", "0"):
        download, reason = False, "downloads are disabled by NPLIB_NO_DOWNLOAD"
    if download:
        tmp = path.with_suffix(".csv.part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            urllib.request.urlretrieve(url, tmp)
            _check_md5(tmp, name)
            tmp.replace(path)
            return path
        except Exception as err:  # no network, read-only root, checksum mismatch...
            reason = f"download from {url} failed: {type(err).__name__}: {err}"
            if tmp.exists():
                try:
                    tmp.unlink()
                except OSError:
                    pass
    raise DatasetNotFoundError(
        f"{name}.csv was not found at {path} ({reason}). Put the file {name}.csv "
        f"(columns {','.join(ETT_COLUMNS)}; published at {url}) in {path.parent}/, or point NPLIB_DATA "
        "at a folder that holds ETT/" + f"{name}.csv.")


@dataclass
class ETTSeries:
    """A whole ETT file: ``dates`` (N,) datetime64[h], ``values`` (N, 7) float32, column names."""

    name: str
    dates: np.ndarray
    values: np.ndarray
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.dates)


def load_ett(name: str = "ETTh1", root: str | Path | None = None, download: bool = True) -> ETTSeries:
    """Read ``<data root>/ETT/<name>.csv`` (see :func:`ett_path`) into numpy arrays.

    Introduced in notebooks/07_timeseries_autoencoder, section 1.
    """
    path = ett_path(name, root, download)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader))
        if header != ETT_COLUMNS:
            raise ValueError(f"{path} does not have the ETT column layout {','.join(ETT_COLUMNS)}; "
                             f"its header is {','.join(header)}")
        rows = [r for r in reader if r]
    dates = np.array([r[0] for r in rows], dtype="datetime64[h]")
    values = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float32)
    return ETTSeries(name, dates, values, ETT_COLUMNS[1:])


def split_borders(n_rows: int, lookback: int, hours: tuple[int, int, int] = SPLIT_HOURS) -> dict:
    """Row ranges ``{split: (start, end)}`` of the inputs of each split (end exclusive).

    Introduced in notebooks/07_timeseries_autoencoder, section 1.
    Train is rows [0, 8640); validation and test cover their 2,880 hours plus the ``lookback``
    hours before, so the first forecast of each starts at the split boundary. The training rows
    are also the only rows used to fit the scaler.
    """
    n_train, n_val, n_test = hours
    if n_rows < sum(hours):
        raise ValueError(f"the series has {n_rows} rows; the protocol needs {sum(hours)} "
                         f"({n_train} train + {n_val} validation + {n_test} test)")
    if lookback < 1 or lookback >= n_train:
        raise ValueError(f"lookback must lie in [1, {n_train}), got {lookback}")
    b_val, b_test = n_train, n_train + n_val
    return {"train": (0, n_train), "val": (b_val - lookback, b_test), "test": (b_test - lookback, b_test + n_test)}


@dataclass
class Scaler:
    """Per-variable standardisation ``(v - mean) / std``, fitted on the training rows only.

    Introduced in notebooks/07_timeseries_autoencoder, section 1.
    """

    mean: np.ndarray
    std: np.ndarray
    fitted_rows: tuple[int, int] = (0, 0)

    @classmethod
    def fit(cls, values: np.ndarray, rows: tuple[int, int]) -> "Scaler":
        part = values[rows[0]:rows[1]].astype(np.float64)
        mean, std = part.mean(axis=0), part.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls(mean.astype(values.dtype), std.astype(values.dtype), tuple(rows))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean


@dataclass
class WindowSet:
    """Sliding windows over one split, stored as start rows into the standardised series.

    Introduced in notebooks/07_timeseries_autoencoder, section 1.

    Window ``i`` has the past ``series[s_i : s_i + L]`` and the future
    ``series[s_i + L : s_i + L + H]`` (``s_i = starts[i]``); nothing is copied until a batch is asked
    for. ``x(idx)`` is (B, L, C), ``y(idx)`` is (B, H, C), on the device of ``series``
    (:meth:`ForecastData.to` moves a whole data set).
    """

    series: torch.Tensor  # (rows, C) standardised, the WHOLE series (indexing is absolute)
    starts: torch.Tensor  # (N,) long
    lookback: int
    horizon: int

    def __len__(self) -> int:
        return self.starts.numel()

    @property
    def channels(self) -> int:
        return self.series.shape[1]

    @property
    def device(self) -> torch.device:
        return self.series.device

    def to(self, device) -> "WindowSet":
        """The same windows with ``series`` and ``starts`` on ``device`` (no copy if already there)."""
        return WindowSet(self.series.to(device), self.starts.to(device), self.lookback, self.horizon)

    def _starts(self, idx) -> torch.Tensor:
        if idx is None:
            return self.starts
        if isinstance(idx, torch.Tensor):
            idx = idx.to(self.starts.device)
        return self.starts[idx]

    def x(self, idx=None) -> torch.Tensor:
        s = self._starts(idx)
        return self.series[s[:, None] + torch.arange(self.lookback, device=s.device)]

    def y(self, idx=None) -> torch.Tensor:
        s = self._starts(idx)
        return self.series[s[:, None] + self.lookback + torch.arange(self.horizon, device=s.device)]

    def target_rows(self) -> tuple[int, int]:
        """(first, last + 1) rows that any future of this set touches."""
        return int(self.starts.min()) + self.lookback, int(self.starts.max()) + self.lookback + self.horizon

    def input_rows(self) -> tuple[int, int]:
        return int(self.starts.min()), int(self.starts.max()) + self.lookback


def _windows(series: torch.Tensor, rows: tuple[int, int], lookback: int, horizon: int,
             stride: int = 1) -> WindowSet:
    start, end = rows
    n = end - start - lookback - horizon + 1
    if n < 1:
        raise ValueError(f"rows [{start}, {end}) are too few for lookback {lookback} + horizon {horizon}")
    starts = torch.arange(start, start + n, stride, dtype=torch.long)
    return WindowSet(series, starts, lookback, horizon)


@dataclass
class ForecastData:
    """Train / validation / test windows of one dataset, mode, lookback and horizon.

    Introduced in notebooks/07_timeseries_autoencoder, section 1.
    """

    name: str
    mode: str
    columns: tuple[str, ...]
    borders: dict
    scaler: Scaler
    train: WindowSet
    val: WindowSet
    test: WindowSet
    dates: np.ndarray | None = None
    smoke: bool = False

    @property
    def lookback(self) -> int:
        return self.train.lookback

    @property
    def device(self) -> torch.device:
        return self.train.device

    def to(self, device) -> "ForecastData":
        """The same data with every window set on ``device`` (the three splits keep sharing one series).

        Introduced in notebooks/07_timeseries_autoencoder, section 1. Training and evaluation run on
        the device of the data (:func:`fit_noprop`, :func:`evaluate_intervals`...).
        """
        device = torch.device(device)
        if self.device == device:
            return self
        series = self.train.series.to(device)
        sets = [WindowSet(series, ws.starts.to(device), ws.lookback, ws.horizon)
                for ws in (self.train, self.val, self.test)]
        return ForecastData(self.name, self.mode, self.columns, self.borders, self.scaler, *sets,
                            dates=self.dates, smoke=self.smoke)

    @property
    def horizon(self) -> int:
        return self.train.horizon

    def summary(self) -> str:
        b = self.borders
        lines = [f"{self.name}, {self.mode} ({', '.join(self.columns)}), lookback {self.lookback}, "
                 f"horizon {self.horizon}{' [quick mode: strided subsets]' if self.smoke else ''}"]
        for k in ("train", "val", "test"):
            ws = getattr(self, k)
            lo, hi = ws.target_rows()
            lines.append(f"  {k:5s} input rows [{b[k][0]:5d}, {b[k][1]:5d})  targets rows [{lo:5d}, {hi:5d})  "
                         f"{len(ws):5d} windows x {ws.channels} variables")
        lines.append(f"  scaler fitted on rows [{self.scaler.fitted_rows[0]}, {self.scaler.fitted_rows[1]})")
        return "\n".join(lines)


def _smoke_stride(n: int, keep: int) -> int:
    return max(1, n // keep)


def data_from_array(values: np.ndarray, lookback: int, horizon: int, hours=SPLIT_HOURS, name: str = "array",
                    columns: tuple[str, ...] | None = None, smoke: bool = False, dates=None,
                    mode: str = "multivariate") -> ForecastData:
    """Protocol splits, train-only scaler and windows for any (rows, C) array.

    Introduced in notebooks/07_timeseries_autoencoder, section 1 (used for ETT and for the
    synthetic series of the tests). In quick mode the windows are strided so that at most about
    1,500 train and 300 validation / test windows remain (the splits themselves do not change).
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    borders = split_borders(len(values), lookback, hours)
    scaler = Scaler.fit(values, borders["train"])  # TRAINING rows only
    series = torch.from_numpy(scaler.transform(values[: borders["test"][1]]).astype(np.float32))
    sets = {}
    for k, keep in (("train", 1500), ("val", 300), ("test", 300)):
        lo, hi = borders[k]
        stride = _smoke_stride(hi - lo - lookback - horizon + 1, keep) if smoke else 1
        sets[k] = _windows(series, borders[k], lookback, horizon, stride)
    cols = tuple(columns) if columns is not None else tuple(f"v{i}" for i in range(values.shape[1]))
    return ForecastData(name, mode, cols, borders, scaler, sets["train"], sets["val"], sets["test"],
                        dates, smoke)


def prepare_forecast_data(name: str = "ETTh1", lookback: int = 336, horizon: int = 96,
                          mode: str = "multivariate", root: str | Path | None = None,
                          smoke: bool | None = None, download: bool = True) -> ForecastData:
    """Load an ETT file and build the standard protocol's windows (module docstring).

    Introduced in notebooks/07_timeseries_autoencoder, section 1.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    smoke = smoke_mode() if smoke is None else smoke
    ett = load_ett(name, root, download)
    values, columns = ett.values, ett.columns
    if mode == "univariate":
        j = columns.index(TARGET)
        values, columns = values[:, j:j + 1], (TARGET,)
    return data_from_array(values, lookback, horizon, name=name, columns=columns, smoke=smoke,
                           dates=ett.dates, mode=mode)


def synthetic_series(n_rows: int = sum(SPLIT_HOURS), channels: int = 2, period: int = 24, noise: float = 0.3,
                     seed: int = 0) -> np.ndarray:
    """A seasonal test series: daily sine waves (per-channel phase), a slow trend, Gaussian noise.

    Introduced in notebooks/07_timeseries_autoencoder, section 6 (exercises) and used by the tests.
    """
    g = np.random.default_rng(seed)
    t = np.arange(n_rows)[:, None]
    phase = g.uniform(0, 2 * np.pi, size=(1, channels))
    season = np.sin(2 * np.pi * t / period + phase) + 0.5 * np.sin(4 * np.pi * t / period + 2 * phase)
    trend = 0.5 * np.sin(2 * np.pi * t / (24 * 200))
    return (season + trend + noise * g.standard_normal((n_rows, channels))).astype(np.float32)


# ============================================================================ simple baselines
def _per_channel(x: torch.Tensor) -> torch.Tensor:
    """(B, L, C) -> (B*C, L): each variable's past is one example (channel independence)."""
    return x.permute(0, 2, 1).reshape(-1, x.shape[1])


def _back(yhat: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
    """(B*C, H) -> (B, H, C)."""
    return yhat.reshape(batch, channels, -1).permute(0, 2, 1)


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


# ============================================================================ NoProp autoencoder
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


@dataclass
class ForecastConfig:
    """Sizes and training settings of the forecasting run (the CLI's and notebook 07's defaults).

    Introduced in notebooks/07_timeseries_autoencoder, section 2.
    """

    T: int = 10
    d: int = 64
    hidden: int = 64
    ae_hidden: int = 0  # 0: linear autoencoder (FutureAutoencoder docstring says why)
    eta: float = 0.1
    alpha_bar_max: float = 0.99
    kernel: int = 25
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    ae_epochs: int = 3
    epochs: int = 8
    baseline_epochs: int = 4
    samples: int = 40
    interval_stride: int = 1  # >1: chain samples on every k-th test window only (to save time)
    calibration_stride: int = 4  # interval widening factors from every 4th validation window
    seed: int = 0
    max_train_examples: int = 20000  # per epoch, (window, variable) pairs drawn at random


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
def _generator(device, seed: int) -> torch.Generator:
    """A generator seeded with ``seed`` on ``device`` (the rule of :mod:`nplib.devices`)."""
    return devices.make_generator(device, seed)


def _pairs(ws: WindowSet, n_max: int | None, g: torch.Generator):
    """A random epoch of (window, variable) pairs, at most ``n_max`` of them, on the device of ``ws``."""
    n = len(ws) * ws.channels
    order = devices.randperm(n, generator=g, device=ws.starts.device)
    return order[:n_max] if n_max else order


def pair_batch(ws: WindowSet, pair_idx: torch.Tensor):
    """x (B, L), y (B, H) of the given (window, variable) pairs, on the device of ``ws``.

    Introduced in notebooks/07_timeseries_autoencoder, section 2. Pair ``p`` is window ``p // C``,
    variable ``p % C`` (C variables): the channel-independent training examples.
    """
    pair_idx = pair_idx.to(ws.starts.device)
    w, c = pair_idx // ws.channels, pair_idx % ws.channels
    s = ws.starts[w]
    x = ws.series[s[:, None] + torch.arange(ws.lookback, device=s.device), c[:, None]]
    y = ws.series[s[:, None] + ws.lookback + torch.arange(ws.horizon, device=s.device), c[:, None]]
    return x, y


_batch = pair_batch


@torch.no_grad()
def predict_windows(predict, ws: WindowSet, batch: int = 512) -> torch.Tensor:
    """Point forecasts (N, H, C) of a channel-independent ``predict((n, L)) -> (n, H)``.

    Introduced in notebooks/07_timeseries_autoencoder, section 3 (with :func:`evaluate_point`, the
    test metric of the deterministic chain: ``evaluate_point(predict_windows(model.predict, ws), ws)``).
    """
    out = []
    for i in range(0, len(ws), batch):
        idx = torch.arange(i, min(i + batch, len(ws)), device=ws.starts.device)
        x = ws.x(idx)
        out.append(_back(predict(_per_channel(x)), x.shape[0], ws.channels))
    return torch.cat(out)


_predict_windows = predict_windows


def evaluate_point(y_hat: torch.Tensor, ws: WindowSet) -> dict:
    """MSE and MAE of forecasts (N, H, C) against the true futures, on the standardised scale.

    Introduced in notebooks/07_timeseries_autoencoder, section 4.
    """
    y = ws.y()
    if y_hat.shape != y.shape:
        raise ValueError(f"forecasts have shape {tuple(y_hat.shape)}, the futures {tuple(y.shape)}")
    return {"mse": float((y_hat - y).pow(2).mean()), "mae": float((y_hat - y).abs().mean())}


def _val_mse(predict, ws: WindowSet) -> float:
    return evaluate_point(_predict_windows(predict, ws), ws)["mse"]


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


def fit_backprop(data: ForecastData, cfg: ForecastConfig, log=print):
    """Train :class:`BackpropForecaster` end to end. Returns (model, info).

    Introduced in notebooks/07_timeseries_autoencoder, section 4. Trains on ``data.device``.
    """
    torch.manual_seed(cfg.seed)
    model = BackpropForecaster(data.lookback, data.horizon, cfg.T, cfg.d, cfg.hidden, cfg.ae_hidden,
                               cfg.kernel).to(data.device)
    info = _fit_supervised(model, data, cfg, cfg.baseline_epochs, lr=cfg.lr, log=log, name="backprop")
    return model, info


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


@torch.no_grad()
def _scaled(mean, lo, hi, k: float):
    # [mean - k (mean - q_lo), mean + k (q_hi - mean)]
    return mean - k * (mean - lo), mean + k * (hi - mean)


def evaluate_intervals(model: NoPropForecaster, ws: WindowSet, samples: int = 50, levels=(0.8, 0.95),
                       seed: int = 0, batch: int = 64, decoder_noise: bool = True, keep: int = 0,
                       scale: dict | None = None) -> dict:
    """Sample the stochastic chain ``samples`` times per window: point metrics of the sample mean and
    the coverage and width of central prediction intervals.

    Introduced in notebooks/07_timeseries_autoencoder, section 5. ``keep`` > 0 also returns the
    quantile bands of the first ``keep`` windows for plots (key ``bands``). ``scale`` maps a level
    (0.8, 0.95) to a factor k (from :func:`calibrate_interval_scale`): the coverage and width of the
    widened intervals ``[mean - k (mean - q_lo), mean + k (q_hi - mean)]`` are returned too.
    The samples are drawn on the device of ``ws`` (the model must be there too) from a generator
    seeded with ``seed``; the result depends on ``seed``, ``samples`` and ``batch``.
    """
    g = _generator(ws.device, seed)
    qs = sorted({q for lv in levels for q in ((1 - lv) / 2, (1 + lv) / 2)})
    qt = torch.tensor(qs, device=ws.device)
    C = ws.channels
    sq, ab = 0.0, 0.0
    cover = {lv: 0.0 for lv in levels}
    width = {lv: 0.0 for lv in levels}
    cover_k = {lv: 0.0 for lv in levels}
    width_k = {lv: 0.0 for lv in levels}
    n_el = 0
    kept = []
    for i in range(0, len(ws), batch):
        idx = torch.arange(i, min(i + batch, len(ws)), device=ws.device)
        x, y = ws.x(idx), ws.y(idx)
        B = x.shape[0]
        ys = model.forecast(_per_channel(x), noise=True, samples=samples, generator=g,
                            decoder_noise=decoder_noise)  # (S, B*C, H)
        ys = ys.reshape(samples, B, C, -1).permute(0, 1, 3, 2)  # (S, B, H, C)
        mean = ys.mean(0)
        sq += float((mean - y).pow(2).sum())
        ab += float((mean - y).abs().sum())
        qv = torch.quantile(ys, qt, dim=0)  # (Q, B, H, C)
        for lv in levels:
            lo, hi = qv[qs.index((1 - lv) / 2)], qv[qs.index((1 + lv) / 2)]
            cover[lv] += float(((y >= lo) & (y <= hi)).float().sum())
            width[lv] += float((hi - lo).sum())
            if scale:
                lo, hi = _scaled(mean, lo, hi, scale[lv])
                cover_k[lv] += float(((y >= lo) & (y <= hi)).float().sum())
                width_k[lv] += float((hi - lo).sum())
        n_el += y.numel()
        if keep and sum(k["mean"].shape[0] for k in kept) < keep:
            kept.append({"mean": mean, **{f"q{q:g}": qv[j] for j, q in enumerate(qs)}})
    out = {"mse": sq / n_el, "mae": ab / n_el, "samples": samples, "decoder_noise": decoder_noise,
           "coverage": {f"{round(100 * lv)}": cover[lv] / n_el for lv in levels},
           "width": {f"{round(100 * lv)}": width[lv] / n_el for lv in levels}}
    if scale:
        out["scale"] = {f"{round(100 * lv)}": scale[lv] for lv in levels}
        out["coverage_calibrated"] = {f"{round(100 * lv)}": cover_k[lv] / n_el for lv in levels}
        out["width_calibrated"] = {f"{round(100 * lv)}": width_k[lv] / n_el for lv in levels}
    if keep:
        out["bands"] = {k: torch.cat([d[k] for d in kept])[:keep] for k in kept[0]}
    return out


@torch.no_grad()
def calibrate_interval_scale(model: NoPropForecaster, ws: WindowSet, samples: int = 50, levels=(0.8, 0.95),
                             seed: int = 1) -> tuple[dict, dict]:
    """Split-conformal-style widening factors chosen on VALIDATION windows (never the test set).

    Introduced in notebooks/07_timeseries_autoencoder, section 5. For each level, the factor k
    such that ``[mean - k (mean - q_lo), mean + k (q_hi - mean)]`` covers that fraction of the
    validation futures (bisection; coverage grows with k). Returns ``({level: k}, raw validation
    result)``.
    """
    res = evaluate_intervals(model, ws, samples=samples, levels=levels, seed=seed, keep=len(ws))
    bd, y = res.pop("bands"), ws.y()
    scale = {}
    for lv in levels:
        lo, hi = bd[f"q{(1 - lv) / 2:g}"], bd[f"q{(1 + lv) / 2:g}"]
        k_lo, k_hi = 0.0, 1.0
        while k_hi < 64 and ((y >= _scaled(bd["mean"], lo, hi, k_hi)[0]) &
                             (y <= _scaled(bd["mean"], lo, hi, k_hi)[1])).float().mean() < lv:
            k_lo, k_hi = k_hi, 2 * k_hi
        for _ in range(30):
            k = (k_lo + k_hi) / 2
            a, b = _scaled(bd["mean"], lo, hi, k)
            if ((y >= a) & (y <= b)).float().mean() < lv:
                k_lo = k
            else:
                k_hi = k
        scale[lv] = k_hi
    return scale, res


def smoke_config(cfg: ForecastConfig | None = None) -> ForecastConfig:
    """The quick-mode version of ``cfg``: 1 epoch per stage, 2,000 pairs per epoch, at most 10 samples.

    Introduced in notebooks/07_timeseries_autoencoder, section 3. The sizes (and so the model's
    configuration) do not change.
    """
    cfg = cfg or ForecastConfig()
    return ForecastConfig(**{**asdict(cfg), "ae_epochs": 1, "epochs": 1, "baseline_epochs": 1,
                             "samples": min(cfg.samples, 10), "max_train_examples": 2000})


def run_experiment(name: str = "ETTh1", horizon: int = 96, lookback: int = 336, mode: str = "multivariate",
                   cfg: ForecastConfig | None = None, root=None, smoke: bool | None = None, log=print,
                   data: ForecastData | None = None, keep_bands: int = 0, trained: dict | None = None,
                   device: str | torch.device | None = None) -> dict:
    """Train the NoProp autoencoder and the baselines on one (dataset, horizon, lookback, mode).

    Introduced in notebooks/07_timeseries_autoencoder, section 4. Returns a dict with ``rows``
    (model, MSE, MAE, interval coverage and width) and the training details; ``models`` holds
    the trained models (not JSON-serialisable; :func:`jsonable_result` drops them).

    ``trained`` maps ``"noprop"``, ``"dlinear"`` or ``"backprop"`` to ``(model, info)`` of a model
    that is already trained (a shipped checkpoint, :mod:`nplib.pretrained`): it is evaluated, not
    trained again, and ``info`` (with its ``history``) is reported. Everything runs on ``device``
    (default: the device of ``data``, else the CPU); quick mode uses :func:`smoke_config`.
    """
    smoke = smoke_mode() if smoke is None else smoke
    cfg = cfg or ForecastConfig()
    if smoke:
        cfg = smoke_config(cfg)
    trained = dict(trained or {})
    unknown = set(trained) - {"noprop", "dlinear", "backprop"}
    if unknown:
        raise ValueError(f"trained= takes 'noprop', 'dlinear', 'backprop'; got {sorted(unknown)}")
    t_start = time.perf_counter()
    if data is None:
        data = prepare_forecast_data(name, lookback, horizon, mode, root, smoke)
    if device is not None:
        data = data.to(device)
    log(data.summary())
    rows, timing = [], {}

    def add(model_name, metrics, **extra):
        rows.append({"model": model_name, "mse": metrics["mse"], "mae": metrics["mae"], **extra})

    test_x = data.test.x()
    add("naive (last value)", evaluate_point(naive_forecast(test_x, data.horizon), data.test))
    if data.lookback >= 24:
        add("seasonal naive (24 h)", evaluate_point(seasonal_naive_forecast(test_x, data.horizon, 24), data.test))
    def fit_or_take(key, fit):
        t0 = time.perf_counter()
        if key in trained:
            model, info = trained[key]
            model.to(data.device).eval()
        else:
            model, info = fit(data, cfg, log)
        timing[key if key != "noprop" else "noprop_train"] = time.perf_counter() - t0
        return model, info

    dl, dl_info = fit_or_take("dlinear", fit_dlinear)
    add("DLinear-style", evaluate_point(_predict_windows(dl, data.test), data.test))
    bp, bp_info = fit_or_take("backprop", fit_backprop)
    add("same network, backprop end to end", evaluate_point(_predict_windows(bp.predict, data.test), data.test))
    npm, np_info = fit_or_take("noprop", fit_noprop)
    add("NoProp AE, deterministic chain", evaluate_point(_predict_windows(npm.predict, data.test), data.test))
    t0 = time.perf_counter()
    val_sub = WindowSet(data.val.series, data.val.starts[::max(1, cfg.calibration_stride)], data.lookback,
                        data.horizon)
    scale, val_iv = calibrate_interval_scale(npm, val_sub, samples=cfg.samples, seed=cfg.seed + 1)
    stride = max(1, cfg.interval_stride)
    sub = WindowSet(data.test.series, data.test.starts[::stride], data.lookback, data.horizon)
    iv = evaluate_intervals(npm, sub, samples=cfg.samples, seed=cfg.seed, keep=keep_bands, scale=scale)
    timing["noprop_sampling"] = time.perf_counter() - t0
    where = f", every {stride}th window" if stride > 1 else ""
    add(f"NoProp AE, mean of {cfg.samples} samples{where}", iv, coverage=iv["coverage"], width=iv["width"],
        windows=len(sub))
    add("  same, intervals widened on validation", iv, coverage=iv["coverage_calibrated"],
        width=iv["width_calibrated"], scale=iv["scale"], validation_coverage_raw=val_iv["coverage"],
        calibration_windows=len(val_sub))
    timing["total"] = time.perf_counter() - t_start
    n_params = {"noprop": sum(p.numel() for p in npm.parameters()),
                "noprop_per_block": sum(p.numel() for p in npm.blocks[0].parameters()),
                "backprop": sum(p.numel() for p in bp.parameters()),
                "dlinear": sum(p.numel() for p in dl.parameters())}
    out = {"dataset": data.name, "mode": data.mode, "lookback": data.lookback, "horizon": data.horizon,
           "smoke": data.smoke, "rows": rows, "config": asdict(cfg), "parameters": n_params,
           "windows": {k: len(getattr(data, k)) for k in ("train", "val", "test")},
           "variables": list(data.columns), "seconds": timing, "pretrained": sorted(trained),
           "training": {"dlinear": dl_info, "backprop": bp_info, "noprop": np_info},
           "models": {"noprop": npm, "dlinear": dl, "backprop": bp}, "data": data}
    if keep_bands:
        out["bands"] = iv["bands"]  # (windows, H, C) each; test window j * stride for row j
        out["bands_test_index"] = torch.arange(0, len(data.test), stride)[: iv["bands"]["mean"].shape[0]]
        out["bands"] = {k: v.cpu() for k, v in out["bands"].items()}  # for plots
    return out


# ============================================================================ shipped checkpoints
def checkpoint_fields(result: dict, eval_seeds=(0, 1, 2, 3, 4), log=print) -> dict:
    """The manifest fields of the NoProp model of a :func:`run_experiment` result (for :func:`nplib.pretrained.save`).

    Introduced in notebooks/07_timeseries_autoencoder, section 3 (``python -m nplib forecast
    --save-checkpoint NAME`` calls it). ``build`` holds the data and :class:`ForecastConfig` that rebuild
    the model (:func:`load_pretrained`); ``test_metric`` the test metrics the checkpoint reproduces:
    the deterministic chain's MSE / MAE (exactly), and the mean-of-samples forecast's MSE / MAE with
    ``cfg.samples`` samples and generator seed ``cfg.seed`` (exactly, with the same seed and batch),
    plus the mean and standard error over ``eval_seeds``.
    """
    if result.get("smoke"):
        raise ValueError("this is a quick-mode result; ship only full runs")
    npm, data, cfg = result["models"]["noprop"], result["data"], ForecastConfig(**result["config"])
    det = [r for r in result["rows"] if r["model"] == "NoProp AE, deterministic chain"][0]
    sto = [r for r in result["rows"] if r["model"].startswith("NoProp AE, mean of")][0]
    if sto.get("windows") != len(data.test):
        raise ValueError("the stochastic metric was measured on a subset of the test windows (interval_stride > 1)")
    runs = []
    for seed in eval_seeds:
        if seed == cfg.seed:
            runs.append({"seed": seed, "mse": sto["mse"], "mae": sto["mae"]})
            continue
        iv = evaluate_intervals(npm, data.test, samples=cfg.samples, seed=seed)
        runs.append({"seed": seed, "mse": iv["mse"], "mae": iv["mae"]})
        log(f"  stochastic test MSE with seed {seed}: {iv['mse']:.5f}")
    mses = np.array([r["mse"] for r in runs])
    se = float(mses.std(ddof=1) / math.sqrt(len(mses))) if len(mses) > 1 else float("nan")
    data_txt = (f"{data.name} {data.mode} test set, lookback {data.lookback}, horizon {data.horizon}: "
                f"{len(data.test)} windows x {data.test.channels} variables, standardised with the training rows")
    return {
        "build": {"kind": "forecaster", "model": "NoPropForecaster", "dataset": data.name, "mode": data.mode,
                  "lookback": data.lookback, "horizon": data.horizon, "forecast_config": asdict(cfg)},
        "train_seconds": result["seconds"]["noprop_train"],
        "epochs": cfg.epochs, "ae_epochs": cfg.ae_epochs,
        "history": result["training"]["noprop"]["history"],
        "best_val_mse": result["training"]["noprop"]["best_val_mse"],
        "reconstruction_mse_train": result["training"]["noprop"]["reconstruction_mse_train"],
        "metric": {"test_mse_deterministic": det["mse"], f"test_mse_mean_of_{cfg.samples}": sto["mse"]},
        "test_metric": {
            "data": data_txt,
            "deterministic": {"mse": det["mse"], "mae": det["mae"],
                              "how": "evaluate_point(predict_windows(model.predict, data.test), data.test)"},
            "stochastic": {"mse": sto["mse"], "mae": sto["mae"], "samples": cfg.samples, "seed": cfg.seed,
                           "batch": 64, "decoder_noise": True,
                           "how": f"evaluate_intervals(model, data.test, samples={cfg.samples}, seed={cfg.seed})",
                           "runs": runs, "mse_mean": float(mses.mean()), "mse_se": se,
                           "mae_mean": float(np.mean([r["mae"] for r in runs]))},
        },
        "run_rows": result["rows"],
    }


def load_pretrained(name: str = "nb07_forecaster", device: str | torch.device | None = None):
    """The shipped forecaster ``name``, rebuilt from its manifest and loaded; returns ``(model, manifest)``.

    Introduced in notebooks/07_timeseries_autoencoder, section 3. The data it was trained on is
    ``prepare_forecast_data(b["dataset"], b["lookback"], b["horizon"], b["mode"])`` with
    ``b = manifest["build"]``. A missing, corrupted or mismatched file raises
    :class:`nplib.pretrained.CheckpointError`.
    """
    from . import pretrained

    m = pretrained.manifest(name)
    b = m.get("build") or {}
    if b.get("kind") != "forecaster":
        raise pretrained.CheckpointError(f"checkpoint {name!r} is not a forecaster (build kind {b.get('kind')!r})")
    model = NoPropForecaster.from_config(b["lookback"], b["horizon"], ForecastConfig(**b["forecast_config"]))
    m = pretrained.load(name, model, device)
    return model, m


def jsonable_result(result: dict) -> dict:
    """A :func:`run_experiment` result without models, data and tensors (what goes into JSON)."""
    return {k: v for k, v in result.items() if k not in ("models", "data", "bands", "bands_test_index")}


def format_table(result: dict) -> str:
    """The table the ``forecast`` command prints: model, MSE, MAE, 80 % / 95 % coverage and width.

    Introduced in notebooks/07_timeseries_autoencoder, section 4.
    """
    head = (f"{result['dataset']} {result['mode']}, lookback {result['lookback']}, horizon {result['horizon']}"
            f"{' (quick mode)' if result.get('smoke') else ''}")
    lines = [head, f"{'model':42s} {'MSE':>7s} {'MAE':>7s} {'cov80':>6s} {'cov95':>6s} {'w80':>6s} {'w95':>6s}"]
    for r in result["rows"]:
        cov, wid = r.get("coverage"), r.get("width")
        tail = (f" {100 * cov['80']:5.1f}% {100 * cov['95']:5.1f}% {wid['80']:6.3f} {wid['95']:6.3f}" if cov
                else f" {'-':>6s} {'-':>6s} {'-':>6s} {'-':>6s}")
        lines.append(f"{r['model']:42s} {r['mse']:7.4f} {r['mae']:7.4f}" + tail)
    return "\n".join(lines)


# ============================================================================ figures
def plot_protocol(ett: ETTSeries, lookback: int = 336, columns=("HUFL", "OT"), ax=None):
    """The series with the train / validation / test parts shaded (the lookback overlap hatched).

    Introduced in notebooks/07_timeseries_autoencoder, section 1.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.2))
    b = split_borders(len(ett), lookback)
    for c in columns:
        ax.plot(ett.dates, ett.values[:, ett.columns.index(c)], lw=0.4, label=c)
    colours = {"train": "tab:green", "val": "tab:orange", "test": "tab:red"}
    ends = {"train": b["train"][1], "val": b["val"][1], "test": b["test"][1]}
    starts = {"train": 0, "val": b["train"][1], "test": b["val"][1]}
    for k in ("train", "val", "test"):
        ax.axvspan(ett.dates[starts[k]], ett.dates[ends[k] - 1], color=colours[k], alpha=0.12,
                   label=f"{k}: {ends[k] - starts[k]} h")
        if k != "train":
            ax.axvspan(ett.dates[b[k][0]], ett.dates[starts[k]], fill=False, hatch="///", lw=0,
                       edgecolor=colours[k])
    ax.axvspan(ett.dates[b["test"][1]], ett.dates[-1], color="grey", alpha=0.1, label="unused")
    ax.set_ylabel("raw value")
    ax.legend(ncol=6, fontsize=8, loc="upper right")
    return ax


def plot_forecast_bands(x: torch.Tensor, y: torch.Tensor, bands: dict, others: dict | None = None,
                        ax=None, title: str = "", ylabel: str = "value (standardised)"):
    """One window: past, true future, NoProp mean with 80 % / 95 % bands, other forecasts.

    Introduced in notebooks/07_timeseries_autoencoder, section 5. ``x`` (L,), ``y`` (H,); ``bands``
    maps 'mean', 'q0.025', 'q0.1', 'q0.9', 'q0.975' to (H,) tensors. NoProp is drawn in blue, the
    other forecasts in orange, green, red, ... (never blue), so each line has its own colour.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3))
    def np_(v):  # tensors on any device -> numpy
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    L, H = x.shape[0], y.shape[0]
    tp, tf = np.arange(-L, 0), np.arange(H)
    ax.plot(tp, np_(x), color="k", lw=0.8, label="past")
    ax.plot(tf, np_(y), color="k", lw=1.2, ls="--", label="true future")
    ax.fill_between(tf, np_(bands["q0.025"]), np_(bands["q0.975"]), color="tab:blue", alpha=0.18,
                    label="NoProp 95 %")
    ax.fill_between(tf, np_(bands["q0.1"]), np_(bands["q0.9"]), color="tab:blue", alpha=0.3,
                    label="NoProp 80 %")
    ax.plot(tf, np_(bands["mean"]), color="tab:blue", lw=1.2, label="NoProp mean")
    other_colors = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    for (name, v), c in zip((others or {}).items(), other_colors * 4):
        ax.plot(tf, np_(v), lw=1.0, color=c, label=name)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("hours from the forecast origin")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return ax
