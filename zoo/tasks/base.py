"""`Task`: what a model's inputs and outputs mean, in one object per task.

A task owns everything that differs between, say, a classifier and a detector, so that the registry, the
CLI, the model card, the ONNX export and the torch-free runtime ask the task and never compare its name:

- the weight metadata fields it adds (`WeightField`: a segmentation weight's ``ignore_index``, a
  detector's ``score_thresh``), validated by `zoo.registry.Weights`;
- preprocessing (an (H, W, C) uint8 image to the model's input) and post-processing (named output arrays
  to one result per sample), in numpy, shared by ``zoo predict`` with PyTorch and by the ONNX runtime;
- how a result is shown (``describe``: a printed line, and a picture where people would rather look);
- its metrics (``metrics()``: `zoo.metrics` objects accumulated over a split);
- its model card sections, its ONNX metadata and its export check (``agreement``: do ONNX and PyTorch
  give the same answer at the level of the task, beyond float parity).

This module is imported by the torch-free runtime: numpy and the standard library only at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = ["Agreement", "Task", "WeightField", "parity", "predict_lines"]

# Parity of two float outputs, scaled with the output's magnitude (as numpy.allclose / assert_close do):
# |ort - torch| <= atol + rtol * max|torch|. The relative part is what lets deep random-init ResNets,
# whose logits reach 1e2..1e5, pass while a real 1e-3 error on unit-scale outputs still fails.
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class WeightField:
    """A metadata field a task adds to `zoo.registry.Weights` (and to the ONNX file's metadata)."""

    name: str
    default: Any
    doc: str  # one line: what it is and why the weight records it
    types: tuple[type, ...] = (object,)  # accepted JSON types (lists become tuples)

    def coerce(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if value is None or isinstance(value, self.types):
            return value
        if float in self.types and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        names = " or ".join(t.__name__ for t in self.types)
        raise TypeError(f"{where}: field '{self.name}' must be {names}, got {type(value).__name__} {value!r}")


@dataclass
class Agreement:
    """Whether an exported graph answers like PyTorch at the level of the task, with the measured values."""

    ok: bool
    values: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def __str__(self) -> str:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in self.values.items())
        return (
            f"{'agrees' if self.ok else 'DISAGREES'}"
            + (f" ({shown})" if shown else "")
            + (f": {self.note}" if self.note else "")
        )


def parity(
    expected: np.ndarray, actual: np.ndarray, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL
) -> tuple[bool, float, float]:
    """(within tolerance, max abs difference, max difference relative to max |expected|)."""
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    if expected.shape != actual.shape:
        return False, float("inf"), float("inf")
    if expected.size == 0:
        return True, 0.0, 0.0
    diff = float(np.abs(actual - expected).max())
    scale = float(np.abs(expected).max())
    return diff <= atol + rtol * scale, diff, diff / max(scale, 1e-12)


class Task:
    """Base class of the zoo's tasks. Subclass it in one module of `zoo.tasks` and decorate it with
    `zoo.tasks.register_task`; nothing else needs an edit.

    Class attributes:
      - ``name``: the zoo's task name (``@register_model(task=...)``, ``zoo list --task``);
      - ``pipeline_tag``: the Hugging Face pipeline tag of the model card, so hub filters find the weight;
      - ``aliases``: older or alternative names accepted when reading metadata and in ``--task``;
      - ``weight_fields``: the `WeightField` s a weight of this task may carry beyond the common ones;
      - ``output_names``: names of a one- or few-output model's outputs (ONNX graph outputs, and the keys
        the PyTorch predict path gives ``postprocess``); ``outputs_doc`` says what each one is.
    """

    name: ClassVar[str] = ""
    pipeline_tag: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    weight_fields: ClassVar[tuple[WeightField, ...]] = ()
    output_names: ClassVar[tuple[str, ...]] = ("output",)
    outputs_doc: ClassVar[dict[str, str]] = {}
    # Whether the exported graph takes a dynamic-size batch of images (detectors take one image per call).
    batched_images: ClassVar[bool] = True
    # Whether its card's numbers are measured on samples its recipe draws (generators): ``zoo verify`` then
    # re-runs the recipe's evaluation, and the export check draws samples torch-free, instead of running
    # the network over the test split.
    measured_on_samples: ClassVar[bool] = False
    # Roles in a weight's ``files`` (config.json) that inference needs besides the weights (a CLIP weight's
    # tokenizer): a download fetches them with config.json and model.safetensors, not only on request.
    runtime_files: ClassVar[tuple[str, ...]] = ()
    # The metrics a results table shows for a weight of this task: (metrics key, column title, format).
    headline_metrics: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    # Which in-browser demo of `zoo gallery` (export/gallery/static/demo.js) runs this task's exported
    # graph from its metadata alone: "classify" (softmax of logits over the labels, a drawing pad),
    # "segment" (per-pixel argmax, sample scenes), "detect" (score threshold and sort of the graph's final
    # boxes); "" for none (its post-processing is not in JavaScript).
    browser_demo: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # ------------------------------------------------------------------------------ metadata
    def field_defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.weight_fields}

    def check_fields(self, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Validate a weight's task fields: unknown ones are refused, listing the known ones."""
        known = {f.name: f for f in self.weight_fields}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise KeyError(
                f"{where}: unknown fields {unknown} for task '{self.name}'; it declares "
                f"{sorted(known) or 'none'} (see zoo.tasks.{type(self).__module__.rsplit('.', 1)[-1]})"
            )
        return {k: known[k].coerce(v, where) for k, v in values.items()}

    def export_metadata(self, meta: Any) -> dict[str, Any]:
        """What an exported file records about its inputs and outputs, beyond the common fields."""
        return {
            "task_fields": {f.name: _jsonable(_field(meta, f.name, f.default)) for f in self.weight_fields},
            "outputs_doc": dict(self.outputs_doc),
        }

    # ------------------------------------------------------------------------------ inference
    def preprocess(self, image: np.ndarray, meta: Any, *, invert: bool = False) -> np.ndarray:
        """One (H, W, C) uint8 image -> the model's (1, C, H, W) float32 input, as the weight expects it.

        A weight with a ``size_multiple`` (dense models that take any size) keeps the image's size and
        pads it at the bottom and right, by reflection, to that multiple (and at least to one multiple);
        `postprocess` crops the answer back (``source_size``). Other weights resize to ``input_size``.
        """
        from zoo.preprocess import preprocess_image

        multiple = getattr(meta, "size_multiple", None)
        if multiple:
            size = (image.shape[2], image.shape[0], image.shape[1])
            x = preprocess_image(image, size, meta.mean, meta.std, invert=invert)
            return pad_to_multiple(x, int(multiple))
        size = meta.input_size
        if not size:
            raise ValueError(f"{meta.name}: the weight records no input_size to resize images to")
        return preprocess_image(image, size, meta.mean, meta.std, invert=invert)

    def inference_runner(
        self, run: Callable[[np.ndarray], Mapping[str, np.ndarray]], meta: Any, **options: Any
    ) -> Callable[[np.ndarray], Mapping[str, np.ndarray]]:
        """How ``zoo predict`` calls the network (either runtime's `run`) on one preprocessed input; a task
        wraps it, e.g. to run large images in tiles (image-to-image). Default: `run` itself."""
        return run

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        """Named output arrays of a batch -> one result per sample (default: that sample's arrays)."""
        batch = len(next(iter(outputs.values())))
        return [{k: np.asarray(v[i]) for k, v in outputs.items()} for i in range(batch)]

    def describe(
        self,
        result: Any,
        source: str,
        *,
        out_dir: Path | None = None,
        image: np.ndarray | None = None,
        **options: Any,
    ) -> str:
        """One printable line for one input (``zoo predict``); may write a picture into ``out_dir``.

        ``image`` is the (H, W, C) uint8 input as read, for pictures drawn over it.
        """
        if isinstance(result, Mapping):
            shapes = ", ".join(f"{key} {tuple(np.shape(value))}" for key, value in result.items())
            return f"{source}: {shapes}"
        return f"{source}: {result}"

    # ------------------------------------------------------------------------------ evaluation
    def metrics(self, meta: Any) -> dict[str, Any]:
        """Fresh `zoo.metrics` objects that measure a weight of this task over a split."""
        return {}

    def evaluation_data(self, test: Any, count: int, meta: Any) -> tuple[np.ndarray, Any]:
        """The first `count` items of a weight's test split (a `zoo.data` dataset) as (N, H, W, C) uint8
        images and their labels, for `evaluation_pairs`. Default: a dataset's ``images`` and ``labels``
        tensors, the digit scenes' semantic maps (``to_memory``), or ``(image, int label)`` items."""
        if hasattr(test, "images"):
            images, labels = test.images[:count].numpy(), test.labels[:count].numpy()
        elif hasattr(test, "to_memory"):
            # Digit scenes: rendered once into uint8 images; the targets are their (N, H, W) semantic maps.
            scenes = test.to_memory()
            images, labels = scenes.images[:count].numpy(), scenes.semantic[:count].long().numpy()
        else:
            pairs = [test[i] for i in range(count)]
            images = np.stack([np.asarray(image) for image, _ in pairs])
            labels = np.asarray([int(label) for _, label in pairs])
        return images.transpose(0, 2, 3, 1), labels

    def fit_metrics(
        self, metrics: Mapping[str, Any], run: Callable[[np.ndarray], Mapping[str, np.ndarray]], meta: Any
    ) -> None:
        """Fit, before a test split is scored, the metrics that learn from the weight's train split with
        the same network `run` (a probe on frozen features). Default: nothing to fit."""

    def metrics_table(self, measured: Mapping[str, float], meta: Any) -> list[str]:
        """Lines ``zoo verify`` prints after its comparison: the task's customary summary of the measured
        metrics (COCOeval's table for detectors). Default: none."""
        return []

    def evaluation_pairs(self, images: np.ndarray, labels: Any, meta: Any) -> tuple[np.ndarray, Any]:
        """(model inputs, metric targets) of a test split given as (N, H, W, C) uint8 images and its
        labels: what `zoo verify` and the export's test-split check feed. Default: the preprocessed images
        and the labels."""
        inputs = np.concatenate([self.preprocess(image, meta) for image in images]) if len(images) else images
        return inputs, labels

    def update_metrics(
        self, metrics: Mapping[str, Any], outputs: Mapping[str, np.ndarray], targets: Any, meta: Any
    ) -> None:
        """Feed one batch of named outputs (either runtime's) and its targets to `metrics`.
        Default: the task's first output against the targets."""
        import torch

        main = (
            outputs[self.output_names[0]] if self.output_names[0] in outputs else next(iter(outputs.values()))
        )
        for metric in metrics.values():
            metric.update(torch.as_tensor(np.asarray(main)), torch.as_tensor(np.asarray(targets)))

    def agreement(
        self,
        expected: Mapping[str, np.ndarray],
        actual: Mapping[str, np.ndarray],
        meta: Any,
        *,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> Agreement:
        """Does an exported graph answer like PyTorch? Default: every output within scaled parity."""
        worst_abs, worst_rel, ok = 0.0, 0.0, True
        for key, want in expected.items():
            within, diff, rel = parity(want, actual[key], atol, rtol)
            ok &= within
            worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, rel)
        return Agreement(ok, {"max_abs": worst_abs, "max_rel": worst_rel})

    # ------------------------------------------------------------------------------ model card
    def card_sections(self, config: Mapping[str, Any]) -> list[str]:
        """Markdown lines this task adds to a model card (pictures, legends, how to read outputs)."""
        lines: list[str] = []
        if self.outputs_doc:
            # A model may name its outputs itself (``ZooModel.output_names``, saved in config.json); the
            # task's descriptions apply by name, else in order.
            names = list(config.get("output_names") or self.outputs_doc)
            docs = list(self.outputs_doc.values())
            lines += ["## Outputs", "", "| output | meaning |", "|---|---|"]
            lines += [
                f"| `{n}` | {self.outputs_doc.get(n) or (docs[i] if i < len(docs) else '')} |"
                for i, n in enumerate(names)
            ]
            lines.append("")
        pictures = [(role, name) for role, name in (config.get("files") or {}).items() if role != "curves"]
        for role, name in pictures:
            if str(name).lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".svg")):
                lines += [f"## {role.replace('_', ' ').capitalize()}", "", f"![{role}]({name})", ""]
        return lines

    def card_onnx_section(self, config: Mapping[str, Any], source: str, onnx_file: str) -> list[str] | None:
        """The card's whole "deploy without torch" section, for a task that needs its own; None: the
        common one (``zoo export`` + ``zoo predict --onnx`` and the `card_usage` snippet)."""
        return None

    def card_usage(self, meta: Mapping[str, Any], onnx_file: str) -> list[str]:
        """Python lines that run the exported file with onnxruntime and read its answer."""
        return [
            f'session = ort.InferenceSession("{onnx_file}")',
            "outputs = session.run(None, {session.get_inputs()[0].name: x})",
        ]


