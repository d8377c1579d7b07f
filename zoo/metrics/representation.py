"""Self-supervised representations, judged by how well frozen features classify: a weighted k-nearest-
neighbour vote and a linear probe, each fitted on a train split's features and scored on a test split's.

Both follow one protocol::

    metric.fit(train_features, train_labels)     # the whole train split; gathered over DDP ranks
    metric.reset()
    for images, labels in test_loader:
        metric.update(encoder(images), labels)
    metric.compute()                             # {"knn_acc": ...} / {"linear_acc": ...}

`fit` replaces what was fitted before; `reset` clears the test counts and keeps the fit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zoo.metrics.base import Metric, all_gather_cat, float64_device


class _FittedAccuracy(Metric):
    """Accuracy of a classifier fitted with `fit` on train features, counted over `update` batches."""

    name: str

    def __init__(self) -> None:
        super().__init__()
        self.higher_is_better = {self.name: True}
        self.add_state("correct", torch.zeros((), dtype=torch.int64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))
        # Every prediction, in update order: two runtimes' encoders are compared sample by sample with them.
        self.add_state("predicted", torch.zeros(0, dtype=torch.int64), reduce="cat")
        self.fitted = False

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> _FittedAccuracy:
        """Fit on `features` ``(N, D)`` and integer `labels` ``(N,)``; under DDP, on every rank's share."""
        if features.ndim != 2 or labels.shape != features.shape[:1]:
            raise ValueError(
                f"fit takes features (N, D) and labels (N,), got {tuple(features.shape)}, {tuple(labels.shape)}"
            )
        features = all_gather_cat(features.detach().to(self.device).float())
        labels = all_gather_cat(labels.detach().to(self.device).long())
        self._fit(features, labels)
        self.fitted = True
        return self

    def _fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        raise NotImplementedError

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted labels ``(N,)`` of `features` ``(N, D)``."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.fit(train_features, train_labels) must come first")
        return self._predict(features.detach().to(self.device).float())

    def _predict(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        pred = self.predict(outputs)
        self.correct += (pred == targets.to(pred.device)).sum().to(self.correct.device)
        self.count += len(targets)
        self.predicted.append(pred.to(self.device))

    def predictions(self) -> torch.Tensor:
        """The predicted label of every sample since `reset` ``(N,)``, in update order (over every rank)."""
        return self.synced_state()["predicted"]

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        count = int(state["count"])
        return {self.name: int(state["correct"]) / count if count else math.nan}


class KNNAccuracy(_FittedAccuracy):
    """Accuracy of a weighted k-nearest-neighbour vote on L2-normalised features, as in instance
    discrimination (`Wu et al. 2018 <https://arxiv.org/abs/1805.01978>`_) and DINO (`Caron et al. 2021
    <https://arxiv.org/abs/2104.14294>`_): "each neighbour votes for its class with weight exp(s / T)".

    For a query q, its k train features with the highest cosine similarity s_i vote for their labels with
    weight ``exp(s_i / temperature)`` (all 1 when `temperature` is None: a plain majority); the prediction
    is the class with the largest total (the smallest class index on a tie). DINO's defaults are k = 20,
    T = 0.07. The bank (the train features) is kept whole on the metric's device.
    """

    name = "knn_acc"

    def __init__(self, k: int = 20, temperature: float | None = 0.07, chunk_size: int = 1024):
        if k < 1 or (temperature is not None and temperature <= 0):
            raise ValueError(f"k must be positive and temperature positive or None, got {k}, {temperature}")
        super().__init__()
        self.k, self.temperature = k, temperature
        self.chunk_size = chunk_size  # queries per similarity matrix: bounds memory at chunk x bank size

    def _fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.bank = F.normalize(features, dim=1)
        self.bank_labels = labels
        self.num_classes = int(labels.max()) + 1

    def _predict(self, features: torch.Tensor) -> torch.Tensor:
        preds = []
        k = min(self.k, len(self.bank))
        for chunk in F.normalize(features, dim=1).split(self.chunk_size):
            sim, idx = (chunk @ self.bank.T).topk(k, dim=1)
            weight = torch.ones_like(sim) if self.temperature is None else (sim / self.temperature).exp()
            votes = torch.zeros(len(chunk), self.num_classes, device=chunk.device, dtype=weight.dtype)
            preds.append(votes.scatter_add_(1, self.bank_labels[idx], weight).argmax(1))
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=features.device)

    def to(self, device: torch.device | str) -> KNNAccuracy:
        super().to(device)
        if self.fitted:
            self.bank, self.bank_labels = self.bank.to(self.device), self.bank_labels.to(self.device)
        return self


class LinearProbeAccuracy(_FittedAccuracy):
    """Accuracy of a multinomial logistic regression trained on frozen features (the linear evaluation
    protocol of `Zhang et al. 2016 <https://arxiv.org/abs/1603.08511>`_ and later self-supervised work).

    The features are standardised with the train split's mean and standard deviation, then ``W, b``
    minimise, in float64 with L-BFGS (`max_iter` iterations, strong-Wolfe line search)::

        mean cross-entropy(x W + b, y) + ||W||^2 / (2 C N)

    which is scikit-learn's ``LogisticRegression(C=C)`` objective divided by C N (N train samples), so `C`
    means the same there (larger C: weaker regularisation). The fit is deterministic: every DDP rank fits
    the same probe on the gathered features.
    """

    name = "linear_acc"

    def __init__(self, C: float = 1.0, max_iter: int = 300):
        if C <= 0 or max_iter < 1:
            raise ValueError(f"C and max_iter must be positive, got {C}, {max_iter}")
        super().__init__()
        self.C, self.max_iter = C, max_iter

    def _fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        x = features.to(float64_device(self.device), torch.float64)
        labels = labels.to(x.device)
        self.mean = x.mean(0)
        # The population std (as scikit-learn's StandardScaler); a constant feature carries nothing: keep it finite.
        self.std = x.std(0, correction=0).clamp_min(1e-8)
        x = (x - self.mean) / self.std
        classes = int(labels.max()) + 1
        weight = torch.zeros(x.shape[1], classes, dtype=x.dtype, device=x.device, requires_grad=True)
        bias = torch.zeros(classes, dtype=x.dtype, device=x.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=self.max_iter, line_search_fn="strong_wolfe")
        penalty = 1 / (2 * self.C * len(x))

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(x @ weight + bias, labels) + penalty * weight.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():  # fit may be called under an evaluation's no_grad
            optimizer.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()

    def _predict(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.to(self.mean.device, torch.float64) - self.mean) / self.std
        return (x @ self.weight + self.bias).argmax(1).to(features.device)

    def to(self, device: torch.device | str) -> LinearProbeAccuracy:
        super().to(device)
        if self.fitted:
            for name in ("mean", "std", "weight", "bias"):
                setattr(self, name, getattr(self, name).to(float64_device(self.device)))
        return self
