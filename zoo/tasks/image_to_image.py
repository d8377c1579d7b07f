"""Image-to-image: an image in, an image out (autoencoding, denoising, super-resolution, colorization).

The output is in the input's pixel space: the weight's normalisation is undone and values are clipped to
[0, 1] before becoming uint8. A super-resolution weight records ``scale`` (output size / input size). A
graph that outputs a latent code (an autoencoder's ``encoder``) gives the code through unchanged.

A weight records what it undoes in ``degradation``, and that one field drives the test split (`degrade`:
the same inputs for the recipe, ``zoo verify`` and the ONNX check), the metrics and the pictures:

- ``{"noise_std": 25}``: additive Gaussian noise, sigma on the 0..255 scale, fixed by a seed;
- ``{"downscale": 4, "kernel": "bicubic"}``: PIL's bicubic (antialiased) downscale to uint8; PSNR and SSIM
  are then measured on the Y channel with a border of ``scale`` pixels cut, as super-resolution papers do;
- ``{"colorize": "lab"}``: the model reads CIE Lab lightness L / 100 of the grey image (``(H, W, 1)``) and
  writes the two ab channels as ``ab / 256 + 0.5``; ``zoo predict`` joins them into an RGB picture. Test
  images that are grey already (R = G = B) are left out of its split: there is no colour to score.
  The colour conversions are numpy (`rgb_to_lab`, `lab_to_rgb`), so the torch-free runtime has them.

``zoo predict`` runs large images in overlapping tiles (`tiled_run`, option ``tile``, default
`DEFAULT_TILE`): each tile is run with ``tile_overlap`` extra pixels of context a side (the weight records
its model's receptive radius there) and only its centre is kept, so for a network with a finite receptive
field the stitched image equals the untiled one, and memory is bounded by the tile, not the photo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import DEFAULT_ATOL, DEFAULT_RTOL, Agreement, Task, WeightField, crop_to

__all__ = [
    "DEFAULT_TILE",
    "ImageToImage",
    "degrade",
    "grey_lightness",
    "lab_to_rgb",
    "rgb_to_lab",
    "tiled_run",
    "to_uint8_images",
]

DEFAULT_TILE = 512  # zoo predict's tile side (input pixels): a few hundred MB of activations at most
DEFAULT_OVERLAP = 32  # context per tile side when a weight records no tile_overlap
AB_RANGE = 256.0  # colorization: ab (about -110..110 for sRGB) <-> [0, 1] as ab / AB_RANGE + 0.5
NOISE_SEED = 0  # the seed of the test split's noise (`degrade`): every runtime sees the same noisy inputs

# sRGB (D65) <-> CIE XYZ, and the D65 white point: the matrices and constants of scikit-image's
# `skimage.color.rgb2lab` / `lab2rgb`, which `tests/tasks/test_image_to_image.py` checks these against.
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16.0 / 116.0)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 1] -> (..., 3) CIE Lab (L 0..100, D65 white), as ``skimage.color.rgb2lab``."""
    xyz = _srgb_to_linear(np.asarray(rgb, np.float64)) @ _XYZ_FROM_RGB.T / _WHITE_D65
    fx, fy, fz = (_lab_f(xyz[..., i]) for i in range(3))
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """(..., 3) CIE Lab -> (..., 3) sRGB clipped to [0, 1], as ``skimage.color.lab2rgb``."""
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([lab[..., 1] / 500.0 + fy, fy, np.maximum(fy - lab[..., 2] / 200.0, 0.0)], axis=-1)
    xyz = np.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * _WHITE_D65
    linear = xyz @ _RGB_FROM_XYZ.T
    srgb = np.where(
        linear > 0.0031308, 1.055 * np.power(np.maximum(linear, 0.0), 1 / 2.4) - 0.055, 12.92 * linear
    )
    return np.clip(srgb, 0.0, 1.0)


def grey_lightness(grey: np.ndarray) -> np.ndarray:
    """Grey levels in [0, 1] (R = G = B) -> their Lab lightness L (0..100): what a grey photo gives a
    colorization model, and the L its colours are joined to."""
    return 116.0 * _lab_f(_srgb_to_linear(np.asarray(grey, np.float64))) - 16.0


