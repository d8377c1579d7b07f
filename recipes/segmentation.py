"""Semantic segmentation: a class for every pixel of the digit scenes (background and the ten digits).

Trains any registered ``semantic-segmentation`` model (U-Net, FCN, DeepLab) on ``digit_scenes_64``
(`zoo.data.scenes`): 4000 train scenes composed from the mnist_5k train digits, 1000 test scenes from its
test digits on held-out texture regions; test scenes are never seen in training and never used for a
choice (early stopping uses the validation scenes of ``val_per_class``).

What makes these scenes hard is not the boundaries but the identity of each digit: a plain 0.5M U-Net
found the foreground at 0.96 IoU yet gave 13% of stroke pixels the wrong digit (measured on these
machines), and it overfitted the 4000 fixed scenes. So the recipe

- draws **fresh compositions** of the same train digits (``fresh_scenes``: each adds 4000 scenes with new
  placements, scales, colours and backgrounds, scene ``i`` of the split rendered from ``start = k * 4000``),
  which changes nothing about which digits the model sees, only how they are arranged;
- augments batches on the fly, image and mask with one affine map per scene (small rotation, translation
  and zoom; mask resampled by nearest neighbour, uncovered border is background), plus colour jitter and
  a random permutation of the RGB channels; never flips (a mirrored 2 is no digit);
- uses a loss that counts the rare digit pixels: cross-entropy weighted by class frequency (counted once
  over the training pool, `zoo.losses.class_frequency_weights`), plus soft Dice (`zoo.losses`);
- publishes with those weights taken back out (``logit_adjustment``): a network trained with class weights
  w predicts q(c|x) ∝ w_c p(c|x), which paints every digit too fat; subtracting log w_c from the score
  layer's bias (post-hoc logit adjustment, Menon et al. 2021) restores p(c|x), the same function as
  ``logits - log w``. Measured on the published weights: mIoU 0.663 -> 0.692 (U-Net), 0.661 -> 0.681
  (FCN), 0.660 -> 0.687 (DeepLabv3+); the U-Net card's ablation rows were measured before, without it.

Metrics (`zoo.metrics.MeanIoU` over the whole split, as the task's `zoo verify` measures): ``miou`` over
the 11 classes, ``pixel_acc``, ``iou_<class>``; and ``loss``, plain cross-entropy whatever the training
loss (comparable across losses; no dependence on the training pool).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recipes.augment import normalise
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
from zoo.errors import ConfigError
from zoo.losses import DICE_LOSS, FOCAL_LOSS, class_frequency_weights, segmentation_loss

__all__ = ["SceneAugment", "SegmentationConfig", "SegmentationObjective", "TrainPool", "prediction_picture"]

IGNORE_INDEX = 255  # the task's default: a target value no loss or metric counts (the scenes have none)
LOGIT_ADJUSTMENT = "https://arxiv.org/abs/2007.07314"  # Menon et al., Long-tail learning via logit adjustment


def fold_logit_adjustment(model: nn.Module, class_weights: torch.Tensor) -> None:
    """Subtract ``log(class_weights)`` from the bias of `model`'s score layer (``model.classifier``, a conv
    with a bias), in place: the logits become ``logits - log w`` at every pixel (resizing the logits
    bilinearly, as FCN and DeepLab do, keeps a per-class constant)."""
    head = model.get_submodule(model.classifier)
    if not isinstance(head, nn.Conv2d) or head.bias is None:
        raise ConfigError(
            f"logit_adjustment: the score layer {model.classifier!r} is a {type(head).__name__} without a "
            "conv bias to fold into; set logit_adjustment=false"
        )
    with torch.no_grad():
        head.bias.sub_(class_weights.log().to(head.bias))


@dataclass
class SegmentationConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = "unet_resnet8_small"  # a registered semantic-segmentation model (`zoo list --task semantic-segmentation`)
    dataset: Literal["digit_scenes_64", "digit_scenes_128"] = "digit_scenes_64"
    fresh_scenes: int = 0  # extra compositions of the train digits, 4000 scenes each (0: the fixed 4000)
    loss: Literal["ce", "weighted_ce", "dice", "focal", "ce_dice"] = "ce_dice"
    class_weight_power: float = 0.5  # weighted_ce / ce_dice: weights ∝ frequency ** -power (0: unweighted)
    max_class_weight: float = 0.0  # cap on a class weight after scaling (0: no cap)
    logit_adjustment: bool = True  # publish with log(class weight) subtracted from the score layer's bias
    dice_weight: float = 1.0  # ce_dice: loss = CE + dice_weight * Dice
    focal_gamma: float = 2.0  # focal: the (1 - p_t) ** gamma modulation
    degrees: float = 0.0  # random rotation in [-degrees, degrees], image and mask alike
    translate: float = 0.0  # random shift, fraction of the image size
    scale: tuple[float, float] = (1.0, 1.0)  # random zoom range
    brightness: float = 0.0  # per-scene brightness factor in [1 - b, 1 + b]
    contrast: float = 0.0  # per-scene contrast factor in [1 - c, 1 + c]
    channel_shuffle: bool = False  # permute the RGB channels per scene (digit and background colours)
    pictures: int = 6  # test scenes drawn in the card's predictions.png (0: none)

    def validate(self) -> None:
        super().validate()
        for key in (
            "fresh_scenes",
            "class_weight_power",
            "max_class_weight",
            "dice_weight",
            "focal_gamma",
            "degrees",
            "translate",
            "brightness",
            "contrast",
            "pictures",
        ):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': {getattr(self, key)} must be >= 0")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(
                f"config key 'scale': {list(self.scale)} must be [low, high] with 0 < low <= high"
            )
        if self.brightness >= 1 or self.contrast >= 1:
            raise ConfigError("config keys 'brightness' and 'contrast' must be < 1")


class SceneAugment:
    """Per-scene random augmentation of a batch of images ``(N, C, H, W)`` in [0, 1] and their class maps
    ``(N, H, W)``, drawn from the run's generator (a resumed run replays it).

    One affine map per scene (rotation, translation, isotropic zoom) moves image and mask together: the
    image is resampled bilinearly, the mask by nearest neighbour, and what the map uncovers is black
    image and background class (zero padding; a reflected border would mirror digits). Then brightness
    and contrast jitter and an optional permutation of the colour channels, which touch the image only.
    """

    def __init__(
        self,
        degrees: float = 0.0,
        translate: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        brightness: float = 0.0,
        contrast: float = 0.0,
        channel_shuffle: bool = False,
    ):
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)
        self.brightness, self.contrast, self.channel_shuffle = brightness, contrast, channel_shuffle

    @property
    def has_affine(self) -> bool:
        return bool(self.degrees or self.translate or self.scale != (1.0, 1.0))

    @property
    def active(self) -> bool:
        return self.has_affine or bool(self.brightness or self.contrast or self.channel_shuffle)

    def __call__(
        self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, dev = x.shape[0], x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, device=dev, generator=generator) * (high - low) + low

        if self.has_affine:
            angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
            s = uniform(*self.scale)
            tx = uniform(-self.translate, self.translate) * 2
            ty = uniform(-self.translate, self.translate) * 2
            cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
            # The grid maps output to input coordinates: the inverse rotation and zoom.
            theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(
                x.dtype
            )
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            # Class indices are not intensities: nearest neighbour, and shift by one so that the zero
            # padding reads as "uncovered" and becomes background (0) either way.
            m = F.grid_sample(
                mask.unsqueeze(1).to(x.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
            )
            mask = m.squeeze(1).round().long()
        if self.brightness or self.contrast:
            b = uniform(1 - self.brightness, 1 + self.brightness).view(-1, 1, 1, 1)
            c = uniform(1 - self.contrast, 1 + self.contrast).view(-1, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x * b - mean) * c + mean).clamp_(0, 1)
        if self.channel_shuffle and x.shape[1] > 1:
            order = torch.argsort(torch.rand(n, x.shape[1], device=dev, generator=generator), dim=1)
            x = x.gather(1, order.view(n, -1, 1, 1).expand_as(x))
        return x, mask


# The last rendered pool, by what determines it: scenes are a pure function of these, so runs in one
# process (the presets' smoke tests, a search's trials) render the same pool once, not once per run.
_POOL_CACHE: dict[tuple, Any] = {}


def _render_pool(train: Any, copies: int) -> Any:
    """The train split's scenes plus `copies` fresh compositions of the same digits, in memory."""
    key = (train.split, train.num, train.config, train.seed, train.val_per_class, train.start, copies)
    if key not in _POOL_CACHE:
        _POOL_CACHE.clear()  # one pool at a time: 16,000 scenes are ~200 MB
        _POOL_CACHE[key] = _render(train, copies)
    return _POOL_CACHE[key]


