"""Samples per second of PixelCNN sampling: windowed PyTorch eager, whole-image eager, onnxruntime.

    python benchmarks/pixelcnn_sampling.py [NAME] [--batch 16] [--threads 2] [--no-full] [--no-onnx]

NAME is a PixelCNN weight, folder or architecture (random weights: speed does not depend on them). Three
samplers of the same 784-step raster loop: ``window`` (the default ``model.sample``: vertical stack once per
row on the rows in reach, horizontal stack per pixel on the pixels in reach), ``full`` (the whole network on
the whole image at every pixel: what sampling costs without the windows) and ``ort`` (the torch-free
runtime, whole image per pixel, `export.adapters.pixelcnn.sample`). Each runs once after no warm-up (a
784-step loop amortises it); wall and process CPU time are printed, since on the shared machine wall time
depends on the load (printed too), and CPU time per sample estimates an idle machine's speed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def timed(run: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="pixelcnn")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-full", action="store_true", help="skip the whole-image eager sampler")
    parser.add_argument("--no-onnx", action="store_true", help="skip onnxruntime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import zoo
    from zoo.factory import looks_like_path
    from zoo.registry import parse_model_name

    pretrained = not looks_like_path(args.name) and parse_model_name(args.name)[1] is not None
    model = zoo.create_model(args.name, pretrained=pretrained).eval().to(args.device)
    labels = [i % model.num_classes for i in range(args.batch)] if model.num_classes else None
    gen = torch.Generator(device=args.device).manual_seed(0)
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cpus), device {args.device}")
    rows = [("window", timed(lambda: model.sample(args.batch, generator=gen, labels=labels)))]
    if not args.no_full:
        rows.append(
            ("full", timed(lambda: model.sample(args.batch, generator=gen, labels=labels, window=False)))
        )
    if not args.no_onnx:
        from export.onnx import to_onnx
        from export.runtime import OnnxModel

        with tempfile.TemporaryDirectory() as tmp:
            path = to_onnx(model.cpu(), Path(tmp) / "pixelcnn.onnx").path
            onnx_model = OnnxModel(path, threads=args.threads)
            rows.append(("ort", timed(lambda: onnx_model.sample(args.batch, seed=0, labels=labels))))
            onnx_model = None  # close the session: its idle threads would slow later eager runs
    print(f"{'sampler':<8} {'batch':>5} {'wall s':>8} {'cpu s':>8} {'samples/s':>10} {'cpu s/sample':>12}")
    for name, (wall, cpu) in rows:
        print(
            f"{name:<8} {args.batch:>5} {wall:>8.1f} {cpu:>8.1f} {args.batch / wall:>10.3f} {cpu / args.batch:>12.2f}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
