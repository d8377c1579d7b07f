"""Conv blocks: ConvNormAct shapes and bias rule; the depthwise-separable block's factorisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.layers import ConvNormAct, DepthwiseSeparableConv


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize(("stride", "out_size"), [(1, 28), (2, 14)])
def test_conv_norm_act_same_padding(kernel_size, stride, out_size):
    block = ConvNormAct(3, 16, kernel_size, stride)
    assert block(torch.randn(2, 3, 28, 28)).shape == (2, 16, out_size, out_size)


def test_conv_bias_only_without_norm():
    assert ConvNormAct(3, 8, norm="batch")[0].bias is None
    assert ConvNormAct(3, 8, norm="none")[0].bias is not None
    assert ConvNormAct(3, 8, norm=None)[0].bias is not None


def test_conv_norm_act_order_and_choices():
    block = ConvNormAct(3, 8, norm="group", act="tanh")
    assert [type(m) for m in block] == [nn.Conv2d, nn.GroupNorm, nn.Tanh]
    # act=None means no activation (a pre-residual or output conv), not an error.
    assert isinstance(ConvNormAct(3, 8, act=None)[2], nn.Identity)


def test_depthwise_separable_factorises_the_convolution():
    block = DepthwiseSeparableConv(8, 16, 3, stride=2)
    depthwise, pointwise = block[0][0], block[1][0]
    assert depthwise.groups == 8 and depthwise.weight.shape == (8, 1, 3, 3) and depthwise.stride == (2, 2)
    assert pointwise.weight.shape == (16, 8, 1, 1)
    assert block(torch.randn(2, 8, 14, 14)).shape == (2, 16, 7, 7)
    full = ConvNormAct(8, 16, 3, stride=2)
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # 8*9 + 8*16 weights (+ norms) against 8*16*9: the saving MobileNet is built on.
    assert params(block) < params(full) / 3


def test_depthwise_stage_keeps_channels_apart():
    # Each depthwise filter sees one channel: perturbing input channel 0 changes output channel 0 only.
    depthwise = DepthwiseSeparableConv(4, 6, norm="none", act=None)[0].eval()
    x = torch.randn(1, 4, 9, 9)
    y = x.clone()
    y[:, 0] += 1.0
    changed = (depthwise(x) - depthwise(y)).abs().amax(dim=(0, 2, 3)) > 0
    assert changed.tolist() == [True, False, False, False]
