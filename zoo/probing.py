"""How good are features without labels, and how many labels do they save? One protocol for every encoder.

Features of a labelled train split and of the test split are computed once with the encoder frozen. For
each label budget (``labels_per_class``: 1, 10, 100, all), a seeded draw of that many train images per
class fits a linear probe (`zoo.metrics.LinearProbeAccuracy`) and a cosine kNN vote (k = 20,
`zoo.metrics.KNNAccuracy`), both scored on the whole test split; each budget below "all" is drawn
`draws` times (different images each draw) and reported as mean and standard deviation.

The same protocol measures the baselines that give the numbers meaning (`baseline_encoders`): raw pixels,
a randomly initialised encoder of the same architecture, the autoencoder's latent code and the supervised
classifier's pooled features -- all on the same splits and draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI loads this module in torch-free processes
    import torch
    from torch import nn

__all__ = [
    "LABEL_BUDGETS",
    "ProbeResult",
    "baseline_encoders",
    "embed_files",
    "encode_split",
    "label_efficiency",
    "probe",
    "probe_table",
    "probe_weight",
    "strip_classifier",
    "write_features",
]

LABEL_BUDGETS = (1, 10, 100, 0)  # labels per class; 0: every train label (4,000 on MNIST 5k)
KNN_K = 20
DRAWS = 3


@dataclass
class ProbeResult:
    """Accuracies of one encoder at one label budget: mean and spread over the label draws."""

    labels_per_class: int  # 0: all
    labels: int  # train labels used per draw
    knn: tuple[float, float]  # (mean, std)
    linear: tuple[float, float]
    draws: int

    def row(self, name: str) -> str:
        return (
            f"| {name} | {self.labels} | {self.linear[0]:.2%} ± {self.linear[1]:.2%} "
            f"| {self.knn[0]:.2%} ± {self.knn[1]:.2%} |"
        )


def strip_classifier(model: nn.Module) -> nn.Module:
    """`model` with its classifier layer (`ZooModel.classifier`) replaced by the identity, in place: a
    classifier's forward then returns the pooled features its classifier reads."""
    from zoo.models.self_supervised import strip_classifier as remove_classifier

    remove_classifier(model)
    return model


def encode_split(
    encode: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 500,
) -> torch.Tensor:
    """Float32 features ``(N, D)`` of uint8 images ``(N, C, H, W)``, scaled to [0, 1] and standardised with
    `mean` and `std` as the encoder's weight expects; anything an encoder returns is flattened per image."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].float().div(255)
            if mean is not None and std is not None:
                x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
            out.append(encode(x).float().flatten(1))
    return torch.cat(out)


def _draw(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    picked = []
    for c in labels.unique(sorted=True):
        members = (labels == c).nonzero().flatten()
        if len(members) < per_class:
            raise ConfigError(f"class {int(c)} has {len(members)} train images, fewer than {per_class} asked")
        picked.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picked)


def probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    labels_per_class: int = 0,
    draws: int = DRAWS,
    seed: int = 0,
) -> ProbeResult:
    """Linear-probe and kNN accuracy on the test features with `labels_per_class` train labels (0: all),
    over `draws` seeded draws (one when every label is used: there is nothing to draw)."""
    import torch

    from zoo.metrics import KNNAccuracy, LinearProbeAccuracy

    if labels_per_class < 0 or draws < 1:
        raise ConfigError(f"labels_per_class must be >= 0 and draws >= 1, got {labels_per_class}, {draws}")
    n_draws = 1 if labels_per_class == 0 else draws
    knn, linear = [], []
    for d in range(n_draws):
        idx = (
            torch.arange(len(train_labels))
            if labels_per_class == 0
            else _draw(train_labels, labels_per_class, seed + d)
        )
        for metric, accs in ((KNNAccuracy(k=KNN_K), knn), (LinearProbeAccuracy(), linear)):
            metric.fit(train_features[idx], train_labels[idx])
            metric.update(test_features, test_labels)
            accs.append(next(iter(metric.compute().values())))
    count = (
        len(train_labels) if labels_per_class == 0 else labels_per_class * int(train_labels.unique().numel())
    )

    def stats(values: list[float]) -> tuple[float, float]:
        return float(np.mean(values)), float(np.std(values))

    return ProbeResult(labels_per_class, count, stats(knn), stats(linear), n_draws)


def label_efficiency(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    budgets: Iterable[int] = LABEL_BUDGETS,
    draws: int = DRAWS,
    seed: int = 0,
) -> list[ProbeResult]:
    """`probe` at every label budget (labels per class; 0: all)."""
    return [probe(train_features, train_labels, test_features, test_labels, k, draws, seed) for k in budgets]


def baseline_encoders(meta: Any) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Any]]:
    """The reference encoders for a self-supervised weight `meta`, by name -> (encode, the weight whose
    mean/std it expects, or None for [0, 1] pixels): raw pixels, the same architecture at random
    initialisation (seed 0), and, where the zoo publishes them for the weight's dataset, the autoencoder's
    latent code and the supervised CNN's pooled features."""
    import torch

    from zoo.factory import create_model
    from zoo.registry import list_models

    encoders: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Any]] = {
        "raw pixels": (lambda x: x.flatten(1), None)
    }
    torch.manual_seed(0)
    random_init = create_model(meta.arch, **dict(meta.model_args)).eval()
    encoders["random-init encoder"] = (random_init, meta)
    published = set(list_models(pretrained=True))
    dataset_tag = meta.tag
    if f"autoencoder.{dataset_tag}" in published:
        autoencoder = create_model(f"autoencoder.{dataset_tag}", pretrained=True).eval()
        encoders["autoencoder latent"] = (autoencoder.encode, autoencoder.pretrained_weights)
    if f"cnn.{dataset_tag}" in published:
        supervised = strip_classifier(create_model(f"cnn.{dataset_tag}", pretrained=True)).eval()
        encoders["supervised CNN features"] = (supervised, supervised.pretrained_weights)
    return encoders


