"""Small helpers shared by the test modules."""

from __future__ import annotations

import torch

from zoo.models.base import flatten_outputs

__all__ = ["build", "flatten_outputs"]


def build(name: str, **kwargs) -> torch.nn.Module:
    import zoo

    torch.manual_seed(0)
    return zoo.create_model(name, **kwargs)
