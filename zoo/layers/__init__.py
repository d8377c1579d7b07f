"""Blocks shared by the model families. One concept per file."""

from zoo.layers.activation import ACTIVATIONS, Abs, create_act
from zoo.layers.conv import ConvNormAct, DepthwiseSeparableConv
from zoo.layers.norm import NORMS, create_norm1d, create_norm2d

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "Abs",
    "ConvNormAct",
    "DepthwiseSeparableConv",
    "create_act",
    "create_norm1d",
    "create_norm2d",
]
