"""FCN: "Fully Convolutional Networks for Semantic Segmentation", Long et al., 2015
(https://arxiv.org/abs/1411.4038).

A classification backbone without its pooling and linear layer scores every position of its deepest map,
and the scores are upsampled to the input. "We define a skip architecture ... that combines semantic
information from a deep, coarse layer with appearance information from a shallow, fine layer": FCN-16s
and FCN-8s add 1x1 score layers on shallower levels, upsample the coarse scores to each in turn and sum
(``skips=1`` / ``2``; ``0`` is FCN-32s). As in the paper, the skip score layers start at zero ("initializing
the new parameters to zero"), so training starts from the coarse net; the upsampling is fixed bilinear.

``fcn_resnet50`` / ``fcn_resnet101`` are torchvision's variant: a ResNet made atrous to output stride 8
(`zoo.layers.atrous`), an ``FCNHead`` (3x3 conv to a quarter of the channels, norm, ReLU, dropout, 1x1
score conv) and an optional auxiliary head on ``layer3``. Their state dicts (``backbone.*``,
``classifier.*``, ``aux_classifier.*``) load into torchvision's ``fcn_resnet50(weights=None,
weights_backbone=None, num_classes=..., aux_loss=...)`` and back with ``strict=True``.

Output contract (every segmentation model of the zoo): ``model(x)`` returns logits (N, K, H, W) at the
input's size. A model built with ``aux_loss=True`` returns, in train mode only, ``{"out": logits, "aux":
aux_logits}`` as torchvision does, for a recipe to add the auxiliary loss; in eval mode it returns the
logits alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import create_norm2d
from zoo.layers.atrous import dilate_to_output_stride
from zoo.models.base import ZooModel, same_layout_hooks
from zoo.models.features import FeatureExtractor, FeatureInfo
from zoo.registry import register_model

__all__ = [
    "CHECKPOINT_LIBRARIES",
    "FCN",
    "FCNHead",
    "ScoreConv",
    "TorchvisionHeads",
    "atrous_backbone",
    "import_kwargs",
    "plan_levels",
    "segmentation_backbone",
    "state_dict_from",
    "state_dict_to",
    "upsample_to",
    "with_aux",
]

PAPER = "https://arxiv.org/abs/1411.4038"


def atrous_backbone(
    name: str,
    output_stride: int | None = None,
    in_chans: int = 3,
    weights: str | None = None,
    backbone_args: dict[str, Any] | None = None,
) -> nn.Module:
    """Registered model ``name`` made atrous to ``output_stride``, its ``feature_info`` updated to match.

    ``weights`` (a tag such as ``"mnist"``, a weight name or folder: `zoo.factory.create_encoder`) loads
    that weight strictly first, adapting its first conv to ``in_chans``. ``output_stride=None`` keeps the backbone's own strides.
    """
    from zoo.factory import create_encoder  # the factory imports the registry, which imports the families

    model = create_encoder(name, weights, in_chans=in_chans, **(backbone_args or {}))
    info = getattr(model, "feature_info", None)
    if not info or len(info) < 2:
        raise ConfigError(f"backbone '{name}' needs at least two feature levels (feature_info)")
    if output_stride is not None:
        # The extractor selects from the model's levels, so they must carry the new reductions first.
        model.feature_info = FeatureInfo(dilate_to_output_stride(model, info, output_stride))
    return model


def backbone_weights_arg(backbone_weights: str | None, encoder_weights: str | None) -> str | None:
    """The one backbone weight of a builder that takes both spellings: ``encoder_weights`` (as
    segmentation_models_pytorch and the U-Nets name it) and ``backbone_weights`` (the name the published
    weights' configs already record, kept so they load)."""
    if backbone_weights and encoder_weights and backbone_weights != encoder_weights:
        raise ConfigError(
            f"backbone_weights={backbone_weights!r} and encoder_weights={encoder_weights!r} name two weights "
            "for one backbone: pass only encoder_weights="
        )
    return encoder_weights or backbone_weights


def segmentation_backbone(
    name: str,
    out_indices: Sequence[int] | None = None,
    output_stride: int | None = None,
    in_chans: int = 3,
    weights: str | None = None,
    backbone_args: dict[str, Any] | None = None,
) -> FeatureExtractor:
    """The feature levels ``out_indices`` of `atrous_backbone` (a ``features_only`` model)."""
    return FeatureExtractor(
        atrous_backbone(name, output_stride, in_chans, weights, backbone_args), out_indices
    )


class FCNHead(nn.Sequential):
    """torchvision's ``FCNHead``: 3x3 conv to ``channels`` (a quarter of the input's), norm, ReLU, dropout,
    then the score conv (index 4)."""

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        channels: int | None = None,
        norm: str = "batch",
        dropout: float = 0.1,
        score: nn.Module | None = None,
    ):
        channels = channels or in_chans // 4
        super().__init__(
            nn.Conv2d(in_chans, channels, 3, padding=1, bias=False),
            create_norm2d(norm, channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            score if score is not None else nn.Conv2d(channels, num_classes, 1),
        )


class ScoreConv(nn.Conv2d):
    """FCN's score layers: the 1x1 conv that scores the deepest features, owning one 1x1 score conv per skip
    level (``skips``, deep to shallow, zero-initialised).

    All class-specific layers live under one module path, so ``num_classes=`` with pretrained weights
    re-makes every one of them; with no skips its state dict is a plain conv's (torchvision's layout).
    """

    def __init__(self, in_chans: int, num_classes: int, skip_chans: Sequence[int] = ()):
        super().__init__(in_chans, num_classes, 1)
        self.skips = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in skip_chans)
        for conv in self.skips:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of a (N, C, h, w) map to ``size`` (H, W): FCN and DeepLab heads to the input size."""
    # Sizes read from tensors, so an exported graph follows the input's height and width.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class TorchvisionHeads(ZooModel):
    """A model whose head module is named ``classifier``, as in torchvision's state dicts.

    The zoo's class attribute ``classifier`` (the dotted path of the score layer, e.g. ``"classifier.4"``)
    shadows the module of that name on attribute access, so forward reaches the heads through
    ``self._modules`` and `get_submodule` resolves ``classifier.*`` paths there too.
    """

    def get_submodule(self, target: str) -> nn.Module:
        name, _, rest = target.partition(".")
        if name == "classifier" and "classifier" in self._modules:
            head = self._modules["classifier"]
            return head.get_submodule(rest) if rest else head
        return super().get_submodule(target)


# torchvision's segmentation checkpoints (fcn_resnet50_coco-1167a1af.pth, deeplabv3_resnet50_coco-...) name
# their modules as FCN and DeepLab v3 here do, so `zoo import` reads them through these hooks (DeepLab too).
CHECKPOINT_LIBRARIES = ("torchvision",)
state_dict_from, state_dict_to = same_layout_hooks("FCN / DeepLab v3", CHECKPOINT_LIBRARIES)


def import_kwargs(library: str, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The builder arguments a torchvision segmentation checkpoint was saved with: its classes (the score
    layer ``classifier.4``) and whether it has the auxiliary head."""
    if "classifier.4.weight" not in state_dict:
        raise ValueError("no 'classifier.4.weight': not a torchvision FCN / DeepLab v3 state dict")
    return {
        "num_classes": int(state_dict["classifier.4.weight"].shape[0]),
        "aux_loss": any(k.startswith("aux_classifier.") for k in state_dict),
    }


