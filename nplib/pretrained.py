"""Pretrained checkpoints shipped with the course: load by default, retrain on request.

Introduced in notebooks/04_noprop_dt_mnist, section 2 (and used by notebooks 05 and 07).

The long trainings of the course (notebook 04's NoProp-DT and backprop baseline, notebook 05's
NoProp-CT and NoProp-FM, notebook 07's forecaster) ship as small checkpoints inside the package,
in ``nplib/checkpoints/``. Each checkpoint ``NAME.pt`` (the model's ``state_dict`` in float32,
nothing else) has a manifest ``NAME.json`` beside it with

* ``sha256`` and ``bytes`` of the ``.pt`` file,
* ``config``: the model's own ``config()``, checked against the model it is loaded into,
* ``build``: the arguments that rebuild the model (:func:`build`),
* ``command`` and ``hardware``: how and where it was trained, ``train_seconds``,
* ``history``: the per-epoch table of the training run (so a notebook can plot it),
* the metric it reproduces, for a classifier ``test_accuracy`` (``mean``, ``se`` over ``runs``
  stochastic inference runs seeded from ``eval_seed``, and ``noise_free``), as
  :func:`nplib.train.evaluate_runs` returned it right after training.

A test (``tests/test_pretrained.py``) loads every checkpoint and reproduces its recorded accuracy:
noise-free exactly, the stochastic mean within the recorded standard error.

**The switch.** A notebook calls :func:`load_or_train`. It loads the checkpoint, unless
``NPLIB_RETRAIN`` is set: ``NPLIB_RETRAIN=1`` (or ``all``) retrains every model, a comma-separated
list of names (``NPLIB_RETRAIN=nb04_dt,nb05_ct``) retrains those. In quick mode
(``NPLIB_SMOKE=1``) the model is always trained, on the quick-mode data, so the training code runs.
A missing, corrupted or mismatched checkpoint raises :class:`CheckpointError` naming the file:
nothing silently trains instead.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

__all__ = ["CHECKPOINT_DIR", "RETRAIN_ENV", "CheckpointError", "names", "manifest", "checkpoint_path",
           "sha256", "verify", "load", "build", "retrain_requested", "load_or_train", "save", "export_cli_run",
           "COMMANDS"]

#: The folder of the shipped checkpoints and their manifests.
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
#: The environment variable that asks for retraining instead of loading.
RETRAIN_ENV = "NPLIB_RETRAIN"


class CheckpointError(ValueError):
    """A shipped checkpoint is missing, corrupted, or belongs to another configuration."""


def names() -> list[str]:
    """The names of the shipped checkpoints (those with a manifest), sorted."""
    return sorted(p.stem for p in CHECKPOINT_DIR.glob("*.json"))


def manifest(name: str) -> dict:
    """The manifest of checkpoint ``name``."""
    path = CHECKPOINT_DIR / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint named {name!r}: {path} does not exist "
                              f"(shipped: {', '.join(names()) or 'none'})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"the manifest {path} is not valid JSON ({err}); reinstall nplib") from None


def checkpoint_path(name: str) -> Path:
    """The ``.pt`` file of checkpoint ``name`` (it may not exist: :func:`verify` checks)."""
    return CHECKPOINT_DIR / manifest(name)["file"]


def sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file."""
    from nplib.data import file_digest

    return file_digest(path, "sha256")


def verify(name: str) -> dict:
    """Check that checkpoint ``name`` exists and has the recorded size and SHA-256; return its manifest."""
    m = manifest(name)
    path = CHECKPOINT_DIR / m["file"]
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing (its manifest is {name}.json); reinstall nplib, "
                              f"or retrain with {RETRAIN_ENV}={name}")
    digest = sha256(path)
    if digest != m["sha256"]:
        raise CheckpointError(f"checkpoint file {path} is corrupted or was replaced: its SHA-256 is {digest}, "
                              f"the manifest records {m['sha256']}. Reinstall nplib, or retrain with "
                              f"{RETRAIN_ENV}={name}")
    return m


def _config_diff(a: dict, b: dict) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k}: checkpoint {a.get(k, '<absent>')!r}, model {b.get(k, '<absent>')!r}"
            for k in keys if a.get(k) != b.get(k)]


