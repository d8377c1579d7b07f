"""The no-learning baseline of the detection and instance-segmentation weights, on the same 1000 test scenes
of ``digit_scenes_128``.

``otsu + components + resnet8_small.mnist``: Otsu's threshold on the grey image, connected components
(8-connected) of at least ``--min-area`` pixels, each component's crop classified by the zoo's MNIST
classifier (`benchmarks.segmentation_baselines.otsu_instances`, the semantic baseline's own code). Each
component is one detection: its mask, its tight box, its label (digit + 1) and its score (the
classifier's softmax probability). Touching or overlapping digits merge into one component, so the
baseline fails exactly where instance segmentation is needed; textured backgrounds leak into masks.

Scored by pycocotools' COCOeval (`zoo.metrics.coco_evaluate`) against the scenes' COCO annotations
(`zoo.data.coco.scene_annotations`), boxes (``bbox_*``) and masks (``segm_*``): AP@[.5:.95], AP50, AP75
and AP small / medium / large, on all test scenes and on the scenes whose digits overlap or touch
(`zoo.data.scenes.touching_instances`, ``overlap_*``). ``--write NAME`` stores the numbers under
``weights.baselines`` of ``hub/NAME/config.json`` and renders its card again.

    .venv/bin/python benchmarks/detection_baselines.py [--limit N] [--save b.json] [--write NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.segmentation_baselines import CLASSIFIER, otsu_instances, write_baselines

BASELINE = "otsu + components + resnet8_small.mnist"
DATASET = "digit_scenes_128"
# COCOeval's numbers the cards show (recalls left out: the cards compare precision).
REPORTED = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")


def coco_detections(instances: list[tuple[np.ndarray, int, float]], image_id: int) -> list[dict[str, Any]]:
    """COCO results (bbox and RLE segmentation) of one scene's ``(mask, digit, probability)`` instances."""
    from pycocotools import mask as mask_api

    results = []
    for mask, digit, prob in instances:
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append(
            {
                "image_id": image_id,
                "category_id": int(digit) + 1,
                "score": float(prob),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "segmentation": rle,
            }
        )
    return results


def evaluate(scenes: list[Any], found: list[list[tuple[np.ndarray, int, float]]]) -> dict[str, float]:
    """COCOeval bbox and segm of the baseline's instances on `scenes`: ``bbox_map``, ``segm_map``, ..."""
    from zoo.data.coco import CATEGORIES, scene_annotations
    from zoo.metrics import coco_evaluate

    images, annotations, detections = [], [], []
    for i, (scene, instances) in enumerate(zip(scenes, found)):
        height, width = scene.semantic.shape
        images.append({"id": i + 1, "width": width, "height": height, "file_name": f"{i + 1:06d}.png"})
        annotations += scene_annotations(scene, i + 1, len(annotations) + 1)
        detections += coco_detections(instances, i + 1)
    gt = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    values: dict[str, float] = {}
    for iou_type in ("bbox", "segm"):
        # Each type without the other's field: with a box present, pycocotools' loadRes would give a mask
        # detection its box area (which decides small / medium / large) instead of the mask's.
        drop = "segmentation" if iou_type == "bbox" else "bbox"
        stats = coco_evaluate(gt, [{k: v for k, v in d.items() if k != drop} for d in detections], iou_type)
        values.update({f"{iou_type}_{k}": round(stats[k], 6) for k in REPORTED})
    return values


def otsu_detection_baseline(limit: int | None = None, min_area: int = 12) -> dict[str, float]:
    """The baseline on the first `limit` (default all) test scenes of digit_scenes_128, on all of them and
    on the overlapping / touching subset (keys ``overlap_*``), plus the scene counts."""
    import zoo
    from zoo.data import load_dataset
    from zoo.data.scenes import touching_instances

    test = load_dataset(DATASET).test
    n = len(test) if limit is None else min(limit, len(test))
    scenes = [test.scene(i) for i in range(n)]
    classifier = zoo.create_model(CLASSIFIER, pretrained=True).eval()
    meta = classifier.pretrained_weights
    found = otsu_instances(
        np.stack([s.image for s in scenes]), classifier, meta.mean[0], meta.std[0], min_area
    )
    touching = [i for i, s in enumerate(scenes) if touching_instances(s.masks)]
    result = {"scenes": float(n), **evaluate(scenes, found)}
    result["overlap_scenes"] = float(len(touching))
    if touching:
        subset = evaluate([scenes[i] for i in touching], [found[i] for i in touching])
        result.update({f"overlap_{k}": v for k, v in subset.items()})
    return result


def in_weight_names(values: dict[str, float], task: str) -> dict[str, float]:
    """The baseline's numbers under the names a weight of `task` records, so a card compares like with like:
    a box detector's ``map`` is the baseline's ``bbox_map`` (``overlap_map``: ``overlap_bbox_map``); an
    instance model's ``map`` is of masks (``segm_map``) and ``bbox_map`` of boxes. Undefined values (no
    medium or large digit) and the scene counts are left out."""
    primary, other = ("segm", "bbox") if task == "instance-segmentation" else ("bbox", None)
    named: dict[str, float] = {}
    for key, value in values.items():
        if not np.isfinite(value) or key.endswith("scenes"):
            continue
        prefix = "overlap_" if key.startswith("overlap_") else ""
        kind, _, stat = key.removeprefix(prefix).partition("_")
        if kind == primary:
            named[f"{prefix}{stat}"] = value
        elif kind == other:
            named[f"{prefix}{kind}_{stat}"] = value
    return named


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N test scenes (quick checks)")
    parser.add_argument("--min-area", type=int, default=12)
    parser.add_argument("--save", metavar="JSON", help="also write the measured baseline to this file")
    parser.add_argument(
        "--write", metavar="NAME", help="store the baseline in hub/NAME and re-render its card"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    values = otsu_detection_baseline(args.limit, args.min_area)
    results = {BASELINE: values}
    print(
        f"{BASELINE} on {int(values['scenes'])} test scenes of {DATASET} ({time.perf_counter() - start:.1f} s)"
    )
    for prefix, title in (
        ("", "all scenes"),
        ("overlap_", f"{int(values['overlap_scenes'])} touching scenes"),
    ):
        for iou_type in ("bbox", "segm"):
            row = "  ".join(
                f"{k}: {values.get(f'{prefix}{iou_type}_{k}', float('nan')):.3f}" for k in REPORTED
            )
            print(f"  {title:>22} {iou_type}: {row}")
    if args.save:
        Path(args.save).write_text(json.dumps(results, indent=2) + "\n")
    if args.write:
        import zoo

        task = zoo.get_weights(args.write).task
        named = {name: in_weight_names(row, task) for name, row in results.items()}
        print(f"written to {write_baselines(args.write, named)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
