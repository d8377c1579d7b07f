"""What a model does to its input, layer by layer: output shape, receptive field, parameters and FLOPs.

``summary(model, input_size=(1, 28, 28))`` runs one forward pass (batch of one, eval mode, no grad) and
returns a `ModelSummary`: one row per module call, plus totals. ``zoo summary NAME --input 1x28x28``
prints it.

How each column is measured:

- **Output shape**: read from the tensors the module returned.
- **Receptive field** (h x w) and **jump**: how many input pixels one output position can see, and how far
  apart (in input pixels) two adjacent output positions are. Both are tracked *per tensor*, not per
  module in execution order, so branches (ResNet shortcuts, U-Net skips) are handled: a
  `TorchFunctionMode` gives every tensor computed from the image the (rf, jump) of the tensors it was
  computed from. Convolutions and pooling grow it by the classic recurrence (see `receptive_field`),
  elementwise ops (``+``, activations, norms, concatenation) take the maximum of their inputs, and ops
  that mix every position (global pooling, flatten, linear layers, attention, recurrent layers) make it
  ``"global"``. Normalisation statistics are ignored, as is usual (in eval mode BatchNorm is pointwise).
  Inputs tracked are the 4-d (N, C, H, W) ones; for any other model the column shows ``-``.
- **Params**: a module's own parameters (not its children's), each shared parameter counted once.
- **FLOPs**: counted by `torch.utils.flop_counter.FlopCounterMode`, which follows torch's convention of
  2 FLOPs per multiply-add for matmuls and convolutions and 0 for elementwise ops, norms and activations
  (plus a formula, in that convention, for the CPU LSTM kernel it does not know).

Rows are module calls in the order they finish: every call of a leaf module, and of any other module
that owns parameters directly or runs FLOPs in its own ``forward`` (its row shows only its own share), so
the rows add up to the totals.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakTensorKeyDictionary

from zoo.errors import ConfigError

__all__ = [
    "FLOPS_CONVENTION",
    "GLOBAL",
    "LayerRow",
    "ModelSummary",
    "conv_output_size",
    "count_flops",
    "receptive_field",
    "summary",
]

# The receptive field of a tensor in which every position may depend on every input pixel.
GLOBAL = "global"
FLOPS_CONVENTION = "torch.utils.flop_counter: 2 per multiply-add; elementwise ops and norms count 0"


def _mkldnn_rnn_layer_flops(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one LSTM layer and direction, as torch counts the ``addmm``s of its GRU and RNN kernels.

    On CPU, ``nn.LSTM`` runs ``aten.mkldnn_rnn_layer``, which the counter has no formula for (it would
    count 0). Every step multiplies the input by ``w_ih`` and the hidden state by ``w_hh``.
    """
    steps = math.prod(input_shape) // input_shape[-1]  # sequence length x batch, in either layout
    return 2 * steps * (math.prod(w_ih_shape) + math.prod(w_hh_shape))


_EXTRA_FLOP_FORMULAS = {torch.ops.aten.mkldnn_rnn_layer: _mkldnn_rnn_layer_flops}


def _flop_counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)


def count_flops(model: nn.Module, *args: Any) -> int:
    """FLOPs of one forward call ``model(*args)`` without gradients, counted as `summary` counts them."""
    with torch.no_grad(), _flop_counter() as counter:
        model(*args)
    return counter.get_total_flops()


# --------------------------------------------------------------------------------------------------
# Pure formulas
# --------------------------------------------------------------------------------------------------


