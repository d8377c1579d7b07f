"""COCO export: pycocotools reads it back, masks and boxes survive, and GT scored against itself is AP 1."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from zoo.data.coco import export_coco
from zoo.data.scenes import DigitScenes

pytest.importorskip("pycocotools")
# pycocotools' annToMask trips numpy 2's __array__(copy=) deprecation: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.mask")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    scenes = DigitScenes("test", 30)
    path = export_coco(scenes, tmp_path_factory.mktemp("coco"), n=25)
    return scenes, path


def test_pycocotools_reads_masks_boxes_and_areas(exported):
    from PIL import Image
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO

    scenes, path = exported
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == list(range(1, 26))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [str(d) for d in range(10)]
    for image_id in coco.getImgIds():
        scene = scenes.scene(image_id - 1)
        info = coco.loadImgs(image_id)[0]
        assert np.array_equal(np.asarray(Image.open(path.parent / "images" / info["file_name"])), scene.image)
        semantic = np.asarray(Image.open(path.parent / "semantic" / info["file_name"]))
        assert np.array_equal(semantic, scene.semantic)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(anns) == len(scene.labels)
        for ann, mask, box, label in zip(anns, scene.masks, scene.boxes, scene.labels):
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
            assert ann["category_id"] == label and ann["iscrowd"] == 0 and ann["area"] == mask.sum()
            x1, y1, x2, y2 = box.tolist()
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert np.allclose(mask_api.toBbox(ann["segmentation"]), ann["bbox"])
    captions = json.loads((path.parent / "captions.json").read_text())["annotations"]
    assert [c["caption"] for c in captions] == [scenes.scene(i).caption for i in range(25)]


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_ground_truth_against_itself_scores_ap_1(exported, iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _, path = exported
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        results = [{**ann, "score": 1.0} for ann in gt.dataset["annotations"]]
        if iou_type == "bbox":
            results = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)  # AP @ IoU 0.50:0.95
    assert evaluator.stats[1] == pytest.approx(1.0)  # AP @ IoU 0.50
