"""CAM: the class activation maps are the classifier's weights on the features, and their mean is the score."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import build
from zoo.errors import ConfigError


def test_logits_are_the_spatial_mean_of_the_maps():
    model = build("cam_resnet8_small").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, cams = model(x)
    assert logits.shape == (2, 10) and cams.shape == (2, 10, 16, 16)  # stride 4 on 64 px scenes
    torch.testing.assert_close(logits, cams.mean(dim=(2, 3)))
    assert model.output_stride == 4 and model.output_names == ("logits", "cams")


def test_maps_are_the_head_weights_applied_to_the_features():
    """M_k = sum_c W_kc f_c + b_k (Zhou et al.): the head is a 1x1 conv over the deepest level."""
    model = build("cam_resnet8_small").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        (features,) = model.backbone(x)
        _, cams = model(x)
        weight, bias = model.head.weight[:, :, 0, 0], model.head.bias
        expected = torch.einsum("kc,nchw->nkhw", weight, features) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(cams, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("stride", "side"), [(8, 8), (4, 16), (2, 32)])
def test_output_stride_sets_the_map_resolution(stride, side):
    model = build("cam_resnet8_small", output_stride=stride).eval()
    with torch.no_grad():
        _, cams = model(torch.randn(1, 3, 64, 64))
    assert cams.shape[-2:] == (side, side) and model.output_stride == stride


def test_num_classes_and_grey_inputs():
    model = build("cam_resnet8_small", num_classes=3, in_chans=1).eval()
    with torch.no_grad():
        logits, cams = model(torch.randn(2, 1, 40, 56))  # any size: fully convolutional
    assert logits.shape == (2, 3) and cams.shape == (2, 3, 10, 14)


def test_backbone_starts_from_the_mnist_weight():
    import zoo

    mnist = zoo.create_model("resnet8_small.mnist", pretrained=True, in_chans=3)
    model = build("cam_resnet8_small", backbone_weights="mnist")
    # layer1 is untouched by the dilation and the channel adaptation: identical to the MNIST weight's.
    torch.testing.assert_close(model.backbone.layer1[0].conv1.weight, mnist.layer1[0].conv1.weight)


def test_a_backbone_without_feature_levels_is_refused():
    with pytest.raises(ConfigError, match="feature levels"):
        build("cam_resnet8_small", backbone="mlp")
