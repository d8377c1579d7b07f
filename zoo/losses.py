"""Losses that several objectives share, each a plain function of tensors (no module state), computed in
float32 whatever the autocast dtype of the forward pass: a bf16 log-softmax or log loses the small
differences the gradient is made of.

- `cross_entropy`: classification, with label smoothing and soft (MixUp / CutMix) targets;
- `reconstruction_loss`: autoencoders (and the reconstruction term of a VAE's ELBO): per-pixel mean
  squared error or Bernoulli negative log-likelihood (binary cross-entropy) of images in [0, 1].
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["LABEL_SMOOTHING", "cross_entropy", "reconstruction_loss"]

LABEL_SMOOTHING = "https://arxiv.org/abs/1512.00567"  # Szegedy et al., Rethinking the Inception Architecture

Reduction = Literal["mean", "sum", "none"]


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Cross-entropy of `logits` ``(N, C, ...)`` against class indices ``(N, ...)`` or class probabilities
    ``(N, C, ...)`` (the soft targets of MixUp / CutMix), with label smoothing, in float32.

    Label smoothing: "We propose a mechanism for encouraging the model to be less confident" (Szegedy et
    al., 2016, section 7, `LABEL_SMOOTHING`): the one-hot target of class y becomes
    ``q'(k) = (1 - ε) δ(k, y) + ε / K``, a mixture with the uniform distribution over the K classes. With
    ``ε = label_smoothing`` the loss is ``(1 - ε) * NLL + ε * mean_k(-log p_k)``; at initialisation
    (uniform predictions) it is ln(K) with or without smoothing.
    """
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing, reduction=reduction)


def reconstruction_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    kind: Literal["mse", "bce"] = "mse",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """How far a reconstruction `recon` is from `target`, both images in [0, 1], in float32.

    ``mse``: the mean squared error per pixel. ``bce``: the negative log-likelihood of `target` under
    independent Bernoulli pixels of probability `recon` (binary cross-entropy, the reconstruction term of
    the ELBO for binarised images); `recon` is clamped to [1e-6, 1 - 1e-6] first, so a saturated sigmoid
    gives a large but finite loss and gradient instead of log(0).
    """
    recon, target = recon.float(), target.float()
    if kind == "bce":
        return F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction=reduction)
    if kind == "mse":
        return F.mse_loss(recon, target, reduction=reduction)
    raise ValueError(f"reconstruction loss {kind!r}: expected 'mse' or 'bce'")
