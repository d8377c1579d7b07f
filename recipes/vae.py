"""Variational autoencoders (`zoo.models.vae`): the β-VAE objective on binarized MNIST 5k digits.

Training maximises the one-sample ELBO with the KL term weighted by ``beta`` (optionally ramped up from 0
over the first ``kl_warmup`` of training, so the decoder learns to use z before the KL pulls q to the
prior). The digits are binarized by the zoo's one fixed rule (`zoo.metrics.likelihood.BINARIZATION`),
the same for training, evaluation, the baselines and PixelCNN, so every NLL is over the same data.

Evaluation on a split (all seeded: the same weight gives the same numbers, which `tests/recipes` checks):

- ``nelbo_nats`` (the negative ELBO, β = 1) and ``nll_nats`` (the IWAE bound with ``iwae_k`` = 1000
  importance samples, Burda et al. 2016), both also in bits/dim (``*_bpd``); ``nll_nats <= nelbo_nats``
  always. Each image draws from its own generator, seeded by its index in the split, so a subset of the
  images gets exactly the numbers it gets inside the full split: the test split also records both over a
  fixed random subset of `QUICK_ITEMS` test digits (``nelbo_nats_sub100``, ``nll_nats_sub100``), which is
  what a quick check (``zoo verify NAME --limit``, the test suite) re-measures, with ``quick_likelihood``;
- on the test split also: the same two on ``gap_images`` random training digits (``train_nll_nats``,
  ``gap_nats`` = test - train NLL: 4000 digits overfit quickly), the two baselines on the same binary data
  (`zoo.metrics.likelihood.likelihood_baselines`: independent Bernoullis and a K = ``mixture_k`` mixture),
  and the sample-quality metrics of ``quality_samples`` samples (`zoo.metrics.sample_quality`: FID in the
  zoo classifier's features with its real-data floor, Inception Score, digit shares, memorisation).

k = 1000 is a million decoder passes over the test split and another million over the train subset (a few
minutes on 2 cores); ``python -m recipes.vae NAME --k K`` prints the bounds at any k. The card shows a sample
grid and reconstructions (input, binarized input, reconstruction).
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
from zoo.errors import ConfigError
from zoo.metrics import Metric
from zoo.metrics.likelihood import BINARIZATION, gap_subset, recorded_baselines

__all__ = ["QUICK_ITEMS", "VAEConfig", "VAEEvaluation", "VAEObjective", "evaluate_likelihood", "quick_subset"]

BETA_VAE = "https://openreview.net/forum?id=Sy2fzU9gl"  # Higgins et al. 2017, beta-VAE
EVAL_SEED = 1234  # the evaluation's importance samples, train subset and sample draws
TRAIN_SEED_OFFSET = 1_000_000  # a train digit's importance samples are seeded apart from a test digit's
QUICK_ITEMS = 100  # test digits of the quick check (a seeded random subset: the file is sorted by label)


@dataclass
class VAEConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = "vae"  # a registered model with encode / elbo / iwae_nll / sample (zoo.models.vae)
    dataset: Literal["mnist_5k"] = "mnist_5k"
    beta: float = 1.0  # weight of the KL term (1: the ELBO; > 1: a beta-VAE, more disentangled, blurrier)
    kl_warmup: float = 0.0  # fraction of training over which beta ramps linearly from 0 (0: none)
    degrees: float = 0.0  # augmentation of the grey digit before binarization
    translate: float = 0.0
    iwae_k: int = 1000  # importance samples of the evaluated NLL (IWAE bound)
    # Evaluate the likelihoods on the QUICK_ITEMS subset of the test split only, reporting only its *_sub100
    # metrics and no train gap: the quick check of a published weight (`zoo verify NAME --limit N`).
    quick_likelihood: bool = False
    gap_images: int = 1000  # random training digits the train/test gap is measured on (0: skip)
    quality_samples: int = 1000  # samples for FID, IS, digit shares, memorisation (0: skip)
    mixture_k: int = 0  # the Bernoulli-mixture baseline's K (0: choose it on validation, slower)
    pictures: int = 64  # samples in the card's grid (0: no pictures)

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative(
            "beta", "degrees", "translate", "gap_images", "quality_samples", "mixture_k", "pictures"
        )
        if self.iwae_k < 1:
            raise ConfigError(f"config key 'iwae_k': {self.iwae_k} must be >= 1")
        if not 0 <= self.kl_warmup < 1:
            raise ConfigError(f"config key 'kl_warmup': {self.kl_warmup} must be in [0, 1)")


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def quick_subset(test_size: int) -> torch.Tensor:
    """The test digits of the quick check: `QUICK_ITEMS` of a seeded permutation, in index order."""
    return gap_subset(test_size, QUICK_ITEMS, EVAL_SEED).sort().values


@torch.no_grad()
def evaluate_likelihood(
    model: nn.Module, images: torch.Tensor, k: int, seeds: torch.Tensor, batch_size: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image negative ELBO and IWAE-k NLL, in nats, of uint8 or [0, 1] `images` (binarized by the
    model's `prepare`). Image i's normal draws (one for the ELBO, then k for the bound) come from a CPU
    generator seeded with ``seeds[i]``, so its numbers do not depend on which other images are evaluated
    with it; the decoding is batched."""
    device = next(model.parameters()).device
    generator = torch.Generator()
    latent = int(model.latent_dim)
    nelbo, nll = [torch.zeros(0, device=device)], [torch.zeros(0, device=device)]
    for lo in range(0, len(images), batch_size):
        x = model.prepare(_unit(images[lo : lo + batch_size]).to(device))
        draws = []
        for seed in seeds[lo : lo + batch_size].tolist():
            generator.manual_seed(int(seed))
            draws.append(torch.randn((1 + k, latent), generator=generator))
        eps = torch.stack(draws).to(device)
        nelbo.append(-model.elbo(x, eps=eps[:, 0])["elbo"])
        nll.append(model.iwae_nll(x, eps=eps[:, 1:]))
    return torch.cat(nelbo), torch.cat(nll)


