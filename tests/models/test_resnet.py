"""ResNet: torchvision compatibility both ways, small-input variants, norm choices."""

from __future__ import annotations

import pytest
import torch
import torchvision

import zoo

TORCHVISION_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_state_dicts_move_both_ways_with_torchvision(name):
    torch.manual_seed(0)
    ours = zoo.create_model(name).eval()
    theirs = getattr(torchvision.models, name)().eval()
    # Ours -> torchvision and torchvision -> ours, strict, then identical outputs.
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    fresh = getattr(torchvision.models, name)().eval()
    ours.load_state_dict(fresh.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(ours(x), fresh(x))


@pytest.mark.parametrize("name", ["resnet18_small", "resnet34_small", "resnet8_small"])
@pytest.mark.parametrize("size", [28, 32])
def test_small_input_variants_keep_resolution_in_the_stem(name, size):
    model = zoo.create_model(name, in_chans=1, num_classes=10).eval()
    assert isinstance(model.maxpool, torch.nn.Identity) and model.conv1.stride == (1, 1)
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        features = model.forward_features(x)
        assert model(x).shape == (2, 10)
    # Three stride-2 stages: 28 -> 4, 32 -> 4 (ImageNet stem would give 1).
    assert features.shape[-1] == -(-size // 8)


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "instance"])
def test_norm_choices(norm):
    model = zoo.create_model("resnet8_small", norm=norm).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


def test_zero_init_residual_makes_blocks_start_as_identity():
    model = zoo.create_model("resnet18_small", zero_init_residual=True)
    assert all(not block.bn2.weight.any() for stage in (model.layer1, model.layer2) for block in stage)
