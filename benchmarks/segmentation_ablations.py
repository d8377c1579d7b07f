"""What the choices of the segmentation recipe are worth: one-change runs of a preset, into its card.

Each run is the weight's own preset with one change (``zoo train PRESET --set loss=ce``, ``--set
'model_args={..., "upsample": "transposed"}'``; scripts/gpu_session.sh trains the U-Net's), on the same
budget and scored on the same test scenes. This script

1. reads the runs' ``result.json`` (test metrics as the recipe measured them) and stores them as the
   weight's ``ablations`` (a card table beside the weight's own numbers): ``--run "CHANGE=RUN_FOLDER"``;
2. sets another published weight beside it as a baseline (``--reference "NAME=WEIGHT"``: its recorded
   metrics on the same test scenes, e.g. the full-mask U-Net beside the one trained from scribbles) and
   adds to the weight's description what fraction of the reference's mIoU it reaches;
3. draws the decoder comparison the U-Net card shows (``--decoders NEAREST_WEIGHT TRANSPOSED_WEIGHT``):
   for a few test scenes, the input, each decoder's predicted classes and each decoder's background
   probability, where a transposed convolution's uneven overlap leaves its checkerboard (fixed upsampling
   followed by a convolution spreads every input pixel evenly and leaves none).

    .venv/bin/python benchmarks/segmentation_ablations.py --weight unet_resnet8_small.scenes \\
        --run "loss = plain cross-entropy=runs/unet_loss_ce" --decoders hub/unet_resnet8_small.scenes \\
        runs/unet_transposed/hub/unet_resnet8_small.scenes
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SHOWN = ("miou", "pixel_acc", "iou_background")  # the columns of the ablation table
SCENES = (2, 7, 11)  # test scenes of the picture: one digit large, several small, touching digits


def read_run(folder: Path) -> dict[str, float]:
    """The test metrics a finished run recorded (its ``result.json``), the table's columns only."""
    path = folder / "result.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: name a finished `zoo train` run folder")
    metrics = json.loads(path.read_text())["metrics"]
    return {k: round(float(metrics[k]), 6) for k in SHOWN if k in metrics}


def write_weight_fields(name: str, files: dict[str, str] | None = None, **fields: dict | str) -> Path:
    """Merge `fields` (e.g. ablations={...}; a text field such as description replaces the old text) into
    hub/NAME/config.json's weights, and `files` (card pictures by role) into its files, and render the card
    again."""
    from zoo.card import render_model_card
    from zoo.fileio import atomic_write_bytes

    folder = ROOT / "hub" / name
    config = json.loads((folder / "config.json").read_text())
    for key, values in fields.items():
        merged = {**config["weights"].get(key, {}), **values} if isinstance(values, dict) else values
        config["weights"][key] = merged
    if files:
        config["files"] = {**config.get("files", {}), **files}
    atomic_write_bytes(folder / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "README.md", render_model_card(config).encode())
    return folder


RATIO_SENTENCE = re.compile(
    r" ?Its test mIoU is \S+ of \S+ \([0-9.]+ against [0-9.]+\)\."
)  # as written below


def reference_fields(name: str, label: str, reference: str) -> tuple[dict[str, dict], str]:
    """The baseline row of the published weight `reference` (its recorded metrics, the table's columns) and
    NAME's description with the sentence "Its test mIoU is R% of REFERENCE's (X against Y)." (replacing one
    written before), both from the two cards' measured numbers."""
    import zoo

    ours, theirs = zoo.get_weights(name), zoo.get_weights(reference)
    if ours.dataset != theirs.dataset or ours.split.split(";")[0] != theirs.split.split(";")[0]:
        raise SystemExit(f"{reference} was not measured on {name}'s test split")
    row = {k: round(float(theirs.metrics[k]), 6) for k in SHOWN if k in theirs.metrics}
    mine, other = ours.metrics["miou"], theirs.metrics["miou"]
    sentence = f" Its test mIoU is {mine / other:.1%} of {reference}'s ({mine:.4f} against {other:.4f})."
    return {label: row}, RATIO_SENTENCE.sub("", ours.description) + sentence


