"""Image datasets (`zoo.data.images`): the MNIST 5k split is deterministic, balanced and disjoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.data import images as D
from zoo.data import load_dataset
from zoo.errors import ConfigError


def test_mnist_5k_split_is_the_last_100_of_each_digit():
    images, labels = D.mnist_5k_arrays()
    assert images.shape == (5000, 1, 28, 28) and (np.diff(labels) >= 0).all(), "the CSV is sorted by label"
    splits = D.mnist_5k()
    assert len(splits.train) == 4000 and len(splits.test) == 1000 and splits.val is None
    assert torch.bincount(splits.test.labels).tolist() == [100] * 10
    assert torch.bincount(splits.train.labels).tolist() == [400] * 10
    test_rows = np.concatenate([np.flatnonzero(labels == d)[-100:] for d in range(10)])
    assert torch.equal(splits.test.images, torch.from_numpy(images[test_rows]))
    assert "last 100 images of each digit" in splits.split


def test_mnist_5k_split_is_deterministic_and_validation_comes_from_train():
    a, b = D.mnist_5k(val_per_class=50), D.mnist_5k(val_per_class=50)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).images, getattr(b, split).images)
        assert torch.equal(getattr(a, split).labels, getattr(b, split).labels)
    assert len(a.train) == 3500 and len(a.val) == 500
    assert torch.bincount(a.val.labels).tolist() == [50] * 10
    plain = D.mnist_5k()
    assert torch.equal(a.test.images, plain.test.images), "validation never changes the test split"
    pool = {bytes(x.numpy()) for x in plain.train.images}
    assert all(bytes(x.numpy()) in pool for x in a.val.images), "validation is carved from train"
    test = {bytes(x.numpy()) for x in plain.test.images}
    assert not any(bytes(x.numpy()) in test for x in plain.train.images[:500])
    assert a.mean == plain.mean or len(a.train) != len(plain.train)


def test_mnist_5k_rejects_impossible_validation():
    with pytest.raises(ConfigError, match="val_per_class"):
        D.mnist_5k(val_per_class=400)


def test_digits_8x8_split():
    splits = D.digits_8x8(val_per_class=5)
    assert splits.input_size == (1, 8, 8)
    assert torch.bincount(splits.test.labels).tolist() == [30] * 10
    assert splits.train.images.max() == 255 and splits.train.images.dtype == torch.uint8
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797


def test_online_datasets_are_not_downloaded(tmp_path):
    with pytest.raises(ConfigError, match="download=true"):
        load_dataset("mnist", data_root=str(tmp_path))
    with pytest.raises(ConfigError, match="train/<class>"):
        load_dataset("imagefolder", data_root=str(tmp_path))


def test_mnist_5k_rows_are_the_splits_rows():
    images, _ = D.mnist_5k_arrays()
    rows = D.mnist_5k_rows(val_per_class=20)
    splits = D.mnist_5k(val_per_class=20)
    for split in ("train", "val", "test"):
        assert torch.equal(torch.from_numpy(images[rows[split]]), getattr(splits, split).images)
    everything = np.concatenate(list(rows.values()))
    assert len(everything) == len(np.unique(everything)) == 5000


def test_image_folder_without_augmentation(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (20, 20), i * 80).save(tmp_path / split / cls / f"{i}.png")
    splits = load_dataset("imagefolder", data_root=str(tmp_path), input_size=(1, 8, 8), val_fraction=0.5)
    image, label = splits.test[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.uint8 and splits.labels == ("a", "b")
    assert label == 0
