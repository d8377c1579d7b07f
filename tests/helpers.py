"""Small helpers shared by the test modules."""

from __future__ import annotations

import functools

import torch

from zoo.models.base import flatten_outputs

__all__ = ["MAX_SUITE_PARAMS", "build", "flatten_outputs", "num_params", "suite_models"]


def build(name: str, **kwargs) -> torch.nn.Module:
    import zoo

    torch.manual_seed(0)
    return zoo.create_model(name, **kwargs)


# The generic suites (forward, backward, save/load, export) run on architectures up to this size. The
# heavier ones (ResNet-101/152 and the torchvision-shaped FCN/DeepLab over ResNet-50/101) are their lighter
# siblings' code with more blocks: the suites cover that code through the siblings, and each family's own
# tests check the heavy builders where they differ (torchvision state-dict compatibility). Exporting them
# with default arguments was measured by hand (see the README's export section); it takes minutes each.
MAX_SUITE_PARAMS = 30_000_000


@functools.cache
def num_params(name: str) -> int:
    """Parameters of a registered architecture, counted on the meta device (no memory, no time)."""
    import zoo

    with torch.device("meta"):
        model = zoo.create_model(name)
    return sum(p.numel() for p in model.parameters())


def suite_models() -> list[str]:
    """Registered architectures the generic suites run on (gated on size, never on names)."""
    import zoo

    return [n for n in zoo.list_models() if num_params(n) <= MAX_SUITE_PARAMS]
