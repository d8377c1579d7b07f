"""Self-supervised representation learning without labels: SimCLR, MoCo v2, BYOL, CPC, context prediction and
rotation prediction.

Every method sees two augmented views of each unlabelled train image (the labels of MNIST 5k's 4,000 train
images are never read while training) and trains `zoo.models.self_supervised.SelfSupervisedEncoder`:

- ``simclr``: NT-Xent over the batch's 2N projections (`zoo.losses.nt_xent_loss`);
- ``moco``: the query encoder against a momentum key encoder (the ``target`` module, updated by
  `Context.ema_update` after each step: θk ← m θk + (1 - m) θq) and a queue of the last `queue_size`
  keys as negatives (`NegativeQueue`, checkpointed with the run), symmetrised over the two views;
- ``byol``: the online network's predictor regresses the target network's projection of the other view
  (`zoo.losses.negative_cosine_similarity`), the target's momentum rising from `momentum` to 1 on a
  cosine over the run, as in the paper;
- ``cpc`` (van den Oord et al. 2018): `zoo.models.self_supervised.CPCEncoder` predicts the patch embeddings
  1 .. steps rows below from the context above (`zoo.losses.patch_info_nce_loss`, one view per image);
- ``context`` (Doersch et al. 2015): `zoo.models.self_supervised.ContextPredictionEncoder` tells which of
  the 8 neighbours of a centre patch a second patch is, with the paper's guards against shortcuts: a gap
  of `patch_gap` px between the 3x3 cells and each patch jittered by up to `patch_jitter` px (so edges and
  lines continuing across patches do not give the answer away). Its remedy for chromatic aberration (drop
  or project colour channels) has nothing to act on in grey digits;
- ``rotation`` (Gidaris et al. 2018), the simpler pretext baseline: each image's view is shown at 0, 90,
  180 and 270 degrees and the projection head, with 4 outputs, classifies which (cross-entropy).

Views are made by `recipes.augment.BatchAugment`: per-sample random affine maps (rotation, shear, scale and
translation: the crop-and-resize of natural images becomes a zoom and shift of a centred digit) and
brightness/contrast, drawn from the run's seeded generator (a resumed run replays them). Nothing that
makes no sense for digits: no flips (a mirrored 2 is no digit), no blur at 28 px, no colour.

Evaluation is the frozen-feature protocol of `zoo.probing` (kNN with k = 20 and a linear probe, fitted on
the train split's features with every label, scored on the test split): the weight's ``knn_acc`` and
``linear_acc``, which ``zoo verify`` re-measures. At publish, the label-efficiency table (1, 10 and 100
labels per class, 3 draws each, and all labels) of the encoder and of the baselines measured the same way
(`zoo.probing.baseline_encoders`) goes into the card, with its plot.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from recipes.augment import BatchAugment, normalise
from recipes.classification import family_papers, optimizer_papers
from recipes.engine import (
    Context,
    Data,
    Objective,
    ObjectiveConfig,
    OptimizerConfig,
    ScheduleConfig,
    labelled_image_info,
    register_preset,
)
from zoo.data import load_dataset
from zoo.errors import ConfigError
from zoo.losses import (
    BYOL_PAPER,
    CPC_PAPER,
    MOCO_PAPER,
    MOCO_V2_PAPER,
    SIMCLR_PAPER,
    cross_entropy,
    info_nce_loss,
    negative_cosine_similarity,
    nt_xent_loss,
    patch_info_nce_loss,
)

__all__ = ["ContrastiveConfig", "ContrastiveObjective", "NegativeQueue", "patch_pairs"]

METHODS = ("simclr", "moco", "byol", "cpc", "context", "rotation")
CONTEXT_PAPER = "https://arxiv.org/abs/1505.05192"  # Doersch et al. 2015, context prediction
ROTATION_PAPER = "https://arxiv.org/abs/1803.07728"  # Gidaris et al. 2018, predicting image rotations
PAPERS = {
    "simclr": [SIMCLR_PAPER],
    "moco": [MOCO_PAPER, MOCO_V2_PAPER],
    "byol": [BYOL_PAPER],
    "cpc": [CPC_PAPER],
    "context": [CONTEXT_PAPER],
    "rotation": [ROTATION_PAPER],
}
ROTATIONS = 4  # quarter turns


@dataclass
class ContrastiveConfig(ObjectiveConfig):
    # model_args, data_root, download and val_per_class: see ObjectiveConfig
    model: str = "simclr_cnn"  # a registered SelfSupervisedEncoder builder
    dataset: Literal["mnist_5k"] = "mnist_5k"  # its train labels are read only by the probes
    method: Literal["simclr", "moco", "byol", "cpc", "context", "rotation"] = "simclr"
    temperature: float = 0.2  # of the softmax over similarities (simclr, moco)
    queue_size: int = 2048  # moco's negatives: more than a batch, fewer than the 4,000 train images so a
    # queue rarely holds a stale key of the query's own image
    momentum: float = 0.99  # the target (key) encoder's EMA momentum; byol raises it to 1 on a cosine
    patch_gap: int = 1  # context: px between the 3x3 cells of patches (no stroke runs straight across)
    patch_jitter: int = 1  # context: each patch moved by up to this many px (no grid alignment to exploit)
    # Augmentation of each view (BatchAugment): strong, as contrastive methods need, but digit-safe.
    degrees: float = 20.0
    translate: float = 0.15
    scale: tuple[float, float] = (0.7, 1.2)
    shear: float = 15.0
    brightness: float = 0.4
    contrast: float = 0.4

    def validate(self) -> None:
        super().validate()
        if self.method not in METHODS:
            raise ConfigError(f"config key 'method': '{self.method}' is not one of {', '.join(METHODS)}")
        if not self.temperature > 0:
            raise ConfigError(f"config key 'temperature': {self.temperature} must be > 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"config key 'momentum': {self.momentum} must be in [0, 1)")
        if self.method == "moco" and self.queue_size < self.batch_size:
            raise ConfigError(
                f"config key 'queue_size': {self.queue_size} must hold at least one batch ({self.batch_size})"
            )


class NegativeQueue(nn.Module):
    """MoCo's dictionary: the last `size` keys, first in first out; a module so the run's checkpoint holds
    it. Starts as random unit vectors (He et al. 2020), replaced after size / batch steps."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", nn.functional.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest entries with `keys` ``(B, dim)`` (normalised), wrapping around."""
        size = len(self.keys)
        keys = nn.functional.normalize(keys.detach().float(), dim=1)[:size]
        index = (self.pointer + torch.arange(len(keys), device=keys.device)) % size
        self.keys[index] = keys.to(self.keys.dtype)
        self.pointer.copy_((self.pointer + len(keys)) % size)


def patch_pairs(
    images: torch.Tensor, size: int, gap: int, jitter: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Context prediction's examples: for each image ``(N, C, H, W)``, the centre patch of a 3x3 layout of
    `size` px cells `gap` px apart (centred in the image) and one of its 8 neighbours drawn at random, each
    moved by up to `jitter` px; returns (centre, neighbour, position), the patches ``(N, C, size, size)`` and
    the neighbour's position 0..7 (row-major around the centre)."""
    n, _, height, width = images.shape
    cell = size + gap
    margin_y, margin_x = (height - 3 * size - 2 * gap) // 2, (width - 3 * size - 2 * gap) // 2
    if min(margin_y, margin_x) < jitter:
        raise ConfigError(
            f"3x3 patches of {size} px, gap {gap}, jitter {jitter} do not fit {height}x{width} images"
        )
    device, on = images.device, generator.device
    position = torch.randint(0, 8, (n,), generator=generator, device=on).to(device)
    cell_index = position + (position >= 4).long()  # 3x3 cells row-major, the centre (4) skipped
    offsets = torch.arange(size, device=device)
    batch = torch.arange(n, device=device)[:, None, None]
    patches = []
    for row, col in (
        (torch.ones_like(position), torch.ones_like(position)),
        (cell_index // 3, cell_index % 3),
    ):
        shift = torch.randint(-jitter, jitter + 1, (2, n), generator=generator, device=on).to(device)
        top, left = margin_y + row * cell + shift[0], margin_x + col * cell + shift[1]
        rows, cols = (top[:, None] + offsets)[:, :, None], (left[:, None] + offsets)[:, None, :]
        patches.append(images[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous())
    return patches[0], patches[1], position


class ContrastiveObjective(Objective):
    name = "contrastive"
    Config = ContrastiveConfig
    config: ContrastiveConfig

    def data(self) -> Data:
        c = self.config
        self.splits = load_dataset(c.dataset, c.val_per_class, c.data_root, c.download)
        self.augment = BatchAugment(c.degrees, c.translate, c.scale, c.shear, False, c.brightness, c.contrast)
        self._fitted: tuple[int, int] | None = None
        info = labelled_image_info(self.splits)
        return Data(
            self.splits.train, self.splits.val, self.splits.test, self.splits.name, self.splits.split, info
        )

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        channels, height, _ = data.info["input_size"]
        model = create_model(c.model, in_chans=channels, img_size=height, **c.model_args)
        if c.method == "context":
            if not hasattr(model, "classify_pair"):
                raise ConfigError(
                    f"method 'context' trains a ContextPredictionEncoder (context_cnn), not '{c.model}'"
                )
            span = 3 * model.patch_size + 2 * c.patch_gap + 2 * c.patch_jitter
            if span > min(height, data.info["input_size"][2]):
                raise ConfigError(
                    f"3x3 patches of {model.patch_size} px with patch_gap={c.patch_gap} and "
                    f"patch_jitter={c.patch_jitter} span {span} px, more than the {height} px images"
                )
        if c.method == "cpc" and not hasattr(model, "predictions"):
            raise ConfigError(f"method 'cpc' trains a CPCEncoder (cpc_cnn), not '{c.model}'")
        if c.method not in ("cpc", "context") and not hasattr(model, "project"):
            raise ConfigError(
                f"'{c.model}' is not a self-supervised encoder (no projection head); see zoo list '*_cnn'"
            )
        if c.method == "rotation" and model.projector.out_dim != ROTATIONS:
            raise ConfigError(
                f"method 'rotation' classifies {ROTATIONS} rotations with the projection head: build "
                f"'{c.model}' with model_args.proj_dim={ROTATIONS} (as rotnet_cnn is)"
            )
        if c.method == "byol" and model.predictor is None:
            raise ConfigError(
                f"method 'byol' needs a predictor: build '{c.model}' with model_args.pred_hidden > 0"
            )
        models: dict[str, nn.Module] = {"model": model}
        if c.method in ("moco", "byol"):
            target = copy.deepcopy(model)
            target.requires_grad_(False)
            models["target"] = target
        if c.method == "moco":
            models["queue"] = NegativeQueue(c.queue_size, model.projector.out_dim)
        return models

    def metrics(self, split: str) -> dict[str, Any]:
        from zoo.metrics import KNNAccuracy, LinearProbeAccuracy

        return {"knn": KNNAccuracy(k=20), "linear_probe": LinearProbeAccuracy()}

    def _view(self, ctx: Context, images: torch.Tensor) -> torch.Tensor:
        """One augmented, normalised view of a uint8 batch."""
        x = ctx.to_device(images).float().div_(255)
        return normalise(self.augment(x, ctx.generator), self.splits.mean, self.splits.std)

    def _views(self, ctx: Context, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._view(ctx, images), self._view(ctx, images)

    def target_momentum(self, progress: float) -> float:
        """The target (key) encoder's momentum at `progress` (0 .. 1) of the run: fixed for MoCo; for BYOL
        ``1 - (1 - m)(cos(pi k / K) + 1) / 2`` (Grill et al. 2020), from m to 1."""
        m = self.config.momentum
        if self.config.method == "byol":
            return 1 - (1 - m) * (math.cos(math.pi * progress) + 1) / 2
        return m

    def _cpc_step(self, ctx: Context, images: torch.Tensor) -> dict[str, torch.Tensor]:
        view = self._view(ctx, images)
        with ctx.autocast():
            out = ctx.models["model"](view)
        z, predictions = out["patches"], out["predictions"]
        grid, steps = z.shape[1], predictions.shape[3]
        # Row t's prediction k rows ahead against row t + k's embeddings, every column, k = 1 .. steps.
        per_step = [
            patch_info_nce_loss(predictions[:, : grid - k, :, k - 1].flatten(1, 2), z[:, k:].flatten(1, 2))
            for k in range(1, steps + 1)
        ]
        loss = torch.stack(per_step).mean()
        ctx.optimize(loss)
        return {"loss": loss.detach(), **{f"loss_k{k + 1}": v.detach() for k, v in enumerate(per_step)}}

    def _context_step(self, ctx: Context, images: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        # classify_pair is not forward: context prediction trains in one process (no DDP wrapper to bypass).
        model = ctx.unwrap("model")
        centre, neighbour, position = patch_pairs(
            self._view(ctx, images), model.patch_size, c.patch_gap, c.patch_jitter, ctx.generator
        )
        with ctx.autocast():
            logits = model.classify_pair(centre, neighbour)
        loss = cross_entropy(logits, position)
        ctx.optimize(loss)
        return {"loss": loss.detach(), "position_acc": (logits.detach().argmax(1) == position).float().mean()}

    def _rotation_step(self, ctx: Context, images: torch.Tensor) -> dict[str, torch.Tensor]:
        view = self._view(ctx, images)
        rotated = torch.cat([torch.rot90(view, r, dims=(2, 3)) for r in range(ROTATIONS)])
        target = torch.arange(ROTATIONS, device=rotated.device).repeat_interleave(len(view))
        with ctx.autocast():
            logits = ctx.models["model"](rotated)["projection"]
        loss = cross_entropy(logits, target)
        ctx.optimize(loss)
        return {"loss": loss.detach(), "rotation_acc": (logits.detach().argmax(1) == target).float().mean()}

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        c = self.config
        images, _ = batch  # the labels are never used for training
        if c.method == "rotation":
            return self._rotation_step(ctx, images)
        if c.method == "cpc":
            return self._cpc_step(ctx, images)
        if c.method == "context":
            return self._context_step(ctx, images)
        v1, v2 = self._views(ctx, images)
        # A train-mode forward returns the projections (and BYOL's predictions) beside the embedding.
        model = ctx.models["model"]
        with ctx.autocast():
            out1, out2 = model(v1), model(v2)
            z1, z2 = out1["projection"], out2["projection"]
            if c.method != "simclr":
                target = ctx.models["target"]
                with torch.no_grad():
                    t1, t2 = target(v1)["projection"], target(v2)["projection"]
            if c.method == "byol":
                p1, p2 = out1["prediction"], out2["prediction"]
        if c.method == "simclr":
            loss = nt_xent_loss(z1, z2, c.temperature)
        elif c.method == "moco":
            queue = ctx.unwrap("queue")
            negatives = queue.keys.clone()
            loss = (
                info_nce_loss(z1, t2, negatives, c.temperature)
                + info_nce_loss(z2, t1, negatives, c.temperature)
            ) / 2
        else:
            loss = negative_cosine_similarity(p1, t2) + negative_cosine_similarity(p2, t1)
        ctx.optimize(loss)
        logs = {"loss": loss.detach()}
        if c.method != "simclr":
            momentum = self.target_momentum(ctx.progress)
            ctx.ema_update(ctx.unwrap("target"), ctx.unwrap("model"), momentum)
            logs["momentum"] = torch.tensor(momentum)
        if c.method == "moco":
            ctx.unwrap("queue").push(torch.cat([t1, t2]))
        # Collapse shows as the per-dimension spread of normalised projections falling to 0 (1/sqrt(d) healthy).
        logs["z_std"] = nn.functional.normalize(z1.detach().float(), dim=1).std(0).mean()
        return logs

    @torch.no_grad()
    def _fit_probes(self, ctx: Context) -> None:
        # The model being evaluated (the published copy, an EMA, a DDP wrapper), in eval mode: its forward
        # is the representation. Never the trainer's raw module, which may still be in train mode.
        model = ctx.models["model"]
        images, labels = self._probe_split(self.splits.train, 10)
        encode = lambda x: model(ctx.to_device(x))  # noqa: E731
        features = self._train_features(model, encode, images)
        for metric in ctx.metrics.values():
            metric.fit(features, labels)

    def _probe_split(self, split: Any, per_limit: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """A split's images and labels for the probes: all of them, or in a smoke run (eval_limit) an evenly
        spaced `per_limit` x eval_limit of them (MNIST 5k is sorted by label: evenly spaced keeps every class)."""
        limit = self.config.eval_limit * per_limit
        if not limit or limit >= len(split):
            return split.images, split.labels
        index = torch.linspace(0, len(split) - 1, limit).long()
        return split.images[index], split.labels[index]

    @torch.no_grad()
    def eval_step(self, ctx: Context, batch: Any) -> None:
        # The probes are fitted once per evaluation, on the current encoder's train features.
        key = (ctx.step, id(ctx.metrics["knn"]))
        if self._fitted != key:
            self._fit_probes(ctx)
            self._fitted = key
        images, labels = batch
        x = normalise(ctx.to_device(images).float().div_(255), self.splits.mean, self.splits.std)
        features = ctx.models["model"](x).float()
        for metric in ctx.metrics.values():
            metric.update(features, labels.to(features.device))

    def _weight_meta(self, model: nn.Module, data: Data) -> Any:
        from zoo.registry import Weights

        return Weights(
            arch=model.zoo_config["architecture"],
            tag=data.name.split("_")[0],
            task="feature-extraction",
            model_args=model.zoo_config["model_args"],
            mean=tuple(data.info["mean"]),
            std=tuple(data.info["std"]),
        )

    def _train_features(self, model: nn.Module, encode: Any, images: torch.Tensor) -> torch.Tensor:
        """`encode_split` of the probes' train `images` by `model`'s representation (`encode`: its eval
        forward or its `embed`, the same computation when it has no classifier head), standardised as the
        dataset says. An evaluation and the label sweeps of the same weights (`publish`, `publish_metrics`)
        encode the same images identically: the features of the last weights are kept and reused (keyed by
        the weights' values, so a training step or another model misses)."""
        from zoo.probing import encode_split

        mean, std = self.splits.mean, self.splits.std
        module = getattr(model, "module", model)  # an EMA average or a DDP wrapper encodes as its network
        if getattr(module, "head", None) is not None:  # forward gives a classifier's logits, not `embed`
            return encode_split(encode, images, mean, std)
        device = next(module.parameters()).device
        key = (_weights_fingerprint(module), module.training, str(device), len(images), images.data_ptr())
        cached = getattr(self, "_train_cache", None)
        if cached is None or cached[0] != key:
            self._train_cache = cached = (key, encode_split(encode, images, mean, std))
        return cached[1]

    def _sweep(
        self, encode: Any, weight: Any, model: nn.Module | None = None, all_labels: bool = True
    ) -> list[Any]:
        """`zoo.probing.label_efficiency` of `encode` (standardised as `weight` says; None: [0, 1] pixels);
        `model`: this objective's encoder whose `embed` `encode` is (its train features may be reused);
        without `all_labels`, the label budgets only (the test split's evaluation measures all labels)."""
        from zoo.probing import DRAWS, LABEL_BUDGETS, encode_split, label_efficiency

        # A smoke run (eval_limit) only checks that the sweep runs: one label a class, one draw.
        budgets, draws = ((1,), 1) if self.config.eval_limit else (LABEL_BUDGETS, DRAWS)
        if not all_labels:
            budgets = tuple(b for b in budgets if b != 0)
        (train, train_labels), (test, test_labels) = (
            self._probe_split(self.splits.train, 10),
            self._probe_split(self.splits.test),
        )
        mean, std = (weight.mean, weight.std) if weight is not None else (None, None)
        if model is not None and (mean, std) == (tuple(self.splits.mean), tuple(self.splits.std)):
            train_features = self._train_features(model, encode, train)
        else:
            train_features = encode_split(encode, train, mean, std)
        test_features = encode_split(encode, test, mean, std)
        return label_efficiency(train_features, train_labels, test_features, test_labels, budgets, draws)

    def publish_metrics(self, model: nn.Module, data: Data) -> dict[str, float]:
        """The label-efficiency sweep of the encoder: ``linear_acc_n{labels}`` and ``knn_acc_n{labels}``."""
        with torch.no_grad():
            # sweep_only: the all-labels probes are the test evaluation's, so they are not fitted here.
            rows = self._sweep(model.eval().embed, self._weight_meta(model, data), model, all_labels=False)
            return _budget_metrics(rows, sweep_only=True)

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        from zoo.probing import DRAWS, baseline_encoders

        c = self.config
        model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
        papers = PAPERS[c.method] + family_papers(model) + optimizer_papers(c)
        meta: dict[str, Any] = {
            "task": "feature-extraction",
            "input_size": list(data.info["input_size"]),
            "mean": list(data.info["mean"]),
            "std": list(data.info["std"]),
            "papers": list(dict.fromkeys(papers)),
            "description": (
                f"{c.model}: a {model.num_features}-d image encoder trained by {c.method} on the "
                f"{len(self.splits.train)} train images of {data.name} without their labels. Frozen-feature "
                f"evaluation: a linear probe and a cosine kNN (k = 20) fitted on train features, with 1, 10, "
                f"100 labels per class ({DRAWS} draws each: mean ± spread) or all of them."
            ),
        }
        # Label efficiency of this encoder and of the baselines, on the same splits and label draws.
        weight_meta = self._weight_meta(model, data)
        own = self._sweep(model.embed, weight_meta, model)
        results = {
            name: self._sweep(encode, weight)
            for name, (encode, weight) in baseline_encoders(weight_meta).items()
        }
        meta["metrics"] = _budget_metrics(own, sweep_only=True)
        meta["baselines"] = {name: _budget_metrics(rows) for name, rows in results.items()}
        path = self.picture_path("label_efficiency.png")
        draw_label_efficiency(
            {f"{c.method} (this weight)": own, **results}, path, f"{c.model} on {data.name}"
        )
        meta["files"] = {"label_efficiency": str(path)}
        return model, meta


def _weights_fingerprint(model: nn.Module) -> str:
    """A digest of `model`'s class and state (names, shapes, strides, values): equal only for the same weights
    in the same memory format (channels_last convolutions may round differently)."""
    import hashlib

    digest = hashlib.blake2b(type(model).__qualname__.encode(), digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:{tensor.stride()}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _budget_metrics(rows: list[Any], sweep_only: bool = False) -> dict[str, float]:
    """``linear_acc`` / ``knn_acc`` with all labels (not with `sweep_only`: the test split's evaluation
    measures those), ``*_n{labels}`` (mean over draws) and ``*_std`` below all."""
    out: dict[str, float] = {}
    for r in rows:
        if sweep_only and r.labels_per_class == 0:
            continue
        suffix = "" if r.labels_per_class == 0 else f"_n{r.labels}"
        for key, (mean, std) in (("linear_acc", r.linear), ("knn_acc", r.knn)):
            out[f"{key}{suffix}"] = round(mean, 6)
            if suffix:
                out[f"{key}{suffix}_std"] = round(std, 6)
    return out


def draw_label_efficiency(results: dict[str, list[Any]], path: Any, title: str) -> None:
    """Linear-probe and kNN accuracy against the number of labels (log axis), one line per encoder."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    for i, (probe, label) in enumerate((("linear", "linear probe"), ("knn", "kNN (k = 20)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, rows in results.items():
            xs = [r.labels for r in rows]
            ys = [getattr(r, probe)[0] for r in rows]
            es = [getattr(r, probe)[1] for r in rows]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("train labels")
        ax.set_ylabel("test accuracy")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)


# ------------------------------------------------------------------------------------------------ presets
_SSL_MNIST = ContrastiveConfig(
    epochs=100,
    batch_size=256,
    precision="auto",
    channels_last=True,
    eval_every=0,
    optim=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=1e-4),
    schedule=ScheduleConfig(name="cosine", warmup=0.05),
)
register_preset(
    "simclr_cnn.mnist",
    ContrastiveObjective,
    replace(_SSL_MNIST, model="simclr_cnn", method="simclr", temperature=0.2),
    "SimCLR on MNIST 5k's 4,000 unlabelled train images: NT-Xent, two affine views, AdamW, cosine",
)
register_preset(
    "moco_cnn.mnist",
    ContrastiveObjective,
    # 200 epochs (515 s on 2 idle cores, bf16): kNN with 100 labels 88.6%; at 100 epochs it was 85.2%, half a
    # point under raw pixels + 10, and temperature 0.1 at 100 epochs gave 83.2% (2026-12-01).
    replace(_SSL_MNIST, model="moco_cnn", method="moco", temperature=0.2, momentum=0.99, epochs=200),
    "MoCo v2 on MNIST 5k: momentum key encoder (m = 0.99), a 2,048-key queue, symmetric InfoNCE",
)
register_preset(
    "byol_cnn.mnist",
    ContrastiveObjective,
    # 400 epochs (1130 s on 2 cores, bf16): kNN with 100 labels 87.4%; 100 epochs gave 76.9% and 200 84.1%,
    # under raw pixels + 10 (85.7%); the linear probe clears its bars from 100 epochs on (2026-12-01).
    replace(_SSL_MNIST, model="byol_cnn", method="byol", momentum=0.99, epochs=400),
    "BYOL on MNIST 5k: online predictor, target momentum 0.99 -> 1 (cosine), symmetric cosine loss",
)
register_preset(
    "rotnet_cnn.mnist",
    ContrastiveObjective,
    # 100 epochs (650 s on 2 cores, bf16): kNN with 100 labels 87.6%; at 50 epochs 84.1%, 1.6 points under
    # raw pixels + 10 (2026-12-01).
    replace(_SSL_MNIST, model="rotnet_cnn", method="rotation", epochs=100),
    "rotation prediction (Gidaris 2018) on MNIST 5k: which of 4 quarter turns, the simpler pretext baseline",
)
register_preset(
    "cpc_cnn.mnist",
    ContrastiveObjective,
    # Milder views: CPC's task is already hard (predict unseen patches) and one view per image is seen.
    replace(
        _SSL_MNIST,
        model="cpc_cnn",
        method="cpc",
        epochs=40,  # each step encodes 36 patches an image: 40 epochs cost SimCLR's 100
        degrees=10.0,
        translate=0.08,
        scale=(0.9, 1.1),
        shear=5.0,
    ),
    "CPC on MNIST 5k: 6x6 grid of 8 px patches, a GRU context down the columns, InfoNCE 1 and 2 rows ahead",
)
register_preset(
    "context_cnn.mnist",
    ContrastiveObjective,
    replace(
        _SSL_MNIST,
        model="context_cnn",
        method="context",
        epochs=100,
        degrees=10.0,
        translate=0.0,  # the 3x3 layout already spans the digit; a shift would push strokes out of it
        scale=(0.95, 1.05),
        shear=5.0,
    ),
    "context prediction (Doersch 2015) on MNIST 5k: which of 8 neighbours, 8 px patches, 1 px gap, 1 px jitter",
)
