"""Localisation from image tags: a CAM classifier trained only on which digits each scene contains.

Trains a ``weakly-supervised-localization`` model (`zoo.models.cam`) on ``digit_scenes_64``
(`zoo.data.scenes`): 4000 train scenes of 1-3 digits from the mnist_5k train digits (plus ``fresh_scenes``
new compositions of the same digits, as the segmentation recipe draws them), 1000 test scenes from its test
digits on held-out texture regions. The **only** supervision is each scene's tag vector, which digits are
present (read off the scene's class map after augmentation, so a digit moved out of the frame is no longer
tagged); no box, mask or position is ever seen in training. The loss is binary cross-entropy over the ten
tags (one sigmoid per digit: a scene holds several).

At publish, the main free choice of the boxes, ``cam_thresh`` (the fraction of a class map's range above
which pixels form a box, `zoo.tasks.localization`), is swept on the first ``threshold_scenes`` *train*
scenes (their boxes used only for this one number) and the best CorLoc there is kept; test scenes never
inform a choice. Then, on the same 1000 test scenes and by the same metric objects (the task's: COCOeval
of the boxes, CorLoc, tag mAP / F1), the card records the weight and, beside it:

- ``whole image + CAM tags``: one box covering the whole image per tag, scored by the tag probability
  (what the tags alone say about where);
- ``otsu components + CAM tags``: the foreground of Otsu's threshold split into connected components (the
  detection baseline's segmentation), every component given every tag, scored by the tag probability x
  the component's share of the largest component's area (tags plus generic objectness, no CAM);
- ``otsu components + CAM peaks``: the same components, each given every tag scored by the tag
  probability x the class map's highest value inside the component (the CAM decides which blob is which
  digit, the image's intensity draws the box: not pure CAM, so a row beside the weight, not its boxes);
- the supervised detector ``fasterrcnn_resnet8_small.scenes`` (trained with boxes on the 128 px scenes,
  whose digits have the same 14-56 px sizes), run on these 64 px scenes at their own pixel scale.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recipes.augment import SceneAugment, normalise
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
from recipes.segmentation import TrainPool
from zoo.errors import ConfigError

__all__ = [
    "LocalizationConfig",
    "LocalizationObjective",
    "TaggedScenes",
    "cam_seeded_otsu",
    "detector_detections",
    "otsu_components",
    "prediction_picture",
    "scene_tags",
]

EVAL_CHUNK = 64  # scenes per forward pass when the objective runs a model itself (threshold sweep, baselines)


@dataclass
class LocalizationConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = "cam_resnet8_small"  # a weakly-supervised-localization model (`zoo list --task ...`)
    dataset: Literal["digit_scenes_64", "digit_scenes_128"] = "digit_scenes_64"
    fresh_scenes: int = 0  # extra compositions of the train digits, 4000 scenes each (0: the fixed 4000)
    degrees: float = 0.0  # random rotation in [-degrees, degrees] (image and class map together)
    translate: float = 0.0  # random shift, fraction of the image size
    scale: tuple[float, float] = (1.0, 1.0)  # random zoom range
    brightness: float = 0.0  # per-scene brightness factor in [1 - b, 1 + b]
    contrast: float = 0.0  # per-scene contrast factor in [1 - c, 1 + c]
    channel_shuffle: bool = False  # permute the RGB channels per scene
    # The CAM threshold is the one choice the boxes need: swept on these train scenes, best CorLoc kept.
    threshold_scenes: int = 500
    cam_thresholds: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8)
    # Lower-ranked candidate boxes from these thresholds too (cam_thresh itself skipped), per-class NMS at
    # nms_iou (the task's extra_thresh / nms_iou): the top box, so CorLoc, stays cam_thresh's; chosen among
    # a few sets on the same 500 train scenes (AP50 there 0.209 -> 0.270 at cam_thresh 0.7).
    extra_thresholds: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    nms_iou: float = 0.7
    test_limit: int = 0  # evaluate only the first N test scenes (0: all); a published weight uses all
    baselines: bool = True  # measure the tag baselines and the supervised detector at publish
    detector: str = "fasterrcnn_resnet8_small.scenes"  # the box-supervised reference on the same scenes
    pictures: int = 6  # test scenes drawn in the card's predictions.png (0: none)

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative(
            "fresh_scenes", "degrees", "translate", "brightness", "contrast", "test_limit", "pictures"
        )
        if self.threshold_scenes < 1:
            raise ConfigError(f"config key 'threshold_scenes': {self.threshold_scenes} must be >= 1")
        if not self.cam_thresholds or not all(0 < t <= 1 for t in self.cam_thresholds):
            raise ConfigError(
                f"config key 'cam_thresholds': {list(self.cam_thresholds)} must be fractions in (0, 1]"
            )
        if not all(0 < t <= 1 for t in self.extra_thresholds):
            raise ConfigError(
                f"config key 'extra_thresholds': {list(self.extra_thresholds)} must be fractions in (0, 1]"
            )
        if not 0 < self.nms_iou <= 1:
            raise ConfigError(f"config key 'nms_iou': {self.nms_iou} must be in (0, 1]")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"config key 'scale': {list(self.scale)} must be [low, high], 0 < low <= high")


def scene_tags(semantic: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) class maps (0 background, c = class c - 1) -> (N, num_classes) float 0/1 tags: which
    classes have at least one pixel."""
    flat = semantic.reshape(len(semantic), -1).long()
    present = torch.zeros(len(semantic), num_classes + 1, device=semantic.device)
    present.scatter_(1, flat, 1.0)
    return present[:, 1:]


