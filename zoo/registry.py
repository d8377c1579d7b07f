"""The one registry: architectures, their builders and their published weights.

Every other listing of models (``zoo.list_models``, the CLI, ``hubconf.py``, the parametrised tests, the
export matrix, the model cards) is derived from the tables in this module. A family file registers a
builder with ``@register_model``; the tags it names are the published weights, whose metadata is the
``config.json`` the recipe wrote into ``hub/<arch>.<tag>/`` (measured, never typed).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, UnknownModelError, WeightsError

__all__ = [
    "ModelEntry",
    "Weights",
    "get_entry",
    "get_weights",
    "hub_dirs",
    "list_models",
    "model_info",
    "parse_model_name",
    "register_model",
    "register_weights",
    "unregister_model",
]

# The zoo's own trained weights, in Hugging Face repo layout, one folder per ``arch.tag``.
IN_TREE_HUB = Path(__file__).resolve().parent.parent / "hub"


@dataclass(frozen=True)
class Weights:
    """Everything known about one published weight (one Hugging Face repo).

    Like torchvision's ``Weights.meta``, but serialised into the weight's own ``config.json`` so that a
    weight folder describes itself wherever it is copied.
    """

    arch: str
    tag: str
    task: str
    model_args: dict[str, Any] = field(default_factory=dict)  # builder kwargs the weight was trained with
    hf_repo: str | None = None  # "org/name" on the Hugging Face Hub
    revision: str | None = None  # pinned commit sha: users get exactly what was pushed
    sha256: str | None = None  # of model.safetensors, verified on every load
    labels: tuple[str, ...] = ()  # class names, index order
    input_size: tuple[int, ...] | None = None  # (C, H, W) the weight was trained at
    mean: tuple[float, ...] | None = None  # preprocessing: (x / 255 - mean) / std
    std: tuple[float, ...] | None = None
    dataset: str | None = None
    split: str | None = None  # how the evaluation split was carved, reproducible by anyone
    metrics: dict[str, float] = field(default_factory=dict)  # measured on `split`
    # Simple methods measured on the same split beside the weight (name -> their metrics), so every
    # published number comes with a reference point: e.g. {"otsu + classifier": {"miou": 0.61}}.
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    # The weight's own recipe and budget with one change each (name -> metrics on the same split), e.g.
    # {"loss = plain cross-entropy": {"miou": 0.32}}: what each choice of the recipe is worth.
    ablations: dict[str, dict[str, float]] = field(default_factory=dict)
    # Further card tables a recipe measured, each {"title", "intro", "rows": [{column: value}]}: e.g. the
    # accuracy and pseudo-labels of each pseudo-labelling round.
    tables: list[dict[str, Any]] = field(default_factory=list)
    recipe: str | None = None  # a recipe preset name that reproduces this weight
    recipe_config: dict[str, Any] = field(default_factory=dict)  # the resolved config of that run
    license: str = "apache-2.0"
    papers: tuple[str, ...] = ()
    num_params: int | None = None
    # Forward FLOPs of one input at `input_size` (`zoo.analysis`, 2 per multiply-add), recorded by
    # `zoo results --count-flops` so that the results tables read it from the card instead of re-running.
    flops: int | None = None
    training: dict[str, Any] = field(default_factory=dict)  # seed, commit, time, machine, ...
    # Images/s of eager PyTorch and onnxruntime on the machine that measured them, with its batch, threads,
    # load and date (`export.throughput`, `zoo results --measure-throughput`): a measurement, not a spec.
    throughput: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # Where an imported weight came from (`zoo.importing`): library, file or repo, the sha256 of what was
    # read, its licence and what its publisher reported. Empty for the zoo's own weights.
    source: dict[str, Any] = field(default_factory=dict)
    # The weight an encoder-based model's backbone started from (``encoder_weights=``): its name, folder
    # and sha256, so a weight trained from an imported encoder says which one.
    encoder: dict[str, Any] = field(default_factory=dict)
    # The fields the weight's task declares (`zoo.tasks.Task.weight_fields`): a detector's score_thresh, a
    # segmenter's ignore_index. Serialised flat beside the common fields; read as attributes
    # (``weights.score_thresh``), where an absent one gives the task's default.
    task_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from zoo.tasks import get_task

        task = get_task(self.task)  # an unknown task fails here, naming the known ones
        object.__setattr__(self, "task", task.name)  # aliases (old names) read as the canonical name
        try:
            fields = task.check_fields(self.task_fields, f"weight '{self.arch}.{self.tag}'")
        except (KeyError, TypeError) as err:
            raise WeightsError(str(err).strip('"')) from None
        object.__setattr__(self, "task_fields", fields)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not dataclass fields: the task's own fields.
        if name.startswith("__"):
            raise AttributeError(name)
        fields = self.__dict__.get("task_fields", {})
        if name in fields:
            return fields[name]
        from zoo.tasks import get_task

        defaults = get_task(self.__dict__["task"]).field_defaults()
        if name in defaults:
            return defaults[name]
        raise AttributeError(f"'Weights' of task '{self.__dict__['task']}' has no field '{name}'")

    @property
    def task_object(self) -> Any:
        """The `zoo.tasks.Task` this weight belongs to."""
        from zoo.tasks import get_task

        return get_task(self.task)

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    @property
    def num_classes(self) -> int | None:
        if self.labels:
            return len(self.labels)
        return self.model_args.get("num_classes")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("labels", "input_size", "mean", "std", "papers"):
            if out[key] is not None:
                out[key] = list(out[key])
        for key in ("tables", "source", "encoder", "flops", "throughput"):
            if not out[key]:  # most weights have none: their config.json stays as it was
                del out[key]
        task_fields = out.pop("task_fields")
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in task_fields.items()})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Weights:
        """Read metadata: the common fields, plus the fields the weight's task declares; any other field
        is refused (a typo would otherwise be silently ignored)."""
        from zoo.tasks import get_task

        common = {f.name for f in dataclasses.fields(cls)} - {"task_fields"}
        if "task" not in data:
            raise WeightsError(f"weight metadata has no 'task'; it has {sorted(data)}")
        task = get_task(data["task"])
        declared = {f.name for f in task.weight_fields}
        unknown = set(data) - common - declared
        if unknown:
            raise WeightsError(
                f"weight metadata has unknown fields {sorted(unknown)}; known fields: {sorted(common)}, "
                f"and for task '{task.name}': {sorted(declared) or 'none'}"
            )
        data = dict(data)
        for key in ("labels", "input_size", "mean", "std", "papers"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        task_fields = {k: data.pop(k) for k in list(data) if k in declared}
        return cls(**data, task_fields=task_fields)

    def replace(self, **changes: Any) -> Weights:
        return dataclasses.replace(self, **changes)


@dataclass
class ModelEntry:
    """One registered architecture: its builder and the tags of its published weights."""

    arch: str
    builder: Callable[..., Any]
    task: str
    family: str  # the module that defines it, e.g. "resnet"
    tags: tuple[str, ...] = ()  # published weights, discovered in the hub folders
    code_weights: dict[str, Weights] = field(default_factory=dict)  # weights declared in code

    @property
    def all_tags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.tags, *self.code_weights]))

    @property
    def default_tag(self) -> str | None:
        tags = self.all_tags
        return tags[0] if tags else None

    @property
    def summary(self) -> str:
        doc = (self.builder.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    fn: Callable[..., Any] | None = None,
    *,
    task: str = "image-classification",
    weights: Iterable[str] = (),
) -> Any:
    """Register a builder under its function name. Use as ``@register_model`` or with arguments.

    ``weights`` names the tags of published weights (``hub/<arch>.<tag>/``). Registering a name twice
    raises, as in torchvision: a second definition would silently shadow the first.
    """

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        # The zoo's own families register first, so a user's clashing name is the one refused.
        _ensure_models_imported()
        arch = builder.__name__
        if arch in _MODELS:
            previous = _MODELS[arch].builder
            raise ValueError(
                f"model '{arch}' is already registered (by {previous.__module__}.{previous.__qualname__}); "
                "pick another builder name"
            )

        @functools.wraps(builder)
        def build(**kwargs: Any) -> Any:
            try:
                model = builder(**kwargs)
            except TypeError as err:
                if "unexpected keyword argument" not in str(err):
                    raise
                raise ConfigError(
                    f"'{arch}' got an argument it does not take ({err}); see `zoo info {arch}` and the "
                    f"docstring of {builder.__module__}.{builder.__qualname__} for its arguments"
                ) from None
            # Stored beside the state_dict by save_pretrained, so a weight can always rebuild its model.
            model.zoo_config = {"architecture": arch, "model_args": dict(kwargs)}
            return model

        family = builder.__module__.rsplit(".", 1)[-1]
        from zoo.tasks import get_task

        # The canonical name: an alias or an unknown task fails or folds here, never later in a listing.
        _MODELS[arch] = ModelEntry(arch, build, get_task(task).name, family, tuple(weights))
        return build

    return decorate(fn) if fn is not None else decorate


def unregister_model(arch: str) -> None:
    """Remove a registered architecture (tests and notebooks that register a model of their own)."""
    _MODELS.pop(arch, None)
    _load_hub_weights.cache_clear()


def register_weights(weights: Weights) -> None:
    """Declare a weight in code (a user's own or one hosted only on the Hub) for a registered arch."""
    entry = get_entry(weights.arch)
    if weights.tag in entry.all_tags:
        raise ValueError(f"weight '{weights.name}' is already registered")
    entry.code_weights[weights.tag] = weights
    _load_hub_weights.cache_clear()


def unregister_weights(name: str) -> None:
    """Remove a weight declared with `register_weights` (tests and notebooks)."""
    arch, tag = parse_model_name(name)
    get_entry(arch).code_weights.pop(tag or "", None)
    _load_hub_weights.cache_clear()


def hub_dirs() -> list[Path]:
    """Folders searched for weights in hub layout: ``ZOO_HUB_DIR`` entries first, then the in-tree hub."""
    dirs = [Path(p) for p in os.environ.get("ZOO_HUB_DIR", "").split(os.pathsep) if p]
    return [*dirs, IN_TREE_HUB]


def parse_model_name(name: str) -> tuple[str, str | None]:
    """Split ``arch.tag`` into its two parts (the tag is None when absent)."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def get_entry(arch: str) -> ModelEntry:
    """The registry entry of an architecture; an unknown name fails with close-match suggestions."""
    _ensure_models_imported()
    try:
        return _MODELS[arch]
    except KeyError:
        raise UnknownModelError(
            f"unknown model '{arch}'.{_suggest(arch, _MODELS)} "
            "See `zoo list` or zoo.list_models() for every registered name."
        ) from None


@functools.cache
def _load_hub_weights(arch: str, tag: str, dirs: tuple[Path, ...]) -> Weights | None:
    for hub in dirs:
        config = hub / f"{arch}.{tag}" / "config.json"
        if config.is_file():
            data = json.loads(config.read_text())
            return Weights.from_dict(data["weights"])
    return None


def clear_weights_cache() -> None:
    """Forget the hub folders' metadata read so far: after a folder's config.json was rewritten in place
    (a card's new measurement), the next lookup reads it again."""
    _load_hub_weights.cache_clear()


def get_weights(name: str) -> Weights:
    """Metadata of a published weight, by ``arch.tag``."""
    arch, tag = parse_model_name(name)
    entry = get_entry(arch)
    if tag is None:
        raise UnknownModelError(
            f"'{name}' names no weight: use 'arch.tag' (e.g. '{arch}.{entry.default_tag}')"
        )
    if tag in entry.code_weights:
        return entry.code_weights[tag]
    if tag not in entry.tags:
        known = ", ".join(f"{arch}.{t}" for t in entry.all_tags) or "none"
        raise UnknownModelError(
            f"'{arch}' has no published weight '{tag}'.{_suggest(tag, entry.all_tags)} Published: {known}."
        )
    found = _load_hub_weights(arch, tag, tuple(hub_dirs()))
    if found is None:
        raise WeightsError(
            f"weight '{name}' is declared but its metadata was not found in any hub folder "
            f"({', '.join(map(str, hub_dirs()))}). Train it with its recipe, or point ZOO_HUB_DIR at a bundle."
        )
    return found


def list_models(
    pattern: str | Iterable[str] = "*",
    pretrained: bool = False,
    task: str | None = None,
) -> list[str]:
    """Registered names matching shell wildcards; ``pretrained=True`` lists ``arch.tag`` weights instead."""
    _ensure_models_imported()
    if task is not None:
        from zoo.tasks import get_task

        task = get_task(task).name  # the zoo's names, their aliases and pipeline-tag-like spellings
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names: list[str] = []
    for entry in _MODELS.values():
        if task is not None and entry.task != task:
            continue
        candidates = [f"{entry.arch}.{t}" for t in entry.all_tags] if pretrained else [entry.arch]
        names += [n for n in candidates if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return sorted(names)


def model_info(name: str) -> dict[str, Any]:
    """What the registry knows about an architecture or a weight, as plain data."""
    arch, tag = parse_model_name(name)
    entry = get_entry(arch)
    info: dict[str, Any] = {
        "name": name,
        "architecture": arch,
        "family": entry.family,
        "task": entry.task,
        "pipeline_tag": _pipeline_tag(entry.task),
        "summary": entry.summary,
        "weights": [f"{arch}.{t}" for t in entry.all_tags],
        "default_weight": f"{arch}.{entry.default_tag}" if entry.default_tag else None,
    }
    if tag is not None:
        info["weight"] = get_weights(name).to_dict()
    return info


def _pipeline_tag(task: str) -> str:
    from zoo.tasks import get_task

    return get_task(task).pipeline_tag


def entries() -> list[ModelEntry]:
    """All registered entries, in registration order."""
    _ensure_models_imported()
    return list(_MODELS.values())


def _ensure_models_imported() -> None:
    # The family modules register themselves on import; importing them here keeps `zoo.registry`
    # usable on its own without a circular import at module load.
    import zoo.models  # noqa: F401