def conv_output_size(
    n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output length of a convolution or pooling along one dimension of input length ``n``.

    ``floor((n + 2p - d(k-1) - 1) / s) + 1``. With ``ceil_mode`` (pooling) the division rounds up, but, as
    in PyTorch, a last window that would start in the right padding is dropped.
    """
    if min(kernel, stride, dilation) < 1 or padding < 0 or n < 1:
        raise ValueError(
            f"need n, kernel, stride, dilation >= 1 and padding >= 0; got n={n}, kernel={kernel}, "
            f"stride={stride}, padding={padding}, dilation={dilation}"
        )
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        raise ValueError(
            f"input of length {n} (padding {padding}) is smaller than the kernel's extent "
            f"{dilation * (kernel - 1) + 1}"
        )
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1
    return out


def _grow(rf: Fraction, jump: Fraction, kernel: int, stride: int, dilation: int) -> tuple[Fraction, Fraction]:
    """One conv/pool step of the receptive-field recurrence, along one dimension."""
    return rf + (kernel - 1) * dilation * jump, jump * stride


def receptive_field(layers: Iterable[Sequence[int]]) -> tuple[int, int]:
    """Receptive field and jump, along one dimension, at the end of a chain of convolutions/poolings.

    ``layers`` holds ``(kernel, stride)`` or ``(kernel, stride, dilation)`` per layer, input first.
    Starting from ``rf = jump = 1`` (one input pixel): ``rf_out = rf_in + (k - 1) * d * jump_in`` and
    ``jump_out = jump_in * s``. Returns ``(rf, jump)`` in input pixels.
    """
    rf, jump = Fraction(1), Fraction(1)
    for layer in layers:
        kernel, stride, dilation = (*layer, 1) if len(layer) == 2 else tuple(layer)
        if min(kernel, stride, dilation) < 1:
            raise ValueError(f"kernel, stride and dilation must be >= 1, got {tuple(layer)}")
        rf, jump = _grow(rf, jump, kernel, stride, dilation)
    return int(rf), int(jump)


# --------------------------------------------------------------------------------------------------
# Receptive-field tracking, per tensor
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """Receptive field and jump of a tensor whose last two dims are image rows and columns."""

    size: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))
    jump: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))


_State = _Field | str  # a _Field, or GLOBAL


def _merge(states: Iterable[_State]) -> _State | None:
    """The field of a value computed position-wise from tensors with these fields: the largest."""
    states = list(states)
    if not states:
        return None
    if any(s == GLOBAL for s in states):
        return GLOBAL
    return _Field(
        tuple(max(s.size[i] for s in states) for i in range(2)),
        tuple(max(s.jump[i] for s in states) for i in range(2)),
    )


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = tuple(value)
    return (value[0], value[0]) if len(value) == 1 else (value[-2], value[-1])


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in nested tuples, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


# Ops that can mix any positions of a tensor with spatial layout: the result depends on the whole input.
_MIXING_OPS = frozenset(
    {
        "linear",
        "bilinear",
        "matmul",
        "rmatmul",
        "mm",
        "bmm",
        "addmm",
        "addbmm",
        "baddbmm",
        "einsum",
        "tensordot",
        "scaled_dot_product_attention",
        "multi_head_attention_forward",
        "grid_sample",
        "lstm",
        "gru",
        "rnn_tanh",
        "rnn_relu",
    }
)
# Ops that only reorganise a tensor: the field survives while the last two dims stay the image's.
_LAYOUT_OPS = frozenset(
    {
        "view",
        "reshape",
        "flatten",
        "unflatten",
        "permute",
        "transpose",
        "swapaxes",
        "swapdims",
        "movedim",
        "moveaxis",
        "squeeze",
        "unsqueeze",
        "t",
        "view_as",
        "reshape_as",
        "unfold",
    }
)
# Reductions and normalisations along `dim`: global when `dim` includes a spatial dim.
_DIM_OPS = frozenset(
    {
        "mean",
        "sum",
        "nansum",
        "amax",
        "amin",
        "max",
        "min",
        "prod",
        "std",
        "var",
        "std_mean",
        "var_mean",
        "logsumexp",
        "norm",
        "argmax",
        "argmin",
        "median",
        "nanmedian",
        "softmax",
        "log_softmax",
        "softmin",
        "cumsum",
        "cumprod",
        "logcumsumexp",
        "all",
        "any",
        "count_nonzero",
        "normalize",
    }
)
_SOFTMAX_OPS = frozenset({"softmax", "log_softmax", "softmin"})
# Results that do not depend on the values of their tensor arguments.
_FACTORY_OPS = frozenset(
    {
        "zeros_like",
        "ones_like",
        "empty_like",
        "full_like",
        "rand_like",
        "randn_like",
        "randint_like",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "new_tensor",
        "size",
        "dim",
    }
)
_INTERPOLATION_TAPS = {"nearest": 1, "nearest-exact": 1, "bilinear": 2, "linear": 2, "bicubic": 4}


class _FieldTracker(TorchFunctionMode):
    """Propagates `_Field`s from the input image to every tensor computed from it."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: WeakTensorKeyDictionary = WeakTensorKeyDictionary()

    def get(self, tensor: Any) -> _State | None:
        return self.fields.get(tensor) if isinstance(tensor, torch.Tensor) else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # "relu_" and "relu", "__add__" and "add": an in-place variant follows its op's rule.
        name = getattr(func, "__name__", "").strip("_")
        if name in _FACTORY_OPS:
            return out
        tracked = [t for t in _tensors((args, kwargs)) if t in self.fields]
        if not tracked:
            return out
        if name == "setitem":  # x[idx] = value: x now also holds value's positions
            out = args[0]
        state = self._propagate(name, args, kwargs, out, tracked)
        if state is not None:
            for tensor in _tensors(out):
                self.fields[tensor] = state
            if args and out is args[0] and isinstance(out, torch.Tensor) and out._base is not None:
                # An in-place write into a view changes its base too.
                self.fields[out._base] = _merge(s for s in (self.get(out._base), state) if s is not None)
        return out

    def _propagate(self, name: str, args: tuple, kwargs: dict, out: Any, tracked: list) -> _State | None:
        if name in _MIXING_OPS:
            return GLOBAL  # whichever argument came from the image: W @ x mixes x's rows
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        state = self.get(source)
        others = [self.fields[t] for t in tracked if t is not source]
        result = next(_tensors(out), None)
        if state is not None and state != GLOBAL and result is not None:
            state = self._spatial_rule(name, args, kwargs, source, result, state)
        return _merge(s for s in (state, *others) if s is not None)

    def _spatial_rule(
        self, name: str, args: tuple, kwargs: dict, x: torch.Tensor, out: torch.Tensor, f: _Field
    ) -> _State:
        if name in _LAYOUT_OPS:
            keeps = out.dim() >= 3 and x.dim() >= 2 and tuple(out.shape[-2:]) == tuple(x.shape[-2:])
            return f if keeps else GLOBAL
        if name in _DIM_OPS:
            return self._reduction_rule(name, args, kwargs, x, f)
        if name == "conv2d":
            kernel = tuple(args[1].shape[-2:]) if len(args) > 1 else tuple(kwargs["weight"].shape[-2:])
            stride = _pair(_arg(args, kwargs, 3, "stride", 1))
            dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
            return _grow_field(f, kernel, stride, dilation)
        if name == "conv_transpose2d":
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            stride = _pair(_arg(args, kwargs, 3, "stride", 1))
            dilation = _pair(_arg(args, kwargs, 7, "dilation", 1))
            # Output o sees inputs i with i*s + k*d = o + p: at most floor((K-1)d / s) + 1 adjacent ones.
            size = tuple(
                f.size[i] + ((weight.shape[-2 + i] - 1) * dilation[i] // stride[i]) * f.jump[i]
                for i in range(2)
            )
            return _Field(size, tuple(f.jump[i] / stride[i] for i in range(2)))
        if name in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d"):
            offset = 1 if name == "lp_pool2d" else 0  # lp_pool2d(input, norm_type, kernel_size, stride)
            kernel = _pair(_arg(args, kwargs, 1 + offset, "kernel_size"))
            stride = _arg(args, kwargs, 2 + offset, "stride")
            stride = kernel if stride is None or stride == [] or stride == () else _pair(stride)
            dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if name.startswith("max") else (1, 1)
            return _grow_field(f, kernel, stride, dilation)
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"):
            return _adaptive_rule(f, x, out)
        if name == "interpolate":
            mode = _arg(args, kwargs, 3, "mode", "nearest")
            if mode == "area":
                return _adaptive_rule(f, x, out)
            taps = _INTERPOLATION_TAPS.get(mode)
            if taps is None:
                return GLOBAL
            scale = [Fraction(x.shape[-2 + i], out.shape[-2 + i]) for i in range(2)]
            return _Field(
                tuple(f.size[i] + (taps - 1) * f.jump[i] for i in range(2)),
                tuple(f.jump[i] * scale[i] for i in range(2)),
            )
        if name == "pixel_shuffle":
            r = _arg(args, kwargs, 1, "upscale_factor")
            return _Field(f.size, tuple(j / r for j in f.jump))
        if name == "pixel_unshuffle":
            r = _arg(args, kwargs, 1, "downscale_factor")
            return _grow_field(f, (r, r), (r, r), (1, 1))
        # Elementwise and shape-preserving ops (activations, norms, +, cat, pad, slicing, ...).
        return f

    @staticmethod
    def _reduction_rule(name: str, args: tuple, kwargs: dict, x: torch.Tensor, f: _Field) -> _State:
        if any(isinstance(v, torch.Tensor) for v in (*args[1:], *kwargs.values())):
            return f  # torch.max(a, b), torch.min(a, other=b): elementwise
        index = 2 if name in ("norm", "normalize") else 1
        dims = _arg(args, kwargs, index, "dim")
        if name == "normalize" and dims is None:
            dims = 1
        if name in _SOFTMAX_OPS and dims is None:
            dims = 0 if x.dim() in (0, 1, 3) else 1  # torch's implicit softmax dim
        if dims is None or isinstance(dims, bool):  # bool: torch.std(x, unbiased), a full reduction
            return GLOBAL
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not dims or not all(isinstance(d, int) for d in dims):
            return GLOBAL  # dim=[] reduces everything; named dims are not worth resolving
        spatial = {x.dim() - 2, x.dim() - 1}
        return GLOBAL if any(d % max(x.dim(), 1) in spatial for d in dims) else f


def _grow_field(f: _Field, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> _Field:
    steps = [_grow(f.size[i], f.jump[i], kernel[i], stride[i], dilation[i]) for i in range(2)]
    return _Field((steps[0][0], steps[1][0]), (steps[0][1], steps[1][1]))


def _adaptive_rule(f: _Field, x: torch.Tensor, out: torch.Tensor) -> _State:
    """Adaptive pooling from n to m positions: windows [floor(i n/m), ceil((i+1) n/m)) of varying size."""
    n, m = tuple(x.shape[-2:]), tuple(out.shape[-2:])
    if m == (1, 1):
        return GLOBAL
    kernel = [max(-(-((i + 1) * n[d]) // m[d]) - (i * n[d]) // m[d] for i in range(m[d])) for d in range(2)]
    return _Field(
        tuple(f.size[d] + (kernel[d] - 1) * f.jump[d] for d in range(2)),
        tuple(f.jump[d] * Fraction(n[d], m[d]) for d in range(2)),
    )


# --------------------------------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRow:
    """One module call.

    ``receptive_field`` is ``(h, w)`` in input pixels, `GLOBAL` when every input pixel can reach the
    output, or None where it does not apply (no image input, e.g. sequence models). ``jump`` is the
    distance between adjacent output positions in input pixels (None unless ``receptive_field`` is
    ``(h, w)``). ``params`` are the module's own parameters, counted at their first call only; ``flops``
    are those of this call, excluding rows of its child modules.
    """

    name: str
    type: str
    output_shape: tuple[tuple[int, ...], ...]  # one shape per output tensor
    receptive_field: tuple[int, int] | str | None
    jump: tuple[float, float] | None
    params: int
    flops: int
    call: int = 1  # 2 for a module's second call (ResNet reuses its ReLU), and so on


@dataclass(frozen=True)
class ModelSummary:
    """A model's per-layer table and totals. ``str()`` renders the table that ``zoo summary`` prints."""

    model: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    layers: tuple[LayerRow, ...]
    total_params: int
    trainable_params: int
    total_flops: int
    # Parameters of modules that forward never called as modules (unused, or used by a parent directly).
    uncalled_params: int = 0
    flops_convention: str = field(default=FLOPS_CONVENTION)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable data: lists for shapes and pairs."""
        data = asdict(self)
        data["layers"] = list(data["layers"])
        data["input_shapes"] = [list(s) for s in self.input_shapes]
        data["output_shapes"] = [list(s) for s in self.output_shapes]
        for row in data["layers"]:
            row["output_shape"] = [list(s) for s in row["output_shape"]]
            if isinstance(row["receptive_field"], tuple):
                row["receptive_field"] = list(row["receptive_field"])
            if row["jump"] is not None:
                row["jump"] = list(row["jump"])
        return data

    def __str__(self) -> str:
        header = ("layer", "type", "output shape", "RF (h x w)", "jump", "params", "FLOPs (2 per MAC)")
        right = (False, False, False, True, True, True, True)
        body = [
            (
                (row.name or "(model)") + (f" (call {row.call})" if row.call > 1 else ""),
                row.type,
                ", ".join(_shape(s) for s in row.output_shape) or "-",
                _pair_text(row.receptive_field) if row.receptive_field != GLOBAL else GLOBAL,
                _pair_text(row.jump),
                f"{row.params:,}",
                f"{row.flops:,}",
            )
            for row in self.layers
        ]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            text = "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right))
            return text.rstrip()

        rule = "  ".join("-" * w for w in widths)
        inputs = ", ".join(_shape(s) for s in self.input_shapes)
        outputs = ", ".join(_shape(s) for s in self.output_shapes)
        lines = [f"{self.model}: input {inputs} -> output {outputs}", line(header), rule]
        lines += [line(r) for r in body]
        lines += [
            rule,
            f"params: {self.total_params:,} total, {self.trainable_params:,} trainable, "
            f"{self.total_params - self.trainable_params:,} non-trainable",
        ]
        if self.uncalled_params:
            lines.append(f"        {self.uncalled_params:,} of them in modules forward did not call")
        lines += [
            f"FLOPs: {self.total_flops:,} total ({self.flops_convention})",
            "RF (receptive field): input pixels one output position can see; global: the whole input;",
            "jump: input pixels between adjacent output positions; -: not applicable (no image input)",
        ]
        return "\n".join(lines)


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(v) for v in shape) if shape else "scalar"


def _pair_text(pair: Sequence[float] | None) -> str:
    return "-" if pair is None else "x".join(f"{float(v):g}" for v in pair)


@dataclass
class _Call:
    module: nn.Module
    flops_at_start: int
    child_flops: int = 0


class _Recorder:
    """Forward hooks that turn module calls into `LayerRow`s, reading FLOPs and fields as they happen."""

    def __init__(self, model: nn.Module, tracker: _FieldTracker, counter: FlopCounterMode) -> None:
        self.names = {m: n for n, m in model.named_modules()}
        self.tracker, self.counter = tracker, counter
        self.stack: list[_Call] = []
        self.calls: Counter[nn.Module] = Counter()
        self.counted: set[int] = set()  # ids of parameters already in a row
        self.rows: list[LayerRow] = []

    def pre(self, module: nn.Module, args: Any) -> None:
        self.stack.append(_Call(module, self.counter.get_total_flops()))

    def post(self, module: nn.Module, args: Any, output: Any) -> None:
        call = self.stack.pop()
        assert call.module is module, "module calls did not nest"
        flops = self.counter.get_total_flops() - call.flops_at_start
        if self.stack:
            self.stack[-1].child_flops += flops
        own_flops = flops - call.child_flops
        self.calls[module] += 1
        params = 0
        for p in module.parameters(recurse=False):
            if id(p) not in self.counted:
                self.counted.add(id(p))
                params += p.numel()
        is_leaf = next(module.children(), None) is None
        if not (is_leaf or params or own_flops):
            return
        outputs = list(_tensors(output))
        state = _merge([s for s in map(self.tracker.get, outputs) if s is not None])
        rf = jump = None
        if isinstance(state, _Field):
            rf = tuple(math.ceil(v) for v in state.size)
            jump = tuple(float(v) for v in state.jump)
        elif state == GLOBAL:
            rf = GLOBAL
        self.rows.append(
            LayerRow(
                name=self.names.get(module, type(module).__name__),
                type=type(module).__name__,
                output_shape=tuple(tuple(t.shape) for t in outputs),
                receptive_field=rf,
                jump=jump,
                params=params,
                flops=own_flops,
                call=self.calls[module],
            )
        )


def summary(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    inputs: torch.Tensor | Sequence[Any] | None = None,
) -> ModelSummary:
    """Per-layer output shape, receptive field, parameters and FLOPs of ``model``, plus totals.

    Args:
        model: any module; a `ZooModel` supplies its own example inputs.
        input_size: the per-sample shape of the main input, without batch, e.g. ``(1, 28, 28)``. It
            replaces the first of ``model.example_inputs(1)``, so models with extra inputs still run.
        inputs: the positional arguments of ``forward`` (a tuple/list; a single tensor is one argument),
            for models with several or non-tensor inputs. Give ``input_size`` or ``inputs``, not both;
            with neither, ``model.example_inputs(1)`` is used.

    The forward pass runs once on a batch of one, in eval mode and without grad; the model's training
    flag is restored afterwards. A model on the meta device gives the same table without computing
    anything. An input the model cannot run on raises `ConfigError`.
    """
    name = getattr(model, "zoo_config", {}).get("architecture") or type(model).__name__
    args = _resolve_inputs(model, name, input_size, inputs)
    was_training = model.training
    model.eval()
    try:
        rows, output, total_flops = _run(model, name, args)
    finally:
        model.train(was_training)
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    return ModelSummary(
        model=name,
        input_shapes=tuple(tuple(t.shape) for t in _tensors(args)),
        output_shapes=tuple(tuple(t.shape) for t in _tensors(output)),
        layers=tuple(rows),
        total_params=total,
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_flops=total_flops,
        uncalled_params=total - sum(r.params for r in rows),
    )


def _resolve_inputs(
    model: nn.Module, name: str, input_size: Sequence[int] | None, inputs: Any
) -> tuple[Any, ...]:
    if inputs is not None:
        if input_size is not None:
            raise ConfigError("give summary() input_size or inputs, not both")
        return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    example = model.example_inputs(1) if callable(getattr(model, "example_inputs", None)) else None
    if input_size is None:
        if example is not None:
            return tuple(example)
        input_size = getattr(model, "input_size", None)
        if input_size is None:
            raise ConfigError(
                f"{name} has no example_inputs() or input_size: pass summary(model, input_size=(C, H, W)) "
                "or inputs=(...)"
            )
    size = tuple(input_size)
    if not size or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ConfigError(f"input_size must be positive ints like (1, 28, 28), got {input_size!r}")
    expected = getattr(model, "input_size", None)
    if expected is not None and len(expected) != len(size):
        raise ConfigError(
            f"input_size {_shape(size)} has {len(size)} dims but {name} takes {len(expected)} "
            f"(e.g. {_shape(expected)}), without the batch dim"
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    first = example[0] if example else None
    if isinstance(first, torch.Tensor) and not first.is_floating_point():
        x = torch.zeros(1, *size, dtype=first.dtype, device=device)  # indices: 0 is always valid
    else:
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(1, *size, generator=generator, dtype=dtype).to(device)
    return (x, *(example[1:] if example else ()))


def _run(model: nn.Module, name: str, args: tuple[Any, ...]) -> tuple[list[LayerRow], Any, int]:
    tracker = _FieldTracker()
    for tensor in _tensors(args):
        if tensor.dim() == 4:  # (N, C, H, W): an image batch
            tracker.fields[tensor] = _Field()
    counter = _flop_counter()
    recorder = _Recorder(model, tracker, counter)
    handles = []
    try:
        for module in recorder.names:
            handles.append(module.register_forward_pre_hook(recorder.pre))
            handles.append(module.register_forward_hook(recorder.post))
        try:
            with torch.no_grad(), counter, tracker:
                output = model(*args)
        finally:
            for handle in handles:
                handle.remove()
    except Exception as err:
        shapes = ", ".join(_shape(t.shape) for t in _tensors(args))
        try:  # tell a bad input (the plain forward fails too) from a failure of the analysis itself
            with torch.no_grad():
                model(*args)
        except Exception:
            raise ConfigError(f"{name} cannot run on an input of shape {shapes}: {err}") from err
        raise
    return recorder.rows, output, counter.get_total_flops()
