"""Weakly supervised localisation: CorLoc of the boxes and the quality of the image tags they come from.

- `CorLoc` (correct localisation; Deselaers, Alexe and Ferrari, "Weakly supervised localization and
  learning with generic knowledge", IJCV 2012: the measure weakly supervised detection reports beside AP): the fraction of (image, class present in it) pairs
  whose top-scoring box of that class overlaps a ground-truth box of that class with IoU >= 0.5. A class
  with no box at all counts as a miss.
- `MultiLabelTags`: the tags as a multi-label classifier: ``tag_map`` (mean over classes of the average
  precision of the class's scores over the split, scikit-learn's), ``tag_f1`` (micro F1 of the tags
  predicted at a probability threshold) and ``tag_exact`` (images whose predicted tag set is exactly right).

COCO AP of the same boxes is `zoo.metrics.CocoEvaluation` (pycocotools).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from zoo.metrics.base import Metric
from zoo.tasks.detection import box_iou

__all__ = ["CorLoc", "MultiLabelTags", "corloc_hits"]


def corloc_hits(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    iou_thresh: float = 0.5,
) -> tuple[int, int]:
    """(hits, pairs) of one image: for each class among `gt_labels`, whether its top-scoring predicted box
    has IoU >= `iou_thresh` with some ground-truth box of that class."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores, labels = np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1)
    gt_boxes, gt_labels = np.asarray(gt_boxes, np.float64).reshape(-1, 4), np.asarray(gt_labels).reshape(-1)
    hits = 0
    present = np.unique(gt_labels)
    for label in present:
        mine = np.flatnonzero(labels == label)
        if not len(mine):
            continue
        best = mine[np.argmax(scores[mine])]
        hits += int(box_iou(boxes[best], gt_boxes[gt_labels == label]).max() >= iou_thresh)
    return hits, len(present)


class CorLoc(Metric):
    """CorLoc over a split: ``update(outputs, targets)`` with one dict per image each, outputs holding
    ``boxes`` (K, 4) xyxy, ``scores`` and ``labels``, targets ``boxes`` and ``labels`` (the same label
    space). ``corloc`` counts (image, present class) pairs; ``corloc_images`` counts images whose every
    present class is localised."""

    def __init__(self, iou_thresh: float = 0.5):
        super().__init__()
        self.iou_thresh = iou_thresh
        self.higher_is_better = {"corloc": True, "corloc_images": True}
        self.add_state("counts", torch.zeros(4, dtype=torch.int64))  # hits, pairs, images right, images

    def update(self, outputs: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        if len(outputs) != len(targets):
            raise ValueError(f"{len(outputs)} outputs for {len(targets)} targets: one dict per image each")
        counts = [0, 0, 0, 0]
        for out, target in zip(outputs, targets):
            hits, pairs = corloc_hits(
                _array(out["boxes"]),
                _array(out["scores"]),
                _array(out["labels"]),
                _array(target["boxes"]),
                _array(target["labels"]),
                self.iou_thresh,
            )
            counts[0] += hits
            counts[1] += pairs
            counts[2] += int(hits == pairs)
            counts[3] += 1
        self.counts += torch.tensor(counts, dtype=torch.int64, device=self.counts.device)

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        hits, pairs, right, images = (int(v) for v in state["counts"])
        return {
            "corloc": hits / pairs if pairs else math.nan,
            "corloc_images": right / images if images else math.nan,
        }


class MultiLabelTags(Metric):
    """Multi-label tag quality: ``update(probs (N, K), present (N, K) 0/1)``; ``tag_map``, ``tag_f1`` (micro,
    tags predicted where the probability >= `threshold`) and ``tag_exact``."""

    def __init__(self, num_classes: int, threshold: float = 0.5):
        super().__init__()
        self.num_classes, self.threshold = num_classes, threshold
        self.higher_is_better = {"tag_map": True, "tag_f1": True, "tag_exact": True}
        self.add_state("probs", torch.zeros(0, num_classes, dtype=torch.float64), "cat")
        self.add_state("present", torch.zeros(0, num_classes, dtype=torch.float64), "cat")

    def update(self, outputs: Any, targets: Any) -> None:
        probs = torch.as_tensor(np.asarray(outputs, np.float64))
        present = torch.as_tensor(np.asarray(targets, np.float64))
        if probs.ndim != 2 or probs.shape != present.shape or probs.shape[1] != self.num_classes:
            raise ValueError(
                f"MultiLabelTags takes probabilities and 0/1 targets of shape (N, {self.num_classes}), got "
                f"{tuple(probs.shape)} and {tuple(present.shape)}"
            )
        self.probs.append(probs.to(self.device))
        self.present.append(present.to(self.device))

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        from sklearn.metrics import average_precision_score

        probs, present = state["probs"].cpu().numpy(), state["present"].cpu().numpy() > 0.5
        if not len(probs):
            return dict.fromkeys(self.higher_is_better, math.nan)
        # AP of the classes that occur (AP is undefined for a class with no positive image).
        aps = [
            average_precision_score(present[:, k], probs[:, k])
            for k in range(self.num_classes)
            if present[:, k].any()
        ]
        predicted = probs >= self.threshold
        true_pos = float((predicted & present).sum())
        f1 = 2 * true_pos / max(float(predicted.sum() + present.sum()), 1.0)
        return {
            "tag_map": float(np.mean(aps)) if aps else math.nan,
            "tag_f1": f1,
            "tag_exact": float((predicted == present).all(axis=1).mean()),
        }


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
