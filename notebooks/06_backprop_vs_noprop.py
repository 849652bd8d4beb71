# %% [markdown]
# # 06 · Backprop vs NoProp: memory, speed and block-parallel training
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nplib/noprop-course/blob/main/student/06_backprop_vs_noprop.ipynb) exercises (no solutions) · [solved version in Colab](https://colab.research.google.com/github/nplib/noprop-course/blob/main/notebooks/06_backprop_vs_noprop.ipynb)
#
# NoProp-DT trains each block on its own local loss: no gradient crosses a block boundary. The
# paper sells two consequences: **less training memory** (only one block's activations need to be
# alive) and, in principle, **blocks trained in parallel**. This notebook measures both, plus
# training speed and inference latency, against the backprop baseline built from the same blocks
# (notebook 04, section 5), and says where the savings come from and where they do not.
#
# **Learning goals.** After this notebook you can
# 1. say which parts of training memory NoProp-DT saves (activations, gradients) and which it
#    does not (parameters, optimizer state), and measure peak memory properly (child process,
#    idle baseline, an allocator that gives memory back);
# 2. explain why NoProp-DT is not faster per image on one device, and why inference costs the
#    same as backprop's forward pass (all $T$ blocks still run, one after the other);
# 3. train the blocks of one model in two processes with `torch.distributed` and check that the
#    result is **bit-for-bit** the single-process model;
# 4. name what couples the blocks (the shared classifier, a learned $W_{embed}$) and what the
#    paper claims but does not show.
#
# **Prerequisites.** Notebooks 03 (one denoising block) and 04 (NoProp-DT on MNIST, the backprop
# baseline).
#
# **Run time:** under a minute on a 2-core CPU; the long benchmarks ship as results
# (`python -m nplib bench ...` reruns them: about 10 minutes, `benchmarks/README.md`).

# %% [markdown]
# ## 0. Setup

# %%
import sys

if "google.colab" in sys.modules:  # on Colab, install the course package first
    get_ipython().run_line_magic("pip", "install -q 'nplib[colab] @ git+https://github.com/nplib/noprop-course'")
import matplotlib.pyplot as plt
import torch

import nplib
from nplib import NoPropDT, load_dataset
from nplib.lab.bench import describe, load_bench
from nplib.notebook import setup
from nplib.speed.parallel import (check_parallelisable, max_abs_difference, measure_inference_latency,
                                  measure_throughput, models_equal, saved_activation_peak, split_blocks,
                                  train_block_parallel, train_single)

S = setup(seed=0)          # prints device, hardware, data root, full/quick mode
SMOKE = S.smoke            # quick mode: smaller live measurements
DEVICE = str(S.device)     # the live measurements of sections 1, 2 and 4 run here
T = 10


def bench_result(name: str) -> dict:
    """The shipped result of ``python -m nplib bench NAME``, with where and how it was measured."""
    data = load_bench(name)          # nplib/results/bench_<name>.json, through nplib.reference
    print(describe(data))
    return data


# %% [markdown]
# ## 1. Training speed: images per second
#
# One NoProp-DT training step (Algorithm 1) takes a minibatch and, for $t = 1..T$, runs block $t$
# forward on $(x, z_{t-1})$ with $z_{t-1} \sim q(z_{t-1}\mid y)$, backward, and an AdamW step; then
# updates the classifier on $z_T \sim q(z_T \mid y)$. One backprop step runs the chain of the same
# $T$ blocks forward, then backward through all of them, then one AdamW step. Both touch every
# block once per minibatch, so **images per second** compare the same amount of training.
#
# On one device nothing is saved in arithmetic: the same $T$ block forwards and backwards happen
# either way. NoProp-DT adds $T$ separate optimizer steps, $T$ classifier updates and some
# bookkeeping per minibatch. The live cell times a few steps of the small block; the plot shows
# the benchmark (small and paper block, batch 128).

# %%
# NBVAL_IGNORE_OUTPUT
# (for `pytest --nbval`: a live measurement on this machine; it varies from run to run)
steps = 2 if SMOKE else 6
live_speed = [measure_throughput(kind, "small", batch_size=128, steps=steps, warmup=1, T=T, device=DEVICE)
              for kind in ("noprop", "backprop")]
for r in live_speed:
    print(f"{r['kind']:8s} small block, batch 128, {r['steps']} steps, {r['threads']} threads: "
          f"{r['images_per_s']:7.1f} images/s")
assert all(r["images_per_s"] > 0 for r in live_speed)

# %%
bench = bench_result("throughput")
rows = bench["rows"]
blocks = [b for b in ("small", "paper") if any(r["block"] == b for r in rows)]
fig, ax = plt.subplots(figsize=(6, 3.2))
for i, kind in enumerate(("noprop", "backprop")):
    vals = [next(r["images_per_s"] for r in rows if r["block"] == b and r["kind"] == kind) for b in blocks]
    ax.bar([j + 0.38 * i for j in range(len(blocks))], vals, width=0.36,
           label="NoProp-DT" if kind == "noprop" else "backprop")
    for j, v in enumerate(vals):
        ax.text(j + 0.38 * i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
ax.set_xticks([j + 0.19 for j in range(len(blocks))], [f"{b} block" for b in blocks])
ax.set_ylabel("training images / s")
ax.set_title(f"Training throughput, batch {bench['config']['batch_size']}, T = {bench['config']['T']}, "
             f"{bench['config']['device']}")
ax.legend()
plt.show()
for r in rows:
    print(f"{r['kind']:8s} {r['block']:5s} {r['images_per_s']:7.1f} images/s "
          f"({r['relative_to_backprop']:.2f} x backprop)")
plt.show()

# %% [markdown]
# Compare the two block sizes in the table. A step of the small block is short, so NoProp-DT's
# fixed per-step costs ($T$ optimizer steps, $T$ classifier updates, $2T$ switches of random
# stream, $T$ loss reductions) are a large part of it and NoProp-DT runs slower than backprop;
# with the paper block the convolutions dominate and the two run at about the same speed. On one
# device, block-wise training does not make training faster.

# %% [markdown]
# ## 2. Peak training memory
#
# **Where the saving comes from.** Training memory above the model itself has four parts:
#
# | part | backprop | NoProp-DT (one block at a time) |
# |---|---|---|
# | parameters $P$ | all $T$ blocks | the same |
# | AdamW state ($2P$) | all blocks | the same (every block has its own AdamW) |
# | gradients | all $P$ at once | one block's, freed before the next block starts |
# | activations saved for backward | all $T$ blocks' (the chain) | one block's |
#
# So only activations and gradients shrink, by up to a factor $T$, and only because
# `NoPropDT.training_step` finishes block $t$'s forward, backward and update before block $t+1$
# starts. Summing the $T$ block losses and calling `backward()` once would keep all activations
# alive and lose the saving. With large batches activations dominate, and the ratio
# NoProp / backprop approaches $1/T$ from above; with small batches the optimizer state (which is
# not saved) dominates and the ratio moves towards 1.
#
# **How it is measured.** Each measurement runs in a fresh child process (so one run's memory
# cannot leak into the next) that builds the model, the optimizer(s) and the minibatches, records
# the **idle baseline**, runs two training steps and reports the **peak minus the baseline**.
# On a GPU that is `torch.cuda.max_memory_allocated`. On a CPU it is the peak resident set size
# (`VmHWM`, reset after the build through `/proc/self/clear_refs`). One trap: glibc's `malloc`
# keeps freed memory in its arenas (after the first large free it raises its mmap threshold), so
# freed activations can stay resident and blur the comparison. The child therefore runs with
# `MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=65536 MALLOC_ARENA_MAX=1`: every tensor of
# 64 KiB or more is its own mapping and returns to the system when freed. The benchmark also
# measures with glibc's defaults to show the difference.
#
# **Counted here, measured in the benchmark.** The cell below does not measure the process: it
# counts the bytes that autograd keeps for backward, because every saved tensor passes a hook
# (`nplib.speed.parallel.saved_activation_peak`, with `torch.autograd.graph.saved_tensors_hooks`).
# That count depends only on the shapes, so it is the same on every CPU, GPU and operating system,
# and it isolates the one part of the table above that block-wise training changes. The
# whole-process peak (parameters, optimizer state, gradients, the allocator) is what the benchmark
# measures as described above; its shipped result is plotted after it.

# %%
batches = (64,) if SMOKE else (64, 256)
saved = {(kind, b): saved_activation_peak(kind, "small", batch_size=b, T=T)
         for b in batches for kind in ("noprop", "backprop")}
for b in batches:
    nop, bp = saved[("noprop", b)], saved[("backprop", b)]
    print(f"small block, batch {b:3d}: activations saved for backward at the peak: NoProp-DT "
          f"{nop['peak_bytes'] / 2**20:6.1f} MiB, backprop {bp['peak_bytes'] / 2**20:6.1f} MiB "
          f"-> ratio {nop['peak_bytes'] / bp['peak_bytes']:.3f} (1/T = {1 / T:.3f})")
    assert nop["peak_bytes"] < bp["peak_bytes"] / (T / 2), "NoProp-DT keeps one block's activations, backprop all T"

# %%
bench = bench_result("memory")
rows = [r for r in bench["rows"] if r["allocator"] == "fixed"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for block, style in (("paper", "-"), ("small", "--")):
    for kind, color in (("noprop", "C0"), ("backprop", "C1")):
        pts = sorted((r["batch_size"], r["peak_delta_mib"]) for r in rows if r["block"] == block and r["kind"] == kind)
        if pts:
            axes[0].plot(*zip(*pts), style, marker="o", color=color,
                         label=f"{'NoProp-DT' if kind == 'noprop' else 'backprop'}, {block} block")
    pts = sorted((r["batch_size"], r["noprop_over_backprop"]) for r in rows
                 if r["block"] == block and r["kind"] == "noprop")
    if pts:
        axes[1].plot(*zip(*pts), style, marker="o", color="C2", label=f"{block} block")
axes[0].set(xscale="log", yscale="log", xlabel="batch size", ylabel="peak - idle (MiB)",
            title=f"Peak training memory above idle ({bench['config']['device']})")
axes[0].legend(fontsize=8)
axes[1].axhline(1 / bench["config"]["T"], color="gray", ls=":", label="1/T: the limit if only activations counted")
axes[1].set(xscale="log", ylim=(0, 1), xlabel="batch size", ylabel="NoProp-DT / backprop",
            title="Memory ratio")
axes[1].legend(fontsize=8)
for ax in axes:   # batch sizes as plain numbers
    ax.set_xticks(sorted({r["batch_size"] for r in rows}), [str(b) for b in sorted({r["batch_size"] for r in rows})])
    ax.minorticks_off()
plt.tight_layout()
plt.show()
# what the plot does not show: the same runs with glibc's default allocator settings
print("the same runs with glibc's default allocator (in brackets: the fixed settings of the plot)")
for r in sorted((r for r in bench["rows"] if r["allocator"] == "default" and r["kind"] == "noprop"),
                key=lambda r: (r["block"], r["batch_size"])):
    def peak(allocator, kind):
        return next(f["peak_delta_mib"] for f in bench["rows"] if (f["block"], f["batch_size"], f["allocator"], f["kind"])
                    == (r["block"], r["batch_size"], allocator, kind))
    fixed_ratio = next(f["noprop_over_backprop"] for f in rows if (f["block"], f["batch_size"], f["kind"])
                       == (r["block"], r["batch_size"], "noprop"))
    print(f"  {r['block']:5s} block, batch {r['batch_size']}: NoProp-DT {peak('default', 'noprop'):6.1f} MiB "
          f"({peak('fixed', 'noprop'):6.1f}), backprop {peak('default', 'backprop'):6.1f} MiB "
          f"({peak('fixed', 'backprop'):6.1f}); ratio {r['noprop_over_backprop']:.3f} ({fixed_ratio:.3f})")
plt.show()

# %% [markdown]
# The lines printed under the plot are the same measurements with glibc's default settings, next
# to the plot's numbers for the same block and batch: with the defaults, freed activations partly
# stay resident, NoProp-DT's peak above idle grows and the ratio moves towards 1. A memory
# comparison on a CPU that does not control the allocator understates the effect; on a GPU, PyTorch's caching allocator keeps freed blocks too, but
# `max_memory_allocated` counts only live tensors, which is why the benchmark reads that counter
# and not what `nvidia-smi` shows.

# %% [markdown]
# ## 3. Block-parallel training
#
# Block $t$'s loss needs only $x$, $y$, block $t$'s parameters and $W_{embed}$: its input
# $z_{t-1}$ is a noised **label**, not block $t-1$'s output. With one-hot embeddings $W_{embed}$ is
# fixed, and the classifier loss (on $z_T \sim q(z_T\mid y)$) does not depend on any block. So the
# blocks can be trained by different processes that never exchange a gradient; they only need
# the same minibatches. `nplib.speed.parallel.train_block_parallel` does this with
# `torch.distributed` (gloo on CPU, NCCL on GPU; the processes are started by torch's own launcher,
# the one behind `torchrun`, and talk over 127.0.0.1 only; on several GPUs or machines the same code
# runs as `torchrun --nproc-per-node N -m nplib train ...`):
#
# * every process seeds the global generator as the single process does, builds the same initial
#   model and iterates over the same minibatches;
# * process $r$ trains its blocks `split_blocks(T, world_size)[r]`; rank 0 also the classifier;
# * at the end every tensor of block $t$ (parameters and BatchNorm statistics) is broadcast from
#   the process that trained it.
#
# Why the result is **exactly** the single-process model: `training_step` draws one number per
# minibatch from the global generator and gives block $t$ its own random stream seeded from it,
# so block $t$ sees the same noise and dropout masks in every process. The parallel run below is
# compared with `torch.equal` on every tensor to the single process run with the same number of
# threads per process (1), itself started as a fresh process (`fresh_process=True`): a notebook
# kernel that has already run convolutions of these shapes with more threads may have cached
# kernels that sum in another order. This demonstration runs on the CPU even on a GPU runtime: bit-for-bit
# equality needs the same arithmetic in both runs (cuDNN may pick different kernels), and the two
# processes would share the one GPU that Colab offers.
#
# **What couples blocks.** A *learned* $W_{embed}$ is read by every block and receives gradients
# from every block's loss and from the classifier's: block-parallel training would need those
# gradients exchanged after every block step. `check_parallelisable` refuses such models:

# %%
print(split_blocks(T, 2))
try:
    check_parallelisable(NoPropDT(T=T, block="small", embedding="learned"))
except ValueError as err:
    print("refused:", err)

# %%
PAR_DEVICE = "cpu"   # see above: the exactness check needs the same arithmetic in both runs
n_live = 256 if SMOKE else 1024
train = load_dataset("mnist", train=True).subset(n_live, seed=0)
kw = {"image_shape": train.image_shape, "num_classes": 10, "T": T, "block": "small"}
# the reference runs in a fresh process too (1 thread), so both sides plan their convolutions alike
single, single_s = train_single(kw, train, epochs=1, batch_size=64, seed=0, threads=1, device=PAR_DEVICE,
                                fresh_process=True, timeout=300)
parallel, info = train_block_parallel(kw, train, epochs=1, batch_size=64, seed=0, world_size=2,
                                      threads_per_process=1, device=PAR_DEVICE, timeout=300)
same, differing = models_equal(parallel, single)
print(f"{n_live} MNIST images, batch 64, small block, T = {T}")
print(f"single process, 1 thread : {single_s:6.2f} s training")
for r in info["ranks"]:
    print(f"rank {r['rank']} (blocks {r['blocks']}{' + classifier' if r['classifier'] else ''}, 1 thread): "
          f"{r['train_seconds']:6.2f} s training, {r['steps']} minibatches")
print(f"parallel wall time with process start-up and gather: {info['wall_seconds']:.1f} s ({info['backend']})")
print("every parameter and buffer equal (torch.equal):", same, differing[:3])
assert same, (f"block-parallel training differs from the single process in {differing[:5]}, "
              f"by at most {max_abs_difference(parallel, single):.3g}")

# %% [markdown]
# With so few minibatches the process start-up (spawning, importing torch, joining the process
# group) dwarfs the training time. The benchmark below trains longer and compares **two ways of
# using the same two cores**: one process with 2 torch threads (intra-op parallelism inside each
# convolution) against two processes with 1 thread each (block parallelism). It also reports the
# single process with 1 thread, to separate "two cores instead of one" from "how the two cores
# are used".

# %%
bench = bench_result("parallel")
rows = bench["rows"]
blocks = [b for b in ("small", "paper") if any(r["block"] == b for r in rows)]
fig, axes = plt.subplots(1, len(blocks), figsize=(5.5 * len(blocks), 3.2), squeeze=False)
for ax, block in zip(axes[0], blocks):
    rs = [r for r in rows if r["block"] == block]
    labels = [r["run"] for r in rs]
    ax.barh(labels, [r["train_seconds"] for r in rs], color="C0", label="training")
    for i, r in enumerate(rs):
        if r.get("wall_seconds"):
            ax.barh(i, r["wall_seconds"] - r["train_seconds"], left=r["train_seconds"], color="C7",
                    label="start-up + gather")
    ax.set(xlabel="seconds", title=f"{block} block: {rs[0]['images']} images, batch {rs[0]['batch_size']}")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for r in rows:
    if r["processes"] > 1:
        print(f"{r['block']:5s}: speed-up of 2 processes x 1 thread over 1 process x "
              f"{max(bench['config']['single_process_threads'])} threads = "
              f"{r['speedup_vs_single_all_threads']:.2f} (training time), "
              f"{r['speedup_vs_single_all_threads_incl_startup']:.2f} counting start-up; over 1 process x 1 "
              f"thread = {r['speedup_vs_single_1_thread']:.2f}; bit-identical to 1 process x 1 thread: "
              f"{r['equal_to_single_1_thread']}")
plt.show()

# %% [markdown]
# Read the numbers honestly:
#
# * the parallel model equals the single-process model **bit for bit** when both use 1 thread per
#   process. Against the 2-thread single process it is not equal: the number of threads changes
#   the order of floating-point sums inside a convolution, and these last-bit differences grow
#   over the training steps (the benchmark file records the largest parameter difference after
#   one epoch, `max_abs_diff_to_single_2_threads`, of order 1e-2). Exactness needs the same
#   arithmetic, not just the same seed;
# * the speed-up is what two processes on two cores buy **over using the same two cores with
#   threads** (torch's intra-op threads use two cores poorly for these small convolutions).
#   Counting process start-up (spawn, importing torch, joining the process group, several
#   seconds) the parallel run of this short benchmark is slower; start-up is paid once, so it
#   only pays off for long runs;
# * **the paper claims this parallelism but does not show it**: it trains all blocks in one
#   process and reports no parallel run or timing. On a GPU cluster each block could live on its
#   own device; the exactness argument above is the same (on a GPU, up to cuDNN's
#   non-deterministic kernels).

# %% [markdown]
# ## 4. Inference: every block still runs
#
# NoProp-DT classifies an image by running the chain
# $z_t = a_t\,\hat u_t(z_{t-1}, x) + b_t z_{t-1} + \sqrt{c_t}\,\epsilon_t$ for $t = 1..T$, then the
# classifier on $z_T$: all $T$ blocks, one after the other, exactly like the backprop baseline's
# forward pass over the same blocks. "No forward propagation" in the paper's title refers to
# training; at inference nothing is saved.

# %%
# NBVAL_IGNORE_OUTPUT
# (for `pytest --nbval`: a live measurement on this machine; it varies from run to run)
repeats = 5 if SMOKE else 20
live_lat = [measure_inference_latency(kind, "small", batch_size=1, repeats=repeats, warmup=2, T=T, device=DEVICE,
                                      noise=noise) for kind, noise in (("noprop", True), ("backprop", False))]
for r in live_lat:
    print(f"{r['kind']:8s} (noise={r['noise']}) batch 1: {r['median_ms']:6.2f} ms = {r['ms_per_block']:.2f} ms x T")

# %%
bench = bench_result("inference")
rows = bench["rows"]
groups = sorted({(r["block"], r["batch_size"]) for r in rows}, key=lambda g: (g[0] != "small", g[1]))
variants = [("noprop", True, "NoProp-DT chain (noise)"), ("noprop", False, "NoProp-DT chain (noise-free)"),
            ("backprop", False, "backprop forward")]
fig, ax = plt.subplots(figsize=(8, 3.2))
for i, (kind, noise, label) in enumerate(variants):
    vals = [next(r["median_ms"] / r["batch_size"] for r in rows if (r["block"], r["batch_size"]) == g
                 and r["kind"] == kind and r["noise"] == noise) for g in groups]
    ax.bar([j + 0.27 * i for j in range(len(groups))], vals, width=0.25, label=label)
ax.set_xticks([j + 0.27 for j in range(len(groups))], [f"{b}, batch {n}" for b, n in groups])
ax.set(yscale="log", ylabel="ms per image (median)", title=f"Inference latency, T = {bench['config']['T']}")
ax.legend(fontsize=8)
plt.show()
for r in rows:
    print(f"{r['block']:5s} batch {r['batch_size']:3d} {r['kind']:8s} noise={r['noise']!s:5s} "
          f"{r['median_ms']:8.2f} ms  ({r['relative_to_backprop']:.2f} x backprop)")
plt.show()

# %% [markdown]
# ## 5. Summary
#
# * **Memory**: NoProp-DT saves activation and gradient memory, because one block's forward,
#   backward and update finish before the next block starts; parameters and optimizer state are
#   not saved. At large batches the ratio approaches $1/T$ (section 2).
# * **Speed on one device**: no saving; a NoProp-DT step does the same block forwards and
#   backwards as backprop plus $T$ separate optimizer and classifier updates (section 1).
# * **Parallel training**: possible because no gradient crosses a block; with one-hot
#   embeddings the result is exactly the single-process model. The shared classifier is trained by
#   one process (it depends on no block); a learned $W_{embed}$ couples the blocks and is refused.
#   The paper claims this parallelism; it does not demonstrate it (section 3).
# * **Inference**: the chain runs every block in sequence, as the backprop forward pass does
#   (section 4).

# %% [markdown]
# ## 6. Exercises
#
# Each exercise has a cell that prepares what it needs and defines a check, a cell with the function
# to write (it raises `NotImplementedError` until you fill it in, then the check runs on your
# version), and the solution.
#
# **Exercise 1 (memory model).** From the benchmark's paper-block rows, estimate one block's
# activation memory $A$ from NoProp-DT's measured peak ($\approx 2P + P/T + A$, with
# $P$ = `param_bytes`: AdamW state, one block's gradients, one block's activations) and predict
# backprop's peak ($\approx 2P + P + T A$: AdamW state, all gradients, all $T$ blocks'
# activations). How close is the prediction to the measurement?

# %%
mem = bench_result("memory")
paper_rows = sorted((r for r in mem["rows"] if r["block"] == "paper" and r["allocator"] == "fixed"),
                    key=lambda r: r["batch_size"])
paper_pairs = [(next(r for r in paper_rows if r["batch_size"] == b and r["kind"] == "noprop"),
                next(r for r in paper_rows if r["batch_size"] == b and r["kind"] == "backprop"))
               for b in sorted({r["batch_size"] for r in paper_rows})]


def check_memory_model(predict) -> None:
    """Plot predicted against measured backprop peaks; the model must get the order of magnitude."""
    batches = [nop["batch_size"] for nop, _ in paper_pairs]
    measured = [bp["peak_delta_mib"] for _, bp in paper_pairs]
    predicted = [predict(nop["peak_delta_bytes"], nop["param_bytes"], mem["config"]["T"]) / 2**20
                 for nop, _ in paper_pairs]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(batches, measured, "o-", label="backprop, measured")
    ax.plot(batches, predicted, "s--", label="backprop, predicted from NoProp-DT")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="peak - idle (MiB)",
           title="Exercise 1: paper block, memory model")
    ax.legend(fontsize=8)
    plt.show()
    for b, m, p_ in zip(batches, measured, predicted):
        print(f"batch {b:4d}: predicted {p_:6.0f} MiB, measured {m:6.0f} MiB, ratio {p_ / m:.2f}")
    assert all(0.5 < p_ / m < 2.5 for m, p_ in zip(measured, predicted)), "prediction off by more than 2.5x"


# %% tags=["raises-exception"]
def predict_backprop_peak(noprop_peak: float, param_bytes: float, T: int) -> float:
    """Backprop's predicted peak above idle (bytes) from NoProp-DT's measured one."""
    raise NotImplementedError("estimate A from NoProp-DT's peak, then return 3 P + T A")


check_memory_model(predict_backprop_peak)


# %% tags=["solution"]
def predict_backprop_peak(noprop_peak: float, param_bytes: float, T: int) -> float:
    """Backprop's predicted peak above idle (bytes) from NoProp-DT's measured one."""
    # NoProp-DT: peak = 2P (AdamW) + P/T (one block's gradients) + A (one block's activations)
    A = noprop_peak - 2 * param_bytes - param_bytes / T
    # backprop: peak = 2P (AdamW) + P (all gradients) + T A (all blocks' activations)
    return 3 * param_bytes + T * A


check_memory_model(predict_backprop_peak)
plt.show()

# %% [markdown]
# The model is rough: NoProp-DT's peak also holds temporaries that exist once per backward pass
# (gradients of the activations, workspace of the convolutions), and multiplying them by $T$
# over-counts; backprop's measured peak is then below the prediction, most at small batches where
# such fixed costs weigh most. The order of magnitude, and the factor of about $T$ on the
# activations, are right.

# %% [markdown]
# **Exercise 2 (the coupling).** Show that a learned $W_{embed}$ couples the blocks: compute the
# gradient of block 1's loss with respect to $W_{embed}$ and check that it is not zero (with
# one-hot embeddings $W_{embed}$ is a buffer and has no gradient at all).

# %%
learned = NoPropDT(T=T, block="small", embedding="learned").to(S.device)
onehot = NoPropDT(T=T, block="small", embedding="onehot").to(S.device)
x_few, y_few = train.x[:32].to(S.device), train.y[:32].to(S.device)


def check_coupling(grad_fn) -> None:
    g = grad_fn(learned, x_few, y_few, t=1)
    print(f"|d L_1 / d W_embed| = {g.norm():.4f}  (non-zero: block 1 and every other block share W_embed)")
    assert g.shape == learned.embedding.W_embed.shape and g.norm() > 0
    assert not onehot.embedding.W_embed.requires_grad, "one-hot W_embed should be a fixed buffer"
    print("one-hot W_embed requires_grad:", onehot.embedding.W_embed.requires_grad)


# %% tags=["raises-exception"]
def grad_of_block_loss_wrt_W_embed(model: NoPropDT, x: torch.Tensor, y: torch.Tensor, t: int = 1) -> torch.Tensor:
    """d (block t's loss) / d W_embed."""
    raise NotImplementedError("use model.block_loss(t, x, y) and torch.autograd.grad")


check_coupling(grad_of_block_loss_wrt_W_embed)


# %% tags=["solution"]
def grad_of_block_loss_wrt_W_embed(model: NoPropDT, x: torch.Tensor, y: torch.Tensor, t: int = 1) -> torch.Tensor:
    """d (block t's loss) / d W_embed."""
    loss = model.block_loss(t, x, y)
    (grad,) = torch.autograd.grad(loss, model.embedding.W_embed)
    return grad


check_coupling(grad_of_block_loss_wrt_W_embed)

# %% [markdown]
# **Exercise 3 (parallel efficiency).** From the shipped parallel benchmark, compute for each block
# size the parallel efficiency of the 2-process run relative to one process with one thread:
# (single-process time) / (processes x parallel time). What limits it at 1?

# %%
par = bench_result("parallel")


def check_efficiency(efficiency) -> None:
    for r in par["rows"]:
        if r["processes"] > 1:
            one = next(o for o in par["rows"] if o["block"] == r["block"] and o["processes"] == 1
                       and o["threads_per_process"] == 1)
            eff = efficiency(one["train_seconds"], r["train_seconds"], r["processes"])
            print(f"{r['block']:5s} block: {one['train_seconds']:.2f} s on 1 process x 1 thread, "
                  f"{r['train_seconds']:.2f} s on {r['processes']} processes: efficiency {eff:.2f}")
            # the benchmark stored the speed-up over 1 process x 1 thread: efficiency = speed-up / processes
            assert abs(eff - r["speedup_vs_single_1_thread"] / r["processes"]) < 1e-9


# %% tags=["raises-exception"]
def parallel_efficiency(single_seconds: float, parallel_seconds: float, processes: int) -> float:
    """Speed-up per process: 1 means every process did useful work all the time."""
    raise NotImplementedError


check_efficiency(parallel_efficiency)


# %% tags=["solution"]
def parallel_efficiency(single_seconds: float, parallel_seconds: float, processes: int) -> float:
    """Speed-up per process: 1 means every process did useful work all the time."""
    # efficiency = (t_single / t_parallel) / processes
    return single_seconds / (processes * parallel_seconds)


check_efficiency(parallel_efficiency)

# %% [markdown]
# Below 1: every process loads and indexes every minibatch, rank 0 also trains the classifier
# (uneven work), the two processes share memory bandwidth and caches. Above 1 (it can happen, as
# for the small block here): each process works on half the blocks and their AdamW state, a
# smaller working set that fits the caches better than the single process's; and one timing on a
# shared machine varies by several percent.
