"""Torch-free inference on exported files: onnxruntime, numpy and pillow only.

    from export.runtime import OnnxModel
    model = OnnxModel("resnet8_small.mnist.onnx")
    model.meta.labels, model.meta.input_size           # read from the file's metadata_props
    [c.topk(3) for c in model.predict(["digit.png"])]  # preprocessing as the weight expects it

A file describes itself (`ZooMetadata`, ``zoo.*`` keys in ``metadata_props``): the zoo name and tag, the
weight's sha256 and revision, the task and the fields the task declares (a detector's score threshold),
labels, input size, mean/std and layout, what each output is, and how it was exported. Pre- and
post-processing are the task's (`zoo.tasks`), the same numpy/PIL code that ``zoo predict`` runs with
PyTorch, so both runtimes see identical inputs and give identical answers: softmax and labels for
classifiers, images for image-to-image models, label maps, boxes and masks for segmenters and detectors.

Nothing here imports torch; a test runs it in a process where ``import torch`` fails.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.preprocess import ImageInputError, load_image

__all__ = [
    "METADATA_PREFIX",
    "OnnxInputError",
    "OnnxModel",
    "OnnxModelError",
    "ZooMetadata",
    "load",
    "predict_files",
    "read_metadata",
]

METADATA_PREFIX = "zoo."
METADATA_FORMAT = 1


class OnnxModelError(ZooError):
    """A model file that cannot be used: missing, not ONNX, or not written by ``zoo export``."""


class OnnxInputError(ImageInputError, ZooError):
    """An input the exported graph cannot take: wrong rank, channel count or size, or not an image."""


@dataclass
class ZooMetadata:
    """What an exported file says about itself (``metadata_props``, keys prefixed ``zoo.``).

    Strings are stored as they are; every other value (lists, numbers, booleans, dicts) as JSON.
    """

    name: str  # "arch.tag", or "arch" for a model without published weights
    arch: str
    task: str
    tag: str | None = None
    family: str = ""
    graph: str = "model"  # which graph of the model this file holds ("model", "encoder", ...)
    labels: tuple[str, ...] = ()
    input_size: tuple[int, ...] | None = None  # (C, H, W) the runtime resizes images to
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "NCHW"
    dynamic: bool = True
    pretrained: bool = False
    weights_sha256: str | None = None
    weights_revision: str | None = None
    hf_repo: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    opset: int | None = None
    exporter: str = ""  # "dynamo" or "torchscript"
    precision: str = "fp32"  # or "int8-dynamic"
    version: str = ""  # of the zoo that wrote the file
    torch_version: str = ""
    format: int = METADATA_FORMAT
    task_fields: dict[str, Any] = field(
        default_factory=dict
    )  # what the task declares (zoo.tasks.WeightField)
    outputs_doc: dict[str, str] = field(default_factory=dict)  # output name -> what it is
    extra: dict[str, Any] = field(default_factory=dict)  # other zoo.* keys: quantization, exporter_note, ...

    def __getattr__(self, name: str) -> Any:
        # Task fields read as attributes, as on `zoo.registry.Weights` (``meta.score_thresh``).
        if name.startswith("__"):
            raise AttributeError(name)
        fields = self.__dict__.get("task_fields") or {}
        if name in fields:
            return fields[name]
        from zoo.tasks import get_task

        defaults = get_task(self.__dict__["task"]).field_defaults()
        if name in defaults:
            return defaults[name]
        raise AttributeError(f"'ZooMetadata' of task '{self.__dict__.get('task')}' has no field '{name}'")

    def to_props(self) -> dict[str, str]:
        props: dict[str, str] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            props[METADATA_PREFIX + f.name] = _encode(value)
        for key, value in self.extra.items():
            props[METADATA_PREFIX + key] = _encode(value)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "the model") -> ZooMetadata:
        ours = {k[len(METADATA_PREFIX) :]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)}
        missing = [k for k in ("name", "arch", "task") if k not in ours]
        if missing:
            raise OnnxModelError(
                f"{source} has no zoo metadata ({', '.join(METADATA_PREFIX + k for k in missing)} missing from "
                "metadata_props): it was not written by `zoo export`, so its preprocessing and labels are "
                "unknown. Export it with `zoo export NAME` (or export.to_onnx)."
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, raw in ours.items():
            if key in fields and key != "extra":
                value = raw if fields[key].type in ("str", "str | None") else _decode(raw, key, source)
                if key in ("labels", "input_size", "mean", "std") and value is not None:
                    value = tuple(value)
                known[key] = value
            else:
                extra[key] = _decode(raw, key, source, strict=False)
        return cls(**known, extra=extra)

    @property
    def task_object(self) -> Any:
        """The `zoo.tasks.Task` that reads this file's inputs and outputs."""
        from zoo.tasks import get_task

        return get_task(self.task)


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple) else value)


