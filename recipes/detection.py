"""Object detection and instance segmentation on the 128 px digit scenes: Faster R-CNN, RetinaNet, Mask R-CNN.

Trains any registered ``object-detection`` or ``instance-segmentation`` model with torchvision's contract
(`zoo.models.detection`) on ``digit_scenes_128`` (`zoo.data.scenes`): 4000 train scenes of 1-5 digits
composed from the mnist_5k train digits, 1000 test scenes from its test digits only, on held-out texture
regions. Targets are the scenes' own: tight ``boxes`` around the visible pixels, ``labels`` = digit + 1
(0 is background), instance ``masks`` (visible pixels, disjoint) for Mask R-CNN.

The loss is torchvision's loss dict summed (RPN objectness and box regression, the box head's
classification and regression, the mask loss; RetinaNet's focal classification and box regression), each
term logged. ``scales`` turns on multi-scale training: each step draws the resize target of torchvision's
transform (``min_size`` = ``max_size``) from ``scales`` with the run's generator; evaluation runs at the
weight's own size. ``fresh_scenes`` adds new compositions of the same train digits, as the segmentation
recipe does.

Evaluation is pycocotools' COCOeval (`zoo.metrics.CocoEvaluation`, the metric ``zoo verify`` re-measures
the card with through `zoo.tasks.detection`) against the COCO annotations of the test
scenes exactly as `zoo.data.coco` exports them (mask areas, RLE masks): ``map`` (AP@[.5:.95]), ``map_50``,
``map_75``, ``map_small/medium/large``, ``mar_*``, and per-class AP ``ap_<digit>``, of boxes for a
detector and of masks for an instance model, whose box numbers are reported as ``bbox_*`` beside them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

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
from zoo.data.coco import coco_ground_truth
from zoo.errors import ConfigError
from zoo.metrics.base import Metric
from zoo.metrics.detection import CocoEvaluation

__all__ = ["CocoEvaluation", "DetectionConfig", "DetectionObjective", "SceneDetections", "prediction_picture"]

EVAL_CHUNK = 32  # images per forward pass in evaluation: Mask R-CNN's masks are (100, 1, H, W) per image


@dataclass
class DetectionConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = "fasterrcnn_resnet8_small"  # a registered detector (`zoo list --task object-detection`)
    dataset: Literal["digit_scenes_128", "digit_scenes_64"] = "digit_scenes_128"
    fresh_scenes: int = 0  # extra compositions of the train digits, 4000 scenes each (0: the fixed 4000)
    scales: tuple[int, ...] = ()  # multi-scale training: resize targets drawn per step (empty: off)
    train_limit: int = 0  # use only the first N train scenes (0: all); quick probes and smoke tests
    test_limit: int = 0  # evaluate only the first N test scenes (0: all); a published weight uses all
    per_class: bool = True  # per-class AP (ap_<digit>): ten more COCOeval runs per evaluation
    pictures: int = 6  # test scenes drawn in the card's predictions.png (0: none)

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative("fresh_scenes", "train_limit", "test_limit", "pictures")
        if any(int(s) < 16 for s in self.scales):
            raise ConfigError(f"config key 'scales': {list(self.scales)} must be image sides >= 16 pixels")


class SceneDetections(torch.utils.data.Dataset):
    """Rendered scenes with their detection targets, batched by indexing (``get_batch``): uint8 images
    ``(B, 3, H, W)`` and one target dict per scene (``boxes`` float32 (N, 4), ``labels`` int64 (N,),
    ``image_id`` (the scene's COCO id, index + 1) and, when kept, ``masks`` uint8 (N, H, W))."""

    def __init__(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]):
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(targets):
            raise ValueError(
                f"need (N, C, H, W) uint8 images and N targets, got {images.shape}, {len(targets)}"
            )
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[i], self.targets[i]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        return self.images[indices], [self.targets[int(i)] for i in indices]

    @classmethod
    def render(cls, scenes: Any, count: int, masks: bool, first_id: int = 1) -> SceneDetections:
        """The first `count` scenes of a `zoo.data.DigitScenes`; each target also says whether some of its
        digits overlap or touch (``touching``, `zoo.data.scenes.touching_instances`)."""
        from zoo.data.scenes import touching_instances

        images, targets = [], []
        for i in range(count):
            scene = scenes.scene(i)
            images.append(torch.from_numpy(scene.image).permute(2, 0, 1))
            target = {
                "boxes": torch.from_numpy(scene.boxes).float(),
                "labels": torch.from_numpy(scene.labels).long(),
                "image_id": torch.tensor(first_id + i),
                "touching": torch.tensor(bool(touching_instances(scene.masks))),
            }
            if masks:
                target["masks"] = torch.from_numpy(scene.masks.astype(np.uint8))
            targets.append(target)
        return cls(torch.stack(images).contiguous(), targets)


# The rendered pools, by what determines them: scenes are a pure function of these, so the presets' smoke
# tests and a search's trials in one process render each pool once.
_CACHE: dict[tuple, Any] = {}


def _cached(key: tuple, make: Any) -> Any:
    if key not in _CACHE:
        if len(_CACHE) > 4:
            _CACHE.clear()
        _CACHE[key] = make()
    return _CACHE[key]


class DetectionObjective(Objective):
    name = "detection"
    Config = DetectionConfig
    config: DetectionConfig

    def data(self) -> Data:
        from zoo.data import DigitScenes, load_dataset
        from zoo.registry import get_entry

        c = self.config
        self.task = get_entry(c.model).task
        if self.task not in ("object-detection", "instance-segmentation"):
            raise ConfigError(f"model '{c.model}' is a {self.task} model; this recipe trains detectors")
        # Masks are rendered with every scene anyway: keep them for all models, so that one pool in memory
        # serves every preset of a process (the box models drop them in the step).
        masks = True
        self.keep_masks = self.task == "instance-segmentation"
        # Loading the scenes measures their mean/std on 256 rendered scenes: once per process is enough.
        splits = _cached(
            ("splits", c.dataset, c.val_per_class),
            lambda: load_dataset(c.dataset, c.val_per_class, c.data_root, c.download),
        )
        self.splits = splits
        train_src, test_src = splits.train, splits.test
        n_train = min(c.train_limit or len(train_src), len(train_src))
        n_test = min(c.test_limit or len(test_src), len(test_src))

        def pool() -> SceneDetections:
            parts = [SceneDetections.render(train_src, n_train, masks)]
            for k in range(1, c.fresh_scenes + 1):
                fresh = DigitScenes(
                    train_src.split,
                    train_src.num,
                    train_src.config,
                    train_src.seed,
                    train_src.val_per_class,
                    k * train_src.num,
                )
                parts.append(SceneDetections.render(fresh, n_train, masks))
            if len(parts) == 1:
                return parts[0]
            return SceneDetections(
                torch.cat([p.images for p in parts]), [t for p in parts for t in p.targets]
            )

        base = (c.dataset, c.val_per_class, masks)
        train = _cached(("train", *base, n_train, c.fresh_scenes), pool)
        test = _cached(("test", *base, n_test), lambda: SceneDetections.render(test_src, n_test, masks))
        self.gt = _cached(("gt", *base, n_test), lambda: coco_ground_truth(test_src, n_test))
        val = None
        if splits.val is not None:
            n_val = len(splits.val)
            val = _cached(("val", *base, n_val), lambda: SceneDetections.render(splits.val, n_val, masks))
            self.val_gt = _cached(("val_gt", *base, n_val), lambda: coco_ground_truth(splits.val, n_val))
        split = splits.split
        if n_train < len(train_src) or c.fresh_scenes:
            split += f"; trained on {len(train)} scenes (the first {n_train} of the train split"
            split += f", and {c.fresh_scenes} fresh compositions of them)" if c.fresh_scenes else ")"
        if n_test < len(test_src):
            split += f"; evaluated on the first {n_test} test scenes only"
        info = labelled_image_info(splits)
        return Data(train, val, test, splits.name, split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        channels, height, _ = data.info["input_size"]
        # The scenes' size, never torchvision's 800 px default; normalisation by the scenes' statistics.
        args: dict[str, Any] = {
            "num_classes": len(data.info["labels"]),
            "in_chans": channels,
            "img_size": height,
            "min_size": height,
            "max_size": height,
            "image_mean": list(data.info["mean"]),
            "image_std": list(data.info["std"]),
        }
        args.update(c.model_args)
        return {"model": create_model(c.model, **args)}

    def metrics(self, split: str) -> dict[str, Metric]:
        types = ("segm", "bbox") if self.task == "instance-segmentation" else ("bbox",)
        gt = self.val_gt if split == "val" else self.gt
        # The scenes whose digits overlap or touch, apart (overlap_*): where a no-learning baseline that
        # splits connected components fails.
        return {
            "coco": CocoEvaluation(gt, types, per_class=self.config.per_class),
            "overlap": CocoEvaluation(gt, types, per_class=False, prefix="overlap_"),
        }

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        images, targets = batch
        x = images.to(ctx.device, non_blocking=True).float().div_(255)
        drop = ("image_id", "touching") if self.keep_masks else ("image_id", "touching", "masks")
        targets = [{k: v for k, v in t.items() if k not in drop} for t in ctx.to_device(targets)]
        model = ctx.models["model"]
        transform = ctx.unwrap("model").transform
        saved = transform.min_size, transform.max_size
        scales = self.config.scales
        if scales:
            # One resize target per step, drawn from the run's generator (a resumed run replays it).
            pick = torch.randint(len(scales), (1,), generator=ctx.generator, device=ctx.generator.device)
            side = int(scales[int(pick.item())])
            transform.min_size, transform.max_size = (side,), side
        try:
            with ctx.autocast():
                losses = model(list(x), targets)
        finally:
            transform.min_size, transform.max_size = saved
        losses = {k: v.float() for k, v in losses.items()}
        logs: dict[str, torch.Tensor] = {"loss": sum(losses.values())}
        logs.update((k, v.detach()) for k, v in losses.items())
        return logs

    def eval_step(self, ctx: Context, batch: Any) -> None:
        images, targets = batch
        model = ctx.models["model"]
        for start in range(0, len(images), EVAL_CHUNK):
            x = images[start : start + EVAL_CHUNK].to(ctx.device).float().div_(255)
            outputs = model(list(x))
            chunk = targets[start : start + EVAL_CHUNK]
            ids = [int(t["image_id"]) for t in chunk]
            ctx.metrics["coco"].update(outputs, ids)
            hard = [k for k, t in enumerate(chunk) if bool(t["touching"])]
            if hard:
                ctx.metrics["overlap"].update([outputs[k] for k in hard], [ids[k] for k in hard])
        return None

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval()
        papers = family_papers(model) + optimizer_papers(c)
        kind = (
            "instance masks, boxes and labels" if self.task == "instance-segmentation" else "boxes and labels"
        )
        meta: dict[str, Any] = {
            "task": self.task,
            "labels": list(data.info["labels"]),
            "input_size": list(data.info["input_size"]),
            # The detector normalises inside (torchvision's transform, image_mean/std in model_args): it
            # takes [0, 1] images, so the weight records no extra normalisation.
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{c.model} (backbone initialised from "
                f"{c.model_args.get('encoder_weights') or c.model_args.get('backbone_weights') or 'random'} weights, the rest from scratch) trained on "
                f"{data.name} ({kind}; 10 digit classes, label = digit + 1, 0 = background) with the "
                f"`{self.name}` recipe; COCOeval on the test scenes."
            ),
        }
        if c.pictures and data.test is not None:
            meta["files"] = {
                "predictions": prediction_picture(
                    model, data.test, data.info, self.picture_path("predictions.png"), c.pictures
                )
            }
        return model, meta


@torch.no_grad()
def prediction_picture(
    model: nn.Module, scenes: SceneDetections, info: dict[str, Any], path: Path, count: int = 6, zoom: int = 3
) -> Path:
    """Pairs of *prediction | ground truth* for the first `count` test scenes, enlarged `zoom` times:
    boxes with label and score (`torchvision.utils.draw_bounding_boxes`) and, for instance models, masks
    (`draw_segmentation_masks`), in each class's `zoo.tasks.draw.palette` colour."""
    import torch.nn.functional as F
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from zoo.tasks.draw import grid, palette, save_png

    labels = list(info["labels"])
    colors = [tuple(int(v) for v in c) for c in palette(len(labels))]
    score_thresh = float(getattr(model, "score_thresh", 0.05))
    shown = max(score_thresh, 0.5)  # the picture shows confident detections only
    images, targets = scenes.get_batch(torch.arange(min(count, len(scenes))))
    device = next(model.parameters()).device
    outputs = model(list(images.to(device).float().div(255)))
    tiles = []
    for image, out, target in zip(images, outputs, targets):
        big = F.interpolate(image[None].float(), scale_factor=zoom, mode="nearest")[0].to(torch.uint8)
        keep = out["scores"].cpu() >= shown
        for boxes, labs, scores, masks in (
            (
                out["boxes"].cpu()[keep],
                out["labels"].cpu()[keep],
                out["scores"].cpu()[keep],
                out.get("masks"),
            ),
            (target["boxes"], target["labels"], None, target.get("masks")),
        ):
            canvas = big
            if masks is not None and len(labs):
                m = masks.cpu()[keep] if scores is not None else masks
                m = m[:, 0] > 0.5 if m.dim() == 4 else m.bool()
                m = F.interpolate(m[:, None].float(), scale_factor=zoom, mode="nearest")[:, 0].bool()
                canvas = draw_segmentation_masks(canvas, m, alpha=0.5, colors=[colors[int(k)] for k in labs])
            text = [
                labels[int(k)] + ("" if scores is None else f" {float(s):.2f}")
                for k, s in zip(labs, scores if scores is not None else labs)
            ]
            if len(labs):
                canvas = draw_bounding_boxes(
                    canvas, boxes * zoom, text, colors=[colors[int(k)] for k in labs], width=2
                )
            tiles.append(canvas.permute(1, 2, 0).numpy())
    return save_png(grid(tiles, columns=2), path)


# ------------------------------------------------------------------------------------------------ presets
# Shared digit-scene settings: AdamW + one-cycle, the backbone from resnet8_small.mnist (trained on the same
# mnist_5k train digits the train scenes are made of; the test digits are unseen by both), batch 16, fp32.
#
# Epochs are sized to 40 minutes on 2 cores, trained as two DDP processes of one thread each (`torchrun
# --standalone --nproc_per_node=2 -m zoo train ...`): on this 2-core AMD EPYC without bf16 (2026-12-01) Faster
# R-CNN trains 12.7 images/s that way against 9.4 with one process of two threads and 7.1 with one thread, so
# its 6 epochs (24,000 images) took 1,893 s. RetinaNet trains 11.7-12.4 images/s that way: 7 epochs at batch
# 16 (2,265 s) scored AP 0.730, AP50 0.906; at batch 8 (twice the steps) with class competition, 7 epochs took
# 2,393 s for AP 0.755, AP50 0.941 (0.928 without the competition). Mask R-CNN trains 5.9 images/s that way
# (3.0 on one thread): 3 epochs at batch 8 took 2,046 s for mask AP 0.609 (2026-12-02). Rendering 4000 + 1000
# scenes, the test evaluation (COCOeval, per-class AP) and the card add ~3 minutes. On a machine shared with
# other jobs every number is slower: time a run with --set max_steps=30 before relying on it.
_SCENES = DetectionConfig(
    dataset="digit_scenes_128",
    batch_size=16,
    epochs=6,
    optim=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=1e-4),
    schedule=ScheduleConfig(name="onecycle", warmup=0.1),
    grad_clip=10.0,  # the RPN's and box head's regression losses spike early on: keep steps bounded
    precision="fp32",
    model_args={"backbone_weights": "mnist"},
)

register_preset(
    "fasterrcnn_resnet8_small.scenes",
    DetectionObjective,
    replace(_SCENES, model="fasterrcnn_resnet8_small", epochs=6),
    "Faster R-CNN + FPN over resnet8_small (backbone from resnet8_small.mnist) on the 128 px digit scenes",
)
register_preset(
    "retinanet_resnet8_small.scenes",
    DetectionObjective,
    replace(
        _SCENES,
        model="retinanet_resnet8_small",
        epochs=7,
        batch_size=8,
        # Picked on 500 train scenes with an earlier 7-epoch weight (runs/s21/pick_competition.py): +1.4
        # AP50 there; the card's ablation row measures the published weight without it.
        model_args={"backbone_weights": "mnist", "class_competition": 2.0, "class_competition_iou": 0.3},
    ),
    "RetinaNet + FPN over resnet8_small (backbone from resnet8_small.mnist) on the 128 px digit scenes",
)
register_preset(
    "maskrcnn_resnet8_small.scenes",
    DetectionObjective,
    replace(
        _SCENES,
        model="maskrcnn_resnet8_small",
        epochs=3,
        batch_size=8,
        # The mask head reads its 14x14 crops from an FPN map at /2 (layer2; the builder's default, stated as
        # the weight was trained), not /4: strokes are 2-3 px wide. At this budget /4 crops gave mask AP 0.507.
        model_args={"backbone_weights": "mnist", "mask_level": 2},
    ),
    "Mask R-CNN + FPN over resnet8_small (backbone from resnet8_small.mnist) on the 128 px digit scenes",
)
