"""Published weights: the exported file answers like PyTorch, at the task's level, on the whole test split,
and the card's metrics re-measured from onnxruntime's outputs are the card's.

Parametrised over `zoo.list_models(pretrained=True)`, with no branch on the task: each weight's task
preprocesses the split, compares the two runtimes (`Task.agreement`: same top-1 classes, same pixels to
a grey level, same boxes...) and measures its metrics (`Task.metrics`), through `export.verify.verify_onnx`.
"""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from export.verify import SAMPLE_COUNT, verify_onnx, weight_test_split
from zoo.registry import IN_TREE_HUB

SUBSET = 100  # test scenes a one-image-per-call weight (detector) is checked on here
WEIGHTS = [n for n in zoo.list_models(pretrained=True) if (IN_TREE_HUB / n / "config.json").is_file()]


@pytest.mark.parametrize("name", WEIGHTS)
def test_exported_weight_agrees_with_pytorch_and_its_card_on_the_test_split(name, tmp_path):
    task = zoo.get_weights(name).task_object
    # Detectors run one image per call through both runtimes: the first SUBSET scenes here (runtime), the
    # whole split by `zoo export NAME --verify`. Agreement and the runtimes' AP gap hold on any subset; the
    # card (full split) is then only compared within verify's 1/N tolerance, so it is not asserted.
    limit = None if task.batched_images else SUBSET
    check = verify_onnx(name, tmp_path / f"{name}.onnx", limit=limit)
    if task.measured_on_samples:  # generators are checked on samples drawn torch-free
        items = SAMPLE_COUNT
    else:  # the whole recorded split (1000 for MNIST 5k, 33 photo patches)
        items = len(weight_test_split(name)[0])
        items = items if limit is None else min(items, limit)
    assert check.items == items, f"{name}: the recorded split has {items} items, {check.items} were checked"
    assert check.agreement.ok, check.summary()
    assert check.verify.rows, f"{name}: its card records none of the metrics its task measures"
    if limit is None:
        assert check.verify.ok, check.summary()
    else:
        assert check.agreement.values["max_metric_gap"] <= 0.005, check.summary()


def test_the_split_is_preprocessed_by_the_task():
    inputs, labels = weight_test_split("resnet8_small.mnist")
    meta = zoo.get_weights("resnet8_small.mnist")
    assert inputs.shape == (1000, 1, 28, 28) and inputs.dtype == np.float32
    assert np.bincount(labels).tolist() == [100] * 10  # the last 100 of each digit
    # normalised by the weight's mean and std, as `zoo predict` and the runtime do
    assert abs(float(inputs.mean()) - 0.0) < 0.2 and meta.mean is not None
    assert weight_test_split("resnet8_small") is not None  # the default weight
    assert weight_test_split("resnet18") is None  # no published weight
