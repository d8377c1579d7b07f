"""Classical baselines for the image-to-image weights, measured on the weight's own test split.

    .venv/bin/python benchmarks/restoration_baselines.py dncnn.photos espcn_x2.photos ...
    .venv/bin/python benchmarks/restoration_baselines.py runs/x/hub/dncnn.photos --write

Each weight records what it undoes (``degradation``); the baselines follow from it:

- noise: the noisy input itself, scikit-image's ``denoise_tv_chambolle`` and ``denoise_nl_means``
  (``fast_mode``, 5x5 patches, 13x13 search window, the true sigma given), measured at every noise level the
  weight reports (``psnr`` at its headline sigma, ``psnr_sigma15``...). Their parameters (TV's weight, NL-means'
  ``h`` as a multiple of sigma) are **tuned on the train photos** (fixed 128 px patches of them, never the
  test ones): the best PSNR of a small grid per sigma;
- downscale: bicubic and Lanczos upsampling (PIL) of the same low-resolution inputs the model gets;
- colorize: the grey picture (ab = 0) and the mean chroma (the mean ab of the colour train photos' pixels).

The inputs are `zoo.tasks.image_to_image.degrade` of the weight's test split (the same seeded noise and the
same PIL downscales the recipe and ``zoo verify`` use) and the metrics are the task's, so the numbers sit in
the card's table beside the weight's own. ``--write`` stores them in the folder's ``config.json``
(``weights.baselines``) and re-renders its model card.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TV_WEIGHTS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25)  # multiplied by sigma / 25
NLM_H = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)  # h = factor * sigma
TUNE_PATCHES = 12  # train patches the parameters are tuned on (evenly spaced over the train photos)

Method = Callable[[np.ndarray], np.ndarray]  # (N, C, h, w) inputs -> (N, C, H, W) outputs, floats


def _folder(name: str) -> Path:
    path = Path(name)
    if (path / "config.json").is_file():
        return path
    from zoo.registry import hub_dirs

    for hub in hub_dirs():
        if (Path(hub) / name / "config.json").is_file():
            return Path(hub) / name
    raise SystemExit(f"{name}: no weight folder with a config.json (give arch.tag or a folder)")


def _measure(meta: Any, method: Method, inputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    import torch

    from zoo.tasks import get_task

    metrics = get_task("image-to-image").metrics(meta)
    outputs = method(inputs).astype(np.float32)
    for metric in metrics.values():
        metric.update(torch.from_numpy(outputs), torch.from_numpy(targets))
    return {k: v for m in metrics.values() for k, v in m.compute().items()}


def _per_image(fn: Callable[[np.ndarray], np.ndarray]) -> Method:
    """Apply an (H, W, C) image function to every item of a (N, C, H, W) batch."""
    return lambda x: np.stack(
        [fn(im.transpose(1, 2, 0)).reshape(im.shape[1:] + im.shape[:1]) for im in x]
    ).transpose(0, 3, 1, 2)


def _tv(weight: float) -> Method:
    from skimage.restoration import denoise_tv_chambolle

    return _per_image(lambda im: denoise_tv_chambolle(im, weight=weight, channel_axis=-1))


def _nlm(h: float, sigma: float) -> Method:
    from skimage.restoration import denoise_nl_means

    return _per_image(
        lambda im: denoise_nl_means(
            im, h=h, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=-1
        )
    )


def _psnr(outputs: np.ndarray, targets: np.ndarray) -> float:
    mse = ((outputs.astype(np.float64) - targets) ** 2).reshape(len(targets), -1).mean(1)
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def _train_patches(count: int | None = TUNE_PATCHES, colour_only: bool = False) -> np.ndarray:
    """Evenly spaced 128 px patches of the train photos (N, H, W, C) uint8 (all with `count` None): where
    parameters are tuned."""
    from zoo.data.photos import COLOUR_PHOTOS, GREY_PHOTOS, TEST_PHOTOS, photo_patches

    names = [n for n in sorted(COLOUR_PHOTOS + (() if colour_only else GREY_PHOTOS)) if n not in TEST_PHOTOS]
    images = photo_patches(128, names=names).images.numpy().transpose(0, 2, 3, 1)
    if count is None:
        return images
    return images[np.linspace(0, len(images) - 1, count).round().astype(int)]


def _tune(candidates: dict[str, Method], degradation: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """The candidate with the best PSNR on the train patches, and every candidate's PSNR there."""
    from zoo.tasks.image_to_image import degrade

    inputs, targets = degrade(_train_patches(), degradation, seed=1)
    scores = {name: _psnr(method(inputs), targets) for name, method in candidates.items()}
    return max(scores, key=scores.get), scores


