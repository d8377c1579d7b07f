"""Projection and prediction heads of self-supervised learning: small MLPs on top of an encoder's
pooled features, used only by the training objective (the encoder's features are what gets evaluated
and shipped).

SimCLR (`Chen et al. 2020 <https://arxiv.org/abs/2002.05709>`_): "a nonlinear projection head improves
the representation quality of the layer before it" -- the contrastive loss is applied to ``g(h)``, not to
``h``. BYOL (`Grill et al. 2020 <https://arxiv.org/abs/2006.07733>`_) adds a predictor ``q`` on the
online branch only; its absence on the target branch is what keeps the representation from collapsing.
"""

from __future__ import annotations

from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Sequential):
    """``layers`` linear layers in_dim -> hidden_dim -> ... -> out_dim, each but the last followed by
    batch norm and ReLU (SimCLR, MoCo v2, BYOL's projector and predictor are all this shape).

    ``out_norm=True`` also batch-normalises the output without learnable affine (SimCLR v2's last layer).
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, out_norm: bool = False
    ) -> None:
        if layers < 1:
            raise ValueError(f"a projection head needs at least one layer, got layers={layers}")
        blocks: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers - 1):
            blocks += [
                nn.Linear(dim, hidden_dim, bias=False),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
            ]
            dim = hidden_dim
        blocks.append(nn.Linear(dim, out_dim, bias=not out_norm))
        if out_norm:
            blocks.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*blocks)
        self.in_dim, self.out_dim = in_dim, out_dim
