"""The toy task's model file: a registered builder whose network reads the brightness of an image."""

from __future__ import annotations

import torch
from torch import nn

from tests.tasks import toy_task  # noqa: F401  (the task registers on import, as zoo.tasks' modules do)
from zoo.models.base import ZooModel
from zoo.registry import register_model


class BrightnessNet(ZooModel):
    """Global average pooling, then an affine map initialised to the identity."""

    first_conv = None
    classifier = None

    def __init__(self, in_chans: int = 1, img_size: int = 16):
        super().__init__()
        self.input_size = (in_chans, img_size, img_size)
        self.head = nn.Linear(1, 1)
        nn.init.ones_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(1, 2, 3))[:, None])


def brightnessnet(**kwargs) -> BrightnessNet:
    """Mean intensity of the image (the toy task's model)."""
    return BrightnessNet(**kwargs)


def register() -> None:
    register_model(task="brightness-estimation")(brightnessnet)
