"""Self-supervised image encoders: SimCLR, MoCo v2, BYOL and rotation prediction on any zoo classifier backbone.

- SimCLR, `Chen et al. 2020 <https://arxiv.org/abs/2002.05709>`_: two augmented views, a projection head,
  NT-Xent over the batch.
- MoCo v2, `He et al. 2020 <https://arxiv.org/abs/1911.05722>`_ and `Chen et al. 2020
  <https://arxiv.org/abs/2003.04297>`_: a momentum key encoder and a queue of negatives.
- BYOL, `Grill et al. 2020 <https://arxiv.org/abs/2006.07733>`_: online and target networks, a predictor,
  no negatives.
- CPC, `van den Oord et al. 2018 <https://arxiv.org/abs/1807.03748>`_: predict the embeddings of patches
  further down the image from an autoregressive context (`CPCEncoder`).
- Context prediction, `Doersch et al. 2015 <https://arxiv.org/abs/1505.05192>`_: which of 8 neighbours a
  patch is (`ContextPredictionEncoder`).
- Rotation prediction, `Gidaris et al. 2018 <https://arxiv.org/abs/1803.07728>`_: a 4-way classifier of
  quarter turns as the pretext task (the head is the projection head with 4 outputs).

The three share one network, `SelfSupervisedEncoder`: a registered classifier whose classifier layer is
replaced by the identity (its pooled features are the representation), a projection head, and (BYOL) a
predictor. The methods differ in their training process (`recipes/contrastive.py`: views, momentum target,
queue, loss), not here. In eval mode ``forward`` returns the representation ``(N, D)`` -- what is
evaluated by probes, exported and shipped; in train mode it also returns the heads' outputs, which serve
training only. Built with ``num_classes=K`` the model gains a linear
classifier on the representation and ``forward`` returns its logits: ``create_model("simclr_cnn.mnist",
pretrained=True, num_classes=10)`` is the fine-tuning start (the weight holds no classifier, so only that
layer is new).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import ProjectionHead
from zoo.models.base import ZooModel
from zoo.registry import register_model

__all__ = [
    "CPCEncoder",
    "ContextPredictionEncoder",
    "PatchGridEncoder",
    "RepresentationEncoder",
    "SelfSupervisedEncoder",
    "feature_backbone",
    "strip_classifier",
]


def strip_classifier(model: nn.Module) -> nn.Linear:
    """Replace a classifier's classifier layer (`ZooModel.classifier`, a linear layer) by the identity, in
    place, so its forward returns the pooled features that layer read; returns the layer removed."""
    path = getattr(model, "classifier", None)
    layer = model.get_submodule(path) if path else None
    if not isinstance(layer, nn.Linear):
        arch = (getattr(model, "zoo_config", None) or {}).get("architecture", type(model).__name__)
        raise ConfigError(
            f"'{arch}' has no linear classifier to strip: it must be a classifier ending in a linear layer "
            f"(its `classifier`), got {type(layer).__name__ if layer is not None else 'none'}; pick one of "
            "zoo.list_models(task='image-classification')"
        )
    model.set_submodule(path, nn.Identity())
    return layer


def feature_backbone(
    backbone: str, backbone_args: dict[str, Any] | None, in_chans: int, img_size: int
) -> tuple[nn.Module, int]:
    """A registered classifier with its classifier layer made the identity (its forward then returns the
    pooled features), and the number of those features."""
    from zoo.factory import create_model

    encoder = create_model(backbone, in_chans=in_chans, img_size=img_size, **(backbone_args or {}))
    return encoder, strip_classifier(encoder).in_features


class RepresentationEncoder(ZooModel):
    """What the self-supervised encoders share: an optional linear classifier on the representation
    (``num_classes=K``: the fine-tuning start, which makes the model an image classifier) and the forward
    contract -- the classifier's logits, else the representation in eval mode, else (train mode) the
    representation as ``"embedding"`` beside what the objective trains."""

    classifier = "head"

    def add_classifier(self, num_classes: int) -> None:
        """``embed_dim`` from ``num_features`` (set before), and the linear classifier when num_classes > 0."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else None
        self.embed_dim = self.num_features
        if num_classes:
            self.task = "image-classification"

    def answer(
        self, features: torch.Tensor, training_outputs: Callable[[], dict[str, torch.Tensor]]
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Forward's result for the representation `features` (see the class)."""
        if self.head is not None:
            return self.head(features)
        if not self.training:
            return features
        return {"embedding": features, **training_outputs()}


class SelfSupervisedEncoder(RepresentationEncoder):
    """A zoo classifier's feature extractor plus the heads a self-supervised objective trains it with.

    ``backbone`` is a registered classifier (built with `backbone_args`, ``in_chans`` and ``img_size``);
    its classifier layer becomes the identity, so ``backbone(x)`` is its pooled features. ``proj_*`` shape
    the projection head; ``pred_hidden > 0`` adds BYOL's predictor (proj_dim -> pred_hidden -> proj_dim).
    """

    def __init__(
        self,
        backbone: str = "cnn",
        backbone_args: dict[str, Any] | None = None,
        num_classes: int = 0,
        in_chans: int = 1,
        img_size: int = 28,
        proj_hidden: int = 512,
        proj_dim: int = 128,
        proj_layers: int = 2,
        pred_hidden: int = 0,
    ):
        super().__init__()
        self.backbone, self.num_features = feature_backbone(backbone, backbone_args, in_chans, img_size)
        self.first_conv = f"backbone.{self.backbone.first_conv}" if self.backbone.first_conv else None
        self.input_size = (in_chans, img_size, img_size)
        self.projector = ProjectionHead(self.num_features, proj_hidden, proj_dim, proj_layers)
        self.predictor = ProjectionHead(proj_dim, pred_hidden, proj_dim) if pred_hidden else None
        self.add_classifier(num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation ``(N, num_features)``: the backbone's pooled features."""
        return self.backbone(x)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The projection head on `embed`'s output (where the training loss is applied)."""
        return self.projector(features)

    def predict(self, projection: torch.Tensor) -> torch.Tensor:
        """BYOL's predictor on the online branch's projection."""
        if self.predictor is None:
            raise ConfigError("this encoder has no predictor: build it with pred_hidden > 0 (BYOL)")
        return self.predictor(projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """The representation ``(N, num_features)`` (the logits with a classifier); in train mode without a
        classifier, what a self-supervised objective trains: ``{"embedding", "projection"}`` and, with a
        predictor, ``"prediction"`` -- one forward, so a DDP-wrapped encoder trains as any model does."""
        features = self.embed(x)

        def heads() -> dict[str, torch.Tensor]:
            out = {"projection": self.project(features)}
            if self.predictor is not None:
                out["prediction"] = self.predictor(out["projection"])
            return out

        return self.answer(features, heads)


class PatchGridEncoder(RepresentationEncoder):
    """An encoder of patches: the image is cut into a grid of `patch_size` patches every `patch_stride` px,
    each encoded alone by the backbone (a registered classifier built for `patch_size` inputs, its classifier
    layer made the identity) into z ``(N, G, G, D)``.

    The representation (eval ``forward``, ``embed``) is z averaged over a `pool_grid` x `pool_grid`
    partition of the grid and concatenated, ``(N, D pool_grid^2)``: averaging over the whole grid
    (pool_grid=1, as CPC's paper does on ImageNet) throws away where a digit's strokes are (measured on an
    early CPC checkpoint: linear probe 86.8% with 1x1, 95.7% with 2x2). ``num_classes=K`` puts a linear
    classifier on the representation (the fine-tuning start), as `SelfSupervisedEncoder` does.
    """

    dynamic_size = False  # the grid of patches is fixed by img_size

    def __init__(
        self,
        backbone: str = "cnn",
        backbone_args: dict[str, Any] | None = None,
        num_classes: int = 0,
        in_chans: int = 1,
        img_size: int = 28,
        patch_size: int = 8,
        patch_stride: int = 4,
        pool_grid: int = 2,
    ):
        super().__init__()
        if patch_size > img_size or patch_stride < 1:
            raise ConfigError(
                f"patches of {patch_size} px every {patch_stride} px do not fit {img_size} px images"
            )
        self.grid = (img_size - patch_size) // patch_stride + 1
        if not 1 <= pool_grid <= self.grid:
            raise ConfigError(f"pool_grid={pool_grid} must be between 1 and the grid's {self.grid}")
        self.backbone, self.patch_dim = feature_backbone(backbone, backbone_args, in_chans, patch_size)
        self.first_conv = f"backbone.{self.backbone.first_conv}" if self.backbone.first_conv else None
        self.input_size = (in_chans, img_size, img_size)
        self.patch_size, self.patch_stride, self.pool_grid = patch_size, patch_stride, pool_grid
        self.num_features = self.patch_dim * pool_grid**2
        self.add_classifier(num_classes)

    def patch_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """z ``(N, G, G, D)``: each patch encoded alone, rows then columns of the grid."""
        n, s, step, g = x.shape[0], self.patch_size, self.patch_stride, self.grid
        # Static slices (no unfold): the graph exports to ONNX as plain slicing.
        patches = torch.stack(
            [x[:, :, i * step : i * step + s, j * step : j * step + s] for i in range(g) for j in range(g)], 1
        )
        z = self.backbone(patches.flatten(0, 1))
        return z.view(n, g, g, -1)

    def pool(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, G, G, D)`` patch embeddings -> the representation ``(N, D pool_grid^2)``."""
        return nn.functional.adaptive_avg_pool2d(z.permute(0, 3, 1, 2), self.pool_grid).flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation ``(N, num_features)``: patch embeddings pooled on a coarse grid."""
        return self.pool(self.patch_embeddings(x))

    def training_outputs(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a train-mode forward adds to ``{"embedding"}`` for the objective (a subclass's heads)."""
        return {"patches": z}

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        z = self.patch_embeddings(x)
        return self.answer(self.pool(z), lambda: self.training_outputs(z))


class CPCEncoder(PatchGridEncoder):
    """Contrastive predictive coding on images (van den Oord et al. 2018, section 3.2): a GRU runs down each
    column of the patch grid, so the context c_t at row t has seen rows <= t only; linear maps W_k predict
    the patches k rows below, ``z_{t+k} ~ W_k c_t`` (k = 1 .. `steps`), scored by InfoNCE against the same
    position in the batch's other images (`zoo.losses.patch_info_nce_loss`).

    Train ``forward`` returns ``"patches"`` ``(N, G, G, D)`` and ``"predictions"`` ``(N, G, G, steps, D)``
    (row t's prediction of row t + k) beside the embedding.
    """

    def __init__(self, context_dim: int = 128, steps: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        if not 1 <= steps < self.grid:
            raise ConfigError(
                f"steps={steps}: predict 1 to {self.grid - 1} rows ahead on a {self.grid}x{self.grid} grid"
            )
        self.steps = steps
        self.context = nn.GRU(self.patch_dim, context_dim, batch_first=True)
        self.predictors = nn.Linear(context_dim, self.patch_dim * steps)  # W_1 .. W_steps, stacked

    def predictions(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, G, G, steps, D)``: from the context at each row, the predicted embeddings 1 .. steps rows below."""
        n, g, _, d = z.shape
        columns = z.permute(0, 2, 1, 3).reshape(n * g, g, d)  # each column read top to bottom
        context, _ = self.context(columns)
        context = context.view(n, g, g, -1).permute(0, 2, 1, 3)  # back to (N, row, column, H)
        return self.predictors(context).view(n, g, g, self.steps, d)

    def training_outputs(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"patches": z, "predictions": self.predictions(z)}


class ContextPredictionEncoder(PatchGridEncoder):
    """Context prediction (Doersch et al. 2015): given a patch and one of its 8 neighbours, say which
    neighbour it is. Both patches go through the backbone alone; their embeddings, concatenated (late
    fusion: no low-level comparison across the pair), feed a small classifier of the 8 relative positions
    (`classify_pair`). The shortcuts the paper guards against are the objective's job (a gap between the
    patches, a random jitter of each); the representation is the patch grid's, as `PatchGridEncoder` says.
    """

    def __init__(self, pair_hidden: int = 256, **kwargs: Any):
        super().__init__(**kwargs)
        self.pair_head = ProjectionHead(2 * self.patch_dim, pair_hidden, 8)

    def classify_pair(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 8)`` of the neighbour's position around the centre (row-major, centre skipped), for
        two batches of patches ``(N, C, patch_size, patch_size)``, encoded in one backbone call."""
        z = self.backbone(torch.cat([centre, neighbour]))
        return self.pair_head(torch.cat(z.chunk(2), dim=1))

    def training_outputs(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Beside the patches, the pretext on the grid itself: for the grid's central patch and the 8 patches
        two grid steps away (touching, no gap or jitter, unlike training's pairs), ``"grid_pair_logits"``
        ``(N, 8, 8)``: each neighbour's logits over the 8 positions (ideally the identity)."""
        c = self.grid // 2
        if c < 2 or c + 2 >= self.grid:
            return {"patches": z}
        rows = torch.tensor([c - 2, c - 2, c - 2, c, c, c + 2, c + 2, c + 2])
        cols = torch.tensor([c - 2, c, c + 2, c - 2, c + 2, c - 2, c, c + 2])
        neighbours = z[:, rows, cols]  # (N, 8, D)
        centre = z[:, c, c].unsqueeze(1).expand_as(neighbours)
        logits = self.pair_head(torch.cat([centre, neighbours], dim=2).flatten(0, 1))
        return {"patches": z, "grid_pair_logits": logits.view(len(z), 8, 8)}


def _create(defaults: dict[str, Any], kwargs: dict[str, Any]) -> SelfSupervisedEncoder:
    return SelfSupervisedEncoder(**{**defaults, **kwargs})


# The supervised `cnn` (32-64-128, 128-d features), so the probes compare methods on one architecture.
_MNIST_CNN = {"backbone": "cnn"}


@register_model(task="feature-extraction", weights=("mnist",))
def simclr_cnn(**kwargs: Any) -> SelfSupervisedEncoder:
    """SimCLR encoder: the plain `cnn` (32-64-128, 128-d features) with a 2-layer projection head to 128-d."""
    return _create(_MNIST_CNN, kwargs)


@register_model(task="feature-extraction", weights=("mnist",))
def moco_cnn(**kwargs: Any) -> SelfSupervisedEncoder:
    """MoCo v2 encoder: the SimCLR network; the key encoder is its momentum copy, made by the recipe."""
    return _create(_MNIST_CNN, kwargs)


@register_model(task="feature-extraction", weights=("mnist",))
def byol_cnn(**kwargs: Any) -> SelfSupervisedEncoder:
    """BYOL encoder: the SimCLR network plus a 2-layer predictor (128 -> 512 -> 128) on the online branch."""
    return _create({**_MNIST_CNN, "pred_hidden": 512}, kwargs)


@register_model(task="feature-extraction", weights=("mnist",))
def rotnet_cnn(**kwargs: Any) -> SelfSupervisedEncoder:
    """Rotation-prediction encoder (Gidaris et al. 2018): the SimCLR network whose head, with 4 outputs, tells
    which quarter turn an image was given (a pretext baseline for the contrastive methods)."""
    return _create({**_MNIST_CNN, "proj_dim": 4}, kwargs)


@register_model(task="feature-extraction", weights=("mnist",))
def cpc_cnn(**kwargs: Any) -> CPCEncoder:
    """CPC encoder: the plain `cnn` on 8x8 patches every 4 px of a 28x28 digit (a 6x6 grid), a GRU context
    down each column and linear predictions 1 and 2 rows ahead; the representation is the patch embeddings
    averaged on a 2x2 grid (512-d)."""
    return CPCEncoder(**{"backbone": "cnn", **kwargs})


@register_model(task="feature-extraction", weights=("mnist",))
def context_cnn(**kwargs: Any) -> ContextPredictionEncoder:
    """Context-prediction encoder: the plain `cnn` on 8x8 patches, a 2-layer classifier of the 8 relative
    positions of a patch pair; the representation is the 6x6 patch grid's embeddings averaged on 2x2 (512-d)."""
    return ContextPredictionEncoder(**{"backbone": "cnn", **kwargs})
