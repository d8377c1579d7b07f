"""The restoration objective: each mode's data, the refusal of contradicting configs, and a smoke run whose
recorded metrics are what ``zoo verify`` re-measures from the weight's ``degradation`` alone.

(`tests/recipes/test_presets.py` also runs every preset, these included, for two steps.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from recipes.engine import resolve_config, train
from recipes.restoration import RestorationObjective
from zoo.errors import ConfigError

FAST = ["progress=false", "tensorboard=false", "max_steps=2", "patch_size=32"]


def _objective(recipe: str, *overrides: str) -> RestorationObjective:
    preset, config = resolve_config(recipe, list(overrides))
    return preset.objective(config)


def test_super_resolution_data_pairs_pil_downscales_with_their_patches():
    objective = _objective("espcn_x4.photos")
    data = objective.data()
    lr, hr = data.train.get_batch(torch.arange(3))
    assert hr.shape == (3, 3, 96, 96) and lr.shape == (3, 3, 24, 24)
    assert torch.allclose(lr * 255, (lr * 255).round(), atol=1e-4)  # quantised like an image file
    test_lr, test_hr = data.test.get_batch(torch.arange(33))
    assert test_hr.shape == (33, 3, 128, 128) and test_lr.shape == (33, 3, 32, 32)
    assert objective.degradation() == {"downscale": 4, "kernel": "bicubic"}
    assert data.name == "photos_128" and "coffee, coins, flower" in data.split


def test_colorization_trains_on_colour_photos_only():
    objective = _objective("colorization_unet.photos")
    data = objective.data()
    lightness, ab = data.train.get_batch(torch.arange(4))
    assert lightness.shape == (4, 1, 64, 64) and ab.shape == (4, 2, 64, 64)
    assert all(
        name not in data.split.split("training reads")[1] for name in ("camera", "moon", "page", "text")
    )
    assert data.info["input_size"] == (1, 64, 64)


def test_denoising_tests_every_reported_sigma_on_the_same_clean_patches():
    objective = _objective("dncnn.photos")
    data = objective.data()
    noisy, clean, others = data.test.get_batch(torch.arange(5))
    assert others.shape == (5, 2, 3, 128, 128) and objective.other_sigmas == [15.0, 50.0]
    for sigma, x in ((25, noisy), (15, others[:, 0]), (50, others[:, 1])):
        assert abs(float((x - clean).std()) * 255 - sigma) < 0.1 * sigma
    assert set(objective.metrics("test")) == {
        "psnr",
        "ssim",
        "psnr_sigma15",
        "ssim_sigma15",
        "psnr_sigma50",
        "ssim_sigma50",
    }


@pytest.mark.parametrize(
    ("recipe", "override", "match"),
    [
        ("espcn_x2.photos", "scale=4", "upscales x2"),
        ("espcn_x2.photos", "model=dncnn", "upscales x1"),
    ],
)
def test_a_model_that_contradicts_the_mode_is_refused(recipe, override, match):
    objective = _objective(recipe, override)
    with pytest.raises(ConfigError, match=match):
        objective.build(objective.data())


def test_patch_sizes_must_fit_the_scale():
    with pytest.raises(ConfigError, match="scale"):
        resolve_config("edsr_x4.photos", ["patch_size=90"])


def test_smoke_run_records_what_verify_re_measures(tmp_path):
    """Two steps of a tiny denoiser: the weight records its degradation, a picture and the sigmas, and the
    task rebuilds the same noisy test inputs from that record (the recipe's numbers are verify's)."""
    from zoo.evaluation import verify

    overrides = [*FAST, "model_args.depth=3", "model_args.width=8"]
    result = train("dncnn.photos", overrides, out=tmp_path / "run")
    folder = result.weight_folder
    config = json.loads((folder / "config.json").read_text())
    weights = config["weights"]
    assert weights["degradation"] == {"noise_std": 25.0} and weights["size_multiple"] == 1
    assert weights["tile_overlap"] == 3 and weights["dataset"] == "photos_128"
    assert config["files"]["examples"] == "examples.png" and (folder / "examples.png").is_file()
    assert {"psnr", "ssim", "psnr_sigma15", "psnr_sigma50"} <= set(result.metrics)
    assert result.metrics["psnr_sigma15"] > result.metrics["psnr"] > result.metrics["psnr_sigma50"]
    report = verify(str(folder))
    assert report.ok, report.summary()
    assert {row[0] for row in report.rows} == {"psnr", "ssim"}


def test_an_untrained_super_resolution_model_scores_as_bicubic(tmp_path):
    """The SR models start at bicubic (zero residual): the recipe's evaluation of it is bicubic's score."""
    from PIL import Image

    from zoo.tasks.image_to_image import degrade

    objective = _objective("espcn_x2.photos")
    data = objective.data()
    model = zoo.create_model("espcn_x2").eval()
    lr, hr = data.test.get_batch(torch.arange(6))
    with torch.no_grad():
        out = model(lr)
    metrics = objective.metrics("test")
    metrics["psnr"].update(out, hr)
    images = (hr.numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    inputs, _ = degrade(images, objective.degradation())
    np.testing.assert_allclose(inputs, lr.numpy(), atol=1e-6)
    pil = np.stack(
        [
            np.stack(
                [
                    np.asarray(Image.fromarray(c).resize((128, 128), Image.BICUBIC))
                    for c in im.transpose(2, 0, 1)
                ]
            )
            for im in (inputs.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
        ]
    )
    reference = objective.metrics("test")["psnr"]
    reference.update(torch.from_numpy(pil / 255.0).float(), hr)
    # torch's bicubic (the model's skip) and PIL's differ slightly; both are "bicubic".
    assert abs(metrics["psnr"].compute()["psnr"] - reference.compute()["psnr"]) < 0.5


def test_colour_augmentation_of_clean_patches():
    """Saturation scaled and clipped, channels shuffled, blur on about half the patches; off by default."""
    from types import SimpleNamespace

    from recipes.restoration import DenoiseConfig, DenoiseObjective

    clean = torch.rand(64, 3, 16, 16) * 0.5 + 0.25
    ctx = SimpleNamespace(generator=torch.Generator().manual_seed(0))

    def denoise(**changes: object) -> DenoiseObjective:
        config = DenoiseConfig(**changes)
        config.validate()
        return DenoiseObjective(config)

    assert _objective("espcn_x2.photos").augment_clean(ctx, clean) is clean
    assert denoise().augment_clean(ctx, clean) is clean  # the config's defaults: no augmentation
    for preset in ("dncnn.photos", "unet_denoiser.photos"):  # their presets augment
        assert _objective(preset).augment_clean(ctx, clean) is not clean
    saturated = denoise(saturation=(3.0, 3.0)).augment_clean(ctx, clean)
    grey = clean.mean(1, keepdim=True)
    torch.testing.assert_close(saturated, (grey + 3 * (clean - grey)).clamp(0, 1))
    assert (saturated == 0).any() and (saturated == 1).any()  # clipped channels, as in the test flowers
    shuffled = denoise(channel_shuffle=True).augment_clean(ctx, clean)
    assert sorted(shuffled.sum((0, 2, 3)).tolist()) == pytest.approx(sorted(clean.sum((0, 2, 3)).tolist()))
    blurred = denoise(max_blur=2.0).augment_clean(ctx, clean)
    changed = (blurred != clean).flatten(1).any(1)
    assert 16 < int(changed.sum()) < 48
    assert blurred[changed].std() < clean[changed].std()  # smoother
    with pytest.raises(ConfigError, match="saturation"):
        _objective("unet_denoiser.photos", "saturation=[2.0,1.0]")
    with pytest.raises(ConfigError, match="only denoises"):
        _objective("unet_denoiser.photos", "mode=colorize")
    with pytest.raises(ConfigError, match="only denoises"):
        _objective("dncnn.photos", "mode=super_resolution")


def test_colour_train_photos_leave_out_the_grey_ones():
    data = _objective("unet_denoiser.photos", "train_photos=colour").data()
    used = data.split.split("training reads")[1]
    assert all(name not in used for name in ("camera", "moon", "page", "text")) and "chelsea" in used


def test_restoration_cards_cite_each_models_own_papers():
    """`zoo.models.restoration` holds several families: each class names its papers, not the whole file's."""
    from recipes.classification import family_papers
    from zoo.factory import create_model
    from zoo.models.restoration import DNCNN, EDSR_PAPER, ESPCN_PAPER, VDSR
    from zoo.models.unet import PAPER as UNET

    assert family_papers(create_model("dncnn")) == [DNCNN]
    assert family_papers(create_model("unet_denoiser")) == [UNET, DNCNN]
    assert family_papers(create_model("espcn_x2")) == [ESPCN_PAPER, VDSR]
    assert family_papers(create_model("edsr_x4")) == [EDSR_PAPER, VDSR]
    assert family_papers(create_model("unet_small")) == [UNET]  # a family file with one PAPER
