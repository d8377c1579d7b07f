"""Semantic segmentation: a class per pixel, from (N, num_classes, H, W) logits; mIoU.

A result is the label map (argmax over classes) with its per-class pixel share; ``zoo predict`` draws it
over the input as a colour overlay with a legend line. ``ignore_index`` (255 by default, as in VOC and
torchvision) marks pixels a metric skips: unlabelled borders in the data, never a predicted class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import DEFAULT_ATOL, DEFAULT_RTOL, Agreement, Task, WeightField, crop_to

__all__ = ["Segmentation", "SemanticSegmentation"]


@dataclass
class Segmentation:
    """One image's answer: a (H, W) class-index map, with the weight's labels."""

    mask: np.ndarray
    labels: tuple[str, ...] = ()

    def label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)

    def shares(self) -> list[tuple[str, float]]:
        """(label, fraction of pixels) of every class present, largest first."""
        values, counts = np.unique(self.mask, return_counts=True)
        order = np.argsort(-counts)
        return [(self.label(int(values[i])), float(counts[i] / self.mask.size)) for i in order]

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(class indices present, (K, H, W) boolean masks), for drawing."""
        present = np.unique(self.mask)
        return present, self.mask[None] == present[:, None, None]


@register_task
class SemanticSegmentation(Task):
    name = "semantic-segmentation"
    pipeline_tag = "image-segmentation"
    summary = "a class for every pixel"
    weight_fields = (
        WeightField(
            "ignore_index", 255, "target value that metrics and losses skip (unlabelled pixels)", (int,)
        ),
        WeightField("background_index", 0, "the class drawn without colour (background)", (int,)),
        WeightField(
            "size_multiple",
            None,
            "the model takes any size that is a multiple of this (padded, cropped back)",
            (int,),
        ),
    )
    headline_metrics = (("miou", "mIoU", "{:.3f}"), ("pixel_acc", "pixel acc", "{:.2%}"))
    browser_demo = "segment"
    output_names = ("logits",)
    outputs_doc = {"logits": "(N, num_classes, H, W) per-pixel class scores; argmax over axis 1 is the mask"}

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        logits = outputs["logits"] if "logits" in outputs else next(iter(outputs.values()))
        if np.ndim(logits) != 4:
            raise ValueError(f"segmentation logits must be (N, C, H, W), got {np.shape(logits)}")
        logits = crop_to(logits, options.get("source_size"))  # undo the preprocessing's padding
        return [Segmentation(m.astype(np.int64), tuple(meta.labels or ())) for m in np.argmax(logits, axis=1)]

    def describe(
        self,
        result: Any,
        source: str,
        *,
        out_dir: Path | None = None,
        image: np.ndarray | None = None,
        meta: Any = None,
        **options: Any,
    ) -> str:
        background_index = getattr(meta, "background_index", 0) if meta is not None else 0
        shares = ", ".join(f"{label} {share:.1%}" for label, share in result.shares()[:5])
        line = f"{source}: {shares}"
        if out_dir is not None:
            target = Path(out_dir) / f"{Path(source).stem}_segmentation.png"
            line += f" -> {self.draw(result, image, target, background_index)}"
        return line

    @staticmethod
    def draw(result: Segmentation, image: np.ndarray | None, target: Path, background_index: int = 0) -> Path:
        """The input beside the input with the classes overlaid, one colour per class index."""
        from zoo.tasks.draw import grid, overlay_masks, palette, save_png

        base = np.zeros((*result.mask.shape, 3), np.uint8) if image is None else image
        if base.shape[:2] != result.mask.shape:
            from PIL import Image

            base = np.asarray(Image.fromarray(_rgb(base)).resize(result.mask.shape[::-1], Image.BILINEAR))
        present, masks = result.masks()
        keep = present != background_index
        colors = palette(max(int(present.max()) + 1, len(result.labels)))[present[keep]]
        return save_png(grid([base, overlay_masks(base, masks[keep], colors, alpha=0.6)], columns=2), target)

    def metrics(self, meta: Any) -> dict[str, Any]:
        from zoo.metrics import MeanIoU

        # Named by the weight's labels (iou_background, iou_0, ...), as the recipes record them in the card;
        # with a background class, also where the mIoU goes (objects found, and which they are).
        labels = list(meta.labels) if meta.labels else None
        return {
            "miou": MeanIoU(
                num_classes=len(meta.labels),
                ignore_index=getattr(meta, "ignore_index", None),
                class_names=labels,
                background_index=getattr(meta, "background_index", None),
            )
        }

    def evaluation_pairs(self, images: np.ndarray, labels: Any, meta: Any) -> tuple[np.ndarray, Any]:
        """Scenes: the preprocessed images and their (N, H, W) class maps (the split's semantic targets)."""
        inputs, _ = super().evaluation_pairs(images, labels, meta)
        targets = np.asarray(labels, np.int64)
        if targets.ndim != 3:
            raise ValueError(f"segmentation targets must be (N, H, W) class maps, got shape {targets.shape}")
        return inputs, targets

    def update_metrics(
        self, metrics: Mapping[str, Any], outputs: Mapping[str, np.ndarray], targets: Any, meta: Any
    ) -> None:
        """Logits cropped to the target's size (undoing any padding to ``size_multiple``), then the
        arg-max class map against the targets."""
        import torch

        logits = outputs["logits"] if "logits" in outputs else next(iter(outputs.values()))
        target = torch.as_tensor(np.asarray(targets, np.int64))
        pred = torch.as_tensor(crop_to(np.asarray(logits), target.shape[-2:]).argmax(1))
        for metric in metrics.values():
            metric.update(pred, target)

    def agreement(
        self,
        expected: Mapping[str, np.ndarray],
        actual: Mapping[str, np.ndarray],
        meta: Any,
        *,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> Agreement:
        """Scaled parity, and at least 99.9% of pixels get the same class (near-ties may flip)."""
        base = super().agreement(expected, actual, meta, atol=atol, rtol=rtol)
        key = "logits" if "logits" in expected else next(iter(expected))
        if np.shape(expected[key]) == np.shape(actual[key]) and np.ndim(expected[key]) == 4:
            same = np.argmax(expected[key], axis=1) == np.argmax(actual[key], axis=1)
            base.values["pixel_agreement"] = float(same.mean())
            base.ok = base.ok and base.values["pixel_agreement"] >= 0.999
        return base


def _rgb(image: np.ndarray) -> np.ndarray:
    from zoo.tasks.draw import to_rgb

    return to_rgb(image)
