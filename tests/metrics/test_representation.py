"""`KNNAccuracy` and `LinearProbeAccuracy` against scikit-learn's KNeighborsClassifier and LogisticRegression."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from zoo.metrics import KNNAccuracy, LinearProbeAccuracy


def _blobs(seed: int, n: int, dim: int = 16, classes: int = 5, spread: float = 1.0):
    """Gaussian clusters around fixed class centres (the same centres for every seed), overlapping a little."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 1.5
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    return centres[labels] + spread * torch.randn(n, dim, generator=g), labels


def _update_in_batches(metric, features, labels, batch: int = 37):
    metric.reset()
    for lo in range(0, len(features), batch):
        metric.update(features[lo : lo + batch], labels[lo : lo + batch])
    return metric.compute()


@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_majority_vote_matches_sklearn_cosine_neighbours(k):
    train_x, train_y = _blobs(0, 400, spread=1.6)
    test_x, test_y = _blobs(1, 300, spread=1.6)
    knn = KNNAccuracy(k=k, temperature=None).fit(train_x, train_y)
    ref = KNeighborsClassifier(n_neighbors=k, weights="uniform", metric="cosine", algorithm="brute")
    ref.fit(train_x.double().numpy(), train_y.numpy())
    expected = ref.predict(test_x.double().numpy())
    got = knn.predict(test_x).numpy()
    # float32 similarities against sklearn's float64 distances: a neighbour at the k-th place may swap.
    assert (got == expected).mean() >= 0.99
    acc = _update_in_batches(knn, test_x, test_y)["knn_acc"]
    assert acc == pytest.approx((expected == test_y.numpy()).mean(), abs=0.01)
    assert 0.5 < acc < 0.99  # overlapping classes: the comparison is not between two perfect scores


def test_knn_temperature_weights_close_neighbours():
    # A query at angle 0: one class-0 neighbour very close, two class-1 neighbours further away.
    bank = torch.tensor([[1.0, 0.05], [1.0, 0.6], [1.0, -0.6], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    query = torch.tensor([[1.0, 0.0]])
    assert KNNAccuracy(k=3, temperature=None).fit(bank, labels).predict(query).tolist() == [1]
    assert KNNAccuracy(k=3, temperature=0.05).fit(bank, labels).predict(query).tolist() == [0]
    # L2-normalised: scaling a feature changes nothing.
    assert KNNAccuracy(k=3, temperature=None).fit(bank * 7, labels).predict(query * 0.1).tolist() == [1]


def test_knn_reset_keeps_the_bank_and_needs_a_fit():
    x, y = _blobs(2, 100)
    knn = KNNAccuracy(k=5)
    with pytest.raises(RuntimeError, match="fit"):
        knn.update(x, y)
    knn.fit(x, y)
    first = _update_in_batches(knn, x, y)
    assert first == _update_in_batches(knn, x, y)  # reset cleared the counts, not the bank
    assert first["knn_acc"] > 0.9 and knn.higher_is_better == {"knn_acc": True}
    knn.reset()
    assert math.isnan(knn.compute()["knn_acc"])


def test_linear_probe_matches_sklearn_logistic_regression():
    train_x, train_y = _blobs(3, 500, spread=1.8)
    test_x, test_y = _blobs(4, 400, spread=1.8)
    probe = LinearProbeAccuracy(C=0.5).fit(train_x, train_y)
    got = _update_in_batches(probe, test_x, test_y)["linear_acc"]
    scaler = StandardScaler().fit(train_x.double().numpy())
    ref = LogisticRegression(C=0.5, max_iter=2000, tol=1e-10)
    ref.fit(scaler.transform(train_x.double().numpy()), train_y.numpy())
    expected = ref.predict(scaler.transform(test_x.double().numpy()))
    # The same objective, so the same optimum: predictions agree, not just accuracies.
    assert (probe.predict(test_x).numpy() == expected).mean() >= 0.99
    assert got == pytest.approx((expected == test_y.numpy()).mean(), abs=0.01)
    assert 0.6 < got < 0.99
    assert np.allclose(probe.weight.numpy(), ref.coef_.T, atol=2e-3)


def test_linear_probe_separable_data_and_validation():
    train_x, train_y = _blobs(5, 300, spread=0.3)
    test_x, test_y = _blobs(6, 200, spread=0.3)
    with torch.no_grad():  # fit trains even inside an evaluation's no_grad
        probe = LinearProbeAccuracy().fit(train_x, train_y)
    assert _update_in_batches(probe, test_x, test_y) == {"linear_acc": 1.0}
    with pytest.raises(ValueError, match="positive"):
        LinearProbeAccuracy(C=0)
    with pytest.raises(ValueError, match=r"features \(N, D\)"):
        probe.fit(train_x, train_y[:3])
