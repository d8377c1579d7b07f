"""`MeanIoU` against segmentation_models_pytorch's `smp.metrics` and against counts made by hand."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.metrics import MeanIoU

smp_metrics = pytest.importorskip("segmentation_models_pytorch.metrics")


def _scenes(seed: int, n: int = 6, classes: int = 5, size: int = 24, ignore: int | None = None):
    """Noisy predictions of random label maps: the predicted label is right about 70% of the time."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, (n, size, size), generator=g)
    logits = torch.randn(n, classes, size, size, generator=g)
    logits.scatter_add_(1, target[:, None], torch.full((n, 1, size, size), 1.5))
    if ignore is not None:
        target[torch.rand(target.shape, generator=g) < 0.1] = ignore
    return logits, target


@pytest.mark.parametrize("ignore", [None, 255])
def test_matches_smp_metrics_over_the_split(ignore):
    m = MeanIoU(5, ignore_index=ignore)
    stats = []
    for seed in range(3):  # three batches: the IoU is over the split's counts, not a mean of batches
        logits, target = _scenes(seed, ignore=ignore)
        m.update(logits, target)
        tp, fp, fn, tn = smp_metrics.get_stats(logits.argmax(1), target, "multiclass", ignore, num_classes=5)
        stats.append((tp, fp, fn, tn))
    tp, fp, fn, tn = (torch.cat(s).sum(0) for s in zip(*stats))
    per_class = smp_metrics.iou_score(tp, fp, fn, tn, reduction="none")
    miou = smp_metrics.iou_score(tp[None], fp[None], fn[None], tn[None], reduction="macro")
    pixel_acc = smp_metrics.recall(tp[None], fp[None], fn[None], tn[None], reduction="micro")

    got = m.compute()
    assert got["miou"] == pytest.approx(float(miou), abs=1e-6)
    assert got["pixel_acc"] == pytest.approx(float(pixel_acc), abs=1e-6)
    assert [got[f"iou_{c}"] for c in range(5)] == pytest.approx(per_class.tolist(), abs=1e-6)
    assert 0.3 < got["miou"] < 0.9  # neither trivial nor perfect: the comparison means something


def test_hand_counts_absent_class_and_labels_as_outputs():
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 9]]])  # 9 is ignored
    preds = torch.tensor([[[0, 1, 1, 1], [0, 0, 0, 2]]])  # labels, not logits
    m = MeanIoU(4, ignore_index=9, class_names=["bg", "one", "two", "three"])
    m.update(preds, target)
    got = m.compute()
    # class 0: TP 3, FP 1 (a 1 predicted 0), FN 1 -> 3/5; class 1: TP 2, FP 1, FN 1 -> 2/4
    assert got["iou_bg"] == pytest.approx(3 / 5) and got["iou_one"] == pytest.approx(2 / 4)
    # The ignored pixel's prediction (2) is not counted: class 2 and 3 never occur -> nan, left out.
    assert math.isnan(got["iou_two"]) and math.isnan(got["iou_three"])
    assert got["miou"] == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert got["pixel_acc"] == pytest.approx(5 / 7)
    assert set(m.higher_is_better) == {"miou", "pixel_acc", "iou_bg", "iou_one", "iou_two", "iou_three"}


def test_perfect_predictions_reset_and_validation():
    _, target = _scenes(0)
    m = MeanIoU(5)
    m.update(torch.nn.functional.one_hot(target, 5).permute(0, 3, 1, 2).float(), target)
    assert m.compute()["miou"] == 1.0 and m.compute()["pixel_acc"] == 1.0
    m.reset()
    assert math.isnan(m.compute()["miou"])
    with pytest.raises(ValueError, match="logits"):
        m.update(torch.randn(2, 8, 8), target[:2, :8, :8])
    with pytest.raises(ValueError, match="class_names"):
        MeanIoU(3, class_names=["a"])
    with pytest.raises(RuntimeError):  # torchmetrics: a target outside the classes is refused
        m.update(target, target + 1)


def test_foreground_split_counts_objects_found_and_which_they_are():
    # Background 0; objects 1 and 2. Pixel by pixel: target / prediction.
    target = torch.tensor([[[0, 0, 0, 1, 1, 1, 2, 2, 9]]])
    preds = torch.tensor([[[0, 1, 0, 1, 2, 0, 2, 1, 1]]])  # the ignored pixel's prediction is not counted
    m = MeanIoU(3, ignore_index=9, background_index=0)
    m.update(preds, target)
    got = m.compute()
    # Predicted foreground: pixels 1, 3, 4, 6, 7 (5); true foreground: 3..7 (5); both: 3, 4, 6, 7 (4).
    assert got["fg_precision"] == pytest.approx(4 / 5) and got["fg_recall"] == pytest.approx(4 / 5)
    assert got["fg_iou"] == pytest.approx(4 / 6)
    # Of the 4 pixels both call foreground, 3 and 6 have the right object.
    assert got["identity"] == pytest.approx(2 / 4)
    plain = MeanIoU(3, ignore_index=9)
    plain.update(preds, target)
    assert {k: v for k, v in got.items() if k in plain.compute()} == plain.compute()
    assert set(got) - set(plain.compute()) == {"fg_iou", "fg_precision", "fg_recall", "identity"}
    with pytest.raises(ValueError, match="background_index 3 is not one of the 3 classes"):
        MeanIoU(3, background_index=3)
