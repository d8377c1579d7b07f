"""Self-supervised losses and the momentum update, against lightly's on the same inputs (test-only anchor)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from recipes.engine import Context
from zoo.layers import ProjectionHead
from zoo.losses import info_nce_loss, negative_cosine_similarity, nt_xent_loss

lightly_loss = pytest.importorskip("lightly.loss")


def _pair(n: int = 16, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g)
    return z1, z1 + 0.5 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_lightly(temperature: float) -> None:
    z1, z2 = _pair()
    ours = nt_xent_loss(z1, z2, temperature)
    theirs = lightly_loss.NTXentLoss(temperature=temperature)(z1, z2)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_nt_xent_rewards_agreeing_views() -> None:
    z1, z2 = _pair()
    assert nt_xent_loss(z1, z1.clone()) < nt_xent_loss(z1, z2) < nt_xent_loss(z1, torch.randn_like(z1))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        nt_xent_loss(z1, z2[:3])


def test_info_nce_matches_lightly_memory_bank() -> None:
    """MoCo: lightly's NTXentLoss with a memory bank scores the query against its key and the bank only."""
    q, k = _pair(8, 16)
    negatives = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    loss = lightly_loss.NTXentLoss(temperature=0.2, memory_bank_size=(32, 16))
    loss.memory_bank.bank = nn.functional.normalize(negatives, dim=1)
    theirs = loss(q, k)  # q does not require grad: the bank is not updated
    torch.testing.assert_close(info_nce_loss(q, k, negatives, 0.2), theirs, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="negatives"):
        info_nce_loss(q, k, negatives[:, :3])


def test_negative_cosine_matches_lightly_and_stops_target_gradient() -> None:
    p, z = _pair()
    p.requires_grad_(True)
    z.requires_grad_(True)
    ours = negative_cosine_similarity(p, z)
    theirs = lightly_loss.NegativeCosineSimilarity()(p, z.detach())
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    assert p.grad is not None and z.grad is None


def test_ema_update_matches_lightly_update_momentum() -> None:
    from lightly.models.utils import update_momentum

    online = ProjectionHead(8, 16, 4)
    online(torch.randn(5, 8))  # moves the batch-norm running statistics away from their init
    ours, theirs = copy.deepcopy(online), copy.deepcopy(online)
    for p in online.parameters():
        p.data.add_(1.0)
    Context.ema_update(ours, online, 0.9)
    update_momentum(online, theirs, 0.9)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b)


def test_projection_head_shape() -> None:
    head = ProjectionHead(32, 64, 16, layers=3, out_norm=True)
    assert head(torch.randn(4, 32)).shape == (4, 16)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head) == 3
    with pytest.raises(ValueError, match="at least one layer"):
        ProjectionHead(4, 4, 4, layers=0)


def test_patch_info_nce_is_a_cross_entropy_per_position_and_not_satisfied_by_zeros() -> None:
    from zoo.losses import patch_info_nce_loss

    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(6, 5, 4, generator=g), torch.randn(6, 5, 4, generator=g)
    by_position = [
        nn.functional.cross_entropy(pred[:, p] @ target[:, p].T, torch.arange(6)) for p in range(5)
    ]
    torch.testing.assert_close(patch_info_nce_loss(pred, target), torch.stack(by_position).mean())
    zeros = torch.zeros(6, 5, 4)
    torch.testing.assert_close(patch_info_nce_loss(zeros, zeros), torch.tensor(6.0).log())
    distinct = 10 * torch.eye(8)[:6, None, :].expand(6, 5, 8)  # every image's target its own direction
    assert patch_info_nce_loss(distinct, distinct) < 1e-3  # predicted exactly: near zero
    with pytest.raises(ValueError, match=r"\(N, P, D\)"):
        patch_info_nce_loss(pred, target[:, :3])
