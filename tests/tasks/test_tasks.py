"""The built-in tasks: metadata, post-processing, pictures and the task-level export checks, on synthetic
outputs (no model needed). Mirrors `zoo/tasks/`."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.errors import ConfigError
from zoo.preprocess import load_image
from zoo.registry import Weights
from zoo.tasks import get_task, list_tasks
from zoo.tasks.detection import Detections, box_iou
from zoo.tasks.draw import draw_boxes, grid, overlay_masks, palette

HF_PIPELINE_TAGS = {
    "image-classification",
    "image-segmentation",
    "object-detection",
    "image-to-image",
    "unconditional-image-generation",
    "image-feature-extraction",
    "zero-shot-image-classification",
}
TASKS = [t.name for t in list_tasks() if t.pipeline_tag in HF_PIPELINE_TAGS]


def meta(task: str, **fields) -> Weights:
    common = {k: fields.pop(k) for k in ("labels", "input_size", "mean", "std") if k in fields}
    return Weights(arch="a", tag="t", task=task, task_fields=fields, **common)


def test_the_zoo_has_every_task_the_families_need():
    assert set(TASKS) >= {
        "image-classification",
        "image-to-image",
        "semantic-segmentation",
        "object-detection",
        "instance-segmentation",
        "image-generation",
        "feature-extraction",
        "zero-shot-image-classification",
    }


@pytest.mark.parametrize("name", TASKS)
def test_every_task_documents_itself(name):
    task = get_task(name)
    assert task.summary and task.output_names and set(task.output_names) <= set(task.outputs_doc)
    for f in task.weight_fields:
        assert f.doc and f.coerce(f.default, "default") == f.default
    exported = task.export_metadata(meta(name))
    assert set(exported["task_fields"]) == {f.name for f in task.weight_fields}


def test_classification_softmax_topk_and_agreement():
    task = get_task("image-classification")
    m = meta("image-classification", labels=("cat", "dog", "eel"))
    logits = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], np.float32)
    first, second = task.postprocess({"logits": logits}, m)
    assert first.label == "dog" and second.label == "cat" and np.isclose(first.probs.sum(), 1.0)
    assert task.describe(first, "x.png", k=2) == "x.png: dog 0.665, eel 0.245"
    assert task.agreement({"logits": logits}, {"logits": logits + 1e-6}, m).ok
    flipped = logits.copy()
    flipped[1] = [0.0, 3.0, 0.0]
    verdict = task.agreement({"logits": logits}, {"logits": flipped}, m)
    assert not verdict.ok and verdict.values["top1_agreement"] == 0.5


def test_scaled_parity_passes_large_outputs_with_small_relative_error():
    task = get_task("image-classification")
    m = meta("image-classification")
    big = np.array([[7.2e4, -3.0e4, 1.0e3]])
    assert task.agreement({"logits": big}, {"logits": big * (1 + 1e-6)}, m).ok  # 0.07 abs, 1e-6 rel
    assert not task.agreement({"logits": big / 1e4}, {"logits": big / 1e4 + 5e-3}, m).ok


def test_image_to_image_writes_pictures_and_checks_grey_levels(tmp_path):
    task = get_task("autoencoding")  # the old name reads as the alias it is
    assert task.name == "image-to-image"
    m = meta("image-to-image", input_size=(1, 4, 4), mean=(0.5,), std=(0.25,))
    out = np.full((1, 1, 4, 4), 1.0, np.float32)  # normalised 1.0 -> pixel 0.75
    (image,) = task.postprocess({"reconstruction": out}, m)
    assert image.shape == (4, 4, 1) and image.dtype == np.uint8 and int(image[0, 0, 0]) == 191
    line = task.describe(image, "in.png", out_dir=tmp_path, output_names=("reconstruction",))
    assert line == f"in.png: reconstruction -> {tmp_path / 'in_reconstruction.png'}"
    np.testing.assert_array_equal(load_image(tmp_path / "in_reconstruction.png", 1), image)
    with pytest.raises(ConfigError, match="pass --out DIR"):
        task.describe(image, "in.png")
    assert not task.agreement({"image": out}, {"image": out + 0.05}, m).ok  # several grey levels apart
    (latent,) = task.postprocess({"latent": np.ones((1, 8))}, m)
    assert latent.shape == (8,)


def test_segmentation_label_maps_overlays_and_pixel_agreement(tmp_path):
    task = get_task("semantic-segmentation")
    m = meta("semantic-segmentation", labels=("background", "7", "2"))
    logits = np.zeros((1, 3, 8, 8), np.float32)
    logits[0, 0] = 1.0
    logits[0, 1, :4, :4] = 2.0
    logits[0, 2, 4:, 4:] = 2.0
    (seg,) = task.postprocess({"logits": logits}, m)
    assert seg.mask[0, 0] == 1 and seg.mask[7, 7] == 2 and seg.mask[0, 7] == 0
    assert seg.shares()[0] == ("background", 0.5)
    image = np.full((8, 8, 3), 40, np.uint8)
    line = task.describe(seg, "s.png", out_dir=tmp_path, image=image, meta=m)
    picture = load_image(tmp_path / "s_segmentation.png", 3)
    assert line.startswith("s.png: background 50.0%, 7 25.0%, 2 25.0% -> ")
    assert picture.shape[1] > 2 * 8 and (picture != 40).any()
    other = logits.copy()
    other[0, 2, 0, 0] = 5.0
    verdict = task.agreement({"logits": logits}, {"logits": other}, m)
    assert not verdict.ok and verdict.values["pixel_agreement"] == pytest.approx(63 / 64)


def detections(n: int = 3, masks: bool = False) -> dict[str, np.ndarray]:
    out = {
        "boxes": np.array([[2, 2, 10, 10], [20, 20, 30, 28], [5, 5, 6, 6]][:n], np.float32),
        "scores": np.array([0.6, 0.9, 0.01][:n], np.float32),
        "labels": np.array([7, 2, 1][:n], np.int64),
    }
    if masks:
        probs = np.zeros((n, 1, 32, 32), np.float32)
        probs[0, 0, 2:10, 2:10] = 0.9
        probs[1, 0, 20:28, 20:30] = 0.8
        out["masks"] = probs
    return out


def test_detection_threshold_order_picture_and_agreement(tmp_path):
    task = get_task("object-detection")
    m = meta("object-detection", labels=tuple(str(d) for d in range(10)), score_thresh=0.05)
    (found,) = task.postprocess(detections(), m)
    assert isinstance(found, Detections) and len(found) == 2
    assert [found.label(i) for i in range(2)] == ["2", "7"] and found.scores[0] == pytest.approx(0.9)
    image = np.zeros((32, 32, 3), np.uint8)
    line = task.describe(found, "d.png", out_dir=tmp_path, image=image)
    assert line.startswith("d.png: 2 found: 2 0.90 [20 20 30 28], 7 0.60 [2 2 10 10] -> ")
    assert load_image(tmp_path / "d_bbox.png", 3).any()
    assert task.agreement(detections(), detections(), m).ok
    moved = detections()
    moved["boxes"][1] += 3
    verdict = task.agreement(detections(), moved, m)
    assert not verdict.ok and verdict.values["min_box_iou"] < 0.99
    assert not task.agreement(detections(), detections(1), m).ok
    fewer_below_thresh = task.agreement(detections(3), detections(2), m)  # differs only below score_thresh
    assert fewer_below_thresh.ok


def test_box_iou_matches_torchvision():
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 50, (6, 2, 2)), axis=1).transpose(0, 2, 1).reshape(6, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(0, 50, (4, 2, 2)), axis=1).transpose(0, 2, 1).reshape(4, 4)[:, [0, 2, 1, 3]]
    want = tv_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), want, atol=1e-9)


def test_instance_segmentation_thresholds_masks(tmp_path):
    task = get_task("instance-segmentation")
    m = meta("instance-segmentation", labels=tuple(str(d) for d in range(10)), mask_thresh=0.85)
    (found,) = task.postprocess(detections(masks=True), m)
    assert found.masks.shape == (2, 32, 32) and not found.masks[0].any() and found.masks[1].sum() == 8 * 8
    task.describe(found, "i.png", out_dir=tmp_path, image=np.zeros((32, 32, 1), np.uint8))
    assert (tmp_path / "i_segm.png").is_file()


def test_generation_takes_no_images_and_maps_its_range():
    task = get_task("image-generation")
    m = meta("image-generation", output_range=(-1.0, 1.0))
    (image,) = task.postprocess({"image": np.array([[[[-1.0, 0.0, 1.0]]]], np.float32)}, m)
    assert image[0, :, 0].tolist() == [0, 128, 255]
    with pytest.raises(ConfigError, match="use `zoo sample"):
        task.preprocess(np.zeros((4, 4, 1), np.uint8), m)


def test_feature_extraction_normalises_and_zero_shot_classifies():
    features = get_task("feature-extraction")
    (emb,) = features.postprocess({"embedding": np.array([[3.0, 4.0]])}, meta("feature-extraction"))
    assert np.allclose(emb.vector, [0.6, 0.8]) and emb.cosine(emb) == pytest.approx(1.0)
    zero_shot = get_task("zero-shot-image-classification")
    m = meta("zero-shot-image-classification", similarity_scale=10.0)
    texts = np.array([[1.0, 0.0], [0.0, 1.0]])
    (answer,) = zero_shot.postprocess(
        {"image_embeds": np.array([[0.2, 0.9]])}, m, class_embeddings=texts, class_names=("a 1", "a 7")
    )
    assert answer.label == "a 7" and answer.probability > 0.9
    unit = np.array([0.2, 0.9]) / np.linalg.norm([0.2, 0.9])
    np.testing.assert_allclose(answer.probs, np.exp(10 * unit) / np.exp(10 * unit).sum())


def test_feature_extraction_agreement_reads_the_direction():
    features = get_task("feature-extraction")
    m = meta("feature-extraction")
    want = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    close = features.agreement({"embedding": want}, {"embedding": want * (1 + 1e-6)}, m)
    assert close.ok and close.values["min_cosine"] == pytest.approx(1.0)
    turned = want.copy()
    turned[1] = [2.0, -1.0, 0.5]  # same norm, another direction
    far = features.agreement({"embedding": want}, {"embedding": turned}, m, atol=10, rtol=10)
    assert not far.ok and far.values["min_cosine"] < 0.9999  # parity alone (atol 10) would pass it


def test_feature_extraction_fits_its_probes_on_the_train_split():
    """`zoo verify` of an encoder: the probes learn from the weight's train split through the same network."""
    features = get_task("feature-extraction")
    m = meta("feature-extraction", input_size=(1, 28, 28), mean=(0.13,), std=(0.31,)).replace(
        dataset="mnist_5k"
    )
    calls = []

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(x))
        return {"embedding": x.reshape(len(x), -1)}  # raw pixels as features

    metrics = features.metrics(m)
    features.fit_metrics(metrics, run, m)
    assert sum(calls) == 4000 and all(metric.fitted for metric in metrics.values())


