"""The localisation-from-tags recipe: tags read off class maps, the tag-only baselines' pieces, its config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recipes.engine import get_preset
from recipes.localization import LocalizationConfig, cam_seeded_otsu, otsu_components, scene_tags
from zoo.errors import ConfigError


def test_tags_are_the_classes_with_pixels():
    semantic = torch.zeros(3, 8, 8, dtype=torch.long)
    semantic[0, 1, 1] = 4  # digit 3
    semantic[0, 5, 5] = 10  # digit 9
    semantic[2, :, :] = 1  # digit 0 everywhere
    tags = scene_tags(semantic, 10)
    assert tags.shape == (3, 10) and tags.dtype == torch.float32
    assert tags[0].nonzero().flatten().tolist() == [3, 9]
    assert tags[1].sum() == 0 and tags[2].nonzero().flatten().tolist() == [0]


def test_otsu_components_find_the_blobs_on_either_polarity():
    image = np.full((32, 32, 3), 200, np.uint8)
    image[2:10, 3:9] = 20  # dark digits on a light background
    image[20:30, 15:18] = 20
    image[0, 31] = 20  # a one-pixel speck: under min_area
    found = otsu_components(np.stack([image, 255 - image]))
    for boxes in found:  # the same components on light-on-dark
        assert sorted(b.tolist() for b, _ in boxes) == [[3, 2, 9, 10], [15, 20, 18, 30]]
        assert sorted(a for _, a in boxes) == [30.0, 48.0]


def test_cam_seeded_otsu_scores_each_component_by_the_class_map_inside_it():
    from zoo.tasks.localization import Localization

    heatmaps = np.zeros((2, 32, 32), np.float32)
    heatmaps[0, 4:8, 4:8] = 1.0  # class 0's peak on the first blob
    heatmaps[1, 24:28, 16:17] = 0.5  # class 1's on the second
    result = Localization(
        np.array([0.9, 0.6], np.float32), np.zeros((0, 4)), np.zeros(0), np.zeros(0), heatmaps
    )
    components = [(np.array([3, 2, 9, 10], np.float32), 48.0), (np.array([15, 20, 18, 30], np.float32), 30.0)]
    ((boxes, scores, labels),) = cam_seeded_otsu([result], [components], score_thresh=0.05)
    # every component for every tag; a class's best component is the one holding its map's peak
    assert len(boxes) == 4
    for k, expected in ((0, [3, 2, 9, 10]), (1, [15, 20, 18, 30])):
        mine = np.flatnonzero(labels == k)
        np.testing.assert_array_equal(boxes[mine[np.argmax(scores[mine])]], expected)
    np.testing.assert_allclose(sorted(scores), [0.0, 0.0, 0.3, 0.9], atol=1e-6)
    # no tag above score_thresh: no boxes
    assert len(cam_seeded_otsu([result], [components], score_thresh=0.95)[0][0]) == 0


def test_preset_trains_on_tags_only_and_sweeps_on_train():
    preset = get_preset("cam_resnet8_small.scenes")
    config = preset.config
    assert config.model == "cam_resnet8_small" and config.dataset == "digit_scenes_64"
    assert config.threshold_scenes > 0 and len(config.cam_thresholds) > 1
    assert config.extra_thresholds and 0 < config.nms_iou <= 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cam_thresholds": (0.0, 0.5)}, "cam_thresholds"),
        ({"cam_thresholds": ()}, "cam_thresholds"),
        ({"threshold_scenes": 0}, "threshold_scenes"),
        ({"extra_thresholds": (0.5, 1.5)}, "extra_thresholds"),
        ({"nms_iou": 0.0}, "nms_iou"),
        ({"scale": (1.2, 1.0)}, "scale"),
        ({"degrees": -1.0}, "degrees"),
    ],
)
def test_config_refuses_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        LocalizationConfig(**changes).validate()
