"""Object detection and instance segmentation: boxes (and masks) with labels and scores; COCO mAP.

Detectors follow torchvision's contract: an image in [0, 1] at its own size (the model resizes it to
``min_size``/``max_size`` inside and maps boxes back), and per image ``boxes`` (N, 4) as x1, y1, x2, y2 in
input pixels, ``scores`` (N,), ``labels`` (N,) class indices into the weight's labels, and for instance
segmentation ``masks`` (N, 1, H, W) probabilities. An exported detector takes one image per call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import DEFAULT_ATOL, DEFAULT_RTOL, Agreement, Task, WeightField

__all__ = ["Detections", "InstanceSegmentation", "ObjectDetection", "box_iou"]


@dataclass
class Detections:
    """One image's detections, kept above the weight's ``score_thresh``, highest score first."""

    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in input pixels
    scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) int64 class indices
    names: tuple[str, ...] = ()  # the weight's labels
    masks: np.ndarray | None = None  # (N, H, W) bool, instance segmentation only

    def __len__(self) -> int:
        return len(self.scores)

    def label(self, i: int) -> str:
        index = int(self.labels[i])
        return self.names[index] if 0 <= index < len(self.names) else str(index)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of two sets of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


_DETECTION_FIELDS = (
    WeightField("min_size", 800, "shorter image side the model resizes to (torchvision's transform)", (int,)),
    WeightField("max_size", 1333, "cap on the longer side after resizing", (int,)),
    WeightField("score_thresh", 0.05, "detections below this score are dropped", (float,)),
    WeightField("nms_thresh", 0.5, "IoU above which NMS suppresses the lower-scored box", (float,)),
    WeightField("detections_per_img", 100, "most detections kept per image", (int,)),
)


@register_task
class ObjectDetection(Task):
    name = "object-detection"
    pipeline_tag = "object-detection"
    summary = "labelled boxes around the objects of an image"
    weight_fields = _DETECTION_FIELDS
    headline_metrics = (("map", "mAP", "{:.3f}"), ("map_50", "mAP@50", "{:.3f}"))
    output_names = ("boxes", "scores", "labels")
    outputs_doc = {
        "boxes": "(N, 4) x1, y1, x2, y2 in input pixels",
        "scores": "(N,) confidence, sorted high to low",
        "labels": "(N,) class index into the weight's labels",
    }
    batched_images = False  # one image per call, at its own size (as torchvision's detectors)
    iou_type = "bbox"
    browser_demo = "detect"  # the graph ends in final boxes; the page keeps those above score_thresh

    def preprocess(self, image: np.ndarray, meta: Any, *, invert: bool = False) -> np.ndarray:
        """(H, W, C) uint8 -> (1, C, H, W) float32 in [0, 1] at the image's own size (the model resizes)."""
        from zoo.preprocess import ImageInputError

        channels = meta.input_size[0] if meta.input_size else 3
        if image.ndim != 3 or image.shape[2] != channels:
            raise ImageInputError(f"expected an (H, W, {channels}) image, got shape {image.shape}")
        x = image.astype(np.float32) / 255.0
        if invert:
            x = 1.0 - x
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        """One image's raw outputs -> [`Detections`] above ``score_thresh`` (overridable per call)."""
        thresh = options.get("score_thresh", getattr(meta, "score_thresh", 0.05))
        scores = np.asarray(outputs["scores"], np.float32).reshape(-1)
        keep = np.argsort(-scores, kind="stable")
        keep = keep[scores[keep] >= thresh]
        masks = None
        if "masks" in outputs:
            probs = np.asarray(outputs["masks"], np.float32)
            probs = probs[:, 0] if probs.ndim == 4 else probs
            masks = probs[keep] >= getattr(meta, "mask_thresh", 0.5)
        return [
            Detections(
                np.asarray(outputs["boxes"], np.float32).reshape(-1, 4)[keep],
                scores[keep],
                np.asarray(outputs["labels"]).reshape(-1)[keep].astype(np.int64),
                tuple(meta.labels or ()),
                masks,
            )
        ]

    def describe(
        self,
        result: Any,
        source: str,
        *,
        out_dir: Path | None = None,
        image: np.ndarray | None = None,
        **options: Any,
    ) -> str:
        found = ", ".join(
            f"{result.label(i)} {result.scores[i]:.2f} [{' '.join(f'{v:.0f}' for v in result.boxes[i])}]"
            for i in range(min(len(result), 10))
        )
        line = f"{source}: {len(result)} found" + (f": {found}" if found else "")
        if out_dir is not None and image is not None:
            line += (
                f" -> {self.draw(result, image, Path(out_dir) / f'{Path(source).stem}_{self.iou_type}.png')}"
            )
        return line

    @staticmethod
    def draw(result: Detections, image: np.ndarray, target: Path) -> Path:
        """The image with each detection's box, label and score (and mask) in its class colour."""
        from zoo.tasks.draw import draw_boxes, overlay_masks, palette, save_png

        colors = palette(max(len(result.names), int(result.labels.max(initial=0)) + 1))[result.labels]
        canvas = image
        if result.masks is not None and len(result):
            canvas = overlay_masks(canvas, result.masks, colors, alpha=0.5)
        text = [f"{result.label(i)} {result.scores[i]:.2f}" for i in range(len(result))]
        return save_png(draw_boxes(canvas, result.boxes, text, colors), target)

    # ------------------------------------------------------------------------------ evaluation
    # COCOeval of the types below (the first unprefixed, the others as bbox_* / segm_*), as the detection
    # recipe records them: `zoo.metrics.CocoEvaluation` against the split's COCO annotations.
    iou_types: tuple[str, ...] = ("bbox",)

    def evaluation_data(self, test: Any, count: int, meta: Any) -> tuple[np.ndarray, Any]:
        """The first `count` digit scenes as (N, H, W, 3) uint8 images and one target dict per scene:
        ``image_id`` (COCO id, index + 1), ``coco_image`` and ``coco_annotations`` (exactly as
        `zoo.data.coco.export_coco` writes them: visible-pixel RLE masks, mask areas) and ``touching``
        (`zoo.data.scenes.touching_instances`: some digits overlap or touch)."""
        from zoo.data.coco import coco_records
        from zoo.data.scenes import touching_instances
        from zoo.errors import ConfigError

        if not hasattr(test, "scene"):
            raise ConfigError(f"{meta.name}: its test split has no instances (boxes, masks) to evaluate on")
        images, targets = [], []
        for scene, image, anns in coco_records(test, count):
            images.append(scene.image)
            targets.append(
                {
                    "image_id": image["id"],
                    "coco_image": image,
                    "coco_annotations": anns,
                    "touching": bool(touching_instances(scene.masks)),
                }
            )
        return np.stack(images), targets

    def metrics(self, meta: Any) -> dict[str, Any]:
        """COCOeval as the recipe records it; per-class AP (``ap_<digit>``, ten more COCOeval runs) when
        the weight's card records it (or it records nothing yet)."""
        from zoo.metrics import CocoEvaluation

        recorded = getattr(meta, "metrics", None) or {}
        per_class = not recorded or any(str(k).startswith("ap_") for k in recorded)
        mask_thresh = float(getattr(meta, "mask_thresh", None) or 0.5)
        return {
            "coco": CocoEvaluation(None, self.iou_types, per_class=per_class, mask_thresh=mask_thresh),
            # the scenes whose digits overlap or touch (the hard case), as the recipes report them
            "overlap": CocoEvaluation(
                None, self.iou_types, per_class=False, mask_thresh=mask_thresh, prefix="overlap_"
            ),
        }

    def update_metrics(
        self, metrics: Mapping[str, Any], outputs: Mapping[str, np.ndarray], targets: Any, meta: Any
    ) -> None:
        """One image's named outputs (either runtime's: ``boxes``, ``scores``, ``labels``, ``masks``) and
        its one target; a metric whose name starts with ``overlap`` sees only scenes with touching digits."""
        (target,) = targets
        output = {k: np.asarray(v) for k, v in outputs.items() if k in ("boxes", "scores", "labels", "masks")}
        for name, metric in metrics.items():
            if name.startswith("overlap") and not target.get("touching"):
                continue
            metric.update([output], [target])

    def metrics_table(self, measured: Mapping[str, float], meta: Any) -> list[str]:
        """COCOeval's summary, as pycocotools prints it, for each IoU type measured."""
        from zoo.metrics.detection import COCO_STATS

        rows = [("Average Precision", "0.50:0.95", "all", 100), ("Average Precision", "0.50", "all", 100)]
        rows += [("Average Precision", "0.75", "all", 100)]
        rows += [("Average Precision", "0.50:0.95", area, 100) for area in ("small", "medium", "large")]
        rows += [("Average Recall", "0.50:0.95", "all", k) for k in (1, 10, 100)]
        rows += [("Average Recall", "0.50:0.95", area, 100) for area in ("small", "medium", "large")]
        lines = []
        for i, iou_type in enumerate(self.iou_types):
            prefix = "" if i == 0 else f"{iou_type}_"
            lines.append(f"COCOeval {iou_type}:")
            for (kind, iou, area, dets), key in zip(rows, COCO_STATS):
                value = measured.get(prefix + key, float("nan"))
                short = "AP" if kind.startswith("Average Precision") else "AR"
                lines.append(
                    f" {kind:<18} ({short}) @[ IoU={iou:<9} | area={area:>6} | maxDets={dets:>3} ] = "
                    + ("  n/a" if value != value else f"{value:.3f}")
                )
        per_class = [(k[3:], v) for k, v in measured.items() if k.startswith("ap_")]
        if per_class:
            lines.append("per-class AP: " + ", ".join(f"{k} {v:.3f}" for k, v in per_class))
        return lines

    def agreement(
        self,
        expected: Mapping[str, np.ndarray],
        actual: Mapping[str, np.ndarray],
        meta: Any,
        *,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> Agreement:
        """The same detections above ``score_thresh``: same count, labels, boxes with IoU >= 0.99 and
        scores within 1e-3 when matched in score order. Raw arrays may differ in length below the
        threshold (near-tied candidates), which is why parity alone cannot decide."""
        want = self.postprocess(expected, meta)[0]
        got = self.postprocess(actual, meta)[0]
        values = {"count_expected": float(len(want)), "count_actual": float(len(got))}
        if len(want) != len(got):
            return Agreement(False, values, "different numbers of detections above score_thresh")
        if not len(want):
            return Agreement(True, values)
        iou = np.diag(box_iou(want.boxes, got.boxes))
        values["min_box_iou"] = float(iou.min())
        values["max_score_diff"] = float(np.abs(want.scores - got.scores).max())
        ok = bool((want.labels == got.labels).all()) and values["min_box_iou"] >= 0.99
        ok = ok and values["max_score_diff"] <= 1e-3
        if want.masks is not None and got.masks is not None:
            values["mask_agreement"] = float((want.masks == got.masks).mean())
            ok = ok and values["mask_agreement"] >= 0.999
        return Agreement(ok, values)

    def card_usage(self, meta: Mapping[str, Any], onnx_file: str) -> list[str]:
        return [
            f'session = ort.InferenceSession("{onnx_file}")  # one image per call, any size',
            "boxes, scores, labels = session.run(None, {session.get_inputs()[0].name: x})[:3]",
        ]


@register_task
class InstanceSegmentation(ObjectDetection):
    name = "instance-segmentation"
    pipeline_tag = "image-segmentation"
    summary = "a mask, box and label for every object instance"
    weight_fields = (
        *_DETECTION_FIELDS,
        WeightField(
            "mask_thresh", 0.5, "mask probability above which a pixel belongs to the instance", (float,)
        ),
    )
    output_names = ("boxes", "scores", "labels", "masks")
    outputs_doc = {
        **ObjectDetection.outputs_doc,
        "masks": "(N, 1, H, W) per-instance mask probabilities at the input's size",
    }
    iou_type = "segm"
    iou_types = ("segm", "bbox")
