"""Convolution blocks shared by the families: conv -> norm -> act, and its depthwise-separable variant."""

from __future__ import annotations

from torch import nn

from zoo.layers.activation import create_act
from zoo.layers.norm import create_norm2d


class ConvNormAct(nn.Sequential):
    """Conv2d, then a norm, then an activation; "same" padding for odd kernels.

    The conv has no bias when a norm follows: the norm's shift makes it redundant.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm: str | None = "batch",
        act: str | None = "relu",
    ):
        has_norm = (norm or "none") != "none"
        super().__init__(
            nn.Conv2d(
                in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=not has_norm
            ),
            create_norm2d(norm, out_chans),
            create_act(act or "identity"),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """A depthwise conv (one filter per channel) then a 1x1 pointwise conv, each with norm and act.

    MobileNet: "depthwise separable convolutions ... factorize a standard convolution into a depthwise
    convolution and a 1x1 convolution", cutting compute by roughly the kernel area.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 3,
        stride: int = 1,
        norm: str | None = "batch",
        act: str | None = "relu",
    ):
        super().__init__(
            ConvNormAct(in_chans, in_chans, kernel_size, stride, groups=in_chans, norm=norm, act=act),
            ConvNormAct(in_chans, out_chans, 1, norm=norm, act=act),
        )
