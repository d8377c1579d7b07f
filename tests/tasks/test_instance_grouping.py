"""The torch-free grouping of proposal-free instance segmentation (`zoo.tasks.instance_grouping`)."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.tasks.instance_grouping import group_instances, instance_boxes

SIZE = 32


def _maps(ids: np.ndarray, labels: dict[int, int], classes: int = 4, sigma: float = 2.0):
    """Perfect dense maps for an instance-id map: one-hot class probabilities, a Gaussian at each
    instance's centre of mass, offsets to it and the touching pixels."""
    h, w = ids.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    probs = np.zeros((classes, h, w), np.float32)
    probs[0] = ids == 0
    centre = np.zeros((h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    for k, label in labels.items():
        mask = ids == k
        probs[label][mask] = 1
        cy, cx = yy[mask].mean(), xx[mask].mean()
        g = np.exp(-((yy - round(cy)) ** 2 + (xx - round(cx)) ** 2) / (2 * sigma**2))
        centre = np.maximum(centre, g)
        offset[0][mask], offset[1][mask] = cy - yy[mask], cx - xx[mask]
    padded = np.pad(ids, 1)
    boundary = np.zeros((h, w), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            other = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            boundary |= (ids > 0) & (other > 0) & (other != ids)
    return probs, centre, offset, boundary.astype(np.float32)


def _touching_pair() -> np.ndarray:
    ids = np.zeros((SIZE, SIZE), np.int64)
    ids[8:20, 4:16] = 1
    ids[8:20, 16:28] = 2  # shares a whole edge with instance 1: one connected component
    return ids


def _as_set(found) -> set[tuple[int, bytes]]:
    return {(int(label), mask.tobytes()) for label, mask in zip(found.labels, found.masks)}


@pytest.mark.parametrize("method", ["centres", "boundaries"])
def test_touching_instances_are_separated(method):
    ids = _touching_pair()
    probs, centre, offset, boundary = _maps(ids, {1: 2, 2: 3})
    found = group_instances(probs, centre, offset, boundary, method)
    assert len(found) == 2
    assert _as_set(found) == {(2, (ids == 1).tobytes()), (3, (ids == 2).tobytes())}
    assert np.allclose(found.scores, 1.0)
    assert found.boxes.tolist() == sorted([[4, 8, 16, 20], [16, 8, 28, 20]], key=found.boxes.tolist().index)


def test_numbering_does_not_matter():
    ids = _touching_pair()
    swapped = np.where(ids == 1, 2, np.where(ids == 2, 1, 0))
    a = group_instances(*_maps(ids, {1: 2, 2: 3}))
    b = group_instances(*_maps(swapped, {2: 2, 1: 3}))
    assert _as_set(a) == _as_set(b)


def test_centres_keep_a_digit_cut_in_two_as_one_instance():
    ids = np.zeros((SIZE, SIZE), np.int64)
    ids[10:14, 2:30] = 1
    ids[4:24, 22:26] = 2  # crosses instance 1 and cuts its visible pixels into two pieces
    probs, centre, offset, boundary = _maps(ids, {1: 1, 2: 2})
    found = group_instances(probs, centre, offset, boundary, "centres")
    assert _as_set(found) == {(1, (ids == 1).tobytes()), (2, (ids == 2).tobytes())}


def test_label_is_the_majority_vote_and_score_the_mean_probability():
    ids = np.zeros((SIZE, SIZE), np.int64)
    ids[4:14, 4:14] = 1  # 100 pixels
    probs, centre, offset, boundary = _maps(ids, {1: 2})
    probs[:, 4:6, 4:14] = 0  # 20 pixels say class 3 with 0.6
    probs[3, 4:6, 4:14], probs[2, 4:6, 4:14] = 0.6, 0.4
    found = group_instances(probs, centre, offset, boundary)
    assert found.labels.tolist() == [2]
    assert found.scores[0] == pytest.approx((80 * 1.0 + 20 * 0.4) / 100)


def test_empty_image_gives_no_instances():
    probs = np.zeros((4, SIZE, SIZE), np.float32)
    probs[0] = 1
    for method in ("centres", "boundaries"):
        found = group_instances(
            probs, np.zeros((SIZE, SIZE)), np.zeros((2, SIZE, SIZE)), np.zeros((SIZE, SIZE)), method
        )
        assert len(found) == 0
        assert found.masks.shape == (0, SIZE, SIZE) and found.boxes.shape == (0, 4)
        assert found.labels.dtype == np.int64


def test_foreground_without_a_centre_falls_back_to_components():
    ids = np.zeros((SIZE, SIZE), np.int64)
    ids[2:8, 2:8], ids[20:26, 20:26] = 1, 2
    probs, _, offset, boundary = _maps(ids, {1: 1, 2: 1})
    found = group_instances(probs, np.zeros((SIZE, SIZE)), offset, boundary, "centres")
    assert len(found) == 2


def test_small_instances_and_low_scores_are_dropped():
    ids = np.zeros((SIZE, SIZE), np.int64)
    ids[2:4, 2:4] = 1  # 4 pixels
    ids[10:20, 10:20] = 2
    probs, centre, offset, boundary = _maps(ids, {1: 1, 2: 2})
    assert len(group_instances(probs, centre, offset, boundary, min_area=8)) == 1
    assert len(group_instances(probs, centre, offset, boundary, min_area=1)) == 2
    assert len(group_instances(probs, centre, offset, boundary, min_area=1, score_thresh=1.01)) == 0


def test_bad_arguments_are_refused():
    probs = np.ones((3, 8, 8), np.float32) / 3
    with pytest.raises(ValueError, match="unknown grouping method"):
        group_instances(probs, method="nearest")
    with pytest.raises(ValueError, match="needs the centre heatmap"):
        group_instances(probs, method="centres")
    with pytest.raises(ValueError, match="needs the boundary map"):
        group_instances(probs, method="boundaries")
    with pytest.raises(ValueError, match="class probabilities"):
        group_instances(np.ones((8, 8)))


def test_instance_boxes_are_tight_pixel_edges():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 1:3, 2:5] = True
    assert instance_boxes(masks).tolist() == [[2, 1, 5, 3], [0, 0, 0, 0]]


@pytest.mark.parametrize("method", ["centres", "boundaries"])
def test_uncertain_digits_are_still_foreground_and_vote_softly(method):
    # Digit pixels whose class is unsure (background 0.4, the rest spread over the digits) are foreground:
    # the digits together outweigh the background. The label is the digit with the most mass over the
    # instance, the score that digit's mean probability there.
    ids = _touching_pair()
    probs, centre, offset, boundary = _maps(ids, {1: 1, 2: 2})
    fg = ids > 0
    probs[:, fg] = np.array([0.4, 0.25, 0.2, 0.15], np.float32)[:, None]
    probs[:, ids == 2] = np.array([0.4, 0.1, 0.15, 0.35], np.float32)[:, None]
    found = group_instances(probs, centre, offset, boundary, method)
    assert len(found) == 2
    masks = {int(lab): m for lab, m in zip(found.labels, found.masks)}
    assert set(masks) == {1, 3}
    assert np.array_equal(masks[1], ids == 1) and np.array_equal(masks[3], ids == 2)
    assert found.scores.tolist() == pytest.approx([0.35, 0.25])
