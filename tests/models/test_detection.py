"""Detectors on zoo backbones (zoo.models.detection): torchvision's contract in eval and train mode, strict
state-dict interchange with torchvision's builders, bad input, no download, the weight fields."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

import zoo
from tests.helpers import build, suite_models
from zoo.errors import ConfigError

SMALL = ["fasterrcnn_resnet8_small", "retinanet_resnet8_small", "maskrcnn_resnet8_small"]
LARGE = [
    "fasterrcnn_resnet18_fpn",
    "fasterrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
]


@pytest.fixture(scope="module")
def small():
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in cache:
            cache[name] = build(name)
        return cache[name]

    return get


def _targets(masks: bool = False, size: int = 128) -> list[dict[str, torch.Tensor]]:
    boxes = torch.tensor([[10.0, 12.0, 40.0, 60.0], [70.0, 20.0, 100.0, 50.0]])
    target = {"boxes": boxes, "labels": torch.tensor([3, 7])}
    if masks:
        m = torch.zeros(2, size, size, dtype=torch.uint8)
        m[0, 12:60, 10:40] = 1
        m[1, 20:50, 70:100] = 1
        target["masks"] = m
    return [target, {k: v.clone() for k, v in target.items()}]


def test_builders_are_registered_under_their_tasks():
    assert set(SMALL + LARGE) <= set(zoo.list_models())
    assert "maskrcnn_resnet8_small" in zoo.list_models(task="instance-segmentation")
    assert "fasterrcnn_resnet8_small" in zoo.list_models(task="object-detection")
    for name in SMALL + LARGE:
        assert zoo.model_info(name)["summary"]


@pytest.mark.parametrize("name", SMALL)
def test_eval_contract_is_torchvisions(name, small):
    model = small(name).eval()
    images = [torch.rand(3, 128, 128), torch.rand(3, 96, 150)]  # different sizes in one batch
    old, model.score_thresh = model.score_thresh, 0.0  # random init: keep all it finds, to exercise shapes
    try:
        with torch.no_grad():
            out = model(images)
    finally:
        model.score_thresh = old
    assert isinstance(out, list) and len(out) == 2
    for det, image in zip(out, images):
        n = len(det["scores"])
        assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == torch.float32
        assert det["labels"].dtype == torch.int64 and det["labels"].shape == (n,)
        if n:
            assert (det["labels"] >= 1).all() and (det["labels"] < 11).all()
            assert (det["boxes"][:, 2] <= image.shape[2]).all() and (
                det["boxes"][:, 3] <= image.shape[1]
            ).all()
        if name.startswith("maskrcnn"):
            assert det["masks"].shape == (n, 1, *image.shape[1:])
    assert set(out[0]) == set(model.output_names)


@pytest.mark.parametrize("name", SMALL)
def test_no_detection_is_empty_tensors_not_an_error(name, small):
    model = small(name).eval()
    old = model.score_thresh
    model.score_thresh = 1.01  # nothing can pass
    try:
        with torch.no_grad():
            (det,) = model([torch.rand(3, 128, 128)])
    finally:
        model.score_thresh = old
    assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,) and det["labels"].shape == (0,)


@pytest.mark.parametrize("name", SMALL)
def test_train_mode_returns_the_loss_dict_and_reaches_every_parameter(name, small):
    model = small(name).train()
    model.zero_grad(set_to_none=True)
    losses = model([torch.rand(3, 128, 128), torch.rand(3, 128, 128)], _targets(name.startswith("mask")))
    expected = (
        {"classification", "bbox_regression"}
        if name.startswith("retina")
        else {
            "loss_classifier",
            "loss_box_reg",
            "loss_objectness",
            "loss_rpn_box_reg",
            *({"loss_mask"} if name.startswith("mask") else ()),
        }
    )
    assert set(losses) == expected
    sum(losses.values()).backward()
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unreached, unreached[:5]
    model.zero_grad(set_to_none=True)


def test_example_inputs_and_targets_train(small):
    model = small("maskrcnn_resnet8_small").train()
    g = torch.Generator().manual_seed(0)
    losses = model(*model.example_inputs(2, g), model.example_targets(2, g))
    assert all(torch.isfinite(v) for v in losses.values())
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t[1]["boxes"].__setitem__((0, 2), 5.0), r"image 1, box 0 .* degenerate"),
        (lambda t: t[0]["boxes"].__setitem__((1, 2), 200.0), r"image 0, box 1 .* outside the 128x128 image"),
        (lambda t: t[0]["boxes"].__setitem__((0, 0), float("nan")), r"image 0, box 0 .* non-finite"),
        (lambda t: t[1]["labels"].__setitem__(1, 0), r"image 1, box 1 .* label outside 1\.\.10"),
        (lambda t: t[0].pop("labels"), r"target of image 0 lacks \['labels'\]"),
    ],
)
def test_bad_training_targets_name_the_image_and_box(change, message, small):
    model = small("fasterrcnn_resnet8_small").train()
    targets = _targets()
    change(targets)
    with pytest.raises(ValueError, match=message):
        model([torch.rand(3, 128, 128), torch.rand(3, 128, 128)], targets)


def test_bad_masks_and_missing_targets(small):
    model = small("maskrcnn_resnet8_small").train()
    targets = _targets(masks=True)
    targets[0]["masks"] = targets[0]["masks"][:, :64]
    with pytest.raises(ValueError, match=r"image 0: masks \(2, 64, 128\) must be \(2, 128, 128\)"):
        model([torch.rand(3, 128, 128)] * 2, targets)
    with pytest.raises(ValueError, match="takes targets"):
        model([torch.rand(3, 128, 128)])
    model.eval()


def test_grey_image_is_converted_with_a_warning_other_channels_are_refused(small):
    model = small("fasterrcnn_resnet8_small").eval()
    grey = torch.rand(1, 128, 128)
    with pytest.warns(UserWarning, match="grey image converted to RGB"), torch.no_grad():
        (a,) = model([grey])
    with torch.no_grad():
        (b,) = model([grey.expand(3, -1, -1)])
    assert torch.equal(a["boxes"], b["boxes"])
    with pytest.raises(ValueError, match="image 0 has 2 channels"):
        model([torch.rand(2, 64, 64)])
    with pytest.raises(ValueError, match="no images"):
        model([])


def _tv(name: str, **kwargs):
    from torchvision.models import detection

    torch.manual_seed(1)
    return getattr(detection, name)(weights=None, weights_backbone=None, **kwargs)


@pytest.mark.parametrize(
    "name", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "maskrcnn_resnet50_fpn"]
)
def test_resnet50_state_dicts_load_strictly_into_torchvision_and_back(name):
    size = {"min_size": 96, "max_size": 96}
    ours = build(name, num_classes=5, **size).eval()
    theirs = _tv(name, num_classes=5, **size).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    if name == "fasterrcnn_resnet50_fpn":  # same weights, same answers
        x = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(0))]
        with torch.no_grad():
            a, b = ours(x)[0], theirs(x)[0]
        assert all(torch.equal(a[k], b[k]) for k in a)
    other = _tv(name, num_classes=5, **size)
    ours.load_state_dict(other.state_dict(), strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_builders_never_download(monkeypatch):
    import torchvision.models._api

    def refuse(*args, **kwargs):
        raise AssertionError("a builder tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", refuse)
    for name in SMALL + LARGE:
        with torch.device("meta"):
            zoo.create_model(name)
    # Backbone weights come from the zoo's own hub, strictly loaded.
    model = zoo.create_model("fasterrcnn_resnet8_small", backbone_weights="mnist")
    mnist = zoo.create_model("resnet8_small.mnist", pretrained=True, in_chans=3)
    assert torch.equal(model.backbone.body.layer2[0].conv1.weight, mnist.layer2[0].conv1.weight)


def test_scene_builders_do_not_resize_and_weight_fields_are_recorded(tmp_path, small):
    model = small("maskrcnn_resnet8_small").eval()
    assert (model.min_size, model.max_size) == (128, 128) and model.input_size == (3, 128, 128)
    assert model.first_conv == "backbone.body.conv1" and model.train_needs_targets
    folder = zoo.save_pretrained(model, tmp_path / "w")
    loaded = zoo.create_model(str(folder)).eval()
    meta = loaded.pretrained_weights
    assert (meta.min_size, meta.max_size, meta.score_thresh, meta.mask_thresh) == (128, 128, 0.05, 0.5)
    assert meta.detections_per_img == 20  # scenes hold at most 5 digits
    x = [torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        a, b = model(x)[0], loaded(x)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_builder_kwargs_reach_torchvision():
    model = zoo.create_model("fasterrcnn_resnet8_small", score_thresh=0.3, min_size=96, max_size=160)
    assert model.roi_heads.score_thresh == 0.3 and model.score_thresh == 0.3
    assert model.transform.min_size == (96,) and model.transform.max_size == 160
    big = zoo.create_model("fasterrcnn_resnet18_fpn", num_classes=3)
    assert (big.min_size, big.max_size) == (800, 1333)  # real images: torchvision's defaults
    assert big.roi_heads.box_predictor.cls_score.out_features == 3


def test_detectors_are_left_out_of_the_generic_suites_by_attribute():
    common, onnx = suite_models(), suite_models("onnx")
    assert not set(SMALL + LARGE) & (set(common) | set(onnx))
    assert "resnet8_small" in common and "resnet8_small" in onnx


def test_predict_draws_boxes_and_takes_a_score_threshold(tmp_path, capsys, small):
    from PIL import Image

    from zoo.cli import main
    from zoo.data import load_dataset

    model = small("fasterrcnn_resnet8_small").eval()
    folder = zoo.save_pretrained(model, tmp_path / "w", weights={"labels": [str(i) for i in range(11)]})
    scene = load_dataset("digit_scenes_128").test.scene(0)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    Image.fromarray(scene.image[..., 0]).save(tmp_path / "grey.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = [str(folder), str(tmp_path / "scene.png"), str(tmp_path / "grey.png"), "--out", str(tmp_path)]
        assert main(["predict", *args, "--score-thresh", "0.0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(str(tmp_path / "scene.png")) and "found" in lines[0]
    assert "grey image converted to RGB" in lines[1]
    picture = np.asarray(Image.open(tmp_path / "scene_bbox.png"))
    assert picture.shape[:2] == (128, 128)
    assert main(["predict", *args, "--score-thresh", "1.01"]) == 0
    assert ": 0 found" in capsys.readouterr().out


def test_num_classes_with_pretrained_weights_remakes_the_class_head(tmp_path, small):
    model = small("fasterrcnn_resnet8_small").eval()
    folder = zoo.save_pretrained(model, tmp_path / "w")
    tuned = zoo.create_model(str(folder), num_classes=3)
    assert tuned.roi_heads.box_predictor.cls_score.out_features == 3
    assert torch.equal(tuned.backbone.body.conv1.weight, model.backbone.body.conv1.weight)
    mask = zoo.create_model(
        "maskrcnn_resnet8_small", mask_layers=[32], representation_size=1024, num_classes=4
    )
    assert mask.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 4 and mask.classifier is None


def test_exact_mask_paste_inverts_the_training_targets():
    """Thin masks projected as torchvision projects Mask R-CNN's training targets, pasted back: torchvision's
    paste loses them (half a pixel off), `paste_masks_exact` recovers them, at any resize scale."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image
    from torchvision.ops import masks_to_boxes, roi_align

    from zoo.models.detection import paste_masks_exact

    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(6, 64, 64)
    for i in range(6):  # 2 px strokes: an L in a box of its own
        x, y, w, h = (int(v) for v in torch.randint(4, 20, (4,), generator=g))
        masks[i, y : y + h + 8, x : x + 2] = 1
        masks[i, y + h + 6 : y + h + 8, x : x + w + 8] = 1
    boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # pixel edges: x2, y2 exclusive
    rois = torch.cat([torch.arange(6.0)[:, None], boxes], 1)
    targets = roi_align(masks[:, None], rois, (28, 28), 1.0)  # torchvision's project_masks_on_boxes

    def iou(pasted: torch.Tensor, truth: torch.Tensor) -> float:
        p, t = pasted[:, 0] > 0.5, truth > 0.5
        return float(((p & t).flatten(1).sum(1) / (p | t).flatten(1).sum(1)).mean())

    assert iou(paste_masks_exact(targets, boxes, (64, 64)), masks) > 0.97
    assert iou(paste_masks_in_image(targets, boxes.round().long(), (64, 64)), masks) < 0.85
    # Predicted on an image resized to half (the detector's transform), pasted at the input's full size.
    full = masks.repeat_interleave(2, 1).repeat_interleave(2, 2)
    scale = (torch.tensor(2.0), torch.tensor(2.0))
    assert iou(paste_masks_exact(targets, boxes * 2, (128, 128), scale), full) > 0.97
    model = zoo.create_model("maskrcnn_resnet8_small")
    assert type(pickle.loads(pickle.dumps(model.transform))).__name__ == "ExactPasteTransform"
    with pytest.raises(ConfigError, match="mask_paste"):
        zoo.create_model("maskrcnn_resnet8_small", mask_paste="nearest")