def checkerboard_power(logits: torch.Tensor) -> float:
    """How much of a logit map's fine detail is the 2-pixel checkerboard: the power at frequency (pi, pi)
    over the mean power of the upper half of the spectrum, averaged over maps ``(N, H, W)`` (H, W even).
    A transposed convolution of stride 2 whose kernel overlaps unevenly puts its pattern exactly there."""
    power = torch.fft.fftshift(torch.fft.fft2(logits.double()), dim=(-2, -1)).abs() ** 2
    h, w = logits.shape[-2:]
    high = torch.ones(h, w, dtype=torch.bool)
    high[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = False  # after the shift, the centre is low frequency
    return float((power[:, 0, 0] / power[:, high].mean(1)).mean())


@torch.no_grad()
def decoder_picture(nearest: str, transposed: str, out: Path, zoom: int = 4, count: int = 200) -> Path:
    """Rows per scene: input | classes, nearest + conv | classes, transposed conv | each decoder's
    background logit, high-passed. The titles give `checkerboard_power` over the first `count` test scenes."""
    from PIL import Image, ImageDraw

    import zoo
    from recipes.augment import normalise
    from zoo.data import load_dataset
    from zoo.tasks.draw import grid, overlay_masks, palette

    splits = load_dataset("digit_scenes_64", 0, "data", False)
    images, _ = splits.test.to_memory().get_batch(torch.arange(max(count, *SCENES) + 1))
    models = [zoo.create_model(w).eval() for w in (nearest, transposed)]
    x = normalise(images.float().div(255), splits.mean, splits.std)
    logits = [m(x).float() for m in models]
    power = [checkerboard_power(lg[:count, 0]) for lg in logits]
    colors = palette(len(splits.labels))

    def big(a: np.ndarray) -> np.ndarray:
        return np.kron(a, np.ones((zoom, zoom, 1), np.uint8))

    tiles = []
    for i in SCENES:
        image = images[i].permute(1, 2, 0).numpy()
        tiles.append(big(image))
        for lg in logits:
            classes = np.arange(1, len(splits.labels))
            masks = lg[i].argmax(0).numpy()[None] == classes[:, None, None]
            tiles.append(big(overlay_masks(image, masks, colors[classes], alpha=0.75)))
        for lg in logits:
            # The background logit minus its 3x3 local mean: what is left is fine texture, where a
            # transposed convolution's checkerboard shows; grey is zero, stretched to +-3 std.
            bg = lg[i, 0][None, None]
            detail = (bg - torch.nn.functional.avg_pool2d(bg, 3, 1, 1, count_include_pad=False))[0, 0]
            grey = np.clip(0.5 + detail.numpy() / (6 * float(detail.std()) + 1e-6), 0, 1)
            tiles.append(big(np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)))
    body = grid(tiles, columns=5)
    canvas = Image.new("RGB", (body.shape[1], body.shape[0] + 16), "white")
    canvas.paste(Image.fromarray(body), (0, 16))
    draw = ImageDraw.Draw(canvas)
    width = 64 * zoom + 2
    titles = (
        "input",
        "nearest + conv",
        "transposed conv",
        f"bg logit detail, nearest ({power[0]:.2f})",
        f"bg logit detail, transposed ({power[1]:.2f})",
    )
    for k, title in enumerate(titles):
        draw.text((4 + k * width, 2), title, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    print(
        f"checkerboard power (pi, pi) / high band, {count} test scenes: nearest {power[0]:.3f}, "
        f"transposed {power[1]:.3f}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weight", required=True, help="the published weight whose card gets the results")
    parser.add_argument("--run", action="append", default=[], metavar="CHANGE=RUN", help="a one-change run")
    parser.add_argument("--reference", metavar="NAME=WEIGHT", help="a published weight as a baseline row")
    parser.add_argument("--decoders", nargs=2, metavar=("NEAREST", "TRANSPOSED"), help="two weight folders")
    args = parser.parse_args(argv)
    ablations = {}
    for item in args.run:
        change, _, folder = item.rpartition("=")
        if not change:
            raise SystemExit(f"--run {item!r}: expected CHANGE=RUN_FOLDER")
        ablations[change] = read_run(Path(folder))
        print(f"{change}: {ablations[change]}")
    fields: dict[str, dict | str] = {"ablations": ablations} if ablations else {}
    if args.reference:
        label, _, reference = args.reference.rpartition("=")
        if not label:
            raise SystemExit(f"--reference {args.reference!r}: expected NAME=WEIGHT")
        fields["baselines"], fields["description"] = reference_fields(args.weight, label, reference)
        print(fields["description"])
    files = {}
    if args.decoders:
        picture = decoder_picture(*args.decoders, ROOT / "hub" / args.weight / "decoder_upsampling.png")
        files["decoder_upsampling"] = picture.name
        print(f"picture: {picture}")
    print(f"written to {write_weight_fields(args.weight, files, **fields)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