def denoising_baselines(meta: Any, images: np.ndarray) -> dict[str, dict[str, float]]:
    from zoo.tasks.image_to_image import degrade

    headline = float(meta.degradation["noise_std"])
    sigmas = sorted({headline, *_reported_sigmas(meta)})
    rows: dict[str, dict[str, float]] = {
        "noisy input": {},
        "TV (Chambolle), tuned": {},
        "NL-means, tuned": {},
    }
    for sigma in sigmas:
        spec = {"noise_std": sigma}
        s = sigma / 255.0
        tv_best, tv_scores = _tune({f"{w * sigma / 25:.4f}": _tv(w * sigma / 25) for w in TV_WEIGHTS}, spec)
        nlm_best, nlm_scores = _tune({f"{h:.2f}": _nlm(h * s, s) for h in NLM_H}, spec)
        print(
            f"sigma {sigma:g}: TV weight {tv_best} (train PSNR {tv_scores[tv_best]:.2f}), NL-means h "
            f"{nlm_best} sigma (train PSNR {nlm_scores[nlm_best]:.2f})",
            flush=True,
        )
        inputs, targets = degrade(images, spec)
        suffix = "" if sigma == headline else f"_sigma{sigma:g}"
        for row, method in (
            ("noisy input", lambda x: x),
            ("TV (Chambolle), tuned", _tv(float(tv_best))),
            ("NL-means, tuned", _nlm(float(nlm_best) * s, s)),
        ):
            for key, value in _measure(meta, method, inputs, targets).items():
                rows[row][key + suffix] = value
    return rows


def _reported_sigmas(meta: Any) -> list[float]:
    return [float(k.split("_sigma")[1]) for k in meta.metrics if k.startswith("psnr_sigma")]


def super_resolution_baselines(meta: Any, images: np.ndarray) -> dict[str, dict[str, float]]:
    from PIL import Image

    from zoo.tasks.image_to_image import degrade

    inputs, targets = degrade(images, meta.degradation)
    scale = int(meta.scale)

    def resize(method: int) -> Method:
        def run(x: np.ndarray) -> np.ndarray:
            out = []
            for im in x:
                u8 = (np.clip(im, 0, 1) * 255).round().astype(np.uint8)
                size = (u8.shape[2] * scale, u8.shape[1] * scale)
                out.append(np.stack([np.asarray(Image.fromarray(c).resize(size, method)) for c in u8]))
            return np.stack(out).astype(np.float32) / 255.0

        return run

    return {
        "bicubic": _measure(meta, resize(Image.BICUBIC), inputs, targets),
        "Lanczos": _measure(meta, resize(Image.LANCZOS), inputs, targets),
    }


def colorization_baselines(meta: Any, images: np.ndarray) -> dict[str, dict[str, float]]:
    from zoo.tasks.image_to_image import degrade

    inputs, targets = degrade(images, meta.degradation)
    _, train_ab = degrade(_train_patches(None, colour_only=True), meta.degradation)
    mean_ab = train_ab.mean(axis=(0, 2, 3)).reshape(1, 2, 1, 1)
    shape = (len(inputs), 2, *inputs.shape[2:])
    return {
        "grey (ab = 0)": _measure(meta, lambda x: np.full(shape, 0.5, np.float32), inputs, targets),
        "mean chroma of the train photos": _measure(
            meta, lambda x: np.broadcast_to(mean_ab, shape).astype(np.float32), inputs, targets
        ),
    }


def baselines(folder: Path) -> dict[str, dict[str, float]]:
    """Baseline name -> metrics on the weight's test split, for the weight in `folder`."""
    from zoo.data import load_dataset
    from zoo.registry import Weights

    config = json.loads((folder / "config.json").read_text())
    meta = Weights.from_dict(config["weights"])
    images = load_dataset(meta.dataset).test.images.numpy().transpose(0, 2, 3, 1)
    degradation = meta.degradation or {}
    if "noise_std" in degradation:
        rows = denoising_baselines(meta, images)
    elif "downscale" in degradation:
        rows = super_resolution_baselines(meta, images)
    elif "colorize" in degradation:
        rows = colorization_baselines(meta, images)
    else:
        raise SystemExit(f"{folder}: degradation {degradation} has no baselines here")
    return {name: {k: round(v, 4) for k, v in values.items()} for name, values in rows.items()}


def write_baselines(folder: Path, rows: dict[str, dict[str, float]]) -> None:
    """Store `rows` as the weight's ``baselines`` in config.json and re-render README.md."""
    from zoo.card import render_model_card
    from zoo.fileio import atomic_write_bytes

    config = json.loads((folder / "config.json").read_text())
    config["weights"]["baselines"] = rows
    atomic_write_bytes(folder / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "README.md", render_model_card(config).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="arch.tag (in hub/) or a weight folder")
    parser.add_argument(
        "--write", action="store_true", help="store the baselines in config.json and the card"
    )
    args = parser.parse_args(argv)
    for name in args.names:
        folder = _folder(name)
        start = time.perf_counter()
        rows = baselines(folder)
        metrics = json.loads((folder / "config.json").read_text())["weights"].get("metrics", {})
        keys = sorted({k for values in rows.values() for k in values})
        print(f"\n{folder.name} ({time.perf_counter() - start:.0f} s)")
        print(f"  {'method':<34}" + "".join(f"{k:>16}" for k in keys))
        for method, values in {"this weight": metrics, **rows}.items():
            print(f"  {method:<34}" + "".join(f"{values.get(k, float('nan')):>16.4f}" for k in keys))
        if args.write:
            write_baselines(folder, rows)
            print(f"  written to {folder / 'config.json'} and its README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
