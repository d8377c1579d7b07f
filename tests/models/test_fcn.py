"""FCN: torchvision compatibility both ways, skip fusion, the aux head, atrous backbones."""

from __future__ import annotations

import pytest
import torch
import torchvision

import zoo
from tests.helpers import build
from zoo.errors import ConfigError
from zoo.layers.atrous import dilate_to_output_stride


def _swap_both_ways(ours, theirs_builder, x):
    """Ours -> torchvision and torchvision -> ours, strict; equal eval outputs each way."""
    theirs = theirs_builder().eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x)["out"], rtol=0, atol=0)
    fresh = theirs_builder().eval()
    ours.load_state_dict(fresh.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), fresh(x)["out"], rtol=0, atol=0)


@pytest.mark.parametrize("aux_loss", [False, True])
def test_fcn_resnet50_state_dict_moves_both_ways_with_torchvision(aux_loss):
    ours = build("fcn_resnet50", num_classes=5, aux_loss=aux_loss).eval()

    def theirs():
        return torchvision.models.segmentation.fcn_resnet50(
            weights=None, weights_backbone=None, num_classes=5, aux_loss=aux_loss
        )

    _swap_both_ways(ours, theirs, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))


def test_fcn_resnet101_keys_match_torchvision():
    with torch.device("meta"):
        ours = zoo.create_model("fcn_resnet101", aux_loss=True)
        theirs = torchvision.models.segmentation.fcn_resnet101(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=True
        )
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


def test_aux_head_is_returned_in_train_mode_only():
    model = build("fcn_resnet8_small", aux_loss=True)
    x = torch.randn(2, 3, 64, 64)
    out = model.train()(x)
    assert set(out) == {"out", "aux"} and out["aux"].shape == out["out"].shape == (2, 11, 64, 64)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 11, 64, 64)
    assert "aux_classifier.4.weight" in model.state_dict()


@pytest.mark.parametrize("skips", [0, 1, 2])
@pytest.mark.parametrize("size", [(64, 64), (48, 80), (37, 51)])
def test_skip_fusion_keeps_the_input_size(skips, size):
    model = build("fcn_resnet8_small", skips=skips).eval()
    assert len(model._modules["classifier"][4].skips) == skips
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 11, *size)


def test_skip_score_layers_start_at_zero_and_follow_num_classes(tmp_path):
    model = build("fcn_resnet8_small").eval()
    skips = model._modules["classifier"][4].skips
    # The paper: "initializing the new parameters to zero".
    assert all(not conv.weight.any() for conv in skips)
    folder = zoo.save_pretrained(model, tmp_path / "fcn")
    adapted = zoo.create_model(str(folder), num_classes=4).eval()
    assert all(conv.out_channels == 4 for conv in adapted._modules["classifier"][4].skips)
    # Everything but the score layers came from the weight.
    ours, theirs = model.state_dict(), adapted.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if not k.startswith("classifier.4."))
    with torch.no_grad():
        assert adapted(torch.randn(1, 3, 40, 56)).shape == (1, 4, 40, 56)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_stride_sets_the_deepest_map(output_stride):
    model = build("fcn_resnet50", output_stride=output_stride).eval()
    assert model.size_multiple == output_stride
    with torch.no_grad():
        (deepest,) = model.backbone(torch.randn(1, 3, 64, 64))
    assert deepest.shape[-1] == 64 // output_stride
    assert model.backbone.feature_info.reduction(-1) == output_stride


def test_atrous_matches_torchvision_replace_stride_with_dilation():
    ours = zoo.create_model("resnet50").eval()
    theirs = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    dilate_to_output_stride(ours, ours.feature_info, 8)
    theirs.load_state_dict(ours.state_dict())
    convs = [(n, m) for n, m in ours.named_modules() if isinstance(m, torch.nn.Conv2d)]
    for name, conv in convs:
        other = theirs.get_submodule(name)
        ours_geometry = (conv.stride, conv.dilation, conv.padding)
        assert ours_geometry == (other.stride, other.dilation, other.padding), name


def test_bad_output_stride_and_skips_are_refused():
    with pytest.raises(ConfigError, match="output_stride=12"):
        zoo.create_model("fcn_resnet8_small", output_stride=12)
    with pytest.raises(ConfigError, match="no strided convolution"):
        zoo.create_model("fcn_resnet50", output_stride=2)  # the stride to /4 is the stem's max-pool
    with pytest.raises(ConfigError, match="skips=5"):
        zoo.create_model("fcn_resnet8_small", skips=5)
