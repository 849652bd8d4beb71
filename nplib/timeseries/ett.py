r"""The ETT data protocol (ETTh1 / ETTh2): loading, splits, scaling, windows, and the point metric.

Introduced in notebooks/07_timeseries_autoencoder, section 1. One of the time-series modules
(:mod:`nplib.timeseries` says where each part lives); it imports none of the others.

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

What every model of notebook 07 shares lives here too: the channel-independent training examples
(:func:`pair_batch`: pair ``p`` is window ``p // C``, variable ``p % C``), point forecasts of a
whole window set (:func:`predict_windows`), the point metric (:func:`evaluate_point`) and the
figure of the split (:func:`plot_protocol`).
"""
from __future__ import annotations

import csv
import os
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from nplib import devices
from nplib.data import DatasetNotFoundError, data_root, file_digest, smoke_mode

__all__ = [
    "ETT_URL", "ETT_MD5", "ETT_COLUMNS", "SPLIT_HOURS", "HORIZONS", "LOOKBACKS", "MODES", "ETTSeries",
    "md5sum", "ett_path", "load_ett", "split_borders", "Scaler", "WindowSet", "ForecastData",
    "prepare_forecast_data", "synthetic_series", "data_from_array", "pair_batch", "predict_windows",
    "evaluate_point", "ForecastConfig", "smoke_config",
]

ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{name}.csv"
ETT_MD5 = {"ETTh1": "8381763947c85f4be6ac456c508460d6", "ETTh2": "51a229a3fc13579dd939364fefe9c7ab"}
ETT_COLUMNS = ("date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
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
        the device of the data (:func:`~nplib.timeseries.forecaster.fit_noprop`,
        :func:`~nplib.timeseries.forecast_intervals.evaluate_intervals`...).
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


# ============================================================================ examples, point metric
def _per_channel(x: torch.Tensor) -> torch.Tensor:
    """(B, L, C) -> (B*C, L): each variable's past is one example (channel independence)."""
    return x.permute(0, 2, 1).reshape(-1, x.shape[1])


def _back(yhat: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
    """(B*C, H) -> (B, H, C)."""
    return yhat.reshape(batch, channels, -1).permute(0, 2, 1)


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


def smoke_config(cfg: ForecastConfig | None = None) -> ForecastConfig:
    """The quick-mode version of ``cfg``: 1 epoch per stage, 2,000 pairs per epoch, at most 10 samples.

    Introduced in notebooks/07_timeseries_autoencoder, section 3. The sizes (and so the model's
    configuration) do not change.
    """
    cfg = cfg or ForecastConfig()
    return ForecastConfig(**{**asdict(cfg), "ae_epochs": 1, "epochs": 1, "baseline_epochs": 1,
                             "samples": min(cfg.samples, 10), "max_train_examples": 2000})
