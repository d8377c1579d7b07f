"""Digit scenes: reproducible by (seed, split, i), disjoint digit splits, consistent targets, captions."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch

from zoo.data import scenes as S
from zoo.data.images import mnist_5k_rows
from zoo.errors import ConfigError

N = 120  # scenes per check: enough to meet every background, overlaps and 1..3 digits


@pytest.fixture(scope="module")
def test_scenes() -> list[S.Scene]:
    data = S.DigitScenes("test", N)
    return [data.scene(i) for i in range(N)]


def _same(a: S.Scene, b: S.Scene) -> bool:
    arrays = ("image", "semantic", "masks", "boxes", "labels", "rows", "hidden")
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in arrays) and a.caption == b.caption


def test_scene_is_a_pure_function_of_seed_split_and_index():
    a, b = S.DigitScenes("train", 50), S.DigitScenes("train", 50)
    assert _same(a.scene(37), b.scene(37))
    forward = [a.scene(i) for i in (3, 4, 5)]
    assert _same(forward[2], b.scene(5)), "a scene does not depend on what was rendered before"
    assert not _same(a.scene(5), S.DigitScenes("train", 50, seed=1).scene(5))
    assert not _same(a.scene(5), S.DigitScenes("test", 50).scene(5))
    shifted = S.DigitScenes("train", 10, start=5)
    assert _same(shifted.scene(0), a.scene(5)), "start offsets the scene index: fresh compositions"


def test_train_scenes_use_only_train_digits_and_test_only_test_digits():
    rows = mnist_5k_rows()
    for split, n in (("train", 200), ("test", 200)):
        data = S.DigitScenes(split, n)
        used = np.concatenate([data.scene(i).rows for i in range(n)])
        assert np.isin(used, rows[split]).all(), split
    with_val = mnist_5k_rows(val_per_class=30)
    for split in ("train", "val"):
        data = S.DigitScenes(split, 100, val_per_class=30)
        used = np.concatenate([data.scene(i).rows for i in range(100)])
        assert np.isin(used, with_val[split]).all(), split
    with pytest.raises(ConfigError, match="val_per_class"):
        S.DigitScenes("val", 10)


def test_test_textures_come_from_the_held_out_columns(test_scenes):
    train = S.DigitScenes("train", N)
    seen = Counter()
    for split, scenes in (("test", test_scenes), ("train", [train.scene(i) for i in range(N)])):
        for scene in scenes:
            seen[scene.background.split(":")[0].split("@")[0]] += 1
            if scene.background.startswith("texture:"):
                x, _, side = (int(v) for v in scene.background.split("@")[1].split(","))
                if split == "test":
                    assert x >= S.TEXTURE_TEST_X
                else:
                    assert x + side <= S.TEXTURE_TEST_X
    assert set(seen) == {"plain", "noise", "texture"}


def test_targets_are_consistent(test_scenes):
    from torchvision.ops import masks_to_boxes

    counts = Counter()
    for scene in test_scenes:
        n = len(scene.labels)
        counts[n] += 1
        assert 1 <= n <= 3 and scene.masks.shape == (n, 64, 64) and scene.masks.dtype == bool
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert ((scene.labels >= 1) & (scene.labels <= 10)).all()
        # Visible masks are disjoint and the semantic map is exactly their union.
        assert (scene.masks.sum(0) <= 1).all()
        expected = np.zeros((64, 64), np.uint8)
        for mask, label in zip(scene.masks, scene.labels):
            assert mask.any()
            expected[mask] = label
        assert np.array_equal(scene.semantic, expected)
        # Boxes are tight around the masks, in pixel-edge coordinates.
        inclusive = masks_to_boxes(torch.from_numpy(scene.masks)).numpy()
        assert np.array_equal(scene.boxes, inclusive + np.array([0, 0, 1, 1], np.float32))
        # Only a later digit covers an earlier one: the top-most instance wins.
        assert not np.triu(scene.hidden).any(), "hidden[k, j] > 0 only for k > j"
    assert set(counts) == {1, 2, 3}
    assert sum(s.hidden.any() for s in test_scenes) > 0, "some scenes overlap"


def test_top_most_instance_wins(monkeypatch):
    # Square digits make every full mask known: visible + covered-by-later must rebuild each square.
    monkeypatch.setattr(S, "digit_alpha", lambda row, side: np.ones((side, side), np.float32))
    config = S.SceneConfig(size=32, min_digits=3, max_digits=3, scale=(0.5, 0.8), max_hidden=0.9)
    overlapped = 0
    for i in range(40):
        scene = S.render_scene(config, mnist_5k_rows()["test"], 0, "test", i)
        full = scene.masks.sum((1, 2)) + scene.hidden.sum(0)
        sides = np.clip(np.round(28 * scene.scales), 4, 32)
        assert np.array_equal(full, sides**2)
        top = scene.masks[-1]
        assert top.sum() == sides[-1] ** 2, "the last digit drawn is fully visible"
        overlapped += bool(scene.hidden.any())
    assert overlapped > 5


def test_captions_mention_every_digit(test_scenes):
    relations = Counter()
    for scene in test_scenes:
        numerals = sorted(int(d) for d in re.findall(r"\b\d\b", scene.caption))
        assert numerals == sorted((scene.labels - 1).tolist()), scene.caption
        assert not re.search(r"\ba 8\b|\ban [0-79]\b", scene.caption), scene.caption
        for rel in ("to the left of", "to the right of", "above", "below", "in front of", "behind"):
            relations[rel] += rel in scene.caption
    assert all(relations.values()), relations
    assert any("small" in s.caption for s in test_scenes) and any("large" in s.caption for s in test_scenes)
    # A lone digit says where it stands in some scenes, by its box centre in thirds of the canvas.
    singles = [s for s in test_scenes if len(s.labels) == 1]
    placed = [s for s in singles if s.caption.endswith(S.POSITION_PHRASES)]
    assert 0 < len(placed) < len(singles), [s.caption for s in singles]
    for s in singles:  # "a large 7", then where it stands or nothing
        noun = re.fullmatch(r"(an? (?:small |large )?\d)( .+)?", s.caption)
        assert noun and noun.group(2) in (None, *(f" {p}" for p in S.POSITION_PHRASES)), s.caption
    for s in placed:
        cx, cy = (s.boxes[0, :2] + s.boxes[0, 2:]) / 2 / s.image.shape[1]
        assert ("left" in s.caption) == (cx < 1 / 3) and ("right" in s.caption) == (cx > 2 / 3), s.caption
        assert ("top" in s.caption) == (cy < 1 / 3) and ("bottom" in s.caption) == (cy > 2 / 3), s.caption


def test_relation_words_follow_the_boxes():
    boxes = np.array([[0, 0, 10, 10], [20, 2, 30, 12], [2, 30, 12, 40]], np.float32)
    none = np.zeros((3, 3), np.int64)
    full = np.full(3, 50)
    assert S._relation(0, 1, boxes, none, full) == "to the left of"
    assert S._relation(1, 0, boxes, none, full) == "to the right of"
    assert S._relation(0, 2, boxes, none, full) == "above"
    assert S._relation(2, 0, boxes, none, full) == "below"
    covering = none.copy()
    covering[2, 0] = 20  # digit 2 covers 40% of digit 0
    assert S._relation(2, 0, boxes, covering, full) == "in front of"
    assert S._relation(0, 2, boxes, covering, full) == "behind"
    assert S._noun(8, 1.0) == "an 8" and S._noun(8, 0.6) == "a small 8" and S._noun(3, 1.8) == "a large 3"


def test_torch_views_and_collate():
    data = S.DigitScenes("test", 6)
    image, target = data[2]
    scene = data.scene(2)
    assert (
        image.dtype == torch.float32 and image.shape == (3, 64, 64) and 0 <= image.min() <= image.max() <= 1
    )
    assert set(target) == {"semantic", "masks", "boxes", "labels", "caption"}
    assert target["semantic"].dtype == torch.int64 and target["masks"].dtype == torch.bool
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert (
        torch.equal(target["labels"], torch.from_numpy(scene.labels)) and target["caption"] == scene.caption
    )
    loader = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=S.collate_scenes)
    images, targets = next(iter(loader))
    assert images.shape == (3, 3, 64, 64) and len(targets) == 3 and targets[2]["caption"] == scene.caption
    memory = data.to_memory()
    x, y = memory.get_batch(torch.tensor([2, 0]))
    assert x.dtype == torch.uint8 and torch.equal(x[0], torch.from_numpy(scene.image).permute(2, 0, 1))
    assert y.dtype == torch.int64 and torch.equal(y[0], target["semantic"])
    assert memory.captions[2] == scene.caption and len(memory.subset(torch.tensor([1, 2]))) == 2


def test_loader_presets_and_validation():
    from zoo.data import load_dataset

    splits = load_dataset("digit_scenes_128", num_train=8, num_test=4)
    assert splits.input_size == (3, 128, 128) and splits.labels == S.SEMANTIC_CLASSES
    assert len(splits.train) == 8 and len(splits.test) == 4 and splits.val is None
    scene = splits.test.scene(0)
    assert scene.image.shape == (128, 128, 3) and len(scene.labels) <= 5
    assert splits.name == "digit_scenes", "non-default counts are not the preset"
    with_val = load_dataset("digit_scenes", val_per_class=20, num_val=5)
    assert len(with_val.val) == 5 and "validation scenes" in with_val.split
    with pytest.raises(ConfigError, match="max_digits"):
        S.SceneConfig(min_digits=3, max_digits=2)