class TrainPool(torch.utils.data.Dataset):
    """The training scenes, rendered on first use: an evaluation of a published weight (the test suite,
    ``zoo verify``) sets the objective up without ever drawing the 16,000 training compositions."""

    def __init__(self, train: Any, copies: int):
        self.train, self.copies = train, copies

    def __len__(self) -> int:
        return len(self.train) * (1 + self.copies)

    @property
    def scenes(self) -> Any:
        return _render_pool(self.train, self.copies)

    @property
    def semantic(self) -> torch.Tensor:
        return self.scenes.semantic

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scenes[i]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scenes.get_batch(indices)


def _render(train: Any, copies: int) -> Any:
    from zoo.data import DigitScenes, InMemoryScenes

    parts = [train.to_memory()]
    for k in range(1, copies + 1):
        fresh = DigitScenes(
            train.split, train.num, train.config, train.seed, train.val_per_class, k * train.num
        )
        parts.append(fresh.to_memory())
    if len(parts) == 1:
        return parts[0]
    return InMemoryScenes(
        torch.cat([p.images for p in parts]),
        torch.cat([p.semantic for p in parts]),
        [c for p in parts for c in p.captions],
    )


class SegmentationObjective(Objective):
    name = "segmentation"
    Config = SegmentationConfig
    config: SegmentationConfig

    def data(self) -> Data:
        from zoo.data import load_dataset

        c = self.config
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.splits = splits
        train = TrainPool(splits.train, c.fresh_scenes)
        val = splits.val.to_memory() if splits.val is not None else None
        test = splits.test.to_memory()
        self.train_pool = train
        self.augment = SceneAugment(
            c.degrees, c.translate, tuple(c.scale), c.brightness, c.contrast, c.channel_shuffle
        )
        split = splits.split
        if c.fresh_scenes:
            split += (
                f"; trained on {len(train)} compositions of the same train digits (scenes 0..{len(train) - 1} "
                "of the train split)"
            )
        info = labelled_image_info(splits)
        return Data(train, val, test, splits.name, split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        channels, height, _ = data.info["input_size"]
        # img_size: the zoo's builders record it as the weight's input_size (dense models take any size).
        args = {"num_classes": len(data.info["labels"]), "in_chans": channels, "img_size": height}
        args.update(c.model_args)
        return {"model": create_model(c.model, **args)}

    def metrics(self, split: str) -> dict[str, Any]:
        from zoo.metrics import MeanIoU

        labels = self.splits.labels
        # The scenes hold only class indices (no ignore pixels), so torchmetrics' per-batch check is skipped.
        return {"miou": MeanIoU(len(labels), IGNORE_INDEX, class_names=labels, validate_args=False)}

    @property
    def class_weights(self) -> torch.Tensor | None:
        c = self.config
        if c.loss not in ("weighted_ce", "ce_dice") or not c.class_weight_power:
            return None
        if not hasattr(self, "_weights"):
            counts = torch.bincount(
                self.train_pool.semantic.flatten().long(), minlength=len(self.splits.labels)
            )
            self._weights = class_frequency_weights(counts, c.class_weight_power, c.max_class_weight or None)
        return self._weights

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        return segmentation_loss(
            logits, target, c.loss, self.class_weights, IGNORE_INDEX, c.dice_weight, c.focal_gamma
        )

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        images, target = batch
        x = ctx.to_device(images).float().div_(255)
        y = target.to(ctx.device, non_blocking=True)
        if self.augment.active:
            x, y = self.augment(x, y, ctx.generator)
        x = normalise(x, self.splits.mean, self.splits.std)
        if ctx.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with ctx.autocast():
            out = ctx.models["model"](x)
        # FCN / DeepLab with aux_loss=True answer {"out", "aux"} in train mode: the aux head's loss is
        # added at torchvision's reference weight of 0.5.
        logits = (out["out"] if isinstance(out, dict) else out).float()
        loss = self._loss(logits, y)
        if isinstance(out, dict) and "aux" in out:
            loss = loss + 0.5 * self._loss(out["aux"].float(), y)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return {"loss": loss, "pixel_acc": acc}

    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, target = batch
        x = normalise(ctx.to_device(images), self.splits.mean, self.splits.std)
        if ctx.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = target.to(ctx.device)
        logits = ctx.models["model"](x).float()
        ctx.metrics["miou"].update(logits.argmax(1), y)
        n = len(y)
        # Plain cross-entropy, whatever the training loss: comparable across losses, and independent of the
        # training pool's class frequencies (a published weight is re-measured without rendering them).
        loss = F.cross_entropy(logits, y.long(), ignore_index=IGNORE_INDEX)
        return {"loss": (loss * n, n)}

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = family_papers(model) + optimizer_papers(c)
        adjusted = self.class_weights is not None and c.logit_adjustment
        if adjusted:
            fold_logit_adjustment(model, self.class_weights)
            papers.append(LOGIT_ADJUSTMENT)
        if c.loss in ("dice", "ce_dice"):
            papers.append(DICE_LOSS)
        if c.loss == "focal":
            papers.append(FOCAL_LOSS)
        loss = {
            "ce": "cross-entropy",
            "weighted_ce": "class-weighted cross-entropy",
            "dice": "soft Dice",
            "focal": "focal",
            "ce_dice": f"{'class-weighted ' if self.class_weights is not None else ''}cross-entropy + Dice",
        }[c.loss]
        # The small presets start the encoder from the zoo's MNIST classifier (`encoder_weights` of the
        # U-Net, `backbone_weights` of FCN / DeepLab); the rest of the network starts from scratch.
        init = c.model_args.get("encoder_weights") or c.model_args.get("backbone_weights")
        start = f"encoder initialised from the `{init}` weight of its backbone" if init else "from scratch"
        meta: dict[str, Any] = {
            "task": "semantic-segmentation",
            "labels": list(data.info["labels"]),
            "input_size": list(data.info["input_size"]),
            "mean": list(data.info["mean"]),
            "std": list(data.info["std"]),
            "ignore_index": IGNORE_INDEX,
            "background_index": 0,
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{c.model} trained on {data.name} (11 classes: background and the digits 0-9) with the "
                f"`{self.name}` recipe, {loss} loss; {start}."
                + (
                    " The class weights are taken back out of the score layer's bias (logit adjustment)."
                    if adjusted
                    else ""
                )
            ),
        }
        if c.pictures and data.test is not None:
            meta["files"] = {
                "predictions": prediction_picture(
                    model, data.test, data.info, self.picture_path("predictions.png"), count=c.pictures
                )
            }
        return model, meta


