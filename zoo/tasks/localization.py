"""Weakly supervised localisation: boxes from the class activation maps of a classifier trained on tags.

A model of this task (`zoo.models.cam`) outputs ``logits`` (N, K), one independent sigmoid per class (the
image's tags), and ``cams`` (N, K, h, w), its class activation maps. Boxes are computed here, in numpy,
for the PyTorch model and the exported ONNX graph alike (Zhou et al. 2016, section 3: "we use a simple
thresholding technique to segment the heatmap. We first segment the regions of which the value is above
20% of the max value of the CAM. Then we take the bounding box that covers the largest connected
component"):

1. every class whose tag probability is at least the weight's ``score_thresh`` is localised;
2. its map is resized bilinearly to the image (half-pixel centres, as ``F.interpolate(...,
   align_corners=False)``) and scaled to [0, 1] by its own minimum and maximum;
3. pixels at or above ``cam_thresh`` form 8-connected components (``scipy.ndimage.label``); each
   component of at least ``min_area`` pixels gives one box, tight around it in pixel-edge coordinates;
4. a box's score is the tag probability times the component's peak (1 for the component holding the
   map's maximum), so the main component of a class ranks first and a weaker second one (a second
   instance of the digit) follows it;
5. optionally (the weight's ``extra_thresh``), the components at further thresholds join as candidates
   ranked below (``EXTRA_RANK`` x that score), and each class's candidates go through non-maximum
   suppression at ``nms_iou``: the top box, hence CorLoc, is unchanged, and the other scales add the
   right-sized box for some digits (a 16x16 map's blob is too wide for a small digit and too narrow for a
   large one at any one threshold), which raises AP.

``cam_thresh`` is chosen on training images (the recipe sweeps it), never on test images.

Metrics (`metrics`): COCOeval of the boxes (`zoo.metrics.CocoEvaluation`: ``map_50`` is AP50), CorLoc
(`zoo.metrics.CorLoc`) and the tags' own quality (`zoo.metrics.MultiLabelTags`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import DEFAULT_ATOL, DEFAULT_RTOL, Agreement, Task, WeightField

__all__ = [
    "Localization",
    "WeaklySupervisedLocalization",
    "boxes_from_cams",
    "category_ids",
    "heat_colours",
    "map_components",
    "nms_order",
    "normalise_maps",
    "picture_caption",
    "picture_row",
    "resize_bilinear",
    "sigmoid",
]


@dataclass
class Localization:
    """One image's answer: the tag probabilities, the boxes found in the maps, and the maps themselves."""

    probs: np.ndarray  # (K,) sigmoid of each class's logit
    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2 in source-image pixels, highest score first
    scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) int64 class indices into `names`
    heatmaps: np.ndarray  # (K, H, W) float32 maps at the source image's size, each scaled to [0, 1]
    names: tuple[str, ...] = ()
    tag_thresh: float = 0.5

    def __len__(self) -> int:
        return len(self.scores)

    def label(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else str(index)

    @property
    def tags(self) -> list[int]:
        """Class indices predicted present (probability >= ``tag_thresh``), most probable first."""
        order = np.argsort(-self.probs, kind="stable")
        return [int(k) for k in order if self.probs[k] >= self.tag_thresh]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    e = np.exp(x[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def _linear_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix of 1-d linear interpolation with half-pixel centres, edges clamped."""
    centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    centres = np.clip(centres, 0, n_in - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    frac = centres - low
    weights = np.zeros((n_out, n_in))
    weights[np.arange(n_out), low] += 1 - frac
    weights[np.arange(n_out), high] += frac
    return weights


def resize_bilinear(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize (..., h, w) maps to ``size`` (H, W) bilinearly, as ``F.interpolate(mode="bilinear",
    align_corners=False)`` does (each output pixel samples the input at its centre)."""
    maps = np.asarray(maps, np.float64)
    rows = _linear_weights(int(size[0]), maps.shape[-2])
    cols = _linear_weights(int(size[1]), maps.shape[-1])
    # Two matrix products: a three-operand einsum (no `optimize`) loops over every (H, h, w, W) at once,
    # ~40x slower on 8x8 maps to 64x64, which dominated the CAM threshold sweep at publish.
    return rows @ maps @ cols.T


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Scale each (H, W) map of (K, H, W) to [0, 1] by its own minimum and maximum (a flat map is 0)."""
    maps = np.asarray(maps, np.float64)
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)


# Components from the extra thresholds score this fraction of what the same component would at
# ``cam_thresh``: below 1, the class's top box is always a ``cam_thresh`` component (the map's peak's), so
# CorLoc is that of ``cam_thresh`` alone and the extra scales only add lower-ranked candidates for AP.
EXTRA_RANK = 0.5


def map_components(heatmap: np.ndarray, thresh: float, min_area: int = 1) -> list[tuple[tuple, float]]:
    """``((x1, y1, x2, y2), peak)`` of each 8-connected component of pixels >= `thresh` in a (H, W) map
    with at least `min_area` pixels: its tight box in pixel-edge coordinates and its highest value."""
    from scipy import ndimage

    components, count = ndimage.label(heatmap >= thresh, structure=np.ones((3, 3), bool))
    if not count:
        return []
    index = np.arange(1, count + 1)
    peaks = ndimage.maximum(heatmap, components, index)
    areas = ndimage.sum_labels(np.ones_like(heatmap), components, index)
    return [
        ((cols.start, rows.start, cols.stop, rows.stop), float(peak))
        for (rows, cols), peak, area in zip(ndimage.find_objects(components), peaks, areas)
        if area >= min_area
    ]


def nms_order(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps (a box overlapping a higher-scoring kept
    one with IoU > `iou` is dropped), highest score first; ties keep the earlier box."""
    from zoo.tasks.detection import box_iou

    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while len(order):
        keep.append(int(order[0]))
        rest = order[1:]
        if len(rest):
            rest = rest[box_iou(boxes[order[0]], boxes[rest]).reshape(-1) <= iou]
        order = rest
    return np.asarray(keep, np.int64)


def boxes_from_cams(
    heatmaps: np.ndarray,
    probs: np.ndarray,
    cam_thresh: float,
    score_thresh: float = 0.0,
    min_area: int = 1,
    extra_thresh: Sequence[float] = (),
    nms_iou: float = 0.7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (N, 4) xyxy, scores (N,), labels (N,)) from normalised maps (K, H, W) in [0, 1] and tag
    probabilities (K,): for each class with probability >= `score_thresh`, one box per 8-connected
    component of pixels >= `cam_thresh` (at least `min_area` pixels), scored by probability x the
    component's peak; highest score first.

    With `extra_thresh`, the components at each of those thresholds are candidates too (a map's blob is
    wider than a small digit and narrower than a large one, so no one threshold fits every size), scored
    ``EXTRA_RANK`` x probability x peak, and each class's candidates go through non-maximum suppression at
    IoU `nms_iou`: the top box of a class is still the ``cam_thresh`` one."""
    heatmaps, probs = np.asarray(heatmaps, np.float64), np.asarray(probs, np.float64).reshape(-1)
    if heatmaps.ndim != 3 or len(heatmaps) != len(probs):
        raise ValueError(
            f"need maps (K, H, W) and K probabilities, got {heatmaps.shape} and {probs.shape[0]}"
        )
    for value in (cam_thresh, *extra_thresh):
        if not 0 < value <= 1:
            raise ValueError(f"cam_thresh {value} must be in (0, 1]: a fraction of each map's range")
    extras = [float(t) for t in extra_thresh if t != cam_thresh]
    boxes, scores, labels = [], [], []
    for k in np.flatnonzero(probs >= score_thresh):
        found = [(box, probs[k] * peak) for box, peak in map_components(heatmaps[k], cam_thresh, min_area)]
        for thresh in extras:
            found += [
                (box, EXTRA_RANK * probs[k] * peak)
                for box, peak in map_components(heatmaps[k], thresh, min_area)
            ]
        if not found:
            continue
        mine = np.asarray([box for box, _ in found], np.float64)
        rank = np.asarray([score for _, score in found])
        keep = nms_order(mine, rank, nms_iou) if extras else np.arange(len(found))
        boxes += list(mine[keep])
        scores += list(rank[keep])
        labels += [k] * len(keep)
    order = np.argsort(-np.asarray(scores), kind="stable")
    return (
        np.asarray(boxes, np.float32).reshape(-1, 4)[order],
        np.asarray(scores, np.float32)[order],
        np.asarray(labels, np.int64)[order],
    )


def category_ids(names: Sequence[str]) -> np.ndarray:
    """COCO category id of each class name of a weight (the digit scenes' categories, `zoo.data.coco`):
    class index -> category id, for the boxes a COCO evaluation scores."""
    from zoo.data.coco import CATEGORIES

    by_name = {c["name"]: c["id"] for c in CATEGORIES}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"labels {missing} are not digit-scene categories ({sorted(by_name)})")
    return np.asarray([by_name[n] for n in names], np.int64)


_FIELDS = (
    WeightField(
        "cam_thresh",
        0.2,
        "fraction of a class map's range above which pixels form boxes (chosen on train images)",
        (float,),
    ),
    WeightField(
        "score_thresh", 0.05, "classes whose tag probability is below this are not localised", (float,)
    ),
    WeightField("tag_thresh", 0.5, "tag probability at which a class is called present", (float,)),
    WeightField("min_area", 4, "connected components smaller than this many pixels give no box", (int,)),
    WeightField(
        "extra_thresh",
        (),
        "further thresholds whose components are lower-ranked candidate boxes (more scales for AP)",
        (tuple,),
    ),
    WeightField("nms_iou", 0.7, "IoU above which a class's lower-ranked candidate box is dropped", (float,)),
)


@register_task
class WeaklySupervisedLocalization(Task):
    name = "weakly-supervised-localization"
    pipeline_tag = "object-detection"
    aliases = ("cam-localization",)
    summary = "image tags, and boxes for them from the classifier's class activation maps"
    weight_fields = _FIELDS
    headline_metrics = (
        ("corloc", "CorLoc", "{:.1%}"),
        ("map_50", "AP50", "{:.3f}"),
        ("tag_map", "tag mAP", "{:.3f}"),
    )
    output_names = ("logits", "cams")
    outputs_doc = {
        "logits": "(N, K) tag scores, one sigmoid per class (multi-label)",
        "cams": "(N, K, h, w) class activation maps: the classifier's weights applied to the feature maps",
    }

    # ------------------------------------------------------------------------------ inference
    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        """A batch's ``logits`` and ``cams`` -> one `Localization` per image; maps and boxes at
        ``source_size`` (H, W) when given (the image as read), else at the weight's input size."""
        logits, cams = _outputs(outputs)
        size = options.get("source_size") or (meta.input_size[1:] if meta.input_size else cams.shape[-2:])
        names = tuple(meta.labels or ())
        cam_thresh = float(options.get("cam_thresh") or _field(meta, "cam_thresh"))
        score_thresh = float(options.get("score_thresh") or _field(meta, "score_thresh"))
        tag_thresh = float(_field(meta, "tag_thresh"))
        min_area = int(_field(meta, "min_area"))
        extra_thresh = tuple(float(t) for t in _field(meta, "extra_thresh"))
        nms_iou = float(_field(meta, "nms_iou"))
        results = []
        for logit, cam in zip(logits, cams):
            probs = sigmoid(logit)
            heatmaps = normalise_maps(resize_bilinear(cam, size))
            boxes, scores, labels = boxes_from_cams(
                heatmaps, probs, cam_thresh, score_thresh, min_area, extra_thresh, nms_iou
            )
            results.append(
                Localization(
                    probs.astype(np.float32),
                    boxes,
                    scores,
                    labels,
                    heatmaps.astype(np.float32),
                    names,
                    tag_thresh,
                )
            )
        return results

    def localize(
        self,
        run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
        meta: Any,
        images: Sequence[np.ndarray],
        **options: Any,
    ) -> list[Localization]:
        """Tags, boxes and heat maps of (H, W, C) uint8 images, through either runtime's `run` (one
        preprocessed input -> named outputs): each image is preprocessed as the weight expects and its
        boxes come back in its own pixels. `options` override ``cam_thresh`` / ``score_thresh``."""
        results: list[Localization] = []
        for image in images:
            outputs = run(self.preprocess(np.asarray(image), meta))
            results += self.postprocess(outputs, meta, source_size=np.shape(image)[:2], **options)
        return results

    def describe(
        self,
        result: Any,
        source: str,
        *,
        out_dir: Path | None = None,
        image: np.ndarray | None = None,
        **options: Any,
    ) -> str:
        tags = ", ".join(f"{result.label(k)} {result.probs[k]:.2f}" for k in result.tags) or "none"
        shown = [i for i in range(len(result)) if int(result.labels[i]) in result.tags]
        found = ", ".join(
            f"{result.label(int(result.labels[i]))} {result.scores[i]:.2f} "
            f"[{' '.join(f'{v:.0f}' for v in result.boxes[i])}]"
            for i in shown[:10]
        )
        line = f"{source}: tags {tags}; boxes: {found or 'none'}"
        if out_dir is not None and image is not None:
            line += f" -> {self.draw(result, image, Path(out_dir) / f'{Path(source).stem}_cam.png')}"
        return line

    @staticmethod
    def draw(result: Localization, image: np.ndarray, target: Path, zoom: int = 3) -> Path:
        """The image with the tags' best boxes, then one heat map per predicted tag over the image (at
        most four), enlarged `zoom` times."""
        from zoo.tasks.draw import save_png

        return save_png(picture_row(result, image, zoom=zoom), target)

    # ------------------------------------------------------------------------------ evaluation
    def evaluation_data(self, test: Any, count: int, meta: Any) -> tuple[np.ndarray, Any]:
        """The first `count` digit scenes as (N, H, W, 3) uint8 images and one target dict per scene: COCO
        ``image_id``, ``coco_image`` and ``coco_annotations`` (as `zoo.data.coco` exports them), ``boxes``
        and ``labels`` (COCO category ids) for CorLoc."""
        from zoo.data.coco import coco_records
        from zoo.errors import ConfigError

        if not hasattr(test, "scene"):
            raise ConfigError(f"{meta.name}: its test split has no boxes to evaluate localisation on")
        images, targets = [], []
        for scene, image, anns in coco_records(test, count):
            images.append(scene.image)
            targets.append(
                {
                    "image_id": image["id"],
                    "coco_image": image,
                    "coco_annotations": anns,
                    "boxes": scene.boxes.astype(np.float32),
                    "labels": scene.labels.astype(np.int64),
                }
            )
        return np.stack(images), targets

    def metrics(self, meta: Any) -> dict[str, Any]:
        """COCOeval of the boxes, CorLoc and the tags' multi-label quality."""
        from zoo.metrics import CocoEvaluation, CorLoc, MultiLabelTags

        return {
            "coco": CocoEvaluation(None, ("bbox",), per_class=False),
            "corloc": CorLoc(),
            "tags": MultiLabelTags(len(meta.labels), float(_field(meta, "tag_thresh"))),
        }

    def update_metrics(
        self, metrics: Mapping[str, Any], outputs: Mapping[str, np.ndarray], targets: Any, meta: Any
    ) -> None:
        """A batch's outputs (either runtime's) and one target dict per image (`evaluation_data`): boxes to
        COCOeval and CorLoc under COCO category ids, tag probabilities to the tag metric."""
        results = self.postprocess(outputs, meta)
        categories = category_ids(tuple(meta.labels))
        detections = [{"boxes": r.boxes, "scores": r.scores, "labels": categories[r.labels]} for r in results]
        present = np.zeros((len(targets), len(categories)), np.float64)
        for i, target in enumerate(targets):
            present[i] = np.isin(categories, np.asarray(target["labels"]))
        for name, metric in metrics.items():
            if name == "tags":
                metric.update(np.stack([r.probs for r in results]), present)
            else:
                metric.update(detections, list(targets))

    def agreement(
        self,
        expected: Mapping[str, np.ndarray],
        actual: Mapping[str, np.ndarray],
        meta: Any,
        *,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> Agreement:
        """Scaled parity of logits and maps, and the same boxes from both: an image agrees when its boxes
        have the same labels in the same order and IoU >= 0.99. A map value or a tag probability within
        float noise of ``cam_thresh`` / ``score_thresh`` may add or drop a box either way, so (as pixels
        for segmentation) at least 99.5% of the images must agree, not all."""
        from zoo.tasks.detection import box_iou

        base = super().agreement(expected, actual, meta, atol=atol, rtol=rtol)
        same = []
        for want, got in zip(self.postprocess(expected, meta), self.postprocess(actual, meta)):
            agrees = len(want) == len(got) and np.array_equal(want.labels, got.labels)
            if agrees and len(want):
                agrees = float(np.diag(box_iou(want.boxes, got.boxes)).min()) >= 0.99
            same.append(agrees)
        if same:
            base.values["box_agreement"] = float(np.mean(same))
            base.values["images_differ"] = float(len(same) - sum(same))
            if base.values["box_agreement"] < 0.995:
                base.ok = False
                base.note = f"different boxes from the maps in {len(same) - sum(same)} of {len(same)} images"
        return base

    def card_usage(self, meta: Mapping[str, Any], onnx_file: str) -> list[str]:
        return [
            f'session = ort.InferenceSession("{onnx_file}")',
            "logits, cams = session.run(None, {session.get_inputs()[0].name: x})",
            "# boxes: zoo.tasks.localization.boxes_from_cams (numpy), or OnnxModel(path).localize(images)",
        ]


def picture_row(result: Localization, image: np.ndarray, zoom: int = 3, maps: int = 4) -> np.ndarray:
    """(H', W', 3) uint8: the image with each predicted tag's top box (label and score), then the heat
    map of each predicted tag (at most `maps`) blended over the image, each enlarged `zoom` times."""
    from zoo.tasks.draw import draw_boxes, grid, palette, to_rgb

    base = to_rgb(image)
    if base.shape[:2] != result.heatmaps.shape[1:]:
        from PIL import Image

        height, width = result.heatmaps.shape[1:]
        base = np.asarray(Image.fromarray(base).resize((width, height), Image.BILINEAR))
    big = np.kron(base, np.ones((zoom, zoom, 1), np.uint8))
    colors = palette(max(len(result.names), len(result.probs)) + 1)[1:]  # class k: the scenes' k + 1
    best = [int(np.flatnonzero(result.labels == k)[0]) for k in result.tags if (result.labels == k).any()]
    text = [f"{result.label(int(result.labels[i]))} {result.scores[i]:.2f}" for i in best]
    tiles = [draw_boxes(big, result.boxes[best] * zoom, text, colors[result.labels[best]], width=2)]
    for k in result.tags[:maps]:
        heat = np.kron(heat_colours(result.heatmaps[k]), np.ones((zoom, zoom, 1), np.uint8))
        blended = (0.45 * big + 0.55 * heat).round().astype(np.uint8)
        tiles.append(picture_caption(blended, f"CAM {result.label(k)} ({result.probs[k]:.2f})"))
    return grid(tiles, columns=len(tiles))


def heat_colours(heatmap: np.ndarray) -> np.ndarray:
    """A (H, W) map in [0, 1] as (H, W, 3) uint8 colours, dark blue (0) through green and yellow to red (1)."""
    x = np.clip(np.asarray(heatmap, np.float64), 0, 1)
    # A piecewise-linear "jet": enough to read where the map is high without matplotlib.
    red = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.stack([red, green, blue], axis=-1) * 255).round().astype(np.uint8)


def picture_caption(tile: np.ndarray, text: str) -> np.ndarray:
    """`tile` with `text` written in white at its top left."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(tile)
    ImageDraw.Draw(canvas).text((3, 2), text, fill="white")
    return np.asarray(canvas)


def _outputs(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    missing = [k for k in ("logits", "cams") if k not in outputs]
    if missing:
        raise ValueError(f"localisation needs the outputs 'logits' and 'cams'; got {sorted(outputs)}")
    logits, cams = np.asarray(outputs["logits"]), np.asarray(outputs["cams"])
    if logits.ndim != 2 or cams.ndim != 4 or cams.shape[:2] != logits.shape:
        raise ValueError(
            f"need logits (N, K) and cams (N, K, h, w) of the same N and K, got {logits.shape}, {cams.shape}"
        )
    return logits, cams


def _field(meta: Any, name: str) -> Any:
    value = getattr(meta, name, None)
    return next(f.default for f in _FIELDS if f.name == name) if value is None else value
