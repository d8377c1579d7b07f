"""Proposal-free instance segmentation on the 128 px digit scenes (`zoo.models.proposal_free`).

Trains a registered proposal-free ``instance-segmentation`` model (a dense network with a torchvision-style
contract: ``model(images, targets)`` returns its loss dict in train mode) on ``digit_scenes_128``: 4000 train
scenes of 1-5 mnist_5k train digits, 1000 test scenes of its test digits on held-out texture regions.

- **Data in memory.** Scenes are rendered once into uint8 images, an instance-id map per scene (0
  background, k for the k-th visible digit; visible masks are disjoint, so one map holds them all), their
  labels and boxes. ``fresh_scenes`` adds new compositions of the same train digits (4000 each).
- **Augmentation** moves image and id map together (`recipes.augment.SceneAugment`: one affine map per
  scene, nearest-neighbour resampling of the ids, colour jitter, channel permutation, never flips); the
  instance masks are read back from the warped ids, and a digit pushed off the canvas is dropped.
- **Evaluation**: COCO mAP by pycocotools' COCOeval against the split's COCO annotations
  (`zoo.metrics.CocoEvaluation` and `zoo.data.coco.coco_ground_truth`: the code path ``zoo verify`` uses, so
  the card's numbers re-measure exactly) on masks (``map``, ``map_50``, ``map_75``, ``map_small``/..., the
  task's own names; mask areas decide small/medium/large) and on boxes (``bbox_``), with per-class mask AP
  (``ap_<digit>``), over all test scenes and over the scenes whose digits overlap or touch
  (`zoo.data.scenes.touching_instances`; ``overlap_`` and ``overlap_bbox_``), where one connected
  component may hold several digits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from recipes.augment import SceneAugment
from recipes.classification import family_papers, optimizer_papers
from recipes.engine import (
    Context,
    Data,
    Objective,
    ObjectiveConfig,
    OptimizerConfig,
    ScheduleConfig,
    labelled_image_info,
    register_preset,
)
from recipes.segmentation import LOGIT_ADJUSTMENT, fold_logit_adjustment
from zoo.errors import ConfigError
from zoo.metrics.detection import CocoEvaluation

__all__ = ["InstanceConfig", "InstanceObjective", "InstanceScenes", "instance_picture"]

EVAL_CHUNK = 64  # images per eval forward: the engine's eval batches (>= 256) at 128 px would hold GBs


@dataclass
class InstanceConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = (
        "instance_unet_resnet8_small"  # a proposal-free model (`zoo list --task instance-segmentation`)
    )
    dataset: Literal["digit_scenes_128"] = "digit_scenes_128"
    fresh_scenes: int = 0  # extra compositions of the train digits, 4000 scenes each (0: the fixed 4000)
    degrees: float = 0.0  # random rotation in [-degrees, degrees], image and instances alike
    translate: float = 0.0  # random shift, fraction of the image size
    scale: tuple[float, float] = (1.0, 1.0)  # random zoom range
    brightness: float = 0.0  # per-scene brightness factor in [1 - b, 1 + b]
    contrast: float = 0.0  # per-scene contrast factor in [1 - c, 1 + c]
    channel_shuffle: bool = False  # permute the RGB channels per scene (digit and background colours)
    pictures: int = 4  # test scenes drawn in the card's instances.png (0: none)
    per_class: bool = True  # per-class mask AP (ap_<digit>): ten more COCOeval runs per evaluation
    # Semantic cross-entropy weights ∝ pixel frequency ** -power over the training pool (0: unweighted), as
    # the semantic-segmentation presets do (`zoo.losses.class_frequency_weights`); capped by max_class_weight.
    class_weight_power: float = 0.0
    max_class_weight: float = 0.0  # 0: no cap

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative(
            "fresh_scenes",
            "degrees",
            "translate",
            "brightness",
            "contrast",
            "pictures",
            "class_weight_power",
            "max_class_weight",
        )
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(
                f"config key 'scale': {list(self.scale)} must be [low, high] with 0 < low <= high"
            )
        if self.brightness >= 1 or self.contrast >= 1:
            raise ConfigError("config keys 'brightness' and 'contrast' must be < 1")


class InstanceScenes(torch.utils.data.Dataset):
    """Rendered scenes with their instances, batched by indexing (``get_batch``): uint8 images
    ``(B, 3, H, W)``, instance ids ``(B, H, W)`` uint8 (0 background, k + 1 for ``labels[:, k]``), labels
    ``(B, K)`` int64 (0 where a scene has fewer than K digits), boxes ``(B, K, 4)``, ``touching`` ``(B,)``
    (digits overlap or touch) and ``index`` ``(B,)`` (the scene's number in its split: COCO image id - 1)."""

    def __init__(
        self,
        images: torch.Tensor,
        ids: torch.Tensor,
        labels: torch.Tensor,
        boxes: torch.Tensor,
        touching: torch.Tensor,
        index: torch.Tensor,
    ):
        self.images, self.ids, self.labels, self.boxes = images, ids, labels, boxes
        self.touching, self.index = touching, index

    @classmethod
    def render(cls, scenes: Any, starts: tuple[int, ...] = (0,), count: int | None = None) -> InstanceScenes:
        """Scenes ``0..count-1`` (default: all) of a `zoo.data.DigitScenes`, once per composition start in
        `starts`."""
        from zoo.data import DigitScenes
        from zoo.data.scenes import touching_instances

        count = len(scenes) if count is None else min(count, len(scenes))
        rendered = []
        for start in starts:
            source = DigitScenes(
                scenes.split, scenes.num, scenes.config, scenes.seed, scenes.val_per_class, start
            )
            rendered += [source.scene(i) for i in range(count)]
        index = torch.arange(count).repeat(len(starts))
        k = max([len(s.labels) for s in rendered] + [1])
        n, size = len(rendered), scenes.config.size
        ids = np.zeros((n, size, size), np.uint8)
        labels = np.zeros((n, k), np.int64)
        boxes = np.zeros((n, k, 4), np.float32)
        for i, s in enumerate(rendered):
            for j, mask in enumerate(s.masks):
                ids[i][mask] = j + 1
            labels[i, : len(s.labels)] = s.labels
            boxes[i, : len(s.labels)] = s.boxes
        return cls(
            torch.from_numpy(np.stack([s.image for s in rendered])).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(ids),
            torch.from_numpy(labels),
            torch.from_numpy(boxes),
            torch.tensor([touching_instances(s.masks) for s in rendered]),
            index,
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.images[i], self.ids[i], self.labels[i], self.boxes[i], self.touching[i], self.index[i]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            self.images[indices],
            self.ids[indices],
            self.labels[indices],
            self.boxes[indices],
            self.touching[indices],
            self.index[indices],
        )

    def subset(self, indices: torch.Tensor) -> InstanceScenes:
        return InstanceScenes(*self.get_batch(indices))

    def class_pixel_counts(self, num_classes: int) -> torch.Tensor:
        """Pixels per semantic class over all scenes (index 0 the background, c the instances labelled c)."""
        per_id = torch.cat([torch.zeros(len(self.labels), 1, dtype=torch.long), self.labels], 1)
        semantic = per_id.gather(1, self.ids.flatten(1).long())
        return torch.bincount(semantic.flatten(), minlength=num_classes)


def instance_targets_of(
    ids: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor | None = None
) -> list[dict[str, torch.Tensor]]:
    """torchvision-style targets (``masks`` (N, H, W) bool, ``labels``, ``boxes``) from id maps ``(B, H, W)``
    and labels ``(B, K)``; an instance with no pixel left (pushed off the canvas) is dropped. Boxes are
    taken from `boxes` when given (the scenes' own), else tight around the masks."""
    from zoo.tasks.instance_grouping import instance_boxes

    k = labels.shape[1]
    masks = ids.long()[:, None] == torch.arange(1, k + 1, device=ids.device)[None, :, None, None]
    targets = []
    for i in range(len(ids)):
        keep = (labels[i] > 0) & masks[i].flatten(1).any(1)
        m = masks[i][keep]
        if boxes is not None:
            b = boxes[i][keep]
        else:
            b = torch.from_numpy(instance_boxes(m.cpu().numpy())).to(ids.device)
        targets.append({"masks": m, "labels": labels[i][keep], "boxes": b})
    return targets


_POOL_CACHE: dict[tuple, InstanceScenes] = {}


def _pool(train: Any, copies: int, count: int | None = None) -> InstanceScenes:
    """The (first `count`) train scenes plus `copies` fresh compositions of them, rendered once per process
    (smoke tests reuse it)."""
    key = (train.split, train.num, train.config, train.seed, train.val_per_class, train.start, copies, count)
    if key not in _POOL_CACHE:
        _POOL_CACHE.clear()
        starts = tuple(k * train.num for k in range(copies + 1))
        _POOL_CACHE[key] = InstanceScenes.render(train, starts, count)
    return _POOL_CACHE[key]


class InstanceObjective(Objective):
    name = "instance"
    Config = InstanceConfig
    config: InstanceConfig

    def data(self) -> Data:
        from zoo.data import load_dataset
        from zoo.data.coco import coco_ground_truth

        c = self.config
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.splits = splits
        # A smoke run (eval_limit) evaluates the first eval_limit scenes of each split and trains a few steps:
        # it renders those, and as many train scenes (of each composition) as a batch needs, not the
        # 4,000 x (1 + fresh_scenes) of a real run (tens of seconds per run on 2 cores).
        limit = c.eval_limit or None
        train = _pool(splits.train, c.fresh_scenes, limit and max(limit, c.batch_size))
        val = InstanceScenes.render(splits.val, count=limit) if splits.val is not None else None
        test = InstanceScenes.render(splits.test, count=limit)
        # COCO ground truth of each evaluated split, as `zoo verify` builds it (ids = scene index + 1).
        self.gt = {"test": coco_ground_truth(splits.test, limit)}
        if splits.val is not None:
            self.gt["val"] = coco_ground_truth(splits.val, limit)
        self.augment = SceneAugment(
            c.degrees, c.translate, tuple(c.scale), c.brightness, c.contrast, c.channel_shuffle
        )
        split = splits.split
        if c.fresh_scenes and limit:
            split += f"; trained on the first {len(train) // (1 + c.fresh_scenes)} scenes of {1 + c.fresh_scenes} compositions"
        elif c.fresh_scenes:
            split += (
                f"; trained on {len(train)} compositions of the same train digits (scenes 0..{len(train) - 1} "
                "of the train split)"
            )
        split += (
            f"; overlap_* metrics: the {int(test.touching.sum())} test scenes whose digits overlap or touch "
            "(zoo.data.scenes.touching_instances)"
        )
        info = labelled_image_info(splits)
        return Data(train, val, test, splits.name, split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        channels, height, _ = data.info["input_size"]
        # The model takes [0, 1] images and normalises inside (torchvision's contract), with the data's stats.
        args = {
            "num_classes": len(data.info["labels"]),
            "in_chans": channels,
            "img_size": height,
            "image_mean": list(data.info["mean"]),
            "image_std": list(data.info["std"]),
        }
        args.update(c.model_args)
        model = create_model(c.model, **args)
        if c.class_weight_power:
            from zoo.losses import class_frequency_weights

            if not hasattr(model, "set_class_weights"):
                raise ConfigError(
                    f"class_weight_power={c.class_weight_power}: {c.model} has no set_class_weights; "
                    "set class_weight_power=0"
                )
            counts = data.train.class_pixel_counts(args["num_classes"])
            model.set_class_weights(
                class_frequency_weights(counts, c.class_weight_power, c.max_class_weight or None)
            )
        return {"model": model}

    def metrics(self, split: str) -> dict[str, Any]:
        # Masks first (unprefixed), then boxes (bbox_*); CocoEvaluation scores only the images it saw, so the
        # touching subset is the same ground truth fed with those scenes alone.
        gt, types = self.gt[split], ("segm", "bbox")
        return {
            "coco": CocoEvaluation(gt, types, per_class=self.config.per_class),
            "overlap": CocoEvaluation(gt, types, per_class=False, prefix="overlap_"),
        }

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        images, ids, labels, *_ = batch
        x = images.to(ctx.device, non_blocking=True).float().div_(255)
        ids = ids.to(ctx.device, non_blocking=True)
        labels = labels.to(ctx.device, non_blocking=True)
        if self.augment.active:
            x, ids = self.augment(x, ids.long(), ctx.generator)
        if ctx.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        targets = instance_targets_of(ids, labels)
        with ctx.autocast():
            losses = ctx.models["model"](
                list(x), [{"masks": t["masks"], "labels": t["labels"]} for t in targets]
            )
        losses = {k: v.float() for k, v in losses.items()}
        return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}

    def eval_step(self, ctx: Context, batch: Any) -> None:
        images, _, _, _, touching, index = batch
        model = ctx.models["model"]
        x = images.to(ctx.device).float().div_(255)
        outputs = [o for chunk in x.split(EVAL_CHUNK) for o in model(list(chunk))]
        image_ids = [int(i) + 1 for i in index.tolist()]
        ctx.metrics["coco"].update(outputs, image_ids)
        subset = [i for i, t in enumerate(touching.tolist()) if t]
        if subset:
            ctx.metrics["overlap"].update([outputs[i] for i in subset], [image_ids[i] for i in subset])
        return None

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = family_papers(model) + optimizer_papers(c)
        weights = getattr(model, "semantic_class_weights", None)
        if weights is not None:
            # Trained with class weights: publish with their tilt taken out of the class map's score layer.
            fold_logit_adjustment(model, weights)
            model.set_class_weights(None)
            papers.append(LOGIT_ADJUSTMENT)
        grouping = getattr(model, "grouping", "")
        init, unet_init = c.model_args.get("encoder_weights"), c.model_args.get("unet_weights")
        start = (
            f"U-Net initialised from the `{unet_init}` semantic-segmentation weight"
            if unet_init
            else f"encoder initialised from the `{init}` weight of its backbone"
            if init
            else "from scratch"
        )
        meta: dict[str, Any] = {
            "task": "instance-segmentation",
            "labels": list(data.info["labels"]),
            "input_size": list(data.info["input_size"]),
            "mean": list(data.info["mean"]),
            "std": list(data.info["std"]),
            # The model takes its own image size and returns at most this many; the threshold is its own.
            "min_size": int(data.info["input_size"][1]),
            "max_size": int(data.info["input_size"][2]),
            "score_thresh": float(getattr(model, "grouping_args", {}).get("score_thresh", 0.05)),
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{c.model} ({start}) trained on {data.name} (digits as instances, labels 1-10 = digits "
                f"0-9) with the `{self.name}` recipe: dense class, centre, offset and boundary maps, "
                f"instances grouped by {grouping or 'the model'} without proposals."
                + (
                    f" The class map's cross-entropy was weighted by pixel frequency ** -{c.class_weight_power:g}"
                    " over the training scenes; inference takes the weights back out (logit adjustment)."
                    if weights is not None
                    else ""
                )
            ),
        }
        if c.pictures and data.test is not None:
            meta["files"] = {
                "instances": instance_picture(
                    model,
                    data.test,
                    data.info["labels"],
                    self.picture_path("instances.png"),
                    count=c.pictures,
                )
            }
        return model, meta


@torch.no_grad()
def instance_picture(
    model: nn.Module, scenes: InstanceScenes, labels: Any, path: Path, count: int = 4, zoom: int = 2
) -> Path:
    """Rows of *predicted | ground-truth* instances for `count` test scenes (touching ones first: they are
    the hard case), each instance a colour of its own (torchvision's ``draw_segmentation_masks``) with its
    box and label (and score), enlarged `zoom` times."""
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from zoo.tasks.draw import grid, palette, save_png

    order = torch.argsort((~scenes.touching).to(torch.int8), stable=True)[:count]
    images, ids, lab, boxes, *_ = scenes.get_batch(order)
    device = next(model.parameters()).device
    outputs = model(list(images.to(device).float().div(255)))
    targets = instance_targets_of(ids, lab, boxes)
    names = list(labels)
    tiles = []
    for image, out, tgt in zip(images, outputs, targets):
        big = torch.nn.functional.interpolate(image[None].float(), scale_factor=zoom, mode="nearest")[0]
        big = big.to(torch.uint8)
        for masks, bxs, cls, scores in (
            (out["masks"][:, 0].cpu() > 0.5, out["boxes"].cpu(), out["labels"].cpu(), out["scores"].cpu()),
            (tgt["masks"].cpu(), tgt["boxes"].cpu(), tgt["labels"].cpu(), None),
        ):
            colors = [tuple(int(v) for v in c) for c in palette(max(len(masks), 1) + 1)[1 : len(masks) + 1]]
            tile = big
            if len(masks):
                up = torch.nn.functional.interpolate(masks[:, None].float(), scale_factor=zoom)[:, 0] > 0.5
                tile = draw_segmentation_masks(tile, up, alpha=0.55, colors=colors)
                text = [
                    names[int(c)] + (f" {float(s):.2f}" if scores is not None else "")
                    for c, s in zip(cls, scores if scores is not None else cls)
                ]
                tile = draw_bounding_boxes(tile, bxs * zoom, labels=text, colors=colors)
            tiles.append(tile.permute(1, 2, 0).numpy())
    return save_png(grid(tiles, columns=2), path)


# ------------------------------------------------------------------------------------------------ presets
register_preset(
    "instance_unet_resnet8_small.scenes",
    InstanceObjective,
    InstanceConfig(
        model="instance_unet_resnet8_small",
        # The whole U-Net starts from the 64 px semantic-segmentation weight (its digits have the sizes of
        # these scenes' and it is fully convolutional: on the 128 px test scenes its class map finds the
        # strokes at foreground IoU 0.93), so this recipe has the instance cues left to learn. Measured on
        # 2 CPU cores, 1,000 steps (~25 min): mask AP 0.659 with unweighted cross-entropy (the weight's class
        # map already has its class weights folded out), 0.625 with frequency ** -0.5 weights. The earlier
        # weight, encoder only from resnet8_small.mnist, 2,000 steps at lr 3e-3 with weights: mask AP 0.285
        # (its class map blurred the strokes: foreground IoU 0.69).
        model_args={"unet_weights": "unet_resnet8_small.scenes"},
        batch_size=16,
        # 8000 compositions per epoch (the 4000 train scenes and one fresh set of the same digits), 500 steps.
        epochs=2,
        class_weight_power=0.0,
        fresh_scenes=1,
        degrees=10.0,
        translate=0.05,
        scale=(0.9, 1.1),
        brightness=0.2,
        contrast=0.2,
        channel_shuffle=True,
        precision="auto",
        channels_last=True,
        optim=OptimizerConfig(name="adamw", lr=1e-3, weight_decay=1e-4),
        schedule=ScheduleConfig(name="onecycle", warmup=0.1),
    ),
    "proposal-free instance segmentation (U-Net from unet_resnet8_small.scenes; centres + offsets) on 128 px "
    "scenes",
)
