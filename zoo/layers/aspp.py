"""Atrous Spatial Pyramid Pooling (DeepLab v3, Chen et al., 2017, https://arxiv.org/abs/1706.05587).

"ASPP consists of (a) one 1x1 convolution and three 3x3 convolutions with rates = (6, 12, 18) when output
stride = 16 ... and (b) the image-level features": parallel branches see the same map at several
effective receptive fields, and a global-average-pooled branch brings in context that large rates lose
("as the sampling rate becomes larger, the number of valid filter weights ... becomes smaller"). The
branches are concatenated and projected by a 1x1 conv.

Module names follow torchvision's ``ASPP`` (``convs.0..4``, ``project``), so DeepLab state dicts move
between the two with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers.norm import create_norm2d

__all__ = ["ASPP", "ASPPPooling", "atrous_conv"]


def atrous_conv(
    in_chans: int, out_chans: int, dilation: int, norm: str = "batch", kernel_size: int = 3
) -> nn.Sequential:
    """A dilated conv, norm, ReLU (torchvision's ``ASPPConv`` layout: ``0`` conv, ``1`` norm, ``2`` act)."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size, padding=padding, dilation=dilation, bias=False),
        create_norm2d(norm, out_chans),
        nn.ReLU(),
    )


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1x1 conv, norm, ReLU, broadcast back to the map's size.

    With BatchNorm, training needs more than one image a batch (one pooled value per channel otherwise).
    """

    def __init__(self, in_chans: int, out_chans: int, norm: str = "batch"):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_chans, out_chans, 1, bias=False),
            create_norm2d(norm, out_chans),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        # Bilinear from a 1x1 map is a broadcast; kept as interpolate for torchvision's numerics and because
        # it exports with the size read from the input (dynamic height and width).
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """1x1 branch, one 3x3 branch per atrous rate, the image-pooling branch; concatenated, projected."""

    def __init__(
        self,
        in_chans: int,
        atrous_rates: Sequence[int] = (12, 24, 36),
        out_chans: int = 256,
        norm: str = "batch",
        dropout: float = 0.5,
    ):
        super().__init__()
        branches: list[nn.Module] = [atrous_conv(in_chans, out_chans, 1, norm, kernel_size=1)]
        branches += [atrous_conv(in_chans, out_chans, rate, norm) for rate in atrous_rates]
        branches.append(ASPPPooling(in_chans, out_chans, norm))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_chans, out_chans, 1, bias=False),
            create_norm2d(norm, out_chans),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))
