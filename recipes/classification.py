"""Image classification: cross-entropy (label smoothing, MixUp/CutMix soft targets) on any registered classifier.

The presets reproduce the zoo's published MNIST weights (``zoo train cnn.mnist`` ...) on the MNIST 5k
split of `zoo.data` (train 4000, test 1000, test never seen in training), each in minutes on 2 CPU
cores; ``mlp.mnist``, ``cnn_dws.mnist`` and ``lstm.mnist`` are trained by this recipe plus style
augmentation (`recipes.robust_classification`).

``logit_scale`` multiplies the logits during training (a forward hook on the classifier); the published
weight has the scale folded into the classifier's weight and bias, so it computes the same function with
no hook, and the test metrics are measured on that published module.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from recipes.augment import BatchAugment, mix_batch, normalise, train_transform
from recipes.engine import (
    Context,
    Data,
    Objective,
    ObjectiveConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    labelled_image_info,
    register_preset,
)
from zoo.data import ImageSplits, list_datasets, load_dataset
from zoo.errors import ConfigError
from zoo.losses import LABEL_SMOOTHING, cross_entropy

__all__ = ["ClassificationConfig", "ClassificationObjective"]

ONE_CYCLE = "https://arxiv.org/abs/1708.07120"  # Smith & Topin, super-convergence with one-cycle
MIXUP = "https://arxiv.org/abs/1710.09412"
CUTMIX = "https://arxiv.org/abs/1905.04899"
NESTEROV = "https://proceedings.mlr.press/v28/sutskever13.html"
ADAM = "https://arxiv.org/abs/1412.6980"
ADAMW = "https://arxiv.org/abs/1711.05101"


@dataclass
class ClassificationConfig(ObjectiveConfig):
    # model, model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = "resnet8_small"
    dataset: Literal["mnist_5k", "digits_8x8", "mnist", "cifar10", "imagefolder"] = "mnist_5k"
    img_size: int = 64  # imagefolder only: images are resized to img_size x img_size
    in_chans: int = 3  # imagefolder only: 1 (grey) or 3 (RGB)
    crop_scale: tuple[float, float] = (1.0, 1.0)  # imagefolder only: RandomResizedCrop area range
    color_jitter: float = 0.0  # imagefolder only: brightness/contrast/saturation jitter
    # batched augmentation (in-memory datasets), drawn from the run's generator
    degrees: float = 0.0  # random rotation in [-degrees, degrees]
    translate: float = 0.0  # random shift, fraction of the image size
    scale: tuple[float, float] = (1.0, 1.0)  # random zoom range
    shear: float = 0.0  # random shear in degrees
    hflip: bool = False  # random horizontal flips (never for digits)
    brightness: float = 0.0
    contrast: float = 0.0
    mixup_alpha: float = 0.0  # v2.MixUp (0: off)
    cutmix_alpha: float = 0.0  # v2.CutMix (0: off); with both, one of the two per batch
    label_smoothing: float = 0.0
    logit_scale: float = 1.0  # training-time logit multiplier, folded into the published head

    def validate(self) -> None:
        super().validate()
        datasets = tuple(list_datasets(target="label"))
        if self.dataset not in datasets:
            raise ConfigError(f"config key 'dataset': {self.dataset!r} is not one of {datasets}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"config key 'label_smoothing': {self.label_smoothing} must be in [0, 1)")
        if self.logit_scale <= 0:
            raise ConfigError(f"config key 'logit_scale': {self.logit_scale} must be > 0")
        self.require_nonnegative(
            "degrees", "translate", "shear", "brightness", "contrast", "mixup_alpha", "cutmix_alpha"
        )
        if self.in_chans not in (1, 3):
            raise ConfigError(f"config key 'in_chans': {self.in_chans} is not one of 1, 3")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(
                f"config key 'crop_scale': {list(self.crop_scale)} must be [low, high] in (0, 1]"
            )
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(
                f"config key 'scale': {list(self.scale)} must be [low, high] with 0 < low <= high"
            )


def _scale_output(scale: float):
    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output * scale

    hook.zoo_logit_scale = scale  # marks it for removal when publishing
    return hook


def family_papers(model: nn.Module) -> list[str]:
    """The papers a model's family file cites (its ``PAPERS`` tuple or ``PAPER`` string); a model class whose
    file holds several families (`zoo.models.restoration`) names its own in a ``papers`` class attribute."""
    if getattr(type(model), "papers", None):
        return list(type(model).papers)
    module = sys.modules.get(type(model).__module__)
    papers = list(getattr(module, "PAPERS", ()) or ())
    if getattr(module, "PAPER", None):
        papers.append(module.PAPER)
    return papers


def optimizer_papers(config: TrainConfig) -> list[str]:
    papers = []
    if config.optim.name == "sgd" and config.optim.nesterov:
        papers.append(NESTEROV)
    papers += {"adam": [ADAM], "adamw": [ADAMW]}.get(config.optim.name, [])
    if config.schedule.name == "onecycle":
        papers.append(ONE_CYCLE)
    return papers


class ClassificationObjective(Objective):
    name = "classification"
    Config = ClassificationConfig
    config: ClassificationConfig

    def data(self) -> Data:
        c = self.config
        augment = BatchAugment(
            c.degrees, c.translate, tuple(c.scale), c.shear, c.hflip, c.brightness, c.contrast
        )
        if c.dataset == "imagefolder":
            # Files on disk: per-sample torchvision v2 augmentation in the loader workers instead.
            size = (c.in_chans, c.img_size, c.img_size)
            train_tf = train_transform(
                size, tuple(c.crop_scale), c.hflip, c.color_jitter, c.degrees, c.translate, tuple(c.scale)
            )
            splits: ImageSplits = load_dataset(
                c.dataset, data_root=c.data_root, input_size=size, train_tf=train_tf
            )
            augment = BatchAugment()
        else:
            splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.splits = splits
        self.augment = augment
        info = labelled_image_info(splits)
        return Data(splits.train, splits.val, splits.test, splits.name, splits.split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        channels, height, _ = data.info["input_size"]
        args = {"num_classes": len(data.info["labels"]), "in_chans": channels, "img_size": height}
        args.update(c.model_args)
        model = create_model(c.model, **args)
        if c.logit_scale != 1.0:
            head = getattr(model, "classifier", None)
            if not head:
                raise ConfigError(f"config key 'logit_scale': '{c.model}' names no classifier layer to scale")
            model.get_submodule(head).register_forward_hook(_scale_output(c.logit_scale))
        return {"model": model}

    def inputs(self, ctx: Context, images: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 `images` as the network's normalised input on the run's device (augmented when `train`)."""
        x = ctx.to_device(images)
        x = x.float().div_(255)
        if train and self.augment.active:
            x = self.augment(x, ctx.generator)
        return normalise(x, self.splits.mean, self.splits.std)

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        c = self.config
        images, labels = batch
        x = self.inputs(ctx, images, train=True)
        y = labels.to(ctx.device, non_blocking=True)
        target = y
        if c.mixup_alpha or c.cutmix_alpha:
            x, target = mix_batch(x, y, len(self.splits.labels), c.mixup_alpha, c.cutmix_alpha)
        with ctx.autocast():
            logits = ctx.models["model"](x)
        loss = cross_entropy(logits, target, label_smoothing=c.label_smoothing)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return {"loss": loss, "acc": acc}

    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, labels = batch
        x = self.inputs(ctx, images, train=False)
        y = labels.to(ctx.device)
        # The module published (a mean teacher's EMA); a published weight evaluated alone comes as "model".
        logits = ctx.models.get(self.publish_model, ctx.models["model"])(x).float()
        n = len(y)
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(y[:, None]).any(1).sum()
        return {
            "acc": ((logits.argmax(1) == y).sum(), n),
            "top5": (top5, n),
            "loss": (cross_entropy(logits, y, reduction="sum"), n),
        }

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval()
        if c.logit_scale != 1.0:
            head = model.get_submodule(model.classifier)
            for key, hook in list(head._forward_hooks.items()):
                if getattr(hook, "zoo_logit_scale", None) is not None:
                    del head._forward_hooks[key]
            if not isinstance(head, nn.Linear):
                raise ConfigError(f"cannot fold logit_scale into a {type(head).__name__} classifier")
            with torch.no_grad():
                head.weight.mul_(c.logit_scale)
                if head.bias is not None:
                    head.bias.mul_(c.logit_scale)
        model = model.to(memory_format=torch.contiguous_format)
        papers = family_papers(model) + optimizer_papers(c)
        if c.label_smoothing:
            papers.append(LABEL_SMOOTHING)
        if c.mixup_alpha:
            papers.append(MIXUP)
        if c.cutmix_alpha:
            papers.append(CUTMIX)
        meta = {
            "task": "image-classification",
            "labels": list(data.info["labels"]),
            "input_size": list(data.info["input_size"]),
            "mean": list(data.info["mean"]),
            "std": list(data.info["std"]),
            "papers": list(dict.fromkeys(papers)),
            "description": f"{c.model} trained from scratch on {data.name} with the `{self.name}` recipe.",
        }
        return model, meta


