"""Detectors and instance segmenters to ONNX: the whole torchvision detector in one graph (TorchScript
exporter), the proposal-free segmenter's dense network with numpy grouping; task-level agreement.

Random-init detectors tie their scores (shared/FACTS.md): `export.verify.spread_random_detector`
calibrates BatchNorm and spreads the classification logits, so PyTorch and onnxruntime have distinct
answers to agree on. The small builders run at 64 px (``min_size = max_size = 64``) to keep this fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.adapters import get_adapter
from export.adapters.detection import EXPORT_SPLIT, DetectionAdapter
from export.detection_runtime import detection_agreement, match_detections
from export.onnx import to_onnx
from export.runtime import OnnxModel, predict_files
from export.verify import spread_random_detector
from tests.export.conftest import run_without_torch, write_png
from tests.helpers import build
from zoo.models.base import named_outputs
from zoo.tasks.detection import Detections

SMALL = {"min_size": 64, "max_size": 64, "img_size": 64}
# Off the traced 64 x 64 and non-square, so the in-graph resize scales by another factor.
SIZES = ((64, 64), (48, 96))


def _image(size: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def faster(tmp_path_factory):
    model = spread_random_detector(build("fasterrcnn_resnet8_small", **SMALL).eval())
    result = to_onnx(model, tmp_path_factory.mktemp("det") / "faster.onnx")
    return model, result


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    model = spread_random_detector(build("maskrcnn_resnet8_small", **SMALL).eval())
    result = to_onnx(model, tmp_path_factory.mktemp("det") / "mask.onnx")
    return model, result


def _compare(model, onnx: OnnxModel, size, seed):
    x = _image(size, seed)
    with torch.no_grad():
        expected = named_outputs(model, model([x]), onnx.task)
    actual = onnx.infer(x[None].numpy())
    return expected, actual, detection_agreement(expected, actual, onnx.meta)


def test_faster_rcnn_whole_model_graph_and_metadata(faster):
    _model, result = faster
    assert result.report.ok, result.report.summary()
    assert result.exporters == {"model": "torchscript"}  # dynamo fails at data-dependent NMS
    onnx = OnnxModel(result.path)
    assert onnx.meta.extra["export_split"] == EXPORT_SPLIT
    assert onnx.meta.extra["export_split"]["name"] == "whole-model"
    assert [i.name for i in onnx.inputs] == ["image"] and onnx.inputs[0].shape[0] == 1  # one image per call
    assert onnx.output_names == ["boxes", "scores", "labels"]
    # Validation ran at two sizes, task level only (no element-wise checks of variable-length lists).
    assert len(result.report.graphs[0].agreements) == 2 and not result.report.graphs[0].checks


@pytest.mark.parametrize("size", SIZES)
def test_faster_rcnn_agrees_with_pytorch_at_any_size(faster, size):
    model, result = faster
    _expected, actual, agreement = _compare(model, OnnxModel(result.path), size, seed=sum(size))
    assert agreement.ok, agreement
    assert agreement.values["matched"] >= 5  # scores spread: a real comparison, not an empty one
    assert agreement.values["min_box_iou"] >= 0.99 and agreement.values["max_score_diff"] <= 1e-3
    # Boxes are in input pixels: inside the image as given, not the model's resized one.
    assert actual["boxes"][:, 2].max() <= size[1] + 1e-3 and actual["boxes"][:, 3].max() <= size[0] + 1e-3


def test_same_coco_ap_from_both_runtimes(faster):
    """COCO AP of onnxruntime's detections equals PyTorch's (issue: within 0.005) against fixed targets:
    PyTorch's confident boxes on other images, shifted a little, so AP is neither 0 nor 1."""
    from zoo.metrics import MeanAveragePrecision

    model, result = faster
    onnx = OnnxModel(result.path)
    metrics = {"torch": MeanAveragePrecision(), "onnx": MeanAveragePrecision()}
    for seed in range(3):
        expected, actual, agreement = _compare(model, onnx, SIZES[seed % 2], seed=100 + seed)
        assert agreement.ok, agreement
        keep = expected["scores"] > np.median(expected["scores"])
        target = {
            "boxes": torch.from_numpy(expected["boxes"][keep] + 1.5),
            "labels": torch.from_numpy(expected["labels"][keep]),
        }
        for side, out in (("torch", expected), ("onnx", actual)):
            metrics[side].update([{k: torch.from_numpy(np.asarray(v)) for k, v in out.items()}], [target])
    ap = {side: metric.compute() for side, metric in metrics.items()}
    assert 0.05 < ap["torch"]["map"] < 0.99
    assert abs(ap["torch"]["map"] - ap["onnx"]["map"]) <= 0.005
    assert abs(ap["torch"]["map_50"] - ap["onnx"]["map_50"]) <= 0.005


def test_mask_rcnn_pastes_masks_in_graph(masks):
    model, result = masks
    assert result.report.ok, result.report.summary()
    onnx = OnnxModel(result.path)
    for size in SIZES:
        _expected, actual, agreement = _compare(model, onnx, size, seed=7)
        assert actual["masks"].shape[1:] == (1, *size)  # probabilities at the input's size
        assert agreement.ok and agreement.values["mask_agreement"] >= 0.999, agreement