def test_fasterrcnn_weights_start_all_but_the_mask_branch_and_are_recorded(tmp_path):
    model = zoo.create_model(
        "maskrcnn_resnet8_small",
        fasterrcnn_weights="fasterrcnn_resnet8_small.scenes",
        mask_roi_size=28,
        mask_level=None,
    )
    source = zoo.create_model("fasterrcnn_resnet8_small.scenes", pretrained=True).state_dict()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items())
    assert {k for k in state if k not in source} and all(".mask_" in k for k in state if k not in source)
    assert model.encoder_weights_info["name"] == "fasterrcnn_resnet8_small.scenes"
    assert model.encoder_weights_info["part"] == "Faster R-CNN"
    assert model.roi_heads.mask_roi_pool.output_size == (28, 28)
    model.eval()
    with torch.no_grad():
        (det,) = model([torch.rand(3, 128, 128)])
    assert det["masks"].shape[1:] == (1, 128, 128)
    # Saved and loaded back: the config names the init, which is not fetched again while rebuilding.
    folder = zoo.save_pretrained(model, tmp_path / "m")
    again = zoo.create_model(str(folder))
    assert all(torch.equal(again.state_dict()[k], v) for k, v in state.items())


def test_fasterrcnn_weights_beside_backbone_weights_or_of_another_detector_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        zoo.create_model(
            "maskrcnn_resnet8_small",
            fasterrcnn_weights="fasterrcnn_resnet8_small.scenes",
            backbone_weights="mnist",
        )
    with pytest.raises(ConfigError, match="'retinanet_resnet8_small' weight"):
        zoo.create_model(
            "maskrcnn_resnet8_small", fasterrcnn_weights="retinanet_resnet8_small.scenes", mask_level=None
        )
    with pytest.raises(ConfigError, match="do not fit"):
        zoo.create_model(
            "maskrcnn_resnet8_small",
            fasterrcnn_weights="fasterrcnn_resnet8_small.scenes",
            fpn_channels=32,
            mask_level=None,
        )


