"""Learned 2x upsampling for decoders, one module with five modes, each landing on a given size.

Decoders (U-Net, SegNet-style, the image-to-image families) upsample a deep map to the size of a skip map.
The modes differ in what they learn and in the artifacts they make:

- ``nearest`` / ``bilinear``: a 1x1 conv then fixed interpolation. "Deconvolution and Checkerboard
  Artifacts" (Odena et al., 2016, https://distill.pub/2016/deconv-checkerboard/) recommends resize-then-
  convolve because fixed interpolation cannot make the checkerboard that uneven kernel overlap makes. A 1x1
  conv commutes with interpolation (both are linear and per-pixel/per-channel), so it runs at the low
  resolution, four times cheaper.
- ``transposed``: ``ConvTranspose2d(kernel 2, stride 2)``, the U-Net paper's "up-convolution" (Ronneberger
  et al., 2015). Each output pixel of a 2x2 cell has its own kernel, which is where periodic artifacts
  come from.
- ``pixel_shuffle``: a 1x1 conv to 4x the channels then depth-to-space (Shi et al., 2016,
  https://arxiv.org/abs/1609.05158), initialised with ICNR (Aitken et al., 2017,
  https://arxiv.org/abs/1707.02937) so that it starts as nearest upsampling: "checkerboard free" at
  initialisation. Exports to ONNX as Conv + DepthToSpace, which onnxruntime runs faster than ConvTranspose.
- ``unpool``: a 1x1 conv then max-unpooling with the indices of the encoder's max-pool, as SegNet does
  (Badrinarayanan et al., 2015, https://arxiv.org/abs/1511.00561): "the decoder upsamples its input using
  the memorized max-pooling indices", which puts values back where the encoder's maxima were.

Every mode produces exactly the requested ``size`` (the skip map's), so odd sizes (a pooling that floored)
still line up with their skip connection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError

__all__ = ["UPSAMPLE_MODES", "Upsample2x", "icnr_"]

UPSAMPLE_MODES = ("nearest", "bilinear", "transposed", "pixel_shuffle", "unpool")


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR initialisation of a conv that feeds ``PixelShuffle(scale)``: the ``scale**2`` sub-kernels of each
    output channel are copies of one kaiming-initialised kernel, so the shuffle starts as nearest upsampling.
    """
    out_chans, *rest = weight.shape
    sub = torch.empty(out_chans // scale**2, *rest, device=weight.device, dtype=weight.dtype)
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        # PixelShuffle reads channel c * scale**2 + k as sub-pixel k of output channel c.
        weight.copy_(sub.repeat_interleave(scale**2, dim=0))
    return weight


class Upsample2x(nn.Module):
    """Upsample (N, in_chans, h, w) to (N, out_chans, *size), size about (2h, 2w), by ``mode``.

    ``forward(x, size, indices=None)``: ``indices`` (from ``nn.MaxPool2d(2, return_indices=True)`` on the
    map of shape (N, out_chans, *size)) are required by ``unpool`` and ignored otherwise.
    """

    def __init__(self, in_chans: int, out_chans: int, mode: str = "bilinear"):
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ConfigError(f"unknown upsample mode '{mode}'; expected one of {', '.join(UPSAMPLE_MODES)}")
        self.mode = mode
        if mode == "transposed":
            self.proj: nn.Module = nn.ConvTranspose2d(in_chans, out_chans, 2, stride=2)
        elif mode == "pixel_shuffle":
            self.proj = nn.Sequential(nn.Conv2d(in_chans, out_chans * 4, 1), nn.PixelShuffle(2))
            icnr_(self.proj[0].weight)
            nn.init.zeros_(self.proj[0].bias)
        else:
            self.proj = nn.Conv2d(in_chans, out_chans, 1)

    def forward(
        self, x: torch.Tensor, size: Sequence[int], indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.mode in ("nearest", "bilinear"):
            align = {} if self.mode == "nearest" else {"align_corners": False}
            return F.interpolate(self.proj(x), size=size, mode=self.mode, **align)
        if self.mode == "unpool":
            if indices is None:
                raise ValueError("upsample mode 'unpool' needs the encoder's max-pooling indices")
            return F.max_unpool2d(self.proj(x), indices, 2, 2, output_size=size)
        return fit(self.proj(x), size)


def fit(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad (bottom, right) a (N, C, 2h, 2w) map to ``size``, one more row/column where a pooling floored.

    Written without a size comparison, so tracing records the padding as arithmetic on the input's shape
    (zero for even sizes) instead of specialising the graph on it.
    """
    return F.pad(x, (0, size[-1] - x.shape[-1], 0, size[-2] - x.shape[-2]))
