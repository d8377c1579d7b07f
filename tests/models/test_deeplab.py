"""DeepLab v3 / v3+: torchvision compatibility both ways, output stride, ASPP rates, the v3+ decoder."""

from __future__ import annotations

import pytest
import torch
import torchvision

import zoo
from tests.helpers import build
from zoo.errors import ConfigError
from zoo.models.deeplab import default_rates


@pytest.mark.parametrize("aux_loss", [False, True])
def test_deeplabv3_resnet50_state_dict_moves_both_ways_with_torchvision(aux_loss):
    ours = build("deeplabv3_resnet50", num_classes=5, aux_loss=aux_loss).eval()

    def theirs():
        return torchvision.models.segmentation.deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=5, aux_loss=aux_loss
        ).eval()

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    other = theirs()
    other.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), other(x)["out"], rtol=0, atol=0)
    fresh = theirs()
    ours.load_state_dict(fresh.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), fresh(x)["out"], rtol=0, atol=0)


def test_deeplabv3_resnet101_keys_match_torchvision():
    with torch.device("meta"):
        ours = zoo.create_model("deeplabv3_resnet101", aux_loss=True)
        theirs = torchvision.models.segmentation.deeplabv3_resnet101(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=True
        )
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


def test_rates_follow_the_output_stride():
    assert default_rates(16) == (6, 12, 18) and default_rates(8) == (12, 24, 36)
    for output_stride, rates in ((8, (12, 24, 36)), (16, (6, 12, 18))):
        with torch.device("meta"):
            model = zoo.create_model("deeplabv3_resnet50", output_stride=output_stride)
        aspp = model.get_submodule("classifier.0")
        assert tuple(aspp.convs[i][0].dilation[0] for i in (1, 2, 3)) == rates


@pytest.mark.parametrize("name", ["deeplabv3_resnet8_small", "deeplabv3plus_resnet8_small"])
def test_output_stride_changes_the_feature_map(name):
    x = torch.randn(1, 3, 64, 64)
    sides = {}
    for output_stride in (2, 4, 8):
        model = build(name, output_stride=output_stride).eval()
        assert model.output_stride == model.size_multiple == output_stride
        with torch.no_grad():
            deepest = model.backbone(x)[model._out]
            assert model(x).shape == (1, 11, 64, 64)
        sides[output_stride] = deepest.shape[-1]
    assert sides == {2: 32, 4: 16, 8: 8}


@pytest.mark.parametrize("name", ["deeplabv3_resnet8_small", "deeplabv3plus_resnet8_small"])
@pytest.mark.parametrize("size", [(64, 64), (96, 48), (45, 67)])
def test_logits_at_the_input_size(name, size):
    model = build(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 11, *size)


def test_v3plus_decoder_uses_the_low_level_features():
    model = build("deeplabv3plus_resnet8_small").eval()
    low = model.backbone.feature_info[model._low_level]
    assert low["module"] == "layer2" and low["reduction"] == 2
    head = model.get_submodule("classifier")
    assert head.low_level[0].in_channels == low["num_chs"]
    seen = {}
    head.register_forward_hook(lambda _m, inputs, out: seen.update(low=inputs[1], out=out))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert seen["low"].shape[-2:] == (32, 32) and seen["out"].shape[-2:] == (32, 32)
    # A change confined to the low-level branch changes the logits.
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        head.low_level[0].weight.mul_(2)
        assert not torch.allclose(before, model(x))


def test_v3plus_resnet50_paper_layout():
    with torch.device("meta"):
        model = zoo.create_model("deeplabv3plus_resnet50")
    assert model.output_stride == 16
    assert model.backbone.feature_info[model._low_level]["module"] == "layer1"
    assert model.get_submodule("classifier.low_level.0").out_channels == 48
    assert model.classifier == "classifier.head"


@pytest.mark.parametrize("name", ["deeplabv3_resnet8_small", "deeplabv3plus_resnet8_small"])
def test_num_classes_adapts_a_saved_weight(name, tmp_path):
    model = build(name).eval()
    folder = zoo.save_pretrained(model, tmp_path / name)
    adapted = zoo.create_model(str(folder), num_classes=3).eval()
    head = model.classifier + "."
    ours, theirs = model.state_dict(), adapted.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if not k.startswith(head))
    with torch.no_grad():
        assert adapted(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_aux_head_in_train_mode():
    model = build("deeplabv3_resnet8_small", aux_loss=True).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 11, 64, 64)


def test_low_level_is_refused_on_v3():
    with pytest.raises(ConfigError, match="v3\\+"):
        zoo.create_model("deeplabv3_resnet8_small", low_level=1)
