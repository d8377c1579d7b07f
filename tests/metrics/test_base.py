"""`Metric`, `Mean` and `Accuracy`: the same floats as the engine's (sum, count) evaluation, bit for bit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoo.metrics import Accuracy, Mean, Metric


def _batches(seed: int, sizes=(7, 64, 33, 1), classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    for n in sizes:
        # Logits rounded to halves: many ties, where argmax and topk tie-breaking matter.
        logits = (torch.randn(n, classes, generator=g) * 2).round() / 2
        yield logits, torch.randint(0, classes, (n,), generator=g)


def _engine_way(batches) -> dict[str, float]:
    """The engine's evaluation before metric objects: per-batch (sum, count) in Python floats, packed in
    float64, divided once (recipes/classification.py eval_step + Trainer.evaluate)."""
    sums: dict[str, list[float]] = {}
    for logits, y in batches:
        n = len(y)
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(y[:, None]).any(1).sum()
        for key, (total, count) in {
            "acc": ((logits.argmax(1) == y).sum(), n),
            "top5": (top5, n),
            "loss": (F.cross_entropy(logits, y, reduction="sum"), n),
        }.items():
            acc = sums.setdefault(key, [0.0, 0.0])
            acc[0] += float(total)
            acc[1] += float(count)
    keys = sorted(sums)
    packed = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    return {k: float(s / c) for k, (s, c) in zip(keys, packed.tolist())}


@pytest.mark.parametrize("classes", [10, 3])
def test_accuracy_and_mean_equal_the_engine_sums_bit_for_bit(classes):
    expected = _engine_way(_batches(0, classes=classes))
    acc, loss = Accuracy(), Mean("loss")
    for logits, y in _batches(0, classes=classes):
        acc.update(logits, y)
        loss.update(F.cross_entropy(logits, y, reduction="sum"), len(y))
    got = {**acc.compute(), **loss.compute()}
    assert got == expected  # exact float equality, not approx
    assert 0 < got["acc"] < got["top5"] <= 1
    if classes == 3:
        assert got["top5"] == 1.0  # top-5 of 3 classes is capped at top-3


def test_mean_of_per_sample_values_sums_in_their_dtype():
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(n, generator=g) * 40 for n in (5, 17, 128)]
    m = Mean("psnr", higher_is_better=True)
    total = count = 0.0
    for values in batches:
        m.update(values)
        total += float(values.sum())  # what eval_step returned: the float32 sum of the batch
        count += float(len(values))
    assert m.compute() == {"psnr": total / count}
    assert m.higher_is_better == {"psnr": True}
    assert Mean("loss").higher_is_better == {"loss": False}


def test_reset_empty_and_repeated_compute():
    m, a = Mean("loss"), Accuracy(topk=(1,), names=("acc",))
    assert math.isnan(m.compute()["loss"]) and math.isnan(a.compute()["acc"])
    a.update(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
    assert a.compute() == {"acc": 0.5}
    assert a.compute() == {"acc": 0.5}  # compute leaves the state alone
    a.reset()
    a.update(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert a.compute() == {"acc": 1.0}
    m.update(3.0, 2)
    m.update(torch.tensor([1.0, 2.0]))
    assert m.compute() == {"loss": 1.5}
    m.update(torch.tensor([6.0]), 1)  # a one-element sum counts as a sum
    assert m.compute() == {"loss": 12 / 5}


def test_accuracy_topk_names_and_validation():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    y = torch.tensor([2, 2])
    a = Accuracy(topk=(1, 2, 3), names=("top1", "top2", "top3"))
    a.update(logits, y)
    assert a.compute() == {"top1": 0.0, "top2": 0.5, "top3": 1.0}
    assert a.higher_is_better == {"top1": True, "top2": True, "top3": True}
    assert a.names == ["top1", "top2", "top3"]
    with pytest.raises(ValueError, match="differ in length"):
        Accuracy(topk=(1, 5), names=("acc",))
    with pytest.raises(ValueError, match=r"logits \(N, C\)"):
        a.update(logits, y[:1])
    with pytest.raises(ValueError, match="batch's sum"):
        Mean("x").update(torch.ones(3), 3)


def test_to_moves_state_and_reset_keeps_the_device():
    a = Accuracy().to("cpu")
    a.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    assert a.compute()["acc"] == 1.0
    a.to(torch.device("meta"))  # a device other than the CPU that every machine has
    assert a.correct.device.type == "meta" and a.count.device.type == "meta"
    a.reset()
    assert a.correct.device.type == "meta"
    m = Mean("loss").to("meta")
    assert m.total.device.type == "meta" and m.total.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_state_on_cuda():
    a, m = Accuracy().to("cuda"), Mean("loss").to("cuda")
    logits, y = torch.randn(50, 7), torch.randint(0, 7, (50,))
    a.update(logits.cuda(), y.cuda())
    m.update(logits.cuda().sum(1))
    assert a.correct.device.type == "cuda" and m.total.device.type == "cuda"
    ref_a, ref_m = Accuracy(), Mean("loss")
    ref_a.update(logits, y)
    ref_m.update(logits.sum(1))
    assert a.compute() == ref_a.compute()
    assert m.compute()["loss"] == pytest.approx(ref_m.compute()["loss"], abs=1e-5)


def test_cat_state_concatenates_and_resets():
    class Collect(Metric):
        higher_is_better = {"n": True}

        def __init__(self):
            super().__init__()
            self.add_state("values", torch.zeros(0, 2), reduce="cat")

        def update(self, outputs, targets=None):
            self.values.append(outputs)

        def _compute(self, state):
            return {"n": float(state["values"].shape[0])}

    c = Collect()
    assert c.compute() == {"n": 0.0}
    c.update(torch.ones(3, 2))
    c.update(torch.ones(1, 2))
    assert c.compute() == {"n": 4.0}
    c.reset()
    assert c.compute() == {"n": 0.0}
    with pytest.raises(ValueError, match="reduce"):
        c.add_state("bad", torch.zeros(()), reduce="max")


def test_importing_the_metrics_pulls_in_no_metric_library():
    import subprocess
    import sys

    code = (
        "import sys, zoo; assert 'zoo.metrics' not in sys.modules; "
        "from zoo.metrics import Accuracy, Mean, MeanIoU, PSNR, SSIM, MeanAveragePrecision, coco_evaluate, FID, "
        "KNNAccuracy, LinearProbeAccuracy; Accuracy(); Mean('x'); MeanIoU(3); PSNR(1.0); SSIM(1.0); "
        "KNNAccuracy(); LinearProbeAccuracy(); print('\\n'.join(sys.modules))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "zoo.metrics.detection" in loaded  # the check ran
    assert not [m for m in ("torchmetrics", "pycocotools", "sklearn", "scipy", "torchvision") if m in loaded]
