"""MLP: every activation and norm option, sizes, the image-shaped first layer and pretrained adaptation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from tests.helpers import build
from zoo.errors import ConfigError
from zoo.layers import create_act
from zoo.models.mlp import ImageLinear

ISSUE_ACTIVATIONS = ["relu", "leaky_relu", "elu", "abs", "sigmoid", "tanh"]


@pytest.mark.parametrize("act", ISSUE_ACTIVATIONS)
def test_activation_choices(act):
    model = build("mlp_small", act=act, width=32).eval()
    assert all(type(block.act) is type(create_act(act)) for block in model.blocks)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("norm", "norm_type"),
    [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm), ("group", nn.GroupNorm), ("none", nn.Identity)],
)
def test_norm_choices(norm, norm_type):
    model = build("mlp", norm=norm, width=32, depth=3).train()
    assert [type(block.norm) for block in model.blocks] == [norm_type] * 3
    # The norm's shift makes the linear bias redundant: biases only without a norm.
    assert all((block.fc.bias is None) == (norm != "none") for block in model.blocks)
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_depth_and_width_set_the_parameter_count():
    model = build("mlp", depth=3, width=64, num_classes=7)
    expected = (784 * 64 + 64) + 2 * (64 * 64 + 64) + (64 * 7 + 7)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert len(model.blocks) == 3 and model.num_features == 64


def test_builders_sizes():
    assert len(build("mlp").blocks) == 2 and build("mlp").num_features == 512
    assert sum(p.numel() for p in build("mlp_small").parameters()) == 784 * 128 + 128 + 128 * 10 + 10


def test_image_linear_is_a_linear_layer_on_the_flattened_image():
    layer = ImageLinear(3, (4, 5), 6)
    assert layer.weight.shape == (6, 3, 4, 5)
    reference = nn.Linear(60, 6)
    with torch.no_grad():
        reference.weight.copy_(layer.weight.flatten(1))
        reference.bias.copy_(layer.bias)
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(layer(x), reference(x.flatten(1)))
    # Already-flattened inputs are accepted as well.
    torch.testing.assert_close(layer(x.flatten(1)), reference(x.flatten(1)))
    # nn.Linear's init scale: the bound is 1/sqrt(fan_in) with fan_in = C*H*W.
    assert layer.weight.abs().max() <= 1 / 60**0.5 + 1e-6


def test_other_input_sizes():
    model = build("mlp_small", in_chans=3, img_size=32, num_classes=100)
    assert model.input_size == (3, 32, 32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_dropout_is_active_in_training_only():
    model = build("mlp_small", dropout=0.5)
    x = torch.randn(2, 1, 28, 28)
    assert not torch.equal(model.train()(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"act": "swish2"}, "relu, leaky_relu, elu"),
        ({"norm": "instance"}, "batch, layer, group, none"),
        ({"depth": 0}, "at least 1 hidden layer"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_options_name_what_is_allowed(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build("mlp_small", **kwargs)


def test_pretrained_head_and_input_channel_adaptation(tmp_path):
    model = build("mlp_small", width=32, norm="batch").eval()
    folder = zoo.save_pretrained(model, tmp_path / "mlp")

    five = zoo.create_model(str(folder), num_classes=5).eval()
    assert five.head.weight.shape == (5, 32)
    for key, value in model.blocks.state_dict().items():
        assert torch.equal(five.blocks.state_dict()[key], value), key

    # A grey digit repeated on three channels must give the grey model's logits (timm-style adaptation).
    rgb = zoo.create_model(str(folder), in_chans=3).eval()
    assert rgb.blocks[0].fc.weight.shape == (32, 3, 28, 28)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rgb(x.repeat(1, 3, 1, 1)), model(x), atol=1e-5, rtol=1e-5)