def pad_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
    """Pad a (N, C, H, W) batch at the bottom and right so H and W are positive multiples of `multiple`.

    Reflection (not zeros) keeps the border's statistics, so the model sees no artificial edge; images too
    small to reflect that far are padded by edge replication.
    """
    height, width = x.shape[-2:]
    target_h = max(multiple, -(-height // multiple) * multiple)
    target_w = max(multiple, -(-width // multiple) * multiple)
    pad = ((0, 0), (0, 0), (0, target_h - height), (0, target_w - width))
    if pad[2][1] == 0 and pad[3][1] == 0:
        return x
    mode = "reflect" if target_h - height < height and target_w - width < width else "edge"
    return np.pad(x, pad, mode=mode)


def crop_to(x: np.ndarray, size: Sequence[int] | None, scale: int = 1) -> np.ndarray:
    """Crop the last two axes of `x` back to ``size`` (H, W) times `scale` (undoes `pad_to_multiple`)."""
    if size is None:
        return x
    return x[..., : int(size[0]) * scale, : int(size[1]) * scale]


def _field(meta: Any, name: str, default: Any) -> Any:
    value = getattr(meta, name, default)
    return default if value is None else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value


def batch_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack (1, C, H, W) arrays into one (B, C, H, W) batch."""
    return np.concatenate(list(images), axis=0)


def predict_lines(
    task: Task,
    meta: Any,
    files: Sequence[Any],
    run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    *,
    invert: bool = False,
    out_dir: Path | None = None,
    **options: Any,
) -> Iterator[str]:
    """What ``zoo predict`` prints, for any runtime: `run` maps one preprocessed input to named outputs.

    The PyTorch path and the ONNX runtime both call this with their own `run`, so reading, pre- and
    post-processing and the pictures cannot drift between them.
    """
    from zoo.preprocess import conversion_note, load_image

    channels = meta.input_size[0] if meta.input_size else 3
    run = task.inference_runner(run, meta, **options)
    for path in files:
        image = load_image(path, channels)
        note = conversion_note(path, channels)
        outputs = run(task.preprocess(image, meta, invert=invert))
        (result,) = task.postprocess(outputs, meta, source_size=image.shape[:2], **options)
        line = task.describe(
            result, str(path), out_dir=out_dir, image=image, meta=meta, output_names=tuple(outputs), **options
        )
        yield f"{line} (note: {note})" if note else line
