"""Convolutional autoencoder: an encoder to a latent vector and a decoder back to the image.

"Reducing the Dimensionality of Data with Neural Networks", Hinton & Salakhutdinov, 2006
(https://doi.org/10.1126/science.1127647); convolutional encoders and decoders as in "Stacked
Convolutional Auto-Encoders for Hierarchical Feature Extraction", Masci et al., 2011
(https://doi.org/10.1007/978-3-642-21735-7_7).

The encoder halves the resolution with each stride-2 conv, then a linear layer maps the feature map to a
``latent_dim`` vector (no activation: the code is unconstrained). Two decoders (``upsample``):

- ``"deconv"``: mirrors the encoder with transposed convolutions that exactly double the resolution, and a
  final 3x3 conv to the image channels.
- ``"pixel_shuffle"``: every conv runs at the latent feature map's resolution; the last one predicts all
  ``factor**2`` sub-pixels of each output pixel, and one pixel shuffle places them ("Real-Time Single Image
  and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network", Shi et al., 2016,
  https://arxiv.org/abs/1609.05158). Several times fewer operations, and no transposed convolution, which
  onnxruntime runs slowly on CPU.

Pixel space: inputs are pixels scaled to [0, 1] and **not** mean/std normalised, and the output goes
through a sigmoid (``out_act="sigmoid"``, the default), so the reconstruction lives in the same [0, 1]
space as the input. An MSE loss and a PSNR measured on [0, 1] pixels then read the output directly. For
normalised inputs pass ``out_act="identity"``.

`forward` returns the reconstruction only, so the model is tensor-in, tensor-out like a classifier;
`encode` and `decode` expose the two halves (the latent space, sampling from it, interpolation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import ConvNormAct, create_act, create_norm2d
from zoo.models.base import ZooModel
from zoo.models.features import FeatureInfo
from zoo.registry import register_model

__all__ = ["ConvAutoencoder", "DeconvNormAct"]

PAPERS = (
    "https://doi.org/10.1126/science.1127647",
    "https://doi.org/10.1007/978-3-642-21735-7_7",
    "https://arxiv.org/abs/1609.05158",
)
UPSAMPLERS = ("deconv", "pixel_shuffle")


class DeconvNormAct(nn.Sequential):
    """A transposed conv that exactly doubles H and W (kernel 4, stride 2, padding 1), a norm, an act.

    Kernel 4 with stride 2 is divisible by the stride, so every output pixel gets the same number of
    kernel taps (no checkerboard from uneven overlap, which a 3x3 stride-2 kernel has).
    """

    def __init__(self, in_chans: int, out_chans: int, norm: str | None = "batch", act: str | None = "relu"):
        has_norm = (norm or "none") != "none"
        super().__init__(
            nn.ConvTranspose2d(in_chans, out_chans, 4, 2, 1, bias=not has_norm),
            create_norm2d(norm, out_chans),
            create_act(act or "identity"),
        )


class ConvAutoencoder(ZooModel):
    """Stride-2 conv encoder -> linear latent -> decoder (``upsample``: transposed convs or one pixel
    shuffle); forward returns the reconstruction."""

    # Changing in_chans changes the decoder's output too, so no pretrained weight can be adapted to it.
    first_conv = None
    classifier = None
    # The linear bottleneck fixes the feature-map size, hence the image size.
    dynamic_size = False
    output_names = ("reconstruction",)

    def __init__(
        self,
        in_chans: int = 1,
        img_size: int = 28,
        widths: tuple[int, ...] = (32, 64),
        latent_dim: int = 32,
        norm: str = "batch",
        act: str = "relu",
        out_act: str = "sigmoid",
        upsample: str = "deconv",
    ):
        super().__init__()
        if upsample not in UPSAMPLERS:
            raise ConfigError(f"upsample={upsample!r} is not one of {UPSAMPLERS}")
        factor = 2 ** len(widths)
        if not widths or img_size % factor:
            raise ConfigError(
                f"img_size={img_size} must be divisible by 2**len(widths)={factor} (one halving per width, "
                f"widths={tuple(widths)}), so that the decoder restores the exact size"
            )
        self.input_size = (in_chans, img_size, img_size)
        self.latent_dim = latent_dim
        side = img_size // factor
        self.latent_shape = (widths[-1], side, side)
        flat = widths[-1] * side * side

        encoder: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            encoder.append(ConvNormAct(channels, width, 3, stride=2, norm=norm, act=act))
            channels = width
        # The encoder's conv maps are a small feature pyramid (e.g. for a U-Net on the pretrained encoder).
        self.feature_info = FeatureInfo(
            {"module": f"encoder.{i}", "num_chs": w, "reduction": 2 ** (i + 1)} for i, w in enumerate(widths)
        )
        encoder += [nn.Flatten(1), nn.Linear(flat, latent_dim)]
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = [
            nn.Linear(latent_dim, flat),
            create_act(act),
            nn.Unflatten(1, self.latent_shape),
        ]
        if upsample == "deconv":
            # Mirror of the encoder: each upsampling step goes back to the width the encoder had at that size.
            for width in [*reversed(widths[:-1]), widths[0]]:
                decoder.append(DeconvNormAct(channels, width, norm=norm, act=act))
                channels = width
            decoder.append(nn.Conv2d(channels, in_chans, 3, padding=1))
        else:
            # As many convs as the deconv decoder has upsampling steps, all at the small size and the widest
            # width; then factor**2 sub-pixels per output pixel and channel, placed by one shuffle.
            decoder += [ConvNormAct(channels, channels, 3, norm=norm, act=act) for _ in widths]
            decoder += [nn.Conv2d(channels, in_chans * factor**2, 3, padding=1), nn.PixelShuffle(factor)]
        decoder.append(create_act(out_act))
        self.decoder = nn.Sequential(*decoder)

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        # Pixels in [0, 1], the space the sigmoid output reconstructs (see the module docstring).
        device = next(self.parameters()).device
        return (torch.rand(batch_size, *self.input_size, generator=generator).to(device),)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images in [0, 1] -> (B, latent_dim) codes."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) codes -> (B, C, H, W) images (in [0, 1] with the default sigmoid output)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@register_model(task="image-to-image", weights=("mnist",))
def autoencoder(**kwargs: Any) -> ConvAutoencoder:
    """Convolutional autoencoder for 28x28 grey images: 32-64 stride-2 encoder, 32-d latent, sigmoid output.

    ``upsample="deconv"`` (default) or ``"pixel_shuffle"`` (the published ``mnist`` weight) picks the decoder.
    """
    return ConvAutoencoder(**kwargs)