@torch.no_grad()
def prediction_picture(
    model: nn.Module, scenes: Any, info: dict[str, Any], path: Path, count: int = 6, zoom: int = 3
) -> Path:
    """Rows of *input | prediction | ground truth* for the first `count` scenes of `scenes` (an
    `InMemoryScenes`), each class in its `zoo.tasks.draw.palette` colour over the input, enlarged `zoom`
    times, with a legend of the class colours underneath."""
    from PIL import Image, ImageDraw

    from zoo.tasks.draw import grid, overlay_masks, palette, save_png

    labels = list(info["labels"])
    colors = palette(len(labels))
    images, target = scenes.get_batch(torch.arange(min(count, len(scenes))))
    device = next(model.parameters()).device
    logits = model(normalise(images.to(device), info["mean"], info["std"]))
    pred = logits.argmax(1).cpu().numpy()
    tiles = []

    def big(a: np.ndarray) -> np.ndarray:
        return np.kron(a, np.ones((zoom, zoom, 1), np.uint8)) if a.ndim == 3 else a

    for image, p, t in zip(images.permute(0, 2, 3, 1).numpy(), pred, target.numpy()):
        for m in (None, p, t):
            if m is None:
                tiles.append(big(image))
                continue
            classes = np.arange(1, len(labels))
            masks = m[None] == classes[:, None, None]
            tiles.append(big(overlay_masks(image, masks, colors[classes], alpha=0.75)))
    body = grid(tiles, columns=3)
    # Legend: a coloured square and the class name for every digit class; column titles on top.
    width = body.shape[1]
    canvas = Image.new("RGB", (width, body.shape[0] + 36), "white")
    canvas.paste(Image.fromarray(body), (0, 16))
    draw = ImageDraw.Draw(canvas)
    tile_w = images.shape[-1] * zoom + 2
    for k, title in enumerate(("input", "prediction", "ground truth")):
        draw.text((4 + k * tile_w, 2), title, fill="black")
    step = width / (len(labels) - 1)
    for k, label in enumerate(labels[1:], start=1):
        x0, y0 = int((k - 1) * step) + 4, body.shape[0] + 20
        draw.rectangle([x0, y0, x0 + 10, y0 + 10], fill=tuple(int(v) for v in colors[k]))
        draw.text((x0 + 13, y0), label, fill="black")
    return save_png(np.asarray(canvas), path)


