"""Mask propagation: per-pixel embeddings that carry a video's first-frame masks (or colours) to later frames.

A weight of this task embeds grey frames, ``(N, 1, H, W)`` -> ``(N, D, H/s, W/s)`` (``embed_stride`` s). It is
judged with no fine-tuning, as `Vondrick et al. 2018 <https://arxiv.org/abs/1806.09594>`_ judge colorization
features: give the first frame's instance masks, copy them to every later frame with the embedding's
attention (`propagate_labels`: the training loss's copy, `zoo.losses.copy_attention`, in numpy), and
score the propagated masks against the video's ground truth (`zoo.metrics.PropagatedMaskIoU`: mean IoU
over the frames after the first and the instances visible in them).

Everything here is numpy, so the torch-free runtime propagates exactly as PyTorch evaluation does:
``OnnxModel.propagate(frames, first_mask)`` runs the exported embedder on the frames and calls `propagate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import Task, WeightField

__all__ = [
    "DEFAULT_PROPAGATION",
    "MaskPropagation",
    "copy_first_frame",
    "first_frame_labels",
    "grey",
    "propagate_labels",
    "propagate_masks",
    "raw_pixel_embeddings",
    "upsample_labels",
]

# How labels are copied at test time, unless a weight records otherwise: the training attention itself
# (temperature 1, every reference position), from the first frame and the previous frame's propagation.
DEFAULT_PROPAGATION = {"temperature": 1.0, "topk": 0, "previous": 1}


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (H, W, 1) uint8 -> (H, W) uint8 luminance, as PIL's ``convert("L")`` computes it (the
    digit videos' grey frames are made the same way, so training and inference see the same pixels)."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {image.dtype} {image.shape}")
    return np.asarray(Image.fromarray(image).convert("L"))


def _pool(x: np.ndarray, stride: int, size: tuple[int, int]) -> np.ndarray:
    """Average-pool (..., H, W) by `stride` to (..., h, w), padding the border by replication to h * stride."""
    h, w = size
    pad = [(0, 0)] * (x.ndim - 2) + [(0, h * stride - x.shape[-2]), (0, w * stride - x.shape[-1])]
    x = np.pad(x, [(0, max(0, a)) for _, a in pad], mode="edge")[..., : h * stride, : w * stride]
    return x.reshape(*x.shape[:-2], h, stride, w, stride).mean(axis=(-3, -1))


def first_frame_labels(
    instances: np.ndarray, num_labels: int, stride: int, size: tuple[int, int]
) -> np.ndarray:
    """A frame's instance map (H, W) (0 = background, k = instance k) -> soft labels (num_labels, h, w): the
    share of each embedding cell's pixels that belong to each instance."""
    one_hot = (np.asarray(instances)[None] == np.arange(num_labels)[:, None, None]).astype(np.float32)
    return _pool(one_hot, stride, size).astype(np.float32)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear weights with half-pixel centres (PyTorch's ``align_corners=False``)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.minimum(np.floor(src).astype(int), max(n_in - 2, 0))
    frac = src - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), np.minimum(lo + 1, n_in - 1)] += frac
    return m