class VAEEvaluation(Metric):
    """The VAE's split metrics (see the module docstring): sums from `update` (over all images and over the
    quick subset), and on the test split the train gap, baselines and sample quality computed once in
    `compute` from the model of the last `update`. ``seen`` counts the images passed by, evaluated or not:
    the index, and so the seed, of the next one."""

    def __init__(self, config: VAEConfig, split: str, train_images: torch.Tensor | None):
        super().__init__()
        self.config, self.split, self.train_images = config, split, train_images
        self.model: nn.Module | None = None
        for name in ("nelbo", "nll", "count", "sub_nelbo", "sub_nll", "sub_count", "seen"):
            self.add_state(name, torch.zeros((), dtype=torch.float64))
        names = ["nelbo_nats", "nelbo_bpd", "nll_nats", "nll_bpd"]
        if config.quick_likelihood:
            names = []
        self.higher_is_better = dict.fromkeys(names, False)
        if split == "test":
            self.higher_is_better.update(
                dict.fromkeys([f"nelbo_nats_sub{QUICK_ITEMS}", f"nll_nats_sub{QUICK_ITEMS}"], False)
            )
            self.higher_is_better.update(
                dict.fromkeys(["train_nelbo_nats", "train_nll_nats", "gap_nats", "fid", "fid_ratio"], False)
            )
            self.higher_is_better.update(dict.fromkeys(["inception_score", "nn_ratio"], True))

    def reset(self) -> None:
        super().reset()
        self.model = None

    def update(
        self, outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, int], targets: Any = None
    ) -> None:
        """`outputs`: per-image (nelbo, nll) of the evaluated images, whether each is in the quick subset,
        and how many images the batch held (evaluated or not)."""
        nelbo, nll, in_subset, batch = outputs
        nelbo, nll = nelbo.detach().double().cpu(), nll.detach().double().cpu()
        sub = in_subset.cpu()
        self.nelbo += nelbo.sum().to(self.nelbo.device)
        self.nll += nll.sum().to(self.nll.device)
        self.count += len(nll)
        self.sub_nelbo += nelbo[sub].sum().to(self.nelbo.device)
        self.sub_nll += nll[sub].sum().to(self.nll.device)
        self.sub_count += int(sub.sum())
        self.seen += batch

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        count = float(state["count"])
        if not count or self.model is None:
            return dict.fromkeys(self.higher_is_better, math.nan)
        model, c = self.model, self.config
        dims = math.prod(model.input_size)
        to_bpd = 1 / (dims * math.log(2.0))
        out: dict[str, float] = {"iwae_k": float(c.iwae_k)}
        if not c.quick_likelihood:
            out["nelbo_nats"], out["nll_nats"] = float(state["nelbo"]) / count, float(state["nll"]) / count
            out["nelbo_bpd"], out["nll_bpd"] = out["nelbo_nats"] * to_bpd, out["nll_nats"] * to_bpd
        if self.split != "test":
            return out
        sub = float(state["sub_count"]) or math.nan  # a smoke run (eval_limit) may hold none of the subset
        out[f"nelbo_nats_sub{QUICK_ITEMS}"] = float(state["sub_nelbo"]) / sub
        out[f"nll_nats_sub{QUICK_ITEMS}"] = float(state["sub_nll"]) / sub
        device = next(model.parameters()).device
        # A smoke run (eval_limit) checks that every measurement runs, on at most eval_limit items each;
        # the mixture baseline (an EM fit over the train digits) is left to real runs.
        limit = c.eval_limit or None
        if c.gap_images and self.train_images is not None and not c.quick_likelihood:
            pick = gap_subset(len(self.train_images), min(c.gap_images, limit or c.gap_images), EVAL_SEED)
            seeds = EVAL_SEED + TRAIN_SEED_OFFSET + pick
            nelbo, nll = evaluate_likelihood(model, self.train_images[pick], c.iwae_k, seeds)
            out["train_nelbo_nats"], out["train_nll_nats"] = float(nelbo.mean()), float(nll.mean())
            out["gap_nats"] = out["nll_nats"] - out["train_nll_nats"]
        if not limit:
            out.update(recorded_baselines(c.mixture_k or None))
        if c.quality_samples:
            from zoo.metrics.sample_quality import sample_quality

            gen = torch.Generator(device=device).manual_seed(EVAL_SEED + 2)
            samples = model.sample(min(c.quality_samples, limit or c.quality_samples), generator=gen)
            out.update(sample_quality(samples, device=device))
        return out


