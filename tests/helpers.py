"""Small helpers shared by the test modules."""

from __future__ import annotations

import torch


def flatten_outputs(output) -> list[torch.Tensor]:
    """Every tensor in a model output (a tensor, a tuple/list, or a dict), in a stable order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for key in sorted(output) for t in flatten_outputs(output[key])]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in flatten_outputs(item)]
    raise TypeError(f"unexpected model output type {type(output).__name__}")


def build(name: str, **kwargs) -> torch.nn.Module:
    import zoo

    torch.manual_seed(0)
    return zoo.create_model(name, **kwargs)
