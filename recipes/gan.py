"""GANs (`zoo.models.gan`): a DCGAN generator against a discriminator on MNIST 5k digits.

Each training step updates the discriminator (critic) on a batch of real digits and as many generated
ones, then the generator against the updated discriminator: two optimizers (``"d"`` and ``"g"``) stepped
in turn through ``ctx.optimize``, each backward reaching only its own parameters. Losses live in
`zoo.losses`:

- ``loss="ns"`` (default): the non-saturating GAN loss of Goodfellow et al. 2014 with DCGAN's batch-norm
  discriminator and Adam (lr 2e-4, beta1 0.5), as Radford et al. 2016 train it;
- ``loss="wgan-gp"``: the Wasserstein critic with the gradient penalty (Gulrajani et al. 2017, lambda
  ``gp_weight`` = 10); the critic then uses layer norm (``d_norm="auto"``), and ``n_critic`` critic steps
  (each on its own real batch) come before each generator step. With ``n_critic > 1`` the generator's
  schedule advances once per generator step, so keep schedules constant (the presets do).

A conditional generator draws fakes for the batch's own labels (so both players see the data's class
balance), and the projection discriminator scores each image against its label.

The engine keeps an EMA of the generator's weights (``ema_decay``, batch-norm statistics included): it is
what is evaluated and published, as is usual for GANs (Yazici et al. 2019, https://arxiv.org/abs/1806.04498):
it averages out the oscillation of the two-player game. The discriminator is saved in the run's
checkpoint only.

Evaluation (test split): `zoo.metrics.sample_quality` on ``quality_samples`` samples from a fixed seed
(FID in the zoo classifier's feature space with its real-data floor, Inception Score, digit shares,
memorisation) and, for a conditional model, ``label_agreement``: the share of samples the classifier
assigns to the digit asked for. A smoke run (``eval_limit``) draws at most ``eval_limit`` samples.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
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
from zoo.errors import ConfigError
from zoo.losses import GAN_PAPER, WGAN_GP_PAPER, discriminator_loss, generator_loss, gradient_penalty
from zoo.metrics import Metric
from zoo.metrics.sample_quality import GeneratorEvaluation

__all__ = ["GANConfig", "GANEvaluation", "GANObjective", "sample_grid"]

EVAL_SEED = 1234  # the evaluation's latent draws: a re-measured weight gives the same numbers
EMA_GAN_PAPER = "https://arxiv.org/abs/1806.04498"  # Yazici et al. 2019, EMA of GAN generator weights


def _adam_gan() -> OptimizerConfig:
    # Radford et al. 2016: "Adam [...] learning rate of 0.0002 [...] reducing beta1 to 0.5 helped stabilize".
    return OptimizerConfig(name="adam", lr=2e-4, betas=(0.5, 0.999))


@dataclass
class GANConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig; `optim` is the generator's
    model: str = "dcgan_cond"  # a registered generator (`zoo.models.gan`)
    dataset: Literal["mnist_5k"] = "mnist_5k"
    loss: Literal["ns", "wgan-gp"] = "ns"  # non-saturating GAN loss, or WGAN with gradient penalty
    gp_weight: float = 10.0  # WGAN-GP's lambda (the paper's 10)
    n_critic: int = 1  # discriminator steps per generator step (WGAN-GP's paper: 5)
    d_widths: tuple[int, ...] = (64, 128)  # the discriminator's conv widths (each halves the size)
    d_norm: Literal["auto", "batch", "layer", "none"] = "auto"  # auto: batch for ns, layer for wgan-gp
    d_optim: OptimizerConfig = field(default_factory=_adam_gan)  # the discriminator's optimizer
    quality_samples: int = 1000  # samples for FID, IS, digit shares, memorisation (0: skip)
    pictures: bool = True  # draw the card's sample grid (a conditional model: one row per digit)

    def validate(self) -> None:
        super().validate()
        if self.gp_weight < 0 or self.quality_samples < 0:
            raise ConfigError("config keys 'gp_weight' and 'quality_samples' must be >= 0")
        if self.n_critic < 1:
            raise ConfigError(f"config key 'n_critic': {self.n_critic} must be >= 1")
        if not self.d_widths or min(self.d_widths) < 1:
            raise ConfigError(f"config key 'd_widths': {self.d_widths} must be positive widths")
        if self.accum_steps != 1:
            raise ConfigError(
                "config key 'accum_steps': the GAN objective steps both players every batch: use 1"
            )

    @property
    def discriminator_norm(self) -> str:
        if self.d_norm != "auto":
            return self.d_norm
        # The gradient penalty is per sample: batch norm would couple the samples of a batch.
        return "layer" if self.loss == "wgan-gp" else "batch"


class GANEvaluation(GeneratorEvaluation):
    """Sample quality of the generator of the last `eval_step` (see the module docstring): `compute` draws
    the samples (fixed seed, on the model's device) and scores them with `zoo.metrics.sample_quality`."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config

    def sample_count(self) -> int:
        c = self.config
        # A smoke run (eval_limit) checks that every measurement runs, on a few samples (at least 2: FID).
        return max(2, min(c.quality_samples, c.eval_limit)) if c.eval_limit else c.quality_samples

    @torch.no_grad()
    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.model is None or not self.config.quality_samples:
            return {}
        from zoo.metrics.sample_quality import sample_quality

        model = self.model
        device = next(model.parameters()).device
        n = self.sample_count()
        labels = torch.arange(n, device=device) % model.num_classes if model.num_classes else None
        gen = torch.Generator(device=device).manual_seed(EVAL_SEED)
        samples = model.sample(n, generator=gen, labels=labels)
        return sample_quality(samples, labels, device=device)


class GANObjective(Objective):
    name = "gan"
    Config = GANConfig
    config: GANConfig

    def data(self) -> Data:
        from zoo.data import load_dataset

        c = self.config
        splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        info = {"labels": splits.labels, "input_size": splits.input_size}
        return Data(splits.train, splits.val, splits.test, splits.name, splits.split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model
        from zoo.models.gan import Discriminator

        c = self.config
        channels, height, _ = data.info["input_size"]
        generator = create_model(c.model, **{"in_chans": channels, "img_size": height, **c.model_args})
        classes = int(getattr(generator, "num_classes", 0))
        if classes and classes != len(data.info["labels"]):
            raise ConfigError(
                f"{c.model} has {classes} classes but {data.name} has {len(data.info['labels'])}"
            )
        d = Discriminator(channels, height, c.d_widths, classes, c.discriminator_norm)
        return {"model": generator, "d": d}

    def optimizers(self, models: dict[str, nn.Module]) -> dict[str, tuple[Any, OptimizerConfig]]:
        c = self.config
        return {"d": (models["d"].parameters(), c.d_optim), "g": (models["model"].parameters(), c.optim)}

    def metrics(self, split: str) -> dict[str, Metric]:
        return {"quality": GANEvaluation(self.config)} if split == "test" else {}

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        c = self.config
        images, labels = batch
        real = ctx.to_device(images).float().div_(255)
        g, d = ctx.models["model"], ctx.models["d"]
        net = ctx.unwrap("model")
        cond = labels.to(ctx.device) if net.num_classes else None
        g_args = (cond,) if cond is not None else ()
        z = net.draw_latents(real.shape[0], ctx.generator)

        # The discriminator: real -> real, generated -> fake (the fakes detached: G is not its optimizer's).
        with ctx.autocast():
            fake = g(z, *g_args)
            d_real, d_fake = d(real, cond), d(fake.detach(), cond)
        d_loss = discriminator_loss(d_real, d_fake, c.loss)
        logs = {"d_loss": d_loss.detach()}
        if c.loss == "wgan-gp":
            # In float32, outside autocast: a second-order gradient in bf16 is too coarse to be a penalty.
            gp = gradient_penalty(lambda x: d(x, cond), real, fake.float(), ctx.generator)
            d_loss = d_loss + c.gp_weight * gp
            logs["gp"] = gp.detach()
        ctx.optimize(d_loss, "d")

        # The generator, against the updated discriminator, every n_critic-th batch.
        if (ctx.step + 1) % c.n_critic == 0:
            with ctx.autocast():
                g_loss = generator_loss(d(fake, cond), c.loss)
            ctx.optimize(g_loss, "g")
            logs["g_loss"] = g_loss.detach()
        logs["d_real"], logs["d_fake"] = d_real.detach().float().mean(), d_fake.detach().float().mean()
        return logs

    @torch.no_grad()
    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, _ = batch
        quality: GANEvaluation | None = ctx.metrics.get("quality")  # type: ignore[assignment]
        if quality is not None:
            model = ctx.models["model"]
            quality.model = getattr(model, "module", model)  # the generator inside an EMA or DDP wrapper
            quality.update(images)
        return {}

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        from zoo.models.gan import COND_PAPERS

        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = [*family_papers(model), GAN_PAPER]
        papers += [WGAN_GP_PAPER] if c.loss == "wgan-gp" else []
        papers += list(COND_PAPERS) if model.num_classes else []
        papers += [EMA_GAN_PAPER] if c.ema_decay else []
        papers += optimizer_papers(c)
        kind = "class-conditional" if model.num_classes else "unconditional"
        loss = (
            "non-saturating GAN loss"
            if c.loss == "ns"
            else f"WGAN-GP (lambda {c.gp_weight:g}, n_critic {c.n_critic})"
        )
        meta: dict[str, Any] = {
            "task": "image-generation",
            "input_size": list(data.info["input_size"]),
            "latent_dim": int(model.latent_dim),
            "output_range": [0.0, 1.0],
            "fid_features": "resnet8_small.mnist",
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{c.model}: a {kind} DCGAN generator trained on {data.name} with the `{self.name}` recipe "
                f"({loss}{', EMA ' + str(c.ema_decay) + ' of the generator (published)' if c.ema_decay else ''}); "
                "samples are 28x28 digits in [0, 1] from z ~ N(0, I)."
            ),
        }
        if model.num_classes:
            meta["labels"] = list(data.info["labels"])
        if c.pictures:
            columns = 2 if c.eval_limit else 10  # smoke runs: a small grid
            meta["files"] = {"samples": sample_grid(model, self.picture_path("samples.png"), columns=columns)}
        return model, meta


@torch.no_grad()
def sample_grid(model: nn.Module, path: Path, columns: int = 10, seed: int = 0, zoom: int = 2) -> Path:
    """A grid of samples from a fixed seed, drawn on the model's device: a conditional model gets one row
    per class (`columns` samples of digit k in row k); an unconditional one a `columns` x `columns` grid."""
    from zoo.tasks.draw import grid, save_png
    from zoo.tasks.generation import samples_to_uint8

    device = next(model.parameters()).device
    if model.num_classes:
        labels = torch.arange(model.num_classes).repeat_interleave(columns)
        count = len(labels)
    else:
        labels, count = None, columns * columns
    samples = model.sample(count, generator=torch.Generator(device=device).manual_seed(seed), labels=labels)
    tiles = [np.kron(t, np.ones((zoom, zoom, 1), np.uint8)) for t in samples_to_uint8(samples.cpu().numpy())]
    return save_png(grid(tiles, columns=columns), path)


# ------------------------------------------------------------------------------------------------ presets
# DCGAN's training set-up (Adam 2e-4, beta1 0.5, batch 64, constant learning rate) with an EMA of the
# generator. 4000 digits: 62 steps per epoch, 120 epochs = 7,440 steps. Measured on the 2 shared cores:
# `zoo train dcgan_cond.mnist --set max_steps=60` ran 5.7 steps/s (368 samples/s) at load average 3.5
# (another training run beside it): ~22 minutes for the preset, so within the 40-minute budget even
# loaded (idle it is faster). At load 5-6.5 a bare step loop fell to 0.5-1.7 steps/s: time it on a quiet
# machine. fp32: bf16 autocast was 1.6x *slower* here (transposed convolutions in bf16 have no fast
# CPU kernel).
_BASE = GANConfig(
    epochs=120,
    batch_size=64,
    precision="fp32",
    ema_decay=0.999,
    optim=_adam_gan(),
    schedule=ScheduleConfig(name="constant"),
)

register_preset(
    "dcgan_cond.mnist",
    GANObjective,
    replace(_BASE, model="dcgan_cond"),
    "class-conditional DCGAN on MNIST 5k: non-saturating loss, projection discriminator, Adam 2e-4/0.5, "
    "EMA generator",
)
# No unconditional preset yet: tests/recipes/test_presets.py feeds an image to any model with one input
# name, and the unconditional generator's one input is its latent. `--set model=dcgan` trains it.
register_preset(
    "dcgan_cond.mnist_wgan_gp",
    GANObjective,
    replace(
        _BASE,
        model="dcgan_cond",
        loss="wgan-gp",
        n_critic=5,
        # Gulrajani et al. 2017, Algorithm 1: alpha = 1e-4, beta1 = 0, beta2 = 0.9.
        d_optim=OptimizerConfig(name="adam", lr=1e-4, betas=(0.0, 0.9)),
        optim=OptimizerConfig(name="adam", lr=1e-4, betas=(0.0, 0.9)),
    ),
    "class-conditional DCGAN on MNIST 5k with WGAN-GP (lambda 10, 5 critic steps, Adam 1e-4/(0, 0.9)), EMA",
)
