"""Semantic segmentation: mean intersection over union, per-class IoU and pixel accuracy; the IoU of instance
masks propagated through videos."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
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

    With ``background_index``, where the mIoU goes is split in two, from the same counts: ``fg_iou``,
    ``fg_precision`` and ``fg_recall`` of the foreground (every other class, one against background), and
    ``identity``, the share of the pixels both target and prediction call foreground whose class is right
    (which object, once found).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
        validate_args: bool = True,
        background_index: int | None = None,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        names = [str(c) for c in range(num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class_names for {num_classes} classes")
        if background_index is not None and not 0 <= background_index < num_classes:
            raise ValueError(f"background_index {background_index} is not one of the {num_classes} classes")
        self.num_classes, self.ignore_index, self.background_index = (
            num_classes,
            ignore_index,
            background_index,
        )
        # torchmetrics checks that every target is a class or ignore_index (a torch.unique per batch);
        # validate_args=False skips that for speed once the data are known to be clean.
        self.validate_args = validate_args
        self.higher_is_better = {"miou": True, "pixel_acc": True, **{f"iou_{n}": True for n in names}}
        if background_index is not None:
            self.higher_is_better.update(dict.fromkeys(FOREGROUND_KEYS, True))
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
        names = list(self.higher_is_better)[2 : 2 + self.num_classes]
        out = {
            "miou": sum(present) / len(present) if present else math.nan,
            "pixel_acc": float(tp.sum()) / total if total else math.nan,
            **dict(zip(names, iou)),
        }
        if self.background_index is not None:
            out.update(foreground_split(confmat, self.background_index))
        return out


FOREGROUND_KEYS = ("fg_iou", "fg_precision", "fg_recall", "identity")


def foreground_split(confmat: torch.Tensor, background: int) -> dict[str, float]:
    """`MeanIoU`'s foreground/identity split of a confusion matrix ``confmat[target, prediction]``."""
    fg = torch.ones(len(confmat), dtype=torch.bool)
    fg[background] = False
    both = float(confmat[fg][:, fg].sum())  # pixels target and prediction both call foreground
    predicted, actual = float(confmat[:, fg].sum()), float(confmat[fg].sum())

    def ratio(a: float, b: float) -> float:
        return a / b if b else math.nan

    return {
        "fg_iou": ratio(both, predicted + actual - both),
        "fg_precision": ratio(both, predicted),
        "fg_recall": ratio(both, actual),
        "identity": ratio(float(confmat.diag()[fg].sum()), both),
    }


class PropagatedMaskIoU(Metric):
    """Video object segmentation from the first frame's masks: mean IoU of propagated instance masks.

    ``update(embeddings, instances)`` takes frames in video order, ``frames_per_video`` per video (a batch may
    end mid-video: frames wait until their video is whole): per-frame embeddings ``(B, D, h, w)`` and ground
    truth instance maps ``(B, H, W)`` (0 = background, k = instance k). Each whole video's masks are
    ``propagate(embeddings (T, D, h, w), first_instances (H, W)) -> (T, H, W)``; every frame after the first
    scores each instance visible in its ground truth, ``|pred == k and gt == k| / |pred == k or gt == k|`` (an
    instance hidden in a frame is not scored there). Outputs: ``propagation_iou`` (mean over all scored
    instance-frames), ``propagation_iou_last`` (the last frame only); `per_frame` gives the curve.
    """

    def __init__(self, frames_per_video: int, propagate: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        super().__init__()
        if frames_per_video < 2:
            raise ValueError(f"a video needs at least 2 frames to propagate over, got {frames_per_video}")
        self.frames_per_video, self.propagate = frames_per_video, propagate
        self.higher_is_better = {"propagation_iou": True, "propagation_iou_last": True}
        self.add_state("iou_sum", torch.zeros(frames_per_video, dtype=torch.float64))
        self.add_state("count", torch.zeros(frames_per_video, dtype=torch.int64))
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    def reset(self) -> None:
        super().reset()
        self._pending = []

    def update(self, outputs: Any, targets: Any) -> None:
        embeddings, instances = _numpy(outputs), _numpy(targets)
        if len(embeddings) != len(instances) or embeddings.ndim != 4 or instances.ndim != 3:
            raise ValueError(
                f"PropagatedMaskIoU takes embeddings (B, D, h, w) and instance maps (B, H, W), got "
                f"{embeddings.shape} and {instances.shape}"
            )
        self._pending += list(zip(embeddings, instances))
        while len(self._pending) >= self.frames_per_video:
            video, self._pending = (
                self._pending[: self.frames_per_video],
                self._pending[self.frames_per_video :],
            )
            truth = np.stack([gt for _, gt in video])
            self.add_video(self.propagate(np.stack([e for e, _ in video]), truth[0]), truth)

    def add_video(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Score one video's instance maps (T, H, W) against its ground truth (frames after the first)."""
        for t in range(1, len(truth)):
            ious = visible_instance_ious(predicted[t], truth[t])
            self.iou_sum[t] += sum(ious.values())
            self.count[t] += len(ious)

    def per_frame(self) -> list[float]:
        """Mean IoU at each frame index (nan where nothing was scored; frame 0 is given)."""
        state = self.synced_state()
        return [
            float(s / n) if n else math.nan
            for s, n in zip(state["iou_sum"].tolist(), state["count"].tolist())
        ]

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        if self._pending:
            raise ValueError(
                f"{len(self._pending)} frames of an unfinished video are left: feed whole videos of "
                f"{self.frames_per_video} frames"
            )
        total, count = float(state["iou_sum"].sum()), int(state["count"].sum())
        last = int(state["count"][-1])
        return {
            "propagation_iou": total / count if count else math.nan,
            "propagation_iou_last": float(state["iou_sum"][-1]) / last if last else math.nan,
        }


def visible_instance_ious(predicted: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """IoU of each instance id k > 0 visible in one frame's ground truth (H, W) with the predicted map's k."""
    ious = {}
    for k in np.unique(truth):
        if k == 0:
            continue
        p, g = predicted == k, truth == k
        ious[int(k)] = float((p & g).sum() / (p | g).sum())
    return ious


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
