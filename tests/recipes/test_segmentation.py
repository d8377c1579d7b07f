"""The segmentation recipe: augmentation that moves image and mask together, class weights from the
training pool, a preset that trains and publishes, and metrics equal to a direct count over the split."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import zoo
from recipes.augment import SceneAugment
from recipes.engine import Trainer, resolve_config
from recipes.segmentation import SegmentationConfig, SegmentationObjective, prediction_picture
from zoo.errors import ConfigError


def _one_hot_scene(n: int = 4, size: int = 32, classes: int = 4, seed: int = 0):
    """Blocky class maps and an image whose channels are their one-hot encoding (so bilinear resampling
    of the image and nearest resampling of the mask can be compared)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (n, size // 8, size // 8), generator=g)
    mask = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)
    image = torch.nn.functional.one_hot(mask, classes).permute(0, 3, 1, 2).float()
    return image, mask


def test_scene_augment_moves_image_and_mask_together():
    image, mask = _one_hot_scene()
    augment = SceneAugment(degrees=15, translate=0.1, scale=(0.8, 1.2))
    g = torch.Generator().manual_seed(1)
    x, y = augment(image, mask, g)
    assert x.shape == image.shape and y.shape == mask.shape and y.dtype == torch.long
    assert set(y.unique().tolist()) <= set(range(4))  # nearest resampling invents no class
    covered = x.sum(1) > 0.5  # pixels the map did not uncover (zero padding elsewhere)
    agree = (x.argmax(1) == y)[covered].float().mean()
    assert agree > 0.95, agree  # blocks' edges may differ by a pixel between bilinear and nearest
    assert (y[x.sum(1) < 1e-6] == 0).all()  # uncovered pixels are background
    # The same generator state draws the same augmentation (a resumed run replays it).
    x2, y2 = augment(image, mask, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_scene_augment_colour_only_leaves_the_mask_and_permutes_channels():
    image, mask = _one_hot_scene(classes=3)
    image = image * 0.5 + 0.25
    x, y = SceneAugment(channel_shuffle=True)(image, mask, torch.Generator().manual_seed(0))
    assert torch.equal(y, mask)
    for a, b in zip(x, image):  # each scene's channels are a permutation of its own
        assert sorted(c.sum().item() for c in a) == pytest.approx(sorted(c.sum().item() for c in b))
    assert not SceneAugment().active
    x, _ = SceneAugment(brightness=0.3, contrast=0.3)(image, mask, torch.Generator().manual_seed(0))
    assert x.min() >= 0 and x.max() <= 1


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="fresh_scenes"):
        SegmentationConfig(fresh_scenes=-1).validate()
    with pytest.raises(ConfigError, match="scale"):
        SegmentationConfig(scale=(1.2, 1.0)).validate()
    with pytest.raises(ConfigError, match="brightness"):
        SegmentationConfig(brightness=1.5).validate()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """unet_resnet8_small.scenes trained for 3 steps (fixed train scenes only, to keep it quick), published."""
    run = tmp_path_factory.mktemp("seg") / "run"
    _, config = resolve_config(
        "unet_resnet8_small.scenes",
        ["max_steps=3", "fresh_scenes=0", "pictures=2", "progress=false", "tensorboard=false"],
    )
    trainer = Trainer(SegmentationObjective(config), run_dir=run, recipe="unet_resnet8_small.scenes")
    result = trainer.fit()
    return trainer, result


def test_preset_smoke_trains_and_publishes_a_segmentation_weight(smoke):
    trainer, result = smoke
    assert result.steps == 3
    folder = result.weight_folder
    model = zoo.create_model(str(folder)).eval()
    meta = model.pretrained_weights
    assert meta.task == "semantic-segmentation" and meta.recipe == "unet_resnet8_small.scenes"
    assert meta.labels == ("background", *(str(d) for d in range(10)))
    assert meta.input_size == (3, 64, 64) and meta.ignore_index == 255 and meta.dataset == "digit_scenes_64"
    assert {"miou", "pixel_acc", "iou_background", "iou_9", "loss"} <= set(meta.metrics)
    config = json.loads((folder / "config.json").read_text())
    assert config["files"]["predictions"] == "predictions.png" and (folder / "predictions.png").is_file()
    assert "predictions.png" in (folder / "README.md").read_text()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 11, 64, 64)
    # Class weights come from the training pool: every pixel counted once, background the most common.
    objective = trainer.objective
    assert objective.train_pool.semantic.numel() == 4000 * 64 * 64
    weights = objective.class_weights
    assert weights.argmin() == 0 and weights.shape == (11,)
    # ... and the published score layer has them taken back out (logit adjustment): the trained network's
    # logits minus log w, what the run's model gives.
    trained = copy.deepcopy(trainer.eval_models()["model"]).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), trained(x) - weights.log()[None, :, None, None], atol=1e-4, rtol=0
        )
    assert "logit adjustment" in meta.description


