"""zoo.losses against their definitions written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoo.losses import cross_entropy, reconstruction_loss


def test_cross_entropy_label_smoothing_is_the_mixture_with_the_uniform_target():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 5, generator=g), torch.tensor([0, 1, 2, 3, 4, 0])
    eps = 0.1
    logp = logits.log_softmax(1)
    nll = -logp[torch.arange(6), y]
    expected = ((1 - eps) * nll + eps * (-logp).mean(1)).mean()
    torch.testing.assert_close(cross_entropy(logits, y, label_smoothing=eps), expected)
    # The same as the smoothed target written out: q(k) = (1 - eps) [k == y] + eps / K.
    q = (1 - eps) * F.one_hot(y, 5).float() + eps / 5
    torch.testing.assert_close(cross_entropy(logits, q), expected)
    torch.testing.assert_close(cross_entropy(logits, y, reduction="sum"), nll.sum())


def test_cross_entropy_is_ln_k_at_uniform_predictions_and_computed_in_float32():
    logits = torch.zeros(3, 10, dtype=torch.bfloat16)
    for eps in (0.0, 0.2):
        loss = cross_entropy(logits, torch.tensor([1, 2, 3]), label_smoothing=eps)
        assert loss.dtype == torch.float32 and loss.item() == pytest.approx(math.log(10), rel=1e-6)


def test_reconstruction_losses():
    g = torch.Generator().manual_seed(0)
    recon, target = torch.rand(2, 1, 4, 4, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    torch.testing.assert_close(reconstruction_loss(recon, target, "mse"), (recon - target).square().mean())
    bce = -(target * recon.log() + (1 - target) * (1 - recon).log())
    torch.testing.assert_close(reconstruction_loss(recon, target, "bce"), bce.mean())
    torch.testing.assert_close(reconstruction_loss(recon, target, "bce", reduction="sum"), bce.sum())
    # A saturated output (exactly 0 where the target is 1) gives a finite loss and gradient.
    saturated = torch.zeros(1, 4, requires_grad=True)
    loss = reconstruction_loss(saturated, torch.ones(1, 4), "bce")
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(saturated.grad).all()
    with pytest.raises(ValueError, match="'l1'"):
        reconstruction_loss(recon, target, "l1")
