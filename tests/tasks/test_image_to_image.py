"""The image-to-image task's numpy side, shared by PyTorch and the torch-free runtime: Lab conversions,
the degradations that rebuild a weight's test inputs, tiled inference, and `zoo predict` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from tests.helpers import build
from zoo.tasks import get_task
from zoo.tasks.image_to_image import (
    AB_RANGE,
    _pil_grey,
    degrade,
    grey_lightness,
    lab_to_rgb,
    rgb_to_lab,
    tiled_run,
    to_uint8_images,
)

skimage_color = pytest.importorskip("skimage.color")


# ------------------------------------------------------------------------------------------ colour
def test_lab_conversions_match_scikit_image():
    rng = np.random.default_rng(0)
    rgb = rng.random((40, 50, 3))
    np.testing.assert_allclose(rgb_to_lab(rgb), skimage_color.rgb2lab(rgb), atol=1e-10)
    lab = skimage_color.rgb2lab(rgb)
    np.testing.assert_allclose(lab_to_rgb(lab), skimage_color.lab2rgb(lab), atol=1e-10)
    np.testing.assert_allclose(lab_to_rgb(lab), rgb, atol=1e-10)  # a round trip
    # Out-of-gamut Lab (what a model may predict) is clipped to [0, 1] exactly as scikit-image does.
    wild = np.stack([rng.uniform(0, 100, 500), rng.uniform(-128, 127, 500), rng.uniform(-128, 127, 500)], -1)
    with np.errstate(all="ignore"), pytest.warns(UserWarning):
        expected = skimage_color.lab2rgb(wild)
    np.testing.assert_allclose(lab_to_rgb(wild), expected, atol=1e-10)


def test_grey_lightness_is_the_lightness_of_grey_rgb():
    grey = np.linspace(0, 1, 256)
    expected = skimage_color.rgb2lab(np.stack([grey] * 3, -1)[None])[0, :, 0]
    np.testing.assert_allclose(grey_lightness(grey), expected, atol=1e-10)


def test_grey_is_read_as_pil_converts_a_colour_file():
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_pil_grey(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


# ------------------------------------------------------------------------------------------ degradations
def _images(n=2, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_noise_is_seeded_and_has_the_recorded_sigma():
    images = _images(4, 64)
    noisy, clean = degrade(images, {"noise_std": 25})
    again, _ = degrade(images, {"noise_std": 25})
    np.testing.assert_array_equal(noisy, again)  # every caller sees the same test inputs
    np.testing.assert_allclose(clean, images.transpose(0, 3, 1, 2) / 255.0, atol=1e-7)
    assert abs(float((noisy - clean).std()) * 255 - 25) < 0.5
    other, _ = degrade(images, {"noise_std": 25}, seed=1)
    assert not np.allclose(noisy, other)


def test_downscale_is_pil_bicubic_to_uint8():
    from PIL import Image

    images = _images(2, 34)  # not a multiple of 4: cropped to 32 first
    small, big = degrade(images, {"downscale": 4, "kernel": "bicubic"})
    assert small.shape == (2, 3, 8, 8) and big.shape == (2, 3, 32, 32)
    expected = np.asarray(Image.fromarray(images[1, :32, :32, 0]).resize((8, 8), Image.BICUBIC)) / 255.0
    np.testing.assert_allclose(small[1, 0], expected, atol=1e-7)
    with pytest.raises(ValueError, match="bicubic"):
        degrade(images, {"downscale": 2, "kernel": "gaussian"})


def test_colorize_gives_lightness_in_and_ab_out():
    images = _images(2, 16)
    lightness, ab = degrade(images, {"colorize": "lab"})
    assert lightness.shape == (2, 1, 16, 16) and ab.shape == (2, 2, 16, 16)
    lab = skimage_color.rgb2lab(images / 255.0)
    np.testing.assert_allclose(ab, lab[..., 1:].transpose(0, 3, 1, 2) / AB_RANGE + 0.5, atol=1e-6)
    grey = _pil_grey(images) / 255.0
    np.testing.assert_allclose(lightness[:, 0], grey_lightness(grey) / 100, atol=1e-6)
    assert ab.min() >= 0 and ab.max() <= 1 and lightness.min() >= 0 and lightness.max() <= 1


def test_unknown_degradation_is_refused():
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(_images(), {"blur": 2})


# ------------------------------------------------------------------------------------------ tiling
def _torch_run(model):
    @torch.no_grad()
    def run(x):
        return {"image": model(torch.from_numpy(x)).numpy()}

    return run


@pytest.mark.parametrize(
    ("name", "size", "kwargs"),
    [
        ("dncnn", (1, 3, 70, 83), {}),
        ("dncnn", (1, 3, 70, 83), {"self_ensemble": True}),  # each symmetry sees the same context
        ("edsr_x2", (1, 3, 45, 61), {}),
    ],
)
def test_tiles_stitch_to_the_untiled_output(name, size, kwargs):
    torch.manual_seed(0)
    model = build(name, **kwargs).eval()
    for m in model.modules():  # zero-initialised output layers would make any stitching look right
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.05)
    x = np.random.default_rng(0).random(size, dtype=np.float32)
    run = _torch_run(model)
    whole = run(x)["image"]
    calls = []

    def counted(t):
        calls.append(t.shape)
        return run(t)

    tiled = tiled_run(counted, x, tile=2 * model.receptive_radius + 12, overlap=model.receptive_radius)
    assert len(calls) > 4 and max(max(c[-2:]) for c in calls) <= 2 * model.receptive_radius + 12
    np.testing.assert_allclose(tiled["image"], whole, atol=1e-5)
    # Too little overlap shows the seams: the test above would catch a stitching that ignores context.
    seams = tiled_run(run, x, tile=24, overlap=1)["image"]
    assert np.abs(seams - whole).max() > 1e-3


def test_tiling_keeps_windows_on_the_size_multiple_and_passes_small_images_through():
    seen = []

    def run(t):
        seen.append(t.shape[-2:])
        return {"out": t + 1}

    x = np.random.default_rng(0).random((1, 1, 96, 72), dtype=np.float32)
    np.testing.assert_array_equal(tiled_run(run, x, tile=40, overlap=8, multiple=8)["out"], x + 1)
    assert len(seen) > 4 and all(h % 8 == 0 and w % 8 == 0 for h, w in seen)
    x = np.random.default_rng(0).random((1, 1, 100, 70), dtype=np.float32)  # not multiples: still covered
    np.testing.assert_array_equal(tiled_run(run, x, tile=36, overlap=8, multiple=8)["out"], x + 1)
    seen.clear()
    tiled_run(run, x, tile=0)
    tiled_run(run, x, tile=128)
    assert seen == [(100, 70), (100, 70)]
    with pytest.raises(ValueError, match="no core"):
        tiled_run(run, x, tile=16, overlap=8)


def test_uint8_conversion_in_bands_equals_the_direct_one():
    x = np.random.default_rng(0).normal(0.5, 0.6, (2, 3, 600, 9)).astype(np.float32)
    direct = (np.clip(x.transpose(0, 2, 3, 1), 0, 1) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(np.stack(to_uint8_images(x, None)), direct)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    direct = np.clip(x.transpose(0, 2, 3, 1) * np.float32(std) + np.float32(mean), 0, 1)
    np.testing.assert_array_equal(
        np.stack(to_uint8_images(x, None, mean, std)), (direct * 255).round().astype(np.uint8)
    )


# ------------------------------------------------------------------------------------------ task
def test_super_resolution_metrics_score_luma_with_a_border_cut():
    meta = zoo.registry.Weights(
        arch="espcn_x2",
        tag="t",
        task="image-to-image",
        task_fields={"scale": 2, "degradation": {"downscale": 2}},
    )
    metrics = get_task("image-to-image").metrics(meta)
    assert metrics["psnr"].y_channel and metrics["psnr"].crop == 2 and metrics["ssim"].y_channel
    plain = get_task("image-to-image").metrics(meta.replace(task_fields={}))
    assert not plain["psnr"].y_channel and plain["psnr"].crop == 0


def _save_weight(tmp_path, name, degradation, **kwargs):
    model = build(name, **kwargs).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.02)
    channels = model.input_size[0]
    meta = {"task": "image-to-image", "input_size": [channels, 32, 32], "degradation": degradation}
    return model, zoo.save_pretrained(model, tmp_path / f"{name}.local", weights=meta)


def _photo(path, size=(45, 37), mode="RGB"):
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def test_a_saved_weight_records_the_fields_tiling_needs(tmp_path):
    model, folder = _save_weight(tmp_path, "edsr_x2", {"downscale": 2, "kernel": "bicubic"})
    weights = json.loads((folder / "config.json").read_text())["weights"]
    assert weights["scale"] == 2 and weights["size_multiple"] == 1
    assert weights["tile_overlap"] == model.receptive_radius


@pytest.mark.parametrize("tile", [0, 24])
def test_predict_writes_the_upscaled_image_tiled_or_not(tmp_path, tile):
    from PIL import Image

    from zoo.predict import predict_files

    model, folder = _save_weight(tmp_path, "espcn_x2", {"downscale": 2, "kernel": "bicubic"})
    image = _photo(tmp_path / "photo.png")
    (line,) = predict_files(str(folder), [image], out_dir=tmp_path / "out", tile=tile)
    written = np.asarray(Image.open(tmp_path / "out" / "photo_upscaled.png"))
    assert "upscaled" in line and written.shape == (74, 90, 3)
    x = torch.from_numpy(np.asarray(Image.open(image)).transpose(2, 0, 1)[None] / 255.0).float()
    with torch.no_grad():
        expected = np.stack(to_uint8_images(model(x).numpy(), None))[0]
    assert np.abs(written.astype(int) - expected).max() <= 1


def test_predict_colorizes_a_grey_photo(tmp_path):
    from PIL import Image

    from zoo.predict import predict_files

    _, folder = _save_weight(tmp_path, "colorization_unet", {"colorize": "lab"})
    image = _photo(tmp_path / "grey.png", mode="L")
    (line,) = predict_files(str(folder), [image], out_dir=tmp_path / "out")
    written = np.asarray(Image.open(tmp_path / "out" / "grey_colorized.png"))
    assert "colorized" in line and written.shape == (37, 45, 3)
    # The lightness is the input's: converting back to Lab gives the grey image's L (to uint8 rounding).
    grey = np.asarray(Image.open(image)) / 255.0
    lab = skimage_color.rgb2lab(written / 255.0)
    assert np.abs(lab[..., 0] - grey_lightness(grey)).mean() < 1.5


def test_zoo_predict_on_the_published_denoiser_both_runtimes(tmp_path):
    """`zoo predict dncnn.photos img.png --out DIR` writes the denoised image; `--onnx` the same, torch-free
    (to a grey level), tiled here so the tiles' stitching runs in both runtimes."""
    from PIL import Image

    from export.onnx import to_onnx
    from zoo.cli import main

    if "dncnn.photos" not in zoo.list_models(pretrained=True):
        pytest.skip("dncnn.photos is not published in this checkout")
    image = _photo(tmp_path / "noisy.png", size=(70, 50))
    assert (
        main(["predict", "dncnn.photos", str(image), "--out", str(tmp_path / "torch"), "--tile", "40"]) == 0
    )
    onnx_file = tmp_path / "dncnn.onnx"
    to_onnx("dncnn.photos", onnx_file)
    assert main(["predict", "--onnx", str(onnx_file), str(image), "--out", str(tmp_path / "ort")]) == 0
    a = np.asarray(Image.open(tmp_path / "torch" / "noisy_denoised.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "ort" / "noisy_denoised.png")).astype(int)
    assert a.shape == (50, 70, 3) and np.abs(a - b).max() <= 1
    assert np.abs(a - np.asarray(Image.open(image)).astype(int)).mean() > 1  # it changed the picture


SELF_ENSEMBLE_ROW = "self_ensemble = true"


@pytest.mark.parametrize("name", ["dncnn.photos", "unet_denoiser.photos"])
def test_denoiser_cards_self_ensemble_row_is_measured(name):
    """The card's self-ensemble ablation is the published weight run with ``self_ensemble=True`` (a keyword
    any weight takes: it changes how the network runs, not its parameters), on the full test split."""
    from zoo.evaluation import evaluation_split, measure
    from zoo.models.base import named_outputs

    if name not in zoo.list_models(pretrained=True):
        pytest.skip(f"{name} is not published in this checkout")
    model = zoo.create_model(name, pretrained=True, self_ensemble=True).eval()
    meta = model.pretrained_weights
    row = next(v for k, v in meta.ablations.items() if k.startswith(SELF_ENSEMBLE_ROW))
    inputs, targets = evaluation_split(meta)

    @torch.no_grad()
    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return named_outputs(model, model(torch.from_numpy(x)), meta.task_object)

    measured, _ = measure(run, meta, inputs, targets)
    assert measured["psnr"] == pytest.approx(row["psnr"], abs=1e-3)
    assert measured["ssim"] == pytest.approx(row["ssim"], abs=1e-4)
    assert row["psnr"] > meta.metrics["psnr"]  # the symmetries' mean beats one pass
    model.train()  # training runs one pass: the ensemble is for evaluation only
    x = torch.from_numpy(inputs[:1])
    torch.testing.assert_close(model(x), x - model.noise(x))