def test_drawing_helpers():
    colors = palette(11)
    assert colors.shape == (11, 3) and len({tuple(c) for c in colors}) == 11
    tiles = grid([np.zeros((4, 4, 1), np.uint8)] * 5, columns=3, pad=1)
    assert tiles.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    over = overlay_masks(np.zeros((4, 4, 1), np.uint8), mask[None], colors[:1], alpha=1.0)
    assert (over[0, 0] == colors[0]).all() and not over[1:, 1:].any()
    boxed = draw_boxes(np.zeros((16, 16, 3), np.uint8), np.array([[2, 2, 12, 12]]), ["7"])
    assert boxed[2, 2:12].any() and not boxed[7, 7].any()


def test_dense_weights_pad_to_their_multiple_and_crop_back(tmp_path):
    from zoo.tasks.base import crop_to, pad_to_multiple

    task = get_task("semantic-segmentation")
    m = meta("semantic-segmentation", labels=("bg", "fg"), size_multiple=16, mean=(0.5,), std=(0.5,))
    image = np.zeros((20, 37, 1), np.uint8)
    x = task.preprocess(image, m)
    assert x.shape == (1, 1, 32, 48)  # not resized to input_size: padded to multiples of 16
    logits = np.zeros((1, 2, 32, 48), np.float32)
    (seg,) = task.postprocess({"logits": logits}, m, source_size=(20, 37))
    assert seg.mask.shape == (20, 37)
    small = pad_to_multiple(np.ones((1, 1, 3, 5), np.float32), 16)
    assert small.shape == (1, 1, 16, 16) and (small == 1).all()  # too small to reflect: edge-replicated
    assert crop_to(np.zeros((1, 3, 64, 96)), (16, 24), scale=4).shape == (1, 3, 64, 96)
    fixed = meta("semantic-segmentation", labels=("bg", "fg"), input_size=(1, 8, 8))
    assert task.preprocess(image, fixed).shape == (1, 1, 8, 8)  # no size_multiple: resized as before


def test_predict_notes_a_converted_image(tmp_path):
    from PIL import Image

    from zoo.preprocess import conversion_note
    from zoo.tasks.base import predict_lines

    grey, rgba = tmp_path / "grey.png", tmp_path / "rgba.png"
    Image.new("L", (8, 8), 200).save(grey)
    Image.new("RGBA", (8, 8), (1, 2, 3, 4)).save(rgba)
    assert conversion_note(grey, 3) == "grey image converted to RGB"
    assert conversion_note(grey, 1) == "" and conversion_note(rgba, 3) == "alpha channel dropped"
    m = meta("image-classification", labels=("a", "b"), input_size=(3, 8, 8))
    (line,) = predict_lines(
        get_task("image-classification"), m, [grey], lambda x: {"logits": np.zeros((1, 2))}
    )
    assert line.endswith("(note: grey image converted to RGB)") and line.startswith(f"{grey}: a 0.500")
