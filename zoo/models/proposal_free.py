"""Proposal-free instance segmentation: a dense network, then grouping (no boxes proposed, no RoI heads).

The other family of instance segmenters next to Mask R-CNN's propose-then-segment: one fully
convolutional pass predicts, at every pixel, what it is and which instance it belongs to, and instances are
recovered from those maps afterwards. Here the network is a U-Net decoder over a zoo backbone
(`zoo.models.unet.EncoderUNet`, through its public ``decode`` hook) with two heads:

- the **semantic** head: logits of the 11 classes (background and the ten digits), trained with
  cross-entropy + Dice (`zoo.losses.segmentation_loss`);
- the **instance** head, four maps: a **centre** heatmap (a Gaussian at each instance's centre of mass, as in
  Panoptic-DeepLab, Cheng et al. 2020, https://arxiv.org/abs/1911.10194, trained with CenterNet's
  penalty-reduced focal loss, Zhou et al. 2019, https://arxiv.org/abs/1904.07850), the **offset** (dy, dx)
  from every foreground pixel to its instance's centre (L1), and the **boundary** where two instances touch
  (the pixels with an 8-neighbour of another instance; binary cross-entropy on the foreground).

The grouping is a separate, torch-free process (`zoo.tasks.instance_grouping`): ``grouping="centres"``
assigns each foreground pixel to the predicted centre its offset points to; ``"boundaries"`` removes the
touching pixels, labels connected components and grows them back by watershed. Both heads are trained
either way, so the grouping is a choice at inference (``model.grouping``), not a different weight.

Output contract: torchvision's detectors' exactly. Eval mode takes a list of (C, H, W) images in [0, 1]
(or a batch tensor) and returns, per image, ``boxes`` (N, 4) xyxy in input pixels, ``labels`` (N,) int64
(never 0), ``scores`` (N,) and ``masks`` (N, 1, H, W) float; train mode takes ``(images, targets)``
(``masks`` (N, H, W) and ``labels`` (N,) per image) and returns the loss dict. `InstanceUNet.dense` gives
the network's raw maps (`DENSE_OUTPUTS`), so an export can hold only the network and leave the grouping
to the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import ConvNormAct
from zoo.models.base import ZooModel
from zoo.models.unet import EncoderUNet
from zoo.registry import register_model
from zoo.tasks.instance_grouping import METHODS, Instances, group_instances

__all__ = ["DENSE_OUTPUTS", "OFFSET_SCALE", "InstanceUNet", "instance_targets"]

PAPERS = ("https://arxiv.org/abs/1911.10194", "https://arxiv.org/abs/1904.07850")
# `InstanceUNet.dense`'s maps, in the order an export lists them.
DENSE_OUTPUTS = ("semantic", "centre", "offset", "boundary")
# The offset head predicts pixels / OFFSET_SCALE: digits span 14-56 px, so its raw outputs stay near 1.
OFFSET_SCALE = 16.0


@torch.no_grad()
def instance_targets(
    masks: torch.Tensor, labels: torch.Tensor, sigma: float = 3.0
) -> dict[str, torch.Tensor]:
    """Dense training targets of one image from its instance masks ``(N, H, W)`` and labels ``(N,)``.

    Returns ``semantic`` (H, W) int64 (0 background, else the label; a later mask wins where masks
    overlap), ``ids`` (H, W) int64 (0 background, k + 1 for instance k), ``centre`` (H, W): a Gaussian of
    ``sigma`` pixels at each instance's centre of mass (rounded to a pixel, so its peak is exactly 1), the
    maximum where they meet; ``offset`` (2, H, W): centre minus pixel (dy, dx) on the foreground, 0
    elsewhere; ``boundary`` (H, W) bool: foreground pixels with an 8-neighbour of another instance.
    """
    n, height, width = masks.shape
    device = masks.device
    masks = masks.bool()
    ids = torch.zeros(height, width, dtype=torch.long, device=device)
    for k in range(n):
        ids[masks[k]] = k + 1
    visible = ids[None] == torch.arange(1, n + 1, device=device)[:, None, None]  # disjoint after painting
    lut = torch.cat([torch.zeros(1, dtype=torch.long, device=device), labels.to(device).long()])
    semantic = lut[ids]
    yy = torch.arange(height, device=device, dtype=torch.float32)[:, None].expand(height, width)
    xx = torch.arange(width, device=device, dtype=torch.float32)[None, :].expand(height, width)
    area = visible.sum((1, 2)).clamp_min(1).float()
    cy = (visible * yy).sum((1, 2)) / area
    cx = (visible * xx).sum((1, 2)) / area
    centre = torch.zeros(height, width, device=device)
    present = visible.flatten(1).any(1)
    if present.any():
        py, px = cy[present].round()[:, None, None], cx[present].round()[:, None, None]
        gauss = torch.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * sigma**2))
        centre = gauss.amax(0)
    fg = ids > 0
    zero = torch.zeros(1, device=device)
    cy_map = torch.cat([zero, cy])[ids]
    cx_map = torch.cat([zero, cx])[ids]
    offset = torch.stack([cy_map - yy, cx_map - xx]) * fg
    # Contact: a 3x3 neighbour with a larger id (max over the window) or a smaller foreground id (min over
    # the window with the background raised out of reach).
    idf = ids.float()[None, None]
    larger = F.max_pool2d(idf, 3, 1, 1)[0, 0] > idf[0, 0]
    far = torch.where(fg, ids.float(), torch.full_like(idf[0, 0], 1e6))[None, None]
    smaller = -F.max_pool2d(-far, 3, 1, 1)[0, 0] < idf[0, 0]
    boundary = fg & (larger | smaller)
    return {"semantic": semantic, "ids": ids, "centre": centre, "offset": offset, "boundary": boundary}


def _centre_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss: ``-(1 - p)^alpha log(p)`` where the target is 1 (a centre),
    ``-(1 - y)^beta p^alpha log(1 - p)`` elsewhere, normalised by the number of centres."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target >= 1.0 - 1e-6
    pos_loss = -((1 - p) ** alpha) * torch.log(p) * pos
    neg_loss = -((1 - target) ** beta) * p**alpha * torch.log(1 - p) * ~pos
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp_min(1)


class InstanceUNet(ZooModel):
    """A U-Net over a registry backbone predicting classes, instance centres, offsets and boundaries;
    grouped into torchvision-style instance detections in eval mode (see the module docstring).

    ``encoder_weights`` starts the encoder from a classifier weight (`zoo.factory.create_encoder`);
    ``unet_weights`` starts the whole U-Net (encoder, decoder and class map) from a published
    semantic-segmentation weight of ``unet_<encoder>`` instead (`zoo.factory.init_from_weights`).
    """

    train_needs_targets = True
    classifier = "unet.head"
    # Out of the generic forward/backward/save and ONNX suites (tests.helpers.suite_models): eval mode
    # answers a list of per-image dicts whose lengths vary, which they cannot compare. The network
    # (`dense`), the contract and the save round trip are tested in tests/models/test_proposal_free.py; the
    # export holds `dense` alone and leaves the grouping to the runtime.
    excluded_suites: tuple[str, ...] = ("common", "onnx")

    def __init__(
        self,
        encoder: str = "resnet8_small",
        num_classes: int = 11,
        in_chans: int = 3,
        img_size: int = 128,
        decoder_channels: Sequence[int] | None = None,
        upsample: str = "nearest",
        norm: str = "batch",
        act: str = "relu",
        encoder_weights: str | None = None,
        encoder_args: dict[str, Any] | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        grouping: str = "centres",
        centre_sigma: float = 3.0,
        centre_thresh: float = 0.2,
        nms_radius: int = 3,
        boundary_thresh: float = 0.5,
        min_area: int = 8,
        score_thresh: float = 0.05,
        detections_per_img: int = 100,
        loss_weights: dict[str, float] | None = None,
        unet_weights: str | None = None,
    ):
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes={num_classes}: needs the background and at least one class")
        if grouping not in METHODS:
            raise ConfigError(f"unknown grouping '{grouping}'; expected one of {', '.join(METHODS)}")
        if unet_weights is not None and encoder_weights is not None:
            raise ConfigError(
                "pass encoder_weights or unet_weights, not both: the U-Net weight holds a trained encoder"
            )
        self.unet = EncoderUNet(
            encoder,
            num_classes,
            in_chans,
            decoder_channels,
            upsample,
            norm,
            act,
            img_size,
            encoder_weights,
            encoder_args,
        )
        if unet_weights is not None:
            # A published semantic-segmentation U-Net of the same encoder: its class map is this model's
            # class map already (the preset in recipes/instance.py says what it is worth), so training
            # starts from it and has the instance cues left to learn.
            from zoo.factory import init_from_weights  # the factory imports the registry, which imports this

            info = init_from_weights(self.unet, unet_weights, f"unet_{encoder}", "U-Net")
            if info is not None:
                self.encoder_weights_info = info  # recorded as the saved weight's `encoder` (its init)
        width = self.unet.out_chans
        # One 3x3 layer of its own before the four maps: the cue is a different question from the class.
        self.instance_head = nn.Sequential(
            ConvNormAct(width, width, 3, norm=norm, act=act), nn.Conv2d(width, 4, 1)
        )
        # A centre prior of 1% (as RetinaNet's focal-loss prior): the heatmap starts near zero everywhere.
        nn.init.zeros_(self.instance_head[1].weight)
        with torch.no_grad():
            self.instance_head[1].bias.copy_(torch.tensor([-4.6, 0.0, 0.0, -2.0]))
        self.first_conv = f"unet.{self.unet.first_conv}" if self.unet.first_conv else None
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        self.size_multiple = self.unet.size_multiple
        mean = tuple(image_mean) if image_mean is not None else (0.5,) * in_chans
        std = tuple(image_std) if image_std is not None else (0.25,) * in_chans
        if len(mean) != in_chans or len(std) != in_chans:
            raise ConfigError(
                f"image_mean {mean} and image_std {std} need one value per channel ({in_chans})"
            )
        # Buffers, not parameters: the model takes [0, 1] images (torchvision's contract) and normalises.
        self.register_buffer("image_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.grouping = grouping
        self.centre_sigma = centre_sigma
        self.grouping_args = {
            "centre_thresh": centre_thresh,
            "nms_radius": nms_radius,
            "boundary_thresh": boundary_thresh,
            "min_area": min_area,
            "score_thresh": score_thresh,
            "max_instances": detections_per_img,
        }
        self.loss_weights = {"semantic": 1.0, "centre": 1.0, "offset": 1.0, "boundary": 1.0}
        unknown = set(loss_weights or {}) - set(self.loss_weights)
        if unknown:
            raise ConfigError(
                f"loss_weights: unknown {sorted(unknown)}; expected {sorted(self.loss_weights)}"
            )
        self.loss_weights.update(loss_weights or {})
        # Per-class weights of the semantic cross-entropy (see `set_class_weights`); None: unweighted.
        self.semantic_class_weights: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------ network
    def dense(self, x: torch.Tensor, logits: bool = False) -> dict[str, torch.Tensor]:
        """The network's maps for a batch ``(B, C, H, W)`` in [0, 1], at the input's size.

        ``semantic`` (B, K, H, W) class probabilities, ``centre`` (B, 1, H, W) heatmap in [0, 1], ``offset``
        (B, 2, H, W) dy, dx in pixels, ``boundary`` (B, 1, H, W) probability; with ``logits=True`` the
        semantic, centre and boundary maps are logits (what the losses take). Any size works: the input is
        zero-padded to the encoder's ``size_multiple`` and the maps cropped back.
        """
        height, width = x.shape[-2:]
        x = (x - self.image_mean.to(x.dtype)) / self.image_std.to(x.dtype)
        m = self.size_multiple
        pad_h, pad_w = (-height) % m, (-width) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        features = self.unet.decode(x)
        semantic = self.unet.head(features)[..., :height, :width]
        cue = self.instance_head(features)[..., :height, :width]
        centre, offset, boundary = cue[:, :1], cue[:, 1:3] * OFFSET_SCALE, cue[:, 3:]
        if not logits:
            semantic, centre, boundary = semantic.softmax(1), centre.sigmoid(), boundary.sigmoid()
        return {"semantic": semantic, "centre": centre, "offset": offset, "boundary": boundary}

    # ------------------------------------------------------------------------------------------ process
    def group(self, maps: dict[str, Any], method: str | None = None, **options: Any) -> list[Instances]:
        """`dense`'s maps (tensors or numpy, batch first) -> one `Instances` per image, by
        `zoo.tasks.instance_grouping.group_instances` with this model's settings (`options` override)."""

        def numpy(v: Any) -> np.ndarray:
            return v.detach().float().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

        arrays = {k: numpy(maps[k]) for k in DENSE_OUTPUTS}
        args = {**self.grouping_args, **options}
        return [
            group_instances(
                arrays["semantic"][i],
                arrays["centre"][i, 0],
                arrays["offset"][i],
                arrays["boundary"][i, 0],
                method or self.grouping,
                **args,
            )
            for i in range(len(arrays["semantic"]))
        ]

    def forward(
        self, images: list[torch.Tensor] | torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None
    ) -> Any:
        images = list(images)
        for i, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != self.input_size[0]:
                raise ValueError(
                    f"image {i}: expected ({self.input_size[0]}, H, W), got shape {tuple(image.shape)}"
                )
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model takes (images, targets): targets are missing")
            return self.losses(images, targets)
        return self.predict(images)

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Eval-mode detections of a list of (C, H, W) images; images of one size run as one batch."""
        results: list[dict[str, torch.Tensor] | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape[-2:]), []).append(i)
        for indices in by_size.values():
            maps = self.dense(torch.stack([images[i] for i in indices]))
            for i, found in zip(indices, self.group(maps)):
                results[i] = _as_tensors(found, images[i].device)
        return results  # type: ignore[return-value]

    def set_class_weights(self, weights: Sequence[float] | torch.Tensor | None) -> None:
        """Weigh the semantic cross-entropy per class (``num_classes`` positive values, background first;
        e.g. `zoo.losses.class_frequency_weights` over the training pixels), or ``None`` for unweighted.

        Why: with a ~94% background an unweighted loss is mostly spent on the background, and the digits'
        identity is learnt late (the proposal-free preset's first run reached 22% per-pixel digit accuracy).
        A network trained with weights w predicts probabilities tilted by w (the weighted loss is minimised
        by q(c|x) ∝ w_c p(c|x)), which would make every digit fatter: the recipe publishes it with the tilt
        folded out of the class map's score layer (``unet.head``), as the segmentation recipe does
        (`recipes.segmentation.fold_logit_adjustment`). The weights shape training only; a weight file
        does not hold them."""
        if weights is None:
            self.semantic_class_weights = None
            return
        w = torch.as_tensor(weights, dtype=torch.float32).flatten().cpu()
        if len(w) != self.num_classes or not torch.isfinite(w).all() or (w <= 0).any():
            raise ValueError(
                f"class weights {w.tolist()}: expected {self.num_classes} finite positive values "
                "(background first)"
            )
        self.semantic_class_weights = w

    def losses(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The loss dict of a batch: ``loss_semantic``, ``loss_centre``, ``loss_offset``, ``loss_boundary``
        (each times its ``loss_weights`` entry; the semantic cross-entropy weighted per class after
        `set_class_weights`). Images of different sizes are zero-padded to the largest
        (the padding is background in the targets)."""
        from zoo.losses import segmentation_loss

        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets: one target dict per image")
        height = max(int(im.shape[-2]) for im in images)
        width = max(int(im.shape[-1]) for im in images)
        batch = torch.stack([F.pad(im, (0, width - im.shape[-1], 0, height - im.shape[-2])) for im in images])
        dense = [self._target(i, im, t, height, width) for i, (im, t) in enumerate(zip(images, targets))]
        want = {k: torch.stack([d[k] for d in dense]) for k in dense[0]}
        out = self.dense(batch, logits=True)
        fg = want["semantic"] > 0
        fg_count = fg.sum().clamp_min(1)
        semantic = segmentation_loss(
            out["semantic"].float(), want["semantic"], "ce_dice", self.semantic_class_weights
        )
        centre = _centre_focal_loss(out["centre"][:, 0].float(), want["centre"])
        diff = (out["offset"].float() - want["offset"]).abs().sum(1) / OFFSET_SCALE
        offset = (diff * fg).sum() / fg_count
        bce = F.binary_cross_entropy_with_logits(
            out["boundary"][:, 0].float(), want["boundary"].float(), reduction="none"
        )
        boundary = (bce * fg).sum() / fg_count
        w = self.loss_weights
        return {
            "loss_semantic": w["semantic"] * semantic,
            "loss_centre": w["centre"] * centre,
            "loss_offset": w["offset"] * offset,
            "loss_boundary": w["boundary"] * boundary,
        }

    def _target(
        self, i: int, image: torch.Tensor, target: dict[str, torch.Tensor], height: int, width: int
    ) -> dict[str, torch.Tensor]:
        if "masks" not in target or "labels" not in target:
            raise ValueError(f"target {i}: needs 'masks' (N, H, W) and 'labels' (N,)")
        masks, labels = target["masks"], target["labels"]
        if masks.dim() != 3 or tuple(masks.shape[1:]) != tuple(image.shape[-2:]) or len(masks) != len(labels):
            raise ValueError(
                f"target {i}: masks {tuple(masks.shape)} and labels {tuple(labels.shape)} must be (N, H, W) "
                f"and (N,) for an image of size {tuple(image.shape[-2:])}"
            )
        bad = (labels < 1) | (labels >= self.num_classes)
        if bad.any():
            k = int(bad.nonzero()[0])
            raise ValueError(
                f"target {i}, instance {k}: label {int(labels[k])} is not a class in 1..{self.num_classes - 1}"
            )
        masks = F.pad(masks.bool(), (0, width - masks.shape[-1], 0, height - masks.shape[-2]))
        t = instance_targets(masks.to(image.device), labels.to(image.device), self.centre_sigma)
        return {k: t[k] for k in ("semantic", "centre", "offset", "boundary")}

    # ------------------------------------------------------------------------------------------ examples
    def example_targets(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """Two touching rectangles per image, labelled 1 and 2 (or 1 and 1 with two classes)."""
        device = next(self.parameters()).device
        _, height, width = self.input_size
        targets = []
        for _ in range(batch_size):
            masks = torch.zeros(2, height, width, dtype=torch.bool, device=device)
            masks[0, height // 4 : height // 2, width // 4 : width // 2] = True
            masks[1, height // 4 : height // 2, width // 2 : 3 * width // 4] = True
            labels = torch.tensor([1, min(2, self.num_classes - 1)], device=device)
            targets.append({"masks": masks, "labels": labels})
        return targets


def _as_tensors(found: Instances, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.from_numpy(found.boxes).to(device),
        "labels": torch.from_numpy(found.labels).to(device),
        "scores": torch.from_numpy(found.scores).to(device),
        "masks": torch.from_numpy(found.masks).to(device=device, dtype=torch.float32).unsqueeze(1),
    }


# ------------------------------------------------------------------------------------------------ builders
@register_model(task="instance-segmentation", weights=("scenes",))
def instance_unet_resnet8_small(**kwargs: Any) -> InstanceUNet:
    """Proposal-free instance segmentation: U-Net over resnet8_small, grouped by centres (0.5M), 128 px.

    Class, centre, offset and boundary maps from a U-Net decoder over ``resnet8_small`` (3x3 stem, stride
    8), for the 128 px digit scenes; ``grouping="boundaries"`` groups by watershed instead."""
    kwargs.setdefault("encoder", "resnet8_small")
    return InstanceUNet(**kwargs)
