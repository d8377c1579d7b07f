"""Scribbles: reproducible by (seed, split, i) from their own generator, about 3% of pixels, always right,
one stroke per visible digit, and the scenes themselves unchanged by drawing them."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy.ndimage import label as connected_components

from zoo.data import scenes as S
from zoo.data.scribbles import (
    UNLABELLED,
    ScribbleConfig,
    labelled_fraction,
    propagate_scribbles,
    scene_scribbles,
    skeleton_stroke,
)
from zoo.errors import ConfigError

N = 120  # scenes per check, as tests/data/test_scenes.py
EIGHT = np.ones((3, 3), bool)  # 8-connectivity: a stroke's diagonal steps keep it one piece


@pytest.fixture(scope="module")
def train_scribbles() -> tuple[list[S.Scene], np.ndarray]:
    data = S.DigitScenes("train", N, scribbles=True)
    scenes = [data.scene(i) for i in range(N)]
    return scenes, np.stack([data.scribble_map(i, s) for i, s in enumerate(scenes)])


def test_scribbles_are_a_pure_function_of_seed_split_and_index(train_scribbles):
    scenes, maps = train_scribbles
    again = S.DigitScenes("train", N, scribbles=True)
    assert np.array_equal(again.scribble_map(37), maps[37])
    assert np.array_equal(scene_scribbles(scenes[5], 0, "train", 5), maps[5])
    assert not np.array_equal(scene_scribbles(scenes[5], 1, "train", 5), maps[5]), "seed changes the strokes"
    shifted = S.DigitScenes("train", 10, start=5, scribbles=True)
    assert np.array_equal(shifted.scribble_map(0), maps[5]), "start offsets the index, as for scenes"


def test_about_three_percent_of_pixels_are_labelled(train_scribbles):
    _, maps = train_scribbles
    assert 0.02 <= labelled_fraction(maps) <= 0.04
    per_scene = (maps != UNLABELLED).mean(axis=(1, 2))
    assert per_scene.min() > 0, "every scene gets strokes"
    assert (maps == 0).any() and ((maps != UNLABELLED) & (maps > 0)).any()


def test_every_scribbled_pixel_agrees_with_the_semantic_map(train_scribbles):
    scenes, maps = train_scribbles
    for scene, scribbles in zip(scenes, maps):
        drawn = scribbles != UNLABELLED
        assert np.array_equal(scribbles[drawn], scene.semantic[drawn])


def test_one_stroke_per_visible_digit(train_scribbles):
    scenes, maps = train_scribbles
    for scene, scribbles in zip(scenes, maps):
        for mask, label in zip(scene.masks, scene.labels):
            stroke = mask & (scribbles == label)
            _, pieces = connected_components(stroke, EIGHT)
            assert pieces == 1, f"a visible digit {label - 1} got {pieces} strokes"


def test_background_strokes_keep_away_from_digits(train_scribbles):
    from scipy.ndimage import distance_transform_edt

    scenes, maps = train_scribbles
    margin = ScribbleConfig().margin
    for scene, scribbles in zip(scenes, maps):
        if len(scene.masks):
            distance = distance_transform_edt(~scene.masks.any(0))
            assert (distance[scribbles == 0] >= margin).all()


def test_skeleton_stroke_is_a_contiguous_walk_inside_the_mask():
    from skimage.morphology import skeletonize

    mask = np.zeros((20, 20), bool)
    mask[4:16, 8:11] = True  # a bar: its skeleton is a vertical line of about 12 pixels
    stroke = skeleton_stroke(mask, 0.5, np.random.default_rng(0))
    assert (stroke <= skeletonize(mask)).all() and (stroke <= mask).all()
    assert connected_components(stroke, EIGHT)[1] == 1
    assert abs(int(stroke.sum()) - round(0.5 * skeletonize(mask).sum())) <= 1
    assert not skeleton_stroke(np.zeros((8, 8), bool), 0.5, np.random.default_rng(0)).any()


# sha256 of (image, semantic, masks) of scenes 0..29, rendered by the code before scribbles existed
# (commit 9420883): drawing scribbles takes nothing from the scenes' generator.
BEFORE_SCRIBBLES = {
    "train": "c6c1a092f461df4a60343750f22c3ba5bdea434cfa496a1698d79c77743fe578",
    "test": "b9081957d05abc5262ecd1de1ec8ea1a82555b38f7e821f1e6089238aa252a85",
}


@pytest.mark.parametrize("split", sorted(BEFORE_SCRIBBLES))
def test_scenes_render_bit_for_bit_as_before_scribbles(split):
    digest = hashlib.sha256()
    data = S.DigitScenes(split, 30, scribbles=True)
    for i in range(30):
        scene = data.scene(i)
        data.scribble_map(i, scene)  # drawn between scenes: the next scene must not notice
        for array in (scene.image, scene.semantic, scene.masks):
            digest.update(array.tobytes())
    assert digest.hexdigest() == BEFORE_SCRIBBLES[split]


def test_dataset_targets_and_memory_carry_scribbles():
    plain, drawn = S.DigitScenes("test", 4), S.DigitScenes("test", 4, scribbles=True)
    image, target = drawn[2]
    assert "scribbles" not in plain[2][1] and torch.equal(plain[2][0], image)
    assert target["scribbles"].dtype == torch.int64 and target["scribbles"].shape == (64, 64)
    memory = drawn.to_memory()
    assert plain.to_memory().scribbles is None
    assert memory.scribbles.dtype == torch.uint8
    assert torch.equal(memory.scribbles[2].long(), target["scribbles"])
    assert torch.equal(memory.subset(torch.tensor([2])).scribbles[0], memory.scribbles[2])
    with pytest.raises(ValueError, match="scribbles"):
        S.InMemoryScenes(memory.images, memory.semantic, None, memory.scribbles[:, :8])


def test_config_errors_say_what_is_expected():
    with pytest.raises(ConfigError, match="digit_cover"):
        ScribbleConfig(digit_cover=(0.5, 0.2))
    with pytest.raises(ConfigError, match="background_strokes"):
        ScribbleConfig(background_strokes=(3, 1))
    with pytest.raises(ConfigError, match="margin"):
        ScribbleConfig(margin=-1)


# ---------------------------------------------------------------------------------- propagation by colour
def test_propagation_spreads_each_stroke_over_its_colour_and_abstains_where_votes_split():
    # Two flat colours: red (left half) scribbled as digit 3 in one pixel, blue (right) as background in two.
    image = torch.zeros(1, 3, 4, 6, dtype=torch.uint8)
    image[0, 0, :, :3] = 200
    image[0, 2, :, 3:] = 200
    image[0, :, 0, 0] = 190  # a slightly different red: still nearer the red stroke than any blue
    scribbles = torch.full((1, 4, 6), UNLABELLED, dtype=torch.uint8)
    scribbles[0, 1, 1] = 4
    scribbles[0, 2, 4] = scribbles[0, 3, 5] = 0
    one = propagate_scribbles(image, scribbles, k=1)[0]
    assert (one[:, :3] == 4).all() and (one[:, 3:] == 0).all()
    # k = 2: a red pixel's two nearest strokes are the red one and a blue one: no unanimous vote, so
    # unlabelled; blue pixels have two blue strokes; the scribbled pixels keep their labels whatever the vote.
    two = propagate_scribbles(image, scribbles, k=2)[0]
    assert (two[:, 3:] == 0).all() and two[1, 1] == 4
    assert (two[:, :3] == UNLABELLED).sum() == 11
    # Fewer strokes than k: nothing to vote with, the scribbles come back as drawn.
    assert torch.equal(propagate_scribbles(image, scribbles, k=5), scribbles)


def test_propagation_on_scenes_labels_most_pixels_and_rarely_wrongly(train_scribbles):
    scenes, maps = train_scribbles
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in scenes])
    semantic = np.stack([s.semantic for s in scenes])
    spread = propagate_scribbles(images, torch.from_numpy(maps), k=10).numpy()
    drawn = maps != UNLABELLED
    assert (spread[drawn] == maps[drawn]).all()
    labelled = spread != UNLABELLED
    # The docstring's numbers (300 scenes: 94% labelled, 99.6% right), on this fixture's 120 scenes.
    assert labelled.mean() > 0.9 and (spread[labelled] == semantic[labelled]).mean() > 0.99
    # The digits' own pixels: on average three quarters labelled as that digit (measured 0.75; the rest,
    # mostly anti-aliased edges, unlabelled), hardly any as something else (no digit swallowed whole).
    own, wrong = [], []
    for scene, labels in zip(scenes, spread):
        for mask, label in zip(scene.masks, scene.labels):
            own.append((labels[mask] == label).mean())
            wrong.append(((labels[mask] != label) & (labels[mask] != UNLABELLED)).mean())
    assert np.mean(own) > 0.7 and np.mean(wrong) < 0.02
    # The vote's digits are fat: of the pixels it gives a digit and no stroke did, 92% are digit (docstring);
    # unmixing keeps the right ones and labels the split votes too: every pixel, 99.3% right (docstring).
    only = (spread != UNLABELLED) & ~drawn & (spread > 0)
    assert 0.88 < (semantic[only] > 0).mean() < 0.95
    unmixed = propagate_scribbles(images, torch.from_numpy(maps), k=10, object_share=0.5).numpy()
    assert (unmixed != UNLABELLED).all() and (unmixed == semantic).mean() > 0.99
    assert (unmixed[drawn] == maps[drawn]).all()
    # A float image in [0, 1] is the same colour space.
    assert np.array_equal(
        propagate_scribbles(images[:4].float() / 255, torch.from_numpy(maps[:4]), 10), spread[:4]
    )


def test_object_share_gives_blended_edges_to_the_background():
    # A grey background (100), a white digit (250) scribbled at its core, and a pen pixel on its blended edge
    # (220); edge blends of 170 (47% digit) and 190 (60%) go to the digit by the vote alone (the pen's 220 is
    # their nearest stroke colour), and by colour share only the 190 one stays.
    image = torch.full((1, 3, 3, 6), 100, dtype=torch.uint8)
    image[0, :, 0, :3] = 250
    image[0, :, 0, 3] = 220
    image[0, :, 1, 0], image[0, :, 1, 1] = 170, 190
    scribbles = torch.full((1, 3, 6), UNLABELLED, dtype=torch.uint8)
    scribbles[0, 0, :4] = 5
    scribbles[0, 2, :] = 0
    vote = propagate_scribbles(image, scribbles, k=1)[0]
    assert vote[1, 0] == vote[1, 1] == 5
    unmixed = propagate_scribbles(image, scribbles, k=1, object_share=0.5)[0]
    # The digit's colour is its strokes' median (250, not the pen's 220): 170 is 0.47 of it, 190 is 0.6.
    assert unmixed[1, 0] == 0 and unmixed[1, 1] == 5
    assert torch.equal(unmixed[vote != 5], vote[vote != 5]) and torch.equal(unmixed[0], vote[0])
    # The scribbled pixels keep their labels, whatever their colour.
    assert propagate_scribbles(image, scribbles, k=1, object_share=0.99)[0, 0, 3] == 5
    # k = 2: the 170 pixel's two nearest strokes split (the pen's 220, then the background's 100), so the
    # vote leaves it unlabelled; unmixing gives it to its nearest object stroke's digit or to the background.
    assert propagate_scribbles(image, scribbles, k=2)[0, 1, 0] == UNLABELLED
    assert propagate_scribbles(image, scribbles, k=2, object_share=0.5)[0, 1, 0] == 0
    filled = propagate_scribbles(image, scribbles, k=2, object_share=0.4)[0]
    assert filled[1, 0] == 5 and (filled != UNLABELLED).all()


def test_propagation_errors_say_what_is_expected():
    images, maps = torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.uint8)
    with pytest.raises(ConfigError, match="at least one"):
        propagate_scribbles(images, maps, k=0)
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        propagate_scribbles(images, maps[:1])
    with pytest.raises(ConfigError, match=r"object_share=1.0 must be in \[0, 1\)"):
        propagate_scribbles(images, maps, object_share=1.0)
