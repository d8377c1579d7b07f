"""`ZooModel`: what every registered model offers the zoo's generic machinery.

Tests, export, analysis and adaptation (``num_classes=``, ``in_chans=``) use only this interface, so a new
family gets them for free by subclassing it and setting the class attributes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ZooModel(nn.Module):
    """Base class of the zoo's models.

    Subclasses set ``input_size`` (per-sample shape of the main input) in ``__init__`` and name, as
    dotted paths, their first convolution (``first_conv``, adapted when ``in_chans`` changes) and their
    classifier (``classifier``, re-initialised when ``num_classes`` changes). ``None`` means "has none".
    """

    first_conv: str | None = None
    classifier: str | None = None
    input_size: tuple[int, ...] = (3, 32, 32)
    # Whether height and width of the input may differ from `input_size` (fully convolutional models).
    dynamic_size: bool = True

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Inputs that `forward` accepts, for tests, export and summaries."""
        device = next(self.parameters()).device
        return (torch.randn(batch_size, *self.input_size, generator=generator).to(device),)

    def get_submodule_or_none(self, path: str | None) -> nn.Module | None:
        return None if path is None else self.get_submodule(path)


def flatten_outputs(output: Any) -> list[torch.Tensor]:
    """Every tensor of a model output (a tensor, a tuple/list, or a dict by sorted key), in a stable order.

    Tests, export and analysis compare outputs of any family through this one order.
    """
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for key in sorted(output) for t in flatten_outputs(output[key])]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in flatten_outputs(item)]
    raise TypeError(
        f"model output of type {type(output).__name__} is not a tensor, tuple/list or dict of tensors"
    )
