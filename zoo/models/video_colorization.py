"""Tracking by colorization: per-pixel embeddings of grey video frames, learned by copying colours.

`Vondrick et al. 2018 <https://arxiv.org/abs/1806.09594>`_ ("Tracking emerges by colorizing videos"): a
network sees grey frames and embeds every pixel, ``f = model(frame)``; a target frame's colours are
predicted by copying a reference frame's with attention, ``A_ij = exp(f_i . f_j) / sum_k exp(f_k . f_j)``
and ``y_j = sum_i A_ij c_i``, and trained with cross-entropy on quantised colours
(`zoo.losses.colorization_copy_loss`). Nothing tells the network what an object is; to colour a moving
digit from another frame it has to find the same digit there, so the embedding that emerges tracks.
At test time the same attention copies the first frame's instance masks instead of colours
(`zoo.tasks.mask_propagation.propagate_labels`): video object segmentation with no fine-tuning.

This module is the network only (a frame in, embeddings out); the copying (training's loss, test's
propagation) is its process and lives with the loss and the task.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import ConvNormAct, dilate_
from zoo.models.base import ZooModel
from zoo.models.resnet import BasicBlock
from zoo.registry import register_model

__all__ = ["PixelEmbedder"]


class PixelEmbedder(ZooModel):
    """Per-pixel embeddings of grey frames: ``(N, 1, H, W)`` -> ``(N, embed_dim, H/stride, W/stride)``.

    A stem of two 3x3 convs (the second with stride `stride`), residual blocks whose 3x3 convs are dilated
    by `dilations` (the receptive field grows to cover a digit's neighbourhood without losing resolution,
    as in the paper's dilated ResNet), and a 1x1 projection to `embed_dim` with no norm or activation: the
    embedding's scale is free, so the attention's sharpness is learned.
    """

    first_conv = "stem.0.0"
    classifier = None
    input_size = (1, 48, 48)
    dynamic_size = True
    output_names = ("embeddings",)

    def __init__(
        self,
        in_chans: int = 1,
        img_size: int = 48,
        width: int = 32,
        embed_dim: int = 32,
        stride: int = 2,
        dilations: tuple[int, ...] = (1, 2, 4),
        norm: str = "batch",
    ):
        super().__init__()
        if stride not in (1, 2, 4):
            raise ConfigError(f"stride must be 1, 2 or 4 (input pixels per embedding cell), got {stride}")
        if width < 2 or embed_dim < 1 or not dilations:
            raise ConfigError(
                f"need width >= 2, embed_dim >= 1 and at least one block, got {width}, {embed_dim}, {dilations}"
            )
        self.input_size = (in_chans, img_size, img_size)
        self.stride = stride
        self.embed_dim = embed_dim
        stem: list[nn.Module] = [ConvNormAct(in_chans, width // 2, 3, norm=norm)]
        channels = width // 2
        for _ in range(max(1, stride.bit_length() - 1)):
            stem.append(ConvNormAct(channels, width, 3, stride=2 if stride > 1 else 1, norm=norm))
            channels = width
        self.stem = nn.Sequential(*stem)
        blocks = []
        for dilation in dilations:
            block = BasicBlock(width, width, norm=norm)
            dilate_(block, dilation, dilation)
            blocks.append(block)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(width, embed_dim, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(frames)))


@register_model(task="mask-propagation", weights=("videos",))
def colorization_tracker(**kwargs: Any) -> PixelEmbedder:
    """Tracking-by-colorization embedder (Vondrick 2018) for 48 px grey frames: 32-d embeddings every 2 px from
    a 32-wide stem and three residual blocks dilated 1, 2, 4 (a receptive field of about 60 px, wider than a
    digit; 62k parameters, sized to train in 30 minutes on 2 CPU cores)."""
    return PixelEmbedder(**kwargs)
