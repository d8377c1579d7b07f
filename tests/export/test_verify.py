"""`export.verify.same_predictions`: the runtimes' probes must predict the same label for every test sample."""

from __future__ import annotations

import torch

from export.verify import same_predictions
from zoo.metrics import KNNAccuracy, LinearProbeAccuracy
from zoo.tasks import Agreement


def _fitted(features: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor) -> dict:
    metrics = {"knn": KNNAccuracy(k=3), "linear_probe": LinearProbeAccuracy(), "other": object()}
    for name in ("knn", "linear_probe"):
        metrics[name].fit(features, labels)
        metrics[name].update(queries, torch.zeros(len(queries), dtype=torch.long))
    return metrics


def test_identical_predictions_agree_and_a_flip_is_named():
    g = torch.Generator().manual_seed(0)
    features, labels = torch.randn(60, 8, generator=g), torch.arange(60) % 3
    queries = torch.randn(20, 8, generator=g)
    expected = _fitted(features, labels, queries)
    agreement = Agreement(True)
    same_predictions(expected, _fitted(features, labels, queries * (1 + 1e-7)), agreement)
    assert agreement.ok and agreement.values == {"same_knn": 1.0, "same_linear_probe": 1.0}
    # Another runtime whose train features put every bank label one class over predicts otherwise.
    flipped = Agreement(True)
    same_predictions(expected, _fitted(features, (labels + 1) % 3, queries), flipped)
    assert not flipped.ok and flipped.values["same_knn"] < 1.0
    assert "knn predictions differ between the runtimes" in flipped.note
