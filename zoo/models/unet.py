"""U-Net: "U-Net: Convolutional Networks for Biomedical Image Segmentation", Ronneberger et al., 2015
(https://arxiv.org/abs/1505.04597), and U-Net decoders over any registry backbone.

"The architecture consists of a contracting path to capture context and a symmetric expanding path that
enables precise localization": each encoder level is two 3x3 convs, a 2x2 max-pool halves the size and the
width doubles; each decoder level upsamples, concatenates the encoder map of the same size (the skip
connection) and applies two 3x3 convs. Unlike the paper, the convs are padded ("same"), so the output has
the input's size and no tiling with overlap is needed, and each conv is followed by a norm (BatchNorm by
default, any of `zoo.layers.NORMS`).

The upsampling is a choice (`zoo.layers.upsample`): ``bilinear`` / ``nearest`` (resize then convolve, free
of checkerboard artifacts), ``transposed`` (the paper's up-convolution), ``pixel_shuffle`` (sub-pixel
convolution with ICNR initialisation) and ``unpool`` (SegNet's max-unpooling with the encoder's indices).

`EncoderUNet` is the same decoder over the feature pyramid of any registered backbone
(``zoo.create_model(encoder, features_only=True)``), as segmentation_models_pytorch's ``Unet`` does over
its encoders: one decoder block per feature level, shallow levels as skips, then blocks without a skip up
to the input resolution.

``num_classes`` is the number of output channels: class logits for segmentation, or an image for
image-to-image use (``unet(in_chans=1, num_classes=2)`` predicts the two ab channels of Lab from L).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import ConvNormAct, SpatialSelfAttention
from zoo.layers.upsample import UPSAMPLE_MODES, Upsample2x
from zoo.models.base import ZooModel
from zoo.registry import register_model

__all__ = ["DoubleConv", "EncoderUNet", "UNet", "UpBlock"]

PAPER = "https://arxiv.org/abs/1505.04597"


class DoubleConv(nn.Sequential):
    """Two (3x3 conv, norm, activation): the unit of every U-Net level."""

    def __init__(self, in_chans: int, out_chans: int, norm: str = "batch", act: str = "relu"):
        super().__init__(
            ConvNormAct(in_chans, out_chans, 3, norm=norm, act=act),
            ConvNormAct(out_chans, out_chans, 3, norm=norm, act=act),
        )


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip (if any), then a `DoubleConv`."""

    def __init__(
        self,
        in_chans: int,
        skip_chans: int,
        out_chans: int,
        upsample: str = "bilinear",
        norm: str = "batch",
        act: str = "relu",
        up_chans: int | None = None,
    ):
        super().__init__()
        # The paper halves the channels while upsampling; `up_chans` lets an encoder decoder choose.
        up_chans = out_chans if up_chans is None else up_chans
        self.up = Upsample2x(in_chans, up_chans, upsample)
        self.conv = DoubleConv(up_chans + skip_chans, out_chans, norm, act)

    def forward(
        self,
        x: torch.Tensor,
        skip: torch.Tensor | None = None,
        size: Sequence[int] | None = None,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.up(x, skip.shape[-2:] if skip is not None else size, indices)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UNet(ZooModel):
    """The paper's U-Net with "same" padding: ``depth`` poolings, widths ``width * 2**level``.

    Any input of at least ``2**depth`` pixels a side works: a pooling that floors an odd size is undone
    by the upsampling, which lands on the skip's size. ``size_multiple`` (``2**depth``) is the size step at
    which no pooling floors; the segmentation task pads inputs to it.
    """

    first_conv = "encoder.0.0.0"
    classifier = "head"
    # Input sides that no pooling floors (2**depth; set per instance); the segmentation task pads to it.
    size_multiple: int = 16

    def __init__(
        self,
        num_classes: int = 11,
        in_chans: int = 3,
        width: int = 16,
        depth: int = 4,
        max_width: int | None = None,
        upsample: str = "bilinear",
        norm: str = "batch",
        act: str = "relu",
        img_size: int = 64,
    ):
        super().__init__()
        if depth < 1:
            raise ConfigError(f"depth={depth}: a U-Net needs at least one pooling level")
        if upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"unknown upsample '{upsample}'; expected one of {', '.join(UPSAMPLE_MODES)}")
        widths = [width * 2**level for level in range(depth + 1)]
        if max_width is not None:
            widths = [min(w, max_width) for w in widths]
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        self.widths = tuple(widths)
        self.size_multiple = 2**depth
        self.encoder = nn.ModuleList(
            DoubleConv(c_in, c_out, norm, act) for c_in, c_out in zip([in_chans, *widths[:-1]], widths)
        )
        # SegNet's unpooling needs where each maximum was; other modes do not pay for the indices.
        self.pool = nn.MaxPool2d(2, return_indices=upsample == "unpool")
        self.decoder = nn.ModuleList(
            UpBlock(widths[level + 1], widths[level], widths[level], upsample, norm, act)
            for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        indices: list[torch.Tensor | None] = []
        for level, block in enumerate(self.encoder):
            if level:
                skips.append(x)
                pooled = self.pool(x)
                x, index = pooled if isinstance(pooled, tuple) else (pooled, None)
                indices.append(index)
            x = block(x)
        for up in self.decoder:
            x = up(x, skips.pop(), indices=indices.pop())
        return self.head(x)


class EncoderUNet(ZooModel):
    """A U-Net decoder over the feature pyramid of a registered backbone (``features_only=True``).

    Skips are the encoder's levels below the deepest; of several levels at one reduction (a ResNet's stem
    and ``layer1`` in the small variants) the deeper one is used. After the shallowest skip, blocks without
    a skip double the size until the input's resolution. ``decoder_channels`` (one per block, deep to
    shallow) defaults to each skip's channels, then halving. ``bottleneck_attention=k`` puts k transformer
    blocks over the deepest map (`zoo.layers.SpatialSelfAttention`: every position sees the whole image).

    ``coarse_identity=True`` factorises the class map (class 0 the background): the full-resolution head
    scores background against any object, and *which* object comes from the deepest map, upsampled
    bilinearly as FCN does: ``logits = [background, object + identity_c]``, so p(c | object) =
    softmax(identity)_c is one smooth map over each object. Why: on the digit scenes the full-resolution
    decoder finds the strokes best but names touching digits less consistently than the coarse FCN does
    (benchmarks/segmentation_identity.py).
    """

    classifier = "head"
    # The encoder's deepest reduction (set per instance); the segmentation task pads inputs to it.
    size_multiple: int = 32

    def __init__(
        self,
        encoder: str = "resnet18",
        num_classes: int = 11,
        in_chans: int = 3,
        decoder_channels: Sequence[int] | None = None,
        upsample: str = "nearest",
        norm: str = "batch",
        act: str = "relu",
        img_size: int = 224,
        encoder_weights: str | None = None,
        encoder_args: dict[str, Any] | None = None,
        bottleneck_attention: int = 0,
        coarse_identity: bool = False,
    ):
        super().__init__()
        from zoo.factory import create_encoder  # the factory imports the registry, which imports this module

        if upsample == "unpool":
            raise ConfigError(
                "upsample='unpool' needs the encoder's max-pooling indices, which a registry backbone does "
                "not return; use it with `unet`, or pick nearest, bilinear, transposed or pixel_shuffle"
            )
        # encoder_weights: a tag of the encoder, a weight name or folder (`zoo.factory.create_encoder`).
        self.encoder = create_encoder(
            encoder,
            encoder_weights,
            features_only=True,
            in_chans=in_chans,
            **(encoder_args or {}),
        )
        info = self.encoder.feature_info
        self.first_conv = f"encoder.{self.encoder.first_conv}" if self.encoder.first_conv else None
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        reductions, channels = info.reduction(), info.channels()
        # The deeper of several levels at one reduction: it has seen more of the image.
        skips = [i for i in range(len(info) - 1) if reductions[i] != reductions[i + 1]]
        self._skip_positions = tuple(skips)
        extra = max(int(reductions[skips[0]] if skips else reductions[-1]).bit_length() - 1, 0)
        count = len(skips) + extra
        if decoder_channels is None:
            decoder_channels = [channels[i] for i in reversed(skips)]
            last = decoder_channels[-1] if decoder_channels else channels[-1]
            decoder_channels += [max(last // 2 ** (k + 1), 16) for k in range(extra)]
        if len(decoder_channels) != count:
            raise ConfigError(
                f"decoder_channels={list(decoder_channels)}: '{encoder}' needs {count} decoder blocks "
                f"({len(skips)} with a skip, {extra} up to the input resolution)"
            )
        self.decoder_channels = tuple(decoder_channels)
        self.size_multiple = int(reductions[-1])
        in_ch = channels[-1]
        # Global context on the deepest map (zoo.layers.attention says why); none by default, so weights
        # trained without it keep their state_dict.
        self.bottleneck = SpatialSelfAttention(in_ch, bottleneck_attention) if bottleneck_attention else None
        blocks = []
        for k, out_ch in enumerate(decoder_channels):
            skip_ch = channels[skips[-1 - k]] if k < len(skips) else 0
            blocks.append(UpBlock(in_ch, skip_ch, out_ch, upsample, norm, act, up_chans=in_ch // 2))
            in_ch = out_ch
        self.decoder = nn.ModuleList(blocks)
        # Channels of `decode`'s output: what a model that puts its own heads on the decoder builds on.
        self.out_chans = in_ch
        if coarse_identity and num_classes < 3:
            raise ConfigError(
                f"coarse_identity needs the background and at least two classes, not num_classes={num_classes}"
            )
        self.coarse_identity = coarse_identity
        self.head = nn.Conv2d(in_ch, 2 if coarse_identity else num_classes, 1)
        if coarse_identity:
            deep = channels[-1]
            self.identity_head = nn.Sequential(
                ConvNormAct(deep, deep, 3, norm=norm, act=act), nn.Conv2d(deep, num_classes - 1, 1)
            )
            _init_weights(self.identity_head)
            # The layer sized by num_classes: what a new num_classes replaces.
            self.classifier = "identity_head.1"
        _init_weights(self.decoder)
        _init_weights(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.coarse_identity:
            return self.head(self.decode(x))
        fine, deepest = self._decode(x)
        scores = self.head(fine)
        identity = F.interpolate(
            self.identity_head(deepest), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return torch.cat([scores[:, :1], scores[:, 1:] + identity], 1)

    def subtract_class_bias(self, delta: torch.Tensor) -> None:
        """Subtract ``delta`` (num_classes,) from the class logits at every pixel through the score layers'
        biases (the segmentation recipe's logit adjustment; a per-class constant survives the upsampling)."""
        delta = delta.detach().to(self.head.bias)
        with torch.no_grad():
            if self.coarse_identity:
                self.head.bias[0] -= delta[0]
                self.identity_head[-1].bias.sub_(delta[1:])
            else:
                self.head.bias.sub_(delta)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder block's map ``(N, out_chans, H, W)`` at the input's size, before the head: the
        hook for models that add heads of their own (``zoo.models.proposal_free``)."""
        return self._decode(x)[0]

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`decode`'s map and the deepest map it started from (after the bottleneck)."""
        size = x.shape[-2:]
        features = self.encoder(x)
        skips = [features[i] for i in self._skip_positions]
        x = deepest = features[-1] if self.bottleneck is None else self.bottleneck(features[-1])
        extra = len(self.decoder) - len(skips)
        for k, block in enumerate(self.decoder):
            if k < len(skips):
                x = block(x, skips[-1 - k])
            else:
                # The last block lands on the input's size (a strided conv may have rounded up); earlier
                # ones double the current size.
                remaining = extra - (k - len(skips)) - 1
                target = size if remaining == 0 else (x.shape[-2] * 2, x.shape[-1] * 2)
                x = block(x, size=target)
        return x, deepest


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _encoder_unet(default_encoder: str, small: bool, kwargs: dict[str, Any]) -> EncoderUNet:
    kwargs.setdefault("encoder", default_encoder)
    if small:
        kwargs.setdefault("img_size", 64)
    return EncoderUNet(**kwargs)


@register_model(task="semantic-segmentation")
def unet(**kwargs: Any) -> UNet:
    """U-Net for the 64 px digit scenes: depth 4, widths 16-256, bilinear upsampling, 11 classes (1.8M).

    ``num_classes`` is the number of output channels (e.g. 2 for colorization's ab channels).
    """
    return UNet(**kwargs)


@register_model(task="semantic-segmentation")
def unet_small(**kwargs: Any) -> UNet:
    """A lighter U-Net: depth 3, widths 16-128 (~0.5M), for quick runs on 64 px scenes."""
    kwargs.setdefault("depth", 3)
    return UNet(**kwargs)


@register_model(task="semantic-segmentation")
def unet_resnet18(**kwargs: Any) -> EncoderUNet:
    """U-Net decoder over a ResNet-18 encoder (ImageNet stem; output stride 32), as smp's ``Unet``."""
    return _encoder_unet("resnet18", False, kwargs)


@register_model(task="semantic-segmentation")
def unet_resnet34(**kwargs: Any) -> EncoderUNet:
    """U-Net decoder over a ResNet-34 encoder (ImageNet stem; output stride 32), as smp's ``Unet``."""
    return _encoder_unet("resnet34", False, kwargs)


@register_model(task="semantic-segmentation", weights=("scenes", "scenes_scribbles"))
def unet_resnet8_small(**kwargs: Any) -> EncoderUNet:
    """U-Net decoder over ``resnet8_small`` (3x3 stem, stride 8, widths 16-128) for 64 px scenes."""
    return _encoder_unet("resnet8_small", True, kwargs)


@register_model(task="semantic-segmentation")
def unet_resnet18_small(**kwargs: Any) -> EncoderUNet:
    """U-Net decoder over ``resnet18_small`` (3x3 stem, stride 8, widths 64-512) for 64 px scenes."""
    return _encoder_unet("resnet18_small", True, kwargs)
