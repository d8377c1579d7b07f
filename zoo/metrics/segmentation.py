"""Semantic segmentation: mean intersection over union, per-class IoU and pixel accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from zoo.metrics.base import Metric


class MeanIoU(Metric):
    """Intersection over union from one confusion matrix accumulated over every pixel of the split.

    With TP, FP and FN of class c counted over the whole split (pixels whose target is `ignore_index` are
    left out)::

        iou_c     = TP_c / (TP_c + FP_c + FN_c)
        miou      = mean of iou_c over the classes with TP_c + FP_c + FN_c > 0
        pixel_acc = sum_c TP_c / number of counted pixels

    A class that is neither in the targets nor in the predictions of the split has no IoU (``nan``) and is
    left out of the mean, as in the PASCAL VOC and Cityscapes evaluations (`Everingham et al. 2010
    <https://doi.org/10.1007/s11263-009-0275-4>`_). IoU is computed over the split's summed counts, not
    averaged over images, so a small image counts as little as its pixels.

    ``update(outputs, targets)``: `outputs` are logits ``(N, C, H, W)`` (arg-max taken) or predicted labels
    ``(N, H, W)``; `targets` are labels ``(N, H, W)``. Outputs: ``miou``, ``pixel_acc`` and ``iou_<name>``
    per class (`class_names`, default the class indices).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
        validate_args: bool = True,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        names = [str(c) for c in range(num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class_names for {num_classes} classes")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        # torchmetrics checks that every target is a class or ignore_index (a torch.unique per batch);
        # validate_args=False skips that for speed once the data are known to be clean.
        self.validate_args = validate_args
        self.higher_is_better = {"miou": True, "pixel_acc": True, **{f"iou_{n}": True for n in names}}
        # confmat[t, p]: pixels of target class t predicted as p. int64: no rounding at any split size.
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.int64))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        from torchmetrics.functional.classification import multiclass_confusion_matrix

        preds, targets = outputs.detach(), targets.detach().to(outputs.device)
        if preds.is_floating_point() and preds.ndim != targets.ndim + 1:
            raise ValueError(
                f"MeanIoU takes logits (N, C, H, W) or labels (N, H, W) and targets (N, H, W), got "
                f"{tuple(preds.shape)} and {tuple(targets.shape)}"
            )
        batch = multiclass_confusion_matrix(
            preds,
            targets.long(),
            self.num_classes,
            ignore_index=self.ignore_index,
            validate_args=self.validate_args,
        )
        self.confmat += batch.to(self.confmat.device)

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        confmat = state["confmat"].double().cpu()
        tp = confmat.diag()
        union = confmat.sum(0) + confmat.sum(1) - tp  # TP + FP + FN
        iou = [float(t / u) if u > 0 else math.nan for t, u in zip(tp.tolist(), union.tolist())]
        present = [v for v in iou if not math.isnan(v)]
        total = float(confmat.sum())
        names = list(self.higher_is_better)[2:]
        return {
            "miou": sum(present) / len(present) if present else math.nan,
            "pixel_acc": float(tp.sum()) / total if total else math.nan,
            **dict(zip(names, iou)),
        }