def _pil_grey(images: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint8 grey exactly as PIL's ``convert("L")`` (ITU-R 601, fixed point),
    the way `zoo.preprocess.load_image` reads a colour file for a 1-channel model."""
    rgb = images.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def degrade(
    images: np.ndarray, degradation: Mapping[str, Any] | None, seed: int = NOISE_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 clean images -> (model inputs, targets), both (N, C, H, W) float32 in [0, 1].

    What a weight's ``degradation`` says it undoes (module docstring): noise drawn from ``seed`` (fixed, so
    every caller gets the same noisy inputs; not clipped, as the denoising benchmarks add it), a bicubic
    downscale (H and W cropped to multiples of the factor first), or grey lightness -> ab. None: the
    image is its own target (reconstruction).
    """
    images = np.asarray(images)
    clean = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    spec = dict(degradation or {})
    if "noise_std" in spec:
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(clean.shape, dtype=np.float32)
        return clean + np.float32(float(spec["noise_std"]) / 255.0) * noise, clean
    if "downscale" in spec:
        from PIL import Image

        factor = int(spec["downscale"])
        if spec.get("kernel", "bicubic") != "bicubic":
            raise ValueError(f"degradation {spec}: only the bicubic kernel is implemented")
        h, w = images.shape[1] // factor * factor, images.shape[2] // factor * factor
        images = images[:, :h, :w]
        small = np.stack(
            [
                np.stack(
                    [
                        np.asarray(
                            Image.fromarray(im[..., c]).resize((w // factor, h // factor), Image.BICUBIC)
                        )
                        for c in range(im.shape[2])
                    ],
                    axis=-1,
                )
                for im in images
            ]
        )
        return small.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, clean[..., :h, :w]
    if "colorize" in spec:
        # A grey photo (R = G = B everywhere) has no colour to predict: its ab is exactly 0, where the grey
        # baseline scores a perfect (capped) PSNR that would swamp the mean. Colorization is scored on
        # colour images only.
        colour = (images.max(axis=-1) != images.min(axis=-1)).reshape(len(images), -1).any(axis=1)
        images = images[colour] if images.shape[-1] == 3 else images
        grey = _pil_grey(images) if images.shape[-1] == 3 else images[..., 0]
        lightness = grey_lightness(grey.astype(np.float64) / 255.0)[:, None] / 100.0
        ab = rgb_to_lab(images.astype(np.float64) / 255.0)[..., 1:].transpose(0, 3, 1, 2)
        return lightness.astype(np.float32), (ab / AB_RANGE + 0.5).astype(np.float32)
    if spec:
        raise ValueError(f"unknown degradation {spec}: expected noise_std, downscale or colorize")
    return clean, clean


def tiled_run(
    run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    x: np.ndarray,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    multiple: int = 1,
) -> dict[str, np.ndarray]:
    """Run `run` on (N, C, H, W) `x` in overlapping ``tile`` x ``tile`` windows and stitch the outputs.

    Each window is the tile's core plus ``overlap`` pixels of context on every side that has image there
    (windows at the border are shifted inward to keep their size); only the core of each output is kept.
    When ``overlap`` covers the network's receptive radius, the result equals ``run(x)`` up to float
    rounding, and the memory the network needs is that of one window. Outputs may be ``scale`` times larger
    than their window (super-resolution): the scale is read from the first one. Window corners and sizes
    are kept to multiples of `multiple` (models that pool). ``tile <= 0`` or a small image: one call.
    """
    n, _, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return dict(run(x))
    tile = max(multiple, tile // multiple * multiple)
    # Rounding a window's start down to the multiple may cost up to multiple - 1 pixels of context on its
    # far side: the core shrinks by as much.
    core = tile - 2 * overlap - (multiple - 1)
    if core < 1:
        raise ValueError(f"tile {tile} leaves no core inside an overlap of {overlap} pixels a side")
    stitched: dict[str, np.ndarray] = {}
    for y0 in range(0, h, core):
        for x0 in range(0, w, core):
            y1, x1 = min(y0 + core, h), min(x0 + core, w)
            wy0, wx0 = (
                _window_start(y0, y1, overlap, tile, h, multiple),
                _window_start(x0, x1, overlap, tile, w, multiple),
            )
            wy1, wx1 = min(h, wy0 + tile), min(w, wx0 + tile)
            for key, value in run(np.ascontiguousarray(x[:, :, wy0:wy1, wx0:wx1])).items():
                value = np.asarray(value)
                if value.ndim != 4:
                    raise ValueError(
                        f"tiling needs image outputs (N, C, H, W); '{key}' has shape {value.shape}"
                    )
                scale = value.shape[-1] // (wx1 - wx0)
                if key not in stitched:
                    stitched[key] = np.empty((n, value.shape[1], h * scale, w * scale), np.float32)
                stitched[key][..., y0 * scale : y1 * scale, x0 * scale : x1 * scale] = value[
                    ..., (y0 - wy0) * scale : (y1 - wy0) * scale, (x0 - wx0) * scale : (x1 - wx0) * scale
                ]
    return stitched


def _window_start(start: int, end: int, overlap: int, tile: int, size: int, multiple: int) -> int:
    first = max(0, min(start - overlap, size - tile))
    aligned = first // multiple * multiple
    # A size that is not a multiple (the task pads to one; direct callers may not) can leave an aligned
    # window short of the core's end: then the window stays where it is, unaligned.
    return aligned if aligned + tile >= end else first


def to_uint8_images(x: np.ndarray, input_size: Sequence[int] | None, mean=None, std=None) -> list[np.ndarray]:
    """(B, C, H, W) float outputs in the input's pixel space -> (H, W, C) uint8 images.

    Undoes the weight's normalisation (``x * std + mean``) when it has one, then clips to [0, 1]. A flat
    (B, C*H*W) output is reshaped to `input_size` first. Rows are converted in bands, so a large picture
    (a x4 upscaled photo) needs no float copies of itself.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        if not input_size:
            raise ValueError(f"a flat output {x.shape} needs the weight's input_size to become images")
        x = x.reshape(len(x), *input_size)
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {x.shape}")
    x = x.transpose(0, 2, 3, 1)
    out = np.empty(x.shape, np.uint8)
    band = 256
    for i in range(len(x)):
        for r in range(0, x.shape[1], band):
            rows = x[i, r : r + band]
            if mean is not None and std is not None:
                rows = rows * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
            out[i, r : r + band] = (np.clip(rows, 0.0, 1.0) * 255.0).round()
    return list(out)


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
            "size_multiple",
            None,
            "the model takes any size that is a multiple of this (padded, cropped back)",
            (int,),
        ),
        WeightField(
            "degradation",
            None,
            "what the model undoes, e.g. {'noise_std': 25} or {'downscale': 2}, for pictures and metrics",
            (dict,),
        ),
        WeightField(
            "tile_overlap",
            None,
            "context pixels per tile side when predicting in tiles (the model's receptive radius)",
            (int,),
        ),
    )
    headline_metrics = (("mse", "MSE", "{:.4f}"), ("psnr", "PSNR (dB)", "{:.2f}"))
    output_names = ("image",)
    outputs_doc = {"image": "(N, C, H*scale, W*scale) in the input's normalised pixel space"}

    def preprocess(self, image: np.ndarray, meta: Any, *, invert: bool = False) -> np.ndarray:
        """As every task, then for colorization the grey levels become Lab lightness ``L / 100``."""
        x = super().preprocess(image, meta, invert=invert)
        if "colorize" in (getattr(meta, "degradation", None) or {}):
            x = (grey_lightness(x) / 100.0).astype(np.float32)
        return x

    def inference_runner(
        self, run: Callable[[np.ndarray], Mapping[str, np.ndarray]], meta: Any, **options: Any
    ) -> Callable[[np.ndarray], Mapping[str, np.ndarray]]:
        """``zoo predict``'s network call: in tiles of ``tile`` pixels (`tiled_run`; 0 turns tiling off),
        and for colorization with the input lightness beside the ab output, for `postprocess` to join."""
        tile = options.get("tile")
        tile = DEFAULT_TILE if tile is None else int(tile)
        overlap = getattr(meta, "tile_overlap", None) or DEFAULT_OVERLAP
        multiple = getattr(meta, "size_multiple", None) or 1
        colorize = "colorize" in (getattr(meta, "degradation", None) or {})

        def tiled(x: np.ndarray) -> dict[str, np.ndarray]:
            outputs = tiled_run(run, x, tile, overlap, multiple)
            if colorize:
                outputs["lightness"] = x
            return outputs

        return tiled

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        if "lightness" in outputs:  # colorization, with the input (see inference_runner): an RGB picture
            ab = next(v for k, v in outputs.items() if k != "lightness")
            source = options.get("source_size")
            lightness, ab = crop_to(outputs["lightness"], source), crop_to(ab, source)
            lab = np.concatenate([lightness * 100.0, (ab - 0.5) * AB_RANGE], axis=1).transpose(0, 2, 3, 1)
            return list((lab_to_rgb(lab) * 255.0).round().astype(np.uint8))
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
        if "lightness" in output_names:
            output_name = "colorized"
        if np.asarray(result).dtype != np.uint8:  # a latent code
            return f"{source}: latent " + " ".join(f"{v:.4f}" for v in np.ravel(result))
        if out_dir is None:
            from zoo.errors import ConfigError

            raise ConfigError(f"{self.name} predictions are images: pass --out DIR to write them")
        from zoo.tasks.draw import save_png

        target = save_png(result, Path(out_dir) / f"{Path(source).stem}_{output_name}.png")
        return f"{source}: {output_name} -> {target}"

    def metrics(self, meta: Any) -> dict[str, Any]:
        """PSNR and SSIM in [0, 1] pixel space; for super-resolution on the Y channel, PSNR with a border of
        ``scale`` pixels cut (as SR papers report); for colorization on the ab channels."""
        from zoo.metrics import PSNR, SSIM

        scale = int(getattr(meta, "scale", 1) or 1)
        if scale > 1:
            return {
                "psnr": PSNR(data_range=1.0, y_channel=True, crop=scale),
                "ssim": SSIM(data_range=1.0, y_channel=True),
            }
        return {"psnr": PSNR(data_range=1.0), "ssim": SSIM(data_range=1.0)}

    def evaluation_pairs(self, images: np.ndarray, labels: Any, meta: Any) -> tuple[np.ndarray, Any]:
        """The weight's ``degradation`` of the clean images (`degrade`) and the clean images as targets;
        without one, reconstruction: the target is the input image itself, in [0, 1] pixel space."""
        degradation = getattr(meta, "degradation", None)
        if degradation:
            inputs, targets = degrade(images, degradation)
            if meta.mean is not None and meta.std is not None:
                shape = (1, -1, 1, 1)
                inputs = (inputs - np.asarray(meta.mean, np.float32).reshape(shape)) / np.asarray(
                    meta.std, np.float32
                ).reshape(shape)
            return inputs.astype(np.float32), targets
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