# ------------------------------------------------------------------------------------------------ presets
# Shared digit-scene settings: AdamW + one-cycle, bf16 autocast and channels-last (about 2x the steps per
# second of fp32 on these CPUs), CE weighted by sqrt inverse frequency + Dice, fresh compositions and
# mild augmentation (no flips).
_SCENES = SegmentationConfig(
    dataset="digit_scenes_64",
    batch_size=32,
    # 16,000 compositions per epoch (the 4000 train scenes and 3 fresh sets of the same digits). Measured on
    # 2 quiet cores (2026-11-29, bf16): unet_resnet8_small 59 images/s, deeplabv3plus_resnet8_small 61,
    # fcn_resnet8_small 119; so 5 epochs (2500 steps) train in ~23 min and FCN's 10 in ~22 min. (One epoch on
    # a machine shared at load 7-10 gave unet 0.230 and fcn 0.442 test mIoU: far too short.)
    epochs=5,
    fresh_scenes=3,
    loss="ce_dice",
    class_weight_power=0.5,
    degrees=10.0,
    translate=0.05,
    scale=(0.9, 1.1),
    brightness=0.2,
    contrast=0.2,
    channel_shuffle=True,
    precision="auto",
    channels_last=True,
    optim=OptimizerConfig(name="adamw", lr=3e-3, weight_decay=1e-4),
    schedule=ScheduleConfig(name="onecycle", warmup=0.1),
)

register_preset(
    "unet_resnet8_small.scenes",
    SegmentationObjective,
    replace(
        _SCENES,
        model="unet_resnet8_small",
        # The encoder starts from the zoo's MNIST classifier (trained on the same mnist_5k train digits the
        # train scenes are made of; the test digits are unseen by both): it already tells digits apart,
        # which is what a scene segmenter trained from scratch gets wrong.
        model_args={"encoder_weights": "mnist"},
    ),
    "U-Net decoder over resnet8_small (encoder from resnet8_small.mnist) on the 64 px digit scenes",
)
register_preset(
    "deeplabv3plus_resnet8_small.scenes",
    SegmentationObjective,
    replace(_SCENES, model="deeplabv3plus_resnet8_small", model_args={"backbone_weights": "mnist"}),
    "DeepLab v3+ over resnet8_small (backbone from resnet8_small.mnist) on the 64 px digit scenes",
)
register_preset(
    "fcn_resnet8_small.scenes",
    SegmentationObjective,
    replace(_SCENES, model="fcn_resnet8_small", model_args={"backbone_weights": "mnist"}, epochs=10),
    "FCN-8s-style skip fusion over resnet8_small (backbone from resnet8_small.mnist) on the digit scenes",
)