class FCN(TorchvisionHeads):
    """A backbone's feature levels, an `FCNHead` on the deepest, skip fusion and an optional aux head."""

    classifier = "classifier.4"
    # The output stride (set per instance): inputs padded to a multiple keep the maps aligned.
    size_multiple: int = 8

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 21,
        in_chans: int = 3,
        output_stride: int | None = 8,
        skips: int = 0,
        aux_loss: bool = False,
        head_channels: int | None = None,
        dropout: float = 0.1,
        norm: str = "batch",
        img_size: int = 224,
        backbone_weights: str | None = None,
        backbone_args: dict[str, Any] | None = None,
        encoder_weights: str | None = None,
    ):
        super().__init__()
        weights = backbone_weights_arg(backbone_weights, encoder_weights)
        model = atrous_backbone(backbone, output_stride, in_chans, weights, backbone_args)
        levels, positions = plan_levels(model.feature_info, backbone, skips, aux_loss)
        self.backbone = FeatureExtractor(model, positions)
        info = self.backbone.feature_info
        index = {level["index"]: i for i, level in enumerate(info)}
        self._out = index[levels["out"]]
        self._skips = tuple(index[p] for p in levels["skips"])
        self._aux = index[levels["aux"]] if aux_loss else None
        channels = info.channels()
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        self.output_stride = int(info.reduction(-1))
        self.size_multiple = self.output_stride
        self.first_conv = f"backbone.{self.backbone.first_conv}" if self.backbone.first_conv else None
        head_channels = head_channels or channels[-1] // 4
        score = ScoreConv(head_channels, num_classes, [channels[i] for i in self._skips])
        self.classifier = FCNHead(channels[-1], num_classes, head_channels, norm, dropout, score)
        self.aux_classifier = (
            FCNHead(channels[self._aux], num_classes, norm=norm, dropout=dropout) if aux_loss else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        head = self._modules["classifier"]
        scores = head(features[self._out])
        for conv, position in zip(head[4].skips, self._skips):
            skip = features[position]
            scores = upsample_to(scores, skip.shape[-2:]) + conv(skip)
        out = upsample_to(scores, size)
        return with_aux(self, out, features, size)


def with_aux(
    model: nn.Module, out: torch.Tensor, features: list[torch.Tensor], size: Sequence[int]
) -> torch.Tensor | dict[str, torch.Tensor]:
    """The logits, or in train mode with an aux head ``{"out": logits, "aux": aux_logits}``."""
    aux = model._modules.get("aux_classifier")
    if aux is None or not model.training:
        return out
    return {"out": out, "aux": upsample_to(aux(features[model._aux]), size)}


def plan_levels(
    info: FeatureInfo, backbone: str, skips: int, aux_loss: bool, low_level: int | None = None
) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Which backbone levels a head reads: the deepest (``out``), ``aux`` (the one before it, torchvision's
    ``layer3``), ``skips`` levels of decreasing reduction (deep to shallow) and a ``low_level`` one."""
    count = len(info)
    reductions = info.reduction()
    chosen: list[int] = []
    for position in range(count - 2, -1, -1):
        if len(chosen) == skips:
            break
        if reductions[position] < reductions[chosen[-1] if chosen else count - 1]:
            chosen.append(position)
    if len(chosen) < skips:
        raise ConfigError(
            f"skips={skips}: '{backbone}' (output stride {reductions[-1]}) has only {len(chosen)} shallower "
            f"levels of distinct reduction ({info.describe()})"
        )
    if low_level is not None and (not -count <= low_level < count or low_level % count == count - 1):
        raise ConfigError(
            f"low_level={low_level} must name a level shallower than the deepest; '{backbone}' has "
            f"{info.describe()}"
        )
    levels = {"out": count - 1, "aux": count - 2, "skips": chosen, "low_level": None}
    wanted = {count - 1, *chosen}
    if aux_loss:
        wanted.add(count - 2)
    if low_level is not None:
        levels["low_level"] = low_level % count
        wanted.add(low_level % count)
    return levels, tuple(sorted(wanted))


def _backbone(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("backbone", name)
    return kwargs


def _small(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Defaults of the small-input variants: the 64 px, 11-class digit scenes, the backbone's own stride."""
    kwargs.setdefault("num_classes", 11)
    kwargs.setdefault("img_size", 64)
    kwargs.setdefault("output_stride", None)
    return kwargs


@register_model(task="semantic-segmentation")
def fcn_resnet50(**kwargs: Any) -> FCN:
    """FCN over an atrous ResNet-50 (output stride 8); state dicts interchangeable with torchvision's."""
    return FCN(**_backbone("resnet50", kwargs))


@register_model(task="semantic-segmentation")
def fcn_resnet101(**kwargs: Any) -> FCN:
    """FCN over an atrous ResNet-101 (output stride 8); state dicts interchangeable with torchvision's."""
    return FCN(**_backbone("resnet101", kwargs))


@register_model(task="semantic-segmentation", weights=("scenes",))
def fcn_resnet8_small(**kwargs: Any) -> FCN:
    """FCN-8s-style skip fusion over ``resnet8_small`` (stride 8; skips at /4 and /2) for 64 px scenes."""
    kwargs.setdefault("skips", 2)
    return FCN(**_backbone("resnet8_small", _small(kwargs)))


@register_model(task="semantic-segmentation")
def fcn_resnet18_small(**kwargs: Any) -> FCN:
    """FCN-8s-style skip fusion over ``resnet18_small`` (stride 8; skips at /4 and /2) for 64 px scenes."""
    kwargs.setdefault("skips", 2)
    return FCN(**_backbone("resnet18_small", _small(kwargs)))
