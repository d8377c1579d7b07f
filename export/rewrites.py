"""Exact layer rewrites that onnxruntime's CPU kernels run faster, applied to a copy before export.

The exported graph computes the same function as the model (validation compares it with the *original*
module, within the fp32 tolerance); only the ops that compute it change. On a 2-core x86 CPU (torch 2.14,
onnxruntime 1.32), onnxruntime's ``ConvTranspose`` (a GEMM per image, then col2im) and its one-output-
channel ``Conv`` were slower than PyTorch's oneDNN kernels, while plain convolutions in its blocked (NCHWc)
layout were faster. The transposed-conv ``autoencoder`` at batch 32 took 6.6 ms in onnxruntime as it is and
4.5 ms rewritten (``python benchmarks/onnx_latency.py autoencoder --batches 32 [--no-rewrite]``). So:

- ``BatchNorm2d`` right after a ``ConvTranspose2d`` (in an ``nn.Sequential``) is folded into its weights
  (onnxruntime folds BatchNorm into ``Conv`` itself, but not into ``ConvTranspose``).
- A ``ConvTranspose2d`` that upsamples exactly by its stride ``s`` (kernel a multiple of ``s``, padding
  ``(kernel - s) / 2``, no groups, dilation or output padding) becomes ``s * s`` small convolutions, one per
  output phase ("sub-pixel" convolution), interleaved by ``DepthToSpace``. The elementwise activation that
  follows it, if any, moves before the interleave, where onnxruntime fuses it into the convolutions.
- A ``Conv2d`` with one output channel and a kernel larger than 1x1 becomes a depthwise convolution and a
  sum over channels.
- Bicubic upsampling by an integer factor (`zoo.models.restoration.BicubicUpsample`, the super-resolution
  models' skip) becomes edge padding, one fixed depthwise 5x5 convolution with ``s * s`` outputs per channel
  (one per output phase: a phase's 4 x 4 taps sit at the same input offsets for every pixel) and
  ``DepthToSpace``. onnxruntime's cubic ``Resize`` took 87% of espcn_x4's time.

`onnx_friendly` returns the model itself when nothing applies, so most models export untouched; the
rewrites applied are recorded in the file's metadata. ``to_onnx(..., rewrite=False)`` (``zoo export
--no-rewrite``) exports the layers as they are.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["DepthwiseSumConv2d", "PolyphaseBicubic", "SubPixelConvTranspose2d", "onnx_friendly"]

# Activations that act on each element alone, so they commute with a pixel interleave.
ELEMENTWISE_ACTS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Mish,
)


class SubPixelConvTranspose2d(nn.Module):
    """A ``ConvTranspose2d`` that upsamples by its stride ``s``, as ``s * s`` convolutions and an interleave.

    Output pixel ``(s*m + r, s*n + c)`` of the transposed convolution only ever meets the kernel taps
    ``r + p (mod s)`` along H and ``c + p (mod s)`` along W, so each of the ``s * s`` output phases is an
    ordinary convolution of the input with a ``k/s x k/s`` slice of the (flipped) kernel, over the input
    zero-padded by ``k/s - 1 - (r + p) // s`` before and ``(r + p) // s`` after. Stacking the phases and a
    pixel shuffle (``DepthToSpace``) place them. ``act`` (elementwise) is applied to each phase.
    """

    def __init__(self, deconv: nn.ConvTranspose2d, act: nn.Module | None = None):
        super().__init__()
        if not self.supports(deconv):
            raise ValueError(f"{deconv} does not upsample exactly by its stride; see supports()")
        stride, kernel, pad = deconv.stride[0], deconv.kernel_size, deconv.padding
        taps = (kernel[0] // stride, kernel[1] // stride)
        weight = deconv.weight.detach()  # (in, out, kh, kw)
        phases, pads = [], []
        for r in range(stride):
            rows, (top, bottom) = self._phase(r, pad[0], stride, taps[0])
            for c in range(stride):
                cols, (left, right) = self._phase(c, pad[1], stride, taps[1])
                # Cross-correlation with taps in reverse order = the transposed convolution's sum.
                phases.append(weight[:, :, rows][:, :, :, cols].transpose(0, 1))
                pads.append((left, right, top, bottom))
        self.stride = stride
        self.pads = pads
        self.weight = nn.Parameter(torch.stack(phases).contiguous(), requires_grad=False)  # (s*s, out, in, .)
        self.bias = (
            None if deconv.bias is None else nn.Parameter(deconv.bias.detach().clone(), requires_grad=False)
        )
        self.act = act if act is not None else nn.Identity()

    @staticmethod
    def supports(deconv: nn.Module) -> bool:
        """Whether `deconv` is a ConvTranspose2d this class reproduces exactly."""
        if type(deconv) is not nn.ConvTranspose2d:
            return False
        (sh, sw), (kh, kw), (ph, pw) = deconv.stride, deconv.kernel_size, deconv.padding
        return (
            sh == sw > 1
            and deconv.groups == 1
            and deconv.dilation == (1, 1)
            and deconv.output_padding == (0, 0)
            and deconv.padding_mode == "zeros"
            and all(k % sh == 0 and k - 2 * p == sh for k, p in ((kh, ph), (kw, pw)))
        )

    @staticmethod
    def _phase(r: int, pad: int, stride: int, taps: int) -> tuple[list[int], tuple[int, int]]:
        """Kernel rows (in cross-correlation order) and (before, after) input padding of output phase r."""
        shift, first = divmod(r + pad, stride)
        rows = [stride * (taps - 1 - u) + first for u in range(taps)]
        return rows, (taps - 1 - shift, shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        phases = [
            self.act(F.conv2d(F.pad(x, pad), weight, self.bias))
            for weight, pad in zip(self.weight, self.pads)
        ]
        stacked = torch.stack(phases, 2).reshape(batch, -1, height, width)  # channel c*s*s + phase
        return F.pixel_shuffle(stacked, self.stride)


class DepthwiseSumConv2d(nn.Module):
    """A one-output-channel ``Conv2d`` as a depthwise convolution and a sum over its channels."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not self.supports(conv):
            raise ValueError(f"{conv} is not a one-output-channel, ungrouped, spatial Conv2d")
        self.depthwise = nn.Conv2d(
            conv.in_channels,
            conv.in_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            groups=conv.in_channels,
            bias=False,
        )
        self.depthwise.weight = nn.Parameter(
            conv.weight.detach().transpose(0, 1).clone(), requires_grad=False
        )
        self.bias = (
            None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        )

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        return (
            type(conv) is nn.Conv2d
            and conv.out_channels == 1
            and conv.in_channels > 1
            and conv.groups == 1
            and conv.padding_mode == "zeros"
            and conv.kernel_size != (1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.depthwise(x).sum(1, keepdim=True)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class PolyphaseBicubic(nn.Module):
    """Bicubic upsampling by an integer `scale` (half-pixel centres, a = -0.75, borders replicated: what
    ``F.interpolate(mode="bicubic", align_corners=False)`` computes) as edge padding, a fixed depthwise
    convolution and a pixel shuffle.

    Output pixel ``o = s * i + r`` reads the input at ``i + (r + 0.5) / s - 0.5``: the same four taps around
    pixel i, with the same cubic weights, for every i of phase r. So each phase is a fixed 1-D filter, a 2-D
    phase (row r, column q) their outer product, and all ``s * s`` of them one 5x5 depthwise convolution
    over the input padded by 2 (taps span offsets -2..+2 across phases)."""

    A = -0.75  # the cubic convolution constant of PyTorch, PIL and ONNX Resize

    def __init__(self, scale: int, channels: int):
        super().__init__()
        self.scale, self.channels = int(scale), int(channels)
        taps = torch.zeros(self.scale, 5, dtype=torch.float64)
        for r in range(self.scale):
            position = (r + 0.5) / self.scale - 0.5  # relative to input pixel i
            base = int(torch.floor(torch.tensor(position)).item())
            t = position - base
            for k, offset in enumerate(range(base - 1, base + 3)):
                taps[r, offset + 2] = self._cubic(t - (k - 1))
        kernel = torch.einsum("rk,ql->rqkl", taps, taps).reshape(self.scale**2, 1, 5, 5)
        self.register_buffer("weight", kernel.float().repeat(self.channels, 1, 1, 1), persistent=False)

    @classmethod
    def _cubic(cls, d: float) -> float:
        a, d = cls.A, abs(d)
        if d <= 1:
            return ((a + 2) * d - (a + 3)) * d * d + 1
        if d < 2:
            return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        return 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
        phases = F.conv2d(padded, self.weight.to(x.dtype), groups=self.channels)
        return F.pixel_shuffle(phases, self.scale)


def _next_index(seq: nn.Sequential, i: int) -> int | None:
    """Index of the first child after `i` that is not an Identity (a folded BatchNorm leaves one)."""
    for j in range(i + 1, len(seq)):
        if not isinstance(seq[j], nn.Identity):
            return j
    return None


def _fold_and_fuse(seq: nn.Sequential, applied: list[str], prefix: str) -> None:
    for i in range(len(seq)):
        deconv = seq[i]
        if not SubPixelConvTranspose2d.supports(deconv):
            continue
        j = _next_index(seq, i)
        norm = seq[j] if j is not None else None
        if type(norm) is nn.BatchNorm2d and norm.running_mean is not None:
            seq[i] = deconv = fuse_conv_bn_eval(deconv.eval(), norm.eval(), transpose=True)
            seq[j] = nn.Identity()
            applied.append(f"{prefix}{j}: BatchNorm2d folded into the ConvTranspose2d before it")
            j = _next_index(seq, i)
        act = seq[j] if j is not None and type(seq[j]) in ELEMENTWISE_ACTS else None
        seq[i] = SubPixelConvTranspose2d(deconv, act)
        if act is not None:
            seq[j] = nn.Identity()
        moved = f" with the {type(act).__name__} after it" if act is not None else ""
        applied.append(f"{prefix}{i}: ConvTranspose2d{moved} as sub-pixel convolutions")


def _is_bicubic(module: nn.Module) -> bool:
    from zoo.models.restoration import BicubicUpsample

    return type(module) is BicubicUpsample


def onnx_friendly(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """`module` with the rewrites above applied to a copy, and a line per rewrite (empty: `module` itself)."""
    if not any(
        SubPixelConvTranspose2d.supports(m) or DepthwiseSumConv2d.supports(m) or _is_bicubic(m)
        for m in module.modules()
    ):
        return module, []
    module = copy.deepcopy(module).eval()
    applied: list[str] = []
    for name, seq in list(module.named_modules()):
        if isinstance(seq, nn.Sequential):
            _fold_and_fuse(seq, applied, f"{name}." if name else "")
    for name, child in list(module.named_modules()):
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if name else None
        if parent is None:
            continue
        if SubPixelConvTranspose2d.supports(child):  # outside a Sequential: no BatchNorm or act to move
            setattr(parent, attr, SubPixelConvTranspose2d(child))
            applied.append(f"{name}: ConvTranspose2d as sub-pixel convolutions")
        elif DepthwiseSumConv2d.supports(child):
            setattr(parent, attr, DepthwiseSumConv2d(child))
            applied.append(f"{name}: one-channel Conv2d as a depthwise convolution and a channel sum")
        elif _is_bicubic(child):  # it upsamples the model's input: the model's input channels
            channels = int(getattr(module, "input_size", (3,))[0])
            setattr(parent, attr, PolyphaseBicubic(child.scale, channels))
            applied.append(f"{name}: bicubic x{child.scale} as a polyphase depthwise convolution")
    return module, applied