class VAEObjective(Objective):
    name = "vae"
    Config = VAEConfig
    config: VAEConfig

    def data(self) -> Data:
        c = self.config
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.augment = BatchAugment(c.degrees, c.translate)
        self.train_images = splits.train.images
        # The quick check's test digits (the val split, when there is one, is scored on the same indices).
        self.quick = quick_subset(len(splits.test))
        info = {"input_size": splits.input_size}
        return Data(splits.train, splits.val, splits.test, splits.name, splits.split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        channels, height, _ = data.info["input_size"]
        args = {"in_chans": channels, "img_size": height, **self.config.model_args}
        return {"model": create_model(self.config.model, **args)}

    def metrics(self, split: str) -> dict[str, Metric]:
        return {"vae": VAEEvaluation(self.config, split, getattr(self, "train_images", None))}

    def beta(self, progress: float) -> float:
        c = self.config
        return c.beta * (min(1.0, progress / c.kl_warmup) if c.kl_warmup else 1.0)

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        images, _ = batch
        x = ctx.to_device(images).float().div_(255)
        if self.augment.active:
            x = self.augment(x, ctx.generator)
        # The bound's methods, not forward (forward is the predict path): the raw module. DDP would need
        # the loss inside forward to all-reduce gradients, so this objective trains on one process.
        model = ctx.unwrap("model")
        x = model.prepare(x)
        with ctx.autocast():
            terms = model.elbo(x, beta=self.beta(ctx.progress), generator=ctx.generator)
        return {
            "loss": terms["loss"].mean(),
            "nelbo": -terms["elbo"].detach().mean(),
            "kl": terms["kl"].detach().mean(),
        }

    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, _ = batch
        model = ctx.models["model"]
        model = getattr(model, "module", model)  # the network inside an EMA average or a DDP wrapper
        metric: VAEEvaluation = ctx.metrics["vae"]  # type: ignore[assignment]
        metric.model = model
        # Image i of the split draws from seed EVAL_SEED + i, so the quick subset's numbers are the same
        # inside the full split and alone (quick_likelihood).
        index = int(metric.seen) + torch.arange(len(images))
        in_subset = torch.isin(index, self.quick)
        keep = in_subset if self.config.quick_likelihood else torch.ones_like(in_subset)
        nelbo, nll = evaluate_likelihood(model, images[keep], self.config.iwae_k, EVAL_SEED + index[keep])
        metric.update((nelbo, nll, in_subset[keep], len(images)))
        return {}

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = family_papers(model) + optimizer_papers(c)
        if c.beta != 1.0:
            papers.append(BETA_VAE)
        meta: dict[str, Any] = {
            "task": "image-generation",
            "input_size": list(data.info["input_size"]),
            "latent_dim": int(model.latent_dim),
            "output_range": [0.0, 1.0],
            "fid_features": "resnet8_small.mnist",
            "takes_images": True,
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{c.model} trained on {data.name} with the `{self.name}` recipe (beta {c.beta:g}); "
                f"{model.likelihood} decoder over digits binarized by a {BINARIZATION}. Samples are decoder "
                f"means; NLL is the IWAE bound with k = {c.iwae_k} importance samples (nats per image)."
            ),
        }
        if c.pictures and data.test is not None:
            meta["files"] = {
                "samples": sample_grid(model, self.picture_path("samples.png"), count=c.pictures),
                "reconstructions": reconstruction_picture(
                    model, data.test, self.picture_path("reconstructions.png")
                ),
            }
        return model, meta