def upsample_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., K, h, w) soft labels -> (..., K, H, W), bilinear."""
    rows, cols = _interp_matrix(size[0], labels.shape[-2]), _interp_matrix(size[1], labels.shape[-1])
    return np.matmul(np.matmul(rows, np.asarray(labels, np.float32)), cols.T)


def propagate_labels(
    embeddings: np.ndarray,
    first: np.ndarray,
    *,
    temperature: float = 1.0,
    topk: int = 0,
    previous: int = 1,
) -> np.ndarray:
    """Copy the first frame's soft labels (K, h, w) through a video's embeddings (T, D, h, w) -> (T, K, h, w).

    Frame t's labels are the attention-weighted labels of its references (the first frame's given labels
    and the `previous` frames' own propagated ones): ``y_j = sum_i A_ij y_i`` with ``A`` the training copy
    attention over every reference position i (softmax of ``f_i . f_j / temperature``; ``topk > 0`` keeps
    each target's k best references only). Labels may be instance one-hots (masks) or colours."""
    emb = np.asarray(embeddings, np.float32)
    frames, dim = emb.shape[:2]
    flat = emb.reshape(frames, dim, -1)
    out = [np.asarray(first, np.float32).reshape(len(first), -1)]
    for t in range(1, frames):
        refs = sorted({0, *range(max(1, t - previous), t)})
        keys = np.concatenate([flat[r] for r in refs], axis=1)  # (D, R*P)
        values = np.concatenate([out[r] for r in refs], axis=1)  # (K, R*P)
        scores = keys.T @ flat[t] / temperature  # (R*P, Q)
        if 0 < topk < len(scores):
            kth = np.partition(scores, -topk, axis=0)[-topk]
            scores = np.where(scores >= kth, scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=0, keepdims=True))
        out.append(values @ (scores / scores.sum(axis=0, keepdims=True)))
    return np.stack(out).reshape(frames, len(first), *emb.shape[2:])


def propagate_masks(
    embeddings: np.ndarray, first_instances: np.ndarray, stride: int, **propagation: Any
) -> np.ndarray:
    """The first frame's instance map (H, W) carried through a video's embeddings (T, D, h, w): instance maps
    (T, H, W), frame 0 the one given, later frames the arg-max of the propagated labels at full size."""
    first_instances = np.asarray(first_instances)
    num = int(first_instances.max()) + 1
    labels = first_frame_labels(first_instances, num, stride, embeddings.shape[-2:])
    soft = upsample_labels(propagate_labels(embeddings, labels, **propagation), first_instances.shape)
    masks = soft.argmax(axis=1).astype(first_instances.dtype)
    masks[0] = first_instances
    return masks


def copy_first_frame(instances: np.ndarray) -> np.ndarray:
    """The do-nothing baseline: every frame gets the first frame's instance map (T, H, W)."""
    return np.broadcast_to(instances[:1], instances.shape).copy()


