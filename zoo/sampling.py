"""``zoo sample``: draw a grid of images from any generator (a model with a ``sample`` method).

    zoo sample ddpm_unet_mnist_cond.mnist --n 64 --labels 0,1,2 --steps 50 --guidance 2 --seed 0 --out grid.png
    zoo sample --onnx ddpm.onnx --n 16 --out grid.png          # onnxruntime + numpy only, no torch

The generator contract (issue 12): ``model.sample(n, generator=torch.Generator, labels=None,
**sampler_args)`` returns (n, C, H, W) images in [0, 1]. Only the options given on the command line are
passed on, so a model whose ``sample`` takes no ``steps`` (a VAE, a GAN) works unchanged, and an option it
does not take is refused by name. ``--onnx`` draws with the torch-free runtime: the file's export adapter
says how (`export.runtime.OnnxModel.sample`). Registered in `zoo.cli.PLUGIN_MODULES`.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ConfigError

__all__ = ["add_commands", "parse_labels", "sample_model", "save_grid"]


def parse_labels(text: str | None, n: int) -> list[int] | None:
    """``"0,1,2"`` -> n class indices, cycling through the given ones (None when not given)."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--labels {text!r}: give class indices separated by commas, e.g. 0,1,2") from None
    if not values:
        raise ConfigError("--labels is empty: give class indices separated by commas, e.g. 0,1,2")
    return [values[i % len(values)] for i in range(n)]


def _check_n(n: int) -> None:
    if n < 1:
        raise ConfigError(f"--n {n}: the number of samples must be at least 1")


def sample_model(
    name: str, n: int, *, seed: int = 0, labels: list[int] | None = None, device: str = "cpu", **options: Any
) -> np.ndarray:
    """(n, C, H, W) float images in [0, 1] from the registered generator `name` (a weight, a folder, an
    arch). `options` (steps, eta, guidance, ...; None values dropped) go to its ``sample``."""
    import torch

    from zoo.factory import create_model, looks_like_path
    from zoo.registry import get_entry, parse_model_name

    _check_n(n)
    if looks_like_path(name) or name.startswith("hf-hub:"):
        model = create_model(name)
    else:
        arch, tag = parse_model_name(name)
        model = create_model(name, pretrained=tag is not None or get_entry(arch).default_tag is not None)
    if not callable(getattr(model, "sample", None)):
        raise ConfigError(
            f"{name} has no sample method: `zoo sample` draws from generators (VAE, GAN, diffusion)"
        )
    options = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(model.sample).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    refused = [k for k in options if k not in params and not takes_any]
    if refused:
        accepted = [p for p in params if p not in ("n", "generator", "labels", "self")]
        raise ConfigError(
            f"{name} samples without {', '.join('--' + k for k in refused)}; it takes: "
            + (", ".join("--" + k for k in accepted) or "no sampler options")
        )
    target = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    model = model.to(target).eval()
    generator = torch.Generator(device=target).manual_seed(seed)
    with torch.no_grad():
        images = model.sample(n, generator=generator, labels=labels, **options)
    return images.detach().float().cpu().numpy()


def save_grid(images: np.ndarray, path: Path, columns: int | None = None, zoom: int = 2) -> Path:
    """Samples in [0, 1] as one PNG grid (each sample enlarged `zoom` times)."""
    from zoo.tasks.draw import grid, save_png
    from zoo.tasks.generation import samples_to_uint8

    tiles = [np.kron(t, np.ones((zoom, zoom, 1), np.uint8)) for t in samples_to_uint8(images)]
    return save_png(grid(tiles, columns=columns), path)


def _cmd_sample(args: argparse.Namespace) -> int:
    _check_n(args.n)
    labels = parse_labels(args.labels, args.n)
    options = {"steps": args.steps, "eta": args.eta, "guidance": args.guidance, "sampler": args.sampler}
    if args.onnx is not None:  # onnxruntime, numpy and pillow only
        from export.runtime import OnnxModel

        images = OnnxModel(args.onnx).sample(args.n, seed=args.seed, labels=labels, **options)
    else:
        if not args.name:
            raise ConfigError(
                "name a generator (zoo sample NAME) or an exported file (zoo sample --onnx FILE)"
            )
        images = sample_model(args.name, args.n, seed=args.seed, labels=labels, device=args.device, **options)
    path = save_grid(images, args.out, columns=args.columns)
    print(f"{len(images)} samples -> {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw a grid of samples from a generator (VAE, GAN, diffusion)")
    p.add_argument(
        "name", nargs="?", default=None, help="arch.tag, a weight folder or an arch (not with --onnx)"
    )
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--labels", default=None, help="conditional models: class indices, cycled, e.g. 0,1,2")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the weight's)")
    p.add_argument("--eta", type=float, default=None, help="DDIM eta: 0 deterministic .. 1 DDPM-like")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (1: none)")
    p.add_argument("--sampler", default=None, help="diffusion: ddim or ddpm (default: the weight's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--columns", type=int, default=None, help="grid columns (default: square)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (default cpu)")
    p.add_argument(
        "--onnx", type=Path, default=None, metavar="FILE", help="sample from an exported file, torch-free"
    )
    p.add_argument("--out", type=Path, default=Path("samples.png"), help="the grid PNG (default samples.png)")
    p.set_defaults(func=_cmd_sample)
