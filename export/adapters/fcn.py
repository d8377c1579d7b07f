"""FCN and DeepLab are tensor-in, tensor-out: this adapter only sets the parity bound over deep ResNets.

Their ImageNet variants run a bottleneck ResNet (atrous, so at output stride 8 or 16 the deep stages see
4-16x more positions) and then a head several convs deep (ASPP, the v3+ decoder). fp32 summation-order
drift grows with depth as for the classifiers (`export.adapters.resnet`), and the head adds to it: measured
here with BatchNorm-calibrated random init at 64x64 and 128x192, onnxruntime differed from eager by up to
3.6e-4 over ResNet-50 (16 bottleneck blocks) and 1.6e-3 over ResNet-101 (33 blocks), with scaled parity
(atol + rtol x |logits|) still within 1e-4 relative. The bound is ``ATOL_PER_BOTTLENECK`` per block
(1.6e-3 for ResNet-50, 3.3e-3 for -101), twice the classifiers'. The small variants (basic blocks) keep
the default 1e-4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from export.adapters import Adapter, GraphSpec, image_graph, register_adapter
from export.adapters.resnet import bottleneck_tolerance

# Parity bound per bottleneck block of the backbone (see the module docstring).
ATOL_PER_BOTTLENECK = 1e-4


@register_adapter
class DenseResNetAdapter(Adapter):
    families = ("fcn", "deeplab")

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        atol, note = bottleneck_tolerance(
            model,
            ATOL_PER_BOTTLENECK,
            "a segmentation head over them: eager fp32 and onnxruntime drift apart ~1e-4 to 2e-3 at this "
            "depth (export/adapters/fcn.py)",
        )
        return [
            image_graph(
                model,
                input_size=input_size,
                dynamic=dynamic,
                output_names=("logits",),
                atol=atol,
                tolerance_note=note,
            )
        ]
