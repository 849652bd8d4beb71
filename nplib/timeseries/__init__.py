r"""Time-series forecasting with a NoProp autoencoder (ETTh1 / ETTh2): where each part lives.

Introduced in notebooks/07_timeseries_autoencoder; the command line is ``python -m nplib forecast``
(:mod:`nplib.timeseries.forecast_cli`).

The code is in five flat modules, each readable on its own; a module imports only the ones above
it in this list (``ett`` <- ``forecast_baselines`` <- ``forecaster``; ``ett`` <-
``forecast_intervals``; all of them <- ``forecast_experiment``):

* :mod:`nplib.timeseries.ett` - the ETT data protocol (notebook 07, section 1): download and md5 check
  (:func:`ett_path`, :func:`load_ett`), the 12 / 4 / 4-month splits (:func:`split_borders`), the
  scaler fitted on training rows (:class:`Scaler`), sliding windows (:class:`WindowSet`,
  :class:`ForecastData`, :func:`prepare_forecast_data`, :func:`data_from_array`,
  :func:`synthetic_series`), the channel-independent examples (:func:`pair_batch`), point
  forecasts of a window set and the point metric (:func:`predict_windows`,
  :func:`evaluate_point`), and :func:`plot_protocol`;
* :mod:`nplib.timeseries.forecast_baselines` - naive, seasonal naive and DLinear-style (section 4):
  :func:`naive_forecast`, :func:`seasonal_naive_forecast`, :func:`moving_average`,
  :class:`DLinear`, :func:`fit_dlinear`, and the supervised training loop (``_fit_supervised``)
  that the backprop baseline shares;
* :mod:`nplib.timeseries.forecaster` - the NoProp forecaster and its training (sections 2 and 3):
  :class:`FutureAutoencoder`, :class:`TemporalEncoder`, :class:`ForecastBlock`,
  :class:`ForecastConfig`, :func:`smoke_config`, :class:`NoPropForecaster`,
  :func:`noprop_training_step`, :func:`fit_noprop`; and the same blocks trained end to end,
  :class:`BackpropForecaster`, :func:`fit_backprop` (the backprop baseline of section 4);
* :mod:`nplib.timeseries.forecast_intervals` - prediction intervals (section 5): :func:`evaluate_intervals`
  (coverage and width of sampled quantile intervals), :func:`calibrate_interval_scale` (widening
  factors chosen on validation windows) and :func:`plot_forecast_bands`;
* :mod:`nplib.timeseries.forecast_experiment` - the experiment (section 4): :func:`run_experiment`,
  :func:`format_table`, :func:`jsonable_result`, and the shipped forecaster
  (:func:`checkpoint_fields`, :func:`load_pretrained`).

Each module's docstring carries the part of the method it implements (protocol, model and
collapse guard, intervals, baselines). This module re-exports every name it held before the split
(public and private, the constants and the modules it imported), so ``from nplib.timeseries import
X`` and ``nplib.timeseries.X`` keep working. Code inside nplib calls a function through the module
that defines or imports it, not through this one: to replace or spy on a function for such a call,
patch it there (e.g. ``nplib.timeseries.forecast_experiment.calibrate_interval_scale`` for
:func:`run_experiment`).
"""
from __future__ import annotations

# The modules and names this module imported before the split, kept importable from it
# (``nplib.timeseries.urllib``, ``nplib.timeseries.torch``...).
import copy  # noqa: F401
import csv  # noqa: F401
import math  # noqa: F401
import os  # noqa: F401
import time  # noqa: F401
import urllib.request  # noqa: F401
from dataclasses import asdict, dataclass, field  # noqa: F401
from pathlib import Path  # noqa: F401

import numpy as np  # noqa: F401
import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401
from torch import nn  # noqa: F401

from nplib import devices  # noqa: F401
from nplib.data import DatasetNotFoundError, data_root, file_digest, smoke_mode  # noqa: F401
from nplib.diffusion import posterior_step, q_sample  # noqa: F401
from nplib.schedules import DTSchedule, make_schedule  # noqa: F401

# Everything that was defined here, from its new home.
from nplib.timeseries.ett import (  # noqa: F401
    ETT_COLUMNS, ETT_MD5, ETT_URL, HORIZONS, LOOKBACKS, MODES, SPLIT_HOURS, TARGET, ETTSeries, ForecastData, Scaler,
    WindowSet, _back, _batch, _check_md5, _generator, _pairs, _per_channel, _predict_windows, _smoke_stride,
    _val_mse, _windows, data_from_array, ett_path, evaluate_point, load_ett, md5sum, pair_batch, plot_protocol,
    predict_windows, prepare_forecast_data, split_borders, synthetic_series,
)
from nplib.timeseries.forecast_baselines import (  # noqa: F401
    DLinear, _fit_supervised, fit_dlinear, moving_average, naive_forecast, seasonal_naive_forecast,
)
from nplib.timeseries.forecast_intervals import _scaled, calibrate_interval_scale, evaluate_intervals, plot_forecast_bands  # noqa: F401
from nplib.timeseries.forecaster import (  # noqa: F401
    BackpropForecaster, ForecastBlock, ForecastConfig, FutureAutoencoder, NoPropForecaster, TemporalEncoder,
    fit_backprop, fit_noprop, noprop_training_step, smoke_config,
)
from nplib.timeseries.forecast_experiment import (  # noqa: F401
    checkpoint_fields, format_table, jsonable_result, load_pretrained, run_experiment,
)

__all__ = [
    "ETT_URL", "ETT_MD5", "ETT_COLUMNS", "SPLIT_HOURS", "HORIZONS", "LOOKBACKS", "MODES", "ETTSeries",
    "md5sum", "ett_path", "load_ett", "split_borders", "Scaler", "WindowSet", "ForecastData",
    "prepare_forecast_data", "synthetic_series", "data_from_array", "moving_average", "DLinear",
    "FutureAutoencoder", "ForecastBlock", "NoPropForecaster", "BackpropForecaster", "ForecastConfig", "smoke_config",
    "naive_forecast", "seasonal_naive_forecast", "fit_dlinear", "fit_backprop", "fit_noprop",
    "pair_batch", "predict_windows", "evaluate_point", "evaluate_intervals", "calibrate_interval_scale",
    "run_experiment", "format_table", "jsonable_result", "checkpoint_fields", "load_pretrained",
]
