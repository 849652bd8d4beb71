r"""Block-parallel NoProp-DT training, and the measurements of notebook 06 (memory, speed, latency).

Introduced in notebooks/06_backprop_vs_noprop. The benchmark scripts in ``benchmarks/`` call the
functions below and write ``nplib/results/bench_*.json`` (through ``python -m nplib bench``).

**Why NoProp-DT can be trained block-parallel.** Block t's loss

    L_t = (T/2) eta (SNR(t) - SNR(t-1)) || u_hat_t(z_{t-1}, x) - u_y ||^2,   z_{t-1} ~ q(z_{t-1} | y)

depends only on block t's parameters, the data and ``W_embed``: ``z_{t-1}`` is a noised LABEL, not
the output of block t-1. With one-hot embeddings ``W_embed`` is a fixed identity, and the
classifier loss ``-log p(y | z_T) + KL``, with ``z_T ~ q(z_T | y)``, depends on no block. So the
T blocks (and the classifier) are T + 1 independent training problems that only share the
minibatches. :func:`train_block_parallel` gives each process a contiguous group of blocks
(:func:`split_blocks`); rank 0 also trains the classifier. No gradient is ever communicated; at
the end every tensor of block t (parameters and BatchNorm statistics) is broadcast from the rank
that trained it, so every rank holds the whole model.

**Exactly the single-process model.** ``NoPropDT.training_step`` draws ONE number from the global
torch generator per minibatch (a base seed) and gives block t and the t-th classifier update
their own streams seeded from (base, t). Every rank seeds the global generator as the single
process does, builds the same initial model, iterates over the same minibatches
(:class:`~nplib.data.TensorLoader` with the same seed and epoch) and calls ``training_step`` once
per minibatch, so it draws the same base seeds and computes, for its blocks, the same numbers as
the single process (:func:`train_single`, the loop of :func:`nplib.train.fit` without evaluation).
On a CPU the result is bit-for-bit equal when the processes use the same number of threads as the
single process (a different thread count may change the order of floating-point sums inside a
convolution). On a GPU cuDNN may pick non-deterministic kernels; exactness is claimed on CPU only.

**A learned W_embed couples the blocks.** Each block's loss then has a gradient with respect to
``W_embed``, every block reads the current ``W_embed``, and the shared update of step t mixes
block t's gradient with the classifier's. Splitting the blocks would need those gradients to be
exchanged after every block step, i.e. T all-reduces per minibatch in a fixed order; we do not
implement that: :func:`check_parallelisable` refuses such models with a ValueError.

**What the paper claims and what it shows.** The paper argues that the blocks could be trained
independently; it trains them in one process and reports no parallel run. Notebook 06 runs one.

**Measurements** (notebook 06, section 1-4; ``benchmarks/``):

* :func:`measure_throughput`: training images per second (NoProp-DT or backprop).
* :func:`measure_training_memory`: peak training memory above the idle baseline, in a CHILD
  process per measurement. GPU: ``torch.cuda.max_memory_allocated`` minus the memory allocated
  after building model, optimizer and data. CPU: the peak resident set size (``VmHWM`` of
  ``/proc/self/status``, reset with ``/proc/self/clear_refs`` after the build; ``ru_maxrss`` where
  that is not possible) minus the resident size at that moment. glibc's malloc raises its mmap
  threshold after the first large free and then serves tensors from arenas whose freed pages are
  kept, and per-thread arenas add more; by default the child therefore runs with
  ``MALLOC_MMAP_THRESHOLD_=65536`` (a fixed threshold: every tensor of 64 KiB or more is its own
  mapping and goes back to the system when freed), ``MALLOC_TRIM_THRESHOLD_=65536`` and
  ``MALLOC_ARENA_MAX=1``, so that the resident size follows the live tensors.
  ``allocator="default"`` measures with glibc's defaults, to show the difference.
* :func:`measure_inference_latency`: the T-step chain of NoProp-DT against one forward pass of
  the backprop baseline (which runs the same T blocks).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from nplib.data import TensorData, TensorLoader
from nplib.devices import make_generator
from nplib.models import BackpropBaseline, NoPropDT
from nplib.train import set_seed

__all__ = ["split_blocks", "check_parallelisable", "build_model", "train_single", "train_block_parallel", "train_rank",
           "rank_config", "state_digest",
           "models_equal", "max_abs_difference", "synthetic_data", "measure_throughput",
           "measure_training_memory", "measure_inference_latency", "MALLOC_ENV", "MODEL_KINDS"]

MODEL_KINDS = ("noprop", "backprop")

#: glibc malloc settings used for CPU memory measurements (module docstring).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}


# ---------------------------------------------------------------------------------------- models
def build_model(kind: str, **model_kwargs):
    """``NoPropDT(**model_kwargs)`` for kind 'noprop', ``BackpropBaseline`` for 'backprop'.

    Introduced in notebooks/06_backprop_vs_noprop, section 1. Arguments only NoProp-DT has
    (``schedule``, ``eta``) are dropped for the baseline.
    """
    if kind == "noprop":
        return NoPropDT(**model_kwargs)
    if kind == "backprop":
        kw = {k: v for k, v in model_kwargs.items() if k not in ("schedule", "eta")}
        return BackpropBaseline(**kw)
    raise ValueError(f"unknown model kind {kind!r}; choose one of {MODEL_KINDS}")


def synthetic_data(n: int, image_shape=(1, 28, 28), num_classes: int = 10, seed: int = 0) -> TensorData:
    """``n`` random standard-normal images with random labels (compute cost does not depend on the values)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *image_shape, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return TensorData(x, y, "random", tuple(str(k) for k in range(num_classes)))


