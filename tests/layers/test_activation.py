"""Activation factory: every name builds the function it names; an unknown name lists the known ones."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from zoo.errors import ConfigError
from zoo.layers import ACTIVATIONS, Abs, create_act

# The function each name must compute. Kept in step with ACTIVATIONS by the first test, so a new
# activation cannot be added without saying here what it computes.
REFERENCE = {
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "abs": torch.abs,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


def test_every_activation_has_a_reference():
    assert set(ACTIVATIONS) == set(REFERENCE)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_computes_its_function(name):
    x = torch.linspace(-3, 3, 60).reshape(3, 20, 1)
    act = create_act(name)
    out = act(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, REFERENCE[name](x))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_modules_are_fresh(name):
    # Shared instances would tie state (e.g. a future PReLU's slope) across layers.
    assert create_act(name) is not create_act(name)


def test_abs_keeps_magnitude_and_passes_the_sign_to_the_gradient():
    x = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    Abs()(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-1.0, 1.0, 1.0]))


def test_unknown_activation_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown activation 'swish2'") as info:
        create_act("swish2")
    for name in ACTIVATIONS:
        assert name in str(info.value)
