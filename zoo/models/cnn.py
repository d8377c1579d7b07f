"""CNN: plain convolutional classifiers, the baseline between the MLP and the ResNet.

"Gradient-based learning applied to document recognition", LeCun et al., 1998
(https://doi.org/10.1109/5.726791): stacks of convolutions, each stage ending in a downsampling step.
The downsampling step is a choice:

- ``"max"`` / ``"avg"``: 2x2 max or average pooling;
- ``"stride"``: a stride-2 convolution of the same width, as in "Striving for Simplicity: The All
  Convolutional Net", Springenberg et al., 2014 (https://arxiv.org/abs/1412.6806), which finds that
  max-pooling can be replaced by a convolution with a larger stride at no loss of accuracy (the
  downsampling is learnt, at the cost of one more conv a stage).

``block="dws"`` swaps every convolution after the stem for a depthwise-separable one, "MobileNets",
Howard et al., 2017 (https://arxiv.org/abs/1704.04861); the stem stays a full convolution, as in
MobileNet, because a depthwise filter over one grey channel would see too little. Norm and activation are
picked by name from `zoo.layers`. Global average pooling before the linear head makes the model accept
any input size large enough for its downsampling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import ConvNormAct, DepthwiseSeparableConv
from zoo.models.base import ZooModel
from zoo.models.features import FeatureInfo
from zoo.registry import register_model

__all__ = ["BLOCKS", "CNN", "DOWNSAMPLES"]

PAPERS = (
    "https://doi.org/10.1109/5.726791",
    "https://arxiv.org/abs/1412.6806",
    "https://arxiv.org/abs/1704.04861",
)

DOWNSAMPLES = ("max", "avg", "stride")
BLOCKS = ("conv", "dws")


class CNN(ZooModel):
    """A conv stem, stages of `convs_per_stage` convs each ending in a 2x downsampling, GAP, linear head."""

    first_conv = "stem.0"
    classifier = "head"

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        widths: tuple[int, ...] = (32, 64, 128),
        convs_per_stage: int = 1,
        downsample: str = "max",
        block: str = "conv",
        kernel_size: int = 3,
        norm: str = "batch",
        act: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if downsample not in DOWNSAMPLES:
            raise ConfigError(f"unknown downsample '{downsample}'; expected one of {', '.join(DOWNSAMPLES)}")
        if block not in BLOCKS:
            raise ConfigError(
                f"unknown block '{block}'; expected one of {', '.join(BLOCKS)} "
                "(conv: full convolution, dws: depthwise separable)"
            )
        if kernel_size % 2 == 0:
            # "Same" padding (kernel_size // 2) keeps the size only for odd kernels.
            raise ConfigError(f"kernel_size must be odd, got {kernel_size}")
        if not widths or convs_per_stage < 1:
            raise ConfigError(
                f"a CNN needs at least one stage and one conv a stage, got widths={widths}, "
                f"convs_per_stage={convs_per_stage}"
            )
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        layer = DepthwiseSeparableConv if block == "dws" else ConvNormAct

        def conv(cin: int, cout: int, stride: int = 1) -> nn.Module:
            return layer(cin, cout, kernel_size, stride, norm=norm, act=act)

        self.stem = ConvNormAct(in_chans, widths[0], kernel_size, norm=norm, act=act)
        stages = []
        channels = widths[0]
        for width in widths:
            convs = [conv(channels if i == 0 else width, width) for i in range(convs_per_stage)]
            if downsample == "max":
                down: nn.Module = nn.MaxPool2d(2)
            elif downsample == "avg":
                down = nn.AvgPool2d(2)
            else:
                down = conv(width, width, stride=2)
            stages.append(nn.Sequential(*convs, down))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        # The stem at full resolution, then each stage after its 2x downsampling.
        self.feature_info = FeatureInfo(
            [{"module": "stem", "num_chs": widths[0], "reduction": 1}]
            + [
                {"module": f"stages.{i}", "num_chs": w, "reduction": 2 ** (i + 1)}
                for i, w in enumerate(widths)
            ]
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest feature level (the last stage's output), before pooling."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.forward_features(x)), 1)
        return self.head(self.head_drop(x))


def _create(defaults: dict[str, Any], kwargs: dict[str, Any]) -> CNN:
    # A builder's choices are defaults, not fixed: a user's widths=/norm= wins, so a sweep can start from one.
    return CNN(**{**defaults, **kwargs})


# mnist: all 4,000 labels. mnist100_*: 10 labels per digit (recipes/semi_supervised.py; draws 0-2 of the
# baseline and FixMatch). mnist100_pseudolabel[_draw1|_draw2]: recipes/pseudo_label.py (draws 0-2). mnist100_{simclr,moco,byol}_finetune: recipes/fine_tune.py.
# mnist_{sym40,pairs40}_{ce,gce}: 40% noisy train labels (recipes/noisy_labels.py).
@register_model(
    weights=(
        "mnist",
        "mnist100_supervised",
        "mnist100_supervised_draw1",
        "mnist100_supervised_draw2",
        "mnist100_fixmatch",
        "mnist100_fixmatch_draw1",
        "mnist100_fixmatch_draw2",
        "mnist100_meanteacher",
        "mnist100_pseudolabel",
        "mnist100_pseudolabel_draw1",
        "mnist100_pseudolabel_draw2",
        "mnist100_simclr_finetune",
        "mnist100_moco_finetune",
        "mnist100_byol_finetune",
        "mnist_sym40_ce",
        "mnist_sym40_gce",
        "mnist_pairs40_ce",
        "mnist_pairs40_gce",
    )
)
def cnn(**kwargs: Any) -> CNN:
    """Plain CNN: three conv-BN-ReLU stages (32-64-128) with 2x2 max pooling, for 28x28 grey digits."""
    return _create({"downsample": "max"}, kwargs)


@register_model
def cnn_strided(**kwargs: Any) -> CNN:
    """Plain CNN downsampling with stride-2 convolutions instead of pooling (all-convolutional)."""
    return _create({"downsample": "stride"}, kwargs)


@register_model(weights=("mnist",))
def cnn_dws(**kwargs: Any) -> CNN:
    """CNN of depthwise-separable convolutions (MobileNet-style) with stride-2 downsampling."""
    return _create({"downsample": "stride", "block": "dws"}, kwargs)
