"""Export adapters: which graphs a model exports, and how the torch-free runtime reads their outputs.

A model whose ``forward`` is tensor-in, tensor-out needs no adapter: `Adapter` itself (the default) exports
one graph, ``model``, named from the model's task (``image`` -> ``logits`` for classifiers; a model class
may set ``onnx_output_names`` instead), with a dynamic batch axis and, when ``model.dynamic_size``,
dynamic height and width. A family that needs more (several
graphs, extra inputs, other dynamic axes, other post-processing) adds **one file** here::

    # export/adapters/<family>.py
    from export.adapters import Adapter, GraphSpec, register_adapter

    @register_adapter
    class MyFamilyAdapter(Adapter):
        families = ("my_family",)     # ModelEntry.family: the zoo/models/<family>.py module name
        # or: tasks = ("my-task",)    # every model of a task (a family match wins over a task match)

        def graphs(self, model, *, input_size, dynamic): ...         # list[GraphSpec]; torch allowed inside
        def postprocess(self, graph, outputs, meta, **options): ...  # numpy only: one item per sample
        def describe(self, item, source, out_dir=None, **options): ...  # a line for `zoo predict --onnx`

The modules of this package are discovered (no list to edit) and are imported by the torch-free runtime,
so at import time they may use numpy and the standard library only; torch is imported inside ``graphs``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_ATOL",
    "Adapter",
    "Classification",
    "GraphSpec",
    "adapters",
    "get_adapter",
    "image_graph",
    "register_adapter",
    "resize_example",
    "to_uint8_images",
]

# fp32 parity bound between onnxruntime and PyTorch; a graph may loosen it only with a written reason.
DEFAULT_ATOL = 1e-4

# The output names of a one-output model, by task. Never the exporter's auto names ('1801', 'output_0').
TASK_OUTPUT_NAMES = {
    "image-classification": "logits",
    "autoencoding": "reconstruction",
}


@dataclass
class GraphSpec:
    """One ONNX graph to write: the module to trace, its named inputs and outputs, and its dynamic axes.

    ``make_inputs(batch, variant)`` returns the example tensors for a batch size and a *variant*: an
    adapter-defined size (``(H, W)`` for images, ``T`` for sequences). ``variants[0]`` is traced; every
    variant is validated (with dynamic axes; a static graph validates ``variants[0]`` only).
    """

    name: str  # "model", "encoder", "decoder", ...: the file suffix and the runtime's ``meta.graph``
    module: Any  # torch.nn.Module (or callable module) traced by the exporter, in eval mode
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    make_inputs: Callable[[int, Any], tuple[torch.Tensor, ...]]
    variants: tuple[Any, ...]
    # Per input and output name: {axis: symbolic dim name}. Inputs drive the exporter; outputs name dims
    # for the TorchScript exporter (dynamo infers them).
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    atol: float = DEFAULT_ATOL
    tolerance_note: str = ""  # why `atol` is looser than DEFAULT_ATOL; required when it is
    exporter: str = "auto"  # "auto" (dynamo, TorchScript where dynamo fails), "dynamo" or "torchscript"
    note: str = ""  # recorded in the file's metadata (what the graph computes, in a sentence)

    def __post_init__(self) -> None:
        if self.atol > DEFAULT_ATOL and not self.tolerance_note:
            raise ValueError(
                f"graph '{self.name}': atol={self.atol} is looser than {DEFAULT_ATOL}; set tolerance_note to "
                "say why fp32 parity cannot be kept"
            )
        if self.exporter not in ("auto", "dynamo", "torchscript"):
            raise ValueError(f"graph '{self.name}': exporter must be auto, dynamo or torchscript")
        if not self.variants:
            raise ValueError(f"graph '{self.name}': give at least one variant (the traced size)")
        names = [*self.input_names, *self.output_names]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"graph '{self.name}': input and output names must be unique and non-empty")

    @property
    def dynamic(self) -> bool:
        return any(self.dynamic_axes.get(n) for n in self.input_names)


@dataclass
class Classification:
    """A classifier's answer for one sample: class probabilities and their labels."""

    probs: np.ndarray
    labels: tuple[str, ...] = ()

    @property
    def index(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def label(self) -> str:
        return self.labels[self.index] if self.index < len(self.labels) else str(self.index)

    @property
    def probability(self) -> float:
        return float(self.probs[self.index])

    def topk(self, k: int = 5) -> list[tuple[str, float]]:
        from zoo.preprocess import topk

        return topk(self.probs, k, self.labels)


class Adapter:
    """The default export adapter: one tensor-in, tensor-out graph. Subclass it for a family."""

    families: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return type(self).__name__

    # ---------------------------------------------------------------- export side (torch inside)
    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        """The graphs to export for `model`, traced at `input_size` (C, H, W)."""
        outputs = getattr(model, "onnx_output_names", None)
        if not outputs:
            task = _task_of(model)
            if task in TASK_OUTPUT_NAMES:
                outputs = (TASK_OUTPUT_NAMES[task],)
            else:  # named after the task ("semantic-segmentation" -> "semantic_segmentation"), never '1801'
                slug = task.replace("-", "_")
                count = _count_outputs(model, input_size)
                outputs = (slug,) if count == 1 else tuple(f"{slug}_{i}" for i in range(count))
        return [image_graph(model, input_size=input_size, dynamic=dynamic, output_names=tuple(outputs))]

    # ---------------------------------------------------------------- runtime side (numpy only)
    def postprocess(self, graph: str, outputs: dict[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        """One result per sample: `Classification` for classifiers, else the sample's raw output arrays."""
        if meta.task == "image-classification" and len(outputs) == 1:
            from zoo.preprocess import softmax

            (logits,) = outputs.values()
            probs = softmax(logits.astype(np.float64), axis=-1)
            return [Classification(p, tuple(meta.labels)) for p in probs]
        batch = len(next(iter(outputs.values())))
        return [{k: v[i] for k, v in outputs.items()} for i in range(batch)]

    def describe(
        self, item: Any, source: str, out_dir: Path | None = None, k: int = 3, **options: Any
    ) -> str:
        """One printable line per input file (the format of `zoo predict`)."""
        if isinstance(item, Classification):
            return f"{source}: " + ", ".join(f"{label} {p:.3f}" for label, p in item.topk(k))
        shapes = ", ".join(f"{key} {tuple(value.shape)}" for key, value in item.items())
        return f"{source}: {shapes}"


_ADAPTERS: list[Adapter] = []
_DEFAULT = Adapter()
_discovered = False


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter the export spec of its ``families`` / ``tasks``."""
    if not (cls.families or cls.tasks):
        raise ValueError(f"{cls.__name__} names no families or tasks to adapt")
    for other in _ADAPTERS:
        if type(other).__qualname__ == cls.__qualname__ and type(other).__module__ == cls.__module__:
            _ADAPTERS.remove(other)  # a re-import (importlib.reload) replaces, never duplicates
            break
    clash = [
        f"{key} (by {type(other).__name__})"
        for other in _ADAPTERS
        for key in (*set(cls.families) & set(other.families), *set(cls.tasks) & set(other.tasks))
    ]
    if clash:
        raise ValueError(f"{cls.__name__}: already adapted: {', '.join(clash)}")
    _ADAPTERS.append(cls())
    return cls


def unregister_adapter(cls: type[Adapter]) -> None:
    """Remove an adapter registered with `register_adapter` (tests)."""
    _ADAPTERS[:] = [a for a in _ADAPTERS if type(a) is not cls]


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def adapters() -> list[Adapter]:
    """Every registered adapter (the modules of this package are imported on first use)."""
    _discover()
    return list(_ADAPTERS)


def get_adapter(family: str | None, task: str | None) -> Adapter:
    """The adapter of a family, else of a task, else the default tensor-in, tensor-out one."""
    _discover()
    for adapter in _ADAPTERS:
        if family and family in adapter.families:
            return adapter
    for adapter in _ADAPTERS:
        if task and task in adapter.tasks:
            return adapter
    return _DEFAULT


# ------------------------------------------------------------------------- helpers for adapters
def _task_of(model: Any) -> str:
    meta = getattr(model, "pretrained_weights", None)
    if meta is not None:
        return meta.task
    from zoo.registry import get_entry

    return get_entry(model.zoo_config["architecture"]).task


def _count_outputs(model: Any, input_size: Sequence[int]) -> int:
    import torch

    from export.onnx import flatten_outputs

    with torch.no_grad():
        return len(flatten_outputs(model(torch.zeros(1, *input_size))))


def resize_example(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """An example image batch at another (H, W), keeping its value distribution (bilinear resampling)."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def image_graph(
    model: Any,
    *,
    input_size: Sequence[int],
    dynamic: bool,
    output_names: Sequence[str],
    name: str = "model",
    module: Any = None,
    input_name: str = "image",
    spatial_axes: dict[int, str] | None = None,
    note: str = "",
    **spec: Any,
) -> GraphSpec:
    """A graph with one image input (B, C, H, W) built from ``model.example_inputs``.

    Dynamic axes: the batch, plus ``spatial_axes`` (default: height and width when ``model.dynamic_size``).
    Validated at the traced size and at (2H, 3W) along the dynamic spatial axes.
    """
    import torch

    _, height, width = input_size
    if spatial_axes is None:
        spatial_axes = {2: "height", 3: "width"} if getattr(model, "dynamic_size", False) else {}
    if not dynamic:
        spatial_axes = {}
    # Non-square, and a multiple of the traced size, so any divisibility the architecture needs still holds.
    second = (height * 2 if 2 in spatial_axes else height, width * 3 if 3 in spatial_axes else width)
    variants = ((height, width), second) if spatial_axes else ((height, width),)

    def make_inputs(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(1000 * batch + size[0] + size[1])
        (x,) = model.example_inputs(batch_size=batch, generator=generator)
        return (resize_example(x, size),)

    axes: dict[str, dict[int, str]] = {}
    if dynamic:
        axes[input_name] = {0: "batch", **spatial_axes}
        for out in output_names:
            axes[out] = {0: "batch"}
    return GraphSpec(
        name=name,
        module=model if module is None else module,
        input_names=(input_name,),
        output_names=tuple(output_names),
        make_inputs=make_inputs,
        variants=variants,
        dynamic_axes=axes,
        note=note,
        **spec,
    )


def to_uint8_images(x: np.ndarray, input_size: Sequence[int], mean=None, std=None) -> list[np.ndarray]:
    """(B, C, H, W) float outputs in the input's pixel space -> (H, W, C) uint8 images.

    Undoes the weight's normalisation (``x * std + mean``) when it has one, then clips to [0, 1]. A flat
    (B, C*H*W) output is reshaped to `input_size` first.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.reshape(len(x), *input_size)
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {x.shape}")
    x = x.transpose(0, 2, 3, 1)
    if mean is not None and std is not None:
        x = x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return list((np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8))