def probe_table(results: Mapping[str, list[ProbeResult]]) -> list[str]:
    """A markdown table: one row per (encoder, label budget)."""
    lines = ["| encoder | labels | linear probe | kNN (k = 20) |", "|---|---|---|---|"]
    for name, rows in results.items():
        lines += [r.row(name) for r in rows]
    return lines


# ------------------------------------------------------------------------------------ command line
def embed_files(name: str, files: Sequence[Any], invert: bool = False) -> np.ndarray:
    """Features ``(N, D)`` float32 of image files under weight `name`, preprocessed as ``zoo predict`` does
    (the weight's size, mean and std); unit length when the weight says ``normalize``."""
    import torch

    from zoo.models.base import named_outputs
    from zoo.predict import load_for_inference
    from zoo.preprocess import load_image

    model = load_for_inference(name)
    meta = model.pretrained_weights
    # Feature extractors, and image-text weights (CLIP: their image embeddings, unit length).
    if meta.task != "feature-extraction" and not hasattr(model, "encode_image"):
        raise ConfigError(
            f"{name} is a {meta.task} weight; `zoo embed` takes feature extractors (zoo list --task "
            "feature-extraction) and CLIP weights"
        )
    task = meta.task_object
    channels = meta.input_size[0] if meta.input_size else model.input_size[0]
    vectors = []
    with torch.no_grad():
        for path in files:
            x = task.preprocess(load_image(path, channels), meta, invert=invert)
            outputs = named_outputs(model, model(torch.from_numpy(x)), task)
            vectors += [getattr(r, "vector", r) for r in task.postprocess(outputs, meta)]
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)


def write_features(path: Path, features: np.ndarray, files: Sequence[Any]) -> None:
    """``.npy`` (the array) or ``.safetensors`` (``features`` plus the file names in its metadata), atomically."""
    from zoo.fileio import atomic_write_bytes

    if path.suffix == ".npy":
        import io

        buffer = io.BytesIO()
        np.save(buffer, features)
        atomic_write_bytes(path, buffer.getvalue())
    elif path.suffix == ".safetensors":
        import json

        from safetensors.numpy import save

        atomic_write_bytes(
            path, save({"features": features}, metadata={"files": json.dumps([str(f) for f in files])})
        )
    else:
        raise ConfigError(f"--out {path}: write features to a .npy or a .safetensors file")


def probe_weight(
    name: str, labels_per_class: Sequence[int], draws: int = DRAWS, baselines: bool = False
) -> list[str]:
    """The label-efficiency table of weight `name` (and of its baselines) on its recorded dataset."""
    from zoo.data import load_dataset
    from zoo.predict import load_for_inference

    model = load_for_inference(name)
    meta = model.pretrained_weights
    if not meta.dataset:
        raise ConfigError(f"{name} records no dataset to probe on")
    splits = load_dataset(meta.dataset)
    encoders = {name: (model, meta)}
    if baselines:
        encoders.update(baseline_encoders(meta))
    results = {}
    for label, (encode, weight) in encoders.items():
        mean, std = (weight.mean, weight.std) if weight is not None else (None, None)
        train, test = (encode_split(encode, s.images, mean, std) for s in (splits.train, splits.test))
        results[label] = label_efficiency(
            train, splits.train.labels, test, splits.test.labels, labels_per_class, draws
        )
    return probe_table(results)


def _cmd_embed(args: Any) -> int:
    if args.text:
        from zoo.search import embed_texts

        features, sources = embed_texts(args.name, args.text), args.text
    elif args.files:
        features, sources = embed_files(args.name, args.files, invert=args.invert), args.files
    else:
        raise ConfigError("give image files, or --text for a CLIP weight's text embeddings")
    write_features(args.out, features, sources)
    print(f"{args.out}: {features.shape[0]} x {features.shape[1] if features.ndim == 2 else 0} features")
    return 0


def _cmd_probe(args: Any) -> int:
    budgets = args.labels_per_class or list(LABEL_BUDGETS)
    for line in probe_weight(args.name, budgets, args.draws, args.baselines):
        print(line)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "embed", help="write a feature extractor's embeddings of image files (.npy or .safetensors)"
    )
    p.add_argument(
        "name", help="arch.tag of a feature-extraction weight, a weight folder, or hf-hub:org/repo"
    )
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument(
        "--out", type=Path, required=True, help="feats.npy, or feats.safetensors (names the files)"
    )
    p.add_argument(
        "--text", action="append", default=None, metavar="TEXT", help="CLIP: embed this text (repeatable)"
    )
    p.add_argument("--invert", action="store_true", help="invert intensities (dark digits on light paper)")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser(
        "probe", help="linear probe and kNN of a feature extractor's frozen features, by labels per class"
    )
    p.add_argument("name", help="arch.tag of a feature-extraction weight")
    p.add_argument(
        "--labels-per-class",
        type=int,
        action="append",
        metavar="K",
        help="labels per class for the probes (repeat for several; 0: all; default 1, 10, 100 and all)",
    )
    p.add_argument("--draws", type=int, default=DRAWS, help=f"label draws per budget (default {DRAWS})")
    p.add_argument(
        "--baselines", action="store_true", help="also probe raw pixels, a random-init encoder, ..."
    )
    p.set_defaults(func=_cmd_probe)
