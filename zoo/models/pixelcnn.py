"""PixelCNN: an autoregressive model of binarized digits with an exact likelihood.

"Pixel Recurrent Neural Networks", van den Oord, Kalchbrenner & Kavukcuoglu, 2016
(https://arxiv.org/abs/1601.06759) and "Conditional Image Generation with PixelCNN Decoders", van den Oord
et al., 2016 (https://arxiv.org/abs/1606.05328). The image is factorised in raster order::

    p(x) = prod_i p(x_i | x_1, ..., x_{i-1}),   each factor a Bernoulli with logit f(x_<i)_i

so ``-log p(x)`` is a sum of per-pixel binary cross-entropies: an *exact* NLL, no bound. The network sees
only the past through **masked convolutions** (`causal_mask`): the first layer's masks (type ``"A"``)
exclude the centre pixel (pixel i must not see itself), every later layer's (type ``"B"``) include it (the
centre feature at i already depends on x_<i only). This is the gated PixelCNN of the second paper: a
vertical stack (k x k kernels over the rows above) and a horizontal stack (1 x k kernels along the row,
fed by the vertical one), which together see every earlier pixel in reach (no "blind spot"), joined by
**gated residual layers** (``tanh(a) * sigmoid(b)``), each optionally biased by a class embedding (the
conditional model).

Data: the zoo's one binarization (`zoo.metrics.likelihood`: a fixed threshold at 0.5); `forward` applies it
to any [0, 1] image, so ``zoo predict`` and the recipe score the same binary digits.

Sampling is pixel by pixel (784 steps for 28x28), and the split into stacks makes it cheap: every sample
of a call advances together (batched steps); the vertical stack runs **once per row**, on the `reach` rows
above only; the horizontal stack runs **once per pixel**, on the `reach` pixels to its left of one row
only. Crop edges are zero-padded like the image's, but beyond the receptive reach, so the windowed sampler
computes bit for bit what the whole network would (tested against ``window=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.losses import bernoulli_log_likelihood
from zoo.models.base import ZooModel
from zoo.processes.latent import check_labels, check_n
from zoo.registry import register_model

__all__ = ["GatedResidual", "MaskedConv2d", "PixelCNN", "fold_masks"]


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


PAPERS = ("https://arxiv.org/abs/1601.06759", "https://arxiv.org/abs/1606.05328")


def causal_mask(height: int, width: int, mask_type: str) -> torch.Tensor:
    """(height, width) kernel mask, 1 where the kernel may read, for the two stacks of the gated PixelCNN:

    - ``"VA"`` / ``"VB"`` (vertical stack, k x k): rows strictly above the centre / rows up to and including
      the centre row, every column. With ``VA`` first and ``VB`` after, vertical features at row i depend on
      pixel rows < i only (the centre row of a later layer holds features that already do).
    - ``"A"`` / ``"B"`` (horizontal stack, 1 x k, and the classic single-stack masks on k x k): rows above
      the centre, and the centre row left of the centre; the centre itself only for ``"B"``.
    """
    if mask_type not in ("A", "B", "VA", "VB"):
        raise ConfigError(f"mask_type={mask_type!r} must be one of A, B, VA, VB")
    mask = torch.zeros(height, width)
    row, col = height // 2, width // 2
    mask[:row] = 1
    if mask_type == "VB":
        mask[row] = 1
    elif mask_type in ("A", "B"):
        mask[row, : col + (mask_type == "B")] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A same-padded convolution whose kernel is multiplied by a causal mask (`causal_mask`) at every call.

    The mask multiply keeps the masked weights' gradients zero, so training never moves them. For export,
    `fold_masks` writes ``weight * mask`` into the weight once and sets ``folded``: the graph then holds a
    plain convolution (FACTS: dynamo keeps a run-time mask multiply, doubling the file).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], mask_type: str
    ):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if kh % 2 != 1 or kw % 2 != 1:
            raise ConfigError(f"kernel_size={kernel_size} must be odd (the mask is centred)")
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2))
        self.mask_type = mask_type
        # Rebuilt from the arguments at every construction: not part of the saved weights.
        self.register_buffer("mask", causal_mask(kh, kw, mask_type)[None, None], persistent=False)
        self.folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.folded else self.weight * self.mask
        return F.conv2d(x, weight, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask={self.mask_type}" + (", folded" if self.folded else "")


def _gate(h: torch.Tensor) -> torch.Tensor:
    a, b = h.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedResidual(nn.Module):
    """One gated layer of both stacks (van den Oord et al. 2016b, figure 2):

    - vertical: ``v' = gate(conv_VB(v) + c)``, the k x k stack over the rows above;
    - horizontal: ``h' = h + 1x1(gate(conv_B(h) + 1x1(conv_VB(v)) + c))``, the 1 x k stack along the row,
      fed the vertical pre-activation at the same position (which sees rows above only, so no shift is
      needed) and a residual connection;

    ``c`` is the class embedding's per-channel bias (conditional models; position-independent, so causality
    is kept). `vertical` and `horizontal` are separate so the sampler can run them on different crops.
    """

    def __init__(self, channels: int, kernel_size: int, num_classes: int = 0):
        super().__init__()
        self.v_conv = MaskedConv2d(channels, 2 * channels, kernel_size, "VB")
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_conv = MaskedConv2d(channels, 2 * channels, (1, kernel_size), "B")
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Embedding(num_classes, 2 * channels) if num_classes else None

    def _bias(self, labels: torch.Tensor | None) -> torch.Tensor | float:
        return self.cond(labels)[:, :, None, None] if self.cond is not None and labels is not None else 0.0

    def vertical(self, v: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """v -> (next v, the link into the horizontal stack at each position)."""
        pre = self.v_conv(v)
        return _gate(pre + self._bias(labels)), self.link(pre)

    def horizontal(self, h: torch.Tensor, link: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return h + self.h_out(_gate(self.h_conv(h) + link + self._bias(labels)))


class PixelCNN(ZooModel):
    """Gated PixelCNN: masked 7x7 (VA) / 1x7 (A) stems -> gated residual layers (VB / B) -> 1x1 head ->
    one Bernoulli logit per pixel."""

    first_conv = None  # the input is one binary channel by construction
    classifier = None
    # Fixed 28x28: the conditional model's forward needs labels beside the image, and samples are drawn at
    # the trained size. (The network itself is fully convolutional; the sampler runs it on crops.)
    dynamic_size = False

    def __init__(
        self,
        in_chans: int = 1,
        img_size: int = 28,
        channels: int = 48,
        layers: int = 6,
        kernel_size: int = 3,
        first_kernel: int = 7,
        head: int = 64,
        num_classes: int = 0,
    ):
        super().__init__()
        if in_chans != 1:
            raise ConfigError(f"in_chans={in_chans}: this PixelCNN models one binary channel (use 1)")
        if layers < 0 or channels < 1 or head < 1 or img_size < 2 or num_classes < 0:
            raise ConfigError(
                f"PixelCNN sizes must be positive (channels={channels}, layers={layers}, head={head}, "
                f"img_size={img_size}, num_classes={num_classes})"
            )
        self.input_size = (1, img_size, img_size)
        self.num_classes = num_classes
        self.input_names = ("image", "label") if num_classes else ("image",)
        self.output_names = ("logits", "nll_bits_per_dim")
        self.v_stem = MaskedConv2d(1, channels, first_kernel, "VA")
        self.h_stem = MaskedConv2d(1, channels, (1, first_kernel), "A")
        self.stem_link = nn.Conv2d(channels, channels, 1)
        self.layers = nn.ModuleList(GatedResidual(channels, kernel_size, num_classes) for _ in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, head, 1), nn.ReLU(), nn.Conv2d(head, 1, 1))
        # How far up (vertical stack) and left (horizontal stack) an output can see: the sampler's margins.
        self.reach = first_kernel // 2 + layers * (kernel_size // 2)

    # ------------------------------------------------------------------------------------------ pieces
    @property
    def num_dims(self) -> int:
        return math.prod(self.input_size)

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        # [0, 1] pixels (forward binarizes them) and, for the conditional model, one label per image.
        device = next(self.parameters()).device
        x = torch.rand(batch_size, *self.input_size, generator=generator).to(device)
        if not self.num_classes:
            return (x,)
        labels = torch.randint(0, self.num_classes, (batch_size,), generator=generator).to(device)
        return (x, labels)

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> {0, 1} data: the zoo's fixed threshold (`zoo.metrics.likelihood.binarize`)."""
        return (images >= 0.5).to(images.dtype if images.is_floating_point() else torch.float32)

    def check_labels(self, labels: Any, n: int, device: torch.device | None = None) -> torch.Tensor | None:
        """Labels for `n` images -> a (n,) long tensor (one label repeats); a clear error when they do
        not fit the model: labels on an unconditional model, none on a conditional one, out of range."""
        if not self.num_classes:
            if labels is not None:
                raise ConfigError("this PixelCNN is unconditional: it takes no labels (drop --labels)")
            return None
        allowed = f"0..{self.num_classes - 1}"
        if labels is None:
            raise ConfigError(f"this PixelCNN is class-conditional: give labels in {allowed}")
        t = torch.as_tensor(labels, device=device).reshape(-1)
        if t.is_floating_point() or t.dtype == torch.bool:
            raise ConfigError(f"labels must be integer classes in {allowed}, got dtype {t.dtype}")
        if t.numel() == 1:
            t = t.expand(n)
        if t.numel() != n:
            raise ConfigError(f"got {t.numel()} labels for {n} images: give one label, or one per image")
        bad = sorted({int(v) for v in t.tolist() if not 0 <= int(v) < self.num_classes})
        if bad:
            raise ConfigError(f"label(s) {bad} outside this model's labels; allowed: {allowed}")
        return t.long()

    def vertical(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Binary data -> the vertical stack's link into the horizontal stack, one per layer (stem first),
        each (B, C or 2C, H, W); at row i they depend on pixel rows < i only."""
        v = self.v_stem(2 * x - 1)  # centred input: zero padding then reads as "no information"
        links = [self.stem_link(v)]
        for layer in self.layers:
            v, link = layer.vertical(v, labels)
            links.append(link)
        return links

    def horizontal(
        self, x: torch.Tensor, links: Sequence[torch.Tensor], labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Binary data and the vertical links at the same positions -> logits. Along rows only (1 x k
        kernels): any crop of whole rows' left parts gives the same values at its right edge."""
        h = self.h_stem(2 * x - 1) + links[0]
        for layer, link in zip(self.layers, links[1:]):
            h = layer.horizontal(h, link, labels)
        return self.head(h)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, H, W) binary data -> (B, 1, H, W) Bernoulli logits; logit i depends on x_<i only.
        `labels` are trusted here (checked by `forward` / `sample`)."""
        return self.horizontal(x, self.vertical(x, labels), labels)

    @staticmethod
    def nll_from_logits(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Exact -log p(x) per image in nats: the sum of the per-pixel Bernoulli cross-entropies."""
        return -bernoulli_log_likelihood(logits, x).flatten(1).sum(1)

    def nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact NLL in nats per image of binary data `x` (see `prepare`)."""
        return self.nll_from_logits(x, self.logits(x, labels))

    def bits_per_dim(self, nats: torch.Tensor) -> torch.Tensor:
        """Nats per image -> bits per pixel."""
        return nats / (self.num_dims * math.log(2.0))

    # ------------------------------------------------------------------------------------------ API
    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[0, 1] images (binarized here) [and labels] -> (per-pixel Bernoulli logits, exact NLL in
        bits/dim). The logits are what the exported graph and the torch-free sampler use; the NLL is what
        ``zoo predict`` reports."""
        if not _exporting():  # the range check reads label values: data-dependent, not traceable
            labels = self.check_labels(labels, len(images), images.device)
        x = self.prepare(images)
        logits = self.logits(x, labels)
        return logits, self.bits_per_dim(self.nll_from_logits(x, logits))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | Sequence[int] | int | None = None,
        window: bool = True,
        cpu_threads: int | None = 1,
        **_: Any,
    ) -> torch.Tensor:
        """`n` binary images (n, 1, H, W) as floats in {0, 1}, drawn pixel by pixel in raster order from
        `generator` (on the model's device). Conditional models take `labels` (cycled; all digits in turn
        when None).

        All samples advance together. With ``window`` (default) the vertical stack runs once per row on
        the `reach` rows above, and the horizontal stack once per pixel on the `reach` pixels to its left;
        ``window=False`` runs the whole network on the whole image at every pixel (the reference the
        windowed sampler is tested against). Both draw the same images from the same generator.
        ``cpu_threads``: torch threads while sampling on the CPU (restored after; None: leave as set)."""
        n = check_n(n)
        device = next(self.parameters()).device
        # The generators' common rule (`zoo.processes.latent.check_labels`): labels cycle, all classes in
        # turn when none are given; the torch-free sampler uses the same.
        given = check_labels(labels, n, self.num_classes, self.label_names())
        classes = None if given is None else torch.tensor(given, dtype=torch.long, device=device)
        # Each of the 784 steps is small work: OpenMP's fork/join across threads costs more than it saves,
        # and on a loaded machine far more (measured here, load ~3.5 on 2 cores: a tiny model's 12x12 sample
        # took 16 s on 2 threads, 0.15 s on 1; the default model's 16 samples 48.6 s vs 6.9 s).
        previous = torch.get_num_threads()
        if device.type == "cpu" and cpu_threads:
            torch.set_num_threads(cpu_threads)
        try:
            return self._sample(int(n), generator, classes, window, device)
        finally:
            torch.set_num_threads(previous)

    def _sample(
        self,
        n: int,
        generator: torch.Generator | None,
        classes: torch.Tensor | None,
        window: bool,
        device: torch.device,
    ) -> torch.Tensor:
        """The raster loop of `sample`, on checked arguments."""
        _, height, width = self.input_size
        x = torch.zeros(n, 1, height, width, device=device)
        r = self.reach
        for row in range(height):
            # One uniform per pixel and sample, drawn a row at a time (fewer generator calls; the torch-free
            # sampler draws in the same order from numpy).
            uniform = torch.rand(n, width, generator=generator, device=device)
            if window:
                top = max(0, row - r)
                links = [t[:, :, -1:] for t in self.vertical(x[:, :, top : row + 1], classes)]
            for col in range(width):
                if window:
                    left = max(0, col - r)
                    crop = x[:, :, row : row + 1, left : col + 1]
                    logits = self.horizontal(crop, [t[..., left : col + 1] for t in links], classes)
                    logit = logits[:, 0, 0, -1]
                else:
                    logit = self.logits(x, classes)[:, 0, row, col]
                x[:, 0, row, col] = (uniform[:, col] < torch.sigmoid(logit.float())).float()
        return x


@register_model(task="image-generation", weights=("mnist",))
def pixelcnn(**kwargs: Any) -> PixelCNN:
    """Gated PixelCNN for 28x28 binarized digits: 6 gated residual layers of 48 channels, exact NLL.

    ``channels``, ``layers``, ``kernel_size`` and ``head`` size it; ``num_classes`` > 0 makes it
    class-conditional (see ``pixelcnn_cond``).
    """
    return PixelCNN(**kwargs)


@register_model(task="image-generation")
def pixelcnn_cond(**kwargs: Any) -> PixelCNN:
    """Class-conditional PixelCNN for 28x28 binarized digits: every gated layer biased by a digit embedding."""
    return PixelCNN(**{"num_classes": 10, **kwargs})


def fold_masks(model: nn.Module) -> nn.Module:
    """Write ``weight * mask`` into every `MaskedConv2d` of `model` (in place) and mark it folded: the same
    function, with plain convolutions (for export). Returns `model`."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, MaskedConv2d) and not module.folded:
                module.weight.mul_(module.mask)
                module.folded = True
    return model