# ---------------------------------------------------------------------------------------- splitting
def split_blocks(T: int, world_size: int) -> list[list[int]]:
    """Contiguous groups of blocks 1..T for ``world_size`` processes, as even as possible.

    Introduced in notebooks/06_backprop_vs_noprop, section 3. When T is not a multiple of the
    number of processes, the LAST ranks get the extra block, because rank 0 also trains the
    classifier. ``split_blocks(10, 2) == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]``.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if world_size > T:
        raise ValueError(f"cannot split {T} blocks over {world_size} processes: each process needs a block")
    base, extra = divmod(T, world_size)
    groups, start = [], 1
    for rank in range(world_size):
        size = base + (1 if rank >= world_size - extra else 0)
        groups.append(list(range(start, start + size)))
        start += size
    return groups


def check_parallelisable(model) -> None:
    """Raise a ValueError unless ``model``'s blocks can be trained in separate processes.

    Introduced in notebooks/06_backprop_vs_noprop, section 3. Requires a :class:`NoPropDT` with a
    FIXED ``W_embed`` (one-hot): a learned ``W_embed`` receives gradients from every block and the
    classifier and couples them (module docstring).
    """
    if not isinstance(model, NoPropDT):
        raise ValueError(f"only NoPropDT can be trained block-parallel, got {type(model).__name__} "
                         "(the backprop baseline's blocks are coupled by the gradient through the chain)")
    if model.embedding.trainable:
        raise ValueError(f"a trainable W_embed ({model.embedding.kind!r} embedding) couples the blocks: every "
                         "block's loss has a gradient with respect to it, so the blocks cannot be trained in "
                         "separate processes without exchanging those gradients. Use embedding='onehot'.")


# ---------------------------------------------------------------------------------------- training
def _train_loop(model: NoPropDT, optimizers: dict, train: TensorData, epochs: int, batch_size: int, seed: int,
                device, blocks=None, shared: bool = True, max_batches: int | None = None, on_epoch=None,
                bf16: bool = False, on_step=None) -> int:
    """The minibatch loop of :func:`nplib.train.fit` (no evaluation); returns the number of steps.

    ``on_epoch(epoch, sums)``, when given, is called after every epoch with the example-weighted sums
    of this process's losses: ``block_sum`` (sum over its blocks of ``L_t``), ``out_sum`` (the
    classifier's mean loss), ``n`` (examples) and ``seconds`` (the epoch's training time).
    """
    loader = TensorLoader(train, batch_size=batch_size, shuffle=True, seed=seed)
    n_blocks = model.T if blocks is None else len(blocks)
    steps = 0
    for epoch in range(1, epochs + 1):
        model.train()
        loader.epoch = epoch
        t0 = time.perf_counter()
        sums = {"block_sum": 0.0, "out_sum": 0.0, "n": 0}
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                out = model.training_step(x.to(device), y.to(device), optimizers, blocks=blocks, shared=shared)
            steps += 1
            if on_step is not None:
                on_step()
            sums["block_sum"] += out["loss_blocks"] * n_blocks * len(y)
            sums["out_sum"] += (out["loss_classifier"] if shared else 0.0) * len(y)
            sums["n"] += len(y)
        if on_epoch is not None:
            sums["seconds"] = time.perf_counter() - t0
            on_epoch(epoch, sums)
    if device_is_cuda(device):
        torch.cuda.synchronize(device)
    return steps


def device_is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def _check_training_args(epochs, batch_size, max_batches):
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be None or >= 1, got {max_batches!r}")


def train_single(model_kwargs: dict, train: TensorData, epochs: int = 1, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 1e-3, seed: int = 0, device="cpu",
                 max_batches: int | None = None, threads: int | None = None, fresh_process: bool = False,
                 timeout: float = 600.0):
    """Single-process reference: ``set_seed(seed); model = NoPropDT(**model_kwargs)``, then the loop of ``fit``.

    Introduced in notebooks/06_backprop_vs_noprop, section 3. Returns ``(model, seconds)`` where
    ``seconds`` is the training time (no evaluation, no model building). ``threads`` sets
    ``torch.set_num_threads`` for the run and restores it afterwards. The same seed gives the
    parameters :func:`nplib.train.fit` gives for a model built right after ``set_seed(seed)``.

    ``fresh_process=True`` runs the same training in one newly spawned process (bounded by
    ``timeout`` seconds), as :func:`train_block_parallel` runs its ranks. Use it for a bit-exact
    comparison with the block-parallel run from a long-lived process such as a notebook kernel:
    oneDNN caches the convolution kernels it plans for a shape, and a kernel planned earlier in
    this process with more threads can sum in another order than one planned with one thread.
    """
    _check_training_args(epochs, batch_size, max_batches)
    if fresh_process:
        return _train_single_in_fresh_process(model_kwargs, train, timeout, epochs=epochs, batch_size=batch_size,
                                              lr=lr, weight_decay=weight_decay, seed=seed, device=device,
                                              max_batches=max_batches, threads=threads)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        set_seed(seed)
        model = NoPropDT(**model_kwargs).to(device)
        set_seed(seed)  # fit() seeds again after the model is built
        optimizers = model.configure_optimizers(lr=lr, weight_decay=weight_decay)
        t0 = time.perf_counter()
        _train_loop(model, optimizers, train, epochs, batch_size, seed, device, max_batches=max_batches)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old_threads)
    model.eval()
    return model, seconds


def _single_worker(rank: int, model_kwargs: dict, train: TensorData, kw: dict, out_dir: str) -> None:
    """The process of ``train_single(..., fresh_process=True)``: train, then save the state and the time."""
    model, seconds = train_single(model_kwargs, train, **kw)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, Path(out_dir) / "model.pt")
    (Path(out_dir) / "seconds.json").write_text(json.dumps(seconds))


def _train_single_in_fresh_process(model_kwargs: dict, train: TensorData, timeout: float, **kw):
    state, out = _spawn_and_collect(_single_worker, 1, lambda out_dir: (model_kwargs, train, kw, out_dir), timeout,
                                    "the single-process reference")
    model = NoPropDT(**model_kwargs)
    model.load_state_dict(state)
    model.eval()
    return model, out["seconds"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_config(epochs: int = 1, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-3, seed: int = 0,
                threads_per_process: int = 1, device="cpu", backend: str | None = None,
                max_batches: int | None = None, timeout: float = 600.0, log_epochs: bool = False,
                bf16: bool = False, progress: bool = False, world_size: int = 2) -> dict:
    """The settings every rank of :func:`train_rank` gets, checked; ``backend`` None: NCCL with one GPU per
    rank, else gloo."""
    _check_training_args(epochs, batch_size, max_batches)
    if threads_per_process < 1:
        raise ValueError(f"threads_per_process must be >= 1, got {threads_per_process}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available")
    if backend is None:
        backend = "nccl" if dev.type == "cuda" and torch.cuda.device_count() >= world_size else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    return {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
            "threads_per_process": threads_per_process, "device": str(dev), "backend": backend,
            "max_batches": max_batches, "timeout": timeout, "log_epochs": log_epochs, "bf16": bf16,
            "progress": progress}


def state_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, dtypes, shapes, bytes): equal digests, equal models."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def train_rank(model_kwargs: dict, train: TensorData, cfg: dict) -> dict | None:
    """This process's share of block-parallel training, inside a process group that is already up.

    Introduced in notebooks/06_backprop_vs_noprop, section 3. Whoever started the processes (torch's
    launcher: ``torchrun``, or :func:`train_block_parallel`, which calls the same launcher from
    Python) has set ``RANK``, ``WORLD_SIZE`` and the rendezvous; the caller has called
    ``torch.distributed.init_process_group``. Rank r trains the blocks ``split_blocks(T, world_size)[r]``
    (rank 0 also the classifier) on every minibatch, with no gradient exchanged; then every tensor of
    block t is broadcast from its owner, so every rank ends with the whole model. Returns, on rank 0,
    ``{"state": state_dict, "ranks": [per-rank blocks, steps, seconds], "history": [per-epoch rows]}``,
    and None on the other ranks. ``cfg`` holds epochs, batch_size, lr, weight_decay, seed, device,
    backend, max_batches, log_epochs and bf16 (as :func:`train_block_parallel` builds it).
    """
    import torch.distributed as dist

    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = torch.device(cfg["device"])
    if device.type == "cuda":   # one rank per GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    backend = dist.get_backend()
    groups = split_blocks(model_kwargs.get("T", 10), world_size)
    owner = {t: r for r, g in enumerate(groups) for t in g}
    set_seed(cfg["seed"])
    model = NoPropDT(**model_kwargs).to(device)
    check_parallelisable(model)
    set_seed(cfg["seed"])
    optimizers = model.configure_optimizers(lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    history: list[dict] = []
    bar = None
    if rank == 0 and cfg.get("progress"):
        from tqdm.auto import tqdm

        per_epoch = -(-len(train) // cfg["batch_size"])
        if cfg.get("max_batches"):
            per_epoch = min(per_epoch, cfg["max_batches"])
        bar = tqdm(total=cfg["epochs"] * per_epoch, desc=f"rank 0 of {world_size}: blocks {groups[0]} + classifier",
                   unit="batch", mininterval=1.0)

    def on_epoch(epoch: int, sums: dict) -> None:
        # the loss of Algorithm 1 as fit() reports it: mean over blocks of L_t, plus the classifier's
        # loss, averaged over the examples; one all-reduce of two numbers per epoch
        buf = torch.tensor([sums["block_sum"], sums["out_sum"]], dtype=torch.float64)
        dist.all_reduce(buf)
        n = max(sums["n"], 1)
        row = {"epoch": epoch, "loss": float(buf[0]) / (model.T * n) + float(buf[1]) / n,
               "train_acc": float("nan"), "test_acc": float("nan"), "seconds": sums["seconds"]}
        history.append(row)
        if rank == 0 and cfg.get("log_epochs"):
            print(f"epoch {epoch:>3}/{cfg['epochs']}: loss {row['loss']:.4f}, {row['seconds']:.1f} s "
                  f"(rank 0: blocks {groups[0]} and the classifier)", flush=True)

    dist.barrier()
    t0 = time.perf_counter()
    steps = _train_loop(model, optimizers, train, cfg["epochs"], cfg["batch_size"], cfg["seed"], device,
                        blocks=groups[rank], shared=(rank == 0), max_batches=cfg["max_batches"],
                        on_epoch=on_epoch, bf16=cfg.get("bf16", False),
                        on_step=(lambda: bar.update(1)) if bar is not None else None)
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - t0
    dist.barrier()
    t1 = time.perf_counter()
    # Gather: every tensor of block t (parameters AND BatchNorm statistics) comes from its owner,
    # the classifier (and W_embed) from rank 0. No gradient was ever exchanged.
    comm = device if backend == "nccl" else torch.device("cpu")

    def bcast(tensor: torch.Tensor, src: int) -> None:
        buf = tensor.detach().to(comm).clone() if tensor.device != comm else tensor.detach()
        dist.broadcast(buf, src=src)
        if buf is not tensor:
            with torch.no_grad():
                tensor.copy_(buf)

    for t in range(1, model.T + 1):
        for tensor in model.blocks[t - 1].state_dict().values():
            bcast(tensor, owner[t])
    for module in (model.classifier, model.embedding):
        for tensor in module.state_dict().values():
            bcast(tensor, 0)
    gather_seconds = time.perf_counter() - t1
    times = [None] * world_size
    dist.all_gather_object(times, {"rank": rank, "blocks": groups[rank], "classifier": rank == 0,
                                   "steps": steps, "train_seconds": train_seconds,
                                   "gather_seconds": gather_seconds})
    dist.barrier()
    if rank != 0:
        return None
    return {"state": {k: v.cpu() for k, v in model.state_dict().items()}, "ranks": times, "history": history}


def _loopback_only() -> None:
    if platform.system() == "Linux":  # talk over the loopback interface only
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")


def _launched_worker(model_kwargs: dict, train: TensorData, cfg: dict) -> dict | None:
    """What each process that :func:`train_block_parallel` launches runs: join the group, train, leave."""
    import torch.distributed as dist

    torch.set_num_threads(cfg["threads_per_process"])
    _loopback_only()
    dist.init_process_group(cfg["backend"], timeout=datetime.timedelta(seconds=cfg["timeout"]))
    try:
        return train_rank(model_kwargs, train, cfg)
    finally:
        dist.destroy_process_group()   # every rank, after the last barrier; the launcher hosts the store


def _spawn_and_collect(fn, nprocs: int, make_args, timeout: float, what: str):
    """Spawn ``nprocs`` processes of ``fn(rank, *make_args(out_dir))``, wait at most ``timeout`` s, then
    return ``(state_dict from out_dir/model.pt, {stem: parsed content} of the JSON files written there)``."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="nplib-parallel-") as out_dir:
        ctx = mp.start_processes(fn, args=make_args(out_dir), nprocs=nprocs, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            while not ctx.join(timeout=0.5):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{what} did not finish in {timeout:.0f} s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
                    p.join(5)
        state = torch.load(Path(out_dir) / "model.pt", map_location="cpu", weights_only=True)
        files = {f.stem: json.loads(f.read_text()) for f in Path(out_dir).glob("*.json")}
    return state, files


def train_block_parallel(model_kwargs: dict, train: TensorData, epochs: int = 1, batch_size: int = 128,
                         lr: float = 1e-3, weight_decay: float = 1e-3, seed: int = 0, world_size: int = 2,
                         threads_per_process: int = 1, device="cpu", backend: str | None = None,
                         max_batches: int | None = None, timeout: float = 600.0, log_epochs: bool = False,
                         bf16: bool = False, progress: bool = False):
    """Train NoPropDT(**model_kwargs) with its blocks split over ``world_size`` processes.

    Introduced in notebooks/06_backprop_vs_noprop, section 3.

    The processes are started by torch's own launcher (``torch.distributed.launcher``, which is what
    ``torchrun`` runs; ``torchrun --nproc-per-node N -m nplib train ...`` starts the same
    :func:`train_rank` from the command line, on one machine or several) and talk over
    ``torch.distributed`` on the loopback address 127.0.0.1 only: gloo on CPU, NCCL on GPU when
    there is one GPU per process (else gloo, with the final broadcasts through CPU copies). Each
    process trains its blocks of :func:`split_blocks` (rank 0 also the classifier) on every
    minibatch, with no gradient communication; then the block tensors are broadcast from their
    owners. Same seed, same data, same ``threads_per_process`` as the single process's threads:
    the same parameters as :func:`train_single`, bit for bit (CPU).

    Returns ``(model, info)``: the gathered model on the CPU, and a dict with ``train_seconds``
    (slowest rank, between two barriers), ``gather_seconds``, ``wall_seconds`` (the whole call,
    process start-up included), ``ranks`` (per-rank blocks, steps, seconds), ``backend``.
    ``timeout`` bounds every collective wait (a rank that stops answering fails the run after it);
    ``progress=True`` shows rank 0's progress bar within each epoch.
    ``info["history"]`` has one row per epoch (``loss`` as :func:`nplib.train.fit` reports it, summed
    over the ranks; ``seconds``; no accuracies: nothing is evaluated during training);
    ``log_epochs=True`` prints each row from rank 0 as it ends; ``bf16=True`` trains under bfloat16
    autocast (as :func:`nplib.train.fit` with ``bf16=True``). The library never changes the
    allocator: the processes inherit the environment, so glibc settings that the caller exported
    (``python -m nplib train`` does, with :func:`nplib.speed.cpu.tune_malloc`) apply to them too.
    """
    probe = NoPropDT(**model_kwargs)
    check_parallelisable(probe)
    split_blocks(probe.T, world_size)  # validates world_size
    cfg = rank_config(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                      threads_per_process=threads_per_process, device=device, backend=backend,
                      max_batches=max_batches, timeout=timeout, log_epochs=log_epochs, bf16=bf16, progress=progress,
                      world_size=world_size)
    backend, dev = cfg["backend"], torch.device(cfg["device"])
    wall0 = time.perf_counter()
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    _loopback_only()
    # torch's own launcher, the one torchrun runs: it starts the processes, hosts the rendezvous
    # store itself (so no rank has to outlive the others), and returns what each process returned
    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=world_size, run_id=f"nplib-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0,
                          monitor_interval=0.1, start_method="spawn")
    returned = elastic_launch(launch, _launched_worker)(model_kwargs, train, cfg)
    out = returned[0]
    state, ranks, history = out["state"], out["ranks"], out["history"]
    wall = time.perf_counter() - wall0
    probe.load_state_dict(state)
    probe.eval()
    info = {"world_size": world_size, "backend": backend, "threads_per_process": threads_per_process,
            "device": str(dev), "blocks": split_blocks(probe.T, world_size), "classifier_rank": 0,
            "train_seconds": max(r["train_seconds"] for r in ranks),
            "gather_seconds": max(r["gather_seconds"] for r in ranks), "wall_seconds": wall, "ranks": ranks,
            "history": history}
    return probe, info


