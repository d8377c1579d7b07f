"""Image-to-image quality (reconstruction, denoising, super-resolution): PSNR and SSIM, each the mean over
the split's images of a per-image value."""

from __future__ import annotations

import math

import torch

from zoo.metrics.base import Metric

# PSNR of a perfect reconstruction is infinite; the MSE is floored so that one such image cannot make the
# split's mean infinite (the floor caps a [0, 1] image at 100 dB).
MSE_FLOOR = 1e-10


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) luma Y of ITU-R BT.601 YCbCr in [16/255, 235/255], the
    channel super-resolution papers score (MATLAB's ``rgb2ycbcr``, which their evaluation code uses). A
    1-channel batch is returned as it is (already grey)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"the Y channel needs RGB (3-channel) images, got {x.shape[1]} channels")
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x * weights).sum(1, keepdim=True) + 16.0) / 255.0


def _check_images(outputs: torch.Tensor, targets: torch.Tensor, name: str) -> None:
    if outputs.shape != targets.shape or outputs.ndim != 4:
        raise ValueError(
            f"{name} takes two (N, C, H, W) batches of the same shape, got {tuple(outputs.shape)} and "
            f"{tuple(targets.shape)}"
        )


class _PerImageMean(Metric):
    """Sum and count of a per-image value, accumulated in float64 (as `Mean`)."""

    name: str

    def __init__(self, data_range: float):
        super().__init__()
        if data_range <= 0:
            raise ValueError(f"data_range must be positive, got {data_range}")
        self.data_range = float(data_range)
        self.higher_is_better = {self.name: True}
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.float64))

    def _add(self, per_image: torch.Tensor) -> None:
        # Summed in float32 first, as the recipes' (sum, count) evaluation did: the same floats as before.
        self.total += per_image.sum().to(self.total.device, torch.float64)
        self.count += per_image.numel()

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        total, count = float(state["total"]), float(state["count"])
        return {self.name: total / count if count else math.nan}


class PSNR(_PerImageMean):
    """Peak signal-to-noise ratio in dB, averaged over images.

    For each image, with its mean squared error over all channels and pixels::

        psnr = 10 * log10(data_range**2 / max(mse, 1e-10))

    and the split's value is the mean of the per-image PSNRs: what papers on image restoration report
    (e.g. `Zhang et al. 2017, DnCNN <https://arxiv.org/abs/1608.03981>`_). It is *not* the PSNR of the
    MSE pooled over the split (torchmetrics' ``PeakSignalNoiseRatio`` default), which weighs the worst
    images more. `data_range` is the span of valid pixel values (1.0 for [0, 1], 255 for uint8); both
    inputs are cast to float32.

    It is computed here rather than with torchmetrics' per-image PSNR (``dim=(1, 2, 3)``, the same
    definition, which `tests/metrics/test_image.py` checks) so that it is bit-for-bit the formula the
    published autoencoders' numbers were measured with, and so that a perfect image gives a finite value.

    Super-resolution papers score differently, and ``y_channel=True, crop=scale`` does as they do (e.g.
    `Lim et al. 2017, EDSR <https://arxiv.org/abs/1707.02921>`_): only the luma Y of BT.601 YCbCr
    (`rgb_to_y`, with data_range 1 for [0, 1] images), and ``crop`` pixels cut from every border first,
    where an upsampler lacks the context it has inside the image.
    """

    name = "psnr"

    def __init__(self, data_range: float, y_channel: bool = False, crop: int = 0):
        super().__init__(data_range)
        if crop < 0:
            raise ValueError(f"crop must be >= 0, got {crop}")
        self.y_channel, self.crop = y_channel, int(crop)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        _check_images(outputs, targets, "PSNR")
        if self.y_channel:
            outputs, targets = rgb_to_y(outputs.float()), rgb_to_y(targets.float())
        if self.crop:
            c = self.crop
            if min(outputs.shape[-2:]) <= 2 * c:
                raise ValueError(f"PSNR with crop {c} needs images over {2 * c} pixels a side")
            outputs, targets = outputs[..., c:-c, c:-c], targets[..., c:-c, c:-c]
        per_image = (outputs.detach().float() - targets.detach().to(outputs.device).float()).square()
        mse = per_image.flatten(1).mean(1)
        self._add(10 * torch.log10(self.data_range**2 / mse.clamp_min(MSE_FLOOR)))


class SSIM(_PerImageMean):
    """Structural similarity (`Wang et al. 2004 <https://doi.org/10.1109/TIP.2003.819861>`_), averaged over
    images.

    Per image, the mean over pixels of::

        ssim = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

    with local statistics under a Gaussian window (`sigma` 1.5, truncated at 3.5 sigma: 11x11),
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = data_range``, averaged over channels and over the pixels
    where the window lies inside the image (a 5-pixel border is left out); the split's value is the mean
    over images. The map is torchmetrics' ``structural_similarity_index_measure``; the cropped mean is
    scikit-image's ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``, which
    torchmetrics' own mean (border included) is not.
    """

    name = "ssim"

    def __init__(self, data_range: float, sigma: float = 1.5, y_channel: bool = False):
        super().__init__(data_range)
        self.sigma = sigma
        self.y_channel = y_channel  # score the luma Y only (`rgb_to_y`), as super-resolution papers do
        # torchmetrics' window: a Gaussian truncated at 3.5 sigma, as scikit-image's (11 wide for 1.5).
        self.border = int(3.5 * sigma + 0.5)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        from torchmetrics.functional.image import structural_similarity_index_measure

        _check_images(outputs, targets, "SSIM")
        if self.y_channel:
            outputs, targets = rgb_to_y(outputs.float()), rgb_to_y(targets.float())
        b = self.border
        if min(outputs.shape[-2:]) <= 2 * b:
            raise ValueError(f"SSIM with sigma {self.sigma} needs images over {2 * b} pixels a side")
        _, full = structural_similarity_index_measure(
            outputs.detach().float(),
            targets.detach().to(outputs.device).float(),
            sigma=self.sigma,
            data_range=self.data_range,
            reduction="none",
            return_full_image=True,
        )
        # torchmetrics averages the whole map, border included, where the window reads reflected padding;
        # Wang et al. and scikit-image average only where the window lies inside the image. Crop to that.
        self._add(full[..., b:-b, b:-b].flatten(1).mean(1))
