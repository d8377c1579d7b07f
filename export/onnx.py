"""Export any registered model to ONNX, and validate it with onnxruntime against PyTorch.

    from export import to_onnx
    result = to_onnx("resnet8_small.mnist", "resnet8_small.onnx")   # exported, checked, validated
    result.paths, result.exporters, result.report.max_abs

Which graphs a model exports comes from its family's adapter (`export.adapters`); a tensor-in, tensor-out
model gets one graph, ``model``. Each graph is exported with ``torch.onnx.export(dynamo=True)`` and, where
that fails, with the TorchScript exporter (``dynamo=False``); the exporter used is recorded in the file.
Validation is ``onnx.checker.check_model(full_check=True)`` and onnxruntime against PyTorch at batch 1 and
batch 2 and, for dynamic sizes, at two sizes, within ``1e-4`` absolute (fp32) unless the adapter says why not.
Layers that onnxruntime runs slowly are exported as exact equivalents it runs faster (`export.rewrites`);
validation always compares with the model as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.adapters import GraphSpec, get_adapter
from export.rewrites import onnx_friendly
from export.runtime import METADATA_PREFIX, ZooMetadata
from zoo.errors import ConfigError, ZooError
from zoo.models.base import flatten_outputs
from zoo.tasks.base import parity

__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "ExportResult",
    "ExportValidationError",
    "ExportedGraph",
    "GraphReport",
    "ParityCheck",
    "QuantizationReport",
    "ValidationReport",
    "calibrate_batchnorm",
    "flatten_outputs",
    "graph_paths",
    "graph_specs",
    "quantize_int8",
    "to_onnx",
    "validate",
]

# Opset 20: the dynamo exporter's default in torch 2.14, supported by onnxruntime >= 1.17 and by the
# TorchScript exporter (its last opset), so both exporters write the same opset.
DEFAULT_OPSET = 20
# Traced batch of dynamic graphs: not 1 (the exporter would specialise it) nor a validated size (1, 2).
EXPORT_BATCH = 3
VALIDATION_BATCHES = (1, 2)
# Random example inputs that measure a quantised copy when no real inputs are given.
QUANTIZATION_SAMPLES = 32


class ExportError(ZooError):
    """A model that no exporter could turn into a loadable ONNX graph."""


class ExportValidationError(ExportError):
    """An exported graph that fails the checker or disagrees with PyTorch beyond its tolerance."""

    def __init__(self, message: str, report: ValidationReport):
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------------------- reports
@dataclass
class ParityCheck:
    """One output of one graph on one input: onnxruntime vs PyTorch.

    Passes when ``max_abs <= atol + rtol * scale``, ``scale`` being the largest magnitude PyTorch gives for
    that output: the bound grows with the output, as numpy.allclose's and torch's assert_close do.
    """

    output: str
    batch: int
    variant: Any  # (H, W) for images, T for sequences: the adapter's size
    max_abs: float
    max_rel: float  # max |ort - torch| / max |torch|: the error relative to the output's scale
    atol: float
    shape_ok: bool = True
    rtol: float = 0.0
    scale: float = 0.0  # max |torch| of this output

    @property
    def bound(self) -> float:
        return self.atol + self.rtol * self.scale

    @property
    def passed(self) -> bool:
        return self.shape_ok and self.max_abs <= self.bound


@dataclass
class GraphReport:
    graph: str
    path: Path
    checker_error: str | None = None  # onnx.checker's message, None when it passed
    name_error: str | None = None  # inputs or outputs named otherwise than the spec
    checks: list[ParityCheck] = field(default_factory=list)
    tolerance_note: str = ""
    # The task's verdict on each validated input (`Task.agreement`, or the graph's): beyond float parity.
    agreements: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.checker_error is None
            and self.name_error is None
            and all(c.passed for c in self.checks)
            and all(a.ok for a in self.agreements)
        )

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.checks), default=float("nan"))

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.checks), default=float("nan"))


@dataclass
class ValidationReport:
    graphs: list[GraphReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.graphs)

    @property
    def max_abs(self) -> float:
        return max((g.max_abs for g in self.graphs), default=float("nan"))

    @property
    def max_rel(self) -> float:
        return max((g.max_rel for g in self.graphs), default=float("nan"))

    def summary(self) -> str:
        lines = []
        for g in self.graphs:
            state = "ok" if g.ok else "FAILED"
            lines.append(
                f"{g.graph} ({g.path.name}): {state}, max abs {g.max_abs:.2e}, max rel {g.max_rel:.2e}"
            )
            if g.checker_error:
                lines.append(f"  onnx.checker: {g.checker_error}")
            if g.name_error:
                lines.append(f"  names: {g.name_error}")
            for c in g.checks:
                if not c.passed:
                    what = (
                        "shape differs"
                        if not c.shape_ok
                        else f"max abs {c.max_abs:.3e} > atol {c.atol:.0e} + rtol {c.rtol:.0e} x {c.scale:.3g}"
                    )
                    lines.append(f"  {c.output} at batch {c.batch}, size {c.variant}: {what}")
            for a in g.agreements:
                if not a.ok:
                    lines.append(f"  task-level check: {a}")
        return "\n".join(lines)


@dataclass
class QuantizationReport:
    """What int8 dynamic quantisation changed, measured on given inputs (also stored in the file)."""

    path: Path
    samples: int
    inputs: str  # where the inputs came from
    max_abs_diff: float
    top1_agreement: float | None = None  # classifiers: fraction of samples whose top-1 is unchanged
    accuracy_fp32: float | None = None  # when targets were given
    accuracy_int8: float | None = None
    mse_fp32: float | None = None  # autoencoders: reconstruction error against the input images
    mse_int8: float | None = None
    size_fp32: int = 0
    size_int8: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {
            "method": "onnxruntime.quantization.quantize_dynamic",
            "weight_type": "int8",
            "samples": self.samples,
            "inputs": self.inputs,
            "max_abs_diff": self.max_abs_diff,
            "size_bytes_fp32": self.size_fp32,
            "size_bytes_int8": self.size_int8,
        }
        for key in ("top1_agreement", "accuracy_fp32", "accuracy_int8", "mse_fp32", "mse_int8"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass
class ExportedGraph:
    name: str
    path: Path
    exporter: str  # "dynamo" or "torchscript"
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: ZooMetadata
    seconds: float  # wall time of the export (without validation)
    fallback_reason: str | None = None  # why dynamo was not used
    quantized: QuantizationReport | None = None


@dataclass
class ExportResult:
    name: str
    graphs: list[ExportedGraph]
    report: ValidationReport | None = None

    @property
    def paths(self) -> dict[str, Path]:
        return {g.name: g.path for g in self.graphs}

    @property
    def path(self) -> Path:
        """The main file: the ``model`` graph, else the first one."""
        return self.paths.get("model", self.graphs[0].path)

    @property
    def exporters(self) -> dict[str, str]:
        return {g.name: g.exporter for g in self.graphs}

    def graph(self, name: str) -> ExportedGraph:
        for g in self.graphs:
            if g.name == name:
                return g
        raise KeyError(f"no graph '{name}'; exported: {', '.join(self.paths)}")


# --------------------------------------------------------------------------------------- helpers
def graph_paths(path: str | os.PathLike, graphs: Sequence[str]) -> dict[str, Path]:
    """Where each graph goes: ``x.onnx`` holds ``model`` and ``x.<graph>.onnx`` the others; a folder
    holds ``<graph>.onnx`` for every graph (``model.onnx``, ``encoder.onnx``, ``decoder.onnx``)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return {g: path if g == "model" else path.with_name(f"{path.stem}.{g}.onnx") for g in graphs}
    return {g: path / f"{g}.onnx" for g in graphs}


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batch_size: int = 4, seed: int = 0) -> nn.Module:
    """Set BatchNorm running statistics from one batch of example inputs (for randomly initialised models).

    A fresh model's BatchNorm has mean 0, variance 1, so in eval mode it normalises nothing and deep nets
    (random ResNet-152: logits ~1e7) reach magnitudes where fp32 rounding alone exceeds any absolute
    tolerance. Here each BatchNorm takes the mean and variance of its own input on a batch of
    ``model.example_inputs`` at the model's native size, in eval mode and in forward order, so every layer
    is normalised by statistics of inputs that the already-calibrated layers before it produced. The
    activations then have a trained network's scale, and a 1e-4 parity check means what it means for real
    weights. Returns `model`, in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    if not norms:
        return model

    def set_stats(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().float()
        dims = [0, *range(2, x.dim())]
        module.running_mean.copy_(x.mean(dims))
        module.running_var.copy_(x.var(dims, unbiased=True))

    hooks = [m.register_forward_pre_hook(set_stats) for m in norms if m.track_running_stats]
    try:
        model(*model.example_inputs(batch_size=batch_size, generator=torch.Generator().manual_seed(seed)))
    finally:
        for hook in hooks:
            hook.remove()
    return model


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' warnings and progress prints (their errors still propagate)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle onnxruntime workers spin by default, taking the cores from the PyTorch runs between ORT calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    # The dynamo exporter wraps the cause under "## Exception summary"; that part names the real problem.
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and "full stack trace" not in line]
    return f"{type(err).__name__}: {' '.join(lines[:3])[:400]}" if lines else type(err).__name__


# --------------------------------------------------------------------------------------- exporting
def resolve_model(name_or_model: str | nn.Module, pretrained: bool | None) -> nn.Module:
    """A zoo model in eval mode from a model or a name (a weight, a folder, an hf-hub repo or an arch)."""
    if isinstance(name_or_model, nn.Module):
        model = name_or_model
    else:
        from zoo.factory import HF_PREFIX, create_model, looks_like_path
        from zoo.registry import get_entry, parse_model_name

        name = str(name_or_model)
        if name.startswith(HF_PREFIX) or looks_like_path(name):
            model = create_model(name)
        else:
            arch, tag = parse_model_name(name)
            if pretrained is None:
                pretrained = tag is not None or get_entry(arch).default_tag is not None
            model = create_model(name, pretrained=pretrained)
    if not getattr(model, "zoo_config", None):
        raise ConfigError(
            f"{type(model).__name__} was not built by the zoo (no zoo_config): an export records the zoo name, "
            "task and builder arguments. Build it with zoo.create_model."
        )
    return model.eval()


def _metadata(
    model: nn.Module, spec: GraphSpec, input_size: Sequence[int], opset: int, exporter: str
) -> ZooMetadata:
    import zoo
    from zoo.registry import get_entry

    arch = model.zoo_config["architecture"]
    entry = get_entry(arch)
    weights = getattr(model, "pretrained_weights", None)
    described = task_meta(model)
    declared = described.task_object.export_metadata(described)
    return ZooMetadata(
        name=weights.name if weights else arch,
        arch=arch,
        task=weights.task if weights else described.task,
        tag=weights.tag if weights else None,
        family=entry.family,
        graph=spec.name,
        labels=tuple(weights.labels) if weights else (),
        input_size=tuple(int(v) for v in input_size),
        mean=tuple(weights.mean) if weights and weights.mean else None,
        std=tuple(weights.std) if weights and weights.std else None,
        layout="NCHW",
        dynamic=spec.dynamic,
        pretrained=weights is not None,
        weights_sha256=weights.sha256 if weights else None,
        weights_revision=weights.revision if weights else None,
        hf_repo=weights.hf_repo if weights else None,
        model_args=json.loads(json.dumps(model.zoo_config.get("model_args", {}), default=list)),
        opset=opset,
        exporter=exporter,
        version=zoo.__version__,
        torch_version=torch.__version__,
        task_fields=declared["task_fields"],
        outputs_doc={n: declared["outputs_doc"].get(n, "") for n in spec.output_names},
    )


def task_meta(model: nn.Module) -> Any:
    """The metadata a task reads for `model`: its weight's, else a local one from its registry entry."""
    from zoo.registry import Weights

    weights = getattr(model, "pretrained_weights", None)
    if weights is not None:
        return weights
    from zoo.factory import model_task, model_task_fields
    from zoo.tasks import get_task

    arch = model.zoo_config["architecture"]
    size = tuple(getattr(model, "input_size", ()) or ()) or None
    task = model_task(model)
    fields = model_task_fields(model, get_task(task))
    return Weights(arch=arch, tag="local", task=task, input_size=size, task_fields=fields)


