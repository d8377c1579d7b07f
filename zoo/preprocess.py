"""Image preprocessing from weight metadata, in numpy and PIL only.

Shared by ``zoo predict`` (PyTorch) and the torch-free ONNX runtime, so both see identical inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from zoo.errors import ZooError

__all__ = [
    "ImageInputError",
    "conversion_note",
    "load_image",
    "preprocess_image",
    "resize_center_crop",
    "softmax",
    "topk",
]

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


class ImageInputError(ZooError, ValueError):
    """An input that is not an image of the shape the model expects."""


def load_image(path: str | os.PathLike, channels: int) -> np.ndarray:
    """Read an image file as an (H, W, C) uint8 array with `channels` channels (1 = grey, 3 = RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = {1: "L", 3: "RGB"}.get(channels)
            if mode is None:
                raise ImageInputError(
                    f"the model expects {channels} channels; images load as 1 (grey) or 3 (RGB)"
                )
            array = np.asarray(image.convert(mode))
    except FileNotFoundError:
        raise ImageInputError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{path} is not an image file PIL can read (PNG, JPEG, BMP, ...)") from None
    return array[..., None] if array.ndim == 2 else array


def conversion_note(path: str | os.PathLike, channels: int) -> str:
    """What `load_image` changed about a file's colours to give `channels`, or "" when nothing.

    ``zoo predict`` prints it beside the answer: a grey scan fed to an RGB model works, but the user should
    know the model saw a converted image.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            bands = len(image.getbands())
            mode = image.mode
    except Exception:
        return ""  # load_image reports unreadable files with the reason
    if mode in ("P", "PA"):
        return f"palette image converted to {'RGB' if channels == 3 else 'grey'}"
    own = 1 if bands in (1, 2) else 3
    if own == channels:
        return "alpha channel dropped" if bands in (2, 4) else ""
    return f"{'grey' if own == 1 else 'colour'} image converted to {'RGB' if channels == 3 else 'grey'}"


def preprocess_image(
    image: np.ndarray,
    input_size: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    invert: bool = False,
) -> np.ndarray:
    """(H, W, C) uint8 -> (1, C, H', W') float32: resize to `input_size`, scale to [0, 1], normalise.

    ``invert`` turns dark-on-light photos of digits into MNIST's light-on-dark convention.
    """
    from PIL import Image

    if image.ndim != 3:
        raise ImageInputError(f"expected an (H, W, C) image array, got shape {image.shape}")
    channels, height, width = input_size
    if image.shape[2] != channels:
        raise ImageInputError(
            f"image has {image.shape[2]} channels but the model expects {channels}; "
            "convert it (grey: 1 channel, RGB: 3) before calling"
        )
    if image.shape[:2] != (height, width):
        planes = [
            np.asarray(Image.fromarray(image[..., c]).resize((width, height), Image.BILINEAR))
            for c in range(channels)
        ]
        image = np.stack(planes, axis=-1)
    x = image.astype(np.float32) / 255.0
    if invert:
        x = 1.0 - x
    if mean is not None and std is not None:
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def resize_center_crop(
    image: np.ndarray, resize_size: int | None, crop_size: Sequence[int], interpolation: str = "bilinear"
) -> np.ndarray:
    """(H, W, C) uint8 -> (crop H, crop W, C) uint8: the shorter side resized to ``resize_size`` (aspect kept),
    then the centre crop; torchvision's and timm's ImageNet evaluation transform, in PIL.

    ``resize_size=None`` resizes straight to ``crop_size`` (no crop). Why here and not in torchvision: the
    torch-free ONNX runtime must see the same pixels as ``zoo predict``.
    """
    from PIL import Image

    if interpolation not in INTERPOLATIONS:
        raise ImageInputError(f"interpolation '{interpolation}' is not one of {', '.join(INTERPOLATIONS)}")
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[interpolation]
    crop_h, crop_w = (int(v) for v in crop_size)
    height, width = image.shape[:2]
    if resize_size:
        # As torchvision: the shorter side becomes resize_size, the longer one is truncated.
        short, long = sorted((height, width))
        new_long = int(resize_size * long / short)
        size = (resize_size, new_long) if height <= width else (new_long, resize_size)
        size = (max(size[0], crop_h), max(size[1], crop_w))
    else:
        size = (crop_h, crop_w)
    if size != (height, width):
        planes = [
            np.asarray(Image.fromarray(image[..., c]).resize((size[1], size[0]), resample))
            for c in range(image.shape[2])
        ]
        image = np.stack(planes, axis=-1)
    top, left = (size[0] - crop_h) // 2, (size[1] - crop_w) // 2
    return np.ascontiguousarray(image[top : top + crop_h, left : left + crop_w])


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def topk(probs: np.ndarray, k: int, labels: Sequence[str] = ()) -> list[tuple[str, float]]:
    """The k most probable classes of one probability vector, as (label, probability)."""
    order = np.argsort(-probs)[:k]
    return [(labels[i] if i < len(labels) else str(int(i)), float(probs[i])) for i in order]