def models_equal(a: torch.nn.Module, b: torch.nn.Module) -> tuple[bool, list[str]]:
    """``(all equal, names that differ)`` over every parameter AND buffer, by ``torch.equal``.

    Introduced in notebooks/06_backprop_vs_noprop, section 3.
    """
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise ValueError("the two models have different state_dict keys")
    diff = [k for k in sa if not torch.equal(sa[k].cpu(), sb[k].cpu())]
    return not diff, diff


def max_abs_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest absolute difference between corresponding floating-point tensors of two models."""
    sa, sb = a.state_dict(), b.state_dict()
    return max((float((sa[k].cpu().double() - sb[k].cpu().double()).abs().max()) for k in sa
                if sa[k].is_floating_point() and sa[k].numel()), default=0.0)


# ---------------------------------------------------------------------------------------- speed
def _sync(device) -> None:
    if device_is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def measure_throughput(kind: str, block="small", batch_size: int = 128, steps: int = 10, warmup: int = 2,
                       T: int = 10, device="cpu", seed: int = 0, image_shape=(1, 28, 28),
                       num_classes: int = 10) -> dict:
    """Training images per second of NoProp-DT ('noprop') or the backprop baseline ('backprop').

    Introduced in notebooks/06_backprop_vs_noprop, section 1. ``warmup`` untimed steps, then
    ``steps`` timed steps of ``training_step`` on random images of ``image_shape`` (the cost of a
    step does not depend on the pixel values). One NoProp-DT step updates all T blocks and the
    classifier once, i.e. it does the same amount of data passing as one backprop step.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps}, {warmup}")
    set_seed(seed)
    model = build_model(kind, image_shape=image_shape, num_classes=num_classes, T=T, block=block).to(device)
    model.train()
    optimizers = model.configure_optimizers()
    data = synthetic_data(batch_size * max(steps + warmup, 1), image_shape, num_classes, seed)
    batches = [(data.x[i * batch_size:(i + 1) * batch_size].to(device),
                data.y[i * batch_size:(i + 1) * batch_size].to(device)) for i in range(steps + warmup)]
    for x, y in batches[:warmup]:
        model.training_step(x, y, optimizers)
    _sync(device)
    t0 = time.perf_counter()
    for x, y in batches[warmup:]:
        model.training_step(x, y, optimizers)
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"kind": kind, "block": block if isinstance(block, str) else str(block), "T": T,
            "batch_size": batch_size, "steps": steps, "warmup": warmup, "seconds": seconds,
            "seconds_per_step": seconds / steps, "images_per_s": steps * batch_size / seconds,
            "threads": torch.get_num_threads(), "device": str(device)}


