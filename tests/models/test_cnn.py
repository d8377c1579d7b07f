"""CNN: every downsampling / block / norm / activation option, and pretrained adaptation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from tests.helpers import build
from zoo.errors import ConfigError
from zoo.layers import ConvNormAct, DepthwiseSeparableConv
from zoo.models.cnn import BLOCKS, DOWNSAMPLES

# Three stages from 28x28: pooling floors (7 -> 3), a padded stride-2 conv rounds up (7 -> 4).
FINAL_SIDE = {"max": 3, "avg": 3, "stride": 4}
DOWN_TYPE = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("downsample", DOWNSAMPLES)
def test_downsampling_and_block_choices(downsample, block):
    model = build("cnn", downsample=downsample, block=block, widths=(8, 16, 16)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        features = model.forward_features(x)
        assert model(x).shape == (2, 10)
    side = FINAL_SIDE[downsample]
    assert features.shape == (2, 16, side, side)
    conv_type = DepthwiseSeparableConv if block == "dws" else ConvNormAct
    for stage in model.stages:
        *convs, down = stage
        assert all(type(c) is conv_type for c in convs)
        if downsample == "stride":
            assert type(down) is conv_type and max(
                m.stride for m in down.modules() if isinstance(m, nn.Conv2d)
            ) == (2, 2)
        else:
            assert type(down) is DOWN_TYPE[downsample]
    # The stem stays a full convolution (a depthwise filter over one grey channel would see too little).
    assert type(model.stem) is ConvNormAct and model.stem[0].groups == 1


def test_builders_pick_their_options():
    assert isinstance(build("cnn").stages[0][-1], nn.MaxPool2d)
    assert type(build("cnn_strided").stages[0][-1]) is ConvNormAct
    dws = build("cnn_dws")
    assert (
        type(dws.stages[0][0]) is DepthwiseSeparableConv and type(dws.stages[0][-1]) is DepthwiseSeparableConv
    )
    # Same widths: the separable factorisation is several times smaller.
    assert _params(dws) * 3 < _params(build("cnn_strided"))


@pytest.mark.parametrize(
    ("norm", "norm_type"),
    [
        ("batch", nn.BatchNorm2d),
        ("layer", nn.GroupNorm),
        ("instance", nn.InstanceNorm2d),
        ("group", nn.GroupNorm),
        ("none", nn.Identity),
    ],
)
def test_norm_choices(norm, norm_type):
    model = build("cnn", norm=norm, widths=(8, 16)).train()
    norms = [m[1] for m in model.modules() if isinstance(m, ConvNormAct)]
    assert norms and all(type(n) is norm_type for n in norms)
    if norm == "layer":  # layer norm over (C, H, W) is one group
        assert all(n.num_groups == 1 for n in norms)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "elu", "abs", "sigmoid", "tanh", "gelu"])
def test_activation_choices(act):
    model = build("cnn_dws", act=act, widths=(8, 16))
    acts = {type(m[2]).__name__ for m in model.modules() if isinstance(m, ConvNormAct)}
    assert acts == {type(zoo.layers.create_act(act)).__name__}
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_any_input_size_and_channels():
    # Global average pooling: the head does not depend on the spatial size.
    model = build("cnn", in_chans=3, num_classes=100, img_size=32).eval()
    assert model.input_size == (3, 32, 32) and model.dynamic_size
    for side in (32, 40):
        assert model(torch.randn(2, 3, side, side)).shape == (2, 100)


def test_convs_per_stage_and_kernel_size():
    model = build("cnn", widths=(8, 16), convs_per_stage=3, kernel_size=5)
    assert [len(stage) for stage in model.stages] == [4, 4]  # three convs and the pooling
    assert model.stem[0].kernel_size == (5, 5)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"downsample": "blur"}, "unknown downsample 'blur'; expected one of max, avg, stride"),
        ({"block": "inverted"}, "unknown block 'inverted'; expected one of conv, dws"),
        ({"norm": "weight"}, "batch, layer, instance, group, none"),
        ({"act": "swish2"}, "relu, leaky_relu"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"widths": ()}, "at least one stage"),
    ],
)
def test_bad_options_name_what_is_allowed(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build("cnn", **kwargs)


def test_pretrained_head_and_input_channel_adaptation(tmp_path):
    model = build("cnn", widths=(8, 16)).eval()
    folder = zoo.save_pretrained(model, tmp_path / "cnn")

    five = zoo.create_model(str(folder), num_classes=5).eval()
    assert five.head.weight.shape == (5, 16)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(five.forward_features(x), model.forward_features(x))

    rgb = zoo.create_model(str(folder), in_chans=3).eval()
    assert rgb.stem[0].weight.shape == (8, 3, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(rgb(x.repeat(1, 3, 1, 1)), model(x), atol=1e-5, rtol=1e-5)
