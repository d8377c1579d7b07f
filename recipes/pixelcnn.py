"""PixelCNN (`zoo.models.pixelcnn`): maximum likelihood on binarized MNIST 5k digits.

Training minimises the exact NLL (the summed per-pixel Bernoulli cross-entropy under teacher forcing: one
network pass scores every pixel of an image). The digits are binarized by the zoo's one fixed rule
(`zoo.metrics.likelihood.BINARIZATION`), the same for training, evaluation, the baselines and the VAE, so
every NLL is over the same data. A conditional model (``pixelcnn_cond``) gets each digit's label.

Evaluation on a split (deterministic: the NLL is exact, the sample draws seeded):

- ``nll_nats`` and ``nll_bpd``: the exact test NLL per image, in nats and bits/dim;
- on the test split also: the NLL of ``gap_images`` random training digits (``train_nll_nats``,
  ``gap_nats`` = test - train: 4000 digits overfit quickly), the two baselines on the same binary data
  (`zoo.metrics.likelihood.likelihood_baselines`), and the sample-quality metrics of ``quality_samples``
  samples (`zoo.metrics.sample_quality`; for the conditional model, labels cycle through the digits and
  the share classified as requested is reported). Sampling is 784 network passes per batch of samples,
  the slow part of an evaluation: smoke runs (``eval_limit``) cap the gap and sample counts.

The card shows a sample grid.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
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
    register_preset,
)
from zoo.data import load_dataset
from zoo.errors import ConfigError
from zoo.metrics import Metric
from zoo.metrics.likelihood import BINARIZATION, gap_subset, recorded_baselines

__all__ = ["PixelCNNConfig", "PixelCNNEvaluation", "PixelCNNObjective", "sample_grid"]

EVAL_SEED = 1234  # the train subset and the sample draws of an evaluation


@dataclass
class PixelCNNConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = "pixelcnn"  # a registered model with logits / nll / sample (zoo.models.pixelcnn)
    dataset: Literal["mnist_5k"] = "mnist_5k"
    gap_images: int = 1000  # random training digits the train/test gap is measured on (0: skip)
    quality_samples: int = 1000  # samples for FID, IS, digit shares, memorisation (0: skip)
    sample_batch: int = 250  # samples drawn together (one batched pass per pixel)
    mixture_k: int = 100  # the Bernoulli-mixture baseline's K (0: choose it on validation, slower)
    pictures: int = 64  # samples in the card's grid (0: no pictures)

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative("gap_images", "quality_samples", "mixture_k", "pictures")
        if self.sample_batch < 1:
            raise ConfigError(f"config key 'sample_batch': {self.sample_batch} must be >= 1")


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _labels_for(model: nn.Module, labels: torch.Tensor | None) -> torch.Tensor | None:
    return labels.long() if getattr(model, "num_classes", 0) and labels is not None else None


@torch.no_grad()
def evaluate_nll(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 200
) -> torch.Tensor:
    """Exact NLL in nats per image of uint8 or [0, 1] `images` (binarized by the model's `prepare`)."""
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(images), batch_size):
        x = model.prepare(_unit(images[lo : lo + batch_size]).to(device))
        y = _labels_for(model, None if labels is None else labels[lo : lo + batch_size].to(device))
        out.append(model.nll(x, y))
    return torch.cat(out)


