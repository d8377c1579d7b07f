"""MLP: a multi-layer perceptron classifier on flattened images.

"Learning representations by back-propagating errors", Rumelhart, Hinton & Williams, 1986
(https://doi.org/10.1038/323533a0).

Each hidden layer is linear -> norm -> activation -> dropout; the activation and the norm are picked by
name from `zoo.layers`, so an ablation (ReLU vs |x| vs sigmoid, batch vs layer norm) is one kwarg. The
first layer keeps its weight in image layout, (width, C, H, W), which is the same matrix as a linear
layer on the flattened image but lets ``in_chans=`` adapt pretrained weights exactly as for a conv stem
(and shows each hidden unit's template as an image). The input size is fixed by that first layer.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from zoo.errors import ConfigError
from zoo.layers import create_act, create_norm1d
from zoo.models.base import ZooModel
from zoo.registry import register_model

__all__ = ["MLP", "ImageLinear"]

PAPERS = ("https://doi.org/10.1038/323533a0",)


class ImageLinear(nn.Module):
    """A linear layer on flattened (N, C, H, W) images whose weight is stored as (out, C, H, W).

    Mathematically ``nn.Linear(C * H * W, out)``, with the same default initialisation; the image-shaped
    weight is what lets `zoo.weights.adapt_input_conv` change the number of input channels.
    """

    def __init__(self, in_chans: int, img_size: tuple[int, int], out_features: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_chans, *img_size))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's initialisation, with fan_in = C * H * W.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # flatten(1) accepts both images and already-flattened (N, C*H*W) vectors.
        return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)

    def extra_repr(self) -> str:
        out, chans, height, width = self.weight.shape
        return f"in_chans={chans}, img_size=({height}, {width}), out_features={out}, bias={self.bias is not None}"


def _block(fc: nn.Module, width: int, act: str, norm: str, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            fc=fc,
            norm=create_norm1d(norm, width),
            act=create_act(act),
            drop=nn.Dropout(dropout),
        )
    )


class MLP(ZooModel):
    """An image classifier of `depth` fully connected hidden layers of `width` units, then a linear head."""

    first_conv = "blocks.0.fc"
    classifier = "head"
    dynamic_size = False

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        depth: int = 2,
        width: int = 512,
        act: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 1:
            # With no hidden layer the first layer would also be the head, and the two adaptations
            # (num_classes=, in_chans=) would fight over one weight.
            raise ConfigError(f"MLP depth must be at least 1 hidden layer, got depth={depth}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        self.num_features = width
        # As in ConvNormAct: a norm's shift right after the linear layer makes its bias redundant.
        bias = (norm or "none") == "none"
        blocks = [_block(ImageLinear(in_chans, (img_size, img_size), width, bias), width, act, norm, dropout)]
        blocks += [_block(nn.Linear(width, width, bias), width, act, norm, dropout) for _ in range(depth - 1)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _create(defaults: dict[str, Any], kwargs: dict[str, Any]) -> MLP:
    # A builder's sizes are defaults, not fixed: a user's depth=/width= wins, so a sweep can start from one.
    return MLP(**{**defaults, **kwargs})


@register_model(weights=("mnist",))
def mlp(**kwargs: Any) -> MLP:
    """MLP with two hidden layers of 512 ReLU units and dropout 0.1, for 28x28 grey digits."""
    return _create({"depth": 2, "width": 512, "dropout": 0.1}, kwargs)


@register_model
def mlp_small(**kwargs: Any) -> MLP:
    """MLP with one hidden layer of 128 ReLU units, for 28x28 grey digits."""
    return _create({"depth": 1, "width": 128}, kwargs)
