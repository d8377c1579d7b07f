"""Published weights: the exported file answers like PyTorch, at the task's level, on test items.

Parametrised over `zoo.list_models(pretrained=True)`, with no branch on the task's name: each weight's task
preprocesses the split and compares the two runtimes (`Task.agreement`: same top-1 classes, same pixels to
a grey level, same boxes, embeddings' cosine...), through `export.verify.verify_onnx`; generators draw
samples torch-free and score the card's FID, or, where the sampler replays its noise (DDIM), give PyTorch's
samples from the same noise. The full check (every test item, the card's metrics measured
from onnxruntime's outputs) is ``zoo export NAME --verify``.
"""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from export.verify import REPLAY_SAMPLES, SAMPLE_COUNT, verify_onnx, weight_test_split
from zoo.evaluation import evaluation_split
from zoo.registry import IN_TREE_HUB

# The runtimes must agree on the first SUBSET test items of each weight (and a one-image-per-call detector's
# COCO AP gap stay within tolerance on its first SCENES scenes). The card's numbers are re-measured in full in
# PyTorch by tests/recipes/test_published.py, and from onnxruntime's outputs by `zoo export NAME --verify`
# (the whole split through both runtimes: minutes for the scene and self-supervised weights).
SUBSET = 250
SCENES = 50
WEIGHTS = [n for n in zoo.list_models(pretrained=True) if (IN_TREE_HUB / n / "config.json").is_file()]


@pytest.mark.parametrize("name", WEIGHTS)
def test_exported_weight_agrees_with_pytorch_on_the_test_split(name, tmp_path):
    task = zoo.get_weights(name).task_object
    limit = SUBSET if task.batched_images else SCENES
    check = verify_onnx(name, tmp_path / f"{name}.onnx", limit=limit, agreement_only=True)
    if task.measured_on_samples and "max_abs_samples" in check.agreement.values:
        # A sampler that replays its noise (DDIM): the same noise in both runtimes, sample for sample.
        assert check.items == REPLAY_SAMPLES and check.agreement.ok, check.summary()
        return
    if task.measured_on_samples and check.verify.rows:
        # Samplers are checked on SAMPLE_COUNT samples drawn torch-free against the card's FID.
        assert check.items == SAMPLE_COUNT, check.summary()
        assert check.agreement.ok and check.verify.ok, check.summary()
        return
    items = len(evaluation_split(zoo.get_weights(name), limit)[0])  # a video's frames are items
    assert check.items == items, (
        f"{name}: its first {limit} test items hold {items}, {check.items} were checked"
    )
    assert check.agreement.ok, check.summary()
    if not task.batched_images:
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