class TaggedScenes(torch.utils.data.Dataset):
    """Scenes for evaluation: uint8 images (N, 3, H, W) and the task's target dicts (boxes, labels, COCO
    records: `zoo.tasks.localization.WeaklySupervisedLocalization.evaluation_data`), batched by
    indexing."""

    def __init__(self, images: torch.Tensor, targets: list[dict[str, Any]]):
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(targets):
            raise ValueError(
                f"need (N, C, H, W) uint8 images and N targets, got {images.shape}, {len(targets)}"
            )
        self.images, self.targets = images, targets

    @classmethod
    def render(cls, scenes: Any, count: int) -> TaggedScenes:
        """The first `count` scenes of a `zoo.data.DigitScenes` with the task's targets."""
        from zoo.tasks import get_task

        task = get_task("weakly-supervised-localization")
        images, targets = task.evaluation_data(scenes, count, SimpleNamespace(name="digit scenes"))
        return cls(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), targets)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.images[i], self.targets[i]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        return self.images[indices], [self.targets[int(i)] for i in indices]


class LocalizationObjective(Objective):
    name = "localization"
    Config = LocalizationConfig
    config: LocalizationConfig

    def data(self) -> Data:
        from zoo.data import load_dataset
        from zoo.tasks import get_task

        c = self.config
        self.task = get_task("weakly-supervised-localization")
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.splits = splits
        # The classes are the digits (the tags); the scenes' class 0 is background, never a tag.
        self.labels = tuple(splits.labels[1:])
        self.cam_thresh: float | None = None  # chosen at publish, on train scenes
        train = TrainPool(splits.train, c.fresh_scenes)
        n_test = min(c.test_limit or len(splits.test), len(splits.test))
        test = TaggedScenes.render(splits.test, n_test)
        val = TaggedScenes.render(splits.val, len(splits.val)) if splits.val is not None else None
        self.augment = SceneAugment(
            c.degrees, c.translate, tuple(c.scale), c.brightness, c.contrast, c.channel_shuffle
        )
        split = splits.split
        if c.fresh_scenes:
            split += f"; trained on {len(train)} compositions of the same train digits, tags only"
        if n_test < len(splits.test):
            split += f"; evaluated on the first {n_test} test scenes only"
        info = {**labelled_image_info(splits), "labels": self.labels}
        return Data(train, val, test, splits.name, split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        channels, height, _ = data.info["input_size"]
        args = {"num_classes": len(self.labels), "in_chans": channels, "img_size": height}
        args.update(c.model_args)
        return {"model": create_model(c.model, **args)}

    def task_meta(self, model: nn.Module | None = None) -> Any:
        """What the task's post-processing and metrics read: the loaded weight's own fields when `model`
        is a published weight (so a re-measure uses its recorded ``cam_thresh``), else this run's."""
        weights = getattr(model, "pretrained_weights", None) if model is not None else None
        fields = {f.name: f.default for f in self.task.weight_fields}
        if weights is not None:
            fields.update({k: getattr(weights, k) for k in fields if getattr(weights, k, None) is not None})
        else:
            fields["extra_thresh"] = tuple(float(t) for t in self.config.extra_thresholds)
            fields["nms_iou"] = float(self.config.nms_iou)
            if self.cam_thresh is not None:
                fields["cam_thresh"] = self.cam_thresh
        return SimpleNamespace(
            name=self.config.model, labels=self.labels, input_size=tuple(self.splits.input_size), **fields
        )

    def metrics(self, split: str) -> dict[str, Any]:
        return self.task.metrics(self.task_meta())

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        images, semantic = batch
        x = ctx.to_device(images).float().div_(255)
        y = semantic.to(ctx.device, non_blocking=True)
        if self.augment.active:
            x, y = self.augment(x, y, ctx.generator)
        tags = scene_tags(y, len(self.labels))
        x = normalise(x, self.splits.mean, self.splits.std)
        if ctx.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with ctx.autocast():
            logits, _ = ctx.models["model"](x)
        logits = logits.float()
        loss = F.binary_cross_entropy_with_logits(logits, tags)
        exact = ((logits.detach() > 0) == (tags > 0.5)).all(1).float().mean()
        return {"loss": loss, "tag_exact": exact}

    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, targets = batch
        model = ctx.models["model"]
        logits, cams = model(normalise(ctx.to_device(images), self.splits.mean, self.splits.std))
        outputs = {"logits": logits.float().cpu().numpy(), "cams": cams.float().cpu().numpy()}
        # The model being measured (a published weight re-measured keeps its own cam_thresh); under DDP
        # the wrapped module carries the weight's metadata.
        meta = self.task_meta(getattr(model, "module", model))
        self.task.update_metrics(ctx.metrics, outputs, targets, meta)
        present = torch.stack(
            [torch.from_numpy(np.isin(np.arange(1, len(self.labels) + 1), t["labels"])) for t in targets]
        )
        loss = F.binary_cross_entropy_with_logits(logits.float().cpu(), present.float())
        return {"loss": (loss * len(targets), len(targets))}

    # ------------------------------------------------------------------------------------------ publish
    @torch.no_grad()
    def outputs(self, model: nn.Module, scenes: TaggedScenes) -> dict[str, np.ndarray]:
        """``logits`` and ``cams`` of `model` on every scene of `scenes`, as numpy."""
        device = next(model.parameters()).device
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        for start in range(0, len(scenes), EVAL_CHUNK):
            x = normalise(
                scenes.images[start : start + EVAL_CHUNK].to(device), self.splits.mean, self.splits.std
            )
            logits, cams = model(x)
            parts.append((logits.float().cpu(), cams.float().cpu()))
        return {
            "logits": torch.cat([p[0] for p in parts]).numpy(),
            "cams": torch.cat([p[1] for p in parts]).numpy(),
        }

    def score(self, outputs: dict[str, np.ndarray], scenes: TaggedScenes, meta: Any) -> dict[str, float]:
        """The task's metrics of precomputed outputs on `scenes` (the test split's metrics, any split)."""
        metrics = self.task.metrics(meta)
        for start in range(0, len(scenes), EVAL_CHUNK):
            chunk = {k: v[start : start + EVAL_CHUNK] for k, v in outputs.items()}
            self.task.update_metrics(metrics, chunk, scenes.targets[start : start + EVAL_CHUNK], meta)
        values: dict[str, float] = {}
        for metric in metrics.values():
            values.update(metric.compute())
        return values

    def threshold_count(self) -> int:
        """Train scenes the threshold is chosen on (no more than ``eval_limit``, for quick runs)."""
        c = self.config
        return min(c.threshold_scenes, c.eval_limit or c.threshold_scenes, len(self.splits.train))

    def choose_threshold(self, model: nn.Module) -> tuple[float, dict[float, dict[str, float]]]:
        """The ``cam_thresh`` of best CorLoc (ties: AP50) on the first ``threshold_scenes`` train scenes,
        and every swept value's CorLoc and AP50 there."""
        c = self.config
        scenes = TaggedScenes.render(self.splits.train, self.threshold_count())
        outputs = self.outputs(model, scenes)
        sweep = {}
        for thresh in c.cam_thresholds:
            meta = replace_meta(self.task_meta(), cam_thresh=float(thresh))
            values = self.score(outputs, scenes, meta)
            sweep[float(thresh)] = {"corloc": values["corloc"], "map_50": values["map_50"]}
        best = max(sweep, key=lambda t: (sweep[t]["corloc"], sweep[t]["map_50"]))
        return best, sweep

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        self.cam_thresh, sweep = self.choose_threshold(model)
        meta_fields = self.task_meta()
        swept = ", ".join(f"{t:g}: {v['corloc']:.3f}" for t, v in sweep.items())
        extras = ", ".join(f"{t:g}" for t in meta_fields.extra_thresh) or "no other thresholds"
        meta: dict[str, Any] = {
            "task": self.task.name,
            "labels": list(self.labels),
            "input_size": list(data.info["input_size"]),
            "mean": list(data.info["mean"]),
            "std": list(data.info["std"]),
            "cam_thresh": self.cam_thresh,
            "score_thresh": meta_fields.score_thresh,
            "tag_thresh": meta_fields.tag_thresh,
            "min_area": meta_fields.min_area,
            "extra_thresh": list(meta_fields.extra_thresh),
            "nms_iou": meta_fields.nms_iou,
            "papers": list(dict.fromkeys(family_papers(model) + optimizer_papers(c))),
            "description": (
                f"{c.model} trained on {data.name} with the `{self.name}` recipe from image tags only (which "
                "digits a scene contains; binary cross-entropy over the 10 digits); boxes from its class "
                "activation maps (resized to the image, scaled to [0, 1], thresholded, one box per connected "
                f"component, the top one per class at cam_thresh; components at {extras} join as lower-ranked "
                f"candidates, per-class NMS at IoU {meta_fields.nms_iou:g}). cam_thresh "
                f"{self.cam_thresh:g} was chosen on the first {self.threshold_count()} train scenes (the usual "
                "weakly supervised practice of a small held-out set of boxes, here train scenes, used only to "
                f"choose it and the extra thresholds; CorLoc there by threshold: {swept}). Baselines and the "
                "box-supervised detector are measured on the same test scenes; the 'otsu components + CAM "
                "peaks' row is not pure CAM: its boxes are the image's Otsu components, the CAM says which "
                "digit each is."
            ),
        }
        if c.baselines and data.test is not None:
            # On the scenes the weight is measured on (the first eval_limit of them in a quick run).
            meta["baselines"] = self.baselines(model, subset(data.test, c.eval_limit or len(data.test)))
        if c.pictures and data.test is not None:
            results = self.task.postprocess(self.outputs(model, subset(data.test, c.pictures)), meta_fields)
            path = self.picture_path("predictions.png")
            meta["files"] = {"predictions": prediction_picture(results, subset(data.test, c.pictures), path)}
        return model, meta

    def baselines(self, model: nn.Module, scenes: TaggedScenes) -> dict[str, dict[str, float]]:
        """COCOeval and CorLoc of the tag baselines and of the supervised detector on `scenes` (see the
        module docstring), by the task's metrics."""
        meta = self.task_meta()
        images = scenes.images.permute(0, 2, 3, 1).numpy()
        outputs = self.outputs(model, scenes)
        probs = 1 / (1 + np.exp(-outputs["logits"]))
        keep = probs >= meta.score_thresh
        height, width = images.shape[1:3]
        whole, otsu = [], []
        components_all = otsu_components(images)
        for p, k, components in zip(probs, keep, components_all):
            classes = np.flatnonzero(k)
            whole.append((np.tile([0, 0, width, height], (len(classes), 1)), p[classes], classes))
            areas = np.array([a for _, a in components], np.float64)
            boxes, scores, labels = [], [], []
            for box, area in components:
                for cls in classes:
                    boxes.append(box)
                    scores.append(p[cls] * area / areas.max())
                    labels.append(cls)
            otsu.append(
                (
                    np.asarray(boxes, np.float32).reshape(-1, 4),
                    np.asarray(scores),
                    np.asarray(labels, np.int64),
                )
            )
        categories = np.arange(1, len(self.labels) + 1)
        seeded = cam_seeded_otsu(self.task.postprocess(outputs, meta), components_all, meta.score_thresh)
        results = {
            "whole image + CAM tags": _box_metrics(whole, scenes.targets, categories),
            "otsu components + CAM tags": _box_metrics(otsu, scenes.targets, categories),
            "otsu components + CAM peaks": _box_metrics(seeded, scenes.targets, categories),
        }
        if self.config.detector:
            detected = detector_detections(self.config.detector, scenes.images)
            results[f"{self.config.detector} (box-supervised)"] = _box_metrics(detected, scenes.targets, None)
        return results


def replace_meta(meta: SimpleNamespace, **changes: Any) -> SimpleNamespace:
    """A copy of a task meta namespace with `changes`."""
    return SimpleNamespace(**{**vars(meta), **changes})


def subset(scenes: TaggedScenes, count: int) -> TaggedScenes:
    """The first `count` scenes."""
    count = min(count, len(scenes))
    return TaggedScenes(scenes.images[:count], scenes.targets[:count])


def _box_metrics(
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], targets: list[dict[str, Any]], categories: Any
) -> dict[str, float]:
    """COCOeval (AP, AP50, AP75) and CorLoc of per-image (boxes, scores, class indices) against the
    task's targets; `categories` maps class indices to COCO ids (None: they are COCO ids already)."""
    from zoo.metrics import CocoEvaluation, CorLoc

    coco, corloc = CocoEvaluation(None, ("bbox",), per_class=False), CorLoc()
    detections = [
        {"boxes": b, "scores": s, "labels": (categories[c] if categories is not None else c)}
        for b, s, c in found
    ]
    coco.update(detections, targets)
    corloc.update(detections, targets)
    values = {**coco.compute(), **corloc.compute()}
    return {k: round(float(values[k]), 6) for k in ("map_50", "map", "map_75", "corloc") if k in values}


