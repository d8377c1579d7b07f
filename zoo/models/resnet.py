"""ResNet: "Deep Residual Learning for Image Recognition", He et al., 2015 (https://arxiv.org/abs/1512.03385).

Parameter names match torchvision's ``resnet*`` exactly, so state dicts move both ways with
``strict=True``. The ``*_small`` variants use a 3x3 stride-1 stem and no max-pool, for 28x28 and 32x32
inputs where the ImageNet stem would throw away three quarters of the pixels before the first block.
The norm layer comes from `zoo.layers` (batch by default; group/layer/instance for small batches).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import create_norm2d
from zoo.models.base import ZooModel
from zoo.models.features import FeatureInfo
from zoo.registry import register_model

__all__ = ["CHECKPOINT_LIBRARIES", "BasicBlock", "Bottleneck", "ResNet", "state_dict_from", "state_dict_to"]

PAPER = "https://arxiv.org/abs/1512.03385"


def _conv3x3(in_chans: int, out_chans: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chans, out_chans, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(
        self,
        in_chans: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: str = "batch",
    ):
        super().__init__()
        self.conv1 = _conv3x3(in_chans, width, stride)
        self.bn1 = create_norm2d(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = create_norm2d(norm, width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as torchvision "v1.5"), 1x1 expand by 4; ResNet-50/101/152."""

    expansion = 4

    def __init__(
        self,
        in_chans: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: str = "batch",
    ):
        super().__init__()
        out_chans = width * self.expansion
        self.conv1 = nn.Conv2d(in_chans, width, 1, bias=False)
        self.bn1 = create_norm2d(norm, width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = create_norm2d(norm, width)
        self.conv3 = nn.Conv2d(width, out_chans, 1, bias=False)
        self.bn3 = create_norm2d(norm, out_chans)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(ZooModel):
    """A ResNet classifier: stem, four stages of residual blocks, global average pool, linear head."""

    first_conv = "conv1"
    classifier = "fc"

    def __init__(
        self,
        block: str = "basic",
        layers: tuple[int, ...] = (2, 2, 2, 2),
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        small_input: bool = False,
        norm: str = "batch",
        img_size: int = 224,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        stem = widths[0]
        # Registered in the order forward runs them, as torchvision does: the feature extractor and
        # torchvision's IntermediateLayerGetter run the top-level modules in registration order.
        if small_input:
            self.conv1 = nn.Conv2d(in_chans, stem, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, stem, 7, 2, 3, bias=False)
        self.bn1 = create_norm2d(norm, stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)
        reduction = 1 if small_input else 2
        levels = [{"module": "relu", "num_chs": stem, "reduction": reduction}]
        reduction *= 1 if small_input else 2  # the max-pool
        channels = stem
        for index, (depth, width) in enumerate(zip(layers, widths), start=1):
            blocks = []
            for i in range(depth):
                stride = 2 if (i == 0 and index > 1) else 1
                out_chans = width * block_cls.expansion
                downsample = None
                if stride != 1 or channels != out_chans:
                    downsample = nn.Sequential(
                        nn.Conv2d(channels, out_chans, 1, stride, bias=False), create_norm2d(norm, out_chans)
                    )
                blocks.append(block_cls(channels, width, stride, downsample, norm))
                channels = out_chans
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            reduction *= 2 if index > 1 else 1
            levels.append({"module": f"layer{index}", "num_chs": channels, "reduction": reduction})
        self.num_stages = len(layers)
        self.num_features = channels
        # The stem's activation, then one level a stage, named as torchvision's layers (layer1..layer4).
        self.feature_info = FeatureInfo(levels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Each block starts as the identity ("Bag of Tricks", He et al. 2019): helps short schedules.
            for m in self.modules():
                last = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
                if isinstance(m, (BasicBlock, Bottleneck)) and getattr(last, "weight", None) is not None:
                    nn.init.zeros_(last.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest feature level (``layer4``'s output), before pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


# -- checkpoint layouts (the hook `zoo.importing` calls) ---------------------------------------------------

# Libraries whose ResNet checkpoints this family reads and writes. torchvision's ``resnet*`` and timm's plain
# ``resnet*`` (``timm.create_model("resnet50")``) both name every parameter as this module does, so the
# mapping is the identity; what differs are timm's other ResNet variants, which are refused by name rather
# than loaded partially into a model of another shape.
CHECKPOINT_LIBRARIES = ("torchvision", "timm")

# Key fragments that only timm's variant ResNets have: (fragment, what it means, the variant).
_TIMM_VARIANTS = (
    ("conv1.0.", "a deep three-conv stem", "resnet*c / resnet*d"),
    ("downsample.2.", "average-pooled shortcuts", "resnet*d"),
    (".se.", "squeeze-and-excitation blocks", "seresnet* / resnet*_se"),
    ("attn.", "attention blocks", "ecaresnet* / skresnet*"),
)


def _check_library(library: str) -> None:
    if library not in CHECKPOINT_LIBRARIES:
        raise ConfigError(
            f"no ResNet checkpoint layout for '{library}'; this family reads {', '.join(CHECKPOINT_LIBRARIES)}"
        )


def state_dict_from(library: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``library`` (torchvision or timm) ResNet state dict in the zoo's layout.

    Why a hook: the importer must not guess at another library's names. Here both libraries already use the
    zoo's names, so keys pass unchanged, but a timm variant whose structure the zoo's ResNet does not have
    (deep stem, average-pooled shortcuts, SE or attention blocks) is refused with its name: loading the
    keys that happen to match would be a silent partial load.
    """
    _check_library(library)
    if library == "timm":
        for fragment, what, variant in _TIMM_VARIANTS:
            found = [k for k in state_dict if fragment in k]
            if found:
                raise ConfigError(
                    f"this timm checkpoint has {what} ({found[0]}, ...): it is a {variant} model, which the "
                    "zoo's ResNet (torchvision's structure: one 7x7 stem conv, strided 1x1 shortcuts) does "
                    "not have. Import a plain timm resnet18/34/50/101/152 checkpoint."
                )
    return dict(state_dict)


def state_dict_to(library: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The zoo's ResNet state dict in ``library``'s layout (loads into ``torchvision.models.resnet50()`` or
    ``timm.create_model("resnet50")`` with ``strict=True``): the inverse of `state_dict_from`."""
    _check_library(library)
    return dict(state_dict)


def _create(block: str, layers: tuple[int, ...], small_input: bool, **kwargs: Any) -> ResNet:
    if small_input:
        kwargs.setdefault("img_size", 32)
    return ResNet(block=block, layers=layers, small_input=small_input, **kwargs)


@register_model
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (ImageNet stem, torchvision-compatible)."""
    return _create("basic", (2, 2, 2, 2), False, **kwargs)


@register_model
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (ImageNet stem, torchvision-compatible)."""
    return _create("basic", (3, 4, 6, 3), False, **kwargs)


@register_model
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (bottleneck blocks, torchvision-compatible)."""
    return _create("bottleneck", (3, 4, 6, 3), False, **kwargs)


@register_model
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 (bottleneck blocks, torchvision-compatible)."""
    return _create("bottleneck", (3, 4, 23, 3), False, **kwargs)


@register_model
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152 (bottleneck blocks, torchvision-compatible)."""
    return _create("bottleneck", (3, 8, 36, 3), False, **kwargs)


@register_model
def resnet18_small(**kwargs: Any) -> ResNet:
    """ResNet-18 for 28x28 / 32x32 inputs: 3x3 stride-1 stem, no max-pool."""
    return _create("basic", (2, 2, 2, 2), True, **kwargs)


@register_model
def resnet34_small(**kwargs: Any) -> ResNet:
    """ResNet-34 for 28x28 / 32x32 inputs: 3x3 stride-1 stem, no max-pool."""
    return _create("basic", (3, 4, 6, 3), True, **kwargs)


# mnist_robust: pen, blur, resolution, ink, noise and warp augmentation (recipes/robust_classification.py).
@register_model(weights=("mnist", "mnist_robust"))
def resnet8_small(**kwargs: Any) -> ResNet:
    """A narrow 8-layer ResNet (one basic block a stage, widths 16-128) for fast training on 28x28 digits."""
    kwargs.setdefault("widths", (16, 32, 64, 128))
    return _create("basic", (1, 1, 1, 1), True, **kwargs)
