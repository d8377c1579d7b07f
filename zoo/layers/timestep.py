"""Sinusoidal timestep embedding: "Attention Is All You Need"'s position encoding, applied to a diffusion
timestep (Ho et al. 2020, https://arxiv.org/abs/2006.11239, Appendix B)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TimestepEmbedding", "sinusoidal_embedding"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """(N,) timesteps (integer or float) -> (N, dim) features ``[cos(t w_k), sin(t w_k)]`` with frequencies
    ``w_k = max_period ** (-k / (dim / 2))``: every timestep gets a distinct, smooth code."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().reshape(-1, 1) * freqs.reshape(1, -1)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:  # an odd width gets a zero column so the shape is what was asked
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class TimestepEmbedding(nn.Module):
    """Sinusoidal code of width `dim`, then Linear -> SiLU -> Linear to `out_dim` (the DDPM U-Net's MLP)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim))