def _decode(raw: str, key: str, source: str, strict: bool = True) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if not strict:
            return raw
        raise OnnxModelError(f"{source}: metadata {METADATA_PREFIX}{key}={raw!r} is not valid JSON") from None


def read_metadata(path: str | os.PathLike) -> ZooMetadata:
    """The zoo metadata of an exported file (loads it with onnxruntime; no torch, no onnx package)."""
    return OnnxModel(path).meta


@dataclass(frozen=True)
class InputInfo:
    name: str
    shape: tuple[int | str | None, ...]  # ints are fixed, strings are named dynamic axes
    type: str

    def describe(self) -> str:
        return "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ")"


class OnnxModel:
    """An exported zoo graph in an onnxruntime session, with its metadata and adapter."""

    def __init__(
        self, path: str | os.PathLike, *, threads: int | None = None, providers: Sequence[str] | None = None
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelError(f"{self.path}: no such model file")
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the messages below say what went wrong
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise OnnxModelError(
                f"{self.path} is not an ONNX model onnxruntime can load ({first[:300]}). Pass a .onnx file "
                "written by `zoo export`."
            ) from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta = ZooMetadata.from_props(props, source=str(self.path))
        from export.adapters import get_adapter

        self.task = self.meta.task_object
        self.adapter = get_adapter(self.meta.family)
        self.inputs = [InputInfo(i.name, tuple(i.shape), i.type) for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}{i.describe()}" for i in self.inputs)
        return f"OnnxModel({self.meta.name!r}, graph={self.meta.graph!r}, inputs: {ins})"

    @property
    def takes_images(self) -> bool:
        """Whether the graph's one input is an NCHW image batch (else it takes arrays, e.g. latent codes)."""
        return len(self.inputs) == 1 and self.inputs[0].name == "image" and len(self.inputs[0].shape) == 4

    # ------------------------------------------------------------------------------------ raw
    def run(
        self, inputs: np.ndarray | dict[str, np.ndarray] | None = None, /, **named: Any
    ) -> dict[str, Any]:
        """Run the graph on arrays (one array for a one-input graph, or by input name); outputs by name."""
        if inputs is not None and not isinstance(inputs, dict):
            if len(self.inputs) != 1:
                names = ", ".join(i.name for i in self.inputs)
                raise OnnxInputError(
                    f"{self.meta.name} takes {len(self.inputs)} inputs ({names}): pass them by name"
                )
            named = {self.inputs[0].name: inputs, **named}
        elif inputs is not None:
            named = {**inputs, **named}
        feeds = {}
        for info in self.inputs:
            if info.name not in named:
                raise OnnxInputError(f"missing input '{info.name}' {info.describe()} for {self.meta.name}")
            feeds[info.name] = self._check_array(info, named.pop(info.name))
        if named:
            raise OnnxInputError(
                f"unknown input(s) {sorted(named)} for {self.meta.name}; it takes "
                + ", ".join(i.name for i in self.inputs)
            )
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def infer(self, inputs: np.ndarray | dict[str, np.ndarray], /) -> dict[str, Any]:
        """`run`, then the adapter's `export.adapters.Adapter.decode`: the task's named outputs (what the
        PyTorch model gives `zoo.tasks.Task.postprocess`), also where the graph stops short of them (a
        proposal-free segmenter's dense maps are grouped into instances here)."""
        return self.adapter.decode(self.meta.graph, self.run(inputs), self.meta)

    def _check_array(self, info: InputInfo, value: Any) -> np.ndarray:
        array = np.asarray(value)
        expected = info.describe()
        if array.ndim != len(info.shape):
            hint = ""
            if len(info.shape) == 4 and array.ndim == 3:
                hint = (
                    " Add the batch axis (x[None]) for one image; an (H, W, C) image goes through predict()."
                )
            elif len(info.shape) == 4 and array.ndim == 2:
                hint = " A single grey image is x[None, None] (batch and channel axes)."
            raise OnnxInputError(
                f"input '{info.name}' of {self.meta.name} must be a {len(info.shape)}-d array {expected}, got a "
                f"{array.ndim}-d array of shape {array.shape}.{hint}"
            )
        for axis, (want, got) in enumerate(zip(info.shape, array.shape)):
            if isinstance(want, int) and want != got:
                if self.meta.layout == "NCHW" and len(info.shape) == 4 and axis == 1:
                    layout_hint = " (is it NHWC? transpose to NCHW)" if array.shape[-1] == want else ""
                    raise OnnxInputError(
                        f"input '{info.name}' of {self.meta.name} expects {want} channel(s) on axis 1 (NCHW) "
                        f"but got {got}{layout_hint}: shape {array.shape}, expected {expected}"
                    )
                raise OnnxInputError(
                    f"input '{info.name}' of {self.meta.name} has size {got} on axis {axis} but the graph fixes "
                    f"it to {want}: shape {array.shape}, expected {expected}"
                )
        if "float" in info.type:
            if not np.issubdtype(array.dtype, np.number):
                raise OnnxInputError(f"input '{info.name}' must be numeric, got dtype {array.dtype}")
            array = array.astype(np.float32, copy=False)
        return np.ascontiguousarray(array)

    # ------------------------------------------------------------------------------------ images
    def preprocess(self, image: Any, invert: bool = False) -> np.ndarray:
        """A path, a PIL image or an (H, W, C) uint8 array -> the (1, C, H, W) float32 the weight expects."""
        if not self.takes_images:
            raise OnnxInputError(
                f"{self.path.name} ({self.meta.name}, graph '{self.meta.graph}') takes "
                + ", ".join(f"{i.name}{i.describe()}" for i in self.inputs)
                + ", not images; pass arrays to predict() or run()"
            )
        input_size = self._input_size()
        array = self.image_array(image)
        try:
            return self.task.preprocess(array, self._sized_meta(input_size), invert=invert)
        except OnnxInputError:
            raise
        except ImageInputError as err:
            raise OnnxInputError(str(err)) from None

    def image_array(self, image: Any) -> np.ndarray:
        """A path, a PIL image or an (H, W, C) uint8 array -> the (H, W, C) uint8 array, with the weight's
        channels for files and PIL images; anything else is a clear `OnnxInputError`."""
        channels = self._input_size()[0]
        try:
            if isinstance(image, (str, os.PathLike)):
                return load_image(image, channels)
            if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
                mode = {1: "L", 3: "RGB"}.get(channels)
                if mode is None:
                    raise OnnxInputError(f"the model expects {channels} channels; PIL gives 1 or 3")
                array = np.asarray(image.convert(mode))
                return array[..., None] if array.ndim == 2 else array
        except OnnxInputError:
            raise
        except ImageInputError as err:
            raise OnnxInputError(str(err)) from None
        array = np.asarray(image)
        if array.ndim != 3:
            raise OnnxInputError(
                f"an image array must be 3-d (H, W, C), got a {array.ndim}-d array of shape {array.shape}"
                + (" (a grey image is x[..., None])" if array.ndim == 2 else "")
            )
        if array.dtype != np.uint8:
            raise OnnxInputError(f"an image array must hold uint8 pixels 0-255, got dtype {array.dtype}")
        return array

    def _sized_meta(self, input_size: tuple[int, ...]) -> ZooMetadata:
        if tuple(self.meta.input_size or ()) == tuple(input_size):
            return self.meta
        return dataclasses.replace(self.meta, input_size=tuple(input_size))

    def _input_size(self) -> tuple[int, ...]:
        if self.meta.input_size:
            return tuple(self.meta.input_size)
        shape = self.inputs[0].shape
        if all(isinstance(d, int) for d in shape[1:]):
            return tuple(shape[1:])  # type: ignore[return-value]
        raise OnnxModelError(f"{self.path}: zoo.input_size is missing and the graph's image size is dynamic")

    def predict(
        self, items: Iterable[Any] | np.ndarray, *, invert: bool = False, **options: Any
    ) -> list[Any]:
        """Post-processed results, one per item.

        Image graphs take paths, PIL images or (H, W, C) uint8 arrays and preprocess them; other graphs (an
        autoencoder's decoder) take a batch array for their input. Classifiers give `Classification`s, the
        autoencoder (H, W, C) uint8 images, an encoder latent codes.
        """
        if self.takes_images and not self.task.batched_images:
            # Detectors: one image per call at its own size (images of different sizes cannot share a batch).
            results: list[Any] = []
            for item in items:
                outputs = self.run(self.preprocess(item, invert=invert))
                results += self.adapter.postprocess(self.meta.graph, outputs, self.meta, **options)
            return results
        if self.takes_images:
            batch = np.concatenate([self.preprocess(item, invert=invert) for item in items], axis=0)
        else:
            if not isinstance(items, np.ndarray) and any(isinstance(i, (str, os.PathLike)) for i in items):
                wanted = ", ".join(f"{i.name}{i.describe()}" for i in self.inputs)
                raise OnnxInputError(
                    f"{self.path.name} ({self.meta.name}, graph '{self.meta.graph}') takes {wanted}, not image "
                    "files; pass a batch array"
                )
            batch = np.asarray(items)
        outputs = self.run(batch)
        return self.adapter.postprocess(self.meta.graph, outputs, self.meta, **options)

    # ------------------------------------------------------------------------------------ videos
    def propagate(self, frames: np.ndarray, first_mask: np.ndarray, **options: Any) -> np.ndarray:
        """Track objects through a video torch-free: frames (T, H, W, 3) uint8 and the first frame's instance
        map (H, W) (0 = background, 1..K the objects) -> instance maps (T, H, W), for a file whose task
        propagates masks (`zoo.tasks.mask_propagation`); `options` override the weight's propagation."""
        propagate = getattr(self.task, "propagate", None)
        if propagate is None:
            raise OnnxModelError(
                f"{self.path.name} ({self.meta.name}) is a '{self.task.name}' model; only mask-propagation "
                "models (per-pixel embedders such as colorization_tracker) propagate masks through a video"
            )
        return propagate(self.infer, self.meta, frames, first_mask, **options)

    # ------------------------------------------------------------------------------------ localisation
    def localize(self, items: Iterable[Any], **options: Any) -> list[Any]:
        """Tags and boxes from class activation maps, torch-free: paths, PIL images or (H, W, C) uint8
        arrays -> one `zoo.tasks.localization.Localization` each (boxes in the image's own pixels), for a
        file whose task localises from maps (a CAM classifier); `options` override ``cam_thresh`` /
        ``score_thresh``."""
        localize = getattr(self.task, "localize", None)
        if localize is None or not self.takes_images:
            raise OnnxModelError(
                f"{self.path.name} ({self.meta.name}) is a '{self.task.name}' model; only models that output "
                "class activation maps (weakly-supervised-localization, e.g. cam_resnet8_small) localise tags"
            )
        images = [self.image_array(item) for item in items]
        return localize(self.infer, self._sized_meta(self._input_size()), images, **options)

    # ------------------------------------------------------------------------------------ generators
    def sample(self, n: int, *, seed: int = 0, labels: Any = None, **options: Any) -> np.ndarray:
        """`n` generated images (n, C, H, W) in [0, 1], drawn torch-free as the file's export adapter says
        (an adapter with a ``sample(model, n, seed=, labels=, **options)`` method: diffusion denoisers,
        generators and decoders); options left None take the weight's defaults."""
        sampler = getattr(self.adapter, "sample", None)
        if sampler is None:
            raise OnnxModelError(
                f"{self.path.name} ({self.meta.name}, graph '{self.meta.graph}') is not a generator the runtime "
                "can sample from (its family's export adapter defines no sample())"
            )
        return sampler(
            self, n, seed=seed, labels=labels, **{k: v for k, v in options.items() if v is not None}
        )


def load(path: str | os.PathLike, **kwargs: Any) -> OnnxModel:
    """An `OnnxModel` for an exported file."""
    return OnnxModel(path, **kwargs)


def predict_files(
    model_path: str | os.PathLike,
    files: Sequence[str | os.PathLike],
    k: int = 3,
    invert: bool = False,
    out_dir: Path | None = None,
    threads: int | None = None,
    **options: Any,
) -> Iterator[str]:
    """One printable line per file, as `zoo predict` prints them (used by ``zoo predict --onnx``); `options`
    go to the task (e.g. ``tile`` for image-to-image)."""
    from zoo.tasks.base import predict_lines

    model = OnnxModel(model_path, threads=threads)
    if not model.takes_images:
        raise OnnxInputError(
            f"{Path(model_path).name} ({model.meta.name}, graph '{model.meta.graph}') takes "
            + ", ".join(f"{i.name}{i.describe()}" for i in model.inputs)
            + ", not image files"
        )
    meta = model._sized_meta(model._input_size())
    yield from predict_lines(
        model.task, meta, files, model.infer, invert=invert, out_dir=out_dir, k=k, **options
    )
