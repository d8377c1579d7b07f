"""Detectors on zoo backbones: torchvision's Faster R-CNN, RetinaNet and Mask R-CNN, wrapped, not forked.

- Faster R-CNN: "Towards Real-Time Object Detection with Region Proposal Networks", Ren et al., 2015
  (https://arxiv.org/abs/1506.01497), with a feature pyramid: "Feature Pyramid Networks for Object
  Detection", Lin et al., 2017 (https://arxiv.org/abs/1612.03144).
- RetinaNet: "Focal Loss for Dense Object Detection", Lin et al., 2017 (https://arxiv.org/abs/1708.02002):
  one stage, "the focal loss ... down-weights the loss assigned to well-classified examples".
- Mask R-CNN: He et al., 2017 (https://arxiv.org/abs/1703.06870): Faster R-CNN plus "a branch for
  predicting an object mask in parallel with the existing branch for bounding box recognition".

What the zoo adds is the backbone and the defaults; heads, anchors, RoIAlign, NMS, losses and the resizing
transform are torchvision's own classes (``torchvision.models.detection``), so their behaviour and state
dict layout are torchvision's. A zoo ``features_only`` backbone (`zoo.models.features.FeatureExtractor`,
its levels keyed ``"0"``, ``"1"``, ... as torchvision's ``BackboneWithFPN`` keys them) sits under
torchvision's ``FeaturePyramidNetwork`` as ``backbone.body`` / ``backbone.fpn``. Builders never download:
backbone weights come from the zoo's own hub (``backbone_weights="mnist"`` loads ``resnet8_small.mnist``).

``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` / ``retinanet_resnet50_fpn`` are torchvision's
layouts: their state dicts load with ``strict=True`` into ``torchvision.models.detection.<same
name>(weights=None, weights_backbone=None, num_classes=...)`` and back. The ``*_resnet8_small`` builders
are sized for the 128 px digit scenes (11 classes, background first): ``resnet8_small`` levels at /4, /8
and a max-pooled /16 under a 64-wide FPN, anchors 16-90 px, fewer proposals and sampled RoIs, a 256-wide
box head (most of a default Faster R-CNN's parameters are its 1024-wide ``TwoMLPHead``), Mask R-CNN's mask
head reading a stride-2 map of its own (``mask_level=2``: 2-3 px strokes), and no resizing
(``min_size = max_size = 128``; torchvision's default would scale every scene to 800 px).

Output contract (torchvision's, exactly): eval mode takes a list of (C, H, W) tensors in [0, 1], of any
sizes, and returns one dict per image with ``boxes`` (N, 4) x1 y1 x2 y2 in input pixels, ``labels``
(N,) int64 indices into the weight's labels (0 = background, never predicted), ``scores`` (N,) and, for
Mask R-CNN, ``masks`` (N, 1, H, W) probabilities; no detection is N = 0, not an error. Train mode takes
the images and one target dict per image (``boxes``, ``labels``, and ``masks`` (N, H, W) for Mask R-CNN)
and returns the loss dict. Targets are checked first: a degenerate box (x2 <= x1 or y2 <= y1), one
outside the image, a non-finite value or a label outside 1..num_classes-1 is a ``ValueError`` naming the
image and the box. A grey (1, H, W) image given to an RGB model is repeated to three channels with a
warning (as ``zoo predict`` converts grey files, with a note).

torchvision's transform classes are imported when a detector is built, never at ``import zoo``: the
classes below are made on first use (`detector_class`), a zoo mixin over torchvision's own class.
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.models.base import ZooModel, same_layout_hooks
from zoo.models.fcn import backbone_weights_arg
from zoo.registry import register_model

__all__ = [
    "CHECKPOINT_LIBRARIES",
    "BackboneFPN",
    "DetectorMixin",
    "check_targets",
    "compete_classes",
    "detector_class",
    "fpn_backbone",
    "import_kwargs",
    "paste_masks_exact",
    "state_dict_from",
    "state_dict_to",
]

# torchvision's detection checkpoints (fasterrcnn_resnet50_fpn_coco-258fb6c6.pth, ...) name their modules as
# the ResNet-50 builders here do: `zoo import` reads them through these hooks.
CHECKPOINT_LIBRARIES = ("torchvision",)
state_dict_from, state_dict_to = same_layout_hooks("detection", CHECKPOINT_LIBRARIES)


def import_kwargs(library: str, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The classes a torchvision detection checkpoint was saved with: the box predictor's scores (Faster /
    Mask R-CNN), or RetinaNet's per-anchor class logits over its per-anchor box regressions."""
    if "roi_heads.box_predictor.cls_score.weight" in state_dict:
        return {"num_classes": int(state_dict["roi_heads.box_predictor.cls_score.weight"].shape[0])}
    logits = state_dict.get("head.classification_head.cls_logits.weight")
    boxes = state_dict.get("head.regression_head.bbox_reg.weight")
    if logits is None or boxes is None:
        raise ValueError("neither a Faster / Mask R-CNN box predictor nor a RetinaNet head in the state dict")
    anchors = int(boxes.shape[0]) // 4
    return {"num_classes": int(logits.shape[0]) // anchors}


PAPERS = {
    "fasterrcnn": ("https://arxiv.org/abs/1506.01497", "https://arxiv.org/abs/1612.03144"),
    "retinanet": ("https://arxiv.org/abs/1708.02002", "https://arxiv.org/abs/1612.03144"),
    "maskrcnn": ("https://arxiv.org/abs/1703.06870", "https://arxiv.org/abs/1612.03144"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCENE_CLASSES = 11  # background and the ten digits of the digit scenes (label = digit + 1)
MASK_MAP = "mask"  # the FPN map of ``mask_level=``, read by the mask head alone


class BackboneFPN(nn.Module):
    """A zoo ``features_only`` body under torchvision's ``FeaturePyramidNetwork``: the module names
    (``body``, ``fpn``), the level names (``"0"``.. and ``"pool"`` / ``"p6"``, ``"p7"``) and
    ``out_channels`` are those of torchvision's ``BackboneWithFPN``, so detectors and state dicts cannot
    tell them apart."""

    def __init__(
        self,
        body: nn.Module,
        out_channels: int = 256,
        extra_blocks: nn.Module | None = None,
        first_name: str | None = None,
    ):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        self.body = body
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=list(body.feature_info.channels()),
            out_channels=out_channels,
            extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
        )
        self.out_channels = out_channels
        # A name for the body's first level that keeps it out of the RPN and the box head (`MASK_MAP`).
        self.first_name = first_name

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        levels = self.body(x)
        if isinstance(levels, dict):
            levels = list(levels.values())
        # torchvision names levels by position: the RoI pooler's default featmap_names are "0".."3".
        names = [str(i) for i in range(len(levels))]
        if self.first_name is not None:
            names = [self.first_name, *names[:-1]]
        return self.fpn(OrderedDict(zip(names, levels)))


def fpn_backbone(
    name: str,
    levels: Sequence[int],
    out_channels: int = 256,
    in_chans: int = 3,
    weights: str | None = None,
    extra: str = "pool",
    backbone_args: dict[str, Any] | None = None,
    first_name: str | None = None,
) -> BackboneFPN:
    """Registered model ``name``'s feature levels ``levels`` (positions in its ``feature_info``) under an
    FPN. ``weights`` (a tag such as ``"mnist"``, a weight name or folder: `zoo.factory.create_encoder`)
    loads that weight strictly first, adapting
    its first conv to ``in_chans``; nothing is downloaded. ``extra`` is torchvision's extra block:
    ``"pool"`` (max-pooled P6, Faster/Mask R-CNN) or ``"p6p7"`` (RetinaNet's P6 and P7 from P5).
    ``first_name`` names the first level's map (others ``"0"``, ``"1"``, ...) instead of ``"0"``."""
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    from zoo.factory import create_encoder

    body = create_encoder(
        name,
        weights,
        features_only=True,
        out_indices=tuple(levels),
        in_chans=in_chans,
        **(backbone_args or {}),
    )
    if extra == "pool":
        block: nn.Module = LastLevelMaxPool()
    elif extra == "p6p7":
        block = LastLevelP6P7(out_channels, out_channels)
    else:
        raise ConfigError(f"extra={extra!r}: torchvision's extra FPN blocks here are 'pool' or 'p6p7'")
    return BackboneFPN(body, out_channels, block, first_name)


def check_targets(
    images: Sequence[torch.Tensor], targets: Any, num_classes: int, needs_masks: bool = False
) -> None:
    """Refuse training targets torchvision would silently mis-train on, naming the image and the box:
    missing fields, degenerate boxes (x2 <= x1 or y2 <= y1), boxes outside the image, non-finite values,
    labels outside 1..num_classes-1 (0 is background), masks of the wrong shape."""
    if targets is None:
        raise ValueError(
            "a detector in train mode takes targets: one dict per image with 'boxes' and 'labels'"
        )
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} target dicts: give one per image")
    for i, (image, target) in enumerate(zip(images, targets)):
        missing = [k for k in ("boxes", "labels", *(("masks",) if needs_masks else ())) if k not in target]
        if missing:
            raise ValueError(f"target of image {i} lacks {missing}; it has {sorted(target)}")
        boxes, labels = target["boxes"], target["labels"]
        if not isinstance(boxes, torch.Tensor) or not boxes.is_floating_point():
            raise ValueError(f"image {i}: boxes must be a float tensor (N, 4) x1 y1 x2 y2 in pixels")
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"image {i}: boxes must be (N, 4) x1 y1 x2 y2, got shape {tuple(boxes.shape)}")
        if labels.shape != (len(boxes),):
            raise ValueError(f"image {i}: labels {tuple(labels.shape)} must be ({len(boxes)},), one per box")
        height, width = image.shape[-2:]
        b = boxes.detach().float()
        checks = (
            (~torch.isfinite(b).all(1), "has a non-finite coordinate"),
            ((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]), "is degenerate (needs x2 > x1 and y2 > y1)"),
            (
                (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > width) | (b[:, 3] > height),
                f"lies outside the {width}x{height} image (boxes are in input pixels, 0..W and 0..H)",
            ),
            (
                (labels < 1) | (labels >= num_classes),
                f"has label outside 1..{num_classes - 1} (0 is background)",
            ),
        )
        for bad, why in checks:
            if bool(bad.any()):
                k = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"image {i}, box {k} {[round(v, 2) for v in b[k].tolist()]} (label {int(labels[k])}) {why}"
                )
        if needs_masks and tuple(target["masks"].shape) != (len(boxes), height, width):
            raise ValueError(
                f"image {i}: masks {tuple(target['masks'].shape)} must be ({len(boxes)}, {height}, {width}), "
                "one per box at the image's size"
            )


