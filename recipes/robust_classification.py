"""Classification that holds up on digits written and scanned elsewhere: the classification recipe plus
batched "other scanner, other pen" augmentation, and a temperature fitted on a held-out validation split.

`StyleAugment` draws, per training image and each with probability ``style_p``, a change of the kinds
`zoo.data.corruptions` measures: a thicker or thinner pen (grey dilation / erosion by max-pooling), blur,
a lower-resolution scan (down- and upsampling), fainter ink (contrast toward the mean), sensor noise and a
smooth elastic warp, on top of the classification recipe's random affine map (shift, scale, rotation).
Its parameters are drawn from continuous ranges by the run's generator, so it never replays the suite's
fixed, seeded test images; the kinds are the suite's, as the issue asks ("train with augmentations that
close the gap"), so the suite measures robustness to these kinds of change, not to unseen kinds.

At publish, the objective measures the weight's robustness (`zoo.reliability`), fits the temperature on
the run's validation split (``val_per_class``, never trained on) and records both in the card.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recipes.classification import MNIST_CONFIG, ClassificationConfig, ClassificationObjective
from recipes.config import extend_config
from recipes.engine import Context, Data, OptimizerConfig, ScheduleConfig, register_preset
from zoo.errors import ConfigError

__all__ = ["RobustClassificationConfig", "RobustClassificationObjective", "StyleAugment"]

MNIST_C = "https://arxiv.org/abs/1906.02337"  # Mu & Gilmer 2019
ELASTIC = "https://doi.org/10.1109/ICDAR.2003.1227801"  # Simard et al. 2003, elastic distortions
TEMPERATURE = "https://arxiv.org/abs/1706.04599"  # Guo et al. 2017, temperature scaling


@dataclass
class RobustClassificationConfig(ClassificationConfig):
    # Own config (not fields of ClassificationConfig): the published classifiers' recipe_configs load
    # back key for key only if their config class keeps its keys.
    style_p: float = 0.25  # probability of each style change (pen, blur, resolution, ink, noise, warp)
    max_blur: float = 1.6  # Gaussian blur sigma drawn in [0.3, max_blur] px
    min_res: int = 8  # lower-resolution scans are drawn in [min_res, 20] px
    min_contrast: float = 0.15  # ink contrast factor drawn in [min_contrast, 1]
    max_noise: float = 0.4  # Gaussian noise std drawn in [0, max_noise] (fraction of full scale)
    max_warp: float = 2.5  # elastic warp, RMS displacement drawn in [0.5, max_warp] px

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.style_p <= 1:
            raise ConfigError(f"config key 'style_p': {self.style_p} must be in [0, 1]")
        if not 2 <= self.min_res <= 20:
            raise ConfigError(f"config key 'min_res': {self.min_res} must be in [2, 20]")
        if not 0 < self.min_contrast <= 1:
            raise ConfigError(f"config key 'min_contrast': {self.min_contrast} must be in (0, 1]")
        self.require_nonnegative("max_blur", "max_noise", "max_warp")


class StyleAugment:
    """Per-sample pen, blur, resolution, ink, noise and warp changes of a float batch in [0, 1], drawn from
    `generator` (a resumed run draws what the uninterrupted one did). Each change hits a random subset."""

    def __init__(self, c: RobustClassificationConfig):
        self.c = c

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c, n = self.c, x.shape[0]
        if not c.style_p:
            return x

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, device=x.device, generator=generator)

        def pick() -> torch.Tensor:
            return (rand(n) < c.style_p).view(-1, 1, 1, 1)

        def uniform(low: float, high: float) -> torch.Tensor:
            return (rand(n) * (high - low) + low).view(-1, 1, 1, 1)

        # Pen: dilation is a max filter, erosion a min filter (max of the negative). 2x2 or 3x3, padded so
        # the size is kept (a 2x2 window shifts by half a pixel, as grey morphology with that footprint does).
        k = 2 + int(rand(1).item() < 0.5)
        pad = (0, 1, 0, 1) if k == 2 else (1, 1, 1, 1)
        thick = F.max_pool2d(F.pad(x, pad), k, stride=1)
        thin = -F.max_pool2d(F.pad(-x, pad, value=-1.0), k, stride=1)
        x = torch.where(pick(), torch.where(rand(n).view(-1, 1, 1, 1) < 0.5, thick, thin), x)
        # Elastic warp: a smooth random field (blurred white noise, Simard et al.) scaled to an RMS in px.
        field = torch.randn(n, 2, *x.shape[-2:], device=x.device, generator=generator)
        field = _blur(field, 4.0)
        rms = field.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-8)
        field = field / rms * uniform(0.5, c.max_warp) * (2.0 / x.shape[-1])
        base = F.affine_grid(
            torch.eye(2, 3, device=x.device).expand(n, 2, 3), list(x.shape), align_corners=False
        )
        warped = F.grid_sample(x, base + field.permute(0, 2, 3, 1), align_corners=False)
        x = torch.where(pick(), warped, x)
        # Blur: one sigma per batch (a per-sample kernel would need a loop), on a random subset.
        x = torch.where(pick(), _blur(x, 0.3 + rand(1).item() * (c.max_blur - 0.3)), x)
        # Lower resolution: one size per batch, antialiased down, bilinear up.
        size = c.min_res + int(rand(1).item() * (21 - c.min_res))
        small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        low = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.where(pick(), low, x)
        # Fainter ink: contrast toward the image mean (what the suite's contrast does).
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = torch.where(pick(), mean + (x - mean) * uniform(c.min_contrast, 1.0), x)
        # Sensor noise.
        noise = torch.randn(x.shape, device=x.device, generator=generator) * uniform(0.0, c.max_noise)
        x = torch.where(pick(), x + noise, x)
        return x.clamp_(0, 1)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


class RobustClassificationObjective(ClassificationObjective):
    name = "robust_classification"
    Config = RobustClassificationConfig
    config: RobustClassificationConfig

    def data(self) -> Data:
        data = super().data()
        self.style = StyleAugment(self.config)
        return data

    def inputs(self, ctx: Context, images: torch.Tensor, train: bool) -> torch.Tensor:
        from recipes.augment import normalise

        x = ctx.to_device(images).float().div_(255)
        if train:
            # The affine map first (shift, scale, rotation), then the style changes on the moved digit.
            if self.augment.active:
                x = self.augment(x, ctx.generator)
            x = self.style(x, ctx.generator)
        return normalise(x, self.splits.mean, self.splits.std)

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        from zoo.reliability import QUICK_STEP, measure_calibration, measure_robustness

        model, meta = super().publish(model, data)
        meta["papers"] = list(dict.fromkeys([*meta["papers"], MNIST_C, ELASTIC, TEMPERATURE]))
        meta["description"] = (
            f"{self.config.model} trained on {data.name} with pen, blur, resolution, ink, noise and warp "
            f"augmentation (the `{self.name}` recipe): robust to digits written and scanned elsewhere."
        )
        if data.val is None:
            raise ConfigError(
                "the robust recipe fits its temperature on a validation split: set val_per_class"
            )
        probe = _Meta(meta, data.name)

        @torch.no_grad()
        def run(x: Any) -> Any:
            return model(torch.from_numpy(x)).float().numpy()

        quick = measure_robustness(run, probe, QUICK_STEP)
        # A smoke run (eval_limit) measures the quick subset only, as it evaluates a few items only.
        robustness = dict(quick) if self.config.eval_limit else measure_robustness(run, probe)
        robustness["quick"] = {k: quick[k] for k in ("images", "clean", "mean", "worst", "worst_acc")}
        calibration = measure_calibration(run, probe, val=self.splits.val, held_out=True)
        meta.update(robustness=robustness, calibration=calibration, temperature=calibration["temperature"])
        return model, meta


class _Meta:
    """What `zoo.reliability` reads of a weight before it is published: its preprocessing and dataset."""

    def __init__(self, meta: dict[str, Any], dataset: str):
        from zoo.tasks import get_task

        self.name, self.dataset = "the new weight", dataset
        self.mean, self.std = tuple(meta["mean"]), tuple(meta["std"])
        self.input_size, self.labels = tuple(meta["input_size"]), tuple(meta["labels"])
        self.task_object = get_task(meta["task"])


# ------------------------------------------------------------------------------------------------ presets
def _from_mnist_config(**changes: Any) -> RobustClassificationConfig:
    """The classification recipe's shared MNIST settings, as this recipe's config, with `changes`."""
    return extend_config(RobustClassificationConfig, MNIST_CONFIG, **changes)


register_preset(
    "resnet8_small.mnist_robust",
    RobustClassificationObjective,
    _from_mnist_config(
        model="resnet8_small",
        epochs=60,
        channels_last=True,
        logit_scale=0.125,
        val_per_class=50,  # 500 train images held out: the temperature is fitted on them
        degrees=20.0,
        translate=0.2,
        scale=(0.6, 1.4),  # the suite's shifts reach 7 px and its zooms +-40%
        optim=OptimizerConfig(name="sgd", lr=0.4, momentum=0.9, nesterov=True, weight_decay=2e-3),
    ),
    "ResNet-8 (small input) with pen, blur, resolution, ink, noise and warp augmentation: robust MNIST 5k "
    "classifier with a temperature fitted on a held-out validation split",
)

# The first MNIST weights other than ResNet-8 and the plain CNN (which other recipes start from or measure
# with): trained the robust way, as issue 16 asks of every published classifier. The suite's shifts
# (up to 7 px) and zooms (+-40%) need the wider affine map; 500 train images are held out for the
# temperature.
_ROBUST_AFFINE = {"degrees": 20.0, "translate": 0.2, "scale": (0.6, 1.4), "val_per_class": 50}

register_preset(
    "cnn_dws.mnist",
    RobustClassificationObjective,
    _from_mnist_config(
        model="cnn_dws",
        epochs=60,
        channels_last=True,
        logit_scale=0.125,
        precision="fp32",  # depthwise convolutions gain nothing from bf16 on CPU (measured: slower)
        optim=OptimizerConfig(name="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=2e-3),
        **_ROBUST_AFFINE,
    ),
    "depthwise-separable CNN (MobileNet-style) on MNIST 5k, with pen, blur, resolution, ink, noise and "
    "warp augmentation and a held-out temperature",
)
register_preset(
    "mlp.mnist",
    RobustClassificationObjective,
    _from_mnist_config(
        model="mlp",
        # With the ResNet's map and style_p 0.25 (100 epochs) the MLP fell to 96.1% clean (worst corruption
        # 89.9%): a milder map, fewer style changes and more epochs keep it at 97.9% (worst 92.5%).
        epochs=150,
        **{**_ROBUST_AFFINE, "degrees": 15.0, "translate": 0.16, "scale": (0.8, 1.2)},
        style_p=0.15,
        optim=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=0.05),
        schedule=ScheduleConfig(name="onecycle", warmup=0.15),
    ),
    "2x512 MLP with dropout on MNIST 5k, AdamW and one-cycle, with pen, blur, resolution, ink, noise and "
    "warp augmentation and a held-out temperature",
)
register_preset(
    "lstm.mnist",
    RobustClassificationObjective,
    _from_mnist_config(
        model="lstm",
        epochs=60,
        grad_clip=1.0,
        precision="fp32",
        optim=OptimizerConfig(name="adamw", lr=3e-3, weight_decay=0.01),
        schedule=ScheduleConfig(name="onecycle", warmup=0.15),
        **_ROBUST_AFFINE,
    ),
    "2-layer LSTM reading the 28 rows of a digit as a sequence, AdamW, one-cycle, gradient clipping, with "
    "pen, blur, resolution, ink, noise and warp augmentation and a held-out temperature",
)
