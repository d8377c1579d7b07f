"""Normalisation factory for feature maps and feature vectors: batch, layer, instance, group, or none."""

from __future__ import annotations

from torch import nn

from zoo.errors import ConfigError

NORMS = ("batch", "layer", "instance", "group", "none")


def _groups(channels: int, preferred: int = 32) -> int:
    # GroupNorm needs groups | channels; take the largest divisor not above the paper's default of 32.
    for groups in range(min(preferred, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def create_norm2d(name: str | None, channels: int) -> nn.Module:
    """A norm over (N, C, H, W) feature maps.

    "layer" normalises each sample over (C, H, W), as in the Group Norm paper's comparison figure; it is
    GroupNorm with one group, which also exports to ONNX as a single op.
    """
    name = name or "none"
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "layer":
        return nn.GroupNorm(1, channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "group":
        return nn.GroupNorm(_groups(channels), channels)
    if name == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm '{name}'; expected one of {', '.join(NORMS)}")


def create_norm1d(name: str | None, features: int) -> nn.Module:
    """A norm over (N, F) feature vectors (MLP hidden layers)."""
    name = name or "none"
    if name == "batch":
        return nn.BatchNorm1d(features)
    if name == "layer":
        return nn.LayerNorm(features)
    if name == "group":
        return nn.GroupNorm(_groups(features), features)
    if name == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm '{name}' for vectors; expected one of batch, layer, group, none")