def test_mask_level_gives_the_mask_head_a_finer_map_that_the_rpn_and_box_head_never_see():
    torch.manual_seed(0)
    base = zoo.create_model("maskrcnn_resnet8_small", mask_level=None).eval()
    model = zoo.create_model("maskrcnn_resnet8_small").eval()  # mask_level=2 is the small builder's default
    assert type(pickle.loads(pickle.dumps(model.rpn))).__name__ == "MaskMapFreeRPN"
    with torch.no_grad():
        features = model.backbone(torch.rand(1, 3, 128, 128))
    assert {k: v.shape[-1] for k, v in features.items()} == {"mask": 64, "0": 32, "1": 16, "pool": 8}
    assert model.roi_heads.mask_roi_pool.featmap_names == ["mask"]
    # Give it the weights of the model without the level (its FPN blocks numbered one further on): the
    # top-down path never flows up to the coarser maps, and the RPN skips the new one, so boxes, labels and
    # scores are the same; only the masks read another map.
    renumbered = {}
    for key, value in base.state_dict().items():
        for blocks in ("fpn.inner_blocks.", "fpn.layer_blocks."):
            if blocks in key:
                head, tail = key.split(blocks)
                index, rest = tail.split(".", 1)
                key = f"{head}{blocks}{int(index) + 1}.{rest}"
        renumbered[key] = value
    missing, unexpected = model.load_state_dict(renumbered, strict=False)
    assert not unexpected and all(".0." in k for k in missing) and missing
    image = torch.rand(3, 128, 128)
    with torch.no_grad():
        (a,), (b,) = base([image]), model([image])
    assert len(a["boxes"]) > 0
    for field in ("boxes", "labels", "scores"):
        assert torch.equal(a[field], b[field]), field
    assert a["masks"].shape == b["masks"].shape and not torch.equal(a["masks"], b["masks"])
    with pytest.raises(ConfigError, match="before levels"):
        zoo.create_model("maskrcnn_resnet8_small", mask_level=3)
    with pytest.raises(ConfigError, match="for Mask R-CNN"):
        zoo.create_model("fasterrcnn_resnet8_small", mask_level=2)
    with pytest.raises(ConfigError, match="one more level"):
        zoo.create_model("maskrcnn_resnet8_small", fasterrcnn_weights="fasterrcnn_resnet8_small.scenes")


