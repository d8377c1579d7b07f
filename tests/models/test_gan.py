"""The DCGAN generator and discriminator: what the generic suites cannot check (labels, sampling, errors)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import build
from zoo.errors import ConfigError
from zoo.models.gan import Discriminator


@pytest.fixture(scope="module")
def cond():
    return build("dcgan_cond").eval()


@pytest.fixture(scope="module")
def uncond():
    return build("dcgan").eval()


def test_contract_shapes_range_and_inputs(cond, uncond):
    assert cond.input_names == ("latent", "label") and uncond.input_names == ("latent",)
    z, labels = cond.example_inputs(3)
    out = cond(z, labels).detach()
    assert out.shape == (3, 1, 28, 28) and float(out.min()) >= 0 and float(out.max()) <= 1
    for model in (cond, uncond):
        images = model.sample(5, generator=torch.Generator().manual_seed(0))
        assert images.shape == (5, 1, 28, 28) and images.dtype == torch.float32
        assert float(images.min()) >= 0 and float(images.max()) <= 1


def test_sampling_is_seeded(cond):
    a = cond.sample(4, generator=torch.Generator().manual_seed(1), labels=[2])
    b = cond.sample(4, generator=torch.Generator().manual_seed(1), labels=[2])
    assert torch.equal(a, b)


def test_labels_change_the_output(cond):
    z = torch.randn(4, cond.latent_dim, generator=torch.Generator().manual_seed(0))
    a = cond(z, torch.full((4,), 1))
    b = cond(z, torch.full((4,), 7))
    assert (a - b).abs().max() > 1e-4
    # sample(labels=...) cycles the given labels and keeps the noise: same draws, other digits differ.
    s1 = cond.sample(4, generator=torch.Generator().manual_seed(3), labels=[1])
    s7 = cond.sample(4, generator=torch.Generator().manual_seed(3), labels=[7])
    assert (s1 - s7).abs().max() > 1e-4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n=0"),
        ({"n": -2}, "n=-2"),
        ({"n": 2, "labels": [10]}, "label 10"),
        ({"n": 2, "labels": [-1]}, "label -1"),
    ],
)
def test_bad_input_names_allowed_values(cond, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        cond.sample(**kwargs)
    if "labels" in kwargs:
        assert "classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in str(info.value)


def test_unconditional_refuses_labels(uncond, cond):
    with pytest.raises(ConfigError, match="unconditional"):
        uncond.sample(2, labels=[1])
    with pytest.raises(ConfigError, match="unconditional"):
        uncond(torch.randn(2, uncond.latent_dim), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError, match="class-conditional"):
        cond(torch.randn(2, cond.latent_dim))


def test_discriminator_scores_and_norms():
    images = torch.rand(4, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3])
    for norm in ("batch", "layer", "none"):
        d = Discriminator(num_classes=10, norm=norm)
        assert d(images, labels).shape == (4,)
    # The projection term makes the score depend on the label.
    d = Discriminator(num_classes=10).eval()
    torch.nn.init.normal_(d.label_embed.weight, 0, 1)
    assert (d(images, labels) - d(images, labels.flip(0))).abs().max() > 1e-4
    with pytest.raises(ConfigError, match="norm"):
        Discriminator(norm="spectral")
    with pytest.raises(ConfigError, match="labels"):
        d(images)
