"""Text with images, for weights that embed both (CLIP, `zoo.models.clip`): text embeddings, zero-shot
labels for ``zoo predict --labels``, and ``zoo search-images NAME "a 4 above a 9" DIR``.

A weight qualifies by what it can do (an ``encode_text`` method and a ``tokenizer.json``), not by name.
``--onnx`` runs the exported graphs with `export.clip_runtime` instead (onnxruntime and numpy only).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ConfigError

__all__ = ["class_options", "embed_texts", "image_files", "search_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _text_model(name: str) -> tuple[Any, Any]:
    from zoo.predict import load_for_inference
    from zoo.text import get_tokenizer

    model = load_for_inference(name)
    if not hasattr(model, "encode_text"):
        raise ConfigError(
            f"{name} embeds no text: pick a CLIP weight (zoo list --task zero-shot-image-classification)"
        )
    folder = name if Path(name).is_dir() else getattr(model.pretrained_weights, "name", name)
    return model, get_tokenizer(folder)


def embed_texts(name: str, texts: Sequence[str]) -> np.ndarray:
    """(N, D) unit text embeddings of `texts` under weight `name` (PyTorch)."""
    import torch

    if not texts:
        raise ConfigError("give at least one text")
    model, tokenizer = _text_model(name)
    with torch.no_grad():
        return model.encode_text(tokenizer(list(texts)), normalize=True).numpy().astype(np.float32)


def class_options(model: Any, tokenizer: Any, labels: Sequence[str]) -> dict[str, Any]:
    """``zoo predict --labels``: the options a zero-shot task's postprocess takes (class embeddings from
    the weight's prompt templates, and the class names)."""
    from zoo.models.clip import zero_shot_classifier

    labels = [label.strip() for label in labels if label.strip()]
    if not labels:
        raise ConfigError("--labels: give class names or texts, separated by commas")
    templates = tuple(getattr(model.pretrained_weights, "templates", None) or ("{}",))
    embeds = zero_shot_classifier(model, tokenizer, labels, templates).numpy()
    return {"class_embeddings": embeds, "class_names": tuple(labels)}


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a folder (not recursive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def search_images(
    name: str, query: str, folder: str | os.PathLike, onnx: str | os.PathLike | None = None
) -> list[tuple[Path, float]]:
    """The images of `folder` ranked by cosine similarity to the text `query`, best first."""
    files = image_files(folder)
    if onnx is not None:
        from export.clip_runtime import ClipRuntime

        runtime = ClipRuntime(onnx)
        order, scores = runtime.search(query, files)
        return [(files[i], float(s)) for i, s in zip(order, scores)]
    import torch

    from zoo.preprocess import load_image

    model, tokenizer = _text_model(name)
    meta = model.pretrained_weights
    task = meta.task_object
    x = np.concatenate([task.preprocess(load_image(f, meta.input_size[0]), meta) for f in files])
    with torch.no_grad():
        images = model.encode_image(torch.from_numpy(x), normalize=True)
        text = model.encode_text(tokenizer([query]), normalize=True)[0]
    scores = (images @ text).numpy()
    order = np.argsort(-scores, kind="stable")
    return [(files[i], float(scores[i])) for i in order]


def _cmd_search(args: argparse.Namespace) -> int:
    ranked = search_images(args.name, args.query, args.folder, args.onnx)
    for path, score in ranked[: args.top or None]:
        print(f"{score:.4f}  {path}")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("search-images", help="rank a folder of images by a text query (CLIP weights)")
    p.add_argument("name", help="arch.tag of a CLIP weight, or a weight folder")
    p.add_argument("query", help='the text, e.g. "a 4 above a 9"')
    p.add_argument("folder", type=Path, help="a folder of image files")
    p.add_argument("--top", type=int, default=10, help="print the best N (0: all)")
    p.add_argument(
        "--onnx", type=Path, default=None, metavar="PATH", help="the exported image graph (no torch)"
    )
    p.set_defaults(func=_cmd_search)
