"""Photographs bundled in scikit-image and scikit-learn, for image-to-image work (denoising, super-resolution).

Nothing is downloaded: these images ship inside the wheels. The train/test division is **by photo**, never
by patch of one photo, so a test patch never shares its photograph with a train patch:

- test: ``coffee``, ``coins``, ``flower`` (one colour still life, one grey object photo, one natural scene);
- train: ``astronaut``, ``camera``, ``chelsea``, ``china``, ``hubble_deep_field``, ``immunohistochemistry``,
  ``moon``, ``motorcycle``, ``page``, ``rocket``, ``text``.

``china`` and ``flower`` come from scikit-learn's ``load_sample_images``; the rest from ``skimage.data``
(``motorcycle`` is the left image of ``stereo_motorcycle``). scikit-image's ``cat`` is ``chelsea`` under
another name and is left out so one photograph cannot sit on both sides; its ``grass``, ``gravel`` and
``brick`` are textures and belong to the digit scenes' backgrounds (`zoo.data.scenes`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zoo.data.images import ImageSplits, InMemoryImages, channel_stats
from zoo.errors import ConfigError

__all__ = ["COLOUR_PHOTOS", "GREY_PHOTOS", "TEST_PHOTOS", "photo_patches", "photos", "sample_photos"]

COLOUR_PHOTOS = (
    "astronaut",
    "chelsea",
    "china",
    "coffee",
    "flower",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle",
    "rocket",
)
GREY_PHOTOS = ("camera", "coins", "moon", "page", "text")
TEST_PHOTOS = ("coffee", "coins", "flower")
_SKLEARN = ("china", "flower")


@functools.cache
def _load(name: str) -> np.ndarray:
    """One photo as a read-only uint8 ``(H, W, C)`` array, C = 3 (colour) or 1 (grey)."""
    if name in _SKLEARN:
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        image = next(im for f, im in zip(bunch.filenames, bunch.images) if Path(f).stem == name)
    else:
        import skimage.data

        image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    image = image[..., None] if image.ndim == 2 else image[..., :3]
    image = np.ascontiguousarray(image, dtype=np.uint8)
    image.setflags(write=False)
    return image


def sample_photos(grey: bool = False, names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Bundled photos by name as uint8 ``(H, W, C)`` arrays: all 3-channel, or all 1-channel with `grey`
    (ITU-R 601 luma). `names` picks some (default: every photo, colour and grey)."""
    chosen = tuple(names) or COLOUR_PHOTOS + GREY_PHOTOS
    out = {}
    for name in chosen:
        if name not in COLOUR_PHOTOS + GREY_PHOTOS:
            known = ", ".join(sorted(COLOUR_PHOTOS + GREY_PHOTOS))
            raise ConfigError(f"unknown photo {name!r}; bundled: {known}")
        image = _load(name)
        if grey and image.shape[2] == 3:
            image = np.round(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
        elif not grey and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        out[name] = np.array(image)  # a writable copy: callers may change it
    return out


def photo_patches(
    size: int = 32, stride: int | None = None, grey: bool = False, names: Sequence[str] = ()
) -> InMemoryImages:
    """``size`` x ``size`` patches (non-overlapping unless `stride` < size) of the named photos (default:
    all), in a fixed order: photo by photo, row by row. Each patch's label is its photo's index in
    `names` (sorted names by default), so a patch can be traced to its photograph."""
    stride = stride or size
    photos_ = sample_photos(grey, sorted(names or COLOUR_PHOTOS + GREY_PHOTOS))
    chosen = list(names) or sorted(photos_)
    patches, labels = [], []
    for index, name in enumerate(chosen):
        t = torch.from_numpy(photos_[name]).permute(2, 0, 1)
        p = t.unfold(1, size, stride).unfold(2, size, stride)  # C, nh, nw, size, size
        p = p.permute(1, 2, 0, 3, 4).reshape(-1, t.shape[0], size, size)
        patches.append(p)
        labels.append(torch.full((len(p),), index, dtype=torch.long))
    return InMemoryImages(torch.cat(patches).contiguous(), torch.cat(labels))


def photos(size: int = 32, stride: int | None = None, grey: bool = False) -> ImageSplits:
    """The photo patches split by photo (see the module docstring): ``train`` and ``test`` hold uint8
    patches, labelled with the index of their photo in ``labels`` (the photo names); mean and std are
    the train patches' own."""
    stride = stride or size
    train_names = tuple(sorted(n for n in COLOUR_PHOTOS + GREY_PHOTOS if n not in TEST_PHOTOS))
    test_names = tuple(sorted(TEST_PHOTOS))
    names = train_names + test_names
    train = photo_patches(size, stride, grey, train_names)
    test = photo_patches(size, stride, grey, test_names)
    test.labels += len(train_names)  # index into `names`, which lists train photos, then test photos
    mean, std = channel_stats(train.images)
    split = (
        f"by photo: test = every {size}x{size} patch (stride {stride}) of {', '.join(test_names)}; "
        f"train = those of {', '.join(train_names)}"
    )
    channels = 1 if grey else 3
    return ImageSplits("photos", train, None, test, names, (channels, size, size), mean, std, split)