class DetectorMixin(ZooModel):
    """What the zoo adds to a torchvision detector class (see `detector_class`): the zoo's model
    attributes, input conversion and target checks before torchvision's own ``forward``, and the
    weight fields (``min_size``, ``score_thresh``, ...) read from and written to torchvision's modules."""

    train_needs_targets = True
    dynamic_size = True
    # Left out of the generic suites (tests/helpers.py `suite_models`): outputs are per-image lists whose
    # lengths depend on the data (the common suite checks a batch axis), and the ONNX export of detectors
    # is written separately (export/). Drop "onnx" here when that export lands; tests/models/test_detection.py
    # covers forward, backward and the save/load round trip.
    excluded_suites: tuple[str, ...] = ("common", "onnx")
    # Rescoring after torchvision's per-class NMS (`compete_classes`); 0 leaves its scores as they are.
    class_competition: float = 0.0
    class_competition_iou: float = 0.5

    def _zoo_setup(self, in_chans: int, img_size: int, num_classes: int, first_conv: str | None) -> None:
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        self.first_conv = first_conv
        self.output_names = (
            ("boxes", "scores", "labels", "masks")
            if self._has_masks
            else (
                "boxes",
                "scores",
                "labels",
            )
        )

    @property
    def _has_masks(self) -> bool:
        heads = getattr(self, "roi_heads", None)
        return heads is not None and getattr(heads, "mask_predictor", None) is not None

    # The task's weight fields, stored where torchvision's modules read them.
    @property
    def min_size(self) -> int:
        return int(self.transform.min_size[-1])

    @min_size.setter
    def min_size(self, value: int) -> None:
        self.transform.min_size = (int(value),)

    @property
    def max_size(self) -> int:
        return int(self.transform.max_size)

    @max_size.setter
    def max_size(self, value: int) -> None:
        self.transform.max_size = int(value)

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[list[torch.Tensor], ...]:
        """A list of ``batch_size`` images in [0, 1] at ``input_size`` (the form torchvision's detectors take)."""
        device = next(self.parameters()).device
        images = torch.rand(batch_size, *self.input_size, generator=generator).to(device)
        return (list(images),)

    def example_targets(self, batch_size: int = 2, generator: torch.Generator | None = None) -> list[dict]:
        """Two boxes per image with labels in 1..num_classes-1 (and filled box masks for instance models)."""
        device = next(self.parameters()).device
        _, height, width = self.input_size
        targets = []
        for _ in range(batch_size):
            corner = torch.rand(2, 2, generator=generator) * torch.tensor([width / 2, height / 2])
            side = (torch.rand(2, 2, generator=generator) * 0.4 + 0.1) * torch.tensor([width, height])
            boxes = torch.cat([corner, corner + side], 1).round().clamp(max=torch.tensor([width, height] * 2))
            labels = torch.randint(1, self.num_classes, (2,), generator=generator)
            target = {"boxes": boxes.to(device), "labels": labels.to(device)}
            if self._has_masks:
                masks = torch.zeros(2, height, width, dtype=torch.uint8)
                for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
                    masks[k, y1:y2, x1:x2] = 1
                target["masks"] = masks.to(device)
            targets.append(target)
        return targets

    def _as_images(self, images: Any) -> list[torch.Tensor]:
        if isinstance(images, torch.Tensor):
            if images.dim() == 3:
                images = [images]
            elif images.dim() == 4:  # a batch tensor, as torchvision accepts
                images = list(images)
            else:
                raise ValueError(
                    f"expected (C, H, W) images or a (N, C, H, W) batch, got {tuple(images.shape)}"
                )
        images = list(images)
        if not images:
            raise ValueError("no images: a detector takes a list of one or more (C, H, W) tensors")
        channels = self.input_size[0]
        out = []
        for i, image in enumerate(images):
            if not isinstance(image, torch.Tensor) or image.dim() != 3:
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise ValueError(f"image {i}: expected a (C, H, W) tensor in [0, 1], got {shape}")
            if image.shape[0] != channels:
                if image.shape[0] == 1 and channels == 3:
                    warnings.warn(
                        f"image {i}: grey image converted to RGB (repeated channels) for a 3-channel model",
                        stacklevel=3,
                    )
                    image = image.expand(3, -1, -1)
                elif image.shape[0] == 3 and channels == 1:
                    warnings.warn(f"image {i}: colour image converted to grey (channel mean)", stacklevel=3)
                    image = image.mean(0, keepdim=True)
                else:
                    raise ValueError(
                        f"image {i} has {image.shape[0]} channels; this model takes {channels} (grey images are "
                        "converted for RGB models, other channel counts are refused)"
                    )
            out.append(image)
        return out

    def forward(self, images: Any, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        images = self._as_images(images)
        if self.training:
            check_targets(images, targets, self.num_classes, self._has_masks)
            return super().forward(images, targets)
        found = super().forward(images, targets)
        if self.class_competition and isinstance(found, list):
            found = [compete_classes(f, self.class_competition, self.class_competition_iou) for f in found]
        return found


def compete_classes(found: dict[str, torch.Tensor], power: float, iou: float) -> dict[str, torch.Tensor]:
    """One image's detections rescored so that classes compete for a place: each score is multiplied by
    (score / the highest score among the detections of any class overlapping it at IoU > ``iou``) **
    ``power``, then all are re-sorted, highest first. Nothing is dropped.

    Why: torchvision's NMS is per class, so a one-stage detector whose sigmoid scores hedge between look-alike
    classes (a "3" also scored as an "8") keeps both boxes; the hedge is a false positive of its class that
    outranks that class's true but less confident detections. Ranked below them it costs little, and kept it
    still counts when the hedge was the right class (removing it, class-agnostic NMS, lost more AP than it
    gained). A rescored hedge may fall below the weight's ``score_thresh``: the model still returns it (COCO AP
    counts it), and the task's postprocess (``zoo predict``, the torch-free runtime) drops it as any other.
    Written without data-dependent branches, so the traced ONNX graph holds it for any count."""
    from torchvision.ops import box_iou

    boxes, scores = found["boxes"], found["scores"]
    overlap = box_iou(boxes, boxes) > iou  # every box overlaps itself
    rivals = torch.where(overlap, scores[None, :], torch.zeros_like(overlap, dtype=scores.dtype))
    # A zero column keeps the reduction defined when there are no detections at all (zeros_like, not
    # len(): a traced len() would fix the count in the graph).
    top = torch.cat([rivals, torch.zeros_like(scores)[:, None]], 1).amax(1)
    rescored = scores * (scores / top.clamp_min(1e-12)) ** power
    order = rescored.argsort(descending=True)
    return {**{k: v[order] for k, v in found.items()}, "scores": rescored[order]}


class _RCNNThresholds:
    """Faster / Mask R-CNN keep the detection thresholds on ``roi_heads``: expose them as the task's
    weight fields (RetinaNet has them as its own attributes already)."""

    @property
    def score_thresh(self) -> float:
        return float(self.roi_heads.score_thresh)

    @score_thresh.setter
    def score_thresh(self, value: float) -> None:
        self.roi_heads.score_thresh = float(value)

    @property
    def nms_thresh(self) -> float:
        return float(self.roi_heads.nms_thresh)

    @nms_thresh.setter
    def nms_thresh(self, value: float) -> None:
        self.roi_heads.nms_thresh = float(value)

    @property
    def detections_per_img(self) -> int:
        return int(self.roi_heads.detections_per_img)

    @detections_per_img.setter
    def detections_per_img(self, value: int) -> None:
        self.roi_heads.detections_per_img = int(value)


class _MaskThreshold:
    # torchvision's Mask R-CNN returns probabilities; the threshold is the task's (recorded in the weight).
    mask_thresh: float = 0.5


def paste_masks_exact(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: Sequence[int], scale: Sequence[Any] = (1.0, 1.0)
) -> torch.Tensor:
    """Mask R-CNN's (N, 1, M, M) mask probabilities, each over its box, as (N, 1, H, W) image masks: the exact
    inverse of the projection that made their training targets.

    torchvision trains the mask head on ``roi_align(gt_masks, boxes, M, aligned=False)``: bin j of a box
    samples the image at pixel-index coordinate ``x1 + (j + 0.5) * max(x2 - x1, 1) / M`` (pixel centres at
    integers), half a pixel right of and below the box's own pixels. Its ``paste_masks_in_image`` reads them
    back another way (the box rounded to whole pixels, ``x2`` counted as a pixel inside it): nothing on COCO's
    large objects, but the digit scenes' strokes are 2-3 px wide. Pasting their own ground-truth targets that
    way gives masks of mean IoU 0.66 with the truth; this paste gives 0.995 (each pixel whose centre is
    inside the box reads the bins at its own position, the first row and column of pixels, which no bin
    centre covers, the nearest bin; nothing outside the box).

    Bilinear, computed as two matrix products (rows, then columns) so that memory is that of the output and
    the ONNX graph needs no loop. ``boxes`` are in the output image's pixels (x1 y1 x2 y2, pixel edges);
    ``scale`` is (height, width) of that image over the one the masks were predicted in (the detector's
    resize), for which the half-pixel offset is corrected too.
    """
    m = masks.shape[-1]
    bins = torch.arange(m, dtype=masks.dtype, device=masks.device)

    def weights(low: torch.Tensor, high: torch.Tensor, size: Any, ratio: Any) -> torch.Tensor:
        # Pixel p of the output sits at (p + 0.5) / ratio - 0.5 in the predicted image's pixel indices.
        centres = torch.arange(size, dtype=masks.dtype, device=masks.device) + 0.5
        pixels = centres / ratio - 0.5
        width = torch.clamp((high - low) / ratio, min=1.0) / m
        position = (pixels[None, :] - (low / ratio)[:, None]) / width[:, None] - 0.5  # (N, size) in bins
        inside = (centres[None, :] > low[:, None]) & (centres[None, :] < high[:, None])
        near = torch.relu(1 - (position.clamp(0, m - 1)[:, :, None] - bins).abs())  # (N, size, M)
        return near * inside[:, :, None].to(masks.dtype)

    x1, y1, x2, y2 = boxes.to(masks.dtype).unbind(1)
    rows = weights(y1, y2, image_size[0], scale[0])
    cols = weights(x1, x2, image_size[1], scale[1])
    return (rows @ masks[:, 0] @ cols.transpose(1, 2))[:, None]


@functools.cache
def _rpn_without_mask_map() -> type:
    """torchvision's ``RegionProposalNetwork`` reading every FPN map but `MASK_MAP` (anchors are per map)."""
    from torchvision.models.detection.rpn import RegionProposalNetwork

    class MaskMapFreeRPN(RegionProposalNetwork):
        def forward(self, images, features, targets=None):  # type: ignore[override]
            kept = OrderedDict((name, level) for name, level in features.items() if name != MASK_MAP)
            return super().forward(images, kept, targets)

    MaskMapFreeRPN.__module__ = __name__
    MaskMapFreeRPN.__qualname__ = "MaskMapFreeRPN"  # pickled by name, as `detector_class`'s
    globals()["MaskMapFreeRPN"] = MaskMapFreeRPN
    return MaskMapFreeRPN


@functools.cache
def _exact_paste_transform() -> type:
    """torchvision's ``GeneralizedRCNNTransform`` with Mask R-CNN's masks pasted by `paste_masks_exact`."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class ExactPasteTransform(GeneralizedRCNNTransform):
        def postprocess(self, result, image_shapes, original_image_sizes):  # type: ignore[override]
            if self.training:
                return result
            masks = [r.pop("masks", None) for r in result]
            result = super().postprocess(result, image_shapes, original_image_sizes)
            for r, m, resized, original in zip(result, masks, image_shapes, original_image_sizes):
                if m is not None:
                    scale = [
                        torch.tensor(o, dtype=torch.float32) / torch.tensor(s, dtype=torch.float32)
                        for o, s in zip(original, resized)
                    ]
                    r["masks"] = paste_masks_exact(m, r["boxes"], original, scale)
            return result

    ExactPasteTransform.__module__ = __name__
    ExactPasteTransform.__qualname__ = "ExactPasteTransform"  # pickled by name, as `detector_class`'s
    globals()["ExactPasteTransform"] = ExactPasteTransform
    return ExactPasteTransform


@functools.cache
def detector_class(kind: str) -> type:
    """The zoo's class for torchvision's ``FasterRCNN``, ``RetinaNet`` or ``MaskRCNN`` (``kind`` is the
    lower-case name): `DetectorMixin` first in the MRO, torchvision's class for everything else.

    Made on first use, so ``import zoo`` never imports ``torchvision.models.detection``; the class is
    also published in this module's namespace so that pickling and ``copy.deepcopy`` find it."""
    from torchvision.models import detection

    bases: dict[str, tuple[type, ...]] = {
        "fasterrcnn": (_RCNNThresholds, DetectorMixin, detection.FasterRCNN),
        "retinanet": (DetectorMixin, detection.RetinaNet),
        "maskrcnn": (_RCNNThresholds, _MaskThreshold, DetectorMixin, detection.MaskRCNN),
    }
    if kind not in bases:
        raise ConfigError(f"unknown detector kind {kind!r}; one of {sorted(bases)}")
    torchvision_cls = bases[kind][-1]
    cls = type(
        torchvision_cls.__name__,
        bases[kind],
        {
            "__module__": __name__,
            "__qualname__": torchvision_cls.__name__,
            "__doc__": torchvision_cls.__doc__,
        },
    )
    globals()[cls.__name__] = cls
    return cls


def _build(
    kind: str,
    backbone: str = "resnet50",
    num_classes: int = 91,
    in_chans: int = 3,
    levels: Sequence[int] = (1, 2, 3, 4),
    fpn_channels: int = 256,
    backbone_weights: str | None = None,
    backbone_args: dict[str, Any] | None = None,
    encoder_weights: str | None = None,
    anchor_sizes: Sequence[Sequence[int]] | None = None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    min_size: int = 800,
    max_size: int = 1333,
    img_size: int | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    representation_size: int = 1024,
    mask_layers: Sequence[int] = (256, 256, 256, 256),
    mask_dim: int = 256,
    mask_paste: str = "torchvision",
    mask_roi_size: int = 14,
    mask_level: int | None = None,
    class_competition: float = 0.0,
    class_competition_iou: float = 0.5,
    **detector_args: Any,
) -> nn.Module:
    """One detector: the backbone's ``levels`` under an FPN, torchvision's heads, the zoo's attributes.

    ``detector_args`` go to torchvision's class as they are (``rpn_post_nms_top_n_train``,
    ``box_batch_size_per_image``, ``score_thresh`` / ``box_score_thresh``, ...); the rest are the zoo's.
    ``anchor_sizes`` gives one tuple of sizes per FPN output (the extra levels included); None keeps
    torchvision's default anchors. ``representation_size`` is the width of Faster/Mask R-CNN's box head
    (``TwoMLPHead``); ``mask_layers`` / ``mask_dim`` the Mask R-CNN mask head's convs and predictor width;
    ``mask_paste`` how its masks go back into the image: ``"torchvision"`` (its ``paste_masks_in_image``:
    outputs equal torchvision's model) or ``"exact"`` (`paste_masks_exact`, for thin objects);
    ``mask_roi_size`` the side of the RoIAlign crop the mask head reads (torchvision's 14; its masks are
    twice that); ``mask_level`` a finer backbone level (a position before ``levels``) that the FPN adds for the
    mask head alone, which then reads only it: the RPN and box head see ``levels`` as without it.
    ``class_competition`` (a power, 0 = off) and ``class_competition_iou`` rescore the
    detections after NMS so that overlapping boxes of different classes compete (`compete_classes`).
    """
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if class_competition < 0 or not 0 <= class_competition_iou < 1:  # before anything is built
        raise ConfigError(
            f"class_competition={class_competition} must be >= 0 (0 = off) and class_competition_iou="
            f"{class_competition_iou} in [0, 1)"
        )
    if mask_level is not None and (kind != "maskrcnn" or not 0 <= mask_level < min(levels)):
        raise ConfigError(
            f"mask_level={mask_level} is for Mask R-CNN ({kind!r} here) and must be a backbone level before "
            f"levels={tuple(levels)} (a finer map, position >= 0)"
        )
    cls = detector_class(kind)
    if kind != "retinanet":  # the task's field names, as torchvision's R-CNN builders spell them
        for field in ("score_thresh", "nms_thresh", "detections_per_img"):
            if field in detector_args:
                detector_args[f"box_{field}"] = detector_args.pop(field)
    extra = "p6p7" if kind == "retinanet" else "pool"
    weights = backbone_weights_arg(backbone_weights, encoder_weights)
    fpn_levels = tuple(levels) if mask_level is None else (mask_level, *levels)
    first_name = None if mask_level is None else MASK_MAP
    fpn = fpn_backbone(
        backbone, fpn_levels, fpn_channels, in_chans, weights, extra, backbone_args, first_name
    )
    if image_mean is None:
        image_mean = IMAGENET_MEAN if in_chans == 3 else (sum(IMAGENET_MEAN) / 3,) * in_chans
    if image_std is None:
        image_std = IMAGENET_STD if in_chans == 3 else (sum(IMAGENET_STD) / 3,) * in_chans
    if len(image_mean) != in_chans or len(image_std) != in_chans:
        raise ConfigError(
            f"image_mean / image_std need {in_chans} values each, got {image_mean}, {image_std}"
        )
    args: dict[str, Any] = {
        "min_size": min_size,
        "max_size": max_size,
        "image_mean": list(image_mean),
        "image_std": list(image_std),
        **detector_args,
    }
    num_outputs = len(levels) + (2 if extra == "p6p7" else 1)
    if anchor_sizes is not None:
        if len(anchor_sizes) != num_outputs:
            raise ConfigError(
                f"anchor_sizes has {len(anchor_sizes)} entries; the FPN gives {num_outputs} maps (one tuple each)"
            )
        sizes = tuple(tuple(int(s) for s in level) for level in anchor_sizes)
        anchors = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(sizes))
        args["rpn_anchor_generator" if kind != "retinanet" else "anchor_generator"] = anchors
    if kind == "retinanet":
        if anchor_sizes is not None:
            from torchvision.models.detection.retinanet import RetinaNetHead

            args["head"] = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes)
    else:
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, RPNHead, TwoMLPHead

        if anchor_sizes is not None:
            args["rpn_head"] = RPNHead(fpn_channels, anchors.num_anchors_per_location()[0])
        if representation_size != 1024:  # torchvision's own head otherwise (and its construction order)
            pool = 7  # torchvision's MultiScaleRoIAlign output size for boxes
            args["box_head"] = TwoMLPHead(fpn_channels * pool**2, representation_size)
            args["box_predictor"] = FastRCNNPredictor(representation_size, num_classes)
    if kind == "maskrcnn" and (tuple(mask_layers) != (256,) * 4 or mask_dim != 256):
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

        args["mask_head"] = MaskRCNNHeads(fpn_channels, list(mask_layers), 1)
        args["mask_predictor"] = MaskRCNNPredictor(mask_layers[-1], mask_dim, num_classes)
        if "box_predictor" not in args:  # torchvision takes num_classes from the predictors, or from neither
            from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

            args["box_predictor"] = FastRCNNPredictor(representation_size, num_classes)
    if kind == "maskrcnn" and (mask_roi_size != 14 or mask_level is not None):
        from torchvision.ops import MultiScaleRoIAlign

        # The mask level's map alone, else the FPN's maps from the backbone (not its "pool").
        names = [MASK_MAP] if mask_level is not None else [str(i) for i in range(len(levels))]
        args["mask_roi_pool"] = MultiScaleRoIAlign(names, output_size=int(mask_roi_size), sampling_ratio=2)
    if mask_paste not in ("torchvision", "exact"):
        raise ConfigError(f"mask_paste={mask_paste!r}: 'torchvision' or 'exact'")
    num = None if "box_predictor" in args else num_classes
    model = cls(fpn, num, **args)
    if mask_level is not None:  # adds no state: the same RPN, blind to the mask map
        model.rpn.__class__ = _rpn_without_mask_map()
    if kind == "maskrcnn" and mask_paste == "exact":
        # The subclass adds no state, only its postprocess: re-classing keeps every setting torchvision gave
        # the transform (private ones included) without reading them.
        model.transform.__class__ = _exact_paste_transform()
    model.class_competition = float(class_competition)
    model.class_competition_iou = float(class_competition_iou)
    first = fpn.body.first_conv
    model._zoo_setup(in_chans, img_size or min_size, num_classes, f"backbone.body.{first}" if first else None)
    # The one module holding every class-specific weight, re-made by ``num_classes=`` with pretrained
    # weights (fine-tuning to other classes). Mask R-CNN has two (box and mask predictors): none.
    model.classifier = {"fasterrcnn": "roi_heads.box_predictor", "retinanet": "head.classification_head"}.get(
        kind
    )
    return model