@torch.no_grad()
def measure_inference_latency(kind: str, block="small", batch_size: int = 1, repeats: int = 20, warmup: int = 3,
                              T: int = 10, device="cpu", noise: bool = True, seed: int = 0,
                              image_shape=(1, 28, 28), num_classes: int = 10) -> dict:
    """Milliseconds to classify one batch: NoProp-DT's T-step chain or the baseline's forward pass.

    Introduced in notebooks/06_backprop_vs_noprop, section 4. Eval mode, no gradients. Both run
    all T blocks one after the other; the chain adds the posterior step (and its noise) per block.
    Reports the median over ``repeats`` and ``ms_per_block`` (median / T).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    set_seed(seed)
    model = build_model(kind, image_shape=image_shape, num_classes=num_classes, T=T, block=block).to(device)
    model.eval()
    x = synthetic_data(batch_size, image_shape, num_classes, seed).x.to(device)
    g = make_generator(device, seed)

    def timed(fn) -> list[float]:
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            out.append(1000 * (time.perf_counter() - t0))
        return out

    whole = timed(lambda: model.predict(x, noise=noise, generator=g))
    med = lambda v: float(sorted(v)[len(v) // 2])  # noqa: E731
    return {"kind": kind, "block": block if isinstance(block, str) else str(block), "T": T,
            "batch_size": batch_size, "noise": noise, "repeats": repeats, "median_ms": med(whole),
            "min_ms": float(min(whole)), "ms_per_block": med(whole) / T, "threads": torch.get_num_threads(),
            "device": str(device)}


# ---------------------------------------------------------------------------------------- memory
def _rss_kib() -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) in KiB from /proc/self/status, or (None, None) where there is none."""
    try:
        vals = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    vals[line.split(":")[0]] = int(line.split()[1])
        return vals.get("VmRSS"), vals.get("VmHWM")
    except OSError:
        return None, None


