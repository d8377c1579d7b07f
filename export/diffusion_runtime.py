"""Torch-free diffusion sampling: onnxruntime runs the exported denoiser, numpy runs the sampler.

    from export.runtime import OnnxModel
    images = OnnxModel("ddpm_unet_mnist_cond.onnx").sample(16, seed=0, labels=[3] * 16, guidance=2.0)

The sampler is `zoo.processes.diffusion.sample_loop`, the very code ``model.sample`` runs on torch tensors,
here on numpy arrays; the process comes from the file's metadata (``zoo.process``), the defaults (sampler,
steps, eta, guidance) from the weight's fields, exactly as in PyTorch. Random draws come from numpy's
``default_rng(seed)``: a grid drawn here and one drawn by PyTorch differ in their noise, not in their math;
pass ``noise`` (x_T) and ``draw`` to give both runtimes the same noise (the tests do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zoo.processes.diffusion import (
    DEFAULT_SAMPLER,
    DiffusionProcess,
    check_guidance,
    check_labels,
    check_n,
    check_sampler,
    check_steps,
    guide,
    sample_loop,
)

__all__ = ["sample"]


def sample(
    model: Any,
    n: int,
    *,
    seed: int = 0,
    labels: int | Sequence[int] | None = None,
    steps: int | None = None,
    eta: float | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    spacing: str | None = None,
    noise: np.ndarray | None = None,
    draw: Callable[[], np.ndarray] | None = None,
    callback: Callable[[int, int, np.ndarray, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Draw `n` images (n, C, H, W) float32 in [0, 1] from an exported denoiser (`export.runtime.OnnxModel`).

    Arguments as ``DiffusionUNet.sample``; ``noise`` replaces x_T, ``draw()`` the per-step noise draws.
    """
    meta = model.meta
    process = DiffusionProcess.from_dict(meta.extra.get("process"))
    num_classes = int(meta.extra.get("num_classes", 0))
    check_n(n)
    defaults = {**DEFAULT_SAMPLER, **(getattr(meta, "sampler", None) or {})}
    sampler = sampler or defaults["name"]
    eta = float(defaults["eta"] if eta is None else eta)
    check_sampler(sampler, eta)
    if steps is None:
        steps = process.num_timesteps if sampler == "ddpm" else int(defaults["steps"])
    check_steps(steps, process.num_timesteps)
    check_guidance(guidance, num_classes)
    if num_classes:
        weight_scale = getattr(meta, "guidance_scale", None)
        scale = float(
            guidance if guidance is not None else (weight_scale if weight_scale is not None else 1.0)
        )
    else:
        scale = 1.0
    classes = check_labels(labels, n, num_classes, tuple(meta.labels))
    shape = (n, *tuple(meta.input_size))
    rng = np.random.default_rng(seed)
    if draw is None:

        def draw() -> np.ndarray:
            return rng.standard_normal(shape).astype(np.float32)

    x = draw() if noise is None else np.asarray(noise, np.float32)
    if x.shape != shape:
        raise ValueError(f"noise of shape {x.shape}; expected {shape}")
    label = np.asarray(classes, np.int64) if classes is not None else None
    guided = label is not None and scale != 1.0
    if guided:
        label = np.concatenate([label, np.full_like(label, num_classes)])

    def denoise(x_t: np.ndarray, t: int) -> np.ndarray:
        batch = np.concatenate([x_t, x_t]) if guided else x_t
        feeds = {"noisy_image": batch, "timestep": np.full((len(batch),), t, np.int64)}
        if num_classes:
            feeds["label"] = label
        out = model.run(feeds)["prediction"]
        return guide(out[: len(x_t)], out[len(x_t) :], scale) if guided else out

    x = sample_loop(
        denoise,
        x,
        process,
        draw,
        sampler=sampler,
        steps=steps,
        eta=eta,
        spacing=spacing or defaults.get("spacing", "trailing"),
        callback=callback,
    )
    return process.to_images(x).astype(np.float32)