def _small(kwargs: dict[str, Any], kind: str) -> dict[str, Any]:
    """Defaults for the 128 px digit scenes (see the module docstring); every one can be overridden."""
    defaults: dict[str, Any] = {
        "backbone": "resnet8_small",
        "num_classes": SCENE_CLASSES,
        # resnet8_small (stride-1 stem): layer3 at /4, layer4 at /8; the extra block adds /16 (or /16, /32).
        "levels": (3, 4),
        "fpn_channels": 64,
        "min_size": 128,
        "max_size": 128,
        "img_size": 128,
        # Digits are 14-56 px squares whose tight boxes are as narrow as a "1": sizes per map, taller shapes.
        "aspect_ratios": (1.0, 2.0),
        # A scene holds at most 5 digits: 20 detections per image lose no recall and cut evaluation (mask
        # pasting, COCO encoding) 5x against torchvision's 100, most of all for a barely trained model.
        "detections_per_img": 20,
    }
    if kind == "retinanet":
        # /4 and /8 from the backbone, P6 (/16) and P7 (/32) from torchvision's extra block.
        defaults["anchor_sizes"] = ((12, 16, 22), (24, 32, 45), (48, 64, 90), (96, 128, 180))
        defaults.update(topk_candidates=300)
    else:
        defaults["anchor_sizes"] = ((12, 16, 22), (24, 32, 45), (48, 64, 90))
        defaults.update(
            representation_size=256,
            rpn_pre_nms_top_n_train=600,
            rpn_post_nms_top_n_train=300,
            rpn_pre_nms_top_n_test=300,
            rpn_post_nms_top_n_test=100,
            rpn_batch_size_per_image=128,
            box_batch_size_per_image=128,
        )
    if kind == "maskrcnn":
        # Strokes 2-3 px wide: torchvision's paste misplaces masks by half a pixel (`paste_masks_exact`), and
        # crops of the /4 map see them half a cell wide: the mask head reads layer2's map at /2 instead.
        defaults.update(mask_layers=(64, 64), mask_dim=64, mask_paste="exact", mask_level=2)
    for key, value in defaults.items():
        kwargs.setdefault(key, value)
    return kwargs


