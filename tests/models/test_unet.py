"""U-Net: every upsampling mode, any input size, U-Net decoders over registry encoders."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from tests.helpers import build
from zoo.errors import ConfigError
from zoo.layers.upsample import UPSAMPLE_MODES, Upsample2x

SIZES = [(64, 64), (48, 80), (67, 45)]  # the last: odd sides, not multiples of 16


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
@pytest.mark.parametrize("size", SIZES)
def test_every_upsampling_mode_keeps_the_input_size(mode, size):
    model = build("unet_small", upsample=mode).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 11, *size)


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_every_upsampling_mode_trains(mode):
    model = build("unet_small", upsample=mode, width=8).train()
    model(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_default_unet_is_sized_for_the_digit_scenes():
    model = build("unet")
    assert model.input_size == (3, 64, 64) and model.num_classes == 11
    assert model.widths == (16, 32, 64, 128, 256) and model.size_multiple == 16
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2e6


def test_depth_width_and_norm_are_configurable():
    model = build("unet", depth=2, width=8, max_width=12, norm="group", in_chans=1, num_classes=2).eval()
    assert model.widths == (8, 12, 12) and model.size_multiple == 4
    assert isinstance(model.get_submodule("encoder.0.0.1"), nn.GroupNorm)
    with torch.no_grad():  # num_classes is the output channels: colorization's ab from L
        assert model(torch.randn(1, 1, 30, 22)).shape == (1, 2, 30, 22)


def test_unpool_puts_values_where_the_maxima_were():
    up = Upsample2x(1, 1, "unpool")
    nn.init.ones_(up.proj.weight)
    nn.init.zeros_(up.proj.bias)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    pooled, indices = nn.MaxPool2d(2, return_indices=True)(x)
    out = up(pooled, x.shape[-2:], indices)
    # Each 2x2 cell's maximum is its bottom-right pixel: only those positions are filled, with the maxima.
    expected = torch.zeros_like(x)
    expected[..., 1::2, 1::2] = x[..., 1::2, 1::2]
    assert torch.equal(out, expected)


def test_pixel_shuffle_starts_as_nearest_upsampling():
    up = Upsample2x(4, 3, "pixel_shuffle")
    x = torch.randn(1, 4, 5, 6)
    with torch.no_grad():
        out = up(x, (10, 12))
        low = nn.functional.conv2d(x, up.proj[0].weight[::4], up.proj[0].bias[::4])
    torch.testing.assert_close(out, nn.functional.interpolate(low, scale_factor=2, mode="nearest"))


@pytest.mark.parametrize("name", ["unet_resnet8_small", "unet_resnet18"])
@pytest.mark.parametrize("size", [(64, 64), (64, 96), (50, 70)])
def test_encoder_unet_keeps_the_input_size(name, size):
    model = build(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 11, *size)


def test_encoder_unet_decoder_follows_the_encoder_levels():
    small = build("unet_resnet8_small")
    # Levels relu and layer1 share reduction 1: the deeper (layer1) is the skip.
    assert small.size_multiple == 8 and small.decoder_channels == (64, 32, 16)
    big = build("unet_resnet18")
    # Four skips (/16 .. /2), then one block without a skip to /1, as smp's Unet.
    assert big.size_multiple == 32 and big.decoder_channels == (256, 128, 64, 64, 32)
    assert big.first_conv == "encoder.conv1"
    assert [k for k in big.state_dict() if k.startswith("encoder.")] == [
        "encoder." + k for k in zoo.create_model("resnet18").state_dict() if not k.startswith("fc.")
    ]


@pytest.mark.parametrize("mode", ["bilinear", "transposed", "pixel_shuffle"])
def test_encoder_unet_upsampling_modes(mode):
    model = build("unet_resnet8_small", upsample=mode, encoder="cnn").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 11, 64, 64)


def test_encoder_unet_refuses_unpool_and_bad_decoder_channels():
    with pytest.raises(ConfigError, match="unpool"):
        zoo.create_model("unet_resnet8_small", upsample="unpool")
    with pytest.raises(ConfigError, match="needs 3 decoder blocks"):
        zoo.create_model("unet_resnet8_small", decoder_channels=(32, 16))


def test_encoder_weights_load_a_published_backbone():
    model = zoo.create_model("unet_resnet8_small", encoder_weights="mnist")
    backbone = zoo.create_model("resnet8_small.mnist", pretrained=True)
    assert torch.equal(model.encoder.layer4[0].conv1.weight, backbone.layer4[0].conv1.weight)
    # The MNIST weight is grey: its first conv is adapted to three channels.
    assert model.encoder.conv1.weight.shape[1] == 3


@pytest.mark.parametrize("name", ["unet", "unet_resnet8_small"])
def test_num_classes_adapts_a_saved_weight(name, tmp_path):
    model = build(name).eval()
    folder = zoo.save_pretrained(model, tmp_path / name)
    adapted = zoo.create_model(str(folder), num_classes=2).eval()
    ours, theirs = model.state_dict(), adapted.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if not k.startswith("head."))
    with torch.no_grad():
        assert adapted(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def test_bad_upsample_mode_is_refused():
    with pytest.raises(ConfigError, match="unknown upsample"):
        zoo.create_model("unet", upsample="cubic")


def test_coarse_identity_factorises_the_class_map_into_object_and_which_object():
    torch.manual_seed(0)
    model = zoo.create_model("unet_resnet8_small", num_classes=5, coarse_identity=True).eval()
    x = torch.rand(2, 3, 48, 80)
    with torch.no_grad():
        logits = model(x)
        deepest = model.encoder(x)[-1]
        identity = model.identity_head(deepest).softmax(1)
    assert logits.shape == (2, 5, 48, 80)
    probs = logits.softmax(1)
    # p(class | object) is the coarse map's softmax, upsampled: the full-resolution head cannot change it.
    which = probs[:, 1:] / probs[:, 1:].sum(1, keepdim=True)
    coarse = torch.nn.functional.interpolate(
        model.identity_head(deepest), size=(48, 80), mode="bilinear", align_corners=False
    ).softmax(1)
    torch.testing.assert_close(which, coarse.detach(), atol=1e-5, rtol=0)
    assert identity.shape[-2:] == (6, 10)  # stride 8
    model.train()
    model(x).sum().backward()
    assert model.identity_head[-1].weight.grad.abs().sum() > 0 and model.head.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="at least two classes"):
        zoo.create_model("unet_resnet8_small", num_classes=2, coarse_identity=True)


def test_num_classes_adapts_a_coarse_identity_weight(tmp_path):
    model = build("unet_resnet8_small", coarse_identity=True).eval()
    folder = zoo.save_pretrained(model, tmp_path / "coarse")
    adapted = zoo.create_model(str(folder), num_classes=4).eval()
    ours, theirs = model.state_dict(), adapted.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if not k.startswith("identity_head.1."))
    with torch.no_grad():
        assert adapted(torch.randn(1, 3, 64, 64)).shape == (1, 4, 64, 64)
