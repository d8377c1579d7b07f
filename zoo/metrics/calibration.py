"""Calibration of a classifier's confidences: expected calibration error and temperature scaling.

Guo et al. 2017 (https://arxiv.org/abs/1706.04599): a network's top-1 softmax probability often does not
match its accuracy; dividing the logits by one scalar temperature T, fitted by minimising the negative
log-likelihood on held-out data, fixes most of it without changing any prediction (argmax is unchanged).
Torch-free (numpy + scipy), so the ONNX runtime and the cards share it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PAPER", "expected_calibration_error", "fit_temperature", "nll"]

PAPER = "https://arxiv.org/abs/1706.04599"
BINS = 15  # Guo et al.'s choice: equal-width confidence bins over [0, 1]


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels).astype(np.int64)
    if logits.ndim != 2 or labels.shape != (len(logits),) or len(logits) == 0:
        raise ValueError(f"need (N, C) logits and (N,) labels with N > 0; got {logits.shape}, {labels.shape}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1]}), got {labels.min()}..{labels.max()}")
    return logits, labels


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    logits, labels = _check(logits, labels)
    return float(-_log_softmax(logits / temperature)[np.arange(len(labels)), labels].mean())


def expected_calibration_error(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = BINS
) -> float:
    """ECE: the sample-weighted mean |accuracy - confidence| over equal-width bins of top-1 confidence."""
    logits, labels = _check(logits, labels)
    probs = np.exp(_log_softmax(logits / temperature))
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    # Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence is never 0 for a softmax.
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / len(labels))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) on (logits, labels).

    One scalar, so a bounded 1-D search on log T is exact enough and needs no gradient code.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = _check(logits, labels)
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))
