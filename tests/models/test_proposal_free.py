"""Proposal-free instance segmentation (`zoo.models.proposal_free`): torchvision's detection contract in
train and eval mode, dense maps for export, and targets whose grouping gives the instances back."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from tests.helpers import build
from zoo.models.proposal_free import DENSE_OUTPUTS, InstanceUNet, instance_targets

ARCH = "instance_unet_resnet8_small"


@pytest.fixture(scope="module")
def model() -> InstanceUNet:
    return build(ARCH)


def test_builder_is_registered_with_its_task_and_weight(model):
    info = zoo.model_info(ARCH)
    assert info["task"] == "instance-segmentation" and info["weights"] == [f"{ARCH}.scenes"]
    assert isinstance(model, InstanceUNet) and model.train_needs_targets
    assert model.input_size == (3, 128, 128)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_train_mode_returns_the_loss_dict_and_every_parameter_learns(model):
    model.train()
    losses = model(*model.example_inputs(2), model.example_targets(2))
    assert set(losses) == {"loss_semantic", "loss_centre", "loss_offset", "loss_boundary"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="targets are missing"):
        model([torch.rand(3, 32, 32)])


def test_eval_mode_follows_torchvisions_contract_for_images_of_any_size(model):
    model.eval()
    outputs = model([torch.rand(3, 64, 48), torch.rand(3, 37, 50)])
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(64, 48), (37, 50)]):
        n = len(out["scores"])
        assert out["boxes"].shape == (n, 4) and out["boxes"].dtype == torch.float32
        assert out["labels"].dtype == torch.int64 and (out["labels"] > 0).all()
        assert out["masks"].shape == (n, 1, h, w) and out["masks"].dtype == torch.float32
        assert (out["scores"][:-1] >= out["scores"][1:]).all()


def test_dense_maps_have_the_inputs_size(model):
    model.eval()
    with torch.no_grad():
        maps = model.dense(torch.rand(2, 3, 44, 60))
    assert tuple(maps) == DENSE_OUTPUTS
    assert maps["semantic"].shape == (2, 11, 44, 60) and maps["offset"].shape == (2, 2, 44, 60)
    assert torch.allclose(maps["semantic"].sum(1), torch.ones(2, 44, 60))
    assert maps["centre"].shape == maps["boundary"].shape == (2, 1, 44, 60)


def test_an_empty_image_gives_an_empty_result():
    model = build(ARCH).eval()
    with torch.no_grad():
        model.unet.head.bias.zero_()
        model.unet.head.bias[0] = 100.0  # every pixel background
    (out,) = model([torch.rand(3, 32, 32)])
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 1, 32, 32)
    assert out["labels"].dtype == torch.int64


def _touching_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Two stroke-like shapes (a '7' and a '1') whose strokes touch: one connected component."""
    masks = torch.zeros(2, 40, 40, dtype=torch.bool)
    masks[0, 8:11, 6:22] = True  # the 7's bar
    masks[0, 8:30, 19:22] = True  # its stem
    masks[1, 6:32, 22:25] = True  # the 1 right beside the stem
    return masks, torch.tensor([8, 2])


def _perfect_maps(masks: torch.Tensor, labels: torch.Tensor, classes: int = 11) -> dict[str, torch.Tensor]:
    t = instance_targets(masks, labels)
    probs = torch.nn.functional.one_hot(t["semantic"], classes).permute(2, 0, 1).float()
    return {
        "semantic": probs[None],
        "centre": t["centre"][None, None],
        "offset": t["offset"][None],
        "boundary": t["boundary"].float()[None, None],
    }


@pytest.mark.parametrize("method", ["centres", "boundaries"])
def test_grouping_separates_two_touching_digits(model, method):
    masks, labels = _touching_digits()
    (found,) = model.group(_perfect_maps(masks, labels), method)
    assert len(found) == 2
    got = {(int(c), m.tobytes()) for c, m in zip(found.labels, found.masks)}
    assert got == {(int(c), m.numpy().tobytes()) for c, m in zip(labels, masks)}


def test_targets_and_grouping_do_not_depend_on_instance_numbering(model):
    masks, labels = _touching_digits()
    a = instance_targets(masks, labels)
    b = instance_targets(masks.flip(0), labels.flip(0))
    for key in ("semantic", "centre", "offset", "boundary"):
        assert torch.equal(a[key], b[key]), key
    (fa,) = model.group(_perfect_maps(masks, labels))
    (fb,) = model.group(_perfect_maps(masks.flip(0), labels.flip(0)))
    assert {m.tobytes() for m in fa.masks} == {m.tobytes() for m in fb.masks}


