"""Image restoration: a residual denoiser and two super-resolution networks.

- **DnCNN**: "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image Denoising", Zhang et al.,
  2017 (https://arxiv.org/abs/1608.03981). A plain stack of 3x3 conv + batch norm + ReLU that predicts the
  *noise*; the clean image is the input minus it ("residual learning": the network learns the small
  difference, not the whole picture, which the paper found trains faster and better).
- **ESPCN**: "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional
  Neural Network", Shi et al., 2016 (https://arxiv.org/abs/1609.05158). Every conv runs at the low
  resolution; the last predicts ``scale**2`` sub-pixels per output pixel and one pixel shuffle places them.
- **EDSR**: "Enhanced Deep Residual Networks for Single Image Super-Resolution", Lim et al., 2017
  (https://arxiv.org/abs/1707.02921). Residual blocks without batch norm (conv-ReLU-conv, optionally scaled
  by ``res_scale``), a long skip over the body, then a conv + pixel shuffle per factor of 2.

Contract (the image-to-image task's): inputs and outputs are images in [0, 1], (N, C, H, W), **not**
mean/std normalised; a super-resolution model returns (N, C, scale*H, scale*W). Every layer is a stride-1
conv or a pixel shuffle, so any H and W work (``dynamic_size``) and the receptive field is finite
(`receptive_radius`), which lets ``zoo predict`` process large photos in overlapping tiles whose
stitched result equals the untiled one (`zoo.tasks.image_to_image`).

One departure from the two SR papers, on purpose: the super-resolution models add a **bicubic upsampling
of the input** to their output (``skip="bicubic"``), so the network learns only the residual over bicubic,
as VDSR does ("Accurate Image Super-Resolution Using Very Deep Convolutional Networks", Kim et al., 2016,
https://arxiv.org/abs/1511.04587). With the few minutes of CPU training the zoo's recipes get, it starts
at bicubic quality instead of at a grey picture. ``skip="none"`` gives the papers' networks. Sub-pixel
convolution instead of transposed convolution also keeps the ONNX graphs fast (onnxruntime runs
ConvTranspose slowly on CPU; DepthToSpace is cheap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import ConvNormAct
from zoo.models.base import ZooModel
from zoo.models.unet import PAPER as UNET_PAPER
from zoo.models.unet import UNet
from zoo.registry import register_model

__all__ = [
    "EDSR",
    "ESPCN",
    "BicubicUpsample",
    "ColorizationUNet",
    "DenoisingUNet",
    "DnCNN",
    "ResBlock",
    "SubPixelUpsampler",
    "bicubic_upsample",
    "geometric_self_ensemble",
]

DNCNN = "https://arxiv.org/abs/1608.03981"
ESPCN_PAPER = "https://arxiv.org/abs/1609.05158"
EDSR_PAPER = "https://arxiv.org/abs/1707.02921"
VDSR = "https://arxiv.org/abs/1511.04587"
SKIPS = ("bicubic", "none")


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by an integer factor (half-pixel centres, a = -0.75, as PIL and ONNX Resize)."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def geometric_self_ensemble(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean of ``fn`` over the 8 symmetries of the square (4 rotations, each mirrored or not), each output
    mapped back: EDSR+'s "geometric self-ensemble" (Lim et al. 2017). A network trained on patches augmented
    by those symmetries makes errors that differ between them, and their mean averages part of the error away,
    at 8 times the cost of one pass. Non-square inputs work: a rotated output is rotated back."""
    outputs = []
    for k in range(4):
        for mirror in (False, True):
            t = torch.rot90(x, k, dims=(-2, -1))
            y = fn(t.flip(-1) if mirror else t)
            y = y.flip(-1) if mirror else y
            outputs.append(torch.rot90(y, -k, dims=(-2, -1)))
    return torch.stack(outputs).mean(0)