# ------------------------------------------------------------------------------------------------ presets
# Shared MNIST 5k settings: small random affine augmentation (digits must not be flipped), channels-last
# with bf16 autocast where the CPU has it, label smoothing, one-cycle. Each trains in minutes on 2 cores.
MNIST_CONFIG = ClassificationConfig(
    dataset="mnist_5k",
    batch_size=128,
    degrees=10.0,
    translate=0.08,
    scale=(0.9, 1.1),
    label_smoothing=0.1,
    precision="auto",
    optim=OptimizerConfig(name="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4),
    schedule=ScheduleConfig(name="onecycle", warmup=0.2),
)

# cnn.mnist's config: the clean-label reference other recipes (noisy labels) change one thing of.
CNN_MNIST_CONFIG = replace(MNIST_CONFIG, model="cnn", epochs=15, channels_last=True, logit_scale=0.125)

# Stronger augmentation and weight decay: the small nets reach ~100% train accuracy with the weak ones.
_STRONG = {"degrees": 15.0, "translate": 0.12, "scale": (0.85, 1.15)}

register_preset(
    "resnet8_small.mnist",
    ClassificationObjective,
    replace(
        MNIST_CONFIG,
        model="resnet8_small",
        # 19 epochs (~28 s here): every seed of 0-4 reached >= 99.0% (16 epochs: 98.8-99.4% by seed).
        epochs=19,
        channels_last=True,
        logit_scale=0.125,
        optim=OptimizerConfig(name="sgd", lr=0.4, momentum=0.9, nesterov=True, weight_decay=2e-3),
        **_STRONG,
    ),
    "the best and fastest MNIST 5k classifier: ResNet-8 (small input), SGD Nesterov, one-cycle, bf16",
)
register_preset(
    "cnn.mnist",
    ClassificationObjective,
    CNN_MNIST_CONFIG,
    "plain 3-stage CNN (conv-BN-ReLU, max-pool) on MNIST 5k",
)
register_preset(
    "mlp_small.digits",
    ClassificationObjective,
    replace(
        MNIST_CONFIG,
        model="mlp_small",
        dataset="digits_8x8",
        epochs=30,
        batch_size=64,
        degrees=0.0,
        translate=0.0,
        scale=(1.0, 1.0),
        val_per_class=10,
        early_stop_metric="acc",
        patience=5,
        optim=OptimizerConfig(name="adam", lr=3e-3),
        schedule=ScheduleConfig(name="cosine", warmup=0.1),
    ),
    "one-hidden-layer MLP on sklearn's 8x8 digits, with early stopping on validation accuracy",
)
