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
def _meta_facts(name: str) -> tuple[int, tuple[str, ...]]:
    import zoo

    with torch.device("meta"):
        model = zoo.create_model(name)
    return sum(p.numel() for p in model.parameters()), tuple(getattr(model, "excluded_suites", ()))


def num_params(name: str) -> int:
    """Parameters of a registered architecture, counted on the meta device (no memory, no time)."""
    return _meta_facts(name)[0]


def suite_models(suite: str = "common") -> list[str]:
    """Registered architectures the generic suites run on (gated on size and attributes, never on names).

    A model class leaves a generic suite by naming it in its ``excluded_suites`` attribute, with a comment
    saying why and where it is tested instead: ``"common"`` (tests/models/test_common.py) or ``"onnx"``
    (tests/export/test_onnx.py). The detectors (zoo.models.detection) name both until their ONNX export
    lands; that suite then asks for ``suite_models("onnx")`` and the detectors drop ``"onnx"``.
    """
    import zoo

    return [
        n for n in zoo.list_models() if num_params(n) <= MAX_SUITE_PARAMS and suite not in _meta_facts(n)[1]
    ]
