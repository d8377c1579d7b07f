"""CorLoc on hand-made cases, and the tags' multi-label quality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo.metrics import CorLoc, MultiLabelTags
from zoo.metrics.localization import corloc_hits

GT_BOXES = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
GT_LABELS = np.array([1, 2, 2])


def test_top_box_of_each_present_class_decides():
    boxes = np.array([[0, 0, 10, 10], [21, 21, 31, 31], [0, 0, 30, 30]], np.float32)
    # class 1: its only box is exact; class 2: its top box overlaps the second instance (IoU 0.68)
    assert corloc_hits(boxes, [0.9, 0.8, 0.1], [1, 2, 2], GT_BOXES, GT_LABELS) == (2, 2)
    # class 2's top box now covers both instances loosely (IoU 0.11): a miss, whatever the lower boxes are
    assert corloc_hits(boxes, [0.9, 0.1, 0.8], [1, 2, 2], GT_BOXES, GT_LABELS) == (1, 2)


def test_missing_class_and_wrong_label_are_misses_and_extra_classes_do_not_count():
    boxes = np.array([[0, 0, 10, 10], [60, 60, 70, 70]], np.float32)
    # the right box under the wrong label is no hit; a class absent from the image adds no pair
    assert corloc_hits(boxes, [0.9, 0.5], [2, 3], GT_BOXES, GT_LABELS) == (0, 2)
    assert corloc_hits(np.zeros((0, 4)), [], [], GT_BOXES, GT_LABELS) == (0, 2)


def test_iou_threshold_is_inclusive_at_one_half():
    half = np.array([[0, 0, 10, 20]], np.float32)  # IoU exactly 0.5 with [0, 0, 10, 10]
    assert corloc_hits(half, [1.0], [1], GT_BOXES[:1], GT_LABELS[:1]) == (1, 1)
    assert corloc_hits(half + np.array([0, 0, 0, 1]), [1.0], [1], GT_BOXES[:1], GT_LABELS[:1]) == (0, 1)


def test_corloc_metric_over_images():
    metric = CorLoc()
    outputs = [
        {"boxes": GT_BOXES[:2], "scores": np.array([0.9, 0.8]), "labels": np.array([1, 2])},  # 2 of 2
        {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)},  # 0 of 1
    ]
    targets = [{"boxes": GT_BOXES, "labels": GT_LABELS}, {"boxes": GT_BOXES[:1], "labels": GT_LABELS[:1]}]
    metric.update(outputs, targets)
    assert metric.compute() == {"corloc": pytest.approx(2 / 3), "corloc_images": 0.5}
    metric.reset()
    assert math.isnan(metric.compute()["corloc"])
    with pytest.raises(ValueError, match="one dict per image"):
        metric.update(outputs, targets[:1])


def test_tag_metrics():
    metric = MultiLabelTags(3)
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.8, 0.4], [0.7, 0.3, 0.2]])
    present = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    metric.update(probs, present)
    values = metric.compute()
    # classes 0 and 1: their one positive ranks first (AP 1); class 2: positives 0.6 and 0.2 with the
    # negative 0.4 between them -> (1 + 2/3) / 2
    assert values["tag_map"] == pytest.approx((1 + 1 + (1 + 2 / 3) / 2) / 3)
    # predicted at 0.5: (0, 2), (1,), (0,) against (0, 2), (1,), (2,): 3 true positives of 4 + 4
    assert values["tag_f1"] == pytest.approx(2 * 3 / 8)
    assert values["tag_exact"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        metric.update(probs[:, :2], present[:, :2])
