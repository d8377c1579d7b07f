"""`zoo predict` with PyTorch: preprocessing and labels come from the weight's metadata."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from zoo.errors import ConfigError
from zoo.factory import HF_PREFIX, _looks_like_path, create_model
from zoo.preprocess import load_image, preprocess_image, softmax
from zoo.preprocess import topk as topk_labels


def load_for_inference(name: str) -> torch.nn.Module:
    """A pretrained model in eval mode: `arch` (its default weight), `arch.tag`, a folder or an hf-hub repo."""
    if name.startswith(HF_PREFIX) or _looks_like_path(name):
        model = create_model(name)
    else:
        model = create_model(name, pretrained=True)
    return model.eval()


@torch.no_grad()
def predict_files(
    name: str,
    files: Sequence[str | os.PathLike],
    k: int = 3,
    invert: bool = False,
    out_dir: Path | None = None,
) -> Iterator[str]:
    """One printable line per file: top-k labels with probabilities, or where an output image was written."""
    model = load_for_inference(name)
    meta = model.pretrained_weights
    input_size = meta.input_size or model.input_size
    for path in files:
        x = preprocess_image(load_image(path, input_size[0]), input_size, meta.mean, meta.std, invert=invert)
        output = model(torch.from_numpy(x))
        if meta.task == "image-classification":
            probs = softmax(output.float().numpy())[0]
            ranked = ", ".join(f"{label} {p:.3f}" for label, p in topk_labels(probs, k, meta.labels))
            yield f"{path}: {ranked}"
        elif meta.task == "autoencoding":
            if out_dir is None:
                raise ConfigError("autoencoder predictions are images: pass --out DIR to write them")
            yield f"{path}: reconstruction -> {_write_image(output, meta, out_dir, path)}"
        else:
            raise ConfigError(f"`zoo predict` does not handle task '{meta.task}' yet")


def _write_image(output: torch.Tensor, meta, out_dir: Path, source) -> Path:
    from PIL import Image

    x = output[0].float().numpy().transpose(1, 2, 0)
    if meta.mean is not None and meta.std is not None:
        x = x * np.asarray(meta.std) + np.asarray(meta.mean)
    image = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{Path(source).stem}_reconstruction.png"
    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(target)
    return target
