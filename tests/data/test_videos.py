"""Digit videos: reproducible by (seed, split, i), disjoint digit splits, instance maps that match the
frames, distinct colours, bounded bouncing motion, visible first frames, PIL-exact grey frames."""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

import zoo.data as data
from zoo.data import videos as V
from zoo.data.images import mnist_5k_rows
from zoo.data.scenes import digit_alpha
from zoo.data.show import dataset_picture, overlay_instances, video_strip
from zoo.errors import ConfigError

N = 40  # videos per check: meets every background, both polarities, 2 and 3 digits, bounces


@pytest.fixture(scope="module")
def test_videos() -> list[V.Video]:
    videos = V.DigitVideos("test", N)
    return [videos.video(i) for i in range(N)]


def _same(a: V.Video, b: V.Video) -> bool:
    arrays = ("frames", "instances", "labels", "rows", "colours", "positions", "sides")
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in arrays) and a.background == b.background


def test_video_is_a_pure_function_of_seed_split_and_index():
    a, b = V.DigitVideos("train", 50), V.DigitVideos("train", 50)
    assert _same(a.video(17), b.video(17))
    forward = [a.video(i) for i in (3, 4, 5)]
    assert _same(forward[2], b.video(5)), "a video does not depend on what was rendered before"
    assert not np.array_equal(a.video(5).frames, a.video(6).frames)
    assert not _same(a.video(5), V.DigitVideos("train", 50, seed=1).video(5))
    assert not _same(a.video(5), V.DigitVideos("test", 50).video(5))
    assert _same(V.DigitVideos("train", 10, start=5).video(0), a.video(5)), "start offsets the index"
    with pytest.raises(IndexError):
        a.video(50)
    with pytest.raises(ConfigError, match="not one of 'train', 'test'"):
        V.DigitVideos("val")


def test_train_videos_use_only_train_digits_and_test_only_test_digits(test_videos):
    rows = mnist_5k_rows()
    train = V.DigitVideos("train", N)
    for split, videos in (("train", [train.video(i) for i in range(N)]), ("test", test_videos)):
        used = np.concatenate([v.rows for v in videos])
        assert np.isin(used, rows[split]).all(), split
    textures = [v.background for v in test_videos if v.background.startswith("texture")]
    assert textures and all(int(t.split("@")[1].split(",")[0]) >= 384 for t in textures)


def test_shapes_and_dtypes(test_videos):
    for v in test_videos:
        n = len(v.labels)
        assert v.frames.shape == (12, 48, 48, 3) and v.frames.dtype == np.uint8
        assert v.instances.shape == (12, 48, 48) and v.instances.dtype == np.uint8
        assert v.labels.dtype == v.rows.dtype == v.positions.dtype == v.sides.dtype == np.int64
        assert v.colours.shape == (n, 3) and v.colours.dtype == np.float32
        assert v.positions.shape == (12, n, 2) and v.rows.shape == v.sides.shape == (n,)
        assert ((v.labels >= 0) & (v.labels <= 9)).all()
        assert set(np.unique(v.instances)) <= set(range(n + 1))
    assert {len(v.labels) for v in test_videos} == {2, 3}
    assert {v.background.split(":")[0] for v in test_videos} == {"plain", "noise", "texture"}
    videos = V.DigitVideos("test", 3)
    frames, instances = videos[1]
    assert frames.shape == (12, 3, 48, 48) and frames.dtype == torch.float32
    assert frames.min() >= 0 and frames.max() <= 1
    assert instances.shape == (12, 48, 48) and instances.dtype == torch.int64
    memory = videos.to_memory()
    assert memory.frames.shape == (3, 12, 3, 48, 48) and memory.instances.shape == (3, 12, 48, 48)
    assert torch.equal(memory[1][0].float().div(255), frames) and torch.equal(memory[1][1], instances)
    batch_frames, batch_instances = memory.get_batch(torch.tensor([2, 0]))
    assert batch_frames.shape == (2, 12, 3, 48, 48) and batch_instances.dtype == torch.int64
    assert torch.equal(batch_instances[1], memory[0][1])


def test_instances_are_the_visible_digit_masks_top_most_wins(test_videos):
    for v in test_videos:
        expected = np.zeros_like(v.instances)
        for k, (row, side) in enumerate(zip(v.rows, v.sides)):
            mask = digit_alpha(int(row), int(side)) >= 0.5
            for t, (x, y) in enumerate(v.positions[:, k]):
                expected[t, y : y + side, x : x + side][mask] = k + 1  # later digits overwrite
        assert np.array_equal(v.instances, expected)