def write_metadata(path: Path, meta: ZooMetadata, note: str = "") -> None:
    """Replace the ``zoo.*`` entries of a file's metadata_props (other tools' entries are kept)."""
    import onnx

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*kept, *meta.to_props().items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if note:
        proto.doc_string = note
    onnx.save(proto, str(path))


def _export_with(
    exporter: str,
    spec: GraphSpec,
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    meta: ZooMetadata,
) -> None:
    common = dict(
        input_names=list(spec.input_names), output_names=list(spec.output_names), opset_version=opset
    )
    with _quiet():
        if exporter == "dynamo":
            shapes = (
                tuple(spec.dynamic_axes.get(n) or None for n in spec.input_names) if spec.dynamic else None
            )
            program = torch.onnx.export(
                module, inputs, dynamo=True, dynamic_shapes=shapes, verbose=False, **common
            )
            # The metadata goes in before the one save (no load-and-save round trip of the weights).
            program.model.metadata_props.update(meta.to_props())
            if spec.note:
                program.model.doc_string = spec.note
            # One self-contained file: dynamo writes the weights to a .onnx.data file beside it otherwise.
            program.save(str(path), external_data=False)
        else:
            torch.onnx.export(
                module,
                inputs,
                str(path),
                dynamo=False,
                dynamic_axes=spec.dynamic_axes or None,
                do_constant_folding=True,
                **common,
            )
            write_metadata(path, meta, spec.note)


