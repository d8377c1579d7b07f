"""Torch-free helpers for exported detectors and instance segmenters: matching, and dense-map grouping.

Two jobs, both in numpy so that `export.runtime` (which never imports torch) can run them:

- **Agreement** (`match_detections`, `detection_agreement`): does onnxruntime find the same objects as
  PyTorch? Detections above the weight's ``score_thresh`` are matched one to one, greedily from the highest
  score, to an unmatched detection of the same label with the largest IoU; the two runtimes agree when every
  detection is matched with IoU >= 0.99 and scores within 1e-3 (and, for instance models, masks equal on
  >= 99.9% of pixels). Matching instead of pairing in score order matters: two detections whose scores
  differ by 1e-7 may come out in either order from the two runtimes, which is the same answer. A detection
  whose score lies within the score tolerance of the threshold (or of the lowest kept score of a list cut
  at ``detections_per_img``) may be found by one runtime only (fp32 noise moves it across); it is counted
  as ``borderline``, not as a disagreement. So is an NMS tie: two proposals of one object whose scores agree
  within the tolerance but whose boxes differ (IoU below 0.99, above NMS's `NMS_TIE_IOU`); NMS keeps one, and
  fp32 noise decides which, so each runtime may keep the other (found on maskrcnn_resnet8_small.scenes: one
  digit of the first 100 test scenes, two boxes at IoU ~0.9, both scored 0.9994).
- **Grouping** (`decode_dense`): a proposal-free instance segmenter exports only its dense network; its
  instances are recovered here by `zoo.tasks.instance_grouping` (the same code its PyTorch ``forward``
  runs), giving the task's outputs (``boxes``, ``scores``, ``labels``, ``masks`` (N, 1, H, W)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoo.tasks.base import Agreement
from zoo.tasks.detection import Detections, box_iou

__all__ = [
    "BOX_IOU",
    "MASK_AGREEMENT",
    "SCORE_ATOL",
    "decode_dense",
    "detection_agreement",
    "match_detections",
    "merge_agreements",
]

# The task-level bounds: same boxes (IoU), same confidence, same masks.
BOX_IOU = 0.99
SCORE_ATOL = 1e-3
MASK_AGREEMENT = 0.999
NMS_TIE_IOU = 0.5  # torchvision's box_nms_thresh: boxes this close are rivals only one of which NMS keeps


def match_detections(
    want: Detections,
    got: Detections,
    *,
    score_thresh: float = 0.0,
    detections_per_img: int | None = None,
    min_iou: float = BOX_IOU,
    score_atol: float = SCORE_ATOL,
    mask_agreement: float = MASK_AGREEMENT,
) -> Agreement:
    """One-to-one matching of two runtimes' detections of one image (see the module docstring).

    A list cut at ``detections_per_img`` has a second threshold: its lowest kept score. A detection within
    `score_atol` of it may be kept by one runtime only, and counts as borderline too.
    """
    iou = box_iou(want.boxes, got.boxes) if len(want) and len(got) else np.zeros((len(want), len(got)))
    same_label = want.labels[:, None] == got.labels[None, :]
    iou = np.where(same_label, iou, -1.0)
    taken = np.zeros(len(got), bool)
    pairs: list[tuple[int, int]] = []
    unmatched_want: list[int] = []
    for i in np.argsort(-want.scores, kind="stable"):
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates)) if len(got) else -1
        if j >= 0 and candidates[j] >= min_iou:
            taken[j] = True
            pairs.append((int(i), j))
        else:
            unmatched_want.append(int(i))
    unmatched_got = list(np.flatnonzero(~taken))
    # NMS ties: an unmatched detection of each runtime, same label, same score within the tolerance, boxes
    # overlapping as NMS rivals do: the same object, kept through a different proposal.
    ties = 0
    for i in list(unmatched_want):
        for j in unmatched_got:
            rival = NMS_TIE_IOU <= iou[i, j] < min_iou
            if rival and abs(float(want.scores[i]) - float(got.scores[j])) <= score_atol:
                unmatched_want.remove(i)
                unmatched_got.remove(j)
                ties += 1
                break

    cuts = [score_thresh]
    for found in (want, got):
        if detections_per_img and len(found) >= detections_per_img:
            cuts.append(float(found.scores.min()))

    def borderline(scores: np.ndarray) -> bool:
        near = [np.abs(scores - cut) <= score_atol for cut in cuts]
        return bool(np.all(np.logical_or.reduce(near)))

    values = {
        "count_expected": float(len(want)),
        "count_actual": float(len(got)),
        "matched": float(len(pairs)),
    }
    notes: list[str] = []
    lost = want.scores[unmatched_want] if unmatched_want else np.zeros(0)
    extra = got.scores[np.asarray(unmatched_got, np.int64)]
    values["borderline"] = float(len(lost) + len(extra) + 2 * ties)
    ok = borderline(lost) and borderline(extra)
    if not ok:
        notes.append(
            f"{len(lost)} PyTorch and {len(extra)} onnxruntime detections have no match with IoU >= {min_iou} "
            "and the same label"
        )
    if pairs:
        a, b = np.array(pairs).T
        values["min_box_iou"] = float(iou[a, b].min())
        values["max_score_diff"] = float(np.abs(want.scores[a] - got.scores[b]).max())
        if values["max_score_diff"] > score_atol:
            ok = False
            notes.append(f"scores differ by more than {score_atol}")
        if want.masks is not None and got.masks is not None:
            values["mask_agreement"] = float((want.masks[a] == got.masks[b]).mean())
            if values["mask_agreement"] < mask_agreement:
                ok = False
                notes.append(f"masks agree on fewer than {mask_agreement:.1%} of pixels")
    return Agreement(ok, values, "; ".join(notes))


def detection_agreement(
    expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], meta: Any, **_: Any
) -> Agreement:
    """`match_detections` on one image's named outputs (the task's), above the weight's ``score_thresh``.

    Takes (and ignores) the ``atol``/``rtol`` that float-parity checks take, so it can stand in for
    `zoo.tasks.Task.agreement` in a `export.adapters.GraphSpec`.
    """
    task = meta.task_object
    (want,) = task.postprocess(expected, meta)
    (got,) = task.postprocess(actual, meta)
    return match_detections(
        want,
        got,
        score_thresh=float(getattr(meta, "score_thresh", 0.0)),
        detections_per_img=int(getattr(meta, "detections_per_img", 0) or 0) or None,
    )


def merge_agreements(agreements: Sequence[Agreement]) -> Agreement:
    """Many images' agreements as one: ok when all are; counts summed, worst IoU/score/mask kept."""
    values: dict[str, float] = {"images": float(len(agreements))}
    for a in agreements:
        for key, value in a.values.items():
            if key.startswith(("count", "matched", "borderline")):
                values[key] = values.get(key, 0.0) + value
            elif key == "max_score_diff":
                values[key] = max(values.get(key, 0.0), value)
            else:  # min_box_iou, mask_agreement: the worst image
                values[key] = min(values.get(key, 1.0), value)
    bad = [i for i, a in enumerate(agreements) if not a.ok]
    note = f"images {bad[:10]} disagree: {agreements[bad[0]].note}" if bad else ""
    return Agreement(not bad, values, note)


def decode_dense(
    outputs: Mapping[str, np.ndarray], grouping: Mapping[str, Any]
) -> list[dict[str, np.ndarray]]:
    """A proposal-free segmenter's dense maps (batch first) -> the task's outputs, one dict per image.

    `grouping` is ``{"method": ..., **settings}`` of `zoo.tasks.instance_grouping.group_instances`; an
    exported file records it (``zoo.grouping``, written by `export.adapters.proposal_free`), so the
    runtime groups exactly as the exported model did.
    """
    from zoo.tasks.instance_grouping import group_instances

    settings = dict(grouping)
    method = settings.pop("method", "centres")
    results = []
    for i in range(len(outputs["semantic"])):
        found = group_instances(
            outputs["semantic"][i],
            outputs["centre"][i, 0],
            outputs["offset"][i],
            outputs["boundary"][i, 0],
            method,
            **settings,
        )
        results.append(
            {
                "boxes": found.boxes.astype(np.float32),
                "scores": found.scores.astype(np.float32),
                "labels": found.labels.astype(np.int64),
                "masks": found.masks[:, None].astype(np.float32),
            }
        )
    return results
