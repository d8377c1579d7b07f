"""Where a scene segmenter's digit identity fails: digits that touch another against digits that stand alone.

    .venv/bin/python benchmarks/segmentation_identity.py unet_resnet8_small.scenes
    .venv/bin/python benchmarks/segmentation_identity.py unet_resnet8_small.scenes --dataset digit_scenes_128

A semantic-segmentation weight's mIoU on the digit scenes splits into finding the strokes (foreground IoU,
background against any digit) and naming them (identity: the share of the pixels that are a digit in both
the prediction and the truth that get the right digit). This script measures both on a test split and splits
identity per instance: digits whose visible mask, dilated by one pixel, meets another digit's (they overlap
or touch, diagonal neighbours included; `zoo.data.scenes.touching_instances` dilates both masks, so it also
counts digits one pixel apart) against those that touch none, and by the number of digits in the scene.
mIoU, foreground IoU and identity are `zoo.metrics.MeanIoU`'s (``background_index=0``). ``--dataset digit_scenes_128`` runs the same fully convolutional weight on the 128 px scenes
(the same digit sizes on a canvas four times larger, up to 6 digits).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch


def instance_rows(
    prediction: np.ndarray, masks: np.ndarray, labels: np.ndarray
) -> list[tuple[int, bool, int, int]]:
    """Per instance of one scene: (digits in the scene, touches another, predicted-digit pixels, right ones)."""
    from scipy.ndimage import binary_dilation

    rows = []
    square = np.ones((3, 3), bool)
    for k, (mask, label) in enumerate(zip(masks, labels)):
        others = np.delete(masks, k, axis=0).any(0) if len(masks) > 1 else np.zeros_like(mask)
        touching = bool((binary_dilation(mask, square) & others).any())
        found = prediction[mask]
        digit = found > 0
        rows.append((len(masks), touching, int(digit.sum()), int((found[digit] == label).sum())))
    return rows


def measure(name: str, dataset: str, limit: int = 0, batch: int = 50) -> dict[str, float]:
    """mIoU, foreground IoU and identity of weight `name` on `dataset`'s test scenes, with identity split
    into ``identity_touching`` / ``identity_alone`` and ``identity_<n>_digits``; ``*_instances`` counts."""
    import zoo
    from zoo.data import load_dataset
    from zoo.metrics import MeanIoU

    model = zoo.create_model(name, pretrained=True).eval()
    meta = model.pretrained_weights
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (meta.mean, meta.std))
    test = load_dataset(dataset, 0, "data", False).test
    count = min(limit or len(test), len(test))
    metric = MeanIoU(len(meta.labels), class_names=meta.labels, background_index=0)
    rows = []
    for start in range(0, count, batch):
        items = [test[i] for i in range(start, min(start + batch, count))]
        with torch.no_grad():
            predicted = model((torch.stack([image for image, _ in items]) - mean) / std).argmax(1)
        metric.update(predicted, torch.stack([target["semantic"] for _, target in items]))
        for p, (_, target) in zip(predicted.numpy(), items):
            rows += instance_rows(p, target["masks"].numpy(), target["labels"].numpy())
    scores = metric.compute()
    result = {"miou": scores["miou"], "foreground_iou": scores["fg_iou"], "identity": scores["identity"]}
    r = np.array(rows, dtype=np.int64)
    groups = {"touching": r[:, 1] == 1, "alone": r[:, 1] == 0}
    groups.update({f"{n}_digits": r[:, 0] == n for n in sorted(set(r[:, 0].tolist()))})
    for key, chosen in groups.items():
        result[f"identity_{key}"] = float(r[chosen, 3].sum() / max(r[chosen, 2].sum(), 1))
        result[f"{key}_instances"] = int(chosen.sum())
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+", help="semantic-segmentation weights of the digit scenes")
    parser.add_argument("--dataset", default="digit_scenes_64", help="digit_scenes_64 or digit_scenes_128")
    parser.add_argument("--limit", type=int, default=0, help="first N test scenes (0: all)")
    args = parser.parse_args(argv)
    for name in args.weights:
        r = measure(name, args.dataset, args.limit)
        print(
            f"{name} on {args.dataset}: mIoU {r['miou']:.4f}, foreground IoU {r['foreground_iou']:.4f}, "
            f"identity {r['identity']:.4f}"
        )
        for key in [k[len("identity_") :] for k in r if k.startswith("identity_")]:
            n = key.split("_")[0]
            what = f"in scenes of {n} digit{'' if n == '1' else 's'}" if key.endswith("_digits") else key
            print(f"  identity, {what}: {r['identity_' + key]:.4f} ({r[key + '_instances']} digits)")


if __name__ == "__main__":
    main()
