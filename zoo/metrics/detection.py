"""Object detection and instance segmentation: COCO mean average precision, by torchmetrics on torchvision
outputs (`MeanAveragePrecision`) or by pycocotools on COCO-format data (`coco_evaluate`)."""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Literal

import numpy as np
import torch

from zoo.metrics.base import Metric

IoUType = Literal["bbox", "segm"]

# COCOeval.stats, in order, under torchmetrics' names. AP is averaged over IoU thresholds 0.50:0.05:0.95
# and over classes; "small" / "medium" / "large" are objects under 32^2, up to 96^2 and over 96^2 pixels
# of area; mar_k is the recall with at most k detections per image.
COCO_STATS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


def _undefined_to_nan(value: float) -> float:
    # COCOeval writes -1 where a value is undefined (no ground truth in that area range): say so with nan,
    # so that a mean or a "best so far" cannot mistake it for a score.
    return math.nan if value == -1 else float(value)


class MeanAveragePrecision(Metric):
    """COCO mean average precision (`Lin et al. 2014 <https://arxiv.org/abs/1405.0312>`_) over a split.

    For each class and IoU threshold t in 0.50, 0.55, ..., 0.95, detections (at most 100 per image, by
    score) are matched greedily to unmatched ground truth with IoU >= t; AP is the area under the
    interpolated precision-recall curve sampled at 101 recall points; ``map`` averages AP over thresholds
    and classes, ``map_50`` / ``map_75`` at one threshold; ``mar_k`` is the mean recall with k detections
    per image. IoU is between boxes (``iou_type="bbox"``) or masks (``"segm"``). Values that are undefined
    for the split (e.g. ``map_large`` with no large object) are ``nan``.

    Computed by torchmetrics' ``MeanAveragePrecision`` with the pycocotools backend, i.e. by COCOeval
    itself (`coco_evaluate` gives the same numbers from COCO-format data).

    ``update(outputs, targets)`` takes torchvision detection lists, one dict per image: outputs with
    ``boxes`` ``(K, 4)`` xyxy in pixels, ``scores``, ``labels`` (and ``masks`` for ``"segm"``: Mask R-CNN's
    ``(K, 1, H, W)`` probabilities are thresholded at `mask_threshold`); targets with ``boxes``, ``labels``
    (and ``masks`` ``(K, H, W)``). ``iou_type=("bbox", "segm")`` evaluates both, with outputs named
    ``bbox_map``, ``segm_map``, ...
    """

    def __init__(self, iou_type: IoUType | tuple[IoUType, ...] = "bbox", mask_threshold: float = 0.5):
        super().__init__()
        from torchmetrics.detection import MeanAveragePrecision as _MAP

        types = (iou_type,) if isinstance(iou_type, str) else tuple(iou_type)
        if not types or any(t not in ("bbox", "segm") for t in types):
            raise ValueError(f"iou_type must be 'bbox', 'segm' or a tuple of them, got {iou_type!r}")
        self.iou_types = types
        self.mask_threshold = mask_threshold
        prefixes = [""] if len(types) == 1 else [f"{t}_" for t in types]
        self.higher_is_better = {p + name: True for p in prefixes for name in COCO_STATS}
        self._metric = _MAP(
            iou_type=types[0] if len(types) == 1 else types,
            backend="pycocotools",
            # COCOeval's own float64 thresholds. torchmetrics' defaults come from torch.linspace in float32,
            # so a recall of exactly 0.3 (3 of 10) falls below the threshold 0.3f and is read at the next
            # one: map_medium was 0.0957 instead of COCOeval's 0.0971 in tests/metrics/test_detection.py.
            iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
            rec_thresholds=np.linspace(0.0, 1.0, 101).tolist(),
        )

    def _masks(self, item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        masks = item.get("masks")
        if "segm" not in self.iou_types or masks is None:
            return item
        if masks.ndim == 4:  # torchvision Mask R-CNN: (K, 1, H, W)
            masks = masks[:, 0]
        masks = masks > self.mask_threshold if masks.is_floating_point() else masks.bool()
        return {**item, "masks": masks}

    def update(self, outputs: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]) -> None:
        if len(outputs) != len(targets):
            raise ValueError(f"{len(outputs)} outputs for {len(targets)} targets: one dict per image each")
        # Masks only where they are scored: torchmetrics would otherwise carry them (and RLE-encode them).
        masks = ("masks",) if "segm" in self.iou_types else ()
        keep_out, keep_tgt = ("boxes", "scores", "labels", *masks), ("boxes", "labels", *masks)
        preds = [self._masks({k: v.detach() for k, v in o.items() if k in keep_out}) for o in outputs]
        truth = [self._masks({k: v for k, v in t.items() if k in keep_tgt}) for t in targets]
        self._metric.update(preds, truth)

    def reset(self) -> None:
        self._metric.reset()

    def to(self, device: torch.device | str) -> MeanAveragePrecision:
        self.device = torch.device(device)
        self._metric.to(self.device)
        return self

    def compute(self) -> dict[str, float]:
        """COCOeval's summary over every image since `reset` (torchmetrics gathers them over DDP ranks)."""
        # COCOeval prints its summary table; the caller logs the returned numbers instead.
        with contextlib.redirect_stdout(io.StringIO()):
            values = self._metric.compute()
        return {name: _undefined_to_nan(float(values[name])) for name in self.higher_is_better}


def coco_evaluate(
    gt: dict[str, Any], detections: list[dict[str, Any]], iou_type: IoUType = "bbox"
) -> dict[str, float]:
    """COCOeval's twelve summary numbers (named as in `COCO_STATS`, undefined ones ``nan``) for
    COCO-format ground truth and detections, computed by pycocotools directly.

    `gt` is a COCO annotation dict (``images``, ``annotations`` with ``image_id``, ``category_id``,
    ``bbox`` ``[x, y, w, h]``, ``area``, ``iscrowd`` and, for ``"segm"``, ``segmentation``; ``categories``).
    `detections` is a COCO results list: ``image_id``, ``category_id``, ``score`` and ``bbox`` or
    ``segmentation`` (RLE). Prefer `MeanAveragePrecision` inside a training loop; this is for data that
    are already in COCO format (and is the reference the metric is tested against).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        coco_gt = COCO()
        coco_gt.dataset = {"info": {}, **gt}
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes(list(detections))
        else:  # loadRes refuses an empty list; no detections is a valid (all-zero) result
            coco_dt = COCO()
            coco_dt.dataset = {**{k: gt[k] for k in ("images", "categories")}, "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: _undefined_to_nan(v) for name, v in zip(COCO_STATS, evaluator.stats.tolist())}