def _from_fasterrcnn(kwargs: dict[str, Any], kind: str, box_architecture: str) -> nn.Module:
    """A detector of ``kind``; ``fasterrcnn_weights`` (a weight of `box_architecture`) starts what it
    shares with that Faster R-CNN: for Mask R-CNN all but the mask branch (Mask R-CNN is that detector
    plus the mask branch), for RetinaNet the backbone and FPN (its P6/P7 block and its heads are new)."""
    fasterrcnn_weights = kwargs.pop("fasterrcnn_weights", None)
    if fasterrcnn_weights is not None and (kwargs.get("backbone_weights") or kwargs.get("encoder_weights")):
        raise ConfigError(
            "pass fasterrcnn_weights or backbone_weights / encoder_weights, not both: the Faster R-CNN "
            "weight holds a trained backbone"
        )
    if fasterrcnn_weights is not None and kwargs.get("mask_level") is not None:
        raise ConfigError(
            "fasterrcnn_weights cannot start a Mask R-CNN with mask_level: its FPN has one more level, so its "
            "blocks are numbered unlike the Faster R-CNN's; pass mask_level=None (the mask head then reads the "
            "box head's maps) or start from backbone_weights instead"
        )
    model = _build(kind, **kwargs)
    if fasterrcnn_weights is not None:
        from zoo.factory import init_from_weights  # the factory imports the registry, which imports this

        if kind == "maskrcnn":
            mask_branch = ("roi_heads.mask_roi_pool", "roi_heads.mask_head", "roi_heads.mask_predictor")
            info = init_from_weights(model, fasterrcnn_weights, box_architecture, "Faster R-CNN", mask_branch)
        else:
            info = init_from_weights(
                model.backbone,
                fasterrcnn_weights,
                box_architecture,
                "backbone and FPN",
                new_parts=("fpn.extra_blocks",),
                source_part="backbone",
            )
        if info is not None:
            model.encoder_weights_info = info  # recorded as the saved weight's `encoder` (its init)
    return model


