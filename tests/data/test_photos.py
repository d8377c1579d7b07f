"""Bundled photos: every one loads offline; the train/test division is by photo, never by patch."""

from __future__ import annotations

import numpy as np
import torch

from zoo.data import photos as P


def test_sample_photos_are_bundled():
    photos = P.sample_photos()
    assert set(photos) == set(P.COLOUR_PHOTOS + P.GREY_PHOTOS)
    assert {"china", "flower", "astronaut", "camera", "coffee"} <= set(photos)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos.values())
    grey = P.sample_photos(grey=True, names=("coffee",))
    assert grey["coffee"].shape[2] == 1
    patches = P.photo_patches(size=32, grey=True, names=("camera",))
    assert patches.images.shape == (16 * 16, 1, 32, 32) and (patches.labels == 0).all()


def test_split_is_by_photo():
    splits = P.photos(size=32)
    test_names = {splits.labels[i] for i in splits.test.labels.unique().tolist()}
    train_names = {splits.labels[i] for i in splits.train.labels.unique().tolist()}
    assert test_names == set(P.TEST_PHOTOS) and not test_names & train_names
    assert train_names | test_names == set(P.COLOUR_PHOTOS + P.GREY_PHOTOS)
    assert splits.input_size == (3, 32, 32) and splits.val is None
    # A test patch is a crop of its own photo, at the place its order says.
    coffee = torch.from_numpy(P.sample_photos(names=("coffee",))["coffee"]).permute(2, 0, 1)
    first = splits.test.images[splits.test.labels == splits.labels.index("coffee")][0]
    assert torch.equal(first, coffee[:, :32, :32])
    assert "by photo" in splits.split
