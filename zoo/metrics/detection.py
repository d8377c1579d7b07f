"""Object detection and instance segmentation: COCO mean average precision, by torchmetrics on torchvision
outputs (`MeanAveragePrecision`) or by pycocotools on COCO-format data (`coco_evaluate`, and
`CocoEvaluation`, which turns torchvision outputs into COCO results for it)."""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Literal

import numpy as np
import torch

from zoo.metrics.base import Metric, distributed

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


class CocoEvaluation(Metric):
    """COCOeval over the images seen since `reset`, against COCO ground truth (`coco_evaluate`).

    The digit-scene detection recipe's evaluation and ``zoo verify``'s for detection and instance
    segmentation weights (`zoo.tasks.detection`): one code path, so a card's numbers are re-measured exactly.

    ``update(outputs, targets)`` takes torchvision detection dicts (one per image) and, per image, either its
    COCO image id (an int: the ground truth is `gt`, given up front) or a dict with ``image_id``,
    ``coco_image`` (the COCO ``images`` entry) and ``coco_annotations`` (its COCO annotations), which
    accumulate into the ground truth (`gt` may then be None). Detections become COCO results (boxes as x, y,
    w, h; masks thresholded at ``mask_thresh`` and RLE-encoded). ``compute`` evaluates only the images seen
    (a partial split is scored on its own images), once per ``iou_types`` entry (the first unprefixed, the
    others prefixed ``bbox_`` / ``segm_``), plus per-class AP ``ap_<name>`` for the first type when
    ``per_class``; every name carries ``prefix`` (e.g. ``overlap_`` for a subset of the images). Undefined
    values (COCOeval's -1) are left out. Under DDP the results of every rank are gathered first.
    """

    def __init__(
        self,
        gt: dict[str, Any] | None = None,
        iou_types: tuple[str, ...] = ("bbox",),
        per_class: bool = True,
        mask_thresh: float = 0.5,
        prefix: str = "",
        categories: list[dict[str, Any]] | None = None,
    ):
        super().__init__()
        if gt is None and categories is None:
            from zoo.data.coco import CATEGORIES

            categories = CATEGORIES
        self.gt = gt
        self.categories = list(gt["categories"] if gt is not None else categories)
        self.iou_types, self.per_class, self.mask_thresh = tuple(iou_types), per_class, mask_thresh
        self.prefix = prefix
        names = [
            p + s
            for i, t in enumerate(self.iou_types)
            for p in ("" if i == 0 else f"{t}_",)
            for s in COCO_STATS
        ]
        if per_class:
            names += [f"ap_{c['name']}" for c in self.categories]
        self.higher_is_better = dict.fromkeys((prefix + n for n in names), True)
        self.reset()

    def reset(self) -> None:
        self._results: list[dict[str, Any]] = []
        self._seen: list[int] = []
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []

    def update(self, outputs: list[dict[str, torch.Tensor]], targets: list[Any]) -> None:
        from pycocotools import mask as mask_api

        if len(outputs) != len(targets):
            raise ValueError(f"{len(outputs)} outputs for {len(targets)} targets: one per image each")
        for out, target in zip(outputs, targets):
            if isinstance(target, dict):
                image_id = int(target["image_id"])
                self._images.append(target["coco_image"])
                self._annotations += list(target["coco_annotations"])
            else:
                image_id = int(target)
            self._seen.append(image_id)
            boxes = torch.as_tensor(out["boxes"]).detach().float().cpu().numpy().reshape(-1, 4)
            scores = torch.as_tensor(out["scores"]).detach().float().cpu().numpy().reshape(-1)
            labels = torch.as_tensor(out["labels"]).detach().cpu().numpy().reshape(-1)
            masks = None
            if "segm" in self.iou_types and "masks" in out:
                probs = torch.as_tensor(out["masks"]).detach()
                probs = probs[:, 0] if probs.dim() == 4 else probs
                masks = (probs.float() > self.mask_thresh).cpu().numpy().astype(np.uint8)
            for k in range(len(scores)):
                x1, y1, x2, y2 = (float(v) for v in boxes[k])
                result = {
                    "image_id": image_id,
                    "category_id": int(labels[k]),
                    "score": float(scores[k]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                }
                if masks is not None:
                    rle = mask_api.encode(np.asfortranarray(masks[k]))
                    rle["counts"] = rle["counts"].decode("ascii")
                    result["segmentation"] = rle
                self._results.append(result)

    def compute(self) -> dict[str, float]:
        results, seen = self._results, self._seen
        images, annotations = self._images, self._annotations
        if distributed():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (results, seen, images, annotations))
            results = [r for part in gathered for r in part[0]]
            seen = [i for part in gathered for i in part[1]]
            images = [im for part in gathered for im in part[2]]
            annotations = [a for part in gathered for a in part[3]]
        ids = set(seen)
        if self.gt is not None:
            images = [im for im in self.gt["images"] if im["id"] in ids]
            annotations = [a for a in self.gt["annotations"] if a["image_id"] in ids]
        gt = {"images": images, "annotations": annotations, "categories": self.categories}
        values: dict[str, float] = {}
        for i, iou_type in enumerate(self.iou_types):
            dets = [r for r in results if iou_type == "bbox" or "segmentation" in r]
            prefix = "" if i == 0 else f"{iou_type}_"
            values.update({prefix + k: v for k, v in coco_evaluate(gt, dets, iou_type).items()})
        if self.per_class:
            # COCOeval averages over the categories present: with one category left, "map" is its AP.
            for category in self.categories:
                one = {
                    **gt,
                    "annotations": [a for a in gt["annotations"] if a["category_id"] == category["id"]],
                }
                dets = [r for r in results if r["category_id"] == category["id"]]
                values[f"ap_{category['name']}"] = coco_evaluate(one, dets, self.iou_types[0])["map"]
        # Undefined values (COCOeval's -1: no ground truth in that area range or class, e.g. map_large,
        # since every digit's mask is under 32^2 pixels) are left out rather than recorded as nan.
        return {self.prefix + k: v for k, v in values.items() if not math.isnan(v)}