def test_instance_pixels_carry_their_digits_colour(test_videos):
    checked = 0
    for v in test_videos:
        colours = v.colours * 255
        for t in range(0, 12, 3):
            for k in range(len(v.labels)):
                pixels = v.frames[t][v.instances[t] == k + 1].astype(np.float32)
                if len(pixels) < 5:
                    continue
                distance = np.linalg.norm(colours - pixels.mean(0), axis=1)
                assert distance.argmin() == k, (v.background, t, k, distance)
                checked += 1
    assert checked > 200


def test_colours_are_distinct_and_saturated(test_videos):
    dark = light = 0
    for v in test_videos:
        hsv = np.array([colorsys.rgb_to_hsv(*c) for c in v.colours.astype(np.float64)])
        n = len(hsv)
        assert (hsv[:, 1] >= 0.7 - 1e-4).all()
        values = hsv[:, 2]
        on_dark = values.min() >= 0.8 - 1e-4
        dark += on_dark
        light += (values >= 0.35 - 1e-4).all() and (values <= 0.55 + 1e-4).all()
        for i in range(n):
            for j in range(i + 1, n):
                apart = abs(hsv[i, 0] - hsv[j, 0])
                # Hues sit 1/n of a turn apart, each jittered by at most 0.05 (at most 3 digits drawn).
                assert min(apart, 1 - apart) >= 1 / 3 - 0.1 - 1e-4, (hsv[i], hsv[j])
    assert dark and light and dark + light == len(test_videos)


def test_every_digit_stands_out_in_the_grey_frames(test_videos):
    for v in test_videos:
        grey = V.grey_frames(v.frames[0]).astype(np.float32)
        background = grey[v.instances[0] == 0].mean()
        for k in range(len(v.labels)):
            # min_contrast 0.1 of the colour itself; stroke edges blend into the background: half of it.
            assert abs(np.median(grey[v.instances[0] == k + 1]) - background) >= 0.05 * 255, (v.background, k)


def test_digits_move_bounce_and_stay_inside(test_videos):
    step = math.ceil(V.VideoConfig().speed[1]) + 1
    bounces = 0
    for v in test_videos:
        limit = (48 - v.sides)[None, :, None]
        assert (v.positions >= 0).all() and (v.positions <= limit).all()
        moves = np.diff(v.positions, axis=0)
        assert (np.abs(moves) <= step).all()
        assert (np.abs(moves).sum(axis=(0, 2)) > 0).all(), "every digit moves"
        bounces += int((moves[1:] * moves[:-1] < 0).sum())
    assert bounces > 5, "digits bounce off the borders"
    fast = V.VideoConfig(speed=(30.0, 40.0), frames=6)
    for i in range(5):
        v = V.render_video(fast, mnist_5k_rows()["test"], 0, "test", i)
        assert (v.positions >= 0).all() and (v.positions <= (48 - v.sides)[None, :, None]).all()


def test_every_digit_is_visible_at_frame_zero(test_videos):
    max_hidden = V.VideoConfig().max_hidden
    for v in test_videos:
        for k, (row, side) in enumerate(zip(v.rows, v.sides)):
            full = int((digit_alpha(int(row), int(side)) >= 0.5).sum())
            assert (v.instances[0] == k + 1).sum() >= (1 - max_hidden) * full


def test_grey_frames_match_pil_bit_for_bit():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    frames[0, 0, :8] = [
        [0, 0, 0],
        [255, 255, 255],
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [1, 1, 1],
        [128] * 3,
        [7, 9, 250],
    ]
    grey = V.grey_frames(frames)
    assert grey.shape == (4, 64, 64) and grey.dtype == np.uint8
    for frame, g in zip(frames, grey):
        assert np.array_equal(g, np.asarray(Image.fromarray(frame).convert("L")))
    assert np.array_equal(V.grey_frames(frames[1]), grey[1])
    with pytest.raises(ValueError, match="uint8"):
        V.grey_frames(frames.astype(np.float32))


