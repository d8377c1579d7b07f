"""Samples per second of diffusion sampling: PyTorch eager vs onnxruntime (the torch-free runtime), DDIM.

    python benchmarks/sampling_speed.py [NAME] [--batch 16] [--steps 50] [--guidance 2] [--threads 2]

NAME is a diffusion weight (``ddpm_unet_mnist_cond.mnist``), a weight folder or an architecture (random
weights: the speed does not depend on them). Both runtimes run the same sampler code
(`zoo.processes.diffusion.sample_loop`) from the same initial noise; only the network call differs. Each
runtime is timed with the other's session closed (an idle onnxruntime session slows eager PyTorch, see
FACTS.md), after one warm-up call; the table also prints the max abs difference of the two sample sets.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="ddpm_unet_mnist_cond")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=2.0, help="conditional models only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import zoo
    from export.onnx import to_onnx
    from export.runtime import OnnxModel
    from zoo.factory import looks_like_path
    from zoo.registry import parse_model_name

    pretrained = not looks_like_path(args.name) and parse_model_name(args.name)[1] is not None
    model = zoo.create_model(args.name, pretrained=pretrained).eval()
    guidance = args.guidance if model.num_classes else None
    labels = [i % model.num_classes for i in range(args.batch)] if model.num_classes else None
    noise = torch.randn(args.batch, *model.input_size, generator=torch.Generator().manual_seed(0))
    options = dict(labels=labels, steps=args.steps, guidance=guidance, sampler="ddim", eta=0.0)

    def best(run) -> tuple[float, np.ndarray]:
        out = run()  # warm-up
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
        return min(times), np.asarray(out)

    eager_s, eager = best(lambda: model.sample(args.batch, noise=noise, **options).numpy())
    with tempfile.TemporaryDirectory() as tmp:
        path = to_onnx(model, Path(tmp) / "ddpm.onnx").path
        onnx_model = OnnxModel(path, threads=args.threads)
        ort_s, ort = best(lambda: onnx_model.sample(args.batch, noise=noise.numpy(), **options))
        onnx_model = None  # close the session: its idle threads would slow later eager runs
    rate_eager, rate_ort = args.batch / eager_s, args.batch / ort_s
    print(
        f"{'model':<28} {'batch':>5} {'steps':>5} {'eager/s':>9} {'ort/s':>9} {'ort/eager':>9} {'max abs':>9}"
    )
    print(
        f"{args.name:<28} {args.batch:>5} {args.steps:>5} {rate_eager:>9.2f} {rate_ort:>9.2f} "
        f"{rate_ort / rate_eager:>9.2f} {np.abs(eager - ort).max():>9.1e}"
    )


if __name__ == "__main__":
    main()