def _maxrss_bytes(resource) -> int:
    """The process's peak resident size in bytes: ``ru_maxrss`` is in KiB on Linux, in bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else 1024 * int(peak)


def _memory_child(cfg: dict) -> dict:
    """Runs inside the child process of :func:`measure_training_memory`; returns bytes."""
    import resource  # POSIX only: imported here, so that the rest of the module works on Windows

    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    set_seed(cfg["seed"])
    model = build_model(cfg["kind"], image_shape=tuple(cfg["image_shape"]), num_classes=cfg["num_classes"],
                        T=cfg["T"], block=cfg["block"]).to(device)
    model.train()
    optimizers = model.configure_optimizers()
    data = synthetic_data(cfg["batch_size"] * cfg["steps"], tuple(cfg["image_shape"]), cfg["num_classes"],
                          cfg["seed"])
    xs = data.x.to(device).split(cfg["batch_size"])
    ys = data.y.to(device).split(cfg["batch_size"])
    # idle baseline: model, optimizer and data built, no training step yet
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        method = "torch.cuda.max_memory_allocated - memory_allocated after build"
    else:
        method = "VmHWM - VmRSS after build (peak reset via /proc/self/clear_refs)"
        rss, hwm = _rss_kib()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident size (VmHWM) to the current one
            rss, hwm = _rss_kib()
            use_hwm = rss is not None and hwm is not None and hwm <= rss + 1024
        except OSError:
            use_hwm = False
        if use_hwm:
            baseline = 1024 * rss
        else:
            method = "ru_maxrss - ru_maxrss after build (peak NOT reset: may include the build's peak)"
            baseline = _maxrss_bytes(resource)
    t0 = time.perf_counter()
    for x, y in zip(xs, ys):
        model.training_step(x, y, optimizers)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = 1024 * _rss_kib()[1] if use_hwm else _maxrss_bytes(resource)
    seconds = time.perf_counter() - t0
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"baseline_bytes": int(baseline), "peak_bytes": int(peak), "peak_delta_bytes": int(peak - baseline),
            "param_bytes": int(params), "method": method, "seconds": seconds}


def measure_training_memory(kind: str, block="paper", batch_size: int = 128, steps: int = 2, T: int = 10,
                            device="cpu", threads: int | None = None, allocator: str = "fixed", seed: int = 0,
                            image_shape=(1, 28, 28), num_classes: int = 10, timeout: float = 600.0) -> dict:
    """Peak training memory above the idle baseline, measured in a fresh child process.

    Introduced in notebooks/06_backprop_vs_noprop, section 2.

    The child builds the model, its optimizer(s) and ``steps`` random minibatches, records the idle
    baseline, runs ``steps`` training steps, and reports the peak (GPU: allocated bytes; CPU:
    resident bytes) minus that baseline: activations, gradients, optimizer state and temporaries.
    ``allocator='fixed'`` runs the CPU child with :data:`MALLOC_ENV` so that freed tensors leave
    the resident set; ``'default'`` keeps glibc's defaults (module docstring). Returns a dict with
    ``peak_delta_bytes`` (and ``_mib``), ``baseline_bytes``, ``peak_bytes``, ``method`` and the
    configuration.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {MODEL_KINDS}")
    if allocator not in ("fixed", "default"):
        raise ValueError(f"allocator must be 'fixed' or 'default', got {allocator!r}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"need steps >= 1 and batch_size >= 1, got {steps}, {batch_size}")
    cfg = {"kind": kind, "block": block, "batch_size": batch_size, "steps": steps, "T": T, "device": str(device),
           "threads": threads or torch.get_num_threads(), "seed": seed, "image_shape": list(image_shape),
           "num_classes": num_classes}
    env = dict(os.environ)
    for k in MALLOC_ENV:
        env.pop(k, None)
    if allocator == "fixed":
        env.update(MALLOC_ENV)
    env["OMP_NUM_THREADS"] = str(cfg["threads"])
    proc = subprocess.run([sys.executable, "-m", "nplib.speed.parallel", "memory-child", json.dumps(cfg)],
                          env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(cfg)
    out["allocator"] = allocator
    out["malloc_env"] = MALLOC_ENV if allocator == "fixed" else {}
    out["peak_delta_mib"] = out["peak_delta_bytes"] / 2**20
    return out


def saved_activation_peak(kind: str, block="small", batch_size: int = 32, T: int = 10, seed: int = 0,
                          image_shape=(1, 28, 28), num_classes: int = 10) -> dict:
    """The most bytes that autograd keeps for backward at one moment, over one training step.

    Introduced in notebooks/06_backprop_vs_noprop, section 2.

    Every tensor that autograd saves for the backward pass goes through a pack hook
    (``torch.autograd.graph.saved_tensors_hooks``), which adds its bytes to a running total; the
    total drops again when the graph that holds it is freed. The peak of that total is the
    activation memory of the step. It depends only on the shapes, not on the CPU, the allocator or
    the thread count, so it is a property that tests can assert: NoProp-DT frees block t's graph
    before block t+1 starts, so its peak is that of ONE block, while backprop keeps all T blocks'
    activations until its one backward pass. Returns ``{"peak_bytes", "total_bytes", ...}``.
    """
    import weakref

    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {MODEL_KINDS}")
    set_seed(seed)
    model = build_model(kind, image_shape=tuple(image_shape), num_classes=num_classes, T=T, block=block)
    model.train()
    optimizers = model.configure_optimizers()
    data = synthetic_data(batch_size, tuple(image_shape), num_classes, seed)
    live = {"now": 0, "peak": 0, "total": 0}

    class _Held:
        __slots__ = ("tensor", "__weakref__")

        def __init__(self, tensor):
            self.tensor = tensor

    def _release(nbytes):
        live["now"] -= nbytes

    def pack(tensor):
        nbytes = tensor.numel() * tensor.element_size()
        live["now"] += nbytes
        live["total"] += nbytes
        live["peak"] = max(live["peak"], live["now"])
        held = _Held(tensor)
        weakref.finalize(held, _release, nbytes)
        return held

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda held: held.tensor):
        model.training_step(data.x, data.y, optimizers)
    return {"kind": kind, "block": str(block), "T": T, "batch_size": batch_size,
            "peak_bytes": live["peak"], "total_bytes": live["total"],
            "method": "bytes saved for backward (autograd saved-tensor hooks), peak over one training step"}


if __name__ == "__main__":  # the child process of measure_training_memory
    if len(sys.argv) == 3 and sys.argv[1] == "memory-child":
        print(json.dumps(_memory_child(json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: python -m nplib.speed.parallel memory-child '<json config>'")
