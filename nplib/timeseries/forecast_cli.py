"""``python -m nplib forecast``: NoProp autoencoder and baselines on ETTh1 / ETTh2.

Introduced in notebooks/07_timeseries_autoencoder, section 4. Examples::

    python -m nplib forecast --dataset ETTh1 --horizon 96
    python -m nplib forecast --dataset ETTh1 --horizon 720 --lookback 96 --mode univariate --out runs/f.json

Trains the NoProp autoencoder (:mod:`nplib.timeseries.forecaster`) and the baselines (naive, seasonal naive,
DLinear-style, the same network trained end to end with backprop) on the same windows, prints one
table (model, MSE, MAE, 80 % / 95 % interval coverage and width on the standardised test set) and
writes it, with the configuration, the hardware and the timings, as JSON (default
``runs/forecast_<dataset>_<mode>_L<lookback>_H<horizon>.json``). ``--horizon all`` and
``--mode all`` run every combination into one JSON file. Quick mode (``NPLIB_SMOKE=1``): strided
window subsets, 1 epoch, 10 chain samples.

``--save-checkpoint NAME`` also ships the trained NoProp model as ``nplib/checkpoints/NAME.pt`` with
its manifest (:func:`nplib.pretrained.save`, fields from :func:`nplib.timeseries.forecast_experiment.checkpoint_fields`:
the command, hardware, history, and the test metrics it reproduces). Notebook 07's checkpoint was
made by::

    python -m nplib forecast --dataset ETTh1 --horizon 96 --lookback 336 --mode multivariate \
        --threads 2 --device cpu --save-checkpoint nb07_forecaster --out runs/pre/nb07_forecaster_run.json
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

__all__ = ["COMMANDS", "add_parser", "run"]


def run(args) -> int:
    import torch

    from nplib.timeseries.ett import HORIZONS, MODES
    from nplib.timeseries.forecast_experiment import checkpoint_fields, format_table, jsonable_result, run_experiment
    from nplib.timeseries.forecaster import ForecastConfig
    from nplib.train import hardware_info

    if args.threads:
        torch.set_num_threads(args.threads)
    horizons = list(HORIZONS) if args.horizon == "all" else [int(args.horizon)]
    modes = list(MODES) if args.mode == "all" else [args.mode]
    if args.save_checkpoint and len(horizons) * len(modes) != 1:
        raise ValueError("--save-checkpoint ships one model: give one --horizon and one --mode")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    base = ForecastConfig()
    cfg = ForecastConfig(**{f.name: getattr(args, f.name) if getattr(args, f.name, None) is not None
                            else getattr(base, f.name) for f in fields(ForecastConfig)})
    t0 = time.perf_counter()
    results = []
    for mode in modes:
        for h in horizons:
            r = run_experiment(args.dataset, h, args.lookback, mode, cfg,
                               log=(lambda s: None) if args.quiet else print, device=device)
            print(format_table(r))
            print(f"({r['seconds']['total']:.0f} s)\n")
            results.append(jsonable_result(r))
            last = r
    wall = time.perf_counter() - t0
    command = " ".join(["python -m nplib"] + sys.argv[1:]) if sys.argv and sys.argv[0] else "forecast"
    hardware = {**hardware_info(), "device": str(device)}
    if hasattr(os, "getloadavg"):  # a shared machine slows every timing down: say how busy it was
        hardware["load_average_1_5_15_min"] = [round(v, 2) for v in os.getloadavg()]
    out = {"command": command, "config": asdict(cfg), "hardware": hardware, "wall_seconds": wall,
           "results": results}
    if args.save_checkpoint:
        from nplib import pretrained

        entry = pretrained.save(args.save_checkpoint, last["models"]["noprop"], args.checkpoint_dir,
                                command=command, hardware=hardware, **checkpoint_fields(last))
        st = entry["test_metric"]["stochastic"]
        print(f"wrote checkpoint {entry['file']} ({entry['bytes'] / 1e6:.2f} MB) and {args.save_checkpoint}.json: "
              f"test MSE {entry['test_metric']['deterministic']['mse']:.4f} (deterministic chain), "
              f"{st['mse']:.4f} (mean of {st['samples']} samples, seed {st['seed']}; "
              f"{st['mse_mean']:.4f} +- {st['mse_se']:.4f} over seeds {[r['seed'] for r in st['runs']]})")
        out["checkpoint"] = {k: entry[k] for k in ("name", "file", "bytes", "sha256")}
    path = Path(args.out or f"runs/forecast_{args.dataset}_{args.mode}_L{args.lookback}_H{args.horizon}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"total wall time {wall / 60:.1f} min; wrote {path}")
    # what the numbers above are: the chain's first block alone forecasts as well as the whole chain
    print("note: one block does this forecasting, not the chain (block 1 alone, z_0 = 0, matches the chain's "
          "MSE): python -m nplib ablation --checkpoint nb07_forecaster; notebook 08, section 5")
    return 0


def add_parser(subparsers) -> None:
    """Add the ``forecast`` subcommand (called by :func:`nplib.cli.main`)."""
    p = subparsers.add_parser("forecast", help="time-series forecasting with a NoProp autoencoder (ETT)")
    p.add_argument("--dataset", default="ETTh1", help="an ETT-layout CSV under <data root>/ETT/ (ETTh1, ETTh2)")
    p.add_argument("--horizon", default="96", choices=["96", "192", "336", "720", "all"])
    p.add_argument("--lookback", type=int, default=336, choices=[96, 336])
    p.add_argument("--mode", default="multivariate", choices=["multivariate", "univariate", "all"])
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--T", type=int, default=None, help="number of NoProp blocks (default 10)")
    p.add_argument("--d", type=int, default=None, help="latent dimension of the autoencoder (default 64)")
    p.add_argument("--epochs", type=int, default=None, help="NoProp block-training epochs")
    p.add_argument("--ae-epochs", dest="ae_epochs", type=int, default=None, help="autoencoder epochs")
    p.add_argument("--baseline-epochs", dest="baseline_epochs", type=int, default=None)
    p.add_argument("--samples", type=int, default=None, help="chain samples per window for the intervals")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--save-checkpoint", dest="save_checkpoint", default=None, metavar="NAME",
                   help="also ship the NoProp model as a checkpoint NAME.pt + NAME.json (one horizon and mode)")
    p.add_argument("--checkpoint-dir", dest="checkpoint_dir", default=None,
                   help="folder for --save-checkpoint (default: the package's nplib/checkpoints/)")
    p.set_defaults(func=run)


COMMANDS = {"forecast": add_parser}
