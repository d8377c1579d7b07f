"""Data: the MNIST 5k split is deterministic, balanced and disjoint; transforms and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recipes import data as D
from zoo.errors import ConfigError


def test_mnist_5k_split_is_the_last_100_of_each_digit():
    images, labels = D._mnist_5k_arrays()
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


def test_sample_photos_are_bundled():
    photos = D.sample_photos()
    assert {"china", "flower", "astronaut", "camera", "coffee"} <= set(photos)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos.values())
    patches = D.photo_patches(size=32, grey=True, names=("camera",))
    assert patches.images.shape == (16 * 16, 1, 32, 32)


def test_online_datasets_are_not_downloaded(tmp_path):
    with pytest.raises(ConfigError, match="download=true"):
        D.load_dataset("mnist", data_root=str(tmp_path))
    with pytest.raises(ConfigError, match="train/<class>"):
        D.load_dataset("imagefolder", data_root=str(tmp_path))


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(5):
                Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    tf = D.train_transform((3, 16, 16), crop_scale=(0.5, 1.0), hflip=True, color_jitter=0.2, degrees=10)
    splits = D.image_folder(str(tmp_path), input_size=(3, 16, 16), val_fraction=0.2, train_tf=tf)
    assert splits.labels == ("cat", "dog") and len(splits.val) == 2 and len(splits.train) == 8
    image, label = splits.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and label == 0


def test_batch_augment_is_per_sample_and_replays_from_the_generator():
    x = D.mnist_5k().train.images[:8].float() / 255
    aug = D.BatchAugment(degrees=15, translate=0.1, scale=(0.9, 1.1), shear=5, brightness=0.1, contrast=0.1)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    same = aug(x[:1].repeat(4, 1, 1, 1), torch.Generator().manual_seed(0))
    assert not torch.equal(same[0], same[1]), "each sample draws its own transform"
    identity = D.BatchAugment()
    assert not identity.active


def test_mix_batch_gives_soft_labels():
    x = torch.rand(8, 1, 28, 28)
    y = torch.arange(8) % 10
    for kwargs in ({"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.2, "cutmix_alpha": 1.0}):
        mixed, soft = D.mix_batch(x, y, 10, **kwargs)
        assert mixed.shape == x.shape and soft.shape == (8, 10)
        torch.testing.assert_close(soft.sum(1), torch.ones(8))


def test_eval_transform_from_weight_metadata():
    from PIL import Image

    from zoo.registry import Weights

    meta = Weights(
        arch="a", tag="t", task="image-classification", input_size=(1, 28, 28), mean=(0.5,), std=(0.25,)
    )
    tf = D.eval_transform(meta)
    out = tf(Image.new("RGB", (56, 40), (255, 255, 255)))
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((1, 28, 28), 2.0), atol=0.02, rtol=0)  # grey: 254 or 255
