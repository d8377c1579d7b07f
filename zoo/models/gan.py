"""DCGAN generator and discriminator for 28x28 digits, with a class-conditional variant.

"Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks", Radford,
Metz & Chintala, 2016 (https://arxiv.org/abs/1511.06434): a generator of fractionally-strided (transposed)
convolutions with batch norm and ReLU, a tanh output; a discriminator of strided convolutions with
LeakyReLU(0.2), batch norm everywhere but its first layer, no pooling and no fully connected hidden layers.
Here the generator's tanh is mapped to [0, 1] (the zoo's image range), ``(tanh(x) + 1) / 2``.

Class conditioning ("Conditional Generative Adversarial Nets", Mirza & Osindero, 2014,
https://arxiv.org/abs/1411.1784): the generator concatenates a learned label embedding to z; the
discriminator adds the inner product of a label embedding with its features to its score, the projection
discriminator of Miyato & Koyama, 2018 (https://arxiv.org/abs/1802.05637), which conditions more reliably
than concatenating a label map to the image.

The registered model (and the published weight) is the **generator**: ``forward(z[, labels])`` -> images.
The discriminator is built by the recipe (`recipes.gan`) with `Discriminator` and stays in the run's
checkpoint. For the WGAN-GP loss (Gulrajani et al. 2017) the critic must not use batch norm (the gradient
penalty is per sample); ``norm="layer"`` swaps it for a per-sample layer norm, as that paper suggests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.models.base import ZooModel
from zoo.processes.latent import check_labels, check_n
from zoo.registry import register_model

__all__ = ["DCGANGenerator", "Discriminator"]

PAPERS = ("https://arxiv.org/abs/1511.06434", "https://arxiv.org/abs/1406.2661")
COND_PAPERS = ("https://arxiv.org/abs/1411.1784", "https://arxiv.org/abs/1802.05637")
NORMS = ("batch", "layer", "none")


class DCGANGenerator(ZooModel):
    """z (N, latent_dim) [+ labels (N,)] -> Linear -> (2w, s, s) -> [ConvT stride 2, BN, ReLU] ... ->
    ConvT to ``in_chans`` -> tanh -> [0, 1]. ``s = img_size / 2**len(widths)``; 28 px: 7 -> 14 -> 28."""

    # Nothing to adapt: no image input (first_conv) and no classifier head.
    first_conv = None
    classifier = None
    dynamic_size = False  # the linear projection fixes the output size
    output_names = ("image",)

    def __init__(
        self,
        in_chans: int = 1,
        img_size: int = 28,
        latent_dim: int = 64,
        widths: Sequence[int] = (128, 64),
        num_classes: int = 0,
        embed_dim: int = 32,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        factor = 2 ** len(widths)
        if not widths or img_size % factor:
            raise ConfigError(f"img_size={img_size} must be divisible by 2**len(widths)={factor}")
        if latent_dim < 1 or num_classes < 0 or embed_dim < 1:
            raise ConfigError(
                f"latent_dim={latent_dim} and embed_dim={embed_dim} must be >= 1, num_classes={num_classes} >= 0"
            )
        self.input_size = (in_chans, img_size, img_size)
        self.latent_dim, self.num_classes = int(latent_dim), int(num_classes)
        self.side = img_size // factor
        self.label_embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        z_in = latent_dim + (embed_dim if num_classes else 0)
        # The projection replaces DCGAN's first 1x1 -> 4x4 transposed conv (the same linear map).
        self.project = nn.Sequential(
            nn.Linear(z_in, widths[0] * self.side * self.side, bias=False),
            nn.Unflatten(1, (widths[0], self.side, self.side)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.ConvTranspose2d(widths[-1], in_chans, 4, 2, 1))
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # DCGAN's initialisation: weights N(0, 0.02), batch-norm scales N(1, 0.02).
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    @property
    def input_names(self) -> tuple[str, ...]:
        """forward's inputs (the exported graph's names)."""
        return ("latent", "label") if self.num_classes else ("latent",)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Noise (N, latent_dim) and, for a conditional model, class indices (N,) -> (N, C, H, W) in [0, 1]."""
        if self.label_embed is not None:
            if labels is None:
                raise ConfigError(f"this GAN is class-conditional: pass labels in 0..{self.num_classes - 1}")
            z = torch.cat([z, self.label_embed(labels.long()).to(z.dtype)], dim=1)
        elif labels is not None:
            raise ConfigError("this GAN is unconditional: call it without labels")
        return (torch.tanh(self.body(self.project(z))) + 1) * 0.5

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        device = next(self.parameters()).device
        inputs = [torch.randn(batch_size, self.latent_dim, generator=generator)]
        if self.num_classes:
            inputs.append(torch.randint(0, self.num_classes, (batch_size,), generator=generator))
        return tuple(v.to(device) for v in inputs)

    def draw_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I), (n, latent_dim), drawn on the generator's device, moved to the model's."""
        device = next(self.parameters()).device
        where = generator.device if generator is not None else device
        return torch.randn(n, self.latent_dim, generator=generator, device=where).to(device)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: int | Sequence[int] | torch.Tensor | None = None,
        **_: Any,
    ) -> torch.Tensor:
        """`n` images (n, C, H, W) in [0, 1] from z ~ N(0, I) drawn with `generator`; `labels` picks the
        digits of a conditional model (cycled; default: every class in turn). Runs in eval mode (batch
        norm's running statistics, so a sample does not depend on the others in its batch)."""
        n = check_n(n)
        classes = check_labels(labels, n, self.num_classes, self.label_names())
        z = self.draw_latents(n, generator)
        label_t = torch.tensor(classes, device=z.device) if classes is not None else None
        was_training = self.training
        self.eval()
        try:
            return self(z, label_t).float().clamp(0, 1)
        finally:
            self.train(was_training)


class Discriminator(nn.Module):
    """Image (N, C, H, W) in [0, 1] [+ labels] -> one real/fake score (logit or critic value) per image.

    Strided 4x4 convs halving the size (LeakyReLU 0.2; ``norm`` after all but the first), then a linear
    score; a conditional one adds ``<embed(label), features>`` (projection discriminator).
    """

    def __init__(
        self,
        in_chans: int = 1,
        img_size: int = 28,
        widths: Sequence[int] = (64, 128),
        num_classes: int = 0,
        norm: str = "batch",
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if norm not in NORMS:
            raise ConfigError(f"norm={norm!r} is not one of {NORMS}")
        if not widths or img_size % 2 ** len(widths):
            raise ConfigError(f"img_size={img_size} must be divisible by 2**len(widths)={2 ** len(widths)}")
        self.num_classes = int(num_classes)
        layers: list[nn.Module] = []
        c_in = in_chans
        for i, width in enumerate(widths):
            layers.append(nn.Conv2d(c_in, width, 4, 2, 1, bias=i == 0 or norm == "none"))
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(width))
            elif i > 0 and norm == "layer":
                layers.append(nn.GroupNorm(1, width))  # layer norm over (C, H, W), per sample
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = width
        side = img_size // 2 ** len(widths)
        self.features = nn.Sequential(*layers, nn.Flatten(1))
        dim = c_in * side * side
        self.score = nn.Linear(dim, 1)
        self.label_embed = nn.Embedding(num_classes, dim) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> (N,) scores. Scaled to [-1, 1] first, as DCGAN's data was."""
        h = self.features(images * 2 - 1)
        out = self.score(h).squeeze(1)
        if self.label_embed is not None:
            if labels is None:
                raise ConfigError("this discriminator is class-conditional: pass labels")
            out = out + (self.label_embed(labels.long()).to(h.dtype) * h).sum(1)
        return out


def _generator(kwargs: dict[str, Any], **defaults: Any) -> DCGANGenerator:
    return DCGANGenerator(**{**defaults, **kwargs})


@register_model(task="image-generation", weights=("mnist",))
def dcgan(**kwargs: Any) -> DCGANGenerator:
    """DCGAN generator for 28x28 digits: 64-d z -> 128x7x7 -> 64x14x14 -> 1x28x28 (~0.45M parameters).

    ``latent_dim`` and ``widths`` size it; the discriminator is the recipe's (`recipes.gan`)."""
    return _generator(kwargs)


@register_model(task="image-generation", weights=("mnist",))
def dcgan_cond(**kwargs: Any) -> DCGANGenerator:
    """Class-conditional DCGAN generator for 28x28 digits (10 classes, a 32-d label embedding joined to
    the 64-d z): 128x7x7 -> 64x14x14 -> 1x28x28. ``sample(n, labels=...)`` picks the digits."""
    return _generator(kwargs, num_classes=10)
