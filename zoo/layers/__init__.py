"""Blocks shared by the model families. One concept per file."""

from zoo.layers.activation import ACTIVATIONS, Abs, create_act
from zoo.layers.aspp import ASPP, ASPPPooling
from zoo.layers.atrous import dilate_, dilate_to_output_stride
from zoo.layers.attention import ResidualAttentionBlock, SpatialSelfAttention
from zoo.layers.conv import ConvNormAct, DepthwiseSeparableConv
from zoo.layers.heads import ProjectionHead
from zoo.layers.norm import NORMS, create_norm1d, create_norm2d
from zoo.layers.timestep import TimestepEmbedding, sinusoidal_embedding
from zoo.layers.upsample import UPSAMPLE_MODES, Upsample2x, icnr_

__all__ = [
    "ACTIVATIONS",
    "ASPP",
    "NORMS",
    "UPSAMPLE_MODES",
    "ASPPPooling",
    "Abs",
    "ConvNormAct",
    "DepthwiseSeparableConv",
    "ProjectionHead",
    "ResidualAttentionBlock",
    "SpatialSelfAttention",
    "TimestepEmbedding",
    "Upsample2x",
    "create_act",
    "create_norm1d",
    "create_norm2d",
    "dilate_",
    "dilate_to_output_stride",
    "icnr_",
    "sinusoidal_embedding",
]