def _large(kwargs: dict[str, Any], backbone: str) -> dict[str, Any]:
    kwargs.setdefault("backbone", backbone)
    return kwargs


# ------------------------------------------------------------------------------------------------ builders
@register_model(task="object-detection", weights=("scenes",))
def fasterrcnn_resnet8_small(**kwargs: Any) -> nn.Module:
    """Faster R-CNN + FPN over ``resnet8_small`` for the 128 px digit scenes (1.3M params, no resizing)."""
    return _build("fasterrcnn", **_small(kwargs, "fasterrcnn"))


@register_model(task="object-detection", weights=("scenes",))
def retinanet_resnet8_small(**kwargs: Any) -> nn.Module:
    """RetinaNet (focal loss, one stage) + FPN over ``resnet8_small`` for the 128 px digit scenes;
    ``fasterrcnn_weights="fasterrcnn_resnet8_small.scenes"`` starts its backbone and FPN from that detector."""
    return _from_fasterrcnn(_small(kwargs, "retinanet"), "retinanet", "fasterrcnn_resnet8_small")


@register_model(task="instance-segmentation", weights=("scenes",))
def maskrcnn_resnet8_small(**kwargs: Any) -> nn.Module:
    """Mask R-CNN + FPN over ``resnet8_small`` for the 128 px digit scenes (64-wide mask head reading a
    stride-2 FPN map, ``mask_level=2``); with ``mask_level=None``,
    ``fasterrcnn_weights="fasterrcnn_resnet8_small.scenes"`` starts all but the mask branch from that
    detector."""
    return _from_fasterrcnn(_small(kwargs, "maskrcnn"), "maskrcnn", "fasterrcnn_resnet8_small")


