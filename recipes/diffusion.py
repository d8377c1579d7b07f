"""Diffusion: train a denoiser (`zoo.models.diffusion`) under a process (`zoo.processes.diffusion`).

Each step draws a timestep per image, noises the image to ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
(images scaled to [-1, 1]) and regresses the network's output on the process's target (the noise, or v)
with mean squared error: Ho et al.'s "simple" loss. A conditional model sees the null label instead of
its class for ``label_dropout`` of the images, so one network learns both predictions that classifier-free
guidance mixes. An EMA of the weights (``ema_decay``) is evaluated and published, as in every DDPM.

Why the presets use the cosine schedule, v-prediction and EMA: a 0.5M-parameter U-Net with epsilon
prediction and linear betas gave only 40% recognisable DDIM-50 samples after 8 minutes on 2 cores
(FACTS.md); v-prediction keeps the target at unit scale at every timestep and the cosine schedule spends
fewer steps at near-pure noise, both known to converge faster on small budgets (Salimans & Ho 2022,
Nichol & Dhariwal 2021), and the EMA smooths the last, noisy steps of a short run.

Evaluation (test split; the val split when ``val_per_class``): ``loss`` (the training loss at timesteps
and noise drawn from a fixed seed, so it is comparable between runs) and the sample quality every digit
generator of the zoo reports (`zoo.metrics.sample_quality`, as the GAN, VAE and PixelCNN recipes do):
``quality_samples`` samples drawn with the preset's sampler from a fixed seed in batches of ``eval_batch``
(a conditional model cycles through the digits), scored by FID in the feature space of the zoo's MNIST
classifier against the test digits beside the real-data floor, the classifier's Inception Score, the digit
shares, ``label_agreement`` for conditional models and the memorisation check; ``fid_first250`` is the FID
of the first 250 samples, what a quick re-measure (the test suite, ``zoo verify NAME --limit``) draws.
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
from zoo.errors import ConfigError
from zoo.metrics.base import Metric
from zoo.metrics.sample_quality import DEFAULT_CLASSIFIER, GeneratorEvaluation
from zoo.processes import diffusion as process_mod
from zoo.processes.diffusion import DiffusionProcess

__all__ = [
    "DiffusionConfig",
    "DiffusionEvaluation",
    "DiffusionObjective",
    "sample_grid",
    "trajectory_picture",
]

# The seed of everything drawn at evaluation: a re-measured weight gives the same numbers.
EVAL_SEED = 1234


@dataclass
class DiffusionConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = (
        "ddpm_unet_mnist_cond"  # a registered diffusion denoiser (`zoo list --task image-generation`)
    )
    dataset: Literal["mnist_5k"] = "mnist_5k"
    num_timesteps: int = 1000  # T of the process the network is trained under (stored with the weight)
    # The beta schedule ("schedule" is the learning-rate schedule of every recipe).
    noise_schedule: Literal["linear", "cosine"] = "cosine"
    prediction: Literal["epsilon", "v"] = "v"  # the network's target
    label_dropout: float = 0.1  # conditional models: share of labels replaced by the null label (guidance)
    sampler: Literal["ddim", "ddpm"] = "ddim"  # the published default sampler, also used for evaluation
    sample_steps: int = 50  # its steps (DDPM: 0 means T)
    eta: float = 0.0  # DDIM's eta
    guidance: float = 2.0  # conditional models: the published default classifier-free guidance scale
    quality_samples: int = 1000  # samples for FID, IS, digit shares, memorisation (0: loss only)
    # Samples per sampling batch (memory). 250 = the quick check's count: its samples are the first batch
    # of the full evaluation's, noise and labels alike, so its FID is the card's fid_first250.
    eval_batch: int = 250
    pictures: bool = True  # draw the card's sample grid and denoising trajectory

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.label_dropout < 1:
            raise ConfigError(f"config key 'label_dropout': {self.label_dropout} must be in [0, 1)")
        self.require_nonnegative("quality_samples", "sample_steps")
        if self.eval_batch < 1:
            raise ConfigError(f"config key 'eval_batch': {self.eval_batch} must be >= 1")
        if self.guidance < 0 or not 0 <= self.eta <= 1:
            raise ConfigError("config keys 'guidance' must be >= 0 and 'eta' in [0, 1]")
        if self.sample_steps > self.num_timesteps:
            raise ConfigError(
                f"config key 'sample_steps': {self.sample_steps} > num_timesteps {self.num_timesteps}"
            )
        DiffusionProcess(
            num_timesteps=self.num_timesteps, schedule=self.noise_schedule, prediction=self.prediction
        )

    @property
    def process(self) -> DiffusionProcess:
        return DiffusionProcess(
            num_timesteps=self.num_timesteps, schedule=self.noise_schedule, prediction=self.prediction
        )

    def sampling(self) -> dict[str, Any]:
        """The published default sampler (the weight's ``sampler`` metadata)."""
        steps = self.sample_steps or (self.num_timesteps if self.sampler == "ddpm" else 50)
        return {"name": self.sampler, "steps": steps, "eta": self.eta, "spacing": "trailing"}


class DiffusionEvaluation(GeneratorEvaluation):
    """Sample quality of the denoiser of the last `eval_step` (see the module docstring): `compute` draws the
    samples with the objective's sampler and seeds and scores them with `zoo.metrics.sample_quality`."""

    def __init__(self, objective: DiffusionObjective):
        super().__init__()
        self.objective = objective

    @torch.no_grad()
    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.model is None or not self.objective.config.quality_samples:
            return {}
        from zoo.metrics.sample_quality import sample_quality

        device = next(self.model.parameters()).device
        drawn = self.objective.draw(self.model, self.objective.sample_count())
        samples = torch.cat([s for s, _ in drawn])
        labels = torch.cat([a for _, a in drawn]) if self.model.num_classes else None
        return sample_quality(samples, labels, device=device)


class DiffusionObjective(Objective):
    name = "diffusion"
    Config = DiffusionConfig
    config: DiffusionConfig

    def data(self) -> Data:
        from zoo.data import load_dataset

        c = self.config
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.splits = splits
        self.process = c.process
        # A run with a limited evaluation (eval_limit: CI's two-step run of every preset) is a smoke test:
        # it evaluates and draws its pictures with 2 sampler steps and at most 16 samples instead of
        # minutes of sampling on CPU. The published sampler is unchanged.
        self.smoke = bool(c.eval_limit)
        info = {"labels": splits.labels, "input_size": splits.input_size}
        return Data(splits.train, splits.val, splits.test, splits.name, splits.split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        channels, height, _ = data.info["input_size"]
        args = {"in_chans": channels, "img_size": height, "process": self.process.to_dict(), **c.model_args}
        model = create_model(c.model, **args)
        if model.num_classes and model.num_classes != len(data.info["labels"]):
            raise ConfigError(
                f"{c.model} has {model.num_classes} classes but {data.name} has {len(data.info['labels'])}"
            )
        return {"model": model}

    def metrics(self, split: str) -> dict[str, Metric]:
        return {"quality": DiffusionEvaluation(self)} if self.config.quality_samples else {}

    def _noisy(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        n, dev = x0.shape[0], generator.device
        t = torch.randint(0, self.process.num_timesteps, (n,), generator=generator, device=dev).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=dev).to(x0.device)
        return self.process.add_noise(x0, noise, t), t, self.process.target(x0, noise, t)

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        images, labels = batch
        x0 = ctx.to_device(images).float().div_(127.5).sub_(1.0)  # [-1, 1]: the process's data range
        x_t, t, target = self._noisy(x0, ctx.generator)
        model = ctx.models["model"]
        cond = None
        if ctx.unwrap("model").num_classes:
            cond = labels.to(ctx.device)
            drop = torch.rand(len(cond), generator=ctx.generator, device=ctx.generator.device).to(ctx.device)
            cond = torch.where(
                drop < self.config.label_dropout, torch.full_like(cond, ctx.unwrap("model").null_label), cond
            )
        with ctx.autocast():
            out = model(x_t, t, cond) if cond is not None else model(x_t, t)
        return {"loss": F.mse_loss(out.float(), target)}

    @torch.no_grad()
    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, labels = batch
        model = ctx.models["model"]
        net = getattr(model, "module", model)  # DDP-wrapped without EMA
        x0 = ctx.to_device(images).float().div_(127.5).sub_(1.0)
        # Timesteps and noise from a seed per batch content: the loss is the same number on every re-run.
        generator = torch.Generator().manual_seed(EVAL_SEED + int(labels[:8].sum()))
        x_t, t, target = self._noisy(x0.cpu(), generator)
        cond = labels.to(ctx.device) if net.num_classes else None
        out = net(x_t.to(ctx.device), t.to(ctx.device), cond).float()
        n = len(x0)
        loss = F.mse_loss(out, target.to(ctx.device), reduction="none").flatten(1).mean(1).sum()
        quality = ctx.metrics.get("quality")
        if quality is not None:
            quality.model = net  # the EMA'd or published denoiser: compute() samples from it once
            quality.update(images)
        return {"loss": (loss, n)}

    def draw(self, model: nn.Module, count: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """`count` samples with the config's sampler, from a fixed seed on the CPU (the same noise on any
        device), in batches of ``eval_batch``; conditional models cycle through the digits."""
        c = self.config
        generator = torch.Generator().manual_seed(EVAL_SEED)
        out = []
        settings = self._eval_sampling()
        for start in range(0, count, c.eval_batch):
            n = min(c.eval_batch, count - start)
            labels = torch.arange(start, start + n) % model.num_classes if model.num_classes else None
            samples = model.sample(
                n,
                generator=generator,
                labels=labels,
                sampler=settings["name"],
                steps=settings["steps"],
                eta=settings["eta"],
                guidance=c.guidance if model.num_classes else None,
            )
            out.append((samples, labels))
        return out

    def sample_count(self) -> int:
        """Samples the evaluation draws: ``quality_samples``, at most 16 in a smoke run."""
        c = self.config
        return min(c.quality_samples, 16) if getattr(self, "smoke", False) else c.quality_samples

    def _eval_sampling(self) -> dict[str, Any]:
        settings = self.config.sampling()
        if getattr(self, "smoke", False):
            settings["steps"] = min(settings["steps"], 2)
        return settings

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = [*family_papers(model), process_mod.DDPM_PAPER, process_mod.DDIM_PAPER]
        papers += [process_mod.COSINE_PAPER] if c.noise_schedule == "cosine" else []
        papers += [process_mod.V_PAPER] if c.prediction == "v" else []
        papers += [process_mod.GUIDANCE_PAPER] if model.num_classes else []
        papers += optimizer_papers(c)
        kind = "class-conditional (classifier-free guidance)" if model.num_classes else "unconditional"
        meta: dict[str, Any] = {
            "task": "image-generation",
            "input_size": list(data.info["input_size"]),
            "sampler": c.sampling(),
            "output_range": [0.0, 1.0],
            "fid_features": DEFAULT_CLASSIFIER,
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{c.model}: a {kind} DDPM denoiser trained on {data.name} with the `{self.name}` recipe "
                f"({c.noise_schedule} schedule, T={c.num_timesteps}, {c.prediction}-prediction"
                f"{', EMA ' + str(c.ema_decay) if c.ema_decay else ''}); samples are 28x28 digits in [0, 1]."
            ),
        }
        if model.num_classes:
            meta["labels"] = list(data.info["labels"])
            meta["guidance_scale"] = float(c.guidance)
        if c.pictures:
            guidance = c.guidance if model.num_classes else None
            meta["files"] = {
                "samples": sample_grid(
                    model,
                    self.picture_path("samples.png"),
                    self._eval_sampling(),
                    guidance,
                    rows=2 if self.smoke else 10,
                ),
                "denoising": trajectory_picture(
                    model, self.picture_path("denoising.png"), self._eval_sampling(), guidance
                ),
            }
        return model, meta


def _tiles(images: torch.Tensor, zoom: int = 2) -> list[np.ndarray]:
    from zoo.tasks.generation import samples_to_uint8

    return [np.kron(t, np.ones((zoom, zoom, 1), np.uint8)) for t in samples_to_uint8(images.cpu().numpy())]


@torch.no_grad()
def sample_grid(
    model: nn.Module, path: Path, sampling: dict[str, Any], guidance: float | None, rows: int = 10
) -> Path:
    """A rows x 10 grid of samples (a conditional model: digit k in column k), from a fixed seed."""
    from zoo.tasks.draw import grid, save_png

    n = rows * 10
    labels = torch.arange(n) % 10 if model.num_classes else None
    samples = model.sample(
        n,
        generator=torch.Generator().manual_seed(0),
        labels=labels,
        sampler=sampling["name"],
        steps=sampling["steps"],
        eta=sampling["eta"],
        guidance=guidance,
    )
    return save_png(grid(_tiles(samples), columns=10), path)


@torch.no_grad()
def trajectory_picture(
    model: nn.Module,
    path: Path,
    sampling: dict[str, Any],
    guidance: float | None,
    count: int = 4,
    frames: int = 10,
) -> Path:
    """Rows of the denoising trajectory: the noise x_T, then x_t at `frames` evenly spaced sampler steps
    (the last is the sample), for `count` samples."""
    from zoo.tasks.draw import grid, save_png

    steps = sampling["steps"]
    keep = {round(k * (steps - 1) / (frames - 1)) for k in range(frames)}
    states: list[torch.Tensor] = []
    noise = torch.randn((count, *model.input_size), generator=torch.Generator().manual_seed(1))
    states.append(noise)

    def record(i: int, t: int, x: torch.Tensor, x0: torch.Tensor) -> None:
        if i in keep:
            states.append(x.detach().cpu())

    model.sample(
        count,
        labels=torch.arange(count) % 10 if model.num_classes else None,
        sampler=sampling["name"],
        steps=steps,
        eta=sampling["eta"],
        guidance=guidance,
        noise=noise,
        callback=record,
        generator=torch.Generator().manual_seed(2),
    )
    columns = len(states)
    tiles = [
        t
        for k in range(count)
        for t in _tiles(torch.stack([DiffusionProcess.to_images(s[k]) for s in states]))
    ]
    return save_png(grid(tiles, columns=columns), path)


# ------------------------------------------------------------------------------------------------ presets
# Measured on 2 shared cores (see the report in the issue thread): the ~0.83M-parameter U-Net at batch 128
# in bf16. 31 steps per epoch (4000 digits, last batch dropped): 260 epochs are ~8,000 steps, a few minutes
# on one GPU. AdamW at 1e-3 with a short warmup and cosine decay, gradient clipping, EMA 0.999 (a ~1,000-step
# window: the last seventh of the run).
_BASE = DiffusionConfig(
    epochs=260,
    batch_size=128,
    noise_schedule="cosine",
    prediction="v",
    ema_decay=0.999,
    grad_clip=1.0,
    precision="auto",
    channels_last=True,
    optim=OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.0),
    schedule=ScheduleConfig(name="cosine", warmup=0.02, min_lr=0.05),
)

register_preset(
    "ddpm_unet_mnist_cond.mnist",
    DiffusionObjective,
    replace(_BASE, model="ddpm_unet_mnist_cond", label_dropout=0.1, guidance=2.0),
    "class-conditional DDPM U-Net on MNIST 5k: cosine schedule, v-prediction, EMA, 10% label dropout, "
    "DDIM-50 with guidance 2",
)
register_preset(
    "ddpm_unet_mnist.mnist",
    DiffusionObjective,
    replace(_BASE, model="ddpm_unet_mnist", label_dropout=0.0),
    "unconditional DDPM U-Net on MNIST 5k: cosine schedule, v-prediction, EMA, DDIM-50",
)