class BicubicUpsample(nn.Module):
    """`bicubic_upsample` by `scale` as a module (no parameters), so that export can swap it for an exact
    equivalent that onnxruntime runs faster (`export.rewrites.PolyphaseBicubic`)."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bicubic_upsample(x, self.scale)


class _ImageModel(ZooModel):
    """What the restoration models share: pixel-space inputs, no head to adapt, any size."""

    # The output has the input's channels, so a changed in_chans changes both ends: nothing to adapt.
    first_conv = None
    classifier = None
    dynamic_size = True
    scale: int = 1
    size_multiple: int = 1  # any size: the task keeps the input's size (no resize, no padding)

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        # Pixels in [0, 1]: the space the models read and write (see the module docstring).
        device = next(self.parameters()).device
        return (torch.rand(batch_size, *self.input_size, generator=generator).to(device),)

    @property
    def receptive_radius(self) -> int:
        """How many input pixels on each side can influence one output pixel, at most (tiles overlap this
        much): the convs' radii add up along the chain."""
        radius = 0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                radius += (m.kernel_size[0] // 2) * m.dilation[0]
        # Convs after a pixel shuffle see output pixels: each is worth 1/scale input pixels, but counting
        # them as whole input pixels only over-estimates. The bicubic skip, beside the convs, reads 2.
        return max(radius, 2) if getattr(self, "skip", "none") == "bicubic" else radius

    @property
    def tile_overlap(self) -> int:
        """The context ``zoo predict``'s tiles need for a seamless result (a weight records it)."""
        return self.receptive_radius


def _check_skip(skip: str) -> None:
    if skip not in SKIPS:
        raise ConfigError(f"skip={skip!r} is not one of {SKIPS}")


class DnCNN(_ImageModel):
    """conv+ReLU, (depth - 2) x (conv + BN + ReLU), conv: predicts the noise, returns input - noise."""

    output_names = ("denoised",)
    papers = (DNCNN,)

    def __init__(
        self,
        in_chans: int = 3,
        depth: int = 17,
        width: int = 64,
        norm: str = "batch",
        img_size: int = 64,
        self_ensemble: bool = False,
    ):
        super().__init__()
        # In eval mode, average the 8 symmetries of the input (`geometric_self_ensemble`); training is unchanged.
        self.self_ensemble = bool(self_ensemble)
        if depth < 2:
            raise ConfigError(f"depth={depth} must be >= 2 (a first and a last conv)")
        self.input_size = (in_chans, img_size, img_size)
        layers: list[nn.Module] = [ConvNormAct(in_chans, width, 3, norm=None, act="relu")]
        layers += [ConvNormAct(width, width, 3, norm=norm, act="relu") for _ in range(depth - 2)]
        layers.append(nn.Conv2d(width, in_chans, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        # The predicted noise starts at zero: the untrained model is the identity, a sane denoiser to start
        # from (PSNR of the noisy input), rather than a random image.
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The noise the model sees in `x` (the residual it subtracts)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.self_ensemble and not self.training:
            return geometric_self_ensemble(lambda t: t - self.noise(t), x)
        return x - self.body(x)


class SubPixelUpsampler(nn.Sequential):
    """Conv to ``factor**2`` times the channels, then a pixel shuffle, per prime factor (2, 2 for x4; 3)."""

    def __init__(self, width: int, scale: int):
        layers: list[nn.Module] = []
        for factor in _factors(scale):
            layers += [nn.Conv2d(width, width * factor**2, 3, padding=1), nn.PixelShuffle(factor)]
        super().__init__(*layers)


def _factors(scale: int) -> list[int]:
    if scale not in (2, 3, 4, 8):
        raise ConfigError(f"scale={scale} is not one of 2, 3, 4, 8")
    return [3] if scale == 3 else [2] * (scale.bit_length() - 1)


class ESPCN(_ImageModel):
    """conv5x5 + tanh, conv3x3 + tanh, conv3x3 to C * scale**2, pixel shuffle (+ bicubic skip)."""

    output_names = ("upscaled",)
    papers = (ESPCN_PAPER, VDSR)

    def __init__(
        self,
        in_chans: int = 3,
        scale: int = 2,
        widths: tuple[int, int] = (64, 32),
        act: str = "tanh",
        skip: str = "bicubic",
        img_size: int = 32,
    ):
        super().__init__()
        _check_skip(skip)
        _factors(scale)
        self.scale, self.skip = scale, skip
        self.input_size = (in_chans, img_size, img_size)
        w1, w2 = widths
        self.body = nn.Sequential(
            ConvNormAct(in_chans, w1, 5, norm=None, act=act),
            ConvNormAct(w1, w2, 3, norm=None, act=act),
            nn.Conv2d(w2, in_chans * scale**2, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)
        self.bicubic = BicubicUpsample(scale)
        if skip == "bicubic":  # start exactly at bicubic: the residual is zero
            nn.init.zeros_(self.body[-1].weight)
            nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.body(x))
        return out + self.bicubic(x) if self.skip == "bicubic" else out


class ResBlock(nn.Module):
    """EDSR's block: conv-ReLU-conv, scaled by ``res_scale``, plus the input (no batch norm: the paper
    found it removes range flexibility and costs memory)."""

    def __init__(self, width: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class EDSR(_ImageModel):
    """head conv, `depth` residual blocks + conv with a long skip, sub-pixel upsampler, tail conv."""

    output_names = ("upscaled",)
    papers = (EDSR_PAPER, VDSR)

    def __init__(
        self,
        in_chans: int = 3,
        scale: int = 2,
        width: int = 64,
        depth: int = 16,
        res_scale: float = 1.0,
        skip: str = "bicubic",
        img_size: int = 32,
    ):
        super().__init__()
        _check_skip(skip)
        self.scale, self.skip = scale, skip
        self.input_size = (in_chans, img_size, img_size)
        self.head = nn.Conv2d(in_chans, width, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(width, res_scale) for _ in range(depth)])
        self.body_conv = nn.Conv2d(width, width, 3, padding=1)
        self.upsample = SubPixelUpsampler(width, scale)
        self.tail = nn.Conv2d(width, in_chans, 3, padding=1)
        self.bicubic = BicubicUpsample(scale)
        if skip == "bicubic":
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = features + self.body_conv(self.body(features))
        out = self.tail(self.upsample(features))
        return out + self.bicubic(x) if self.skip == "bicubic" else out


class _ImageUNet(UNet):
    """What the U-Nets of this module share: pixel-space inputs and outputs (no stem or head to adapt), a
    zero-initialised head (the untrained model is the subclass's first baseline), and tiles with context."""

    # Input and output are fixed colour spaces: there is no head or stem to adapt.
    first_conv = None
    classifier = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        device = next(self.parameters()).device
        return (torch.rand(batch_size, *self.input_size, generator=generator).to(device),)

    @property
    def tile_overlap(self) -> int:
        """Context per tile side for ``zoo predict``: four times the coarsest level's stride (the U-Net's
        receptive field is wider than any practical overlap, so tiles match the untiled output closely,
        not exactly)."""
        return 4 * self.size_multiple


class ColorizationUNet(_ImageUNet):
    """`zoo.models.unet.UNet` that reads Lab lightness ``L / 100`` (1 channel) and writes the two ab channels
    as ``ab / 256 + 0.5`` (the image-to-image task's colorization convention), starting from grey.

    The head is zero-initialised and offset by 0.5, so the untrained model predicts ab = 0 (the grey
    picture, the first baseline it must beat) and training only adds colour. U-Net's skips carry the
    full-resolution edges and its pooled levels the context (sky, foliage, skin) that decides a colour.
    """

    output_names = ("ab",)
    papers = (UNET_PAPER,)

    def __init__(self, in_chans: int = 1, num_classes: int = 2, **kwargs: Any):
        super().__init__(num_classes=num_classes, in_chans=in_chans, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 0.5


class DenoisingUNet(_ImageUNet):
    """`zoo.models.unet.UNet` as a residual denoiser: it predicts the noise and returns ``x - noise``, as DnCNN
    does, but its pooled levels see far wider context than a plain conv stack of the same cost (a depth-3
    U-Net's receptive field spans ~100 px against DnCNN-10's 21), which is what non-local methods exploit.

    The head is zero-initialised, so the untrained model is the identity (the noisy input, the first
    baseline it must beat).
    """

    output_names = ("denoised",)
    papers = (UNET_PAPER, DNCNN)  # the network, and the residual learning it denoises with

    def __init__(self, in_chans: int = 3, self_ensemble: bool = False, **kwargs: Any):
        if "num_classes" in kwargs:
            raise ConfigError("a denoiser returns an image of in_chans channels: drop num_classes")
        super().__init__(num_classes=in_chans, in_chans=in_chans, **kwargs)
        # In eval mode, average the 8 symmetries of the input (`geometric_self_ensemble`); training is unchanged.
        self.self_ensemble = bool(self_ensemble)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The noise the model sees in `x` (the residual it subtracts)."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.self_ensemble and not self.training:
            return geometric_self_ensemble(lambda t: t - self.noise(t), x)
        return x - super().forward(x)


# ------------------------------------------------------------------------------------------ builders
# The defaults are the published weights' configurations: narrower and shallower than the papers' (17 x 64
# for DnCNN, 16 x 64 for the EDSR baseline) so that a recipe trains them in minutes on two CPU cores; the
# papers' sizes are one keyword away (``dncnn(depth=17, width=64)``, ``edsr_x2(width=64, depth=16)``).


@register_model(task="image-to-image", weights=("photos",))
def dncnn(**kwargs: Any) -> DnCNN:
    """DnCNN residual denoiser (colour, 10 layers, 32 wide); ``depth=17, width=64`` is the paper's DnCNN-S."""
    kwargs.setdefault("depth", 10)
    kwargs.setdefault("width", 32)
    return DnCNN(**kwargs)


@register_model(task="image-to-image", weights=("photos",))
def unet_denoiser(**kwargs: Any) -> DenoisingUNet:
    """Residual U-Net denoiser (colour, depth 3, widths 16-128, bilinear upsampling, no norm layers)."""
    kwargs.setdefault("depth", 3)
    kwargs.setdefault("width", 16)
    kwargs.setdefault("norm", "none")
    return DenoisingUNet(**kwargs)


@register_model(task="image-to-image", weights=("photos",))
def espcn_x2(**kwargs: Any) -> ESPCN:
    """ESPCN x2 super-resolution (64-32 wide, tanh, sub-pixel output, bicubic skip)."""
    return ESPCN(scale=2, **kwargs)


@register_model(task="image-to-image", weights=("photos",))
def espcn_x4(**kwargs: Any) -> ESPCN:
    """ESPCN x4 super-resolution (64-32 wide, tanh, sub-pixel output, bicubic skip)."""
    return ESPCN(scale=4, **kwargs)


@register_model(task="image-to-image", weights=("photos",))
def edsr_x2(**kwargs: Any) -> EDSR:
    """EDSR-style x2 super-resolution (6 residual blocks, 32 wide, bicubic skip)."""
    kwargs.setdefault("width", 32)
    kwargs.setdefault("depth", 6)
    return EDSR(scale=2, **kwargs)


@register_model(task="image-to-image", weights=("photos",))
def edsr_x4(**kwargs: Any) -> EDSR:
    """EDSR-style x4 super-resolution (6 residual blocks, 32 wide, two x2 sub-pixel steps, bicubic skip)."""
    kwargs.setdefault("width", 32)
    kwargs.setdefault("depth", 6)
    return EDSR(scale=4, **kwargs)


@register_model(task="image-to-image", weights=("photos",))
def colorization_unet(**kwargs: Any) -> ColorizationUNet:
    """U-Net colorizer: Lab lightness in, ab out; depth 3, widths 16-128, bilinear upsampling."""
    kwargs.setdefault("depth", 3)
    return ColorizationUNet(**kwargs)