@pytest.mark.parametrize(
    "arch, args",
    [
        ("fcn_resnet8_small", {}),
        ("deeplabv3plus_resnet8_small", {}),
        ("unet_resnet8_small", {}),
        ("unet_resnet8_small", {"coarse_identity": True}),
    ],
)
def test_logit_adjustment_shifts_every_pixels_logits(arch, args):
    """FCN's skip scores, DeepLab's bilinear resize and the U-Net's coarse identity map keep a per-class
    constant: the fold is exact."""
    from recipes.segmentation import fold_logit_adjustment

    torch.manual_seed(0)
    model = zoo.create_model(arch, num_classes=3, **args).eval()
    for p in model.parameters():  # skip score layers start at zero: give them a say
        p.data.add_(0.01 * torch.randn_like(p))
    x = torch.rand(1, 3, 64, 64)
    weights = torch.tensor([0.5, 2.0, 8.0])
    with torch.no_grad():
        before = model(x)
        fold_logit_adjustment(model, weights)
        torch.testing.assert_close(model(x), before - weights.log()[None, :, None, None], atol=1e-4, rtol=0)

    class LinearHead(torch.nn.Module):
        classifier = "head"

        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(4, 3)

    with pytest.raises(ConfigError, match="logit_adjustment=false"):
        fold_logit_adjustment(LinearHead(), weights)


def test_metrics_over_the_split_equal_a_direct_count(smoke):
    """The recipe's mIoU (accumulated batch by batch) is the mIoU of one confusion matrix over every test
    pixel, counted here with numpy; and `zoo verify`'s task evaluation measures the same."""
    trainer, result = smoke
    model = zoo.create_model(str(result.weight_folder)).eval()
    test = trainer.data.test
    mean = torch.tensor(trainer.data.info["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(trainer.data.info["std"]).view(1, 3, 1, 1)
    preds = []
    with torch.no_grad():
        for start in range(0, len(test), 250):
            images, _ = test.get_batch(torch.arange(start, min(start + 250, len(test))))
            preds.append(model((images.float() / 255 - mean) / std).argmax(1))
    pred = torch.cat(preds).numpy().ravel()
    target = test.semantic.numpy().ravel().astype(np.int64)
    confusion = np.bincount(target * 11 + pred, minlength=121).reshape(11, 11)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    assert result.metrics["miou"] == pytest.approx(np.nanmean(iou), abs=1e-6)
    assert result.metrics["pixel_acc"] == pytest.approx(tp.sum() / confusion.sum(), abs=1e-6)
    assert result.metrics["iou_background"] == pytest.approx(iou[0], abs=1e-6, nan_ok=True)
    assert result.metrics["iou_3"] == pytest.approx(iou[4], abs=1e-6, nan_ok=True)

    from zoo.evaluation import compare, evaluation_split, measure

    meta = model.pretrained_weights
    inputs, targets = evaluation_split(meta, limit=None)
    assert targets.shape == (1000, 64, 64)

    @torch.no_grad()
    def run(x):
        return {"logits": model(torch.from_numpy(x)).numpy()}

    measured, _ = measure(run, meta, inputs, targets)
    rows = compare(measured, meta.metrics, len(inputs))
    assert {r[0] for r in rows} >= {"miou", "pixel_acc", "iou_background"} and all(r[4] for r in rows), rows


def test_prediction_picture_has_a_row_per_scene(smoke, tmp_path):
    from PIL import Image

    trainer, result = smoke
    model = zoo.create_model(str(result.weight_folder)).eval()
    path = prediction_picture(
        model, trainer.data.test, trainer.data.info, tmp_path / "p.png", count=3, zoom=2
    )
    width, height = Image.open(path).size
    assert width == 3 * (64 * 2 + 2) + 2 and height > 3 * (64 * 2 + 2)


@pytest.mark.parametrize("loss", ["ce", "weighted_ce", "dice", "focal"])
def test_every_loss_trains_a_step(smoke, loss):
    trainer, _ = smoke
    objective = trainer.objective
    objective.config.loss = loss
    objective.__dict__.pop("_weights", None)
    try:
        _, target = trainer.data.train.get_batch(torch.arange(4))
        logits = torch.randn(4, 11, 64, 64, requires_grad=True)
        value = objective._loss(logits, target)
        value.backward()
        assert torch.isfinite(value) and logits.grad.abs().sum() > 0
        assert (objective.class_weights is not None) == (loss == "weighted_ce")
    finally:
        objective.config.loss = "ce_dice"
        objective.__dict__.pop("_weights", None)


def test_a_smoke_run_renders_a_batch_worth_of_each_composition():
    # eval_limit (the presets' smoke runs): the first max(eval_limit, batch_size) scenes of each of the
    # 1 + fresh_scenes compositions, the same scenes a full run would render first.
    from zoo.data import DigitScenes

    _, config = resolve_config("unet_resnet8_small.scenes", ["eval_limit=8", "progress=false"])
    data = SegmentationObjective(config).data()
    count = max(8, config.batch_size)
    assert config.fresh_scenes and len(data.train) == count * (1 + config.fresh_scenes)
    assert f"trained on the first {count} scenes of {1 + config.fresh_scenes} compositions" in data.split
    _, semantic = data.train.get_batch(
        torch.tensor([count])
    )  # the first scene of the first fresh composition
    fresh = DigitScenes("train", 4000, start=4000).scene(0).semantic
    assert torch.equal(semantic[0], torch.from_numpy(fresh).long())


def test_evaluating_a_weight_never_renders_the_training_pool(monkeypatch):
    """Setting the objective up for an evaluation (the published-weight re-measure, ``zoo verify``) draws
    only the test scenes; the training compositions are rendered when a train step first asks."""
    import recipes.segmentation as seg

    rendered = []
    monkeypatch.setattr(seg, "_render", lambda train, copies: rendered.append(copies))
    _, config = resolve_config("unet_resnet8_small.scenes", ["progress=false"])
    objective = SegmentationObjective(config)
    data = objective.data()
    assert len(data.train) == 4000 * (1 + config.fresh_scenes) and rendered == []
