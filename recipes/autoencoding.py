"""Autoencoding: reconstruct the input (optionally from a noisy copy: a denoising autoencoder).

The loss is not a classifier's: mean squared error or binary cross-entropy per pixel, on images in
[0, 1] (no mean/std normalisation: the model's sigmoid output lives in the same space). Test metrics are
the reconstruction MSE and the PSNR (10 log10(1 / MSE) per image, averaged) on the MNIST 5k test split.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from recipes.augment import BatchAugment
from recipes.classification import family_papers, optimizer_papers
from recipes.engine import (
    Context,
    Data,
    Objective,
    ObjectiveConfig,
    OptimizerConfig,
    ScheduleConfig,
    register_preset,
)
from zoo.data import load_dataset
from zoo.losses import reconstruction_loss

__all__ = ["AutoencodingConfig", "AutoencodingObjective"]

DENOISING = "https://doi.org/10.1145/1390156.1390294"  # Vincent et al., denoising autoencoders, 2008


@dataclass
class AutoencodingConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = "autoencoder"  # a registered model whose forward returns the reconstruction
    dataset: Literal["mnist_5k", "digits_8x8", "mnist", "cifar10"] = "mnist_5k"
    loss: Literal["mse", "bce"] = "mse"  # bce treats each pixel as a Bernoulli probability
    noise_std: float = 0.0  # Gaussian noise on the input only (denoising autoencoder); 0: plain
    degrees: float = 0.0  # augmentation of the clean image (input and target alike)
    translate: float = 0.0

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative("noise_std", "degrees", "translate")


class AutoencodingObjective(Objective):
    name = "autoencoding"
    Config = AutoencodingConfig
    config: AutoencodingConfig

    def data(self) -> Data:
        c = self.config
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.augment = BatchAugment(c.degrees, c.translate)
        info = {"input_size": splits.input_size}
        return Data(splits.train, splits.val, splits.test, splits.name, splits.split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        channels, height, _ = data.info["input_size"]
        args = {"in_chans": channels, "img_size": height, **self.config.model_args}
        return {"model": create_model(self.config.model, **args)}

    def _reconstruction_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(recon, target, self.config.loss)

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        images, _ = batch
        clean = ctx.to_device(images).float().div_(255)
        if self.augment.active:
            clean = self.augment(clean, ctx.generator)
        noisy = clean
        if self.config.noise_std:
            noise = torch.randn(clean.shape, generator=ctx.generator, device=clean.device)
            noisy = (clean + self.config.noise_std * noise).clamp_(0, 1)
        with ctx.autocast():
            recon = ctx.models["model"](noisy)
        recon = recon.float()
        loss = self._reconstruction_loss(recon, clean)
        return {"loss": loss, "mse": F.mse_loss(recon.detach(), clean)}

    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, _ = batch
        clean = ctx.to_device(images).float().div_(255)
        recon = ctx.models["model"](clean).float()
        per_image = (recon - clean).square().flatten(1).mean(1)
        psnr = 10 * torch.log10(1.0 / per_image.clamp_min(1e-10))
        n = len(clean)
        return {
            "mse": (per_image.sum(), n),
            "psnr": (psnr.sum(), n),
            "loss": (self._reconstruction_loss(recon, clean) * n, n),
        }

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = family_papers(model) + optimizer_papers(self.config)
        if self.config.noise_std:
            papers.append(DENOISING)
        meta = {
            "task": "image-to-image",
            "input_size": list(data.info["input_size"]),
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{self.config.model} trained on {data.name} to reconstruct its input "
                f"({self.config.loss} loss{', denoising' if self.config.noise_std else ''}); pixels in [0, 1]."
            ),
        }
        return model, meta


_AE_MNIST = AutoencodingConfig(
    model="autoencoder",
    # The sub-pixel decoder: measured here against the transposed-conv one (same recipe, `--set
    # model_args.upsample=deconv`), test PSNR 23.11 vs 23.33 dB, 18 vs 37 s of training; at batch 32
    # (benchmarks/onnx_latency.py) 2.3 vs 4.8 ms eager, 1.4 vs 4.5 ms onnxruntime.
    model_args={"upsample": "pixel_shuffle"},
    epochs=30,
    batch_size=128,
    loss="bce",
    precision="auto",
    channels_last=True,
    optim=OptimizerConfig(name="adamw", lr=3e-3, weight_decay=1e-4),
    schedule=ScheduleConfig(name="onecycle", warmup=0.1),
)
register_preset(
    "autoencoder.mnist",
    AutoencodingObjective,
    _AE_MNIST,
    "convolutional autoencoder (32-d latent, sub-pixel decoder) on MNIST 5k, BCE loss, AdamW, one-cycle",
)
register_preset(
    "autoencoder.mnist_denoising",
    AutoencodingObjective,
    replace(_AE_MNIST, noise_std=0.3),
    "denoising variant: Gaussian noise (std 0.3) on the input, the clean image as target",
)