def load(name: str, model: torch.nn.Module, device: str | torch.device | None = None) -> dict:
    """Load checkpoint ``name`` into ``model`` after checking its hash and configuration; return the manifest.

    Introduced in notebooks/04_noprop_dt_mnist, section 2. ``model.config()`` must equal the
    manifest's ``config``, else :class:`CheckpointError` lists the differences. The model is moved
    to ``device`` when given and put in eval mode.
    """
    m = verify(name)
    path = CHECKPOINT_DIR / m["file"]
    if hasattr(model, "config"):
        mine = json.loads(json.dumps(model.config()))   # tuples -> lists, as in the manifest
        if mine != m["config"]:
            diff = "\n  ".join(_config_diff(m["config"], mine))
            raise CheckpointError(f"checkpoint {path} was trained with another configuration than this model:\n  {diff}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {err}") from None
    if device is not None:
        model.to(device)
    model.eval()
    return m


def build(name: str, device: str | torch.device | None = None):
    """A new model built from the manifest's ``build`` arguments, with the checkpoint loaded.

    Works for the classifiers trained by ``python -m nplib train`` (DT, backprop, CT, FM).
    """
    from nplib.builder import build_model

    m = manifest(name)
    b = m.get("build")
    if not b or b.get("kind") != "classifier":
        raise CheckpointError(f"checkpoint {name!r} has no classifier build arguments; build its model yourself "
                              "and call nplib.pretrained.load(name, model)")
    torch.manual_seed(0)
    model = build_model(b["variant"], b["model"], tuple(b["image_shape"]), b["num_classes"], b["T"], b["embedding"],
                        b.get("embed_dim"), None, b.get("schedule", "cosine"), b.get("alpha_bar_max", 0.99),
                        b.get("eta"), b.get("inference_steps", 1000))
    load(name, model, device)
    return model


def retrain_requested(name: str) -> bool:
    """True when ``NPLIB_RETRAIN`` asks to retrain ``name`` (``1``, ``all``, or a list that names it)."""
    value = os.environ.get(RETRAIN_ENV, "").strip()
    if value in ("", "0", "false", "False", "no"):
        return False
    if value in ("1", "all", "true", "True", "yes"):
        return True
    return name in {v.strip() for v in value.split(",")}


def load_or_train(name: str, model: torch.nn.Module, train: Callable[[], list], *, smoke: bool | None = None,
                  device: str | torch.device | None = None, log: Callable[[str], None] | None = print):
    """Load the shipped checkpoint ``name`` into ``model``, or call ``train()`` when asked to retrain.

    Introduced in notebooks/04_noprop_dt_mnist, section 2. ``train()`` trains ``model`` in place
    and returns its per-epoch history. Returns ``(history, source)``, where ``source`` is
    ``"checkpoint"`` or ``"trained"``; with a checkpoint the history is the recorded one. Quick
    mode (``smoke``, default :func:`nplib.data.smoke_mode`) always trains.
    """
    from nplib.data import smoke_mode

    say = log or (lambda s: None)
    smoke = smoke_mode() if smoke is None else smoke
    if smoke or retrain_requested(name):
        why = "quick mode" if smoke else f"{RETRAIN_ENV}={os.environ.get(RETRAIN_ENV)}"
        say(f"training {name} ({why}); the shipped checkpoint is not used")
        return train(), "trained"
    m = load(name, model, device)
    acc = m.get("test_accuracy")
    what = (f"; recorded test accuracy {100 * acc['mean']:.2f} +- {100 * acc['se']:.2f} % stochastic, "
            f"{100 * acc['noise_free']:.2f} % noise-free" if acc else "")
    say(f"loaded the shipped checkpoint {name} ({m['bytes'] / 1e6:.1f} MB, sha256 {m['sha256'][:12]}...){what}.\n"
        f"Trained by: {m.get('command', '?')}\nTo retrain instead: set {RETRAIN_ENV}={name} (or 1 for all) "
        "before starting the notebook.")
    return list(m.get("history", [])), "checkpoint"


def save(name: str, model: torch.nn.Module, directory: str | Path | None = None, **fields) -> dict:
    """Write ``model``'s float32 ``state_dict`` as ``NAME.pt`` and its manifest ``NAME.json``.

    ``fields`` (command, hardware, history, the reproduced metric, build arguments...) go into the
    manifest; ``file``, ``bytes``, ``sha256`` and ``config`` are filled in here.
    """
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().float().cpu().clone() if v.is_floating_point() else v.detach().cpu().clone())
             for k, v in model.state_dict().items()}
    path = directory / f"{name}.pt"
    torch.save(state, path)
    entry = {"name": name, "file": path.name, "bytes": path.stat().st_size, "sha256": sha256(path),
             "dtype": "float32", "config": json.loads(json.dumps(model.config())) if hasattr(model, "config") else None}
    entry.update(fields)
    (directory / f"{name}.json").write_text(json.dumps(entry, indent=1) + "\n")
    return entry