def test_retinanet_class_competition_is_in_the_graph(tmp_path):
    """The rescoring after NMS (`zoo.models.detection.compete_classes`) is traced with the model: onnxruntime
    gives the rescored scores at any size, so the torch-free runtime needs no copy of it."""
    from zoo.models.detection import compete_classes

    model = spread_random_detector(build("retinanet_resnet8_small", class_competition=2.0, **SMALL))
    result = to_onnx(model, tmp_path / "retina.onnx")
    assert result.report.ok, result.report.summary()
    onnx = OnnxModel(result.path)
    for size in SIZES:
        image = _image(size, 0)
        model.class_competition = 0.0  # the same network without it, rescored here by hand
        with torch.no_grad():
            (plain,) = model([image])
        model.class_competition = 2.0
        ranked = compete_classes(plain, 2.0, 0.5)
        assert (ranked["scores"] < plain["scores"].sort(descending=True).values).sum() >= 5  # rivals found
        actual = onnx.infer(image[None].numpy())
        agreement = detection_agreement(named_outputs(model, [ranked], onnx.task), actual, onnx.meta)
        assert agreement.ok and agreement.values["matched"] >= 5, agreement


def test_empty_detections_are_an_empty_result(tmp_path):
    # A fresh RetinaNet keeps its 1% prior: no score reaches 0.05, so every image has no detection.
    model = build("retinanet_resnet8_small", **SMALL).eval()
    result = to_onnx(model, tmp_path / "retina.onnx", validate=False)
    onnx = OnnxModel(result.path)
    outputs = onnx.infer(_image((48, 80), 3)[None].numpy())
    assert outputs["boxes"].shape == (0, 4) and outputs["scores"].shape == (0,)
    (found,) = onnx.predict([np.zeros((40, 56, 3), np.uint8)])
    assert isinstance(found, Detections) and len(found) == 0 and found.boxes.shape == (0, 4)
    with torch.no_grad():
        expected = named_outputs(model, model([_image((48, 80), 3)]), onnx.task)
    assert detection_agreement(expected, outputs, onnx.meta).ok


def test_predict_onnx_draws_the_same_boxes_without_torch(faster, tmp_path):
    """``zoo predict --onnx`` reads the file, one image per call at its own size, in a torch-free process."""
    _model, result = faster
    png = write_png(tmp_path / "scene.png", (48, 96, 3))
    lines = list(predict_files(result.path, [png], out_dir=tmp_path))
    assert "found" in lines[0] and (tmp_path / "scene_bbox.png").is_file()
    code = (
        "import sys\nfrom export.runtime import predict_files\n"
        "print(next(iter(predict_files(sys.argv[1], [sys.argv[2]]))))"
    )
    assert run_without_torch(code, str(result.path), str(png)).strip() == lines[0].split(" -> ")[0]


def test_matching_ignores_order_among_ties_nms_rivals_and_borderline_scores():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    want = Detections(boxes, np.array([0.5, 0.5], np.float32), np.array([1, 2]))
    swapped = Detections(boxes[::-1], np.array([0.5, 0.5], np.float32), np.array([2, 1]))
    assert match_detections(want, swapped).ok  # same answer, other order
    more = np.concatenate([boxes, boxes[:1] + 40])
    extra = Detections(more, np.array([0.5, 0.5, 0.0505], np.float32), np.array([1, 2, 3]))
    assert match_detections(want, extra, score_thresh=0.05).ok  # fp32 noise at the threshold
    moved = Detections(boxes + 2, want.scores, want.labels)  # IoU 0.47: another object
    assert not match_detections(want, moved).ok
    # An NMS tie: the same object kept through a rival proposal (IoU 0.82), its score equal within 1e-3.
    rival = boxes + np.array([[1, 0, 1, 0], [0, 0, 0, 0]], np.float32)
    tie = Detections(rival, np.array([0.5004, 0.5], np.float32), want.labels)
    agreement = match_detections(want, tie)
    assert agreement.ok and agreement.values["borderline"] == 2 and agreement.values["matched"] == 1
    assert not match_detections(want, Detections(rival, np.array([0.45, 0.5], np.float32), want.labels)).ok


def test_adapter_found_by_family_or_by_the_model():
    model = build("fasterrcnn_resnet8_small", **SMALL)
    assert isinstance(get_adapter("detection"), DetectionAdapter)
    # A new builder module over torchvision's detectors needs no adapter entry of its own.
    assert isinstance(get_adapter("my_new_detectors", model), DetectionAdapter)
    assert not isinstance(get_adapter("my_new_detectors"), DetectionAdapter)


def test_proposal_free_exports_the_dense_network(tmp_path):
    from export.onnx import calibrate_batchnorm

    model = calibrate_batchnorm(build("instance_unet_resnet8_small", img_size=64))
    # The adapter's default is dynamo (measured by hand: exported and validated, ~23 s on a loaded 2-core
    # machine); the TorchScript exporter gives the same graph here in a fraction of that.
    result = to_onnx(model, tmp_path / "pf.onnx", exporter="torchscript")
    assert result.report.ok, result.report.summary()
    onnx = OnnxModel(result.path)
    assert onnx.meta.extra["export_split"]["name"] == "dense-network"
    assert onnx.meta.extra["grouping"]["method"] == model.grouping
    assert onnx.inputs[0].shape[0] == "batch"  # the network alone takes a batch
    x = _image((48, 80), 5)
    with torch.no_grad():
        expected = named_outputs(model, model([x]), onnx.task)
    actual = onnx.infer(x[None].numpy())
    assert detection_agreement(expected, actual, onnx.meta).ok
    (found,) = onnx.predict([np.full((48, 80, 3), 128, np.uint8)])
    assert isinstance(found, Detections)
