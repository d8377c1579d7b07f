"""Augmentation and preprocessing (`recipes.augment`): batched, seeded, per sample; v2 transforms."""

from __future__ import annotations

import torch

from recipes import augment as A
from zoo.data.images import image_folder, mnist_5k


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(5):
                Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    tf = A.train_transform((3, 16, 16), crop_scale=(0.5, 1.0), hflip=True, color_jitter=0.2, degrees=10)
    splits = image_folder(str(tmp_path), input_size=(3, 16, 16), val_fraction=0.2, train_tf=tf)
    assert splits.labels == ("cat", "dog") and len(splits.val) == 2 and len(splits.train) == 8
    image, label = splits.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and label == 0


def test_batch_augment_is_per_sample_and_replays_from_the_generator():
    x = mnist_5k().train.images[:8].float() / 255
    aug = A.BatchAugment(degrees=15, translate=0.1, scale=(0.9, 1.1), shear=5, brightness=0.1, contrast=0.1)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    same = aug(x[:1].repeat(4, 1, 1, 1), torch.Generator().manual_seed(0))
    assert not torch.equal(same[0], same[1]), "each sample draws its own transform"
    identity = A.BatchAugment()
    assert not identity.active


def test_mix_batch_gives_soft_labels():
    x = torch.rand(8, 1, 28, 28)
    y = torch.arange(8) % 10
    for kwargs in ({"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.2, "cutmix_alpha": 1.0}):
        mixed, soft = A.mix_batch(x, y, 10, **kwargs)
        assert mixed.shape == x.shape and soft.shape == (8, 10)
        torch.testing.assert_close(soft.sum(1), torch.ones(8))


def test_eval_transform_from_weight_metadata():
    from PIL import Image

    from zoo.registry import Weights

    meta = Weights(
        arch="a", tag="t", task="image-classification", input_size=(1, 28, 28), mean=(0.5,), std=(0.25,)
    )
    tf = A.eval_transform(meta)
    out = tf(Image.new("RGB", (56, 40), (255, 255, 255)))
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((1, 28, 28), 2.0), atol=0.02, rtol=0)  # grey: 254 or 255
