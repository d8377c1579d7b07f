"""Mask propagation (numpy, shared by PyTorch evaluation and the torch-free runtime) against the training
attention in torch, and its metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.losses import copy_attention
from zoo.metrics import PropagatedMaskIoU
from zoo.tasks import get_task
from zoo.tasks.mask_propagation import (
    copy_first_frame,
    first_frame_labels,
    grey,
    propagate_labels,
    propagate_masks,
    raw_pixel_embeddings,
    upsample_labels,
)


def moving_squares(frames: int = 6, size: int = 24) -> np.ndarray:
    """Two squares moving right and down: instance maps (T, H, W)."""
    video = np.zeros((frames, size, size), np.uint8)
    for t in range(frames):
        video[t, 2 + t : 8 + t, 2 + 2 * t : 8 + 2 * t] = 1
        video[t, 14:20, 3 + t : 11 + t] = 2
    return video


def oracle_embeddings(instances: np.ndarray, stride: int, scale: float = 30.0) -> np.ndarray:
    """A perfect tracker's embeddings: each cell's instance one-hot, scaled (sharp attention)."""
    num = int(instances.max()) + 1
    h, w = -(-instances.shape[1] // stride), -(-instances.shape[2] // stride)
    cells = np.stack([first_frame_labels(frame, num, stride, (h, w)) for frame in instances])
    return scale * cells


def test_propagation_is_the_training_attention():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(2, 8, 5, 6)).astype(np.float32)
    first = rng.random((3, 5, 6)).astype(np.float32)
    for topk in (0, 4):
        ours = propagate_labels(emb, first, temperature=0.5, topk=topk)
        flat = torch.from_numpy(emb).flatten(2)
        weights = copy_attention(flat[:1], flat[1:], temperature=0.5, topk=topk)[0].numpy()  # (P, Q)
        expected = first.reshape(3, -1) @ weights
        np.testing.assert_allclose(ours[1].reshape(3, -1), expected, atol=1e-5)
        np.testing.assert_array_equal(ours[0], first)
        if topk:
            assert ((weights > 0).sum(0) == topk).all()


def test_later_frames_use_the_first_and_previous_frames():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(4, 4, 3, 3)).astype(np.float32)
    first = rng.random((2, 3, 3)).astype(np.float32)
    out = propagate_labels(emb, first, previous=1)
    flat = torch.from_numpy(emb).flatten(2)
    keys = torch.cat([flat[0], flat[2]], dim=1)[None]  # frame 3's references: frames 0 and 2
    weights = copy_attention(keys, flat[3:4])[0].numpy()
    values = np.concatenate([first.reshape(2, -1), out[2].reshape(2, -1)], axis=1)
    np.testing.assert_allclose(out[3].reshape(2, -1), values @ weights, atol=1e-5)


def test_upsample_is_bilinear_with_half_pixel_centres():
    x = torch.rand(2, 3, 7, 5)
    for size in ((14, 10), (13, 11), (7, 5)):
        expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False).numpy()
        np.testing.assert_allclose(upsample_labels(x.numpy(), size), expected, atol=1e-5)


def test_first_frame_labels_are_cell_shares():
    instances = np.zeros((5, 6), np.uint8)
    instances[:2, :2] = 1  # one whole cell of instance 1
    instances[4, 5] = 2  # a padded border cell: replicated rows make it half instance 2
    labels = first_frame_labels(instances, 3, 2, (3, 3))
    np.testing.assert_allclose(labels.sum(0), 1.0)
    assert labels[1, 0, 0] == 1.0 and labels[2, 2, 2] == 0.5


def test_a_perfect_tracker_propagates_masks_exactly_and_copying_does_not():
    video = moving_squares()
    predicted = propagate_masks(oracle_embeddings(video, 1), video[0], stride=1)
    np.testing.assert_array_equal(predicted, video)
    tracker, copier = (PropagatedMaskIoU(len(video), lambda e, f: None) for _ in range(2))
    tracker.add_video(predicted, video)
    copier.add_video(copy_first_frame(video), video)
    assert tracker.compute()["propagation_iou"] == 1.0
    copied = copier.compute()
    assert copied["propagation_iou"] < 0.7 and copied["propagation_iou_last"] < copied["propagation_iou"]


def test_metric_regroups_frames_across_batches():
    video = moving_squares(frames=5)
    videos = np.concatenate([video, video[:, ::-1]])  # two videos of 5 frames, in video order
    emb = np.concatenate([oracle_embeddings(video, 2), oracle_embeddings(video[:, ::-1].copy(), 2)])

    def score(batches):
        metric = PropagatedMaskIoU(5, lambda e, first: propagate_masks(e, first, stride=2))
        for start, stop in batches:
            metric.update(torch.from_numpy(emb[start:stop]), torch.from_numpy(videos[start:stop]))
        return metric

    whole = score([(0, 10)]).compute()
    assert whole == score([(0, 3), (3, 7), (7, 10)]).compute()
    assert 0.5 < whole["propagation_iou"] <= 1.0
    metric = score([(0, 7)])
    with pytest.raises(ValueError, match="2 frames of an unfinished video"):
        metric.compute()
    assert len(metric.per_frame()) == 5 and np.isnan(metric.per_frame()[0])


def test_hidden_instances_are_not_scored():
    video = moving_squares(frames=3)
    video[2][video[2] == 2] = 0  # instance 2 leaves the last frame
    metric = PropagatedMaskIoU(3, lambda e, f: None)
    metric.add_video(video, video)
    assert metric.count.tolist() == [0, 2, 1]


def test_raw_pixel_embeddings_are_unit_patches():
    frames = np.random.default_rng(0).random((2, 10, 12)).astype(np.float32)
    feats = raw_pixel_embeddings(frames, stride=2)
    assert feats.shape == (2, 9, 5, 6)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(feats.sum(1), 0.0, atol=1e-5)


class _Meta:
    input_size = (1, 24, 24)
    mean, std = (0.5,), (0.25,)
    embed_stride = 1
    propagation = {"temperature": 1.0}
    size_multiple = None


def test_task_preprocesses_rgb_frames_to_grey_and_tracks():
    from PIL import Image

    task = get_task("mask-propagation")
    rgb = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    x = task.preprocess(rgb, _Meta)
    want = (np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 255 - 0.5) / 0.25
    assert x.shape == (1, 1, 24, 24)
    np.testing.assert_allclose(x[0, 0], want, atol=1e-6)
    np.testing.assert_array_equal(grey(rgb[..., :1]), rgb[..., 0])

    video = moving_squares(frames=4)
    frames = np.repeat(video[..., None] * 80, 3, axis=3).astype(np.uint8)
    oracle = oracle_embeddings(video, 1)
    calls = []

    def run(inputs):  # stands for either runtime's network: the oracle's embeddings of the frames
        calls.append(inputs.shape)
        return {"embeddings": oracle}

    masks = task.propagate(run, _Meta, frames, video[0])
    assert calls == [(4, 1, 24, 24)]
    np.testing.assert_array_equal(masks, video)
    with pytest.raises(ValueError, match="first-frame instance map"):
        task.propagate(run, _Meta, frames, video[0, :10])
    with pytest.raises(ValueError, match="uint8 RGB frame"):
        grey(rgb.astype(np.float32))
