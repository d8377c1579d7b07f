"""Baselines for the digit-scene segmentation weights, measured on the same 1000 test scenes.

1. ``otsu + classifier``: no learning on scenes at all. Otsu's threshold on the grey image (the polarity
   is taken from which side of the threshold holds fewer pixels: the digits are the minority), connected
   components (8-connected, ``skimage.measure.label``), components smaller than ``--min-area`` pixels
   dropped as noise, then each component's crop, light-on-dark as MNIST is, scaled so its longer side is 20
   px and centred in 28x28 (MNIST's own framing), classified by the zoo's ``resnet8_small.mnist``; every
   pixel of the component gets that digit. Touching digits merge into one component and textured
   backgrounds leak into the mask: what a learned segmenter has to beat.
2. ``smp Unet (resnet18, same compute)``: ``segmentation_models_pytorch.Unet(encoder_name="resnet18",
   encoder_weights=None, classes=11)`` trained with the segmentation recipe of the weight (same data,
   augmentation, loss, optimizer and schedule) on as many fresh compositions as give it the weight's
   training compute (images seen x forward FLOPs per image; seconds on this shared machine measure the
   other jobs' load more than the model).

Both are scored with `zoo.metrics.MeanIoU` (mIoU over the 11 classes, pixel accuracy, per-class IoU),
exactly as the recipe scores the weight. ``--write NAME`` stores them in ``hub/NAME/config.json`` under
``weights.baselines`` and renders the model card again, so the card shows them beside the weight.

    .venv/bin/python benchmarks/segmentation_baselines.py [--weight NAME] [--limit N] [--skip-smp]
        [--save b.json] [--load b.json] [--write NAME]
"""

from __future__ import annotations

import argparse
import json
import math
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


def otsu_instances(
    images: np.ndarray, classifier: torch.nn.Module, mean: float, std: float, min_area: int = 12
) -> list[list[tuple[np.ndarray, int, float]]]:
    """(N, H, W, 3) uint8 scenes -> per scene, one ``(mask (H, W) bool, digit, probability)`` per connected
    component: Otsu's threshold, connected components and the MNIST classifier on each component (its
    softmax probability of the digit it picks). The instance baseline of the detectors reads these."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    found: list[list[tuple[np.ndarray, int, float]]] = [[] for _ in images]
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
            probs = torch.cat([classifier(b).softmax(1) for b in x.split(512)])
        best, digits = probs.max(1)
        for (n, mask), digit, p in zip(owners, digits.tolist(), best.tolist()):
            found[n].append((mask, digit, p))
    return found


def otsu_components(
    images: np.ndarray, classifier: torch.nn.Module, mean: float, std: float, min_area: int = 12
) -> np.ndarray:
    """(N, H, W, 3) uint8 scenes -> (N, H, W) class maps (0 background, digit + 1) by Otsu's threshold,
    connected components and the MNIST classifier on each component (`otsu_instances`)."""
    maps = np.zeros(images.shape[:3], np.int64)
    for n, instances in enumerate(otsu_instances(images, classifier, mean, std, min_area)):
        for mask, digit, _ in instances:
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


def flops_per_image(model: torch.nn.Module, size: tuple[int, int, int] = (3, 64, 64)) -> float:
    """Forward FLOPs of one image (torch.utils.flop_counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *size))
    return float(counter.get_total_flops())