@torch.no_grad()
def sample_grid(model: nn.Module, path: Path, count: int = 64, seed: int = 0, zoom: int = 2) -> Path:
    """A grid of `count` samples (seeded; drawn on the model's device), enlarged `zoom` times."""
    from zoo.tasks.draw import grid, save_png
    from zoo.tasks.generation import samples_to_uint8

    device = next(model.parameters()).device
    samples = model.sample(count, generator=torch.Generator(device=device).manual_seed(seed))
    tiles = [np.kron(t, np.ones((zoom, zoom, 1), np.uint8)) for t in samples_to_uint8(samples.cpu().numpy())]
    return save_png(grid(tiles, columns=math.ceil(math.sqrt(count))), path)


@torch.no_grad()
def reconstruction_picture(
    model: nn.Module, test: Any, path: Path, per_digit: int = 1, zoom: int = 2
) -> Path:
    """Three rows per block: test digits (one of each class), binarized, reconstructed from the posterior
    mean."""
    from zoo.tasks.draw import grid, save_png
    from zoo.tasks.generation import samples_to_uint8

    device = next(model.parameters()).device
    labels = test.labels
    rows = torch.cat([torch.nonzero(labels == d).flatten()[:per_digit] for d in range(10)])
    images = _unit(test.images[rows]).to(device)
    x = model.prepare(images)
    recon = model.decode(model.encode(x)[0])
    tiles = []
    for batch in (images, x, recon):
        tiles += [
            np.kron(t, np.ones((zoom, zoom, 1), np.uint8)) for t in samples_to_uint8(batch.cpu().numpy())
        ]
    return save_png(grid(tiles, columns=len(rows)), path)


# ------------------------------------------------------------------------------------------------ presets
register_preset(
    "vae.mnist",
    VAEObjective,
    VAEConfig(
        model="vae",
        epochs=100,
        batch_size=128,
        precision="fp32",
        optim=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=1e-4),
        schedule=ScheduleConfig(name="cosine", warmup=0.02, min_lr=0.02),
        kl_warmup=0.1,
        translate=0.05,
        # Chosen on validation (benchmarks/likelihood_baselines.py: the last 40 train digits of each class
        # held out): validation NLL 205.2, 177.4, 166.5, 156.7, 148.4, 147.8 nats for K = 1, 5, 10, 20, 50,
        # 100; K = 100 then refit on all 4000 training digits.
        mixture_k=100,
    ),
    "VAE (16-d latent, Bernoulli decoder) on binarized MNIST 5k: ELBO, AdamW + cosine, KL warm-up",
)


def main(argv: list[str] | None = None) -> int:
    """``python -m recipes.vae NAME [--k 1000]``: a published VAE's test and train NLL at the issue's k."""
    import argparse

    import zoo

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("name", help="a VAE weight (arch.tag) or a weight folder")
    parser.add_argument("--k", type=int, default=1000, help="importance samples (the issue's 1000)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    model = zoo.create_model(args.name, pretrained="." in args.name and not Path(args.name).exists())
    model = model.to(args.device).eval()
    splits = load_dataset("mnist_5k")
    dims = math.prod(model.input_size)
    for split, images in (("test", splits.test.images), ("train", splits.train.images)):
        offset = EVAL_SEED + (TRAIN_SEED_OFFSET if split == "train" else 0)
        nelbo, nll = evaluate_likelihood(model, images, args.k, offset + torch.arange(len(images)))
        bpd = 1 / (dims * math.log(2.0))
        print(
            f"{split}: -ELBO {float(nelbo.mean()):.2f} nats ({float(nelbo.mean()) * bpd:.4f} bits/dim), "
            f"NLL (IWAE k={args.k}) {float(nll.mean()):.2f} nats ({float(nll.mean()) * bpd:.4f} bits/dim)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
