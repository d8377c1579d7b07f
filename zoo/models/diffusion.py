"""Diffusion denoisers: the DDPM U-Net of "Denoising Diffusion Probabilistic Models", Ho et al., 2020
(https://arxiv.org/abs/2006.11239), small enough for 28x28 digits, with an optional class embedding for
classifier-free guidance (Ho & Salimans, 2022, https://arxiv.org/abs/2207.12598).

The network is only the denoiser: ``forward(x_t, t, labels=None)`` maps a noisy image, its timestep and
(for a conditional model) its class to the prediction the process asks for (the noise, or v). The process
(schedule, training target, DDPM / DDIM samplers, guidance) lives in `zoo.processes.diffusion`, as
diffusers keeps ``UNet2DModel`` apart from its schedulers; the model only *carries* the process it was
trained with (its ``process`` builder argument, saved with the weight) so that ``model.sample`` and the
exported file know how to sample. A sampler is swapped at sampling time without touching the weights.

Architecture: a stem conv, then per resolution level ``blocks`` residual blocks (GroupNorm, SiLU, 3x3
conv, the timestep embedding added between the two convs) and a strided-conv downsampling; a middle of
residual block, self-attention, residual block; a mirrored decoder that concatenates each level's skip,
with nearest-neighbour upsampling and a conv. Self-attention runs at the levels ``attention`` names (the
7x7 one by default: global context at a cost of 49 tokens).

Class conditioning: an embedding table of ``num_classes + 1`` rows added to the timestep embedding; the
last row is the *null* label (`null_label`), which training substitutes for a share of the labels so the
same network also predicts unconditionally, and guidance mixes the two predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import TimestepEmbedding
from zoo.models.base import ZooModel
from zoo.processes.diffusion import (
    DEFAULT_SAMPLER,
    DiffusionProcess,
    check_guidance,
    check_labels,
    check_n,
    check_sampler,
    check_steps,
    guide,
    sample_loop,
)
from zoo.registry import register_model

__all__ = ["AttentionBlock", "DiffusionUNet", "ResBlock"]

PAPER = "https://arxiv.org/abs/2006.11239"


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: a batch mixes timesteps whose statistics differ wildly.
    return nn.GroupNorm(min(groups, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the (projected) embedding, -> GroupNorm -> SiLU -> dropout -> conv,
    with a residual connection (a 1x1 conv where the width changes)."""

    def __init__(self, in_chans: int, out_chans: int, emb_dim: int, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(in_chans, groups)
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_chans)
        self.norm2 = _norm(out_chans, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1)
        self.skip = nn.Conv2d(in_chans, out_chans, 1) if in_chans != out_chans else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels of a map, with a residual connection.

    Written with matmul and softmax (not ``scaled_dot_product_attention``) so the exported graph uses
    plain ONNX ops every runtime has.
    """

    def __init__(self, channels: int, heads: int = 4, groups: int = 8):
        super().__init__()
        if channels % heads:
            raise ConfigError(f"attention over {channels} channels cannot split into {heads} heads")
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n * self.heads, 3 * c // self.heads, h * w).chunk(3, dim=1)
        scale = (c // self.heads) ** -0.5
        attn = torch.softmax(torch.bmm(q.transpose(1, 2), k) * scale, dim=-1)  # (n*heads, hw, hw)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(n, c, h, w)
        return x + self.proj(out)


class _Level(nn.Module):
    """The residual blocks (each optionally followed by attention) of one resolution level."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        blocks: int,
        emb_dim: int,
        attention: bool,
        groups: int,
        dropout: float,
    ):
        super().__init__()
        self.res = nn.ModuleList(
            ResBlock(in_chans if i == 0 else out_chans, out_chans, emb_dim, groups, dropout)
            for i in range(blocks)
        )
        self.attn = nn.ModuleList(
            AttentionBlock(out_chans, groups=groups) if attention else nn.Identity() for _ in range(blocks)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for res, attn in zip(self.res, self.attn):
            x = attn(res(x, emb))
        return x


class DiffusionUNet(ZooModel):
    """A DDPM U-Net denoiser ``(x_t, t[, labels]) -> prediction`` with ``model.sample`` on top.

    ``widths`` gives one width per resolution level (each level after the first halves the size), so a
    28x28 input runs at 28, 14 and 7 pixels with the default three levels.
    """

    input_size = (1, 28, 28)
    # Trained at one size, and forward takes more than an image: no other-size check in the generic suite.
    dynamic_size = False
    output_names = ("prediction",)

    def __init__(
        self,
        in_chans: int = 1,
        img_size: int = 28,
        widths: Sequence[int] = (32, 64, 64),
        blocks: int = 1,
        attention: Sequence[bool] | None = None,
        num_classes: int = 0,
        dropout: float = 0.0,
        groups: int = 8,
        process: dict[str, Any] | None = None,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        # Default: attention at the deepest level only (7x7 for 28 px: 49 tokens, cheap).
        attention = (
            tuple(bool(a) for a in attention)
            if attention is not None
            else (False,) * (len(widths) - 1) + (True,)
        )
        if len(attention) != len(widths):
            raise ConfigError(
                f"attention={list(attention)} needs one flag per level of widths={list(widths)}"
            )
        if img_size % 2 ** (len(widths) - 1):
            raise ConfigError(
                f"img_size={img_size} must be divisible by {2 ** (len(widths) - 1)} for {len(widths)} levels"
            )
        if blocks < 1 or num_classes < 0:
            raise ConfigError(f"blocks={blocks} must be >= 1 and num_classes={num_classes} >= 0")
        self.input_size = (in_chans, img_size, img_size)
        self.num_classes = num_classes
        self.process = DiffusionProcess.from_dict(process)
        emb_dim = 4 * widths[0]
        self.time_embed = TimestepEmbedding(widths[0], emb_dim)
        # One extra row: the null label of classifier-free guidance.
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.conv_in = nn.Conv2d(in_chans, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for level, (width, attn) in enumerate(zip(widths, attention)):
            self.down.append(_Level(previous, width, blocks, emb_dim, attn, groups, dropout))
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
            previous = width
        self.mid1 = ResBlock(previous, previous, emb_dim, groups, dropout)
        self.mid_attn = AttentionBlock(previous, groups=groups)
        self.mid2 = ResBlock(previous, previous, emb_dim, groups, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            self.up.append(
                _Level(previous + width, width, blocks, emb_dim, attention[level], groups, dropout)
            )
            if level > 0:
                self.upsample.append(nn.Conv2d(width, width, 3, padding=1))
            previous = width
        self.norm_out = _norm(widths[0], groups)
        self.conv_out = nn.Conv2d(widths[0], in_chans, 3, padding=1)

    # ---------------------------------------------------------------------------------- network
    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of forward's inputs, in order (the exported graph's inputs)."""
        return ("noisy_image", "timestep", "label") if self.num_classes else ("noisy_image", "timestep")

    @property
    def null_label(self) -> int | None:
        """The class index meaning "no class" (classifier-free guidance), None for unconditional models."""
        return self.num_classes if self.num_classes else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (N, C, H, W), timesteps (N,) (integers, or floats), class indices (N,) or None (conditional
        models: the null label) -> the process's prediction (N, C, H, W)."""
        emb = self.time_embed(t)
        if self.class_embed is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_embed(labels.long())
        elif labels is not None:
            raise ConfigError("this diffusion model is unconditional: call it without labels")
        h = self.conv_in(x)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for k, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if k < len(self.upsample):
                h = self.upsample[k](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        device = next(self.parameters()).device
        x = torch.randn(batch_size, *self.input_size, generator=generator)
        t = torch.randint(0, self.process.num_timesteps, (batch_size,), generator=generator)
        inputs = [x, t]
        if self.num_classes:
            # The null label included: the guidance path is part of what is tested and exported.
            inputs.append(torch.randint(0, self.num_classes + 1, (batch_size,), generator=generator))
        return tuple(v.to(device) for v in inputs)

    # ---------------------------------------------------------------------------------- sampling
    def sampling_defaults(self) -> dict[str, Any]:
        """Sampler settings when the caller gives none: the weight's ``sampler`` and ``guidance_scale``
        metadata, else DDIM-50 with eta 0 (and guidance 1, i.e. none, for a conditional model)."""
        meta = getattr(self, "pretrained_weights", None)
        settings = {**DEFAULT_SAMPLER, **(dict(getattr(meta, "sampler", None) or {}) if meta else {})}
        scale = getattr(meta, "guidance_scale", None) if meta else None
        settings["guidance"] = (
            float(scale) if scale is not None and self.num_classes else (1.0 if self.num_classes else None)
        )
        return settings

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: int | Sequence[int] | torch.Tensor | None = None,
        *,
        steps: int | None = None,
        eta: float | None = None,
        guidance: float | None = None,
        sampler: str | None = None,
        spacing: str | None = None,
        noise: torch.Tensor | None = None,
        callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Draw `n` images (n, C, H, W) in [0, 1].

        ``sampler`` "ddim" (any ``steps``, ``eta`` 0..1) or "ddpm" (ancestral; ``steps`` default T);
        ``guidance`` is the classifier-free guidance scale of a conditional model (1: none); ``labels``
        picks the classes (default: cycling through them). Unset settings come from
        `sampling_defaults`. Random draws use `generator` (on its own device; moved to the model's);
        ``noise`` replaces the initial x_T. ``callback(i, t, x_prev, x0_pred)`` sees every step.
        """
        check_n(n)
        defaults = self.sampling_defaults()
        sampler = sampler or defaults["name"]
        eta = float(defaults["eta"] if eta is None else eta)
        check_sampler(sampler, eta)
        if steps is None:
            steps = self.process.num_timesteps if sampler == "ddpm" else int(defaults["steps"])
        check_steps(steps, self.process.num_timesteps)
        check_guidance(guidance, self.num_classes)
        scale = float(defaults["guidance"] if guidance is None else guidance) if self.num_classes else 1.0
        classes = check_labels(labels, n, self.num_classes, self.label_names())
        device = next(self.parameters()).device
        gen_device = generator.device if generator is not None else device

        def draw() -> torch.Tensor:
            return torch.randn((n, *self.input_size), generator=generator, device=gen_device).to(device)

        x = draw() if noise is None else noise.to(device=device, dtype=torch.float32)
        if tuple(x.shape) != (n, *self.input_size):
            raise ConfigError(f"noise of shape {tuple(x.shape)}; expected {(n, *self.input_size)}")
        label_t = torch.tensor(classes, device=device) if classes is not None else None
        guided = label_t is not None and scale != 1.0
        if guided:
            label_t = torch.cat([label_t, torch.full_like(label_t, self.num_classes)])

        def denoise(x_t: torch.Tensor, t: int) -> torch.Tensor:
            batch = torch.cat([x_t, x_t]) if guided else x_t
            times = torch.full((batch.shape[0],), t, dtype=torch.long, device=device)
            out = self(batch, times, label_t).float()
            return guide(*out.chunk(2), scale) if guided else out

        was_training = self.training
        self.eval()
        try:
            x = sample_loop(
                denoise,
                x,
                self.process,
                draw,
                sampler=sampler,
                steps=steps,
                eta=eta,
                spacing=spacing or defaults.get("spacing", "trailing"),
                callback=callback,
            )
        finally:
            self.train(was_training)
        return self.process.to_images(x)


def _unet(kwargs: dict[str, Any], **defaults: Any) -> DiffusionUNet:
    return DiffusionUNet(**{**defaults, **kwargs})


@register_model(task="image-generation", weights=("mnist",))
def ddpm_unet_mnist(**kwargs: Any) -> DiffusionUNet:
    """Unconditional DDPM U-Net for 28x28 digits: widths 32-64-64, attention at 7x7 (~0.6M parameters).

    ``process`` (a `zoo.processes.diffusion.DiffusionProcess` as a dict) is the schedule and prediction
    the weight was trained with; ``widths``, ``blocks``, ``attention``, ``dropout`` shape the network.
    """
    return _unet(kwargs)


@register_model(task="image-generation", weights=("mnist",))
def ddpm_unet_mnist_cond(**kwargs: Any) -> DiffusionUNet:
    """Class-conditional DDPM U-Net for 28x28 digits (10 classes + a null label for classifier-free
    guidance): widths 32-64-64, attention at 7x7 (~0.6M parameters)."""
    return _unet(kwargs, num_classes=10)
