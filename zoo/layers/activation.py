"""Activation factory: one name -> one module, so configs stay JSON and families share the vocabulary."""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import ConfigError


class Abs(nn.Module):
    """|x|: an activation that keeps the magnitude and drops the sign (a classic ablation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "abs": Abs,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}

ACTIVATIONS = tuple(_ACTIVATIONS)


def create_act(name: str) -> nn.Module:
    """A fresh activation module by name (one of `ACTIVATIONS`)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation '{name}'; expected one of {', '.join(ACTIVATIONS)}") from None
