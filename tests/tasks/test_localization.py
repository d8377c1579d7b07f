"""Weakly supervised localisation: numpy boxes from synthetic CAMs, the task's metrics, drawing, errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.tasks import get_task
from zoo.tasks.localization import (
    EXTRA_RANK,
    Localization,
    boxes_from_cams,
    category_ids,
    normalise_maps,
    resize_bilinear,
    sigmoid,
)

TASK = get_task("weakly-supervised-localization")
DIGITS = tuple(str(d) for d in range(10))


def _meta(**changes):
    fields = {f.name: f.default for f in TASK.weight_fields}
    return SimpleNamespace(
        **{"name": "test", "labels": DIGITS, "input_size": (3, 64, 64), **fields, **changes}
    )


def _blob(size, top, left, side, value=1.0):
    heat = np.zeros(size)
    heat[top : top + side, left : left + side] = value
    return heat


@pytest.mark.parametrize(("source", "target"), [((5, 7), (13, 29)), ((16, 16), (64, 64)), ((6, 8), (3, 4))])
def test_resize_matches_torch_bilinear_without_corner_alignment(source, target):
    maps = torch.randn(3, *source, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(maps[None], size=target, mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(resize_bilinear(maps.numpy(), target), expected.numpy(), atol=1e-5)


def test_normalise_maps_scales_each_map_and_flat_maps_are_zero():
    maps = np.stack([np.arange(4.0).reshape(2, 2) * 3 - 5, np.full((2, 2), 7.0)])
    out = normalise_maps(maps)
    np.testing.assert_allclose(out[0], [[0, 1 / 3], [2 / 3, 1]])
    assert (out[1] == 0).all()


def test_one_box_per_component_tight_in_pixel_edges():
    heat = np.stack([_blob((32, 32), 2, 3, 5) + _blob((32, 32), 20, 10, 4, 0.6), np.zeros((32, 32))])
    boxes, scores, labels = boxes_from_cams(heat, np.array([0.8, 0.9]), cam_thresh=0.5)
    # class 1's flat map has no pixel >= 0.5: no box; class 0 has two components, the peak's first
    np.testing.assert_array_equal(boxes, [[3, 2, 8, 7], [10, 20, 14, 24]])
    np.testing.assert_allclose(scores, [0.8, 0.8 * 0.6], rtol=1e-6)
    np.testing.assert_array_equal(labels, [0, 0])


def test_threshold_score_thresh_and_min_area_filter():
    heat = np.stack([_blob((32, 32), 2, 3, 5) + _blob((32, 32), 20, 10, 1, 0.6), _blob((32, 32), 0, 0, 8)])
    # the weak component disappears above its value; the 1-pixel one under min_area
    assert len(boxes_from_cams(heat[:1], np.array([0.8]), cam_thresh=0.7)[0]) == 1
    assert len(boxes_from_cams(heat[:1], np.array([0.8]), cam_thresh=0.5, min_area=2)[0]) == 1
    # class 0 below score_thresh is not localised; the ranking follows probability x peak
    boxes, _, labels = boxes_from_cams(heat, np.array([0.04, 0.9]), 0.5, score_thresh=0.05)
    np.testing.assert_array_equal(labels, [1])
    np.testing.assert_array_equal(boxes, [[0, 0, 8, 8]])
    _, _, labels = boxes_from_cams(heat, np.array([0.5, 0.9]), 0.5)
    assert labels.tolist() == [1, 0, 0]


def test_diagonal_neighbours_are_one_component():
    heat = np.zeros((1, 8, 8))
    heat[0, 1, 1] = heat[0, 2, 2] = 1.0
    boxes, _, _ = boxes_from_cams(heat, np.array([1.0]), 0.5)
    np.testing.assert_array_equal(boxes, [[1, 1, 3, 3]])


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="cam_thresh"):
        boxes_from_cams(np.zeros((1, 4, 4)), np.ones(1), 0.0)
    with pytest.raises(ValueError, match=r"maps \(K, H, W\) and K probabilities"):
        boxes_from_cams(np.zeros((2, 4, 4)), np.ones(3), 0.5)
    with pytest.raises(ValueError, match="'logits' and 'cams'"):
        TASK.postprocess({"logits": np.zeros((1, 10))}, _meta())
    with pytest.raises(ValueError, match="same N and K"):
        TASK.postprocess({"logits": np.zeros((1, 10)), "cams": np.zeros((1, 9, 4, 4))}, _meta())
    with pytest.raises(ValueError, match="not digit-scene categories"):
        category_ids(("cat",))


def test_postprocess_boxes_at_the_source_size():
    cams = np.full((1, 10, 16, 16), -4.0)
    cams[0, 3, 2:6, 8:12] = 6.0  # digit 3 in the cells of rows 2..5, columns 8..11 (stride 4)
    logits = np.full((1, 10), -5.0)
    logits[0, 3] = 3.0
    meta = _meta(cam_thresh=0.5)
    (result,) = TASK.postprocess({"logits": logits, "cams": cams}, meta)
    assert isinstance(result, Localization) and result.tags == [3] and result.heatmaps.shape == (10, 64, 64)
    assert result.label(int(result.labels[0])) == "3" and result.scores[0] == pytest.approx(sigmoid(3.0))
    np.testing.assert_allclose(result.boxes[0], [32, 8, 48, 24], atol=2)  # the cells' pixels, +-2 by blur
    # the same maps on a 128 px source image: the box scales with it
    (big,) = TASK.postprocess({"logits": logits, "cams": cams}, meta, source_size=(128, 128))
    np.testing.assert_allclose(big.boxes[0], result.boxes[0] * 2, atol=2)


def test_metrics_from_outputs_and_targets():
    cams = np.full((2, 10, 16, 16), -4.0)
    cams[0, 3, 2:6, 8:12] = 6.0
    cams[1, 5, 10:14, 0:4] = 6.0
    logits = np.full((2, 10), -5.0)
    logits[0, 3] = logits[1, 5] = 3.0
    targets = []
    for i, (box, label) in enumerate((([32, 8, 48, 24], 4), ([0, 40, 16, 56], 6))):  # digits 3 and 5
        x1, y1, x2, y2 = box
        targets.append(
            {
                "image_id": i + 1,
                "coco_image": {"id": i + 1, "width": 64, "height": 64, "file_name": f"{i}.png"},
                "coco_annotations": [
                    {"id": i + 1, "image_id": i + 1, "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": 256.0, "iscrowd": 0}
                ],
                "boxes": np.array([box], np.float32),
                "labels": np.array([label]),
            }
        )  # fmt: skip
    meta = _meta(cam_thresh=0.5)
    metrics = TASK.metrics(meta)
    TASK.update_metrics(metrics, {"logits": logits, "cams": cams}, targets, meta)
    values = {k: v for m in metrics.values() for k, v in m.compute().items()}
    assert values["corloc"] == 1.0 and values["tag_map"] == 1.0 and values["tag_exact"] == 1.0
    assert values["map_50"] == pytest.approx(1.0)


def test_describe_writes_boxes_and_heat_maps(tmp_path):
    cams = np.full((1, 10, 16, 16), -4.0)
    cams[0, 7, 4:10, 4:10] = 6.0
    logits = np.full((1, 10), -5.0)
    logits[0, 7] = 2.0
    (result,) = TASK.postprocess({"logits": logits, "cams": cams}, _meta())
    image = np.zeros((64, 64, 3), np.uint8)
    line = TASK.describe(result, "scene.png", out_dir=tmp_path, image=image)
    assert line.startswith("scene.png: tags 7 0.88; boxes: 7 0.88 [") and line.endswith("scene_cam.png")
    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "scene_cam.png"))
    assert picture.shape[0] == 64 * 3 + 4 and picture.shape[1] == 2 * (64 * 3 + 2) + 2  # boxes | one map


PUBLISHED = "cam_resnet8_small.scenes"


def _published() -> bool:
    from zoo.registry import IN_TREE_HUB

    return (IN_TREE_HUB / PUBLISHED / "config.json").is_file()


@pytest.mark.skipif(not _published(), reason="weight not published")
def test_zoo_predict_prints_tags_and_boxes_and_draws_the_maps(tmp_path, capsys):
    from PIL import Image

    from zoo.cli import main
    from zoo.data import DigitScenes

    scene = DigitScenes("test", 2).scene(1)  # a 4, a 6 and a 9, each tagged with p >= 0.7
    png = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(png)
    assert main(["predict", PUBLISHED, str(png), "--out", str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{png}: tags ") and "boxes: " in line and line.endswith("scene_cam.png")
    # the scene's digits are the tags the weight calls present, each with a box
    digits = sorted(str(d) for d in set(scene.digits.tolist()))
    tags = line.split("tags ")[1].split(";")[0]
    assert sorted(t.split()[0] for t in tags.split(", ")) == digits
    assert (tmp_path / "out" / "scene_cam.png").is_file()


def test_agreement_tolerates_a_rare_box_flipped_by_float_noise_at_a_threshold():
    rng = np.random.default_rng(0)
    cams = rng.standard_normal((400, 10, 4, 4)).astype(np.float32)
    logits = np.full((400, 10), -5.0, np.float32)
    logits[:, 2] = 3.0
    expected = {"logits": logits, "cams": cams}
    meta = _meta(input_size=(3, 16, 16))
    assert TASK.agreement(expected, {k: v.copy() for k, v in expected.items()}, meta).ok
    # digit 7's probability just crosses score_thresh (0.05) in one image: one more box there
    crossed = logits.copy()
    crossed[0, 7] = -2.94440  # sigmoid just above 0.05 (logit(0.05) = -2.944439)
    logits[0, 7] = -2.94448  # just below: a difference within float parity
    agreement = TASK.agreement(expected, {"logits": crossed, "cams": cams}, meta)
    assert agreement.ok and agreement.values["images_differ"] == 1, agreement
    logits[:3, 7], crossed[:3, 7] = -2.94448, -2.94440  # three of 400 (99.25% < 99.5%): more than noise
    agreement = TASK.agreement(expected, {"logits": crossed, "cams": cams}, meta)
    assert not agreement.ok and "3 of 400 images" in agreement.note


def _pyramid(size, top, left, levels):
    """A stepped blob: value (i + 1) / levels on the square shrinking by one pixel a side per level."""
    heat = np.zeros(size)
    for i in range(levels):
        side = 2 * (levels - i) + 2
        heat[top + i : top + i + side, left + i : left + i + side] = (i + 1) / levels
    return heat


def test_extra_thresholds_add_lower_ranked_boxes_and_keep_the_top_one():
    heat = _pyramid((32, 32), 4, 4, 5)[None]  # squares of side 12, 10, 8, 6, 4 at 0.2 .. 1.0
    alone = boxes_from_cams(heat, np.array([0.9]), 0.6)
    boxes, scores, labels = boxes_from_cams(heat, np.array([0.9]), 0.6, extra_thresh=(0.2, 1.0), nms_iou=0.7)
    # the cam_thresh box first, at probability x peak as without extras; then the two other scales at
    # EXTRA_RANK x that, the wider (0.2) before the narrower (1.0) on ties by the order they were found
    np.testing.assert_array_equal(boxes[0], alone[0][0])
    np.testing.assert_array_equal(boxes, [[6, 6, 14, 14], [4, 4, 16, 16], [8, 8, 12, 12]])
    np.testing.assert_allclose(scores, [0.9, 0.9 * EXTRA_RANK, 0.9 * EXTRA_RANK], rtol=1e-6)
    assert labels.tolist() == [0, 0, 0]


def test_extra_boxes_close_to_a_kept_one_are_suppressed():
    heat = _pyramid((32, 32), 4, 4, 5)[None]
    # the 0.8 square (side 6) against the 0.6 one (side 8): IoU 36 / 64 = 0.56
    boxes, _, _ = boxes_from_cams(heat, np.array([1.0]), 0.6, extra_thresh=(0.8,), nms_iou=0.5)
    np.testing.assert_array_equal(boxes, [[6, 6, 14, 14]])
    boxes, _, _ = boxes_from_cams(heat, np.array([1.0]), 0.6, extra_thresh=(0.8,), nms_iou=0.6)
    assert len(boxes) == 2
    # an extra threshold equal to cam_thresh adds nothing; an out-of-range one is an error
    assert len(boxes_from_cams(heat, np.array([1.0]), 0.6, extra_thresh=(0.6,))[0]) == 1
    with pytest.raises(ValueError, match="must be in"):
        boxes_from_cams(heat, np.array([1.0]), 0.6, extra_thresh=(1.5,))


def test_extra_thresholds_find_touching_digits_the_main_threshold_merges():
    # two peaks joined by a saddle at 0.5: one component at 0.4, two at 0.6 (a second digit of the class)
    heat = np.zeros((1, 16, 32))
    heat[0, 4:12, 2:14] = 1.0
    heat[0, 4:12, 18:30] = 0.8
    heat[0, 6:10, 14:18] = 0.5
    boxes, scores, _ = boxes_from_cams(heat, np.array([1.0]), 0.4, extra_thresh=(0.6,), nms_iou=0.5)
    np.testing.assert_array_equal(boxes, [[2, 4, 30, 12], [2, 4, 14, 12], [18, 4, 30, 12]])
    np.testing.assert_allclose(scores, [1.0, EXTRA_RANK, EXTRA_RANK * 0.8], rtol=1e-6)


def test_postprocess_reads_extra_thresholds_from_the_weight():
    cams = np.full((1, 10, 16, 16), -4.0)
    cams[0, 3, 2:6, 8:12] = 6.0
    cams[0, 3, 3:5, 9:11] = 9.0
    logits = np.full((1, 10), -5.0)
    logits[0, 3] = 3.0
    (plain,) = TASK.postprocess({"logits": logits, "cams": cams}, _meta(cam_thresh=0.5))
    meta = _meta(cam_thresh=0.5, extra_thresh=(0.2, 0.9), nms_iou=0.5)
    (more,) = TASK.postprocess({"logits": logits, "cams": cams}, meta)
    np.testing.assert_array_equal(more.boxes[0], plain.boxes[0])
    assert len(more) > len(plain) and (more.scores[1:] < more.scores[0]).all()
