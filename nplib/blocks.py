r"""One NoProp-DT denoising block: ``u_hat_t(z_{t-1}, x) = softmax(logits_t) @ W_embed``.

Introduced in notebooks/03_one_denoising_block.

The paper's block (its Figure 6 and Appendix), for 1x28x28 (MNIST) and 3x32x32 (CIFAR) images:

* image path: conv3x3(32) ReLU maxpool2 dropout0.2 -> conv3x3(64) ReLU dropout0.2 ->
  conv3x3(128) ReLU maxpool2 dropout0.2 -> flatten -> FC(256) -> BatchNorm.
  Convolutions are UNPADDED: flatten is 128*4*4 on MNIST and 128*5*5 on CIFAR.
* label path (z a vector): FC(256) BN ReLU = h; residual branch FC(256) BN ReLU FC(256) BN;
  output h + branch. For prototype embeddings z is an image and the label path is a copy of the
  image path's convolutional stack (its own weights).
* fusion head: concat(512) -> FC(256) BN ReLU -> FC(128) BN ReLU -> FC(m) = logits.

About 0.92 M parameters per MNIST block with one-hot labels, 1.22 M on CIFAR-10.

``BlockConfig.small()`` is a CPU-friendly block with the same structure and about 79 k parameters
(two convolutions of 16 and 32 channels, hidden width 64), for the course's fast runs.

The block returns LOGITS over the m classes. ``u_hat = softmax(logits) @ W_embed`` is formed by the
model (:mod:`nplib.models`), because ``W_embed`` is shared by all blocks and must not be copied.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BlockConfig", "DenoisingBlock", "conv_path", "count_parameters"]


@dataclass(frozen=True)
class BlockConfig:
    """Widths of a denoising block. ``paper()`` and ``small()`` are the two the course uses."""

    channels: tuple[int, ...] = (32, 64, 128)
    pools: tuple[bool, ...] = (True, False, True)
    hidden: int = 256          # width of image path, label path and first fusion layer
    head_hidden: int = 128     # width of the second fusion layer
    dropout: float = 0.2

    @classmethod
    def paper(cls) -> "BlockConfig":
        """The paper's block (its Figure 6 and Appendix)."""
        return cls()

    @classmethod
    def small(cls) -> "BlockConfig":
        """A CPU-friendly block with the paper's structure (tens of thousands of parameters)."""
        return cls(channels=(16, 32), pools=(True, True), hidden=64, head_hidden=64, dropout=0.1)

    @classmethod
    def named(cls, name: str) -> "BlockConfig":
        if name == "paper":
            return cls.paper()
        if name == "small":
            return cls.small()
        raise ValueError(f"unknown block {name!r}; choose 'paper' or 'small'")


def conv_path(in_shape: tuple[int, int, int], cfg: BlockConfig, batch_norm: bool = True) -> nn.Sequential:
    """Unpadded conv3x3 stack -> flatten -> FC(hidden) [-> BatchNorm].

    Introduced in notebooks/03_one_denoising_block, section 1. ``in_shape`` is (C, H, W).
    """
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), got {in_shape}")
    if len(cfg.channels) != len(cfg.pools):
        raise ValueError("BlockConfig.channels and .pools must have the same length")
    layers: list[nn.Module] = []
    c_in, h, w = in_shape
    for c_out, pool in zip(cfg.channels, cfg.pools):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3), nn.ReLU()]
        h, w = h - 2, w - 2
        if pool:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        c_in = c_out
        if h < 1 or w < 1:
            raise ValueError(f"input {in_shape} is too small for {len(cfg.channels)} unpadded convolutions")
    layers += [nn.Flatten(), nn.Linear(c_in * h * w, cfg.hidden)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(cfg.hidden))
    return nn.Sequential(*layers)


class _ResidualLabelPath(nn.Module):
    """FC(hidden) BN ReLU = h;  out = h + [FC(hidden) BN ReLU FC(hidden) BN](h)."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.branch = nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                    nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z)
        return h + self.branch(h)


class _ImageLabelPath(nn.Module):
    """For prototype embeddings: z (flat) -> image -> its own conv path."""

    def __init__(self, z_image_shape: tuple[int, int, int], cfg: BlockConfig):
        super().__init__()
        self.z_image_shape = tuple(z_image_shape)
        self.net = conv_path(self.z_image_shape, cfg)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], *self.z_image_shape))


class DenoisingBlock(nn.Module):
    """Block t of NoProp-DT: ``logits_t = head(concat(image_path(x), label_path(z_{t-1})))``.

    Introduced in notebooks/03_one_denoising_block, section 1.

    Args:
        image_shape: (C, H, W) of the input images, e.g. (1, 28, 28).
        z_dim: d, the dimension of the label embedding (= m for one-hot).
        num_classes: m; the block ends in FC(m).
        cfg: widths (``BlockConfig.paper()`` or ``BlockConfig.small()``).
        z_image_shape: set for prototype embeddings, where z is an image of this shape (stored flat).
    """

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int, num_classes: int,
                 cfg: BlockConfig | None = None, z_image_shape: tuple[int, int, int] | None = None):
        super().__init__()
        cfg = cfg or BlockConfig.paper()
        self.image_shape = tuple(image_shape)
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.image_path = conv_path(self.image_shape, cfg)
        if z_image_shape is not None:
            if int(torch.tensor(z_image_shape).prod()) != z_dim:
                raise ValueError(f"z_image_shape {z_image_shape} does not hold z_dim = {z_dim} values")
            self.label_path: nn.Module = _ImageLabelPath(z_image_shape, cfg)
        else:
            self.label_path = _ResidualLabelPath(z_dim, cfg.hidden)
        self.head = nn.Sequential(
            nn.Linear(2 * cfg.hidden, cfg.hidden), nn.BatchNorm1d(cfg.hidden), nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.head_hidden), nn.BatchNorm1d(cfg.head_hidden), nn.ReLU(),
            nn.Linear(cfg.head_hidden, num_classes),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits (batch, m) from images ``x`` (batch, C, H, W) and latents ``z`` (batch, d)."""
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"block expects images of shape (batch, {', '.join(map(str, self.image_shape))}), "
                             f"got {tuple(x.shape)}")
        if z.ndim != 2 or z.shape[1] != self.z_dim or z.shape[0] != x.shape[0]:
            raise ValueError(f"block expects z of shape ({x.shape[0]}, {self.z_dim}), got {tuple(z.shape)}")
        return self.head(torch.cat([self.image_path(x), self.label_path(z)], dim=1))


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (all of them, including top-level ones such as W_embed).

    Introduced in notebooks/03_one_denoising_block, section 1 (torchsummary misses top-level
    parameters, so whole-model counts come from here).
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
