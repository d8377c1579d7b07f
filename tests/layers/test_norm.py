"""Norm factory: each name normalises over the axes it promises; unknown names list the known ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import NORMS, create_norm1d, create_norm2d

# The axes over which a freshly built norm (train mode, unit affine) gives zero mean and unit variance,
# for an (N, C, H, W) input.
AXES_2D = {
    "batch": (0, 2, 3),  # per channel, over the batch and space
    "layer": (1, 2, 3),  # per sample, over channels and space
    "instance": (2, 3),  # per sample and channel
}


def _shifted(*shape: int) -> torch.Tensor:
    torch.manual_seed(0)
    # Off-centre and scaled so that an identity "norm" fails the checks below.
    return torch.randn(*shape) * 3 + 5


@pytest.mark.parametrize("name", list(AXES_2D))
def test_norm2d_normalises_over_its_axes(name):
    x = _shifted(4, 8, 5, 5)
    out = create_norm2d(name, 8).train()(x)
    axes = AXES_2D[name]
    torch.testing.assert_close(out.mean(axes), torch.zeros_like(out.mean(axes)), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        out.var(axes, unbiased=False), torch.ones_like(out.mean(axes)), atol=1e-3, rtol=0
    )


def test_group_norm_uses_the_largest_divisor_up_to_32():
    assert create_norm2d("group", 48).num_groups == 24
    assert create_norm2d("group", 64).num_groups == 32
    assert create_norm2d("group", 7).num_groups == 7
    x = _shifted(2, 64, 3, 3)
    out = create_norm2d("group", 64)(x).reshape(2, 32, -1)  # 32 groups of 2 channels
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 32), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["none", None])
def test_no_norm_is_the_identity(name):
    x = _shifted(2, 8, 3, 3)
    assert isinstance(create_norm2d(name, 8), nn.Identity)
    assert isinstance(create_norm1d(name, 8), nn.Identity)
    assert torch.equal(create_norm2d(name, 8)(x), x)


@pytest.mark.parametrize("name", NORMS)
def test_every_norm2d_keeps_the_shape(name):
    x = _shifted(2, 12, 4, 4)
    assert create_norm2d(name, 12)(x).shape == x.shape


@pytest.mark.parametrize(("name", "axis"), [("batch", 0), ("layer", 1)])
def test_norm1d_normalises_vectors(name, axis):
    x = _shifted(6, 10)
    out = create_norm1d(name, 10).train()(x)
    torch.testing.assert_close(out.mean(axis), torch.zeros_like(out.mean(axis)), atol=1e-5, rtol=0)


def test_group_norm1d_on_vectors():
    x = _shifted(3, 12)
    norm = create_norm1d("group", 12)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 12
    assert norm(x).shape == x.shape


def test_instance_norm_is_refused_for_vectors():
    # A feature vector has no spatial axes to normalise over per instance.
    with pytest.raises(ConfigError, match="batch, layer, group, none"):
        create_norm1d("instance", 8)


def test_unknown_norm_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown norm 'weight'") as info:
        create_norm2d("weight", 8)
    for name in NORMS:
        assert name in str(info.value)
