"""torchvision's detectors (Faster R-CNN, RetinaNet, Mask R-CNN on zoo backbones): the whole model in one graph.

**The split.** The dynamo exporter fails on these models (data-dependent batched NMS and box filtering,
shared/FACTS.md); the TorchScript exporter (``dynamo=False``) traces the whole model, and torchvision's
detection code has ONNX paths for exactly this: the transform's resize computed from the traced image
shape, ``NonMaxSuppression``, ``RoiAlign``, ``TopK`` for the per-level candidates, and Mask R-CNN's
``paste_masks_in_image`` as a ``Loop``. So the graph holds everything torchvision's eval-mode ``forward``
does: normalise and resize to ``min_size``/``max_size``, backbone, FPN, anchors, RPN (or the RetinaNet head)
with its decoding and NMS, RoIAlign, the box (and mask) heads, per-class NMS, and the boxes (and masks)
mapped back to input pixels. The runtime keeps only the task's score threshold and sorting.

The other split, raw head outputs in the graph and anchors + NMS in numpy, was measured and not taken:
on ``fasterrcnn_resnet8_small`` at 128 px the in-graph post-processing is a small part of onnxruntime's
time, which is already well under eager's, and a numpy NMS that must reproduce torchvision's tie order
exactly would be a second implementation to keep in step. Numbers: benchmarks/onnx_latency.py.

**Its limits.** One image per call (the traced ``forward`` takes a list of images; a batch axis would be
unrolled at trace time), any height and width. The batch axis of the graph is 1; the runtime loops over
images, as torchvision's own ONNX tests do. The file records ``zoo.export_split`` (see `EXPORT_SPLIT`).
Validation is task-level (`export.detection_runtime.detection_agreement`): variable-length outputs whose
order among near-tied scores is arbitrary cannot be compared element by element.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from export.adapters import Adapter, GraphSpec, register_adapter, resize_example
from export.detection_runtime import detection_agreement

# Recorded in the file's metadata (``zoo.export_split``): what is in the graph and what the runtime does.
EXPORT_SPLIT = {
    "name": "whole-model",
    "graph": "normalise + resize, backbone, FPN, anchors, RPN/RetinaNet decoding + NMS, RoIAlign, box (and "
    "mask) heads, per-class NMS, boxes (and pasted masks) in input pixels",
    "runtime": "score threshold and sort (the task's postprocess)",
    "batch": "one image per call, any height and width",
    "exporter": "torchscript (dynamo fails at data-dependent NMS)",
}


def _one_image_module(model: Any, output_names: Sequence[str]) -> Any:
    """A module taking a (1, C, H, W) batch and returning the model's dict for it as a tuple of tensors."""
    from torch import nn

    class OneImageDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: Any) -> tuple[Any, ...]:
            (found,) = self.model([image[0]])
            return tuple(found[name] for name in output_names)

    # eval(): the TorchScript exporter restores the wrapper's mode, and a fresh module is in train mode.
    return OneImageDetector().eval()


def detection_graph(
    model: Any,
    *,
    input_size: Sequence[int],
    dynamic: bool,
    output_names: Sequence[str],
    note: str = "",
) -> GraphSpec:
    """The one-image, dynamic-size graph of a torchvision-style detector (see the module docstring)."""
    import torch

    _, height, width = input_size
    # A second size, non-square and off the traced one, which the model resizes by a different factor.
    variants = (
        ((height, width), (max(32, height * 3 // 4), width * 5 // 4)) if dynamic else ((height, width),)
    )

    def make_inputs(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(size[0] * 7919 + size[1])
        (images,) = model.example_inputs(batch_size=1, generator=generator)
        first = images[0] if isinstance(images, (list, tuple)) else images[:1][0]
        return (resize_example(first[None], size),)

    axes: dict[str, dict[int, str]] = {}
    if dynamic:
        axes["image"] = {2: "height", 3: "width"}
        for name in output_names:
            axes[name] = {0: "detections", **({2: "height", 3: "width"} if name == "masks" else {})}
    return GraphSpec(
        name="model",
        module=_one_image_module(model, output_names),
        input_names=("image",),
        output_names=tuple(output_names),
        make_inputs=make_inputs,
        variants=variants,
        dynamic_axes=axes,
        exporter="torchscript",
        note=note
        or "torchvision detector, whole eval-mode forward, one image (1, C, H, W) in [0, 1] per call",
        extra={"export_split": EXPORT_SPLIT},
        elementwise=False,
        agreement=detection_agreement,
    )


def is_torchvision_detector(model: Any) -> bool:
    """Whether `model` is one of torchvision's detectors (``GeneralizedRCNN``, ``RetinaNet``, ``FCOS``, SSD)."""
    import sys

    # Only modules already imported: a model of these classes cannot exist before them.
    found = {
        "torchvision.models.detection.generalized_rcnn": "GeneralizedRCNN",
        "torchvision.models.detection.retinanet": "RetinaNet",
        "torchvision.models.detection.fcos": "FCOS",
        "torchvision.models.detection.ssd": "SSD",
    }
    kinds = tuple(getattr(sys.modules[module], cls) for module, cls in found.items() if module in sys.modules)
    return bool(kinds) and isinstance(model, kinds)


@register_adapter
class DetectionAdapter(Adapter):
    """Families whose models are torchvision detectors (``zoo/models/detection.py``)."""

    families = ("detection",)

    def matches(self, model: Any) -> bool:
        return is_torchvision_detector(model)

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        outputs = getattr(model, "output_names", None) or ("boxes", "scores", "labels")
        return [detection_graph(model, input_size=input_size, dynamic=dynamic, output_names=outputs)]
