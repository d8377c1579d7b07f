"""Atrous (dilated) backbones: trade the stride of the deepest stages for dilation, keeping the weights.

DeepLab v3 (Chen et al., 2017, https://arxiv.org/abs/1706.05587): "we remove the striding in the last few
blocks and apply atrous convolution with rates determined by the desired output stride"; the kernels keep
their receptive field on the input while the feature map stays larger. Parameters are unchanged, so a
classifier's pretrained weights still load, and the result matches torchvision's
``replace_stride_with_dilation``: in a stage made atrous, the formerly strided conv takes the previous
stages' dilation, every later conv the new one (``previous_dilation`` / ``dilation`` in torchvision).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from zoo.errors import ConfigError

__all__ = ["dilate_", "dilate_to_output_stride"]


def _set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    kernel = conv.kernel_size
    conv.dilation = (dilation, dilation)
    # "Same" padding for a dilated kernel: dilation * (k - 1) / 2 on each side.
    conv.padding = tuple(dilation * (k - 1) // 2 for k in kernel)


def dilate_(module: nn.Module, first: int, rest: int) -> bool:
    """Make one stage atrous in place: strided convs get stride 1, and convs with a spatial kernel get
    dilation ``first`` up to and including the strided one, ``rest`` after it (in registration order,
    which is forward order in the zoo's and torchvision's blocks). 1x1 convs (shortcut projections) only
    lose their stride. Returns whether a strided conv was found.
    """
    found = False
    for m in module.modules():
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and m.stride not in (1, (1, 1)):
            raise ConfigError(
                f"cannot make {type(module).__name__} atrous: it downsamples with {type(m).__name__}, "
                "not a strided convolution"
            )
        if not isinstance(m, nn.Conv2d):
            continue
        strided = m.stride != (1, 1)
        if strided:
            m.stride = (1, 1)
        if m.kernel_size != (1, 1):
            _set_dilation(m, first if (strided or not found) else rest)
        found = found or strided
    return found


def dilate_to_output_stride(
    model: nn.Module, levels: Sequence[Mapping[str, Any]], output_stride: int
) -> list[dict[str, Any]]:
    """Make the stages of ``model`` atrous so that no level is coarser than ``output_stride``.

    ``levels`` are the model's feature levels (``feature_info``: ``module`` and ``reduction``, shallow to
    deep); each level's module must hold the stride that separates it from the previous level. Returns the
    levels with their new reductions. ``output_stride`` must be one of the levels' reductions.
    """
    reductions = [int(level["reduction"]) for level in levels]
    if output_stride not in reductions:
        raise ConfigError(
            f"output_stride={output_stride}: the backbone's levels have reductions {reductions}; pick one of "
            "them (the deepest keeps the backbone as it is)"
        )
    dilation, previous, updated = 1, 1, []
    for level, reduction in zip(levels, reductions):
        stride = reduction // previous
        previous = reduction
        module = model.get_submodule(level["module"])
        if reduction > output_stride and stride > 1:
            if not dilate_(module, dilation, dilation * stride):
                raise ConfigError(
                    f"output_stride={output_stride}: level '{level['module']}' (reduction {reduction}) has no "
                    "strided convolution to replace with dilation"
                )
            dilation *= stride
        elif dilation > 1:
            dilate_(module, dilation, dilation)
        updated.append({**level, "reduction": min(reduction, output_stride)})
    return updated
