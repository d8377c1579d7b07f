"""Training-time augmentation and preprocessing for the recipes (the datasets themselves are `zoo.data`).

In-memory datasets (`zoo.data.InMemoryImages`) hand the engine whole uint8 batches; their augmentation
runs batched on tensors (`BatchAugment`: a random affine per sample through one ``affine_grid`` /
``grid_sample``, flips, brightness/contrast), drawing from the run's seeded generator so a resumed run
replays it exactly; a scene and its class map move together (`SceneAugment`). Per-sample datasets use
torchvision transforms v2 (`train_transform`); MixUp and CutMix are ``v2.MixUp`` / ``v2.CutMix`` on batches
(`mix_batch`). `eval_transform` rebuilds a weight's
preprocessing from its metadata; `normalise` scales a batch to [0, 1] and standardises it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zoo.data.images import uint8_resize
from zoo.errors import ConfigError

__all__ = ["BatchAugment", "SceneAugment", "eval_transform", "mix_batch", "normalise", "train_transform"]


def normalise(x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """uint8 (or [0, 255] float) batch -> float in [0, 1], then (x - mean) / std per channel."""
    x = x.float().div_(255) if x.dtype == torch.uint8 else x
    if mean is None or std is None:
        return x
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


class BatchAugment:
    """Per-sample random augmentation of a whole float batch at once (images in [0, 1]).

    An affine map per sample (rotation, translation as a fraction of the size, isotropic scale, shear)
    through one ``affine_grid``/``grid_sample``; horizontal flips; brightness and contrast jitter. All
    randomness comes from `generator`, so a resumed run draws exactly what the uninterrupted one did.
    """

    def __init__(
        self,
        degrees: float = 0.0,
        translate: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        shear: float = 0.0,
        hflip: bool = False,
        brightness: float = 0.0,
        contrast: float = 0.0,
    ):
        self.degrees, self.translate, self.scale, self.shear = degrees, translate, scale, shear
        self.hflip, self.brightness, self.contrast = hflip, brightness, contrast

    @property
    def active(self) -> bool:
        return self.has_affine or self.hflip or bool(self.brightness or self.contrast)

    @property
    def has_affine(self) -> bool:
        return bool(self.degrees or self.translate or self.shear or tuple(self.scale) != (1.0, 1.0))

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        dev = x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, device=dev, generator=generator) * (high - low) + low

        if self.has_affine:
            angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
            shear = uniform(-self.shear, self.shear) * (math.pi / 180)
            s = uniform(*self.scale)
            tx, ty = (
                uniform(-self.translate, self.translate) * 2,
                uniform(-self.translate, self.translate) * 2,
            )
            cos, sin = torch.cos(angle), torch.sin(angle)
            # The grid maps output to input coordinates: inverse scale, rotation and shear.
            theta = torch.stack(
                [
                    torch.stack([cos / s, (-sin + torch.tan(shear) * cos) / s, tx], dim=1),
                    torch.stack([sin / s, (cos + torch.tan(shear) * sin) / s, ty], dim=1),
                ],
                dim=1,
            ).to(x.dtype)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.hflip:
            flip = torch.rand(n, device=dev, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if self.brightness or self.contrast:
            b = uniform(1 - self.brightness, 1 + self.brightness).view(-1, 1, 1, 1)
            c = uniform(1 - self.contrast, 1 + self.contrast).view(-1, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x * b - mean) * c + mean).clamp_(0, 1)
        return x


class SceneAugment:
    """Per-scene random augmentation of a batch of images ``(N, C, H, W)`` in [0, 1] and their class maps
    ``(N, H, W)``, drawn from the run's generator (a resumed run replays it).

    One affine map per scene (rotation, translation, isotropic zoom) moves image and mask together: the
    image is resampled bilinearly, the mask by nearest neighbour, and what the map uncovers is black
    image and class `fill` (zero padding; a reflected border would mirror digits): background (0) for
    full masks, unlabelled (255, the ignore index) for scribbles, which label only what was drawn. Then
    brightness and contrast jitter and an optional permutation of the colour channels, which touch the image
    only.
    """

    def __init__(
        self,
        degrees: float = 0.0,
        translate: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        brightness: float = 0.0,
        contrast: float = 0.0,
        channel_shuffle: bool = False,
        fill: int = 0,
    ):
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)
        self.fill = fill
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
            if self.fill:
                # Sampled once more as ones: what the padding filled reads 0 there, whatever the class.
                covered = F.grid_sample(
                    torch.ones_like(m), grid, mode="nearest", padding_mode="zeros", align_corners=False
                )
                mask = torch.where(covered.squeeze(1) > 0.5, mask, torch.full_like(mask, self.fill))
        if self.brightness or self.contrast:
            b = uniform(1 - self.brightness, 1 + self.brightness).view(-1, 1, 1, 1)
            c = uniform(1 - self.contrast, 1 + self.contrast).view(-1, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x * b - mean) * c + mean).clamp_(0, 1)
        if self.channel_shuffle and x.shape[1] > 1:
            order = torch.argsort(torch.rand(n, x.shape[1], device=dev, generator=generator), dim=1)
            x = x.gather(1, order.view(n, -1, 1, 1).expand_as(x))
        return x, mask


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp and/or CutMix (one of the two per batch) with torchvision's v2 transforms: soft labels out."""
    if not mixup_alpha and not cutmix_alpha:
        return x, y
    from torchvision.transforms import v2

    choices = []
    if mixup_alpha:
        choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha:
        choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    mix = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
    return mix(x, y)


def train_transform(
    input_size: Sequence[int],
    crop_scale: tuple[float, float] = (1.0, 1.0),
    hflip: bool = False,
    color_jitter: float = 0.0,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
) -> Any:
    """Per-sample torchvision v2 augmentation to uint8 ``(C, H, W)``: crops and scales, flips, colour
    jitter, rotation, affine. Normalisation happens on the batch (`normalise`)."""
    from torchvision.transforms import v2

    c, h, w = input_size
    steps: list[Any] = [v2.ToImage(), v2.Grayscale(1) if c == 1 else v2.RGB()]
    if tuple(crop_scale) != (1.0, 1.0):
        steps.append(v2.RandomResizedCrop((h, w), scale=tuple(crop_scale), antialias=True))
    else:
        steps.append(v2.Resize((h, w), antialias=True))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if color_jitter:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter if c == 3 else 0))
    if degrees and not (translate or tuple(scale) != (1.0, 1.0)):
        steps.append(v2.RandomRotation(degrees))
    elif degrees or translate or tuple(scale) != (1.0, 1.0):
        steps.append(
            v2.RandomAffine(degrees, translate=(translate, translate) if translate else None, scale=scale)
        )
    steps.append(v2.ToDtype(torch.uint8, scale=True))
    return v2.Compose(steps)


def eval_transform(weights: Any) -> Any:
    """The preprocessing of a published weight, from its metadata (`zoo.Weights` or its dict):
    resize to ``input_size``, scale to [0, 1], normalise with its mean and std. PIL or tensor in."""
    from torchvision.transforms import v2

    meta = weights if isinstance(weights, dict) else weights.to_dict()
    if not meta.get("input_size"):
        raise ConfigError(f"weight {meta.get('arch')}.{meta.get('tag')} records no input_size")
    steps = [uint8_resize(meta["input_size"]), v2.ToDtype(torch.float32, scale=True)]
    if meta.get("mean") and meta.get("std"):
        steps.append(v2.Normalize(list(meta["mean"]), list(meta["std"])))
    return v2.Compose(steps)
