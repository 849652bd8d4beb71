"""Command line: ``python -m nplib train|schedule ...``.

Introduced in README.md ("Quick start"). Examples::

    python -m nplib train --dataset mnist --model small --epochs 5 --out runs/mnist_small.json
    python -m nplib schedule --kind cosine --T 10 --json

``train`` prints a per-epoch table (epoch, average loss, train accuracy, test accuracy, seconds)
and writes a JSON file with the configuration, the hardware, the history and the final test
accuracy as mean and standard error over ``--eval-runs`` stochastic inference runs, plus the
accuracy of noise-free inference. In quick mode (``NPLIB_SMOKE=1``) data and epochs shrink.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from nplib import pretrained
from nplib.builder import build_model  # noqa: F401 (the CLI builds its models here; re-exported)
from nplib.course import student
from nplib.lab import ablation, bench, chain, init_probe, reproduce, summary
from nplib.timeseries import forecast_cli

__all__ = ["main", "build_parser"]

#: The subcommands that live in their own modules: name -> callable(subparsers) adding the parser,
#: whose ``func`` default runs it (each module's ``COMMANDS``).
EXTRA_COMMANDS: dict = {**forecast_cli.COMMANDS, **student.COMMANDS, **pretrained.COMMANDS, **bench.COMMANDS,
                        **reproduce.COMMANDS, **ablation.COMMANDS, **chain.COMMANDS, **init_probe.COMMANDS,
                        **summary.COMMANDS}


def _cmd_schedule(args) -> int:
    from nplib.schedules import make_schedule

    sched = make_schedule(args.kind, args.T, alpha_bar_min=args.alpha_bar_min, alpha_bar_max=args.alpha_bar_max)
    if args.json:
        print(json.dumps(sched.as_dict(), indent=2))
    else:
        print(f"{args.kind} schedule, T = {args.T}, alpha_bar clipped to [{args.alpha_bar_min}, {args.alpha_bar_max}]")
        print(sched.table())
    return 0


def _cmd_train(args) -> int:
    import torch

    from nplib.data import load_train_test, smoke_mode
    from nplib.train import evaluate_runs, fit, set_seed

    smoke = smoke_mode()
    epochs = 1 if smoke else args.epochs
    if _launched_by_torchrun() and int(os.environ["RANK"]) != 0:
        sys.stdout = open(os.devnull, "w")   # one report: rank 0 prints and writes, the others only train
    if args.threads:
        torch.set_num_threads(args.threads)
    else:  # no more threads than usable CPUs (a container's quota), see nplib.speed.cpu.usable_cpus
        from nplib.speed.cpu import fit_threads_to_cpus

        fit_threads_to_cpus()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cpu" and not args.no_tune_malloc:
        from nplib.speed.cpu import tune_malloc

        # reuse freed tensor memory instead of faulting in fresh pages every step (nplib/speed/cpu.py);
        # exported, so block-parallel workers inherit it
        if tune_malloc():
            print("CPU: glibc malloc tuned for training (nplib.speed.cpu.tune_malloc; --no-tune-malloc to keep the defaults)")
    train, test = load_train_test(args.dataset, smoke=smoke)
    set_seed(args.seed)
    model = build_model(args.variant, args.model, train.image_shape, train.num_classes, args.T, args.embedding,
                        args.embed_dim, train, args.schedule, args.alpha_bar_max, args.eta,
                        args.inference_steps)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.variant} / {args.model} block / {args.embedding} embedding on {args.dataset}: "
          f"{len(train)} train, {len(test)} test images, {n_params:,} parameters, {epochs} epochs, "
          f"device {device}{' (quick mode)' if smoke else ''}")
    if _launched_by_torchrun():
        return _train_as_a_rank(args, model, train, test, epochs, device, smoke, n_params)
    if args.parallel:
        return _train_block_parallel(args, model, train, test, epochs, device, smoke, n_params)
    trainer = model
    if args.fast:
        if args.variant != "dt":
            raise ValueError(f"--fast trains NoProp-DT only (the T blocks side by side); --variant {args.variant} "
                             "uses its own loop: drop --fast")
        from nplib.speed.fast import FastDTTrainer

        trainer = FastDTTrainer(model.to(device))   # refuses a learned embedding with a clear error
        print("fast path: the T blocks' updates of each minibatch run as one batched computation (nplib.speed.fast)")
    if args.train_eval_size < 0:
        raise ValueError(f"--train-eval-size must be >= 0, got {args.train_eval_size}")
    t0 = time.perf_counter()
    history = fit(trainer, train, test, epochs, batch_size=args.batch_size, lr=args.lr,
                  weight_decay=args.weight_decay, seed=args.seed, checkpoint=args.checkpoint,
                  resume=not args.no_resume, progress=not args.no_progress, device=device,
                  max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                  train_eval_size=args.train_eval_size or None, eval_train=args.train_eval_size > 0,
                  bf16=args.bf16)
    train_seconds = time.perf_counter() - t0
    final = evaluate_runs(model, test, runs=args.eval_runs, seed=args.seed, device=device)
    print(f"final test accuracy: {100 * final['mean']:.2f} +- {100 * final['se']:.2f} % "
          f"(stochastic chain, mean +- s.e. over {args.eval_runs} runs); noise-free {100 * final['noise_free']:.2f} %")
    print(f"wall time {train_seconds / 60:.1f} min (training and per-epoch evaluation)")
    return _write_report(args, model, train, test, smoke, n_params, history, final, train_seconds)


def _write_report(args, model, train, test, smoke, n_params, history, final, train_seconds, **extra) -> int:
    """The JSON report of ``train`` (both paths): command, config, hardware, history, final accuracy."""
    from nplib.speed.parallel import state_digest
    from nplib.train import hardware_info

    result = {
        "command": " ".join(["python -m nplib"] + sys.argv[1:]),
        # "model" holds the model's own config; the --model choice (the block size) is "block_name"
        "config": {**vars(args), "epochs_run": len(history), "smoke": smoke, "train_size": len(train),
                   "test_size": len(test), "parameters": n_params, "block_name": args.model,
                   "model": model.config()},
        "hardware": hardware_info(),
        "history": history,
        "final_test_accuracy": final,
        "model_sha256": state_digest(model),
        "wall_seconds": train_seconds,
        **extra,
    }
    result["config"].pop("func", None)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return 0


def _train_block_parallel(args, model, train, test, epochs, device, smoke, n_params) -> int:
    """``train --parallel N``: NoProp-DT's blocks split over N processes (:mod:`nplib.speed.parallel`).

    Each process trains its group of blocks on every minibatch with ``--threads / N`` torch threads
    (at least 1); rank 0 also trains the classifier. No gradient is exchanged; the result is, bit
    for bit on a CPU, the single process's with that many threads. Nothing is evaluated during
    training; the final accuracies are measured as without ``--parallel``.
    """
    import torch

    from nplib.speed.parallel import train_block_parallel
    from nplib.train import evaluate_runs

    if args.parallel < 2:
        raise ValueError(f"--parallel needs at least 2 processes, got {args.parallel}")
    kw, cfg = _parallel_settings(args, model, train)
    threads = max(1, (args.threads or torch.get_num_threads()) // args.parallel)
    print(f"block-parallel: {args.parallel} processes x {threads} thread(s){', bfloat16 autocast' if args.bf16 else ''}, "
          f"no gradient exchanged "
          f"(the result equals one process with {threads} thread(s), bit for bit on a CPU)")
    t0 = time.perf_counter()
    trained, info = train_block_parallel(kw, train, epochs, batch_size=args.batch_size, lr=args.lr,
                                         weight_decay=args.weight_decay, seed=args.seed, world_size=args.parallel,
                                         threads_per_process=threads, device=device, timeout=7 * 24 * 3600,
                                         log_epochs=True, bf16=args.bf16, progress=not args.no_progress)
    train_seconds = time.perf_counter() - t0
    final = evaluate_runs(trained, test, runs=args.eval_runs, seed=args.seed, device=device)
    total_seconds = time.perf_counter() - t0
    print(f"final test accuracy: {100 * final['mean']:.2f} +- {100 * final['se']:.2f} % "
          f"(stochastic chain, mean +- s.e. over {args.eval_runs} runs); noise-free {100 * final['noise_free']:.2f} %")
    print(f"wall time {train_seconds / 60:.1f} min training (process start-up included), "
          f"{total_seconds / 60:.1f} min with the final evaluation")
    return _write_report(args, trained, train, test, smoke, n_params, info["history"], final, train_seconds,
                         wall_seconds_with_evaluation=total_seconds,
                         parallel={k: v for k, v in info.items() if k != "history"})


def _launched_by_torchrun() -> bool:
    """True inside a process that ``torchrun`` (torch's launcher) started as one of several ranks."""
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _parallel_settings(args, model, train) -> tuple[dict, str]:
    if args.variant != "dt":
        raise ValueError(f"block-parallel training is for NoProp-DT only; --variant {args.variant} trains end to end "
                         "or shares its network between the steps")
    for flag, value in (("--fast", args.fast), ("--checkpoint", args.checkpoint), ("--max-minutes", args.max_minutes)):
        if value:
            raise ValueError(f"{flag} cannot be combined with block-parallel training")
    cfg = model.config()
    kw = {"image_shape": train.image_shape, "num_classes": train.num_classes, "T": args.T, "block": args.model,
          "embedding": args.embedding, "schedule": model.schedule, "eta": cfg["eta"], "embed_dim": args.embed_dim}
    return kw, cfg


def _train_as_a_rank(args, model, train, test, epochs, device, smoke, n_params) -> int:
    """``torchrun --nproc-per-node N [--nnodes M ...] -m nplib train ...``: this process is one rank.

    torchrun has set RANK, WORLD_SIZE and the rendezvous; each rank trains its share of the blocks
    (:func:`nplib.speed.parallel.train_rank`) with this process's torch threads (torchrun sets
    ``OMP_NUM_THREADS=1`` unless you set it), and rank 0 scores the gathered model and writes the report.
    """
    import datetime

    import torch
    import torch.distributed as dist

    from nplib.speed.parallel import rank_config, state_digest, train_rank
    from nplib.train import evaluate_runs

    kw, _ = _parallel_settings(args, model, train)
    world = int(os.environ["WORLD_SIZE"])
    cfg = rank_config(epochs=epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      seed=args.seed, threads_per_process=torch.get_num_threads(), device=device,
                      timeout=7 * 24 * 3600, log_epochs=True, bf16=args.bf16, progress=not args.no_progress,
                      world_size=world)
    print(f"block-parallel under torchrun: {world} ranks x {cfg['threads_per_process']} thread(s), no gradient "
          f"exchanged (the result equals one process with {cfg['threads_per_process']} thread(s), bit for bit on a CPU)")
    t0 = time.perf_counter()
    dist.init_process_group(cfg["backend"], timeout=datetime.timedelta(seconds=cfg["timeout"]))
    try:
        out = train_rank(kw, train, cfg)
    finally:
        dist.destroy_process_group()
    if out is None:
        return 0
    train_seconds = time.perf_counter() - t0
    model.load_state_dict(out["state"])
    model.eval()
    final = evaluate_runs(model, test, runs=args.eval_runs, seed=args.seed, device=device)
    total_seconds = time.perf_counter() - t0
    print(f"final test accuracy: {100 * final['mean']:.2f} +- {100 * final['se']:.2f} % "
          f"(stochastic chain, mean +- s.e. over {args.eval_runs} runs); noise-free {100 * final['noise_free']:.2f} %")
    return _write_report(args, model, train, test, smoke, n_params, out["history"], final, train_seconds,
                         wall_seconds_with_evaluation=total_seconds,
                         parallel={"world_size": world, "launcher": "torchrun", "ranks": out["ranks"],
                                   "threads_per_process": cfg["threads_per_process"], "backend": cfg["backend"]})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nplib", description="The NoProp course's command line.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("schedule", help="print a NoProp-DT noise schedule")
    s.add_argument("--kind", choices=["cosine", "linear", "equal_mass"], default="cosine")
    s.add_argument("--T", type=int, default=10, help="number of blocks (default 10)")
    s.add_argument("--alpha-bar-min", type=float, default=1e-4)
    s.add_argument("--alpha-bar-max", type=float, default=0.99)
    s.add_argument("--json", action="store_true", help="print the arrays as JSON")
    s.set_defaults(func=_cmd_schedule)

    t = sub.add_parser("train", help="train a model and write a JSON report")
    t.add_argument("--dataset", default="mnist", choices=["mnist", "fashionmnist", "cifar10", "cifar100"])
    t.add_argument("--variant", default="dt", choices=["dt", "backprop", "ct", "fm"],
                   help="NoProp-DT, the backprop baseline, NoProp-CT or NoProp-FM")
    t.add_argument("--model", default="small", choices=["small", "paper"], help="block size")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="JSON report path (default runs/<dataset>_<variant>_<model>.json)")
    t.add_argument("--T", type=int, default=10)
    t.add_argument("--embedding", default="onehot", choices=["onehot", "learned", "prototype"])
    t.add_argument("--embed-dim", type=int, default=None)
    t.add_argument("--schedule", default="cosine", choices=["cosine", "linear", "equal_mass"],
                   help="noise schedule; equal_mass: every block gets the same noise-level mass (nplib.lab.chain)")
    t.add_argument("--alpha-bar-max", type=float, default=0.99)
    t.add_argument("--eta", type=float, default=None, help="denoising loss weight (DT default 0.1)")
    t.add_argument("--inference-steps", type=int, default=1000,
                   help="Euler / chain steps at inference for --variant ct and fm (paper: 1000)")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=1e-3)
    t.add_argument("--eval-runs", type=int, default=5, help="stochastic inference runs for the final accuracy")
    t.add_argument("--checkpoint", default=None, help="save after every epoch and resume from this file")
    t.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that passes this budget")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    t.add_argument("--fast", action="store_true",
                   help="NoProp-DT with a fixed embedding: train the T blocks side by side (nplib.speed.fast; same "
                        "numbers as the loop, more memory)")
    t.add_argument("--parallel", type=int, default=0, metavar="N",
                   help="NoProp-DT with a fixed embedding: split the blocks over N processes (N >= 2), each "
                        "with --threads/N threads; the fastest way to use several CPU cores")
    t.add_argument("--no-tune-malloc", action="store_true",
                   help="keep glibc's malloc defaults on a CPU (by default the allocator reuses freed tensor memory, "
                        "see nplib/speed/cpu.py)")
    t.add_argument("--bf16", action="store_true",
                   help="train under bfloat16 autocast (faster on CPUs with bf16 support; evaluation stays float32)")
    t.add_argument("--train-eval-size", type=int, default=10_000,
                   help="training images scored after every epoch (default 10000; 0: none, saves time)")
    t.set_defaults(func=_cmd_train)

    for name, add in EXTRA_COMMANDS.items():
        add(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.out is None:
        args.out = f"runs/{args.dataset}_{args.variant}_{args.model}.json"
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
