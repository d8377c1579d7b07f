"""Autoencoder: encode/decode shapes, [0, 1] output space, the registry and weights beyond classifiers."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from tests.helpers import build
from zoo.analysis import count_flops
from zoo.errors import ConfigError


def test_encode_decode_shapes():
    model = build("autoencoder", latent_dim=12).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (3, 12)
        assert model.decode(z).shape == (3, 1, 28, 28)
        torch.testing.assert_close(model(x), model.decode(z))
    assert model.latent_shape == (64, 7, 7)


@pytest.mark.parametrize(
    ("in_chans", "img_size", "widths"), [(3, 32, (16, 32, 64)), (1, 28, (8,)), (1, 16, (8, 8, 8, 8))]
)
def test_other_sizes_reconstruct_the_input_shape(in_chans, img_size, widths):
    model = build("autoencoder", in_chans=in_chans, img_size=img_size, widths=widths, latent_dim=4).eval()
    x = torch.rand(2, in_chans, img_size, img_size)
    assert model(x).shape == x.shape
    # The decoder mirrors the encoder: each upsampling step restores the encoder's width at that size.
    enc = [m[0].out_channels for m in model.encoder[: len(widths)]]
    dec = [m[0].out_channels for m in model.decoder[3 : 3 + len(widths)]]
    assert enc == list(widths) and dec == [*reversed(widths[:-1]), widths[0]]


@pytest.mark.parametrize(("in_chans", "img_size", "widths"), [(1, 28, (32, 64)), (3, 32, (8, 16, 16))])
def test_the_pixel_shuffle_decoder_works_at_the_small_size_then_shuffles_once(in_chans, img_size, widths):
    model = build(
        "autoencoder", in_chans=in_chans, img_size=img_size, widths=widths, upsample="pixel_shuffle"
    ).eval()
    x = torch.rand(2, in_chans, img_size, img_size)
    assert model(x).shape == x.shape
    factor = 2 ** len(widths)
    convs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(widths) + 1 and convs[-1].out_channels == in_chans * factor**2
    shuffles = [m for m in model.decoder.modules() if isinstance(m, torch.nn.PixelShuffle)]
    assert [s.upscale_factor for s in shuffles] == [factor]
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    deconv = build("autoencoder", in_chans=in_chans, img_size=img_size, widths=widths).eval()
    assert count_flops(model, x) < count_flops(deconv, x)


def test_output_is_in_pixel_space():
    model = build("autoencoder").eval()
    with torch.no_grad():
        out = model(torch.randn(4, 1, 28, 28) * 10)  # even far outside [0, 1] inputs
    assert out.min() >= 0 and out.max() <= 1
    # For normalised inputs the sigmoid can be dropped: same parameters (same seed), output before it.
    raw = build("autoencoder", out_act="identity").eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.sigmoid(raw(x)))
        assert not torch.allclose(model(x), raw(x))


def test_example_inputs_are_pixels():
    (x,) = build("autoencoder").example_inputs(batch_size=5)
    assert x.shape == (5, 1, 28, 28) and x.min() >= 0 and x.max() <= 1


def test_a_few_steps_reduce_the_reconstruction_error():
    torch.manual_seed(0)
    model = build("autoencoder", widths=(8, 16), latent_dim=8)
    x = torch.rand(8, 1, 28, 28).round()  # binary "digits": learnable structure is per-pixel
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.mse_loss(model(x), x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_registered_as_image_to_image_not_classification():
    info = zoo.model_info("autoencoder")
    assert info["task"] == "image-to-image" and info["pipeline_tag"] == "image-to-image"
    assert "autoencoder" in zoo.list_models(task="autoencoding")  # the task's name before tasks were objects
    assert "autoencoder" not in zoo.list_models(task="image-classification")


def test_weights_record_the_task_and_refuse_classifier_adaptations(tmp_path):
    model = build("autoencoder", latent_dim=4)
    folder = zoo.save_pretrained(model, tmp_path / "ae")
    config = json.loads((folder / "config.json").read_text())
    assert config["weights"]["task"] == "image-to-image"
    assert config["output_names"] == ["reconstruction"]
    assert config["model_args"] == {"latent_dim": 4}
    assert config["weights"]["input_size"] == [1, 28, 28]
    # A changed in_chans would change the decoder's output too: no weight can be adapted to it.
    with pytest.raises(ConfigError, match="no first conv to adapt"):
        zoo.create_model(str(folder), in_chans=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"img_size": 30}, r"img_size=30 must be divisible by 2\*\*len\(widths\)=4"),
        ({"norm": "weight"}, "batch, layer, instance, group, none"),
        ({"out_act": "softmax"}, "sigmoid, tanh, identity"),
        ({"upsample": "bilinear"}, r"upsample='bilinear' is not one of \('deconv', 'pixel_shuffle'\)"),
    ],
)
def test_bad_options_name_what_is_allowed(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build("autoencoder", **kwargs)
