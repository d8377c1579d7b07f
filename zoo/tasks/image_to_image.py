"""Image-to-image: an image in, an image out (autoencoding, denoising, super-resolution, colorization).

The output is in the input's pixel space: the weight's normalisation is undone and values are clipped to
[0, 1] before becoming uint8. A super-resolution weight records ``scale`` (output size / input size). A
graph that outputs a latent code (an autoencoder's ``encoder``) gives the code through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import DEFAULT_ATOL, DEFAULT_RTOL, Agreement, Task, WeightField, crop_to

__all__ = ["ImageToImage", "to_uint8_images"]


def to_uint8_images(x: np.ndarray, input_size: Sequence[int] | None, mean=None, std=None) -> list[np.ndarray]:
    """(B, C, H, W) float outputs in the input's pixel space -> (H, W, C) uint8 images.

    Undoes the weight's normalisation (``x * std + mean``) when it has one, then clips to [0, 1]. A flat
    (B, C*H*W) output is reshaped to `input_size` first.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        if not input_size:
            raise ValueError(f"a flat output {x.shape} needs the weight's input_size to become images")
        x = x.reshape(len(x), *input_size)
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {x.shape}")
    x = x.transpose(0, 2, 3, 1)
    if mean is not None and std is not None:
        x = x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return list((np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@register_task
class ImageToImage(Task):
    name = "image-to-image"
    pipeline_tag = "image-to-image"
    aliases = ("autoencoding",)  # the autoencoder's task before tasks were objects (old files say it)
    summary = "an image in, an image out: reconstruction, denoising, super-resolution, colorization"
    weight_fields = (
        WeightField("scale", 1, "output height and width over the input's (super-resolution)", (int,)),
        WeightField(
            "size_multiple", None, "the model takes any size that is a multiple of this (padded, cropped back)", (int,)
        ),
        WeightField(
            "degradation",
            None,
            "what the model undoes, e.g. {'noise_std': 0.2} or {'downscale': 2}, for pictures and metrics",
            (dict,),
        ),
    )
    headline_metrics = (("mse", "MSE", "{:.4f}"), ("psnr", "PSNR (dB)", "{:.2f}"))
    output_names = ("image",)
    outputs_doc = {"image": "(N, C, H*scale, W*scale) in the input's normalised pixel space"}

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        for key, value in outputs.items():
            if key != "latent" and np.ndim(value) in (2, 4):
                if np.ndim(value) == 4:  # undo the preprocessing's padding (scaled for super-resolution)
                    value = crop_to(value, options.get("source_size"), getattr(meta, "scale", 1) or 1)
                size = _output_size(meta, value)
                return to_uint8_images(value, size, meta.mean, meta.std)
        if "latent" in outputs:
            return list(outputs["latent"])
        return super().postprocess(outputs, meta, **options)

    def describe(
        self,
        result: Any,
        source: str,
        *,
        out_dir: Path | None = None,
        output_names: tuple[str, ...] = ("image",),
        **options: Any,
    ) -> str:
        output_name = next((n for n in output_names if n != "latent"), "image")
        if np.asarray(result).dtype != np.uint8:  # a latent code
            return f"{source}: latent " + " ".join(f"{v:.4f}" for v in np.ravel(result))
        if out_dir is None:
            from zoo.errors import ConfigError

            raise ConfigError(f"{self.name} predictions are images: pass --out DIR to write them")
        from zoo.tasks.draw import save_png

        target = save_png(result, Path(out_dir) / f"{Path(source).stem}_{output_name}.png")
        return f"{source}: {output_name} -> {target}"

    def metrics(self, meta: Any) -> dict[str, Any]:
        from zoo.metrics import PSNR, SSIM

        return {"psnr": PSNR(data_range=1.0), "ssim": SSIM(data_range=1.0)}

    def evaluation_pairs(self, images: np.ndarray, labels: Any, meta: Any) -> tuple[np.ndarray, Any]:
        """Reconstruction: the target is the input image itself, in [0, 1] pixel space."""
        inputs, _ = super().evaluation_pairs(images, labels, meta)
        return inputs, images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0

    def update_metrics(
        self, metrics: Mapping[str, Any], outputs: Mapping[str, np.ndarray], targets: Any, meta: Any
    ) -> None:
        """Outputs are compared in pixel space: the weight's normalisation is undone first."""
        import torch

        key = next(k for k, v in outputs.items() if k != "latent" and np.ndim(v) in (2, 4))
        value = np.asarray(outputs[key], np.float32)
        target = np.asarray(targets, np.float32)
        value = value.reshape(target.shape)
        if meta.mean is not None and meta.std is not None:
            shape = (1, -1, 1, 1)
            value = value * np.asarray(meta.std, np.float32).reshape(shape) + np.asarray(meta.mean).reshape(
                shape
            )
        for metric in metrics.values():
            metric.update(torch.from_numpy(value), torch.from_numpy(target))

    def agreement(
        self,
        expected: Mapping[str, np.ndarray],
        actual: Mapping[str, np.ndarray],
        meta: Any,
        *,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> Agreement:
        """Scaled parity, and the uint8 images the two runtimes write differ by at most one grey level."""
        base = super().agreement(expected, actual, meta, atol=atol, rtol=rtol)
        for key, want in expected.items():
            if key == "latent" or np.ndim(want) != 4:
                continue
            a = np.stack(to_uint8_images(want, None, meta.mean, meta.std)).astype(np.int16)
            b = np.stack(to_uint8_images(actual[key], None, meta.mean, meta.std)).astype(np.int16)
            base.values["max_grey_levels"] = float(np.abs(a - b).max())
            base.values["psnr_db"] = _psnr(a, b)
            base.ok = base.ok and base.values["max_grey_levels"] <= 1
        return base


def _output_size(meta: Any, value: np.ndarray) -> Sequence[int] | None:
    size = meta.input_size
    if not size or np.ndim(value) != 2:
        return size
    scale = getattr(meta, "scale", 1) or 1
    return (size[0], size[1] * scale, size[2] * scale)
