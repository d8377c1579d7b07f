"""The adversarial losses of zoo.losses: non-saturating GAN values and the WGAN-GP gradient penalty."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.losses import discriminator_loss, generator_loss, gradient_penalty


def test_non_saturating_values():
    zero = torch.zeros(5)
    # D(x) = 0 everywhere: sigmoid 1/2, each BCE term is ln 2.
    assert float(discriminator_loss(zero, zero)) == pytest.approx(2 * math.log(2))
    assert float(generator_loss(zero)) == pytest.approx(math.log(2))
    # A confident, correct discriminator: loss near 0; the generator's loss is then large (it does not
    # saturate: -log D(G(z)) grows as D(G(z)) -> 0).
    assert float(discriminator_loss(torch.full((3,), 20.0), torch.full((3,), -20.0))) < 1e-6
    assert float(generator_loss(torch.full((3,), -20.0))) == pytest.approx(20.0, rel=1e-6)
    fake = torch.full((3,), -20.0, requires_grad=True)
    generator_loss(fake).backward()
    assert fake.grad.abs().min() > 0.3  # d/dx softplus(-x) = -sigmoid(-x) ~ -1: a strong gradient


def test_wasserstein_values():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert float(discriminator_loss(real, fake, "wgan-gp")) == pytest.approx(-0.5 - 2.0)
    assert float(generator_loss(fake, "wgan-gp")) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="hinge"):
        generator_loss(fake, "hinge")


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 1, 28, 28, generator=g)
    w = w / w.norm()  # a 1-Lipschitz linear critic: its gradient is w everywhere, of norm 1

    def critic(x: torch.Tensor) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(6, 1, 28, 28, generator=g), torch.rand(6, 1, 28, 28, generator=g)
    assert float(gradient_penalty(critic, real, fake, g)) == pytest.approx(0.0, abs=1e-10)
    # Twice as steep: gradient norm 2 everywhere, penalty (2 - 1)^2 = 1.
    assert float(gradient_penalty(lambda x: 2 * critic(x), real, fake, g)) == pytest.approx(1.0, rel=1e-5)


def test_gradient_penalty_trains_the_critic():
    critic = torch.nn.Linear(4, 1)
    real, fake = torch.randn(8, 4), torch.randn(8, 4)
    gp = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake)
    gp.backward()  # differentiable through the input gradient (create_graph)
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0
