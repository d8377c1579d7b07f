"""Generative models: Fréchet distance between feature statistics of generated and real images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from zoo.metrics.base import Metric, all_reduce_sum


class _Features(nn.Module):
    """The feature network as torchmetrics calls it: uint8 or float images in, ``(N, num_features)`` out.

    uint8 images are scaled to [0, 1] floats, so the network always sees what it was trained on (floats),
    whichever dtype the caller has; the network is frozen and run in eval mode.
    """

    def __init__(self, network: nn.Module, num_features: int):
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        # torchmetrics reads this instead of probing the network with a random uint8 image.
        self.num_features = num_features

    def train(self, mode: bool = True) -> _Features:
        return super().train(False)  # always eval: batch norm statistics and dropout must not move

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return self.network(x).flatten(1).float()


class _Penultimate(nn.Module):
    """A classifier's penultimate activations (the input of its classifier head) for [0, 1] images."""

    def __init__(
        self, model: nn.Module, head: str, mean: Sequence[float] | None, std: Sequence[float] | None
    ):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.head = head
        channels = len(mean or std or (0.0,))
        self.register_buffer(
            "mean", torch.tensor(mean or [0.0] * channels).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std or [1.0] * channels).view(1, -1, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        # A hook on the head, not a model with the head cut off: whatever forward does around its head
        # (pooling, flattening, a recurrent read-out) stays as it was trained.
        hook = self.model.get_submodule(self.head).register_forward_pre_hook(
            lambda _, args: captured.append(args[0])
        )
        try:
            self.model((images - self.mean) / self.std)
        finally:
            hook.remove()
        return captured[0].flatten(1)


def classifier_features(
    model: str | nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> tuple[nn.Module, int]:
    """The feature network for `FID` from a zoo classifier: its penultimate layer (the input of the head
    its ``classifier`` attribute names), fed [0, 1] images normalised as the classifier was trained.

    `model` is a published weight's name (``"cnn.mnist"``; built with its weights, mean and std from its
    metadata) or a built zoo classifier (`mean` and `std` then as given; none: the identity). Returns the
    network and its number of features.
    """
    if isinstance(model, str):
        from zoo.factory import create_model

        name, model = model, create_model(model, pretrained=True)
        meta = getattr(model, "pretrained_weights", None)
        if meta is None:
            raise ValueError(f"'{name}' names no published weight; FID needs a trained feature network")
        mean, std = mean or meta.mean, std or meta.std
    head = getattr(model, "classifier", None)
    if not head:
        raise ValueError(f"{type(model).__name__} names no classifier head, so it has no penultimate layer")
    features = _Penultimate(model, head, mean, std)
    device = next(iter(model.parameters()), torch.empty(0)).device
    probe = torch.zeros(1, *model.input_size, device=device)
    return features, int(features(probe).shape[1])


class FID(Metric):
    """Fréchet distance (`Heusel et al. 2017 <https://arxiv.org/abs/1706.08500>`_) between Gaussians fitted
    to the features of generated and of real images::

        fid = |mu_r - mu_g|^2 + trace(S_r + S_g - 2 (S_r S_g)^(1/2))

    with mu and S the mean and covariance of a feature network's outputs over each set. FID needs a feature
    network, and its value means nothing without naming that network: the paper's is Inception-v3 on
    ImageNet (a download, and meaningless for 28x28 digits), so the zoo passes its own — the penultimate
    layer of a trained MNIST classifier, see `classifier_features` — and FIDs are only comparable under the
    same network. It is also
    biased upward for small sets (`Chong & Forsyth 2020 <https://arxiv.org/abs/1911.07023>`_): compare
    models at the same number of samples, drawn at random (MNIST files are sorted by label).

    `feature_extractor` maps images ``(N, *input_img_size)`` as floats in [0, 1] (uint8 inputs are scaled
    by 1/255 first) to ``(N, num_features)`` features (or anything that flattens to it); it is checked on a
    blank image now. ``update(outputs, targets)`` takes a batch of generated images and/or a batch of real
    images (either may be None), so real statistics can be accumulated once and kept across resets with
    ``reset_real_features=False``. Computed by torchmetrics' ``FrechetInceptionDistance(feature=module)``,
    which accumulates feature sums in float64 and sums them over DDP ranks.
    """

    higher_is_better = {"fid": False}

    def __init__(
        self,
        feature_extractor: nn.Module,
        num_features: int,
        input_img_size: tuple[int, int, int],
        reset_real_features: bool = True,
    ):
        super().__init__()
        from torchmetrics.image.fid import FrechetInceptionDistance

        features = _Features(feature_extractor, num_features)
        device = next(iter(feature_extractor.parameters()), torch.empty(0)).device
        got = features(torch.zeros(1, *input_img_size, device=device)).shape
        if got != (1, num_features):
            raise ValueError(
                f"the feature extractor maps a {tuple(input_img_size)} image to {tuple(got[1:])} features, "
                f"not ({num_features},)"
            )
        self.device = device
        self._metric = FrechetInceptionDistance(
            feature=features, input_img_size=input_img_size, reset_real_features=reset_real_features
        ).to(device)

    def update(self, outputs: torch.Tensor | None, targets: torch.Tensor | None = None) -> None:
        if outputs is not None:
            self._metric.update(outputs.detach().to(self.device), real=False)
        if targets is not None:
            self._metric.update(targets.detach().to(self.device), real=True)

    def reset(self) -> None:
        self._metric.reset()

    def to(self, device: torch.device | str) -> FID:
        self.device = torch.device(device)
        self._metric.to(self.device)
        return self

    def compute(self) -> dict[str, float]:
        """FID over every image since `reset` (``nan`` with fewer than two images in either set)."""
        m = self._metric
        # Counts over every rank first, so that all ranks take the same branch (compute is a collective).
        counts = all_reduce_sum(torch.stack([m.real_features_num_samples, m.fake_features_num_samples]).cpu())
        if int(counts.min()) < 2:
            # torchmetrics raises; an evaluation with too few images should report, not crash.
            return {"fid": math.nan}
        return {"fid": float(m.compute())}
