"""Export adapters: which graphs a model exports, and how the torch-free runtime reads their outputs.

A model whose ``forward`` is tensor-in, tensor-out needs no adapter: `Adapter` itself (the default) exports
one graph, ``model``, whose outputs are named by the model (``ZooModel.output_names``) or else by its task
(`zoo.tasks.Task.output_names`: ``image`` -> ``logits`` for classifiers), with a dynamic batch axis and,
when ``model.dynamic_size``, dynamic height and width. Post-processing and what ``zoo predict --onnx``
prints come from the task (`zoo.tasks`), the same code the PyTorch predict path runs. A family that needs more (several
graphs, extra inputs, other dynamic axes, other post-processing) adds **one file** here::

    # export/adapters/<family>.py
    from export.adapters import Adapter, GraphSpec, register_adapter

    @register_adapter
    class MyFamilyAdapter(Adapter):
        families = ("my_family",)     # ModelEntry.family: the zoo/models/<family>.py module name

        def graphs(self, model, *, input_size, dynamic): ...         # list[GraphSpec]; torch allowed inside
        # optional, where a graph's outputs mean something else than the task's (numpy only):
        def decode(self, graph, outputs, meta): ...                   # raw outputs -> the task's outputs
        def postprocess(self, graph, outputs, meta, **options): ...  # one item per sample

The modules of this package are discovered (no list to edit) and are imported by the torch-free runtime,
so at import time they may use numpy and the standard library only; torch is imported inside ``graphs``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.tasks import base as task_parity
from zoo.tasks import get_task
from zoo.tasks.classification import Classification
from zoo.tasks.image_to_image import to_uint8_images

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "Adapter",
    "Classification",
    "GraphSpec",
    "adapters",
    "get_adapter",
    "image_graph",
    "register_adapter",
    "resize_example",
    "task_of",
    "to_uint8_images",
]

# fp32 parity bound between onnxruntime and PyTorch: |ort - torch| <= atol + rtol * max|torch| per output.
# A graph may loosen it only with a written reason.
DEFAULT_ATOL = task_parity.DEFAULT_ATOL
DEFAULT_RTOL = task_parity.DEFAULT_RTOL


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
    rtol: float = DEFAULT_RTOL
    tolerance_note: str = ""  # why `atol`/`rtol` are looser than the defaults; required when they are
    exporter: str = "auto"  # "auto" (dynamo, TorchScript where dynamo fails), "dynamo" or "torchscript"
    note: str = ""  # recorded in the file's metadata (what the graph computes, in a sentence)
    # More ``zoo.*`` metadata entries for the file: what the runtime must know to read the outputs (e.g. a
    # detector's ``export_split``: which part of the model is in the graph and which is left to numpy).
    extra: dict[str, Any] = field(default_factory=dict)
    # Whether each output is compared element by element with PyTorch. Detectors set False: their outputs
    # are variable-length lists whose order among near-tied scores is arbitrary, so only the task-level
    # `agreement` (detections matched by IoU) can decide.
    elementwise: bool = True
    # The task-level check of one validated input, ``(expected, actual, meta) -> zoo.tasks.Agreement`` on
    # the named outputs; None: the task's own (`zoo.tasks.Task.agreement`). A graph whose outputs are not
    # the task's (a dense network whose grouping the runtime does) brings its own.
    agreement: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if (self.atol > DEFAULT_ATOL or self.rtol > DEFAULT_RTOL) and not self.tolerance_note:
            raise ValueError(
                f"graph '{self.name}': atol={self.atol}, rtol={self.rtol} are looser than {DEFAULT_ATOL}, "
                f"{DEFAULT_RTOL}; set tolerance_note to say why fp32 parity cannot be kept"
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

    @property
    def dynamic_batch(self) -> bool:
        """Whether every input's axis 0 is dynamic (a detector traced with its one image is not)."""
        return self.dynamic and all(0 in (self.dynamic_axes.get(n) or {}) for n in self.input_names)