def smp_baseline(weight: str, overrides: list[str]) -> dict[str, float]:
    """smp's Unet(resnet18) trained by the weight's own recipe (data, augmentation, loss, optimizer,
    schedule), for as many compositions as give it the weight's training compute.

    The budget is compute, not seconds: on this shared 2-core machine a run's time moves with other
    jobs' load far more than with the model, so seconds would compare loads. One pass over
    ``4000 * (1 + fresh_scenes)`` scenes is chosen so its forward FLOPs match (at least) the weight's:
    images seen x FLOPs per image. The run's own time is reported beside it.
    """
    from dataclasses import replace

    import segmentation_models_pytorch as smp

    import zoo
    from recipes.engine import Trainer, resolve_config

    # The weight's recipe (a preset named like the weight), whether or not the weight is published yet.
    preset, config = resolve_config(weight, ["progress=false", "tensorboard=false", "pictures=0", *overrides])
    seed, size, classes = config.seed, (3, 64, 64), 11
    model = zoo.create_model(config.model, num_classes=classes, in_chans=3, img_size=64, **config.model_args)
    ours = flops_per_image(model, size)
    steps = (4000 * (1 + config.fresh_scenes) // config.batch_size) * config.epochs

    def build_smp() -> torch.nn.Module:
        return smp.Unet(encoder_name="resnet18", encoder_weights=None, classes=classes)

    theirs = flops_per_image(build_smp(), size)
    budget = steps * config.batch_size * ours  # what the weight's training cost, forward
    scenes = math.ceil(budget / theirs / 4000) * 4000
    config = replace(config, epochs=1, fresh_scenes=scenes // 4000 - 1)
    print(
        f"smp Unet: {theirs / 1e6:.0f} MFLOPs/image vs {ours / 1e6:.0f} for {weight}; budget "
        f"{budget / 1e12:.2f} TFLOPs -> one pass over {scenes} scenes"
    )

    class SmpObjective(preset.objective):
        def build(self, data):
            torch.manual_seed(seed)
            return {"model": build_smp()}

    trainer = Trainer(SmpObjective(config), run_dir=None, publish=False)
    result = trainer.fit()
    params = sum(p.numel() for p in trainer.eval_models()["model"].parameters())
    print(f"smp Unet: trained {result.steps} steps in {result.train_time_s:.0f} s, {params:,} parameters")
    return {k: round(v, 6) for k, v in result.metrics.items() if k != "loss"}


def write_baselines(name: str, baselines: dict[str, dict[str, float]]) -> Path:
    """Store `baselines` in hub/NAME/config.json (weights.baselines) and render its card again."""
    from zoo.card import render_model_card
    from zoo.fileio import atomic_write_bytes

    folder = ROOT / "hub" / name
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["weights"]["baselines"] = {**config["weights"].get("baselines", {}), **baselines}
    atomic_write_bytes(path, (json.dumps(config, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "README.md", render_model_card(config).encode())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weight", default="unet_resnet8_small.scenes", help="the weight (and its recipe)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test scenes (quick checks)")
    parser.add_argument("--min-area", type=int, default=12)
    parser.add_argument("--skip-otsu", action="store_true")
    parser.add_argument("--skip-smp", action="store_true")
    parser.add_argument("--set", action="append", default=[], help="recipe overrides for the smp run")
    parser.add_argument("--save", metavar="JSON", help="also write the measured baselines to this file")
    parser.add_argument(
        "--load", metavar="JSON", action="append", default=[], help="baselines measured before"
    )
    parser.add_argument(
        "--write", metavar="NAME", help="store the baselines in hub/NAME and re-render its card"
    )
    args = parser.parse_args(argv)

    import zoo

    results: dict[str, dict[str, float]] = {}
    for path in args.load:
        results.update(json.loads(Path(path).read_text()))
    if not args.skip_otsu:
        start = time.perf_counter()
        results["otsu + components + resnet8_small.mnist"] = otsu_baseline(args.limit, args.min_area)
        print(f"otsu baseline: {time.perf_counter() - start:.1f} s")
    if not args.skip_smp:
        results["smp Unet resnet18 (same compute)"] = smp_baseline(args.weight, args.set)
    if args.save:
        Path(args.save).write_text(json.dumps(results, indent=2) + "\n")
    shown = dict(results)
    if (ROOT / "hub" / args.weight).is_dir():
        metrics = zoo.get_weights(args.weight).metrics
        shown = {args.weight: {k: v for k, v in metrics.items() if k != "loss"}, **results}
    for name, values in shown.items():
        ious = " ".join(f"{k[4:]}:{v:.3f}" for k, v in values.items() if k.startswith("iou_"))
        print(f"{name}: mIoU {values['miou']:.4f}  pixel acc {values['pixel_acc']:.4f}  ({ious})")
    if args.write:
        print(f"written to {write_baselines(args.write, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
