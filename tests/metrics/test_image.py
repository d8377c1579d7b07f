"""`PSNR` and `SSIM` against scikit-image's reference implementations (and torchmetrics' per-image PSNR)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from zoo.metrics import PSNR, SSIM


def _pairs(seed: int, n: int, channels: int, size: int = 28, noise: float = 0.1):
    """Reference images and noisy versions whose noise differs per image (so per-image PSNR differs)."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, channels, size, size, generator=g)
    scale = noise * torch.linspace(0.2, 2.0, n)[:, None, None, None]
    return (clean + scale * torch.randn(clean.shape, generator=g)).clamp(0, 1), clean


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_is_the_mean_of_scikit_image_per_image_psnr(channels):
    m = PSNR(data_range=1.0)
    refs = []
    for seed in range(2):
        noisy, clean = _pairs(seed, 5, channels)
        m.update(noisy, clean)
        refs += [peak_signal_noise_ratio(c.numpy(), x.numpy(), data_range=1.0) for x, c in zip(noisy, clean)]
    got = m.compute()["psnr"]
    assert got == pytest.approx(np.mean(refs), abs=1e-4)
    # Not the pooled-MSE PSNR: images of unequal quality make the two differ clearly.
    mse = np.mean([10 ** (-r / 10) for r in refs])
    assert abs(got - 10 * np.log10(1 / mse)) > 0.5
    assert m.higher_is_better == {"psnr": True}


def test_psnr_uint8_range_and_torchmetrics_per_image():
    from torchmetrics.image import PeakSignalNoiseRatio

    noisy, clean = _pairs(3, 6, 3)
    noisy8, clean8 = (noisy * 255).round().to(torch.uint8), (clean * 255).round().to(torch.uint8)
    m = PSNR(data_range=255)
    m.update(noisy8, clean8)
    tm = PeakSignalNoiseRatio(data_range=255.0, dim=(1, 2, 3), reduction="elementwise_mean")
    tm.update(noisy8.float(), clean8.float())
    ref = np.mean(
        [peak_signal_noise_ratio(c.numpy(), x.numpy(), data_range=255) for x, c in zip(noisy8, clean8)]
    )
    assert m.compute()["psnr"] == pytest.approx(float(tm.compute()), abs=1e-4)
    assert m.compute()["psnr"] == pytest.approx(ref, abs=1e-4)


def test_psnr_is_the_autoencoding_recipes_number_bit_for_bit_and_finite_when_perfect():
    noisy, clean = _pairs(4, 8, 1)
    per_image = (noisy - clean).square().flatten(1).mean(1)  # recipes/autoencoding.py eval_step
    old = float((10 * torch.log10(1.0 / per_image.clamp_min(1e-10))).sum()) / 8
    m = PSNR(1.0)
    m.update(noisy, clean)
    assert m.compute()["psnr"] == old
    m.reset()
    m.update(clean, clean)
    assert m.compute()["psnr"] == pytest.approx(100.0)


@pytest.mark.parametrize(("channels", "data_range"), [(1, 1.0), (3, 1.0), (3, 255.0)])
def test_ssim_is_the_mean_of_scikit_image_ssim(channels, data_range):
    noisy, clean = _pairs(5, 6, channels, size=32)
    noisy, clean = noisy * data_range, clean * data_range
    m = SSIM(data_range=data_range)
    m.update(noisy[:4], clean[:4])
    m.update(noisy[4:], clean[4:])
    ref = [
        structural_similarity(
            x.numpy(),
            c.numpy(),
            channel_axis=0,
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for x, c in zip(noisy, clean)
    ]
    got = m.compute()["ssim"]
    assert got == pytest.approx(np.mean(ref), abs=1e-5)
    assert 0.2 < got < 0.95


def test_ssim_identical_images_and_validation():
    _, clean = _pairs(6, 3, 1)
    m = SSIM(1.0)
    m.update(clean, clean)
    assert m.compute()["ssim"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="pixels a side"):
        m.update(clean[..., :10, :10], clean[..., :10, :10])
    with pytest.raises(ValueError, match="same shape"):
        PSNR(1.0).update(clean, clean[:1])
    with pytest.raises(ValueError, match="positive"):
        PSNR(0)


def test_psnr_on_the_y_channel_with_a_border_crop_as_super_resolution_papers_report_it():
    """Y of BT.601 YCbCr (MATLAB's rgb2ycbcr, checked against scikit-image's), `crop` pixels cut a side."""
    from skimage.color import rgb2ycbcr

    from zoo.metrics.image import rgb_to_y

    noisy, clean = _pairs(3, 4, 3, size=32)
    y = rgb_to_y(clean)
    expected_y = np.stack([rgb2ycbcr(c.permute(1, 2, 0).numpy())[..., 0] / 255.0 for c in clean])
    np.testing.assert_allclose(y[:, 0].numpy(), expected_y, atol=1e-5)
    m = PSNR(data_range=1.0, y_channel=True, crop=4)
    m.update(noisy, clean)
    refs = [
        peak_signal_noise_ratio(c[0, 4:-4, 4:-4].numpy(), x[0, 4:-4, 4:-4].numpy(), data_range=1.0)
        for x, c in zip(rgb_to_y(noisy), y)
    ]
    assert m.compute()["psnr"] == pytest.approx(np.mean(refs), abs=1e-4)
    assert rgb_to_y(clean[:, :1]) is not None  # grey passes through
    with pytest.raises(ValueError, match="crop"):
        PSNR(data_range=1.0, crop=20).update(noisy, clean)
    s = SSIM(data_range=1.0, y_channel=True)
    s.update(noisy, clean)
    ref = SSIM(data_range=1.0)
    ref.update(rgb_to_y(noisy), rgb_to_y(clean))
    assert s.compute()["ssim"] == pytest.approx(ref.compute()["ssim"])
