"""Pictures of a dataset, for a person to check it (``zoo data show``).

Scenes get three panels each: the image, the semantic map over it (one colour per digit class, legend at
the top), and the instance boxes with their digit (drawn with torchvision's ``draw_segmentation_masks`` and
``draw_bounding_boxes``), with the caption underneath. Image datasets get a grid of examples, each with
its label, spread evenly over the split (MNIST 5k is sorted by label: the first 16 would all be zeros).
Videos get a strip each (`video_strip`): the RGB frames left to right, the grey frames the network sees
under them, and the instance maps over the frames (`overlay_instances`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ConfigError
from zoo.tasks.draw import INSTANCE_COLOURS, overlay_instances, video_strip

__all__ = [
    "CLASS_COLOURS",
    "INSTANCE_COLOURS",
    "dataset_picture",
    "image_grid",
    "overlay_instances",
    "scene_grid",
    "video_strip",
]

# One colour per digit class (0..9), far apart in hue; class c = digit + 1 uses CLASS_COLOURS[c - 1].
CLASS_COLOURS = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 190),
)
_VIDEOS = 4  # videos a dataset picture shows: three rows of every frame each
_PANEL = 256  # pixels: small images are enlarged (nearest neighbour) to at least this side
_PAD = 4


@functools.cache
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@functools.cache
def _truetype_name(size: int) -> str | None:
    """A TrueType font file name PIL can find (draw_bounding_boxes takes a name, not a font object)."""
    from PIL import ImageFont

    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "Arial.ttf", "LiberationSans-Regular.ttf"):
        try:
            ImageFont.truetype(name, size)
            return name
        except OSError:
            continue
    return None


def _zoom(image: torch.Tensor, factor: int) -> torch.Tensor:
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _text_strip(text: str, width: int, lines: int = 2, size: int = 15) -> torch.Tensor:
    """White text on black, wrapped to `width` pixels, as a uint8 (3, h, width) tensor."""
    from PIL import Image, ImageDraw

    font = _font(size)
    words, rows, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if font.getlength(trial) > width - 2 * _PAD and line:
            rows.append(line)
            line = word
        else:
            line = trial
    rows.append(line)
    height = lines * (size + 4) + _PAD
    strip = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(strip)
    for i, row in enumerate(rows[:lines]):
        draw.text((_PAD, _PAD + i * (size + 4)), row, fill=(255, 255, 255), font=font)
    return torch.from_numpy(np.array(strip)).permute(2, 0, 1)


def _legend(width: int) -> torch.Tensor:
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, 28))
    draw = ImageDraw.Draw(strip)
    draw.text((_PAD, 6), "semantic classes:", fill=(255, 255, 255), font=_font(15))
    x = 150
    for digit, colour in enumerate(CLASS_COLOURS):
        draw.rectangle((x, 5, x + 18, 23), fill=colour)
        draw.text((x + 22, 5), str(digit), fill=(255, 255, 255), font=_font(15))
        x += 46
    return torch.from_numpy(np.array(strip)).permute(2, 0, 1)


def scene_grid(scenes: Any, n: int = 16, columns: int = 2) -> torch.Tensor:
    """uint8 (3, H, W) picture of the first `n` scenes of a `zoo.data.scenes.DigitScenes`."""
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks, make_grid

    size = scenes.config.size
    factor = max(1, _PANEL // size)
    font = _truetype_name(14)
    cells = []
    for i in range(min(n, len(scenes))):
        scene = scenes.scene(i)
        image = _zoom(torch.from_numpy(scene.image).permute(2, 0, 1).contiguous(), factor)
        semantic = _zoom(torch.from_numpy(scene.semantic), factor)
        classes = [c for c in range(1, 11) if (semantic == c).any()]
        overlay = image
        if classes:
            masks = torch.stack([semantic == c for c in classes])
            overlay = draw_segmentation_masks(
                image, masks, alpha=0.6, colors=[CLASS_COLOURS[c - 1] for c in classes]
            )
        boxed = image
        if len(scene.labels):
            boxes = torch.from_numpy(scene.boxes) * factor
            boxes[:, 2:] -= 1  # pixel-edge x2, y2 -> the last pixel inside, where the line is drawn
            colours = [CLASS_COLOURS[c - 1] for c in scene.labels.tolist()]
            boxed = draw_bounding_boxes(
                image,
                boxes,
                labels=[str(c - 1) for c in scene.labels.tolist()],
                colors=colours,
                width=2,
                font=font,
                font_size=14 if font else None,
                label_colors="black",
                fill_labels=True,
            )
        row = torch.cat([image, overlay, boxed], dim=2)
        caption = _text_strip(f"{i}: {scene.caption}  [{scene.background.split('@')[0]}]", row.shape[2])
        cells.append(torch.cat([row, caption], dim=1))
    grid = make_grid(cells, nrow=columns, padding=_PAD * 2, pad_value=64)
    return torch.cat([_legend(grid.shape[2]), grid], dim=1)


def image_grid(images: torch.Tensor, texts: Sequence[str], columns: int = 8) -> torch.Tensor:
    """uint8 (3, H, W) grid of uint8 ``(N, C, H, W)`` images, enlarged, each with its text underneath."""
    from torchvision.utils import make_grid

    factor = max(1, 96 // images.shape[-1])
    cells = []
    for image, text in zip(images, texts):
        image = _zoom(image.expand(3, -1, -1) if image.shape[0] == 1 else image, factor)
        cells.append(torch.cat([image, _text_strip(text, image.shape[2], lines=1, size=13)], dim=1))
    return make_grid(cells, nrow=columns, padding=_PAD, pad_value=64)


def _video_picture(videos: Any, n: int) -> torch.Tensor:
    """uint8 (3, H, W): for each of the first `n` videos, its frames, grey frames and instance overlay."""
    from zoo.data.videos import grey_frames

    rows = []
    for i in range(min(n, len(videos))):
        video = videos.video(i)
        rows += [video.frames, grey_frames(video.frames), overlay_instances(video.frames, video.instances)]
    return torch.from_numpy(video_strip(rows)).permute(2, 0, 1).contiguous()


def dataset_picture(name: str, split: str = "test", n: int = 16, **options: Any) -> torch.Tensor:
    """A picture of `n` examples of a registered dataset's split (uint8 (3, H, W))."""
    from zoo.data import load_dataset

    splits = load_dataset(name, **options)
    data = getattr(splits, split, None)
    if data is None:
        raise ConfigError(
            f"dataset {name!r} has no {split!r} split (try train, val with val_per_class, test)"
        )
    if hasattr(data, "scene"):
        return scene_grid(data, n)
    if hasattr(data, "video"):
        return _video_picture(data, min(n, _VIDEOS))
    if not hasattr(data, "images"):
        raise ConfigError(f"dataset {name!r}: showing {type(data).__name__} samples is not supported")
    # Evenly spread over the split: sorted datasets (MNIST 5k) show every class.
    index = torch.from_numpy(np.linspace(0, len(data) - 1, min(n, len(data))).round().astype(np.int64))
    images, labels = data.get_batch(index)
    texts = [str(splits.labels[int(y)]) for y in labels]
    return image_grid(images, texts)


def save_png(picture: torch.Tensor, out: str | Path) -> Path:
    """Write a uint8 (3, H, W) tensor as a PNG, creating the folder."""
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture.permute(1, 2, 0).numpy()).save(out, optimize=True)
    return out
