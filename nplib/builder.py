"""One model builder: every model that the command line, the checkpoints, ``reproduce``, the ablation
and block-parallel training build comes from :func:`build_model`.

Introduced in notebooks/04_noprop_dt_mnist, section 1.
"""
from __future__ import annotations

from nplib import continuous
from nplib.embeddings import class_medoids
from nplib.models import BackpropBaseline, NoPropDT
from nplib.schedules import make_schedule

__all__ = ["VARIANTS", "build_model"]

#: The variants :func:`build_model` builds.
VARIANTS = ("dt", "backprop", "ct", "fm")


def build_model(variant: str, model: str, image_shape, num_classes: int, T: int, embedding: str,
                embed_dim=None, train=None, schedule: str = "cosine", alpha_bar_max: float = 0.99,
                eta: float | None = None, inference_steps: int = 1000):
    """The model of one variant: ``"dt"`` (NoProp-DT), ``"backprop"`` (the baseline), ``"ct"`` or ``"fm"``.

    Introduced in notebooks/04_noprop_dt_mnist, section 1. ``model`` names the block (``"small"``,
    ``"paper"``, ...), ``embedding`` the label embedding (``"onehot"``, ``"learned"`` with
    ``embed_dim``, or ``"prototype"``, whose class medoids are computed from ``train``). ``eta``
    defaults to the paper's (0.1 for DT, 1 for CT; FM has none).
    """

    prototypes = None
    if embedding == "prototype":
        if train is None:
            raise ValueError("prototype embeddings need the training set to compute class medoids")
        prototypes = class_medoids(train.x, train.y, num_classes, generator=None)
    if variant == "dt":
        sched = make_schedule(schedule, T, alpha_bar_max=alpha_bar_max)
        return NoPropDT(image_shape, num_classes, T=T, block=model, embedding=embedding, schedule=sched,
                        eta=0.1 if eta is None else eta, embed_dim=embed_dim, prototypes=prototypes)
    if variant == "backprop":
        return BackpropBaseline(image_shape, num_classes, T=T, block=model, embedding=embedding,
                                embed_dim=embed_dim, prototypes=prototypes)
    if variant in ("ct", "fm"):
        return continuous.build(variant, model, image_shape, num_classes, embedding=embedding,
                                embed_dim=embed_dim, prototypes=prototypes, eta=eta,
                                inference_steps=inference_steps)
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