def cam_seeded_otsu(
    results: list[Any], components: list[list[tuple[np.ndarray, float]]], score_thresh: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per scene (boxes, scores, class indices): every Otsu component (`otsu_components`) for every class
    of tag probability >= `score_thresh`, scored by the probability x the class's normalised map at its
    highest inside the component's box. The CAM says which blob is which digit, the image's intensity
    gives the box's edges (which the 16x16 map cannot); not pure CAM, so a baseline row beside it."""
    found = []
    for result, boxes in zip(results, components):
        classes = np.flatnonzero(result.probs >= score_thresh)
        rows = [
            (
                box,
                result.probs[k]
                * result.heatmaps[k, int(box[1]) : int(box[3]), int(box[0]) : int(box[2])].max(),
                k,
            )
            for box, _ in boxes
            for k in classes
        ]
        found.append(
            (
                np.asarray([r[0] for r in rows], np.float32).reshape(-1, 4),
                np.asarray([r[1] for r in rows], np.float64),
                np.asarray([r[2] for r in rows], np.int64),
            )
        )
    return found


def otsu_components(images: np.ndarray, min_area: int = 12) -> list[list[tuple[np.ndarray, float]]]:
    """(N, H, W, 3) uint8 scenes -> per scene, ``(box xyxy, area)`` of each 8-connected component of
    Otsu's foreground (the minority side of the threshold on the grey image) of at least `min_area`
    pixels: where the scene's objects are, without knowing which."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    found = []
    for image in images:
        grey = image.astype(np.float32).mean(axis=2)
        light = grey > threshold_otsu(grey)
        foreground = light if light.mean() < 0.5 else ~light
        components, count = ndimage.label(foreground, structure=np.ones((3, 3), bool))
        areas = ndimage.sum_labels(foreground, components, np.arange(1, count + 1)) if count else []
        boxes = []
        for (rows, cols), area in zip(ndimage.find_objects(components), areas):
            if area >= min_area:
                boxes.append(
                    (np.array([cols.start, rows.start, cols.stop, rows.stop], np.float32), float(area))
                )
        found.append(boxes)
    return found


@torch.no_grad()
def detector_detections(name: str, images: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image (boxes, scores, COCO category ids) of the published detector `name` on uint8 images
    (N, 3, H, W), run at the images' own size: its transform is told to keep them (a detector trained on
    128 px scenes sees 64 px scenes at the same pixel scale of digits, not enlarged twice)."""
    import zoo

    detector = zoo.create_model(name, pretrained=True).eval()
    side = int(images.shape[-1])
    detector.transform.min_size, detector.transform.max_size = (side,), side
    found = []
    for start in range(0, len(images), EVAL_CHUNK):
        batch = images[start : start + EVAL_CHUNK].float().div(255)
        for out in detector(list(batch)):
            found.append((out["boxes"].numpy(), out["scores"].numpy(), out["labels"].numpy()))
    return found


def prediction_picture(results: list[Any], scenes: TaggedScenes, path: Path, zoom: int = 3) -> Path:
    """Rows of *ground truth | CAM boxes | heat maps of the three most probable tags* for `scenes`,
    enlarged `zoom` times: boxes in their class colour (the predicted tags' top boxes), heat maps blue
    (0) to red (1) over the image, each titled with its tag and probability."""
    from zoo.tasks.draw import draw_boxes, grid, palette, save_png
    from zoo.tasks.localization import heat_colours, picture_caption

    colors = palette(len(results[0].probs) + 1)
    tiles = []
    for result, image, target in zip(results, scenes.images.permute(0, 2, 3, 1).numpy(), scenes.targets):
        big = np.kron(image, np.ones((zoom, zoom, 1), np.uint8))
        truth = [str(int(k) - 1) for k in target["labels"]]
        tiles.append(
            picture_caption(
                draw_boxes(big, target["boxes"] * zoom, truth, colors[target["labels"]], 2), "truth"
            )
        )
        best = [int(np.flatnonzero(result.labels == k)[0]) for k in result.tags if (result.labels == k).any()]
        text = [f"{result.label(int(result.labels[i]))} {result.scores[i]:.2f}" for i in best]
        drawn = draw_boxes(big, result.boxes[best] * zoom, text, colors[result.labels[best] + 1], 2)
        tiles.append(picture_caption(drawn, "CAM boxes"))
        for k in np.argsort(-result.probs)[:3]:
            heat = np.kron(heat_colours(result.heatmaps[k]), np.ones((zoom, zoom, 1), np.uint8))
            blended = (0.4 * big + 0.6 * heat).round().astype(np.uint8)
            tiles.append(picture_caption(blended, f"CAM {result.label(int(k))} p={result.probs[k]:.2f}"))
    return save_png(grid(tiles, columns=5), path)


# ------------------------------------------------------------------------------------------------ presets
# The backbone starts from resnet8_small.mnist (trained on the same mnist_5k train digits the train scenes
# are made of; the test digits are unseen by both), made atrous to stride 4 (16x16 maps on 64 px scenes).
# Speed measured here (2026-11-30, fp32, one thread on the shared 2-core VM at load 2-3): ~25 scenes/s
# for training; bf16 autocast was several times slower in a 5-step check on this VM, so fp32.
_SCENES = LocalizationConfig(
    dataset="digit_scenes_64",
    batch_size=32,
    # 8000 compositions an epoch (the 4000 train scenes and one fresh set of the same digits); 5 epochs
    # (1250 steps, 40,000 scenes) take ~22 minutes at ~30 scenes/s.
    epochs=5,
    fresh_scenes=1,
    degrees=10.0,
    translate=0.05,
    scale=(0.9, 1.1),
    brightness=0.2,
    contrast=0.2,
    channel_shuffle=True,
    precision="fp32",
    optim=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=1e-4),
    schedule=ScheduleConfig(name="onecycle", warmup=0.1),
    model_args={"backbone_weights": "mnist"},
)

register_preset(
    "cam_resnet8_small.scenes",
    LocalizationObjective,
    replace(_SCENES, model="cam_resnet8_small"),
    "CAM over resnet8_small (stride 4, backbone from resnet8_small.mnist) on the 64 px scenes, tags only",
)