def test_bad_targets_are_named():
    model = build(ARCH).train()
    images = [torch.rand(3, 32, 32)]
    with pytest.raises(ValueError, match=r"target 0, instance 0: label 11"):
        model(images, [{"masks": torch.ones(1, 32, 32, dtype=torch.bool), "labels": torch.tensor([11])}])
    with pytest.raises(ValueError, match="target 0: masks"):
        model(images, [{"masks": torch.ones(1, 16, 32, dtype=torch.bool), "labels": torch.tensor([1])}])
    with pytest.raises(ValueError, match=r"image 0: expected \(3, H, W\)"):
        model([torch.rand(1, 32, 32)], [{}])


def test_save_pretrained_round_trip_keeps_the_network_and_its_settings(model, tmp_path):
    model.eval()
    folder = zoo.save_pretrained(model, tmp_path / ARCH)
    loaded = zoo.create_model(str(folder)).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a, b = model.dense(x), loaded.dense(x)
    assert all(torch.equal(a[k], b[k]) for k in DENSE_OUTPUTS)
    assert loaded.grouping == model.grouping and loaded.grouping_args == model.grouping_args


def test_baseline_scores_a_few_scenes():
    from benchmarks.detection_baselines import otsu_detection_baseline

    values = otsu_detection_baseline(limit=8)
    assert values["scenes"] == 8 and 0 <= values["overlap_scenes"] <= 8
    for key in ("bbox_map", "bbox_map_50", "segm_map", "segm_map_75"):
        assert 0 <= values[key] <= 1


def test_class_weights_reweigh_only_the_semantic_loss_and_are_checked():
    model = build(ARCH, img_size=64).train()
    torch.manual_seed(0)
    images, targets = model.example_inputs(2), model.example_targets(2)
    plain = model(*images, targets)
    model.set_class_weights([0.1] + [5.0] * 10)
    weighted = model(*images, targets)
    assert not torch.allclose(weighted["loss_semantic"], plain["loss_semantic"])
    for key in ("loss_centre", "loss_offset", "loss_boundary"):
        assert torch.allclose(weighted[key], plain[key])
    model.set_class_weights([1.0] * 11)  # uniform weights are the unweighted loss
    assert torch.allclose(model(*images, targets)["loss_semantic"], plain["loss_semantic"], atol=1e-6)
    with pytest.raises(ValueError, match="11 finite positive"):
        model.set_class_weights([1.0] * 10)
    model.set_class_weights(None)
    assert model.semantic_class_weights is None


def test_unet_weights_start_the_whole_unet_from_a_segmentation_weight_and_are_recorded(tmp_path, monkeypatch):
    seg = zoo.create_model("unet_resnet8_small.scenes", pretrained=True)
    model = zoo.create_model(ARCH, unet_weights="unet_resnet8_small.scenes").eval()
    assert model.unet.state_dict().keys() == seg.state_dict().keys()
    assert all(torch.equal(v, seg.state_dict()[k]) for k, v in model.unet.state_dict().items())
    saved = zoo.save_pretrained(model, tmp_path / ARCH)
    recorded = json.loads((saved / "config.json").read_text())["weights"]["encoder"]
    assert recorded["part"] == "U-Net" and recorded["architecture"] == "unet_resnet8_small"
    assert recorded["sha256"] == seg.pretrained_weights.sha256
    assert "U-Net initialised from `unet_resnet8_small.scenes`" in (saved / "README.md").read_text()

    # Reloading rebuilds from the saved state dict alone: the segmentation weight is never read again.
    build_model = zoo.factory.create_model

    def refuse_the_unet_weight(name, *args, **kwargs):
        assert name != "unet_resnet8_small.scenes", (
            "the U-Net weight was loaded while rebuilding a saved model"
        )
        return build_model(name, *args, **kwargs)

    monkeypatch.setattr(zoo.factory, "create_model", refuse_the_unet_weight)
    reloaded = zoo.load_pretrained(saved).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded.dense(x)["semantic"], model.dense(x)["semantic"])


def test_unet_weights_of_another_architecture_or_beside_encoder_weights_are_refused():
    with pytest.raises(
        zoo.ConfigError, match="'fcn_resnet8_small' weight; the U-Net is a 'unet_resnet8_small'"
    ):
        zoo.create_model(ARCH, unet_weights="fcn_resnet8_small.scenes")
    with pytest.raises(zoo.ConfigError, match="encoder_weights or unet_weights, not both"):
        zoo.create_model(ARCH, unet_weights="unet_resnet8_small.scenes", encoder_weights="mnist")
    with pytest.raises(zoo.ConfigError, match="do not fit this U-Net"):
        zoo.create_model(ARCH, unet_weights="unet_resnet8_small.scenes", decoder_channels=[32, 16, 16])
