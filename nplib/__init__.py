"""nplib: the support package of the NoProp course (Li, Teh, Pascanu 2025, arXiv:2503.24322).

A flat method core, four wings built on it, and two faces (docs/library.md draws the layers).
Imports only go down: a wing may import the core, the core never imports a wing
(tests/test_imports.py checks it).

The core, one idea per module:

* :mod:`nplib.schedules`  - alpha, alpha_bar, SNR, loss weights, a_t, b_t, c_t; cosine, linear, equal mass (01-02)
* :mod:`nplib.embeddings` - W_embed: one-hot, learned, prototype (notebook 01)
* :mod:`nplib.diffusion`  - q(z_t | y), one posterior step, the KL term (notebook 01)
* :mod:`nplib.blocks`     - the denoising block, paper and small (notebook 03)
* :mod:`nplib.models`     - NoProp-DT and the backprop baseline (notebook 04)
* :mod:`nplib.continuous` - NoProp-CT (learned schedule) and NoProp-FM (notebook 05)
* :mod:`nplib.builder`    - the one model builder, by variant name
* :mod:`nplib.train`      - fit / evaluate, checkpoints and resume (notebook 04)
* :mod:`nplib.data`       - datasets as tensors, the data root, quick mode
* :mod:`nplib.evaluation` - classify_batch, per-step accuracy, ablations of the chain (notebook 04)
* :mod:`nplib.devices`    - the one rule for random draws on any device (CPU, CUDA)
* :mod:`nplib.pretrained` - the shipped checkpoints: load by default, retrain on request
* :mod:`nplib.reference`  - the measured results shipped with the package (nplib/results/)

The wings:

* :mod:`nplib.speed`      - faster training that computes the same: fast path, block-parallel, CPU threads
* :mod:`nplib.timeseries` - ETT forecasting with a NoProp autoencoder and its intervals (notebook 07)
* :mod:`nplib.lab`        - studies and measurements: ablation, the chain, init probe, benchmarks, reproduce
* :mod:`nplib.course`     - what only the notebooks need: plots, widgets, diagrams, student copies

The faces: :mod:`nplib.notebook` (the setup cell of every notebook) and :mod:`nplib.cli`
(``python -m nplib train|schedule|forecast|pretrained|bench|reproduce|student|ablation|...``).
"""
from nplib.blocks import BlockConfig, DenoisingBlock, count_parameters
from nplib.data import data_root, load_dataset, load_train_test, smoke_mode
from nplib.diffusion import kl_prior, posterior_step, q_sample
from nplib.embeddings import LabelEmbedding, class_medoids
from nplib.models import BackpropBaseline, NoPropDT
from nplib.schedules import DTSchedule, make_schedule
from nplib.train import evaluate_runs, fit, set_seed

__version__ = "0.1.0"

__all__ = [
    "BlockConfig", "DenoisingBlock", "count_parameters", "data_root", "load_dataset", "load_train_test",
    "smoke_mode", "kl_prior", "posterior_step", "q_sample", "LabelEmbedding", "class_medoids",
    "BackpropBaseline", "NoPropDT", "DTSchedule", "make_schedule", "evaluate_runs", "fit", "set_seed",
]
