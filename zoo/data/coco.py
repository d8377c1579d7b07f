"""COCO export of digit scenes: images as PNG and a COCO "instances" JSON that pycocotools reads.

Layout of the output folder::

    images/000001.png      the scenes (RGB)
    semantic/000001.png    the semantic maps (one channel: 0 background, c = digit + 1)
    instances.json         COCO instances: RLE masks, bbox [x, y, w, h], area, iscrowd 0
    captions.json          COCO captions: one caption per image

Category ids are the scene classes (digit + 1, as torchvision's detectors count, 0 being background),
named "0".."9". Masks are the visible pixels (disjoint, top-most digit wins), encoded with
``pycocotools.mask.encode``; ``area`` is the mask's pixel count and ``bbox`` the tight box, which equals
``pycocotools.mask.toBbox`` of the mask.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ConfigError

__all__ = ["CATEGORIES", "coco_ground_truth", "coco_records", "export_coco", "scene_annotations"]

CATEGORIES = [{"id": d + 1, "name": str(d), "supercategory": "digit"} for d in range(10)]


def _mask_api() -> Any:
    try:
        from pycocotools import mask
    except ImportError:
        raise ConfigError("COCO export needs pycocotools: pip install pycocotools (zoo[train])") from None
    return mask


def scene_annotations(scene: Any, image_id: int, first_id: int) -> list[dict[str, Any]]:
    """COCO annotations of one `zoo.data.scenes.Scene` (ids from `first_id`)."""
    mask_api = _mask_api()
    annotations = []
    for k, (mask, box, label) in enumerate(zip(scene.masks, scene.boxes, scene.labels)):
        rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")  # bytes -> str for JSON
        x1, y1, x2, y2 = (float(v) for v in box)
        annotations.append(
            {
                "id": first_id + k,
                "image_id": image_id,
                "category_id": int(label),
                "segmentation": rle,
                "area": float(mask_api.area(rle)),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "iscrowd": 0,
            }
        )
    return annotations


def coco_records(scenes: Any, count: int | None = None) -> Iterator[tuple[Any, dict[str, Any], list[dict]]]:
    """(scene, COCO ``images`` entry, its COCO annotations) of the first `count` (default: all) scenes of a
    `DigitScenes`, with the ids `export_coco` gives them (images from 1, annotations numbered on)."""
    count = len(scenes) if count is None else min(count, len(scenes))
    next_id = 1
    for i in range(count):
        scene = scenes.scene(i)
        height, width = scene.semantic.shape
        image = {"id": i + 1, "file_name": f"{i + 1:06d}.png", "width": width, "height": height}
        annotations = scene_annotations(scene, i + 1, next_id)
        next_id += len(annotations)
        yield scene, image, annotations


def coco_ground_truth(scenes: Any, count: int | None = None) -> dict[str, Any]:
    """The COCO instances (``images``, ``annotations``, ``categories``) of the first `count` (default: all)
    scenes of a `DigitScenes`, exactly as `export_coco` writes them (same ids, RLE masks and areas)."""
    images, annotations = [], []
    for _, image, anns in coco_records(scenes, count):
        images.append(image)
        annotations += anns
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def export_coco(scenes: Any, out: str | Path, n: int | None = None, description: str = "") -> Path:
    """Write the first `n` (default: all) scenes of a `DigitScenes` as a COCO dataset under `out`;
    returns the path of ``instances.json``."""
    from PIL import Image

    if not hasattr(scenes, "scene"):
        raise ConfigError("COCO export needs a dataset with instance masks (digit scenes)")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "semantic").mkdir(parents=True, exist_ok=True)
    count = len(scenes) if n is None else min(n, len(scenes))
    images, annotations, captions = [], [], []
    for i in range(count):
        scene = scenes.scene(i)
        image_id = i + 1  # COCO ids start at 1
        file_name = f"{image_id:06d}.png"
        Image.fromarray(scene.image).save(out / "images" / file_name)
        Image.fromarray(scene.semantic).save(out / "semantic" / file_name)
        height, width = scene.semantic.shape
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        annotations += scene_annotations(scene, image_id, len(annotations) + 1)
        captions.append({"id": image_id, "image_id": image_id, "caption": scene.caption})
    info = {"description": description or f"digit scenes, {scenes.split} split", "version": "1.0"}
    instances = {
        "info": info,
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    path = out / "instances.json"
    path.write_text(json.dumps(instances))
    (out / "captions.json").write_text(
        json.dumps({"info": info, "licenses": [], "images": images, "annotations": captions})
    )
    return path
