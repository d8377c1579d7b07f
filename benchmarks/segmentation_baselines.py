"""Baselines for the digit-scene segmentation weights, measured on the same 1000 test scenes.

1. ``otsu + classifier``: no learning on scenes at all. Otsu's threshold on the grey image (the polarity
   is taken from which side of the threshold holds fewer pixels: the digits are the minority), connected
   components (8-connected, ``skimage.measure.label``), components smaller than ``--min-area`` pixels
   dropped as noise, then each component's crop, light-on-dark as MNIST is, scaled so its longer side is 20
   px and centred in 28x28 (MNIST's own framing), classified by the zoo's ``resnet8_small.mnist``; every
   pixel of the component gets that digit. Touching digits merge into one component and textured
   backgrounds leak into the mask: what a learned segmenter has to beat.
2. ``smp Unet (resnet18, same budget)``: ``segmentation_models_pytorch.Unet(encoder_name="resnet18",
   encoder_weights=None, classes=11)`` trained with the segmentation recipe of the weight (same data,
   augmentation, loss, optimizer and schedule), its number of epochs set so its training takes about the
   weight's training time on this machine (``--budget`` seconds, default the weight's recorded time).

Both are scored with `zoo.metrics.MeanIoU` (mIoU over the 11 classes, pixel accuracy, per-class IoU),
exactly as the recipe scores the weight. ``--write NAME`` stores them in ``hub/NAME/config.json`` under
``weights.baselines`` and renders the model card again, so the card shows them beside the weight.

    .venv/bin/python benchmarks/segmentation_baselines.py [--limit N] [--skip-smp] [--write unet.scenes]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from zoo.metrics import MeanIoU

ROOT = Path(__file__).resolve().parent.parent
CLASSIFIER = "resnet8_small.mnist"


def _digit_crop(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A component as an MNIST-style 28x28 float image: light strokes on black, longer side 20 px, centred.

    Pixels outside the component are zeroed, so a neighbouring digit inside the bounding box is not seen.
    """
    from PIL import Image

    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[y0:y1, x0:x1], grey[y0:y1, x0:x1], 0.0).astype(np.float32)
    h, w = crop.shape
    side = max(h, w)
    scale = 20.0 / side
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.BILINEAR))
    out = np.zeros((28, 28), np.float32)
    top, left = (28 - nh) // 2, (28 - nw) // 2
    out[top : top + nh, left : left + nw] = small
    return out


