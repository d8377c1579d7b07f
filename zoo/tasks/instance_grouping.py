"""Instances from dense predictions: the grouping step of proposal-free instance segmentation.

A dense network (`zoo.models.proposal_free`) predicts, at every pixel, the class probabilities (background
and the digits) and an instance cue; this module turns those maps into instances, with numpy and
scikit-image only, so the torch-free ONNX runtime runs exactly the same code as the PyTorch model.

Two cues, two groupings (`group_instances` ``method=``):

- ``"centres"`` (Panoptic-DeepLab, Cheng et al. 2020, https://arxiv.org/abs/1911.10194: "the instance
  centers are predicted ... each pixel is grouped to its closest predicted center using the offset"): a
  heatmap of instance centres and, at every foreground pixel, the offset (dy, dx) to its instance's centre.
  Centres are the heatmap's local maxima above ``centre_thresh``; every foreground pixel joins the centre
  nearest to where its offset points. Pixels of one digit that an occluding digit cuts apart still point
  at one centre, so they stay one instance.
- ``"boundaries"``: the probability that a foreground pixel lies where two instances touch. Foreground
  less those pixels falls apart into one connected component per instance (the seeds); a watershed on the
  boundary map (`skimage.segmentation.watershed`) then hands the boundary pixels back to the seeds.

Foreground is where the digits together outweigh the background (``probs[0] < 0.5``), whichever digit it
is. Either way each instance's label is the digit with the most probability mass over its pixels (a soft
vote) and its score that digit's mean probability there. Instances are returned highest
score first; numbering carries no meaning (COCO evaluation matches by IoU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["METHODS", "Instances", "group_instances", "instance_boxes"]

Method = Literal["centres", "boundaries"]
METHODS: tuple[str, ...] = ("centres", "boundaries")


@dataclass
class Instances:
    """One image's instances, highest score first (torchvision's detection fields, as numpy)."""

    masks: np.ndarray  # (N, H, W) bool, disjoint
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in pixel-edge coordinates (tight around the mask)
    labels: np.ndarray  # (N,) int64 class index, never 0 (background)
    scores: np.ndarray  # (N,) float32 mean probability of the label over the mask

    def __len__(self) -> int:
        return len(self.labels)


def instance_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 tight x1, y1, x2, y2 boxes (the mask spans columns x1..x2-1)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for k, m in enumerate(masks):
        ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if len(ys):
            boxes[k] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def group_instances(
    probs: np.ndarray,
    centre: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    boundary: np.ndarray | None = None,
    method: Method = "centres",
    *,
    centre_thresh: float = 0.2,
    nms_radius: int = 3,
    boundary_thresh: float = 0.5,
    min_area: int = 8,
    score_thresh: float = 0.0,
    max_instances: int = 100,
) -> Instances:
    """Instances of one image from its dense maps.

    `probs` ``(K, H, W)``: class probabilities, class 0 the background. ``"centres"`` needs `centre`
    ``(H, W)`` (heatmap in [0, 1]) and `offset` ``(2, H, W)`` (dy, dx in pixels from each pixel to its
    instance's centre); ``"boundaries"`` needs `boundary` ``(H, W)`` in [0, 1]. ``nms_radius``: a centre
    must be the maximum within this many pixels; ``min_area``: smaller instances (and seeds) are noise.
    """
    if method not in METHODS:
        raise ValueError(f"unknown grouping method {method!r}; expected one of {', '.join(METHODS)}")
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ValueError(f"probs must be (K >= 2, H, W) class probabilities, got shape {probs.shape}")
    # A pixel is foreground when the digits together outweigh the background: which digit it is can stay
    # uncertain (a per-pixel argmax over all classes would then pick the background and cut digits apart).
    foreground = probs[0] < 0.5
    if method == "centres":
        if centre is None or offset is None:
            raise ValueError("method 'centres' needs the centre heatmap and the offsets")
        ids = _group_by_centres(
            foreground,
            np.asarray(centre, np.float32),
            np.asarray(offset, np.float32),
            centre_thresh,
            nms_radius,
        )
    else:
        if boundary is None:
            raise ValueError("method 'boundaries' needs the boundary map")
        ids = _group_by_boundaries(foreground, np.asarray(boundary, np.float32), boundary_thresh, min_area)
    return _instances(ids, probs, min_area, score_thresh, max_instances)


def _group_by_centres(
    foreground: np.ndarray, centre: np.ndarray, offset: np.ndarray, thresh: float, radius: int
) -> np.ndarray:
    """(H, W) int map: 0 background, k the k-th centre's pixels."""
    from scipy.ndimage import maximum_filter

    ids = np.zeros(foreground.shape, np.int64)
    if not foreground.any():
        return ids
    peaks = (centre >= thresh) & (centre == maximum_filter(centre, size=2 * radius + 1, mode="constant"))
    cy, cx = np.nonzero(peaks)
    if len(cy) > 1:
        # Plateaus give several equal maxima side by side: keep the first of any within the radius.
        order = np.argsort(-centre[cy, cx], kind="stable")
        kept: list[int] = []
        for i in order:
            if all((cy[i] - cy[j]) ** 2 + (cx[i] - cx[j]) ** 2 > radius**2 for j in kept):
                kept.append(int(i))
        cy, cx = cy[kept], cx[kept]
    if not len(cy):
        # No centre was found but there is foreground: its connected components are the best guess.
        from skimage.measure import label

        return label(foreground, connectivity=2).astype(np.int64)
    ys, xs = np.nonzero(foreground)
    vy, vx = ys + offset[0, ys, xs], xs + offset[1, ys, xs]  # where each pixel says its centre is
    distance = (vy[:, None] - cy[None]) ** 2 + (vx[:, None] - cx[None]) ** 2
    ids[ys, xs] = distance.argmin(1) + 1
    return ids


def _group_by_boundaries(
    foreground: np.ndarray, boundary: np.ndarray, thresh: float, min_area: int
) -> np.ndarray:
    from skimage.measure import label
    from skimage.segmentation import watershed

    if not foreground.any():
        return np.zeros(foreground.shape, np.int64)
    seeds = label(foreground & (boundary < thresh), connectivity=1)
    if min_area > 1 and seeds.max():
        small = np.bincount(seeds.ravel()) < min_area
        small[0] = False
        seeds[small[seeds]] = 0
        seeds = label(seeds > 0, connectivity=1)
    if not seeds.max():
        return label(foreground, connectivity=2).astype(np.int64)
    # Boundary pixels (and small seeds that were dropped) join the seed the boundary map reaches first.
    return watershed(boundary, markers=seeds, mask=foreground, connectivity=2).astype(np.int64)


def _instances(
    ids: np.ndarray,
    probs: np.ndarray,
    min_area: int,
    score_thresh: float,
    max_instances: int,
) -> Instances:
    height, width = ids.shape
    masks, labels, scores = [], [], []
    for k in range(1, int(ids.max(initial=0)) + 1):
        mask = ids == k
        area = int(mask.sum())
        if area < max(min_area, 1):
            continue
        # A soft vote over the instance's pixels: its digit has the most probability mass there. Its score is
        # that digit's mean probability over them (identity times objectness, so `score_thresh` still cuts
        # weak blobs; a share among the digits alone would never fall below 1 / digits).
        mass = probs[1:, mask].sum(1, dtype=np.float64)
        label = int(mass.argmax()) + 1
        score = float(mass[label - 1]) / area
        if score < score_thresh:
            continue
        masks.append(mask)
        labels.append(label)
        scores.append(score)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")[:max_instances]
    stacked = np.stack(masks)[order] if masks else np.zeros((0, height, width), bool)
    return Instances(
        stacked,
        instance_boxes(stacked),
        np.asarray(labels, np.int64).reshape(-1)[order],
        np.asarray(scores, np.float32).reshape(-1)[order],
    )
