"""Likelihood helpers: the stated binarization, units, and the two baselines against direct counts."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.metrics.likelihood import BernoulliMixture, IndependentBernoulli, binarize, bits_per_dim


def test_threshold_binarization_agrees_on_uint8_and_unit_pixels():
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    as_uint8, as_float = binarize(pixels), binarize(pixels.float() / 255)
    assert torch.equal(as_uint8, as_float)
    assert as_uint8.flatten()[127] == 0 and as_uint8.flatten()[128] == 1  # >= 128 of 255 is on
    assert set(as_uint8.unique().tolist()) == {0.0, 1.0}


def test_stochastic_binarization_is_fixed_by_its_seed():
    x = torch.rand(8, 1, 28, 28)
    a, b, c = (
        binarize(x, "stochastic", seed=3),
        binarize(x, "stochastic", seed=3),
        binarize(x, "stochastic", 4),
    )
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.mean()) - float(x.mean())) < 0.02  # Bernoulli(x) keeps the mean intensity
    with pytest.raises(ValueError, match="threshold"):
        binarize(x, "otsu")  # type: ignore[arg-type]


def test_bits_per_dim():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_independent_bernoulli_nll_is_the_direct_count():
    g = torch.Generator().manual_seed(0)
    train = (torch.rand(50, 1, 4, 4, generator=g) < 0.3).float()
    test = (torch.rand(7, 1, 4, 4, generator=g) < 0.3).float()
    model = IndependentBernoulli(alpha=1.0).fit(train)
    ones = train.flatten(1).sum(0)
    p = (ones + 1) / (50 + 2)
    expected = []
    for x in test.flatten(1):
        expected.append(-sum(math.log(p[d] if x[d] else 1 - p[d]) for d in range(16)))
    torch.testing.assert_close(model.nll(test), torch.tensor(expected), rtol=1e-5, atol=1e-4)


def test_a_one_component_mixture_is_the_independent_model_and_more_components_fit_clusters():
    g = torch.Generator().manual_seed(1)
    # Two clusters: top half lit, or bottom half lit, with 5% pixel noise.
    top = torch.zeros(1, 8, 8)
    top[:, :4] = 1
    proto = torch.stack([top, 1 - top])
    pick = torch.randint(0, 2, (200,), generator=g)
    data = proto[pick]
    data = torch.where(torch.rand(data.shape, generator=g) < 0.05, 1 - data, data)
    one = BernoulliMixture(1).fit(data)
    torch.testing.assert_close(
        one.nll(data), IndependentBernoulli().fit(data).nll(data), rtol=1e-5, atol=1e-3
    )
    two = BernoulliMixture(2, seed=0).fit(data)
    assert float(two.nll(data).mean()) < float(one.nll(data).mean()) - 20  # the clusters explain 32 pixels
    with pytest.raises(ValueError):
        BernoulliMixture(0)
