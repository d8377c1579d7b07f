"""Pictures of results, in numpy and PIL only (the torch-free runtime draws them too).

Mask overlays, labelled boxes, image grids and video strips for ``zoo predict``, ``zoo sample``, ``zoo track``
and model cards. With
torch at hand, torchvision's ``utils.draw_bounding_boxes`` / ``draw_segmentation_masks`` do the same;
these exist so that a deployment without torch draws identical pictures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "INSTANCE_COLOURS",
    "draw_boxes",
    "grid",
    "overlay_instances",
    "overlay_masks",
    "palette",
    "save_png",
    "to_rgb",
    "video_strip",
]

# One colour per instance id 1, 2, 3, ... (red, green, blue first; ids past the end reuse them in turn).
INSTANCE_COLOURS = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (240, 50, 230),
    (70, 240, 240),
    (245, 130, 48),
    (145, 30, 180),
)


def palette(n: int) -> np.ndarray:
    """`n` distinct RGB colours (uint8), the same for every call: class i always gets colour i."""
    # Golden-ratio hue steps keep neighbouring class indices far apart in colour.
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    rgb = np.stack([_hsv_to_rgb(h, 0.75, 0.95) for h in hues]) if n else np.zeros((0, 3))
    return (rgb * 255).round().astype(np.uint8)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def overlay_masks(
    image: np.ndarray, masks: np.ndarray, colors: np.ndarray | None = None, alpha: float = 0.5
) -> np.ndarray:
    """Blend boolean masks (N, H, W) over an image, each in its colour (default: `palette`)."""
    out = to_rgb(image).astype(np.float32)
    masks = np.asarray(masks, bool)
    if masks.ndim == 2:
        masks = masks[None]
    colors = palette(len(masks)) if colors is None else np.asarray(colors)
    for mask, color in zip(masks, colors):
        if mask.shape != out.shape[:2]:
            raise ValueError(f"mask of shape {mask.shape} does not match the image {out.shape[:2]}")
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.round().astype(np.uint8)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[str] = (),
    colors: np.ndarray | None = None,
    width: int = 1,
) -> np.ndarray:
    """Draw (N, 4) xyxy boxes with optional text labels on an image."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(to_rgb(image))
    draw = ImageDraw.Draw(canvas)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    colors = palette(len(boxes)) if colors is None else np.asarray(colors)
    for i, box in enumerate(boxes):
        color = tuple(int(c) for c in colors[i % len(colors)])
        draw.rectangle([float(v) for v in box], outline=color, width=width)
        if i < len(labels) and labels[i]:
            x, y = float(box[0]), max(float(box[1]) - 10, 0.0)
            draw.text((x + 1, y), str(labels[i]), fill=color)
    return np.asarray(canvas)


def grid(images: Sequence[np.ndarray], columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (H, W, C) uint8 images of one size into a grid (rows filled left to right)."""
    if not len(images):
        raise ValueError("grid() needs at least one image")
    tiles = [to_rgb(im) for im in images]
    h, w = tiles[0].shape[:2]
    if any(t.shape[:2] != (h, w) for t in tiles):
        raise ValueError("grid() needs images of one size")
    columns = columns or int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / columns))
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = (
            tile
        )
    return out


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (H, W[, C]) uint8 image as PNG, atomically (a crash never leaves half a file)."""
    import io

    from PIL import Image

    from zoo.fileio import atomic_write_bytes

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def video_strip(rows: Sequence[np.ndarray], *, every: int = 1, gap: int = 2, scale: int = 2) -> np.ndarray:
    """uint8 ``(H', W', 3)`` picture of frame sequences: each row a uint8 ``(T, H, W, 3)`` or grey
    ``(T, H, W)`` array, frames 0, every, 2 * every, ... left to right, rows top to bottom, enlarged
    (nearest neighbour) by `scale` and separated by `gap` white pixels (shorter rows end in white)."""
    if not rows or every < 1 or scale < 1 or gap < 0:
        raise ValueError(
            f"need at least one row, every >= 1, scale >= 1, gap >= 0; got {len(rows)} rows, "
            f"every={every}, scale={scale}, gap={gap}"
        )
    strips = []
    for row in rows:
        row = np.asarray(row)
        if row.dtype != np.uint8 or row.ndim not in (3, 4) or (row.ndim == 4 and row.shape[-1] != 3):
            raise ValueError(f"each row must be uint8 (T, H, W, 3) or (T, H, W), got {row.dtype} {row.shape}")
        if row.ndim == 3:
            row = np.repeat(row[..., None], 3, axis=-1)
        row = row[::every].repeat(scale, axis=1).repeat(scale, axis=2)  # (F, h, w, 3)
        count, h, w = row.shape[:3]
        strip = np.full((h, count * (w + gap) - gap, 3), 255, np.uint8)
        for f in range(count):
            strip[:, f * (w + gap) : f * (w + gap) + w] = row[f]
        strips.append(strip)
    width = max(s.shape[1] for s in strips)
    height = sum(s.shape[0] for s in strips) + gap * (len(strips) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for strip in strips:
        out[y : y + strip.shape[0], : strip.shape[1]] = strip
        y += strip.shape[0] + gap
    return out


def overlay_instances(frames: np.ndarray, instances: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` frames with each instance id k > 0 of ``(T, H, W)`` `instances` tinted by
    ``INSTANCE_COLOURS[(k - 1) % 8]`` (weight `alpha`) and its boundary drawn opaque in that colour."""
    frames, instances = np.asarray(frames), np.asarray(instances)
    if frames.dtype != np.uint8 or frames.shape[-1:] != (3,) or instances.shape != frames.shape[:-1]:
        raise ValueError(
            f"frames must be uint8 (T, H, W, 3) and instances (T, H, W), got {frames.dtype} {frames.shape}, "
            f"{instances.shape}"
        )
    ids = instances.astype(np.int64)
    palette = np.asarray(((0, 0, 0), *INSTANCE_COLOURS), np.float32)
    colour = palette[np.where(ids > 0, (ids - 1) % len(INSTANCE_COLOURS) + 1, 0)]
    # A boundary pixel has a 4-neighbour with another id; the frame's edge is not a boundary.
    padded = np.pad(ids, [(0, 0)] * (ids.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    core = padded[..., 1:-1, 1:-1]
    edge = (
        (padded[..., :-2, 1:-1] != core)
        | (padded[..., 2:, 1:-1] != core)
        | (padded[..., 1:-1, :-2] != core)
        | (padded[..., 1:-1, 2:] != core)
    )
    weight = np.where(ids > 0, np.where(edge, 1.0, alpha), 0.0)[..., None].astype(np.float32)
    out = (1 - weight) * frames + weight * colour
    return np.round(out).clip(0, 255).astype(np.uint8)
