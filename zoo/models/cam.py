"""CAM: "Learning Deep Features for Discriminative Localization", Zhou et al., 2016
(https://arxiv.org/abs/1512.04150).

A multi-label classifier that is trained on image tags alone (which classes an image contains) and still
says *where* each class is. A backbone's deepest feature map f (C, h, w) is scored by a 1x1 convolution,
the classifier's weights W (K, C) applied at every position: the class activation maps
``M_k(x, y) = sum_c W_kc f_c(x, y) + b_k``. Global average pooling of the maps gives the class scores,
``s_k = mean_xy M_k(x, y)``, which is the paper's "GAP, then a fully connected layer" (a linear layer
commutes with the mean), so the maps are exactly the evidence the scores were trained on: "the
importance of the image regions [is identified] by projecting back the weights of the output layer on
to the convolutional feature maps".

The backbone is any registered model that declares feature levels (`zoo.models.features`), made atrous
(`zoo.layers.atrous`) to ``output_stride`` so the maps keep enough resolution for small objects: 16x16 on
the 64 px digit scenes at the default stride 4, where a digit is 14-56 px.

Output contract: ``model(x)`` returns ``(logits, cams)``: logits (N, K) (multi-label: one sigmoid per
class) and the class activation maps (N, K, H / stride, W / stride), whose spatial mean is the logits.
Boxes are computed from the maps in numpy by the task (`zoo.tasks.localization`), for PyTorch and the
exported ONNX graph alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.models.base import ZooModel
from zoo.models.fcn import atrous_backbone, backbone_weights_arg
from zoo.models.features import FeatureExtractor
from zoo.registry import register_model

__all__ = ["CAMClassifier"]

PAPER = "https://arxiv.org/abs/1512.04150"


class CAMClassifier(ZooModel):
    """A backbone's deepest feature level, a 1x1 conv to per-class maps, and global average pooling."""

    classifier = "head"  # the 1x1 conv scoring each position: re-made when num_classes changes
    output_names = ("logits", "cams")

    def __init__(
        self,
        backbone: str = "resnet8_small",
        num_classes: int = 10,
        in_chans: int = 3,
        output_stride: int | None = 4,
        img_size: int = 64,
        backbone_weights: str | None = None,
        backbone_args: dict[str, Any] | None = None,
        encoder_weights: str | None = None,
    ):
        super().__init__()
        backbone_weights = backbone_weights_arg(backbone_weights, encoder_weights)
        model = atrous_backbone(backbone, output_stride, in_chans, backbone_weights, backbone_args)
        # Only the deepest level: CAM scores the last feature map, whose channels the classifier weighs.
        self.backbone = FeatureExtractor(model, (-1,))
        channels = self.backbone.feature_info.channels(-1)
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        self.output_stride = int(self.backbone.feature_info.reduction(-1))
        self.first_conv = f"backbone.{self.backbone.first_conv}" if self.backbone.first_conv else None
        self.head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (features,) = self.backbone(x)
        cams = self.head(features)
        # GAP of the maps = the linear classifier on GAP of the features (CAM's architecture).
        return cams.mean(dim=(2, 3)), cams


@register_model(task="weakly-supervised-localization", weights=("scenes",))
def cam_resnet8_small(**kwargs: Any) -> CAMClassifier:
    """CAM over ``resnet8_small`` made atrous to stride 4: 10 digit tags and their 16x16 maps on 64 px scenes."""
    kwargs.setdefault("backbone", "resnet8_small")
    return CAMClassifier(**kwargs)
