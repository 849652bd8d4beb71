"""The backprop baseline's classifier initialisation, over seeds: ``python -m nplib init-probe``.

Introduced in notebooks/04_noprop_dt_mnist, section 5.

The paper leaves the initialisation of the baseline's classifier open. With PyTorch's default
initialisation the end-to-end chain can put two classes on one coordinate of z_T, and training
stalls; :class:`nplib.models.BackpropBaseline` starts the classifier as a scaled read-out of the
class embeddings instead (``classifier_scale=5``). One epoch of one seed is not enough to compare
the two: the default's accuracy after one epoch swings by tens of points from seed to seed (and from
CPU to CPU for the same seed), so this probe trains both for one epoch on the same subset for
several seeds and ships every run (``nplib/results/baseline_init_probe.json``). The notebook plots
the shipped runs instead of training four baselines in the middle of the lesson.
"""
from __future__ import annotations

import datetime
import statistics

from nplib.data import load_train_test
from nplib.models import BackpropBaseline
from nplib.train import fit, hardware_info, set_seed

__all__ = ["INITS", "run_init_probe", "COMMANDS"]

#: label -> classifier_scale of BackpropBaseline (None: PyTorch's default initialisation)
INITS = {"PyTorch default": None, "embedding read-out, s = 5": 5.0}


def run_init_probe(seeds=(0, 1, 2, 3, 4), train_size: int = 20_000, test_size: int = 2_000, T: int = 10,
                   block: str = "small", dataset: str = "mnist", device="cpu", progress: bool = True) -> dict:
    """One epoch of the backprop baseline per (initialisation, seed); test accuracy of each run."""
    if not seeds or train_size < 1 or test_size < 1:
        raise ValueError(f"need at least one seed and positive sizes, got {seeds}, {train_size}, {test_size}")
    train, test = load_train_test(dataset)
    probe_train, probe_test = train.subset(train_size, seed=3), test.subset(test_size, seed=4)
    runs = {label: [] for label in INITS}
    for seed in seeds:
        for label, scale in INITS.items():
            set_seed(seed)
            model = BackpropBaseline(train.image_shape, train.num_classes, T=T, block=block, classifier_scale=scale)
            h = fit(model, probe_train, probe_test, epochs=1, seed=seed, train_eval_size=1000, progress=progress,
                    log=None, device=device)
            runs[label].append(h[-1]["test_acc"])
            if progress:
                print(f"seed {seed}, {label}: {100 * h[-1]['test_acc']:.2f} %")
    summary = {label: {"mean": statistics.mean(a), "min": min(a), "max": max(a),
                       "se": statistics.stdev(a) / len(a) ** 0.5 if len(a) > 1 else 0.0} for label, a in runs.items()}
    return {"config": {"dataset": dataset, "T": T, "block": block, "epochs": 1, "train_size": len(probe_train),
                       "test_size": len(probe_test), "seeds": list(seeds)},
            "runs": runs, "summary": summary}


def _cmd(args) -> int:
    from nplib.reference import write_result

    seeds = tuple(range(args.seeds))
    result = run_init_probe(seeds=seeds, device=args.device)
    out = {"command": f"python -m nplib init-probe --seeds {args.seeds}",
           "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "hardware": hardware_info(), **result}
    for label, s in result["summary"].items():
        print(f"{label:>26}: mean {100 * s['mean']:.2f} ± {100 * s['se']:.2f} %, "
              f"range {100 * s['min']:.2f}-{100 * s['max']:.2f} % over {len(seeds)} seeds")
    write_result(args.out, out)
    return 0


def add_parser(subparsers):
    p = subparsers.add_parser("init-probe", help="the backprop baseline's classifier initialisation over seeds "
                                                 "(1 epoch each; notebook 04, section 5)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/baseline_init_probe.json")
    p.set_defaults(func=_cmd)


COMMANDS = {"init-probe": add_parser}