def export_cli_run(name: str, checkpoint: str | Path, report: str | Path, directory: str | Path | None = None) -> dict:
    """Ship the model of a ``python -m nplib train --checkpoint C --out R`` run as checkpoint ``name``.

    Rebuilds the model from the report's configuration, loads the training checkpoint (which also
    holds optimizer states, not shipped), and writes it with :func:`save`. The recorded metric is
    the report's ``final_test_accuracy``.
    """
    from nplib.builder import build_model
    from nplib.train import load_checkpoint

    rep = json.loads(Path(report).read_text())
    cfg = rep["config"]
    if cfg.get("smoke"):
        raise ValueError(f"{report} is a quick-mode run; ship only full runs")
    mc = rep["config"]["model"]
    b = {"kind": "classifier", "dataset": cfg["dataset"], "variant": cfg["variant"], "model": cfg["block_name"],
         "image_shape": mc["image_shape"], "num_classes": mc["num_classes"], "T": cfg["T"],
         "embedding": cfg["embedding"], "embed_dim": cfg.get("embed_dim"), "schedule": cfg.get("schedule", "cosine"),
         "alpha_bar_max": cfg.get("alpha_bar_max", 0.99), "eta": cfg.get("eta"),
         "inference_steps": cfg.get("inference_steps", 1000)}
    torch.manual_seed(0)
    model = build_model(b["variant"], b["model"], tuple(b["image_shape"]), b["num_classes"], b["T"], b["embedding"],
                        b["embed_dim"], None, b["schedule"], b["alpha_bar_max"], b["eta"], b["inference_steps"])
    load_checkpoint(checkpoint, model, restore_rng=False)
    acc = dict(rep["final_test_accuracy"])
    acc.update({"eval_seed": cfg["seed"], "data": f"{cfg['dataset']} test set, {cfg['test_size']} images"})
    return save(name, model, directory, build=b, command=rep["command"], hardware=rep["hardware"],
                train_seconds=rep["wall_seconds"], epochs=len(rep["history"]), history=rep["history"],
                test_accuracy=acc)


# ---------------------------------------------------------------------------------------------- CLI
def _cmd(args) -> int:
    if args.action == "list":
        for n in names():
            m = manifest(n)
            acc = m.get("test_accuracy")
            score = (f"{100 * acc['mean']:.2f} +- {100 * acc['se']:.2f} % (noise-free {100 * acc['noise_free']:.2f} %)"
                     if acc else ", ".join(f"{k} {v}" for k, v in (m.get("metric") or {}).items()))
            print(f"{n:>16}  {m['bytes'] / 1e6:5.2f} MB  {score}  <- {m.get('command', '?')}")
        return 0
    if args.action == "verify":
        for n in args.names or names():
            verify(n)
            print(f"{n}: sha256 ok")
        return 0
    if args.action == "export":
        if not (args.names and args.checkpoint and args.report):
            raise ValueError("export needs NAME, --checkpoint and --report")
        e = export_cli_run(args.names[0], args.checkpoint, args.report, args.dir)
        print(f"wrote {e['file']} ({e['bytes'] / 1e6:.2f} MB) and {args.names[0]}.json")
        return 0
    raise ValueError(f"unknown action {args.action!r}")


def add_parser(subparsers):
    """Register ``python -m nplib pretrained list|verify|export``."""
    p = subparsers.add_parser("pretrained", help="list, verify or export the shipped checkpoints")
    p.add_argument("action", choices=["list", "verify", "export"])
    p.add_argument("names", nargs="*", help="checkpoint names (export: exactly one)")
    p.add_argument("--checkpoint", help="export: the training checkpoint (python -m nplib train --checkpoint)")
    p.add_argument("--report", help="export: the JSON report of that run (python -m nplib train --out)")
    p.add_argument("--dir", default=None, help="export: output folder (default: the package's checkpoints/)")
    p.set_defaults(func=_cmd)
    return p


#: Picked up by :mod:`nplib.cli`.
COMMANDS = {"pretrained": add_parser}