def test_fasterrcnn_weights_start_a_retinanets_backbone_and_fpn_only():
    model = zoo.create_model("retinanet_resnet8_small", fasterrcnn_weights="fasterrcnn_resnet8_small.scenes")
    source = zoo.create_model("fasterrcnn_resnet8_small.scenes", pretrained=True).backbone.state_dict()
    state = model.backbone.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items())
    assert sorted({k.split(".")[2] for k in state if k not in source}) == [
        "p6",
        "p7",
    ]  # RetinaNet's own block
    fresh = zoo.create_model("retinanet_resnet8_small")
    head = "head.classification_head.cls_logits.bias"  # the head is new: torchvision's 1% prior
    assert torch.equal(model.state_dict()[head], fresh.state_dict()[head])
    assert model.encoder_weights_info["part"] == "backbone and FPN"
    with pytest.raises(ConfigError, match="not both"):
        zoo.create_model(
            "retinanet_resnet8_small",
            fasterrcnn_weights="fasterrcnn_resnet8_small.scenes",
            backbone_weights="mnist",
        )


# torch.jit.trace is what the TorchScript ONNX exporter runs (the dynamo exporter fails at NMS): its
# deprecation notice is not this test's concern.
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:FutureWarning")
def test_compete_classes_ranks_overlapping_hedges_below_and_drops_nothing():
    from zoo.models.detection import compete_classes

    found = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60], [0, 0, 10, 10]]),
        "scores": torch.tensor([0.8, 0.4, 0.3, 0.2]),
        "labels": torch.tensor([3, 8, 4, 5]),
    }
    out = compete_classes(found, 1.0, 0.5)
    # "8" and "5" overlap the "3" (0.8): 0.4 * 0.4 / 0.8 and 0.2 * 0.2 / 0.8; the lone "4" keeps its 0.3.
    assert out["labels"].tolist() == [3, 4, 8, 5]
    assert torch.allclose(out["scores"], torch.tensor([0.8, 0.3, 0.2, 0.05]))
    assert torch.equal(out["boxes"][1], found["boxes"][2])
    # At IoU 0.95 the "8" (IoU 0.91 with the "3") is no rival; the "5", on the same box, still is.
    assert torch.allclose(compete_classes(found, 1.0, 0.95)["scores"], torch.tensor([0.8, 0.4, 0.3, 0.05]))
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    assert compete_classes(empty, 2.0, 0.5)["scores"].shape == (0,)

    # Traced (as the ONNX export traces it) at 4 detections, it serves any count: nothing fixed to 4.
    def rescore(boxes, scores):
        out = compete_classes({"boxes": boxes, "scores": scores}, 1.0, 0.5)
        return out["boxes"], out["scores"]

    traced = torch.jit.trace(rescore, (found["boxes"], found["scores"]))
    for count in (0, 1, 3):
        boxes, scores = found["boxes"][:count], found["scores"][:count]
        assert all(torch.equal(a, b) for a, b in zip(traced(boxes, scores), rescore(boxes, scores)))


def test_class_competition_rescores_a_detectors_output_and_is_checked():
    from export.verify import spread_random_detector
    from tests.helpers import build
    from zoo.models.detection import compete_classes

    small = {"min_size": 64, "max_size": 64, "img_size": 64}
    on = spread_random_detector(build("retinanet_resnet8_small", class_competition=2.0, **small))
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (ranked,) = on([image])
        on.class_competition = 0.0
        (plain,) = on([image])
    assert len(plain["scores"]) >= 5 and len(ranked["scores"]) == len(plain["scores"])
    expected = compete_classes(plain, 2.0, 0.5)
    assert all(torch.equal(ranked[k], expected[k]) for k in ("boxes", "scores", "labels"))
    assert torch.all(ranked["scores"][:-1] >= ranked["scores"][1:])  # still sorted, highest first
    assert (ranked["scores"] < plain["scores"]).sum() >= 5  # rivals found: a real rescoring (both sorted)
    assert on.zoo_config["model_args"]["class_competition"] == 2.0  # saved with the weight
    with pytest.raises(ConfigError, match="class_competition"):
        zoo.create_model("retinanet_resnet8_small", class_competition=-1.0)
