"""`MeanAveragePrecision` (torchmetrics) and `coco_evaluate` (pycocotools) agree, and are 1.0 when perfect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.metrics import MeanAveragePrecision, coco_evaluate
from zoo.metrics.detection import COCO_STATS

pytest.importorskip("pycocotools")
SIZE = 160


def _masks(boxes: torch.Tensor) -> torch.Tensor:
    """Filled rectangles, one (SIZE, SIZE) mask per xyxy box."""
    ys, xs = torch.arange(SIZE)[:, None], torch.arange(SIZE)[None, :]
    return torch.stack([(xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1) for x0, y0, x1, y1 in boxes.round()])


def _scenes(seed: int, images: int = 5):
    """Ground truth with small (< 32^2), medium and large boxes in three classes, and imperfect detections:
    jittered boxes with random scores, a missed object per image and a false positive per image."""
    g = torch.Generator().manual_seed(seed)
    targets, outputs = [], []
    for _ in range(images):
        n = int(torch.randint(2, 6, (1,), generator=g))
        side = torch.tensor([12.0, 50.0, 110.0])[torch.randint(0, 3, (n,), generator=g)]
        side = side * (0.8 + 0.4 * torch.rand(n, generator=g))
        xy = torch.rand(n, 2, generator=g) * (SIZE - side[:, None])
        boxes = torch.cat([xy, xy + side[:, None]], 1).round()
        labels = torch.randint(1, 4, (n,), generator=g)
        targets.append({"boxes": boxes, "labels": labels, "masks": _masks(boxes).to(torch.uint8)})
        jitter = (torch.rand(n, 4, generator=g) - 0.5) * 0.3 * side[:, None]
        found = (boxes + jitter).clamp(0, SIZE)[1:]  # the first object is missed
        extra = torch.tensor([[5.0, 5.0, 40.0, 40.0]])  # a false positive
        pred_boxes = torch.cat([found, extra]).round()
        k = len(pred_boxes)
        outputs.append(
            {
                "boxes": pred_boxes,
                "scores": torch.rand(k, generator=g),
                "labels": torch.cat([labels[1:], torch.tensor([1])]),
                # Mask R-CNN layout: (K, 1, H, W) probabilities
                "masks": _masks(pred_boxes)[:, None].float() * 0.9,
            }
        )
    return outputs, targets


def _coco(outputs, targets, iou_type: str):
    """The same data in COCO format: a ground-truth dict and a results list."""
    from pycocotools import mask as mask_utils

    def rle(mask: torch.Tensor) -> dict:
        encoded = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
        return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}

    def xywh(box: torch.Tensor) -> list[float]:
        x0, y0, x1, y1 = box.tolist()
        return [x0, y0, x1 - x0, y1 - y0]

    images, annotations, detections = [], [], []
    for image_id, (out, tgt) in enumerate(zip(outputs, targets), start=1):
        images.append({"id": image_id, "height": SIZE, "width": SIZE})
        for box, label, mask in zip(tgt["boxes"], tgt["labels"], tgt["masks"]):
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label), "iscrowd": 0}
            ann["bbox"] = xywh(box)
            ann["area"] = float(mask.sum()) if iou_type == "segm" else ann["bbox"][2] * ann["bbox"][3]
            if iou_type == "segm":
                ann["segmentation"] = rle(mask.bool())
            annotations.append(ann)
        for box, score, label, mask in zip(out["boxes"], out["scores"], out["labels"], out["masks"]):
            det = {"image_id": image_id, "category_id": int(label), "score": float(score)}
            if iou_type == "segm":
                det["segmentation"] = rle(mask[0] > 0.5)
            else:
                det["bbox"] = xywh(box)
            detections.append(det)
    gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in (1, 2, 3)]}
    return gt, detections


def _same(a: dict[str, float], b: dict[str, float]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key], abs=1e-6), key


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_torchmetrics_and_pycocotools_agree(iou_type):
    outputs, targets = _scenes(0)
    metric = MeanAveragePrecision(iou_type)
    metric.update(outputs[:2], targets[:2])  # two batches: the split is evaluated as a whole
    metric.update(outputs[2:], targets[2:])
    got = metric.compute()
    ref = coco_evaluate(*_coco(outputs, targets, iou_type), iou_type=iou_type)
    _same(got, ref)
    assert list(got) == list(COCO_STATS) and all(metric.higher_is_better.values())
    assert 0.1 < got["map"] < 0.9 and got["map_50"] > got["map_75"]  # imperfect, so the check is not vacuous
    assert got["map_small"] != got["map_large"]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_perfect_predictions_give_one(iou_type):
    _, targets = _scenes(1)
    outputs = [{**t, "scores": torch.ones(len(t["labels"]))} for t in targets]
    metric = MeanAveragePrecision(iou_type)
    metric.update(outputs, targets)
    got = metric.compute()
    gt, dets = _coco([{**o, "masks": o["masks"][:, None]} for o in outputs], targets, iou_type)
    for values in (got, coco_evaluate(gt, dets, iou_type)):
        assert values["map"] == 1.0 and values["map_50"] == 1.0 and values["mar_100"] == 1.0


def test_both_iou_types_empty_detections_and_reset():
    outputs, targets = _scenes(2, images=2)
    metric = MeanAveragePrecision(("bbox", "segm"))
    metric.update(outputs, targets)
    got = metric.compute()
    assert {"bbox_map", "segm_map", "bbox_mar_100", "segm_mar_large"} <= set(got)
    assert got["bbox_map"] == pytest.approx(
        MeanAveragePrecision("bbox")._metric(outputs, targets)["map"].item()
    )
    gt, _ = _coco(outputs, targets, "bbox")
    assert coco_evaluate(gt, [])["map"] == 0.0
    metric.reset()
    metric.update(outputs[:1], targets[:1])
    assert metric.compute()["bbox_map"] != got["bbox_map"]
    with pytest.raises(ValueError, match="iou_type"):
        MeanAveragePrecision("keypoints")
    with pytest.raises(ValueError, match="one dict per image"):
        metric.update(outputs, targets[:1])