@register_model(task="object-detection")
def fasterrcnn_resnet18_fpn(**kwargs: Any) -> nn.Module:
    """Faster R-CNN + FPN over ResNet-18 for real images (torchvision's heads and defaults, 800 px)."""
    return _build("fasterrcnn", **_large(kwargs, "resnet18"))


@register_model(task="object-detection")
def fasterrcnn_resnet50_fpn(**kwargs: Any) -> nn.Module:
    """Faster R-CNN + FPN over ResNet-50; state dicts interchangeable with torchvision's, both ways."""
    return _build("fasterrcnn", **_large(kwargs, "resnet50"))


@register_model(task="object-detection")
def retinanet_resnet50_fpn(**kwargs: Any) -> nn.Module:
    """RetinaNet + FPN (P3-P7) over ResNet-50; state dicts interchangeable with torchvision's, both ways."""
    kwargs.setdefault("levels", (2, 3, 4))  # "skip P2 because it generates too many anchors", as torchvision
    return _build("retinanet", **_large(kwargs, "resnet50"))


@register_model(task="instance-segmentation")
def maskrcnn_resnet50_fpn(**kwargs: Any) -> nn.Module:
    """Mask R-CNN + FPN over ResNet-50; state dicts interchangeable with torchvision's, both ways."""
    return _from_fasterrcnn(_large(kwargs, "resnet50"), "maskrcnn", "fasterrcnn_resnet50_fpn")
