"""nplib: the support package of the NoProp course (Li, Teh, Pascanu 2025, arXiv:2503.24322).

Flat modules, one idea each:

* :mod:`nplib.schedules`  - alpha, alpha_bar, SNR, loss weights and a_t, b_t, c_t (notebooks 01-02)
* :mod:`nplib.embeddings` - W_embed: one-hot, learned, prototype (notebook 01)
* :mod:`nplib.diffusion`  - q(z_t | y), one posterior step, the KL term (notebook 01)
* :mod:`nplib.blocks`     - the denoising block, paper and small (notebook 03)
* :mod:`nplib.models`     - NoProp-DT and the backprop baseline (notebook 04)
* :mod:`nplib.train`      - fit / evaluate, checkpoints and resume (notebook 04)
* :mod:`nplib.data`       - datasets as tensors, the data root, quick mode
* :mod:`nplib.evaluation` - classify_batch, per-step accuracy, ablations of the chain (notebook 04)
* :mod:`nplib.continuous` - NoProp-CT (learned schedule) and NoProp-FM (notebook 05)
* :mod:`nplib.parallel`   - block-parallel training, memory / speed measurements (notebook 06)
* :mod:`nplib.ett`, :mod:`nplib.forecast_baselines`, :mod:`nplib.forecaster`, :mod:`nplib.forecast_intervals`,
  :mod:`nplib.forecast_experiment` - ETT data protocol, baselines, the NoProp forecasting
  autoencoder, prediction intervals, the experiment runner (notebook 07); :mod:`nplib.timeseries`
  re-exports them all
* :mod:`nplib.ablation`   - what the chain contributes: one ablation for every model (notebook 08)
* :mod:`nplib.chain`      - signal shares, the equal-mass schedule, block 1 trained alone (notebook 08)
* :mod:`nplib.cpu`        - CPU speed: malloc tuning, threads capped at the usable CPUs (README)
* :mod:`nplib.plots`, :mod:`nplib.widgets` - figures and interactive explorers (notebooks 01-02)
* :mod:`nplib.devices`    - the one rule for random draws on any device (CPU, CUDA)
* :mod:`nplib.pretrained` - the shipped checkpoints: load by default, retrain on request (notebooks 04, 05, 07)
* :mod:`nplib.reference`  - the measured results shipped with the package (nplib/results/)
* :mod:`nplib.bench`      - the benchmarks of notebook 06 (``python -m nplib bench``)
* :mod:`nplib.fast`       - the batched NoProp-DT training step (README, "Two ways to train NoProp-DT")
* :mod:`nplib.reproduce`  - ``python -m nplib reproduce``: the paper's Tables 1-2 (README)
* :mod:`nplib.notebook`   - the setup cell of every notebook
* :mod:`nplib.student`    - student copies, notebook headers and badges
* :mod:`nplib.cli`        - ``python -m nplib train|schedule|forecast|pretrained|bench|reproduce|student|ablation|...``
"""
from .blocks import BlockConfig, DenoisingBlock, count_parameters
from .data import data_root, load_dataset, load_train_test, smoke_mode
from .diffusion import kl_prior, posterior_step, q_sample
from .embeddings import LabelEmbedding, class_medoids
from .models import BackpropBaseline, NoPropDT
from .schedules import DTSchedule, make_schedule
from .train import evaluate_runs, fit, set_seed

__version__ = "0.1.0"

__all__ = [
    "BlockConfig", "DenoisingBlock", "count_parameters", "data_root", "load_dataset", "load_train_test",
    "smoke_mode", "kl_prior", "posterior_step", "q_sample", "LabelEmbedding", "class_medoids",
    "BackpropBaseline", "NoPropDT", "DTSchedule", "make_schedule", "evaluate_runs", "fit", "set_seed",
]