def otsu_components(
    images: np.ndarray, classifier: torch.nn.Module, mean: float, std: float, min_area: int = 12
) -> np.ndarray:
    """(N, H, W, 3) uint8 scenes -> (N, H, W) class maps (0 background, digit + 1) by Otsu's threshold,
    connected components and the MNIST classifier on each component."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    maps = np.zeros(images.shape[:3], np.int64)
    crops, owners = [], []
    for n, image in enumerate(images):
        grey = image.astype(np.float32).mean(axis=2) / 255.0
        t = threshold_otsu(grey)
        light = grey > t
        # The digits cover a few percent of a scene: the smaller side of the threshold is the foreground.
        foreground = light if light.mean() < 0.5 else ~light
        # MNIST digits are light on dark: stretch so the background side is 0 and the strokes near 1.
        strokes = grey if light.mean() < 0.5 else 1.0 - grey
        lo, hi = (
            np.median(strokes[~foreground]),
            np.percentile(strokes[foreground], 95) if foreground.any() else 1,
        )
        strokes = np.clip((strokes - lo) / max(hi - lo, 1e-3), 0, 1)
        components = label(foreground, connectivity=2)
        for k in range(1, components.max() + 1):
            mask = components == k
            if mask.sum() < min_area:
                continue
            crops.append(_digit_crop(strokes, mask))
            owners.append((n, mask))
    if crops:
        x = (torch.from_numpy(np.stack(crops))[:, None] - mean) / std
        with torch.no_grad():
            digits = torch.cat([classifier(b).argmax(1) for b in x.split(512)]).numpy()
        for (n, mask), digit in zip(owners, digits):
            maps[n][mask] = digit + 1
    return maps


def score(pred: np.ndarray, target: np.ndarray, labels: list[str]) -> dict[str, float]:
    metric = MeanIoU(len(labels), 255, class_names=labels)
    metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    return {k: round(v, 6) for k, v in metric.compute().items()}


def otsu_baseline(limit: int | None, min_area: int) -> dict[str, float]:
    import zoo
    from zoo.data import load_dataset

    scenes = load_dataset("digit_scenes_64").test.to_memory()
    n = len(scenes) if limit is None else min(limit, len(scenes))
    images = scenes.images[:n].permute(0, 2, 3, 1).numpy()
    target = scenes.semantic[:n].long().numpy()
    classifier = zoo.create_model(CLASSIFIER, pretrained=True).eval()
    meta = classifier.pretrained_weights
    pred = otsu_components(images, classifier, meta.mean[0], meta.std[0], min_area)
    return score(pred, target, ["background", *[str(d) for d in range(10)]])


def smp_baseline(
    recipe: str, budget_s: float, overrides: list[str], probe_steps: int = 20
) -> dict[str, float]:
    """The recipe with its model replaced by smp's Unet(resnet18), epochs scaled to fit `budget_s`."""
    import segmentation_models_pytorch as smp

    from recipes.engine import Trainer, resolve_config

    preset, config = resolve_config(recipe, ["progress=false", "tensorboard=false", "pictures=0", *overrides])

    class SmpObjective(preset.objective):
        def build(self, data):
            torch.manual_seed(config.seed)
            return {"model": smp.Unet(encoder_name="resnet18", encoder_weights=None, classes=11)}

    # Probe: the time of `probe_steps` optimizer steps (after 3 warm-up steps) gives the steps the budget
    # affords; the one-cycle schedule then spans exactly that many epochs, as a full run of the recipe would.
    from dataclasses import replace

    probe = Trainer(SmpObjective(replace(config, max_steps=3 + probe_steps)), run_dir=None, publish=False)
    probe.setup()
    batches = probe.batches(0)
    for _ in range(3):
        probe.train_batch(next(batches))
    start = time.perf_counter()
    for _ in range(probe_steps):
        probe.train_batch(next(batches))
    per_step = (time.perf_counter() - start) / probe_steps
    epochs = max(1, round(budget_s / per_step / probe.steps_per_epoch))
    print(f"smp Unet: {per_step * 1000:.0f} ms/step -> {epochs} epochs of {probe.steps_per_epoch} steps")
    trainer = Trainer(SmpObjective(replace(config, epochs=epochs)), run_dir=None, publish=False)
    result = trainer.fit()
    model = trainer.eval_models()["model"]
    params = sum(p.numel() for p in model.parameters())
    print(f"smp Unet: trained {result.steps} steps in {result.train_time_s:.0f} s, {params:,} parameters")
    out = {k: round(v, 6) for k, v in result.metrics.items() if k != "loss"}
    out["train_time_s"] = round(result.train_time_s, 1)
    return out


def write_baselines(name: str, baselines: dict[str, dict[str, float]]) -> Path:
    """Store `baselines` in hub/NAME/config.json (weights.baselines) and render its card again."""
    from zoo.card import render_model_card
    from zoo.fileio import atomic_write_bytes

    folder = ROOT / "hub" / name
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["weights"]["baselines"] = {**config["weights"].get("baselines", {}), **baselines}
    atomic_write_bytes(path, (json.dumps(config, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "README.md", render_model_card(config, name).encode())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weight", default="unet.scenes", help="the published weight to compare against")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test scenes (quick checks)")
    parser.add_argument("--min-area", type=int, default=12)
    parser.add_argument("--skip-smp", action="store_true")
    parser.add_argument(
        "--budget", type=float, default=None, help="smp training seconds (default: the weight's)"
    )
    parser.add_argument("--set", action="append", default=[], help="recipe overrides for the smp run")
    parser.add_argument(
        "--write", metavar="NAME", help="store the baselines in hub/NAME and re-render its card"
    )
    args = parser.parse_args(argv)

    import zoo

    meta = zoo.get_weights(args.weight) if (ROOT / "hub" / args.weight).is_dir() else None
    results: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    results["otsu + components + resnet8_small.mnist"] = otsu_baseline(args.limit, args.min_area)
    print(f"otsu baseline: {time.perf_counter() - start:.1f} s")
    if not args.skip_smp:
        recipe = meta.recipe if meta else args.weight
        budget = args.budget or (meta.training.get("train_time_s") if meta else None) or 600.0
        results["smp Unet resnet18 (same budget)"] = smp_baseline(recipe, budget, args.set)
    if meta:
        results = {args.weight: {k: v for k, v in meta.metrics.items() if k != "loss"}, **results}
    for name, values in results.items():
        ious = " ".join(f"{k[4:]}:{v:.3f}" for k, v in values.items() if k.startswith("iou_"))
        print(f"{name}: mIoU {values['miou']:.4f}  pixel acc {values['pixel_acc']:.4f}  ({ious})")
    if args.write:
        baselines = {k: v for k, v in results.items() if k != args.weight}
        print(f"written to {write_baselines(args.write, baselines)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
