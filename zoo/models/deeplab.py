"""DeepLab v3: "Rethinking Atrous Convolution for Semantic Image Segmentation", Chen et al., 2017
(https://arxiv.org/abs/1706.05587), and v3+: "Encoder-Decoder with Atrous Separable Convolution for
Semantic Image Segmentation", Chen et al., 2018 (https://arxiv.org/abs/1802.02611).

v3 keeps the deep features dense: the last stages of a registry backbone trade stride for dilation
(`zoo.layers.atrous`; ``output_stride`` 8 or 16 on the ImageNet ResNets) and an ASPP head
(`zoo.layers.aspp`) samples them at several rates plus image-level pooling. The rates follow the output
stride as in the paper: (6, 12, 18) at 16, "the rates are doubled when output stride = 8".
``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` are torchvision's layout (``backbone.*``, ``classifier.*``
with ``ASPP`` at index 0, ``aux_classifier.*`` an ``FCNHead`` on ``layer3``), interchangeable with
``torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, ...)`` both ways.

v3+ adds a decoder: "the encoder features are first bilinearly upsampled ... and then concatenated with
the corresponding low-level features from the network backbone that have the same spatial resolution",
after "another 1x1 convolution on the low-level features to reduce the number of channels" (48), then
3x3 convs refine the result before the final upsampling. Its default output stride is the paper's 16.

The small variants run on ``resnet8_small`` / ``resnet18_small`` (stride 8 with a stride-1 stem) for the
64 px digit scenes: v3 at output stride 4 (a 16x16 map) with rates (3, 6, 9), the paper's rates scaled
from a 33x33 map to 16x16; v3+ at the backbone's own stride 8 with rates (2, 4, 6) and the low-level
branch from ``layer2`` (/2), the paper's 4x gap between the two.

The output contract and the aux head are FCN's (`zoo.models.fcn`): logits at the input's size; with
``aux_loss=True``, ``{"out", "aux"}`` in train mode only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import create_norm2d
from zoo.layers.aspp import ASPP
from zoo.models.fcn import (  # the checkpoint hooks too: torchvision's DeepLab v3 files share FCN's layout
    CHECKPOINT_LIBRARIES,
    FCNHead,
    TorchvisionHeads,
    atrous_backbone,
    backbone_weights_arg,
    import_kwargs,
    plan_levels,
    state_dict_from,
    state_dict_to,
    upsample_to,
    with_aux,
)
from zoo.models.features import FeatureExtractor
from zoo.registry import register_model

__all__ = [
    "CHECKPOINT_LIBRARIES",
    "DeepLabHead",
    "DeepLabV3",
    "DeepLabV3Plus",
    "DeepLabV3PlusHead",
    "import_kwargs",
    "state_dict_from",
    "state_dict_to",
]

PAPER = "https://arxiv.org/abs/1706.05587"
PAPER_PLUS = "https://arxiv.org/abs/1802.02611"


def default_rates(output_stride: int) -> tuple[int, ...]:
    """The paper's ASPP rates, (6, 12, 18) at output stride 16, scaled inversely with the stride."""
    return tuple(max(1, r * 16 // output_stride) for r in (6, 12, 18))


class DeepLabHead(nn.Sequential):
    """torchvision's ``DeepLabHead``: ASPP, 3x3 conv, norm, ReLU, then the score conv (index 4)."""

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        atrous_rates: Sequence[int] = (12, 24, 36),
        channels: int = 256,
        norm: str = "batch",
    ):
        super().__init__(
            ASPP(in_chans, atrous_rates, channels, norm),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            create_norm2d(norm, channels),
            nn.ReLU(),
            nn.Conv2d(channels, num_classes, 1),
        )


class DeepLabV3PlusHead(nn.Module):
    """ASPP on the deep map; upsampled to the low-level map, concatenated with its 1x1 projection, refined
    by two 3x3 convs, scored by ``head``."""

    def __init__(
        self,
        in_chans: int,
        low_level_chans: int,
        num_classes: int,
        atrous_rates: Sequence[int] = (6, 12, 18),
        channels: int = 256,
        low_level_proj: int = 48,
        norm: str = "batch",
    ):
        super().__init__()
        self.aspp = ASPP(in_chans, atrous_rates, channels, norm)
        self.low_level = nn.Sequential(
            nn.Conv2d(low_level_chans, low_level_proj, 1, bias=False),
            create_norm2d(norm, low_level_proj),
            nn.ReLU(),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(channels + low_level_proj, channels, 3, padding=1, bias=False),
            create_norm2d(norm, channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            create_norm2d(norm, channels),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        x = upsample_to(self.aspp(x), low_level.shape[-2:])
        return self.head(self.fuse(torch.cat([x, self.low_level(low_level)], dim=1)))


class DeepLabV3(TorchvisionHeads):
    """An atrous backbone's deepest level through a `DeepLabHead`; optional aux `FCNHead` on the level
    before it. Heads named as torchvision's (see `zoo.models.fcn.TorchvisionHeads`)."""

    classifier = "classifier.4"
    # The output stride (set per instance): inputs padded to a multiple keep the maps aligned.
    size_multiple: int = 8

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 21,
        in_chans: int = 3,
        output_stride: int | None = 8,
        atrous_rates: Sequence[int] | None = None,
        aspp_channels: int = 256,
        aux_loss: bool = False,
        norm: str = "batch",
        img_size: int = 224,
        backbone_weights: str | None = None,
        backbone_args: dict[str, Any] | None = None,
        low_level: int | None = None,
        low_level_proj: int = 48,
        encoder_weights: str | None = None,
    ):
        super().__init__()
        backbone_weights = backbone_weights_arg(backbone_weights, encoder_weights)
        if low_level is not None and not isinstance(self, DeepLabV3Plus):
            raise ConfigError("low_level= picks the v3+ decoder's input: build a deeplabv3plus_* model")
        model = atrous_backbone(backbone, output_stride, in_chans, backbone_weights, backbone_args)
        levels, positions = plan_levels(model.feature_info, backbone, 0, aux_loss, low_level)
        self.backbone = FeatureExtractor(model, positions)
        info = self.backbone.feature_info
        index = {level["index"]: i for i, level in enumerate(info)}
        self._out = index[levels["out"]]
        self._aux = index[levels["aux"]] if aux_loss else None
        self._low_level = index[levels["low_level"]] if low_level is not None else None
        channels = info.channels()
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        self.output_stride = int(info.reduction(self._out))
        self.size_multiple = self.output_stride
        self.first_conv = f"backbone.{self.backbone.first_conv}" if self.backbone.first_conv else None
        rates = tuple(atrous_rates) if atrous_rates is not None else default_rates(self.output_stride)
        self.classifier = self._make_head(channels, num_classes, rates, aspp_channels, low_level_proj, norm)
        self.aux_classifier = FCNHead(channels[self._aux], num_classes, norm=norm) if aux_loss else None

    def _make_head(
        self,
        channels: Sequence[int],
        num_classes: int,
        rates: Sequence[int],
        aspp_channels: int,
        low_level_proj: int,
        norm: str,
    ) -> nn.Module:
        return DeepLabHead(channels[self._out], num_classes, rates, aspp_channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        head = self._modules["classifier"]
        if self._low_level is None:
            scores = head(features[self._out])
        else:
            scores = head(features[self._out], features[self._low_level])
        return with_aux(self, upsample_to(scores, size), features, size)


class DeepLabV3Plus(DeepLabV3):
    """DeepLab v3 with the v3+ decoder on the backbone level ``low_level`` (default: ``layer1``, /4)."""

    classifier = "classifier.head"
    size_multiple: int = 16

    def __init__(
        self, backbone: str = "resnet50", low_level: int = 1, output_stride: int | None = 16, **kwargs: Any
    ):
        super().__init__(backbone=backbone, low_level=low_level, output_stride=output_stride, **kwargs)

    def _make_head(
        self,
        channels: Sequence[int],
        num_classes: int,
        rates: Sequence[int],
        aspp_channels: int,
        low_level_proj: int,
        norm: str,
    ) -> nn.Module:
        return DeepLabV3PlusHead(
            channels[self._out],
            channels[self._low_level],
            num_classes,
            rates,
            aspp_channels,
            low_level_proj,
            norm,
        )


def _defaults(backbone: str, kwargs: dict[str, Any], **small: Any) -> dict[str, Any]:
    kwargs.setdefault("backbone", backbone)
    if small:
        # The 64 px, 11-class digit scenes.
        kwargs.setdefault("num_classes", 11)
        kwargs.setdefault("img_size", 64)
        for key, value in small.items():
            kwargs.setdefault(key, value)
    return kwargs


@register_model(task="semantic-segmentation")
def deeplabv3_resnet50(**kwargs: Any) -> DeepLabV3:
    """DeepLab v3 over an atrous ResNet-50 (output stride 8); state dicts interchangeable with torchvision's."""
    return DeepLabV3(**_defaults("resnet50", kwargs))


@register_model(task="semantic-segmentation")
def deeplabv3_resnet101(**kwargs: Any) -> DeepLabV3:
    """DeepLab v3 over an atrous ResNet-101 (output stride 8); state dicts interchangeable with torchvision's."""
    return DeepLabV3(**_defaults("resnet101", kwargs))


@register_model(task="semantic-segmentation")
def deeplabv3_resnet8_small(**kwargs: Any) -> DeepLabV3:
    """DeepLab v3 over ``resnet8_small`` at output stride 4 (ASPP 64 wide, rates 3/6/9) for 64 px scenes."""
    return DeepLabV3(
        **_defaults("resnet8_small", kwargs, output_stride=4, atrous_rates=(3, 6, 9), aspp_channels=64)
    )


@register_model(task="semantic-segmentation")
def deeplabv3_resnet18_small(**kwargs: Any) -> DeepLabV3:
    """DeepLab v3 over ``resnet18_small`` at output stride 4 (ASPP 128 wide, rates 3/6/9) for 64 px scenes."""
    return DeepLabV3(
        **_defaults("resnet18_small", kwargs, output_stride=4, atrous_rates=(3, 6, 9), aspp_channels=128)
    )


@register_model(task="semantic-segmentation")
def deeplabv3plus_resnet50(**kwargs: Any) -> DeepLabV3Plus:
    """DeepLab v3+ over an atrous ResNet-50: output stride 16, decoder on ``layer1`` (/4), as the paper."""
    return DeepLabV3Plus(**_defaults("resnet50", kwargs))


@register_model(task="semantic-segmentation")
def deeplabv3plus_resnet101(**kwargs: Any) -> DeepLabV3Plus:
    """DeepLab v3+ over an atrous ResNet-101: output stride 16, decoder on ``layer1`` (/4), as the paper."""
    return DeepLabV3Plus(**_defaults("resnet101", kwargs))


@register_model(task="semantic-segmentation", weights=("scenes",))
def deeplabv3plus_resnet8_small(**kwargs: Any) -> DeepLabV3Plus:
    """DeepLab v3+ over ``resnet8_small`` (stride 8, rates 2/4/6, decoder on ``layer2`` /2) for 64 px scenes."""
    small = {"output_stride": None, "atrous_rates": (2, 4, 6), "aspp_channels": 64, "low_level": 2}
    return DeepLabV3Plus(**_defaults("resnet8_small", kwargs, low_level_proj=24, **small))


@register_model(task="semantic-segmentation")
def deeplabv3plus_resnet18_small(**kwargs: Any) -> DeepLabV3Plus:
    """DeepLab v3+ over ``resnet18_small`` (stride 8, rates 2/4/6, decoder on ``layer2`` /2) for 64 px scenes."""
    small = {"output_stride": None, "atrous_rates": (2, 4, 6), "aspp_channels": 128, "low_level": 2}
    return DeepLabV3Plus(**_defaults("resnet18_small", kwargs, low_level_proj=48, **small))
