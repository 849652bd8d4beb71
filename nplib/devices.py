r"""Where random numbers are drawn: ONE rule for every random draw of nplib.

Behind notebooks/04_noprop_dt_mnist, section 3 (a seeded generator for the chain on the
model's device) and every sampler of notebooks 04 and 05; no notebook calls it directly.

**The rule.** A draw that joins tensors on device D (the noise ``z_0``, the ``eps`` of a step,
a permutation, the times ``t`` of a minibatch):

* with ``generator=None``: drawn directly on D, from D's default generator (``torch.manual_seed``
  seeds it). This is what training does;
* with an explicit ``generator``: drawn ON THE GENERATOR'S DEVICE, with that generator, and then
  moved to D. A CPU generator (``torch.Generator().manual_seed(0)``) is therefore accepted for
  tensors on any device, and gives the same numbers on the CPU and on a GPU: the chain of a
  model on Colab's GPU starts from the same ``z_0`` as on a laptop. A generator on the device
  (``torch.Generator(device).manual_seed(0)``, what :func:`make_generator` returns) draws there,
  with no copy, but a CUDA generator gives other numbers than a CPU one.

torch itself refuses ``torch.randn(..., generator=cpu_generator, device="cuda")`` ("Expected a
'cuda' device type for generator"); every random draw of the library goes through the functions
below, so that this cannot happen. On the CPU they make exactly the calls the library made before
(the same numbers in the same order).

Schedules follow the same idea: a :class:`~nplib.schedules.DTSchedule` is a float64 CPU object read
as Python floats (they combine with tensors on any device and of any dtype), and the CT learned
schedule computes on the device and in the dtype of the times ``t`` it is given
(:class:`~nplib.continuous.LearnedSchedule`).
"""
from __future__ import annotations

import torch

__all__ = ["randn", "randn_like_on", "rand", "randperm", "make_generator", "draw_device", "model_device"]


def _as_device(device) -> torch.device:
    # None: torch's default device (the CPU unless torch.set_default_device changed it)
    return torch.get_default_device() if device is None else torch.device(device)


def _same_device(a: torch.device, b: torch.device) -> bool:
    # "cuda" and "cuda:0" name the same device when one of them has no index
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def draw_device(generator: torch.Generator | None, device) -> torch.device:
    """The device a draw for tensors on ``device`` is made on: the generator's, else ``device``.

    The rule of this module (its docstring); ``device=None`` is torch's default device.
    """
    return _as_device(device) if generator is None else generator.device


def _finish(sample: torch.Tensor, device: torch.device) -> torch.Tensor:
    return sample if _same_device(sample.device, device) else sample.to(device)


def randn(*size, generator: torch.Generator | None = None, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.randn(*size)`` for tensors on ``device``, drawn by the module's rule.

    The noise ``z_0`` and ``eps`` of every sampler (notebooks 04 and 05). ``size`` may be given as
    one tuple; ``dtype=None`` is torch's default dtype, as for ``torch.randn``.
    """
    device = _as_device(device)
    size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
    # eps ~ N(0, I), drawn where the generator lives
    return _finish(torch.randn(size, generator=generator, device=draw_device(generator, device), dtype=dtype),
                   device)


def randn_like_on(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise of the shape, dtype and device of ``like`` (the module's rule).

    The ``eps`` of :func:`nplib.diffusion.q_sample` and :func:`nplib.diffusion.posterior_step`.
    """
    return randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def rand(*size, generator: torch.Generator | None = None, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.rand(*size)`` (uniform on [0, 1)) for tensors on ``device``, drawn by the module's rule."""
    device = _as_device(device)
    size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
    return _finish(torch.rand(size, generator=generator, device=draw_device(generator, device), dtype=dtype),
                   device)


def randperm(n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A random permutation of ``0 .. n-1`` for tensors on ``device``, drawn by the module's rule."""
    device = _as_device(device)
    return _finish(torch.randperm(n, generator=generator, device=draw_device(generator, device)), device)


def make_generator(device, seed: int) -> torch.Generator:
    """A generator seeded with ``seed`` on ``device`` (on the CPU for devices that have none, e.g. meta).

    Used by the seeded evaluation runs of notebooks/04_noprop_dt_mnist, section 4
    (:func:`nplib.train.evaluate_runs`).
    """
    device = _as_device(device)
    try:
        return torch.Generator(device=device).manual_seed(seed)
    except RuntimeError:  # "META device type not an accelerator": draw on the CPU, then move
        return torch.Generator().manual_seed(seed)


def model_device(model) -> torch.device:
    """The device of a model's first parameter or buffer (the CPU for a model without any)."""
    for attr in ("parameters", "buffers"):
        for t in getattr(model, attr, lambda: ())():
            return t.device
    return torch.device("cpu")
