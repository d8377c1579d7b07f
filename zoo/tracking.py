"""``zoo track``: carry a first frame's instance masks through a video with a mask-propagation weight.

    zoo track colorization_tracker.videos --video 3 --out track.png        # test video 3 of digit_videos
    zoo track colorization_tracker.videos f0.png f1.png ... --mask m.png    # your frames, your first mask
    zoo track --onnx tracker.onnx f0.png f1.png ... --mask m.png            # torch-free

Frames are image files in order (or one animated GIF); the mask is a single-channel PNG whose pixel values
are instance ids (0 background, 1..K the objects to follow). The picture shows the frames, the propagated
masks over them, and with ``--video`` the generator's ground truth. A CLI plugin: torch is imported only by
the PyTorch path.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ConfigError

__all__ = ["add_commands", "read_frames", "track_strip"]


def read_frames(files: Sequence[str | Path]) -> np.ndarray:
    """Image files (or one animated GIF) -> (T, H, W, 3) uint8 RGB frames of one size."""
    from PIL import Image, ImageSequence

    frames = []
    for path in files:
        with Image.open(path) as image:
            frames += [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
    if len(frames) < 2:
        raise ConfigError(f"a video needs at least 2 frames, got {len(frames)} from {list(map(str, files))}")
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise ConfigError(f"frames differ in size: {sorted(sizes)}; resize them to one size first")
    return np.stack(frames)


def read_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A single-channel PNG of instance ids (0 background, 1..K) of the frames' size -> (H, W) uint8."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16"):
            raise ConfigError(
                f"{path}: the first-frame mask must be a single-channel image of instance ids (0 background, "
                f"1..K objects), got mode {image.mode}"
            )
        mask = np.asarray(image).astype(np.int64)
    if mask.shape != size:
        raise ConfigError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, the frames {size[1]}x{size[0]}")
    if mask.max() == 0 or mask.max() > 255:
        raise ConfigError(f"{path}: instance ids must be 1..255 on a 0 background, got max {mask.max()}")
    return mask.astype(np.uint8)


def track_strip(frames: np.ndarray, masks: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """The picture: frames, propagated masks over them (and the ground truth), up to 6 frames evenly."""
    from zoo.tasks.draw import overlay_instances, video_strip

    rows = [frames, overlay_instances(frames, masks)]
    if truth is not None:
        rows.append(overlay_instances(frames, truth))
    return video_strip(rows, every=max(1, len(frames) // 6), scale=3)


def _torch_runner(name: str) -> tuple[Callable[[np.ndarray], Mapping[str, np.ndarray]], Any]:
    import torch

    from zoo.factory import create_model
    from zoo.models.base import named_outputs

    model = create_model(name, pretrained=True).eval()
    meta = model.pretrained_weights
    if meta is None or getattr(meta.task_object, "propagate", None) is None:
        raise ConfigError(f"{name} is not a mask-propagation weight (see zoo list --pretrained)")

    @torch.no_grad()
    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return named_outputs(model, model(torch.from_numpy(x)), meta.task_object)

    return run, meta


def _cmd_track(args: argparse.Namespace) -> int:
    from PIL import Image

    truth = None
    if args.video is not None:
        if args.onnx is not None or args.files:
            raise ConfigError("--video takes a digit_videos test video: give no frames and no --onnx")
        from zoo.data import load_dataset

        video = load_dataset("digit_videos").test.video(args.video)
        frames, mask, truth = video.frames, video.instances[0], video.instances
    else:
        files = args.files if args.onnx is None else [args.name, *args.files]
        if not files or args.mask is None:
            raise ConfigError(
                "give the frames (image files in order, or a GIF) and --mask FIRST_FRAME_IDS.png"
            )
        frames = read_frames(files)
        mask = read_mask(args.mask, frames.shape[1:3])
    if args.onnx is not None:
        from export.runtime import OnnxModel

        masks = OnnxModel(args.onnx).propagate(frames, mask)
    else:
        if not args.name:
            raise ConfigError("name a mask-propagation weight (zoo track NAME ...) or --onnx FILE")
        run, meta = _torch_runner(args.name)
        masks = meta.task_object.propagate(run, meta, frames, mask)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(track_strip(frames, masks, truth)).save(args.out)
    ids = [int(k) for k in np.unique(mask) if k]
    for t, frame in enumerate(masks):
        counts = ", ".join(f"{k}: {int((frame == k).sum())} px" for k in ids)
        line = f"frame {t}: {counts}"
        if truth is not None:  # the card's IoU: instances visible in the frame's ground truth
            from zoo.metrics.segmentation import visible_instance_ious

            ious = visible_instance_ious(frame, truth[t])
            line += f" (IoU {np.mean(list(ious.values())):.2f})" if ious else " (no object visible)"
        print(line)
    print(f"{len(masks)} frames, {len(ids)} objects -> {args.out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="propagate a first frame's instance masks through a video")
    p.add_argument(
        "name", nargs="?", default=None, help="a mask-propagation weight (or, with --onnx, a frame)"
    )
    p.add_argument("files", nargs="*", help="frames in order (image files, or one animated GIF)")
    p.add_argument("--mask", type=Path, default=None, help="first frame's instance ids (single-channel PNG)")
    p.add_argument("--video", type=int, default=None, help="use test video N of digit_videos (and its truth)")
    p.add_argument("--onnx", type=Path, default=None, metavar="FILE", help="an exported file, torch-free")
    p.add_argument("--out", type=Path, default=Path("track.png"), help="the picture (default track.png)")
    p.set_defaults(func=_cmd_track)