def test_in_memory_videos_validate_their_tensors():
    frames = torch.zeros(2, 4, 3, 16, 16, dtype=torch.uint8)
    instances = torch.zeros(2, 4, 16, 16, dtype=torch.uint8)
    assert len(V.InMemoryVideos(frames, instances)) == 2
    with pytest.raises(ValueError, match=r"frames must be uint8 \(N, T, 3, H, W\)"):
        V.InMemoryVideos(frames.float(), instances)
    with pytest.raises(ValueError, match=r"frames must be uint8 \(N, T, 3, H, W\)"):
        V.InMemoryVideos(frames[:, :, :1], instances)
    with pytest.raises(ValueError, match="instances must be uint8"):
        V.InMemoryVideos(frames, instances[:, :3])
    with pytest.raises(ValueError, match="instances must be uint8"):
        V.InMemoryVideos(frames, instances.long())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 8}, "size 8 must be >= 16"),
        ({"frames": 1}, "frames 1 must be >= 2"),
        ({"min_digits": 3, "max_digits": 2}, "min_digits <= max_digits"),
        ({"min_digits": 0}, "1 <= min_digits"),
        ({"scale": (1.0, 0.5)}, r"scale \(1.0, 0.5\) must be \(low, high\)"),
        ({"speed": (-1.0, 2.0)}, "speed .* pixels per frame"),
        ({"max_hidden": 1.0}, r"max_hidden 1.0 must be in \[0, 1\)"),
        ({"attempts": 0}, "attempts 0 must be >= 1"),
        ({"min_contrast": -0.1}, r"min_contrast -0.1 must be in \[0, 1\]"),
        ({"backgrounds": ("stripes",)}, "must be some of"),
        ({"backgrounds": ()}, "must be some of"),
    ],
)
def test_video_config_says_what_it_expected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        V.VideoConfig(**kwargs)


def test_load_dataset_and_its_picture():
    splits = data.load_dataset("digit_videos")
    assert splits.name == "digit_videos" and splits.val is None
    assert splits.input_size == (1, 48, 48) and len(splits.train) == 2000 and len(splits.test) == 200
    assert splits.labels == ("background", "digit 1", "digit 2", "digit 3")
    assert len(splits.mean) == len(splits.std) == 1 and 0 < splits.std[0] < splits.mean[0] < 1
    assert splits.split == data.get_dataset_info("digit_videos").split
    assert splits.extra["config"] == asdict(V.VideoConfig())
    assert splits.extra["frames"] == 12 and splits.extra["seed"] == 0
    assert "digit_videos" in data.list_datasets(target="instances")
    assert isinstance(data.VideoConfig(), V.VideoConfig) and data.DigitVideos is V.DigitVideos
    picture = dataset_picture("digit_videos", "test", 2)
    # Two videos of three rows (frames, grey, overlay), 12 frames each, enlarged twice, 2 px gaps.
    assert picture.dtype == torch.uint8 and picture.shape == (3, 6 * 96 + 5 * 2, 12 * 96 + 11 * 2)


def test_video_strip_and_overlay_shapes(test_videos):
    v = test_videos[0]
    grey = V.grey_frames(v.frames)
    strip = video_strip([v.frames, grey], every=3, gap=1, scale=2)
    assert strip.shape == (2 * 96 + 1, 4 * 96 + 3 * 1, 3) and strip.dtype == np.uint8
    assert (strip[96] == 255).all(), "a white separator between rows"
    assert np.array_equal(strip[:2, :2], np.broadcast_to(v.frames[0, 0, 0], (2, 2, 3))), "nearest neighbour"
    assert np.array_equal(strip[96 + 1, 0], np.repeat(grey[0, 0, 0], 3)), "grey rows shown as RGB"
    short = video_strip([v.frames, v.frames[:2]], scale=1, gap=0)
    assert short.shape == (96, 12 * 48, 3) and (short[48:, 96:] == 255).all()
    overlay = overlay_instances(v.frames, v.instances)
    assert overlay.shape == v.frames.shape and overlay.dtype == np.uint8
    assert np.array_equal(overlay[v.instances == 0], v.frames[v.instances == 0]), "background untouched"
    square = np.zeros((1, 8, 8), np.uint8)
    square[0, 2:6, 2:6] = 1
    tinted = overlay_instances(np.zeros((1, 8, 8, 3), np.uint8), square, alpha=0.5)
    assert tuple(tinted[0, 2, 2]) == (230, 25, 75), "id 1's boundary is opaque red"
    assert tuple(tinted[0, 3, 3]) == (115, 12, 38), "its inside is tinted by alpha"
    with pytest.raises(ValueError, match="uint8"):
        video_strip([v.frames.astype(np.float32)])