class Adapter:
    """The default export adapter: one tensor-in, tensor-out graph. Subclass it for a family."""

    families: tuple[str, ...] = ()
    # The in-browser demo of `zoo gallery` for this family's graph: None for the task's own
    # (`zoo.tasks.Task.browser_demo`); "latent" (latent[, label] -> image, as `sample` runs it with a fixed
    # latent) where the task has none; "" where the runtime's decode is more than the task's
    # post-processing (which is all the page's JavaScript does), so the page could not agree with it.
    browser_demo: str | None = None
    # Generators whose torch-free `sample` takes the initial noise (``noise=``) as ``model.sample`` does and,
    # with the weight's default sampler, draws nothing else: the two runtimes can then be compared sample for
    # sample on the same noise (`export.verify`'s quick check) instead of by FID over many samples.
    replays_noise: bool = False

    @property
    def name(self) -> str:
        return type(self).__name__

    # ---------------------------------------------------------------- export side (torch inside)
    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        """The graphs to export for `model`, traced at `input_size` (C, H, W)."""
        from zoo.models.base import output_names_of

        outputs = output_names_of(model, _count_outputs(model, input_size), get_task(task_of(model)))
        return [image_graph(model, input_size=input_size, dynamic=dynamic, output_names=outputs)]

    def matches(self, model: Any) -> bool:
        """Whether this adapter exports `model` although its family is not in ``families`` (a new builder
        module over the same kind of network); asked only when no adapter names the family."""
        return False

    # ---------------------------------------------------------------- runtime side (numpy only)
    def decode(self, graph: str, outputs: dict[str, np.ndarray], meta: Any) -> dict[str, np.ndarray]:
        """A graph's raw outputs -> the task's named outputs (what `zoo.tasks.Task.postprocess` reads).

        Identity by default; a family whose graph stops before the task's outputs (a dense network whose
        instances the runtime groups in numpy) finishes the computation here, so ``zoo predict --onnx``,
        validation and the PyTorch path all hand the task the same arrays.
        """
        return outputs

    def postprocess(self, graph: str, outputs: dict[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        """One result per sample, as the model's task reads its outputs."""
        return get_task(meta.task).postprocess(self.decode(graph, outputs, meta), meta, **options)


_ADAPTERS: list[Adapter] = []
_DEFAULT = Adapter()
_discovered = False


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter the export spec of its ``families``."""
    if not cls.families:
        raise ValueError(f"{cls.__name__} names no families to adapt")
    for other in _ADAPTERS:
        if type(other).__qualname__ == cls.__qualname__ and type(other).__module__ == cls.__module__:
            _ADAPTERS.remove(other)  # a re-import (importlib.reload) replaces, never duplicates
            break
    clash = [
        f"{key} (by {type(other).__name__})"
        for other in _ADAPTERS
        for key in set(cls.families) & set(other.families)
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


def get_adapter(family: str | None, model: Any = None) -> Adapter:
    """The adapter of a family (a ``zoo/models/<family>.py`` module name), else, given the `model`, the
    first adapter that `matches` it (a torchvision detector defined in a new module), else the default one.

    What a task's outputs mean is the task's business (`zoo.tasks`); an adapter only says which graphs a
    family exports, so there is no lookup by task here.
    """
    _discover()
    for adapter in _ADAPTERS:
        if family and family in adapter.families:
            return adapter
    if model is not None:
        for adapter in _ADAPTERS:
            if adapter.matches(model):
                return adapter
    return _DEFAULT


def task_of(model: Any) -> str:
    """The task name of a zoo model: its weight's, else its architecture's."""
    meta = getattr(model, "pretrained_weights", None)
    if meta is not None:
        return meta.task
    from zoo.registry import get_entry

    return get_entry(model.zoo_config["architecture"]).task


def _count_outputs(model: Any, input_size: Sequence[int]) -> int:
    import torch

    from zoo.models.base import flatten_outputs

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
