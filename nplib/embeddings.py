r"""Class embeddings ``W_embed`` (m classes x d dimensions); ``u_y`` is row ``y``.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 1.

Three kinds, as in the paper:

* ``onehot``: the fixed identity, d = m. Not trained.
* ``learned``: d = 20 by default, trained with the model. Initialised orthogonal: for m <= d the
  rows are orthonormal (every pair of classes equally far apart). Left open by the paper for m > d
  (CIFAR-100 with d = 20): rows cannot all be orthogonal; ``torch.nn.init.orthogonal_`` then gives
  orthonormal COLUMNS, which is the choice made here.
* ``prototype``: d = C*H*W, each class initialised to its medoid training image: the image with the
  smallest median Euclidean distance to the other images of its class. ``z`` is then an image
  (stored flat) and the blocks give it a convolutional path of its own. Trained, like ``learned``.
"""
from __future__ import annotations

import torch
from torch import nn

from nplib.devices import draw_device, randperm

__all__ = ["LabelEmbedding", "class_medoids", "EMBEDDING_KINDS"]

EMBEDDING_KINDS = ("onehot", "learned", "prototype")


def class_medoids(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  max_per_class: int | None = 2000, generator: torch.Generator | None = None) -> torch.Tensor:
    """The medoid image of each class: smallest median distance to the other images of its class.

    Introduced in notebooks/04_noprop_dt_mnist (prototype embeddings). ``images`` is (N, C, H, W),
    the result (num_classes, C, H, W). ``max_per_class`` caps the images per class (a random subset,
    drawn with ``generator``) so that the N x N distance matrix stays small; ``None`` uses all.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    out = []
    for k in range(num_classes):
        idx = torch.nonzero(labels == k).flatten()
        if idx.numel() == 0:
            raise ValueError(f"class {k} has no images: cannot compute its medoid")
        if max_per_class is not None and idx.numel() > max_per_class:
            # drawn where ``generator`` lives (the CPU without one), then joins idx (nplib.devices)
            perm = randperm(idx.numel(), generator=generator, device=draw_device(generator, "cpu"))
            idx = idx[perm.to(idx.device)[:max_per_class]]
        flat = images[idx].flatten(1).double()
        dist = torch.cdist(flat, flat)  # (n, n) Euclidean distances
        # the median over the OTHER images: drop the zero on the diagonal
        n = dist.shape[0]
        if n > 1:
            off = dist[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
            best = int(off.median(dim=1).values.argmin())
        else:
            best = 0
        out.append(images[idx[best]])
    return torch.stack(out)


class LabelEmbedding(nn.Module):
    """Holds ``W_embed`` and returns ``u_y = W_embed[y]``.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 1.

    ``image_shape`` is set for prototype embeddings (the shape of ``z`` seen as an image) and is
    ``None`` otherwise. ``W_embed`` is a buffer for one-hot (never trained) and a Parameter for the
    learned kinds.
    """

    def __init__(self, kind: str, num_classes: int, dim: int | None = None,
                 prototypes: torch.Tensor | None = None):
        super().__init__()
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"unknown embedding kind {kind!r}; choose one of {EMBEDDING_KINDS}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.kind = kind
        self.num_classes = num_classes
        self.image_shape: tuple[int, ...] | None = None
        if kind == "onehot":
            if dim not in (None, num_classes):
                raise ValueError(f"one-hot embeddings have dim = num_classes = {num_classes}, got dim={dim}")
            self.register_buffer("W_embed", torch.eye(num_classes))
        elif kind == "learned":
            dim = 20 if dim is None else dim
            if dim < 1:
                raise ValueError(f"dim must be >= 1, got {dim}")
            W = torch.empty(num_classes, dim)
            nn.init.orthogonal_(W)  # orthonormal rows when m <= d, orthonormal columns otherwise
            self.W_embed = nn.Parameter(W)
        else:  # prototype
            if prototypes is None:
                raise ValueError("prototype embeddings need `prototypes` (num_classes, C, H, W); "
                                 "compute them with nplib.embeddings.class_medoids")
            if prototypes.ndim != 4 or prototypes.shape[0] != num_classes:
                raise ValueError(f"prototypes must be ({num_classes}, C, H, W), got {tuple(prototypes.shape)}")
            self.image_shape = tuple(prototypes.shape[1:])
            self.W_embed = nn.Parameter(prototypes.flatten(1).clone().float())

    @property
    def dim(self) -> int:
        return self.W_embed.shape[1]

    @property
    def trainable(self) -> bool:
        return isinstance(self.W_embed, nn.Parameter)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``u_y``: rows of ``W_embed`` for integer labels ``y`` of shape (batch,)."""
        if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes - 1}], got min {int(y.min())}, "
                             f"max {int(y.max())}")
        return self.W_embed[y.long()]

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest class embedding to each row of ``z`` (used by NoProp-FM)."""
        return torch.cdist(z, self.W_embed.detach()).argmin(dim=1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, num_classes={self.num_classes}, dim={self.dim}"