@torch.no_grad()
def draw_samples(
    model: nn.Module, count: int, generator: torch.Generator, batch: int = 250
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`count` samples (and, for a conditional model, the labels asked for: 0..9 cycling)."""
    device = next(model.parameters()).device
    conditional = bool(getattr(model, "num_classes", 0))
    labels = torch.arange(count, device=device) % model.num_classes if conditional else None
    parts = []
    for lo in range(0, count, batch):
        y = None if labels is None else labels[lo : lo + batch]
        parts.append(model.sample(min(batch, count - lo), generator=generator, labels=y))
    return torch.cat(parts), labels


class PixelCNNEvaluation(Metric):
    """The PixelCNN's split metrics (see the module docstring): NLL sums from `update`, and on the test
    split the train gap, baselines and sample quality computed once in `compute` from the model of the
    last `update`."""

    def __init__(self, config: PixelCNNConfig, split: str, train: Any = None):
        super().__init__()
        self.config, self.split, self.train = config, split, train
        self.model: nn.Module | None = None
        self.add_state("nll", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.float64))
        self.higher_is_better = dict.fromkeys(["nll_nats", "nll_bpd"], False)
        if split == "test":
            self.higher_is_better.update(
                dict.fromkeys(["train_nll_nats", "gap_nats", "fid", "fid_ratio"], False)
            )
            self.higher_is_better.update(dict.fromkeys(["inception_score", "nn_ratio"], True))

    def reset(self) -> None:
        super().reset()
        self.model = None

    def update(self, outputs: torch.Tensor, targets: Any = None) -> None:
        self.nll += outputs.detach().double().sum().to(self.nll.device)
        self.count += len(outputs)

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        count = float(state["count"])
        if not count or self.model is None:
            return dict.fromkeys(self.higher_is_better, math.nan)
        model, c = self.model, self.config
        to_bpd = 1 / (math.prod(model.input_size) * math.log(2.0))
        out = {"nll_nats": float(state["nll"]) / count}
        out["nll_bpd"] = out["nll_nats"] * to_bpd
        if self.split != "test":
            return out
        device = next(model.parameters()).device
        # A smoke run (eval_limit) checks that every measurement runs, on at most eval_limit items each;
        # the mixture baseline (an EM fit over the train digits) is left to real runs.
        limit = c.eval_limit or None
        if c.gap_images and self.train is not None:
            pick = gap_subset(len(self.train.images), min(c.gap_images, limit or c.gap_images), EVAL_SEED)
            nll = evaluate_nll(model, self.train.images[pick], self.train.labels[pick])
            out["train_nll_nats"] = float(nll.mean())
            out["gap_nats"] = out["nll_nats"] - out["train_nll_nats"]
        if not limit:
            out.update(recorded_baselines(c.mixture_k or None))
        if c.quality_samples:
            from zoo.metrics.sample_quality import sample_quality

            gen = torch.Generator(device=device).manual_seed(EVAL_SEED + 2)
            count = min(c.quality_samples, limit or c.quality_samples)
            samples, labels = draw_samples(model, count, gen, c.sample_batch)
            out.update(sample_quality(samples, labels, device=device))
        return out


class PixelCNNObjective(Objective):
    name = "pixelcnn"
    Config = PixelCNNConfig
    config: PixelCNNConfig

    def data(self) -> Data:
        c = self.config
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.train_split = splits.train
        info = {"input_size": splits.input_size}
        return Data(splits.train, splits.val, splits.test, splits.name, splits.split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        _, height, _ = data.info["input_size"]
        return {"model": create_model(self.config.model, img_size=height, **self.config.model_args)}

    def metrics(self, split: str) -> dict[str, Metric]:
        return {"pixelcnn": PixelCNNEvaluation(self.config, split, getattr(self, "train_split", None))}

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        images, labels = batch
        # The likelihood's methods, not forward (forward also checks labels, a host sync): the raw module.
        # DDP would need the loss inside forward to all-reduce gradients, so this trains on one process.
        model = ctx.unwrap("model")
        x = model.prepare(ctx.to_device(images).float().div_(255))
        y = _labels_for(model, ctx.to_device(labels))
        with ctx.autocast():
            logits = model.logits(x, y)
        nll = model.nll_from_logits(x, logits)  # fp32 loss whatever the autocast
        loss = nll.mean()
        return {"loss": loss / math.prod(model.input_size), "nll": nll.detach().mean()}

    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, labels = batch
        model = ctx.models["model"]
        model = getattr(model, "module", model)  # the network inside an EMA average or a DDP wrapper
        metric: PixelCNNEvaluation = ctx.metrics["pixelcnn"]  # type: ignore[assignment]
        metric.model = model
        x = model.prepare(ctx.to_device(images).float().div_(255))
        metric.update(model.nll(x, _labels_for(model, ctx.to_device(labels))))
        return {}

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = family_papers(model) + optimizer_papers(c)
        meta: dict[str, Any] = {
            "task": "image-generation",
            "input_size": list(data.info["input_size"]),
            "output_range": [0.0, 1.0],
            "fid_features": "resnet8_small.mnist",
            "takes_images": True,
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{c.model} trained on {data.name} with the `{self.name}` recipe: exact NLL (nats per image) "
                f"over digits binarized by a {BINARIZATION}. Samples are binary, drawn pixel by pixel."
            ),
        }
        if getattr(model, "num_classes", 0):
            meta["labels"] = [str(d) for d in range(model.num_classes)]
        if c.pictures:
            meta["files"] = {
                "samples": sample_grid(model, self.picture_path("samples.png"), count=c.pictures)
            }
        return model, meta


@torch.no_grad()
def sample_grid(model: nn.Module, path: Path, count: int = 64, seed: int = 0, zoom: int = 2) -> Path:
    """A grid of `count` samples (seeded; drawn on the model's device; a conditional model cycles through
    the digits), enlarged `zoom` times."""
    from zoo.tasks.draw import grid, save_png
    from zoo.tasks.generation import samples_to_uint8

    device = next(model.parameters()).device
    samples, _ = draw_samples(model, count, torch.Generator(device=device).manual_seed(seed), batch=count)
    tiles = [np.kron(t, np.ones((zoom, zoom, 1), np.uint8)) for t in samples_to_uint8(samples.cpu().numpy())]
    columns = 10 if getattr(model, "num_classes", 0) else math.ceil(math.sqrt(count))
    return save_png(grid(tiles, columns=columns), path)


# ------------------------------------------------------------------------------------------------ presets
register_preset(
    "pixelcnn.mnist",
    PixelCNNObjective,
    PixelCNNConfig(
        model="pixelcnn",
        # 620 steps of batch 64. Measured on the shared 2-core machine (load average 3.1-3.5, other jobs
        # running), fp32, per step: 4.1 s on 1 thread, 6.9 s on 2 (OpenMP contention); bf16 autocast was
        # slower still (6.2 s in `zoo train`, 26 s in a bare loop), hence fp32. So ~42 min loaded with
        # `--set threads=1`; an idle machine (2 threads) should take about half. The 1000-sample
        # evaluation comes on top (~4 samples/s at batch 64 on 1 loaded thread: about 4-5 minutes).
        epochs=10,
        batch_size=64,
        precision="fp32",
        optim=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=1e-4),
        schedule=ScheduleConfig(name="cosine", warmup=0.03, min_lr=0.02),
        grad_clip=1.0,
        mixture_k=100,  # chosen on validation for the VAE recipe (recipes/vae.py); the same data here
    ),
    "Gated PixelCNN (6 layers, 48 channels) on binarized MNIST 5k: exact NLL, AdamW + cosine",
)