def _export_graph(
    spec: GraphSpec,
    path: Path,
    opset: int,
    exporter: str,
    describe: Callable[[str], ZooMetadata],
    rewrite: bool = True,
) -> tuple[str, str | None, ZooMetadata]:
    """Export one graph with its metadata; returns (exporter used, why dynamo was not used, metadata).

    With `rewrite`, the exported module is `export.rewrites.onnx_friendly`'s copy of ``spec.module`` (the
    same function in ops onnxruntime runs faster); validation still compares with ``spec.module``.
    """
    module, rewrites = onnx_friendly(spec.module) if rewrite else (spec.module, [])
    chosen = spec.exporter if exporter == "auto" else exporter
    order = ("dynamo", "torchscript") if chosen == "auto" else (chosen,)
    inputs = spec.make_inputs(EXPORT_BATCH if spec.dynamic_batch else 1, spec.variants[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for name in order:
        for stale in (path, path.with_name(path.name + ".data")):
            stale.unlink(missing_ok=True)
        reason = None if name == "dynamo" else ("; ".join(failures) or f"the {name} exporter was requested")
        meta = describe(name)
        if reason:
            meta.extra["exporter_note"] = reason
        if rewrites:
            meta.extra["rewrites"] = rewrites
        try:
            _export_with(name, spec, module, inputs, path, opset, meta)
            _session(path, threads=1)  # a graph onnxruntime cannot load is an export failure, not a result
        except Exception as err:
            failures.append(f"{name}: {_first_line(err)}")
            continue
        if path.with_name(path.name + ".data").exists():
            raise ExportError(
                f"{path}: the exporter wrote external data; the zoo writes one self-contained file"
            )
        return name, reason, meta
    raise ExportError(f"graph '{spec.name}' could not be exported:\n  " + "\n  ".join(failures))


def to_onnx(
    name_or_model: str | nn.Module,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    input_size: Sequence[int] | None = None,
    validate: bool = True,
    exporter: str = "auto",
    quantize: bool = False,
    quantize_inputs: dict[str, np.ndarray] | None = None,
    quantize_targets: np.ndarray | None = None,
    pretrained: bool | None = None,
    rewrite: bool = True,
) -> ExportResult:
    """Export a registered model (a name, or a model built by ``zoo.create_model``) to ONNX.

    - ``path``: ``x.onnx`` (extra graphs go to ``x.<graph>.onnx``) or a folder (``<graph>.onnx`` each).
    - ``dynamic``: dynamic batch, and the spatial (or sequence) axes the model allows; False fixes batch 1
      and the traced size.
    - ``input_size``: (C, H, W) to trace and validate at, and recorded as the size the runtime resizes
      images to (default: the weight's, else the model's).
    - ``exporter``: "auto" (dynamo, then TorchScript where dynamo fails), "dynamo" or "torchscript".
    - ``validate``: checker + onnxruntime vs PyTorch; raises `ExportValidationError` on failure (the
      files stay for inspection).
    - ``quantize``: also write ``<file>.int8.onnx`` per graph (int8 dynamic quantisation), with the change
      measured on ``quantize_inputs`` (by input name; default: the graph's random example inputs) and
      stored in its metadata; ``quantize_targets`` (class indices) adds accuracies.
    - ``pretrained``: for names, whether to load weights (default: when the name has any).
    - ``rewrite``: export layers onnxruntime runs slowly as exact equivalents it runs faster
      (`export.rewrites`; recorded in the metadata as ``rewrites``); validation compares with the model.
    """
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ConfigError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    model = resolve_model(name_or_model, pretrained)
    specs, size = graph_specs(model, input_size, dynamic)
    paths = graph_paths(path, [s.name for s in specs])
    graphs: list[ExportedGraph] = []
    for spec in specs:
        target = paths[spec.name]
        start = time.perf_counter()

        def describe(used: str, spec: GraphSpec = spec) -> ZooMetadata:
            meta = _metadata(model, spec, size, opset, used)
            if spec.tolerance_note:
                meta.extra["tolerance"] = {"atol": spec.atol, "why": spec.tolerance_note}
            meta.extra.update(spec.extra)  # the adapter's own entries (a detector's export_split)
            return meta

        used, reason, meta = _export_graph(spec, target, opset, exporter, describe, rewrite)
        graphs.append(
            ExportedGraph(
                spec.name,
                target,
                used,
                spec.input_names,
                spec.output_names,
                spec.dynamic_axes,
                meta,
                time.perf_counter() - start,
                reason,
            )
        )
    result = ExportResult(graphs[0].metadata.name, graphs)
    if validate:
        result.report = _validate_specs(specs, paths, task_meta(model))
        if not result.report.ok:
            raise ExportValidationError(
                f"{result.name}: the exported graphs fail validation:\n{result.report.summary()}",
                result.report,
            )
    if quantize:
        for spec, graph in zip(specs, graphs):
            if quantize_inputs and all(n in quantize_inputs for n in spec.input_names):
                inputs = {n: np.asarray(quantize_inputs[n]) for n in spec.input_names}
                graph.quantized = quantize_int8(graph.path, inputs, targets=quantize_targets)
            else:  # e.g. the decoder of an autoencoder whose images were given: its own example inputs
                tensors = spec.make_inputs(QUANTIZATION_SAMPLES, spec.variants[0])
                inputs = {n: t.numpy() for n, t in zip(spec.input_names, tensors)}
                graph.quantized = quantize_int8(graph.path, inputs, inputs_from="random example inputs")
    return result


def graph_specs(
    model: nn.Module, input_size: Sequence[int] | None, dynamic: bool
) -> tuple[list[GraphSpec], tuple]:
    from zoo.registry import get_entry

    weights = getattr(model, "pretrained_weights", None)
    default = tuple((weights.input_size if weights and weights.input_size else None) or model.input_size)
    size = tuple(int(v) for v in (input_size or default))
    if len(size) != len(default) or size[0] != default[0]:
        raise ConfigError(
            f"input_size={size} must keep the model's channels and rank {default} (only H and W may change)"
        )
    if size != default and not getattr(model, "dynamic_size", False) and dynamic:
        raise ConfigError(f"{model.zoo_config['architecture']} has a fixed input size {default}; got {size}")
    entry = get_entry(model.zoo_config["architecture"])
    adapter = get_adapter(entry.family, model)
    specs = adapter.graphs(model, input_size=size, dynamic=dynamic)
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or not names:
        raise ExportError(f"adapter {adapter.name} returned graphs with missing or repeated names: {names}")
    return specs, size


# --------------------------------------------------------------------------------------- validation
def validate(
    name_or_model: str | nn.Module,
    path: str | os.PathLike,
    *,
    pretrained: bool | None = None,
    raise_on_failure: bool = True,
) -> ValidationReport:
    """Check exported files against the PyTorch model they came from.

    The traced size and dynamic axes are read back from the main file's metadata, so the graphs are
    rebuilt exactly as `to_onnx` exported them. Each graph: ``onnx.checker.check_model(full_check=True)``,
    input and output names, and onnxruntime vs PyTorch at batch 1 and 2 and at every validation size.
    """
    from export.runtime import OnnxModel

    model = resolve_model(name_or_model, pretrained)
    main = graph_paths(path, ["model"])["model"]
    if not main.is_file():  # a model without a "model" graph: read the first file the folder holds
        candidates = sorted(Path(path).glob("*.onnx")) if Path(path).is_dir() else []
        if not candidates:
            raise ConfigError(f"{path}: no exported file to validate")
        main = candidates[0]
    meta = OnnxModel(main).meta
    specs, _ = graph_specs(model, meta.input_size, meta.dynamic)
    report = _validate_specs(specs, graph_paths(path, [s.name for s in specs]), task_meta(model))
    if raise_on_failure and not report.ok:
        raise ExportValidationError(f"{meta.name}: validation failed:\n{report.summary()}", report)
    return report


def _validate_specs(specs: Sequence[GraphSpec], paths: dict[str, Path], meta: Any) -> ValidationReport:
    return ValidationReport([_validate_graph(spec, paths[spec.name], meta) for spec in specs])


@torch.no_grad()
def _validate_graph(spec: GraphSpec, path: Path, meta: Any) -> GraphReport:
    import onnx

    report = GraphReport(spec.name, path, tolerance_note=spec.tolerance_note)
    if not path.is_file():
        report.checker_error = f"{path} does not exist"
        return report
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:
        report.checker_error = _first_line(err)
    session = _session(path)
    inputs_found = tuple(i.name for i in session.get_inputs())
    outputs_found = tuple(o.name for o in session.get_outputs())
    if inputs_found != spec.input_names or outputs_found != spec.output_names:
        report.name_error = f"graph has inputs {inputs_found} -> outputs {outputs_found}; expected " + (
            f"{spec.input_names} -> {spec.output_names}"
        )
        return report
    variants = spec.variants if spec.dynamic else spec.variants[:1]
    batches = VALIDATION_BATCHES if spec.dynamic_batch else (1,)
    for variant in variants:
        for batch in batches:
            inputs = spec.make_inputs(batch, variant)
            expected = [t.float().numpy() for t in flatten_outputs(spec.module(*inputs))]
            feeds = {n: t.numpy() for n, t in zip(spec.input_names, inputs)}
            actual = session.run(list(spec.output_names), feeds)
            for out, want, got in zip(spec.output_names, expected, actual) if spec.elementwise else ():
                _, diff, rel = parity(want, got, spec.atol, spec.rtol)
                report.checks.append(
                    ParityCheck(
                        out,
                        batch,
                        variant,
                        diff,
                        rel,
                        spec.atol,
                        want.shape == got.shape,
                        spec.rtol,
                        float(np.abs(want).max()) if want.size else 0.0,
                    )
                )
            named = dict(zip(spec.output_names, expected)), dict(zip(spec.output_names, actual))
            check = spec.agreement or meta.task_object.agreement
            report.agreements.append(check(*named, meta, atol=spec.atol, rtol=spec.rtol))
    return report


# --------------------------------------------------------------------------------------- quantisation
class _DropQuantWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # the pre-processing advice, printed every call
        return "pre-processing before quantization" not in record.getMessage()


def quantize_int8(
    path: str | os.PathLike,
    inputs: dict[str, np.ndarray] | np.ndarray,
    out: str | os.PathLike | None = None,
    *,
    targets: np.ndarray | None = None,
    inputs_from: str = "given inputs",
) -> QuantizationReport:
    """Write an int8 dynamically quantised copy of an exported file and measure what it changed.

    Weights of the ops onnxruntime's dynamic quantisation supports (Conv, MatMul/Gemm, LSTM/GRU, ...)
    become int8; activations are quantised at run time. Both files run on ``inputs``; the report
    (max abs output change; for classifiers top-1 agreement, and accuracies when ``targets`` are class
    indices) is stored in the copy's metadata under ``zoo.quantization`` with ``zoo.precision`` =
    ``int8-dynamic``. Default output: ``<file>.int8.onnx``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from export.runtime import OnnxModel

    source = Path(path)
    target = Path(out) if out is not None else source.with_name(f"{source.stem}.int8.onnx")
    fp32 = OnnxModel(source, threads=torch.get_num_threads())
    if not isinstance(inputs, dict):
        inputs = {fp32.inputs[0].name: inputs}
    samples = len(next(iter(inputs.values())))
    root = logging.getLogger()
    quiet = _DropQuantWarning()
    root.addFilter(quiet)
    with tempfile.TemporaryDirectory(prefix="zoo-quant-") as tmp:
        # Fold constants first: the dynamo exporter reorders LSTM/GRU gate weights with Slice/Concat at run
        # time, which hides them from quantize_dynamic (it quantises initializers only).
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(source, prepared, skip_symbolic_shape=True)
        except Exception:  # the pre-processing is an optimisation; quantise the file as it is
            prepared = source
        try:
            quantize_dynamic(prepared, target, weight_type=QuantType.QInt8)
        finally:
            root.removeFilter(quiet)
    meta = dataclasses.replace(fp32.meta, precision="int8-dynamic", extra=dict(fp32.meta.extra))
    write_metadata(target, meta)  # quantize_dynamic drops metadata_props; give the copy its description
    int8 = OnnxModel(target, threads=torch.get_num_threads())

    fixed = fp32.inputs[0].shape[0]
    step = fixed if isinstance(fixed, int) else 64  # a static graph takes its own batch size only

    def run(model: OnnxModel) -> list[np.ndarray]:
        chunks = [model.run({k: v[i : i + step] for k, v in inputs.items()}) for i in range(0, samples, step)]
        return [np.concatenate([c[name] for c in chunks]) for name in model.output_names]

    ref, got = run(fp32), run(int8)
    report = QuantizationReport(
        target,
        samples,
        inputs_from,
        max_abs_diff=float(max(np.abs(a - b).max() for a, b in zip(ref, got))),
        size_fp32=source.stat().st_size,
        size_int8=target.stat().st_size,
    )
    task = fp32.meta.task_object
    ref_named, got_named = dict(zip(fp32.output_names, ref)), dict(zip(fp32.output_names, got))
    report.top1_agreement = task.agreement(ref_named, got_named, fp32.meta).values.get("top1_agreement")
    if targets is not None and report.top1_agreement is not None:
        targets = np.asarray(targets)
        report.accuracy_fp32 = _accuracy(task.postprocess(ref_named, fp32.meta), targets)
        report.accuracy_int8 = _accuracy(task.postprocess(got_named, fp32.meta), targets)
    images = inputs.get("image")
    if "reconstruction" in int8.output_names and images is not None:
        index = int8.output_names.index("reconstruction")
        if ref[index].shape == images.shape:
            report.mse_fp32 = float(np.square(ref[index] - images).mean())
            report.mse_int8 = float(np.square(got[index] - images).mean())
    meta.extra["quantization"] = report.to_dict()
    write_metadata(target, meta)
    return report


def _accuracy(results: Sequence[Any], targets: np.ndarray) -> float:
    return float(np.mean([r.index == t for r, t in zip(results, targets)]))
