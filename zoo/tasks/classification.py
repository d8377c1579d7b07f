"""Image classification: logits over the weight's labels; softmax, top-k, accuracy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import DEFAULT_ATOL, DEFAULT_RTOL, Agreement, Task, WeightField

__all__ = ["Classification", "ImageClassification"]


@dataclass
class Classification:
    """A classifier's answer for one sample: class probabilities and their labels."""

    probs: np.ndarray
    labels: tuple[str, ...] = ()

    @property
    def index(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def label(self) -> str:
        return self.labels[self.index] if self.index < len(self.labels) else str(self.index)

    @property
    def probability(self) -> float:
        return float(self.probs[self.index])

    def topk(self, k: int = 5) -> list[tuple[str, float]]:
        from zoo.preprocess import topk

        return topk(self.probs, k, self.labels)


@register_task
class ImageClassification(Task):
    name = "image-classification"
    pipeline_tag = "image-classification"
    summary = "one label per image, from logits over the weight's classes"
    output_names = ("logits",)
    headline_metrics = (("acc", "top-1", "{:.2%}"),)
    outputs_doc = {"logits": "(N, num_classes) unnormalised class scores; softmax gives probabilities"}
    # How ImageNet weights from torchvision and timm expect an image (their evaluation transform): the
    # shorter side resized, then a centre crop of input_size. The zoo's own weights resize straight to
    # input_size (resize_size None), as they were trained.
    weight_fields = (
        WeightField(
            "resize_size",
            None,
            "shorter image side resized to before the centre crop to input_size; None: resize to input_size",
            (int,),
        ),
        WeightField("interpolation", "bilinear", "resampling of that resize: bilinear or bicubic", (str,)),
    )

    def preprocess(self, image: np.ndarray, meta: Any, *, invert: bool = False) -> np.ndarray:
        """Resize the shorter side and centre-crop when the weight says so (imported ImageNet weights),
        then normalise; otherwise the common resize to ``input_size``."""
        resize = getattr(meta, "resize_size", None)
        interpolation = getattr(meta, "interpolation", None) or "bilinear"
        if not resize and interpolation == "bilinear":
            return super().preprocess(image, meta, invert=invert)
        from zoo.preprocess import preprocess_image, resize_center_crop

        if not meta.input_size:
            raise ValueError(f"{meta.name}: the weight records no input_size to crop images to")
        image = resize_center_crop(image, resize, meta.input_size[1:], interpolation)
        return preprocess_image(image, meta.input_size, meta.mean, meta.std, invert=invert)

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        from zoo.preprocess import softmax

        logits = _logits(outputs)
        probs = softmax(np.asarray(logits, np.float64), axis=-1)
        return [Classification(p, tuple(meta.labels or ())) for p in probs]

    def describe(self, result: Any, source: str, *, k: int = 3, **options: Any) -> str:
        return f"{source}: " + ", ".join(f"{label} {p:.3f}" for label, p in result.topk(k))

    def metrics(self, meta: Any) -> dict[str, Any]:
        from zoo.metrics import Accuracy

        classes = len(meta.labels or ()) or 10
        topk = (1, 5) if classes > 5 else (1,)
        return {"accuracy": Accuracy(topk=topk, names=("acc", "top5")[: len(topk)])}

    def agreement(
        self,
        expected: Mapping[str, np.ndarray],
        actual: Mapping[str, np.ndarray],
        meta: Any,
        *,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> Agreement:
        """Scaled parity on the logits, and the same top-1 class for every sample whose top-2 margin is
        wider than the tolerance (a near-tie may flip within float error; that is not a disagreement)."""
        base = super().agreement(expected, actual, meta, atol=atol, rtol=rtol)
        if "logits" not in expected and len(expected) != 1:
            return base  # not a classifier head's graph (e.g. a feature map): parity decides
        want, got = np.asarray(_logits(expected), np.float64), np.asarray(_logits(actual), np.float64)
        if want.shape != got.shape or want.ndim != 2:
            return base
        ordered = np.sort(want, axis=-1)
        margin = ordered[:, -1] - (ordered[:, -2] if want.shape[1] > 1 else -np.inf)
        tol = atol + rtol * float(np.abs(want).max())
        decided = margin > 2 * tol
        same = want.argmax(-1) == got.argmax(-1)
        top1 = float(same[decided].mean()) if decided.any() else 1.0
        base.values["top1_agreement"] = top1
        base.ok = base.ok and top1 == 1.0
        return base

    def card_usage(self, meta: Mapping[str, Any], onnx_file: str) -> list[str]:
        lines = super().card_usage(meta, onnx_file)
        if meta.get("labels"):
            lines += [f"labels = {list(meta['labels'])}", "print(labels[int(outputs[0][0].argmax())])"]
        return lines


def _logits(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    if "logits" in outputs:
        return outputs["logits"]
    if len(outputs) != 1:
        raise ValueError(f"a classifier gives one output ('logits'), got {sorted(outputs)}")
    return next(iter(outputs.values()))
