"""Corrupted digits in the spirit of MNIST-C (Mu & Gilmer 2019), generated offline from a test split.

    from zoo.data.corruptions import CORRUPTIONS, corrupt, corrupted_split
    images = corrupt(test_images, "dilate", severity=2)          # (N, H, W) or (N, 1, H, W) uint8 -> same
    split = corrupted_split("mnist_5k", "lowres", 3)              # InMemoryImages of the corrupted test split

Each corruption models a way digits written or scanned elsewhere differ from MNIST: thicker or thinner
pens (dilate, erode), focus (blur), other centring, size and slant (shift, scale, rotate), other scanners
(lowres: downsampled to 14, 12 or 8 pixels and upsampled back), faint ink (contrast), sensor noise (noise)
and other handwriting (elastic). Severities are 1, 2 and 3; severity 2 is the "middle" one the zoo's
robustness bar is stated at.

Deterministic: the random parameters of image ``i`` (a shift's direction, a rotation's sign, the noise,
an elastic field) come from a generator seeded by (seed, corruption, severity), so the same inputs give
the same corrupted images on any machine with the same library versions. The heavy lifting is scipy's
morphology and filters and torchvision's v2 functional transforms; this module only fixes their
parameters. Torch and scipy are imported on use, so ``import zoo.data`` stays cheap.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import ConfigError

if TYPE_CHECKING:
    from zoo.data.images import InMemoryImages

__all__ = [
    "CORRUPTIONS",
    "MIDDLE_SEVERITY",
    "PAPER",
    "SEVERITIES",
    "SUITE",
    "corrupt",
    "corrupted_split",
    "describe_corruption",
    "subset",
]

PAPER = "https://arxiv.org/abs/1906.02337"  # Mu & Gilmer, MNIST-C: a robustness benchmark for computer vision
SEVERITIES = (1, 2, 3)
MIDDLE_SEVERITY = 2
# The suite's name and version, recorded with every measurement: change it when a parameter below changes,
# so that cards measured on the old suite are not compared with the new one.
SUITE = "mnist-c-like v1 (10 corruptions x 3 severities, seed 0)"

# Per corruption, its parameter at severities 1, 2, 3 and what the parameter means (the card's legend).
_PARAMS: dict[str, tuple[tuple[Any, ...], str]] = {
    "dilate": (("line2", "square2", "cross3"), "grey dilation with that footprint: a thicker pen"),
    "erode": (("line2", "square2", "cross3"), "grey erosion with that footprint: a thinner pen"),
    "blur": ((0.7, 1.1, 1.5), "Gaussian blur, sigma in px"),
    "shift": ((3, 5, 7), "translation by that many px in a random direction"),
    "scale": ((0.2, 0.3, 0.4), "zoom by 1 - s or 1 + s (random), about the centre"),
    "rotate": ((15, 25, 35), "rotation by that many degrees, random sign"),
    "lowres": ((14, 12, 8), "downsampled to that size (antialiased), bilinear upsampled back"),
    "contrast": ((0.5, 0.35, 0.2), "ink intensity scaled by that factor toward the image mean"),
    "noise": ((0.15, 0.25, 0.35), "Gaussian pixel noise, std as a fraction of 255, clipped"),
    "elastic": (
        (1.0, 1.5, 2.0),
        "elastic distortion, smooth random field with that many px of typical displacement",
    ),
}
CORRUPTIONS: tuple[str, ...] = tuple(_PARAMS)


def describe_corruption(name: str) -> str:
    """One line: what the corruption does and its parameter at severities 1, 2, 3."""
    values, doc = _PARAMS[_check(name, MIDDLE_SEVERITY)]
    return f"{doc}; severities 1-3: {', '.join(str(v) for v in values)}"


def _check(name: str, severity: int) -> str:
    if name not in _PARAMS:
        raise ConfigError(f"unknown corruption {name!r}; the suite has {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ConfigError(f"corruption severity {severity!r} is not one of {SEVERITIES}")
    return name


def _rng(name: str, severity: int, seed: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process, which would make the suite irreproducible.
    return np.random.default_rng([seed, zlib.crc32(name.encode()), severity])


def _footprint(name: str) -> np.ndarray:
    from skimage.morphology import disk, footprint_rectangle

    # MNIST strokes are 2-4 px wide, so the steps are small: a 2-px line (thickens or thins by one pixel
    # along x), a 2x2 square (one pixel along both axes), the 3x3 cross (one pixel on every side).
    return {
        "line2": footprint_rectangle((1, 2)),
        "square2": footprint_rectangle((2, 2)),
        "cross3": disk(1),
    }[name]


def _morph(images: np.ndarray, footprint: str, op: str) -> np.ndarray:
    from scipy import ndimage

    fn = ndimage.grey_dilation if op == "dilate" else ndimage.grey_erosion
    return np.stack([fn(img, footprint=_footprint(footprint)) for img in images])


def _affine(images: np.ndarray, angles: np.ndarray, shifts: np.ndarray, scales: np.ndarray) -> np.ndarray:
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    out = np.empty_like(images)
    for i, img in enumerate(images):
        t = F.affine(
            torch.from_numpy(img)[None].float(),
            angle=float(angles[i]),
            translate=[float(shifts[i, 0]), float(shifts[i, 1])],
            scale=float(scales[i]),
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )
        out[i] = t[0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _shift(images: np.ndarray, pixels: float, rng: np.random.Generator) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi, len(images))
    shifts = np.stack([np.cos(theta), np.sin(theta)], 1) * pixels
    n = len(images)
    return _affine(images, np.zeros(n), shifts, np.ones(n))


def _elastic(images: np.ndarray, pixels: float, rng: np.random.Generator) -> np.ndarray:
    import torch
    from scipy import ndimage
    from torchvision.transforms.v2 import functional as F

    n, h, w = images.shape
    # Simard et al. 2003: white noise smoothed by a Gaussian (sigma 4 px at 28 px) is a smooth random field;
    # rescaled so its RMS displacement is `pixels`, the severity reads in pixels whatever the smoothing.
    field = ndimage.gaussian_filter(rng.standard_normal((n, h, w, 2)), sigma=(0, 4, 4, 0))
    field *= pixels / np.sqrt((field**2).mean(axis=(1, 2, 3), keepdims=True))
    # torchvision's displacement is in normalised [-1, 1] coordinates: 2 / size per pixel.
    field *= np.array([2 / w, 2 / h])
    out = np.empty_like(images)
    for i in range(n):
        t = F.elastic(torch.from_numpy(images[i])[None].float(), torch.from_numpy(field[i : i + 1]).float())
        out[i] = t[0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _lowres(images: np.ndarray, size: int) -> np.ndarray:
    import torch
    from torchvision.transforms.v2 import functional as F

    x = torch.from_numpy(images)[:, None].float()
    small = F.resize(x, [size, size], antialias=True)
    back = F.resize(small, list(images.shape[1:]), antialias=False)
    return back[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def _apply(images: np.ndarray, name: str, value: Any, rng: np.random.Generator) -> np.ndarray:
    n = len(images)
    f = images.astype(np.float64)
    if name in ("dilate", "erode"):
        return _morph(images, str(value), name)
    if name == "blur":
        from scipy import ndimage

        return np.clip(ndimage.gaussian_filter(f, sigma=(0, value, value)).round(), 0, 255).astype(np.uint8)
    if name == "shift":
        return _shift(images, float(value), rng)
    if name == "scale":
        signs = rng.choice([-1.0, 1.0], n)
        return _affine(images, np.zeros(n), np.zeros((n, 2)), 1 + signs * value)
    if name == "rotate":
        return _affine(images, rng.choice([-1.0, 1.0], n) * value, np.zeros((n, 2)), np.ones(n))
    if name == "lowres":
        return _lowres(images, int(value))
    if name == "contrast":
        mean = f.mean(axis=(1, 2), keepdims=True)
        return np.clip((mean + (f - mean) * value).round(), 0, 255).astype(np.uint8)
    if name == "noise":
        return np.clip((f + rng.standard_normal(f.shape) * value * 255).round(), 0, 255).astype(np.uint8)
    if name == "elastic":
        return _elastic(images, float(value), rng)
    raise AssertionError(name)  # _check refused it already


def corrupt(images: np.ndarray, name: str, severity: int = MIDDLE_SEVERITY, seed: int = 0) -> np.ndarray:
    """`images` ((N, H, W) or (N, 1, H, W) uint8, white ink on black as in MNIST) with one corruption.

    Deterministic in (images, name, severity, seed); the output has the input's shape and dtype.
    """
    _check(name, severity)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ConfigError(f"corrupt() takes uint8 images (0-255), got {images.dtype}")
    squeeze = images.ndim == 4
    if squeeze and images.shape[1] != 1:
        raise ConfigError(f"corrupt() takes grey images (N, 1, H, W) or (N, H, W), got shape {images.shape}")
    if images.ndim not in (3, 4):
        raise ConfigError(f"corrupt() takes (N, H, W) or (N, 1, H, W) images, got shape {images.shape}")
    flat = images[:, 0] if squeeze else images
    values, _ = _PARAMS[name]
    out = _apply(np.ascontiguousarray(flat), name, values[severity - 1], _rng(name, severity, seed))
    return out[:, None] if squeeze else out


def corrupted_split(
    dataset: str = "mnist_5k",
    name: str = "blur",
    severity: int = MIDDLE_SEVERITY,
    seed: int = 0,
    step: int = 1,
) -> InMemoryImages:
    """A dataset's test split with one corruption (every `step`-th image: a fixed, class-balanced subset
    of the label-sorted MNIST 5k test split for quick checks)."""
    import torch

    from zoo.data import load_dataset
    from zoo.data.images import InMemoryImages

    test = subset(load_dataset(dataset).test, step)
    return InMemoryImages(torch.from_numpy(corrupt(test.images.numpy(), name, severity, seed)), test.labels)


def subset(test: InMemoryImages, step: int = 1) -> InMemoryImages:
    """Every `step`-th item of a test split (1: all of it)."""
    import torch

    if step < 1:
        raise ConfigError(f"subset step must be >= 1, got {step}")
    return test if step == 1 else test.subset(torch.arange(0, len(test), step))
