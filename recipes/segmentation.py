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

**From scribbles** (``targets="scribbles"``, issue 14's weak supervision): the train scenes' labels are
their scribbles (`zoo.data.scribbles`: a stroke along each digit's skeleton and a few on the background,
~3% of the pixels), the rest unlabelled. The loss is partial cross-entropy over the scribbled pixels only
(``ce``, or ``weighted_ce`` with weights from the scribbled pixels' class counts, never the full masks'),
plus ``crf_weight`` times the gated CRF loss (`zoo.losses.gated_crf_loss`, Obukhov et al. 2019) on every
pixel, which spreads the strokes over regions of similar colour. With ``propagate_k`` the scribbles are first
spread over each train scene by colour (`zoo.data.scribbles.propagate_scribbles`, ScribbleSup's propagation
step: a pixel takes the class its k nearest scribbled pixels in colour agree on; with ``propagate_share``
also unmixed against the background's colour, which labels every pixel), and the pixels only the spread
labelled add a cross-entropy of background against any digit, plus ``spread_identity`` times a which-digit
cross-entropy on the spread digit pixels (at 0 the strokes alone say which digit). Dice needs complete
masks (it is refused). Evaluation is unchanged: the full semantic maps of the test scenes.

Metrics (`zoo.metrics.MeanIoU` over the whole split, as the task's `zoo verify` measures): ``miou`` over
the 11 classes, ``pixel_acc``, ``iou_<class>``; and ``loss``, plain cross-entropy whatever the training
loss (comparable across losses; no dependence on the training pool). The scribble recipe also records the
mIoU's foreground/identity split (``fg_iou``, ``fg_precision``, ``fg_recall``, ``identity``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recipes.augment import SceneAugment, normalise
from recipes.classification import family_papers, optimizer_papers
from recipes.config import extend_config
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
from zoo.losses import (
    DICE_LOSS,
    FOCAL_LOSS,
    GATED_CRF_LOSS,
    class_frequency_weights,
    gated_crf_loss,
    segmentation_loss,
)

__all__ = [
    "ScribbleSegmentationConfig",
    "ScribbleSegmentationObjective",
    "SegmentationConfig",
    "SegmentationObjective",
    "TrainPool",
    "prediction_picture",
]

IGNORE_INDEX = 255  # the task's default: a target value no loss or metric counts (unscribbled pixels)
PARTIAL_LOSSES = ("ce", "weighted_ce")  # losses that need no complete mask: for targets="scribbles"
LOGIT_ADJUSTMENT = "https://arxiv.org/abs/2007.07314"  # Menon et al., Long-tail learning via logit adjustment


def fold_logit_adjustment(model: nn.Module, class_weights: torch.Tensor) -> None:
    """Subtract ``log(class_weights)`` from the bias of `model`'s score layer (``model.classifier``, a conv
    with a bias), in place: the logits become ``logits - log w`` at every pixel (resizing the logits
    bilinearly, as FCN and DeepLab do, keeps a per-class constant). A model whose class logits come from
    more than one layer says how with a ``subtract_class_bias(delta)`` method (`EncoderUNet`)."""
    if hasattr(model, "subtract_class_bias"):
        model.subtract_class_bias(class_weights.log())
        return
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
    # Full-mask training: the scribble keys' values (not config fields here, so the published full-mask
    # weights' recipe_configs load back key for key; `ScribbleSegmentationConfig` makes them fields).
    targets = "masks"
    crf_weight = 0.0
    crf_radius = 2
    crf_sigma_xy = 2.0
    crf_sigma_rgb = 0.1
    crf_downsample = 1
    crf_classes = "all"
    propagate_k = 0
    propagate_share = 0.0
    spread_identity = 0.0

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative(
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
            "crf_weight",
            "propagate_k",
            "spread_identity",
        )
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(
                f"config key 'scale': {list(self.scale)} must be [low, high] with 0 < low <= high"
            )
        if self.brightness >= 1 or self.contrast >= 1:
            raise ConfigError("config keys 'brightness' and 'contrast' must be < 1")
        if self.crf_classes not in ("all", "foreground"):
            raise ConfigError(f"config key 'crf_classes': {self.crf_classes!r} must be 'all' or 'foreground'")
        if self.targets not in ("masks", "scribbles"):
            raise ConfigError(f"config key 'targets': {self.targets!r} must be 'masks' or 'scribbles'")
        if self.propagate_k and self.targets != "scribbles":
            raise ConfigError("config key 'propagate_k' spreads scribbles: it needs targets='scribbles'")
        if not 0 <= self.propagate_share < 1:
            raise ConfigError(f"config key 'propagate_share': {self.propagate_share} must be in [0, 1)")
        if (self.spread_identity or self.propagate_share) and not self.propagate_k:
            raise ConfigError(
                "config keys 'spread_identity' and 'propagate_share' act on the spread pixels: they need "
                "propagate_k > 0 (the scribbles spread by colour)"
            )
        if self.targets == "scribbles" and self.loss not in PARTIAL_LOSSES:
            raise ConfigError(
                f"config key 'loss': {self.loss!r} needs complete masks; with targets='scribbles' use one of "
                f"{list(PARTIAL_LOSSES)} (partial cross-entropy over the scribbled pixels)"
            )
        crf = (self.crf_radius, self.crf_sigma_xy, self.crf_sigma_rgb, self.crf_downsample)
        if self.crf_weight and (crf[0] < 1 or crf[1] <= 0 or crf[2] <= 0 or crf[3] < 1):
            raise ConfigError(
                "config keys 'crf_radius' (>= 1), 'crf_sigma_xy', 'crf_sigma_rgb' (> 0) and 'crf_downsample' "
                f"(>= 1) set the CRF loss: got {list(crf)}"
            )


@dataclass
class ScribbleSegmentationConfig(SegmentationConfig):
    """Segmentation trained on the scenes' scribbles (or, with ``targets="masks"``, on full masks with the CRF
    term): `SegmentationConfig` plus the scribble and CRF keys."""

    targets: Literal["masks", "scribbles"] = (
        "scribbles"  # train on the scenes' scribbles or full semantic maps
    )
    crf_weight: float = 0.0  # loss += crf_weight * gated CRF loss (zoo.losses.gated_crf_loss) on all pixels
    crf_radius: int = 2  # the CRF's window: (2 r + 1)^2 - 1 neighbours of each pixel
    crf_sigma_xy: float = 2.0  # the CRF affinity's position bandwidth, pixels
    crf_sigma_rgb: float = 0.1  # the CRF affinity's colour bandwidth, on images in [0, 1]
    crf_downsample: int = 1  # the CRF runs on 2x2 block means at 2 (a quarter of the cost, twice the reach)
    # What the CRF compares: every class's probability ("all"), or only background against digit
    # ("foreground": p_bg and 1 - p_bg), so that it draws the digits' outlines without pulling two touching
    # digits of similar colour towards one class (measured: at weight 1 on all classes, mIoU fell to 0.12).
    crf_classes: Literal["all", "foreground"] = "all"
    # 0: train on the scribbles as drawn. k > 0: also spread them over each scene by colour
    # (`zoo.data.scribbles.propagate_scribbles`: a pixel takes the class its k nearest scribbled pixels in
    # colour agree on, unanimously; ScribbleSup's propagation step), and train the pixels only the spread
    # labelled on background against digit.
    propagate_k: int = 0
    # With propagate_k > 0: a pixel spread to a digit stays one only where its colour is at least this share of
    # the digit's (unmixed against the nearest background stroke's; `propagate_scribbles`' object_share), else
    # it is spread background; the pixels whose votes split are unmixed the same way against their nearest
    # digit stroke's colour, so every pixel is labelled. 0: the vote alone (its digits come out fat, 8% of
    # the pixels it gives a digit being background, and it leaves 5% of the pixels, mostly edges, unlabelled).
    propagate_share: float = 0.0
    # With propagate_k, the spread digit pixels also learn which digit (the class of the strokes whose colour
    # they took): loss += spread_identity * -log p(class | digit), averaged over the spread digit pixels
    # (apart from the background-vs-digit term, so the background's 8:1 majority does not drown it). With
    # both terms a spread digit pixel pays cross-entropy on its spread class; 0 leaves identity to the strokes.
    spread_identity: float = 0.0


# The last rendered pool, by what determines it: scenes are a pure function of these, so runs in one
# process (the presets' smoke tests, a search's trials) render the same pool once, not once per run.
_POOL_CACHE: dict[tuple, Any] = {}
# The cached pool's training maps with its scribbles spread by colour: (k, share) -> (that pool, the maps). The pool
# itself is kept and compared by identity (an id() could be reused by the next pool once this one is freed).
_PROPAGATED: dict[tuple[int, float], tuple[Any, torch.Tensor]] = {}
# Codes in a training map with propagate_k for pixels no stroke labelled but the spread did: SPREAD_OFFSET plus
# the spread class (SPREAD_BACKGROUND for background). They supervise background against digit, and which digit
# only at `spread_identity`. Above the 11 classes, below IGNORE_INDEX, so the augmentation moves them like any
# class (nearest neighbour) and class counts skip them.
SPREAD_OFFSET = 200
SPREAD_BACKGROUND = SPREAD_OFFSET


def _render_pool(train: Any, copies: int, scribbles: bool = False, count: int | None = None) -> Any:
    """The train split's (first `count`) scenes plus `copies` fresh compositions of them, in memory (with
    their scribbles when `scribbles`)."""
    key = (
        train.split,
        train.num,
        train.config,
        train.seed,
        train.val_per_class,
        train.start,
        copies,
        scribbles,
        count,
    )
    if key not in _POOL_CACHE:
        _POOL_CACHE.clear()  # one pool at a time: 16,000 scenes are ~200 MB
        _POOL_CACHE[key] = _render(train, copies, scribbles, count)
    return _POOL_CACHE[key]


class TrainPool(torch.utils.data.Dataset):
    """The training scenes, rendered on first use: an evaluation of a published weight (the test suite,
    ``zoo verify``) sets the objective up without ever drawing the 16,000 training compositions.

    Batches are ``(images, targets)``: the semantic maps, or with ``scribbles=True`` the scribble maps
    (`IGNORE_INDEX` where unlabelled); `labels` are those targets for the whole pool. `count` keeps the
    first `count` scenes of each composition only (a smoke run's few steps)."""

    def __init__(
        self,
        train: Any,
        copies: int,
        scribbles: bool = False,
        propagate_k: int = 0,
        propagate_share: float = 0.0,
        count: int | None = None,
    ):
        self.train, self.copies, self.scribbles = train, copies, scribbles
        self.propagate_k, self.propagate_share = propagate_k, propagate_share
        self.count = min(count, len(train)) if count else None

    def __len__(self) -> int:
        return (self.count or len(self.train)) * (1 + self.copies)

    @property
    def scenes(self) -> Any:
        return _render_pool(self.train, self.copies, self.scribbles, self.count)

    @property
    def semantic(self) -> torch.Tensor:
        """The full semantic maps (N, H, W) uint8, whatever the pool trains on."""
        return self.scenes.semantic

    @property
    def labels(self) -> torch.Tensor:
        """What the network is trained on, (N, H, W) uint8: semantic maps, or scribbles; with `propagate_k`,
        the pixels the spread by colour labelled and no stroke did hold `SPREAD_OFFSET` + their spread class."""
        if not self.scribbles:
            return self.scenes.semantic
        if not self.propagate_k:
            return self.scenes.scribbles
        scenes, key = self.scenes, (self.propagate_k, self.propagate_share)
        cached = _PROPAGATED.get(key)
        if cached is None or cached[0] is not scenes:
            from zoo.data.scribbles import propagate_scribbles

            drawn = scenes.scribbles
            spread = propagate_scribbles(scenes.images, drawn, *key)
            coded = torch.where(spread == IGNORE_INDEX, IGNORE_INDEX, spread + SPREAD_OFFSET).to(torch.uint8)
            _PROPAGATED.clear()  # follows the one cached pool
            _PROPAGATED[key] = (scenes, torch.where(drawn != IGNORE_INDEX, drawn, coded))
        return _PROPAGATED[key][1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scenes.images[i], self.labels[i].long()

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scenes.images[indices], self.labels[indices].long()


def _render(train: Any, copies: int, scribbles: bool = False, count: int | None = None) -> Any:
    from zoo.data import DigitScenes, InMemoryScenes

    parts = [
        DigitScenes(
            train.split,
            count or train.num,
            train.config,
            train.seed,
            train.val_per_class,
            k * train.num if k else train.start,
            scribbles,
        ).to_memory()
        for k in range(copies + 1)
    ]
    if len(parts) == 1:
        return parts[0]
    return InMemoryScenes(
        torch.cat([p.images for p in parts]),
        torch.cat([p.semantic for p in parts]),
        [c for p in parts for c in p.captions],
        torch.cat([p.scribbles for p in parts]) if scribbles else None,
    )


class SegmentationObjective(Objective):
    name = "segmentation"
    Config = SegmentationConfig
    config: SegmentationConfig
    foreground_split = False  # MeanIoU's foreground/identity split too (the published cards' metrics: no)

    def data(self) -> Data:
        from zoo.data import load_dataset

        c = self.config
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.splits = splits
        scribbles = c.targets == "scribbles"
        spread = (c.propagate_k, c.propagate_share) if scribbles else (0, 0.0)
        # A smoke run (eval_limit) trains a few steps: it renders (and spreads) as many train scenes of each
        # composition as a batch needs, not the 4,000 x (1 + fresh_scenes) of a real run (the scribble
        # preset's 16,000 took its smoke run 3.5 minutes on 2 cores), as the instance recipe's pool does.
        limit = c.eval_limit or None
        train = TrainPool(
            splits.train, c.fresh_scenes, scribbles, *spread, limit and max(limit, c.batch_size)
        )
        val = splits.val.to_memory() if splits.val is not None else None
        test = splits.test.to_memory()
        self.train_pool = train
        self.augment = SceneAugment(
            c.degrees,
            c.translate,
            tuple(c.scale),
            c.brightness,
            c.contrast,
            c.channel_shuffle,
            fill=IGNORE_INDEX if scribbles else 0,
        )
        split = splits.split
        if c.fresh_scenes and limit:
            split += f"; trained on the first {train.count} scenes of {1 + c.fresh_scenes} compositions"
        elif c.fresh_scenes:
            split += (
                f"; trained on {len(train)} compositions of the same train digits (scenes 0..{len(train) - 1} "
                "of the train split)"
            )
        if scribbles:
            split += (
                "; trained on the train scenes' scribbles only (zoo.data.scribbles), tested on full masks"
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
        background = 0 if self.foreground_split else None
        miou = MeanIoU(len(labels), IGNORE_INDEX, labels, validate_args=False, background_index=background)
        return {"miou": miou}

    @property
    def class_weights(self) -> torch.Tensor | None:
        c = self.config
        if c.loss not in ("weighted_ce", "ce_dice") or not c.class_weight_power:
            return None
        if not hasattr(self, "_weights"):
            # Counted over what the network is trained on: with scribbles, the scribbled pixels only (their
            # class balance is not the full masks', and the full masks are not the recipe's to read).
            labels, classes = self.train_pool.labels.flatten().long(), len(self.splits.labels)
            counts = torch.bincount(labels[labels < classes], minlength=classes)
            self._weights = class_frequency_weights(counts, c.class_weight_power, c.max_class_weight or None)
        return self._weights

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        return segmentation_loss(
            logits, target, c.loss, self.class_weights, IGNORE_INDEX, c.dice_weight, c.focal_gamma
        )

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        c = self.config
        images, target = batch
        x = ctx.to_device(images).float().div_(255)
        y = target.to(ctx.device, non_blocking=True)
        if self.augment.active:
            x, y = self.augment(x, y, ctx.generator)
        colours = x
        if c.propagate_k:  # the spread pixels have their own terms below: out of the strokes' CE
            spread = (y >= SPREAD_OFFSET) & (y != IGNORE_INDEX)
            spread_class = torch.where(spread, y - SPREAD_OFFSET, 0)
            digit = spread_class > 0
            y = torch.where(spread, IGNORE_INDEX, y)
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
        logs = {}
        if c.propagate_k and spread.any():
            # Cross-entropy of background against any digit on the spread pixels: log p(bg), and
            # log p(digit) = logsumexp of the digits' logits - logsumexp of all.
            total, any_digit = logits.logsumexp(1), logits[:, 1:].logsumexp(1)
            log_p = torch.where(digit, any_digit, logits[:, 0]) - total
            spread_loss = -log_p[spread].mean()
            loss = loss + spread_loss
            logs["spread"] = spread_loss.detach()
            if c.spread_identity and digit.any():
                # Which digit, given a digit: log p(c | digit) = logit_c - logsumexp of the digits' logits.
                log_c = logits.gather(1, spread_class[:, None]).squeeze(1) - any_digit
                identity = -log_c[digit].mean()
                loss = loss + c.spread_identity * identity
                logs["identity"] = identity.detach()
        if c.crf_weight:
            probs = logits.softmax(1)
            if c.crf_classes == "foreground":  # background against any digit (the config says why)
                probs = torch.stack([probs[:, 0], 1 - probs[:, 0]], 1)
            # The CRF compares the colours the network saw (augmented, before normalisation).
            crf = gated_crf_loss(
                probs,
                colours,
                c.crf_radius,
                c.crf_sigma_xy,
                c.crf_sigma_rgb,
                downsample=c.crf_downsample,
            )
            loss = loss + c.crf_weight * crf
            logs["crf"] = crf.detach()
        labelled = y != IGNORE_INDEX
        acc = (logits.detach().argmax(1) == y)[labelled].float().mean()
        return {"loss": loss, "pixel_acc": acc, **logs}

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

    def test_scribbles(self, count: int) -> torch.Tensor:
        """The first `count` test scenes' scribbles (never trained on): what the card's picture draws."""
        test = self.splits.test
        return torch.from_numpy(np.stack([test.scribble_map(i) for i in range(min(count, len(test)))]))

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
        if c.crf_weight:
            papers.append(GATED_CRF_LOSS)
        loss = {
            "ce": "cross-entropy",
            "weighted_ce": "class-weighted cross-entropy",
            "dice": "soft Dice",
            "focal": "focal",
            "ce_dice": f"{'class-weighted ' if self.class_weights is not None else ''}cross-entropy + Dice",
        }[c.loss]
        if c.targets == "scribbles":
            loss = f"partial {loss} on the scribbled pixels only ({scribble_summary(self.train_pool.scenes.scribbles)})"
            if c.propagate_k:
                which = (
                    f" + {c.spread_identity:g} x which-digit cross-entropy on the spread digit pixels"
                    if c.spread_identity
                    else ""
                )
                loss += (
                    " + background-vs-digit cross-entropy on the scribbles spread by colour (each scene's pixels "
                    f"whose {c.propagate_k} nearest scribbled pixels in colour agree"
                    + (
                        f", then unmixed: a pixel is a digit's only where its colour is at least "
                        f"{c.propagate_share:g} of that digit's against the background's, split votes included"
                        if c.propagate_share
                        else ""
                    )
                    + "; "
                    f"{scribble_summary(self.train_pool.labels)}){which}"
                )
            if c.crf_weight:
                loss += (
                    f" + {c.crf_weight:g} x gated CRF loss (window {2 * c.crf_radius + 1}x{2 * c.crf_radius + 1} "
                    f"of {c.crf_downsample}x{c.crf_downsample}-pixel blocks, sigma_xy {c.crf_sigma_xy:g} blocks, "
                    f"sigma_rgb {c.crf_sigma_rgb:g}"
                    f"{', on background vs digit' if c.crf_classes == 'foreground' else ''})"
                )
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
                    model,
                    data.test,
                    data.info,
                    self.picture_path("predictions.png"),
                    count=c.pictures,
                    scribbles=self.test_scribbles(c.pictures) if c.targets == "scribbles" else None,
                )
            }
        return model, meta


def scribble_summary(scribbles: torch.Tensor) -> str:
    """How much a stack of scribble maps (N, H, W) labels, as the card says it."""
    from zoo.data.scribbles import labelled_fraction

    return (
        f"{labelled_fraction(scribbles.numpy()):.2%} of the {len(scribbles):,} train scenes' pixels labelled"
    )


class ScribbleSegmentationObjective(SegmentationObjective):
    """`SegmentationObjective` on a `ScribbleSegmentationConfig` (the training code reads the same keys)."""

    name = "scribble_segmentation"
    Config = ScribbleSegmentationConfig
    config: ScribbleSegmentationConfig
    # Weak labels miss in two ways, so the card splits its mIoU (`zoo.metrics.MeanIoU`'s background_index):
    # finding the digits (fg_iou, fg_precision, fg_recall) and telling which digit each is (identity).
    foreground_split = True


@torch.no_grad()
def prediction_picture(
    model: nn.Module,
    scenes: Any,
    info: dict[str, Any],
    path: Path,
    count: int = 6,
    zoom: int = 3,
    scribbles: torch.Tensor | None = None,
) -> Path:
    """Rows of *input | prediction | ground truth* for the first `count` scenes of `scenes` (an
    `InMemoryScenes`), each class in its `zoo.tasks.draw.palette` colour over the input, enlarged `zoom`
    times, with a legend of the class colours underneath. With `scribbles` (N, H, W), the scenes' scribble
    maps, a *scribbles* column after the input shows the strokes opaque (background strokes in the
    background class's colour), unlabelled pixels as the input."""
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

    titles = ("input", "prediction", "ground truth")
    if scribbles is not None:
        titles = ("input", "scribbles", "prediction", "ground truth")
    for i, (image, p, t) in enumerate(zip(images.permute(0, 2, 3, 1).numpy(), pred, target.numpy())):
        tiles.append(big(image))
        if scribbles is not None:
            every = np.arange(len(labels))  # background strokes too: they are labels
            strokes = scribbles[i].numpy()[None] == every[:, None, None]
            tiles.append(big(overlay_masks(image, strokes, colors[every], alpha=1.0)))
        for m in (p, t):
            classes = np.arange(1, len(labels))
            masks = m[None] == classes[:, None, None]
            tiles.append(big(overlay_masks(image, masks, colors[classes], alpha=0.75)))
    body = grid(tiles, columns=len(titles))
    # Legend: a coloured square and the class name for every digit class; column titles on top.
    width = body.shape[1]
    canvas = Image.new("RGB", (width, body.shape[0] + 36), "white")
    canvas.paste(Image.fromarray(body), (0, 16))
    draw = ImageDraw.Draw(canvas)
    tile_w = images.shape[-1] * zoom + 2
    for k, title in enumerate(titles):
        draw.text((4 + k * tile_w, 2), title, fill="black")
    # The legend: the digits, and the background's colour too where scribbles show it.
    first = 0 if scribbles is not None else 1
    step = width / (len(labels) - first)
    for k, label in enumerate(labels[first:], start=first):
        x0, y0 = int((k - first) * step) + 4, body.shape[0] + 20
        label = "bg" if k == 0 else label
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
register_preset(
    "unet_resnet8_small.scenes_scribbles",
    ScribbleSegmentationObjective,
    replace(
        extend_config(ScribbleSegmentationConfig, _SCENES),
        model="unet_resnet8_small",
        model_args={"encoder_weights": "mnist"},
        # Scribbles instead of masks, on the same architecture, optimiser, augmentation and budget (2,500
        # steps over 16,000 compositions per epoch; ~24 min on 2 idle cores) as unet_resnet8_small.scenes.
        # Dice needs complete masks: partial cross-entropy on the strokes, unweighted (they label digits
        # about as often as the background: 1.8% against 1.3% of pixels). Beside it, the strokes spread over
        # each scene by colour (propagate_k, ScribbleSup's first step), then unmixed (propagate_share: a pixel
        # is a digit's only where its colour is at least half that digit's against the background's), which
        # labels every pixel, 99.3% of them right on train scenes: background against digit on all of them,
        # and which digit on the spread digit pixels (spread_identity). Measured at this budget (the card's
        # ablations), test mIoU: 0.641 here; 0.581 without the unmixing (the vote's digits are fat and its
        # split votes, 5% of the pixels, mostly edges, unlabelled); 0.580 with the spread pixels saying
        # background or digit only (identity from the strokes alone: 78% of the pixels, against 84% here);
        # 0.381 with the strokes alone (every digit a blob). A gated CRF loss on background vs digit (the crf_*
        # keys below, at crf_weight=0.3) added nothing to the background/digit spread (0.576 against 0.580);
        # over all 11 classes its Potts term merged touching digits (mIoU 0.12 at weight 1).
        targets="scribbles",
        loss="ce",
        propagate_k=10,
        propagate_share=0.5,
        spread_identity=1.0,
        crf_weight=0.0,
        crf_radius=1,
        crf_downsample=1,
        crf_classes="foreground",
    ),
    "U-Net over resnet8_small trained on the digit scenes' scribbles (~3% of pixels), spread over each "
    "scene by colour",
)