def raw_pixel_embeddings(frames: np.ndarray, stride: int, patch: int = 3) -> np.ndarray:
    """The raw-pixel baseline's "embedding" of grey frames (T, H, W) in [0, 1]: at each cell of the stride grid,
    the patch x patch neighbourhood of average-pooled intensities, centred and scaled to unit length (T, patch
    ** 2, h, w): a dot product then compares local intensity patterns, the most a pixel alone can tell."""
    frames = np.asarray(frames, np.float32)
    size = (-(-frames.shape[-2] // stride), -(-frames.shape[-1] // stride))
    pooled = _pool(frames, stride, size)
    r = patch // 2
    padded = np.pad(pooled, [(0, 0), (r, r), (r, r)], mode="edge")
    shifts = [padded[:, dy : dy + size[0], dx : dx + size[1]] for dy in range(patch) for dx in range(patch)]
    feats = np.stack(shifts, axis=1)
    feats = feats - feats.mean(axis=1, keepdims=True)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-3)


@register_task
class MaskPropagation(Task):
    name = "mask-propagation"
    # The weight is a dense feature extractor; what the features are for is the card's subject.
    pipeline_tag = "image-feature-extraction"
    aliases = ("video-object-segmentation",)
    summary = "per-pixel embeddings that carry a video's first-frame masks (or colours) to later frames"
    weight_fields = (
        WeightField("embed_stride", 2, "input pixels per embedding cell along each side", (int,)),
        WeightField("video_frames", 12, "frames per test video (evaluation groups frames by video)", (int,)),
        WeightField(
            "propagation",
            None,
            "how labels are copied: {'temperature', 'topk', 'previous'} (`propagate_labels`)",
            (dict,),
        ),
    )
    output_names = ("embeddings",)
    outputs_doc = {"embeddings": "(N, D, H/stride, W/stride) per-pixel embeddings of grey frames"}
    headline_metrics = (("propagation_iou", "propagated mask IoU", "{:.1%}"),)

    def propagation(self, meta: Any) -> dict[str, Any]:
        return {**DEFAULT_PROPAGATION, **(getattr(meta, "propagation", None) or {})}

    def preprocess(self, image: np.ndarray, meta: Any, *, invert: bool = False) -> np.ndarray:
        """An RGB (or grey) frame -> the (1, 1, H, W) normalised grey input the embedder was trained on."""
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 3 and meta.input_size and meta.input_size[0] == 1:
            image = grey(image)[..., None]
        return super().preprocess(image, meta, invert=invert)

    def propagate(
        self,
        run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
        meta: Any,
        frames: np.ndarray,
        first_mask: np.ndarray,
        **propagation: Any,
    ) -> np.ndarray:
        """Track: a video's frames (T, H, W, 3) uint8 and its first frame's instance map (H, W) (0 =
        background, 1..K the objects) -> instance maps (T, H, W). `run` is either runtime's network call."""
        frames, first_mask = np.asarray(frames), np.asarray(first_mask)
        if frames.ndim != 4 or frames.shape[0] < 1 or first_mask.shape != frames.shape[1:3]:
            raise ValueError(
                f"expected frames (T, H, W, 3) and a first-frame instance map (H, W) of the same size, got "
                f"{frames.shape} and {first_mask.shape}"
            )
        inputs = np.concatenate([self.preprocess(frame, meta) for frame in frames])
        embeddings = np.asarray(run(inputs)[self.output_names[0]])
        options = {**self.propagation(meta), **propagation}
        return propagate_masks(embeddings, first_mask, int(meta.embed_stride or 1), **options)

    def describe(self, result: Any, source: str, *, out_dir: Path | None = None, **options: Any) -> str:
        value = np.asarray(result["embeddings"] if isinstance(result, Mapping) else result)
        return f"{source}: embeddings {tuple(value.shape)} (propagate masks with OnnxModel.propagate)"

    # ------------------------------------------------------------------------------ evaluation
    def evaluation_data(self, test: Any, count: int, meta: Any) -> tuple[np.ndarray, Any]:
        """The first `count` test videos' frames (count * T, H, W, 3) and instance maps (count * T, H, W), in
        video order (`update_metrics` regroups them by ``video_frames``)."""
        videos = [test.video(i) for i in range(count)]
        return np.concatenate([v.frames for v in videos]), np.concatenate([v.instances for v in videos])

    def metrics(self, meta: Any) -> dict[str, Any]:
        from functools import partial

        from zoo.metrics import PropagatedMaskIoU

        propagate = partial(propagate_masks, stride=int(meta.embed_stride or 1), **self.propagation(meta))
        return {"propagation": PropagatedMaskIoU(int(meta.video_frames), propagate)}

    def update_metrics(
        self, metrics: Mapping[str, Any], outputs: Mapping[str, np.ndarray], targets: Any, meta: Any
    ) -> None:
        embeddings = (
            outputs[self.output_names[0]] if self.output_names[0] in outputs else next(iter(outputs.values()))
        )
        for metric in metrics.values():
            metric.update(np.asarray(embeddings), np.asarray(targets))

    # ------------------------------------------------------------------------------ model card
    def card_sections(self, config: Mapping[str, Any]) -> list[str]:
        """The propagation table (this weight against the baselines on the same videos), then the pictures."""
        w = config.get("weights") or {}
        rows = {f"**{w.get('arch')}.{w.get('tag')}**": w.get("metrics") or {}, **(w.get("baselines") or {})}
        lines = []
        if any("propagation_iou" in m for m in rows.values()):
            lines += [
                "## Mask propagation on the test videos",
                "",
                "The first frame's instance masks are given; every later frame's are copied with the "
                "embedding's attention (no fine-tuning). Mean IoU over the frames after the first and the "
                "instances visible in them, and on the last frame alone.",
                "",
                "| method | mean IoU | last frame IoU |",
                "|---|---|---|",
            ]
            for name, m in rows.items():
                if "propagation_iou" in m:
                    last = m.get("propagation_iou_last")
                    lines.append(
                        f"| {name} | {m['propagation_iou']:.1%} | {'-' if last is None else f'{last:.1%}'} |"
                    )
            lines.append("")
        return lines + super().card_sections(config)
