"""Sample quality of a digit generator, judged by the zoo's own MNIST classifier (issue 12).

One object, `SampleQuality`, built once per classifier and reference data, then called on any batch of
generated digits ``(n, 1, 28, 28)`` in [0, 1]; it returns one flat dict of floats (what a recipe records
as metrics and a card shows):

- ``fid``: `zoo.metrics.FID` between the samples and the test digits, in the feature space of the
  classifier's penultimate layer (`classifier_features`; never Inception, which needs a download and
  knows nothing of digits). ``fid_floor``: the same metric between as many *training* digits, drawn at
  random (the file is sorted by label), and the test digits: what a perfect generator would score with
  this many images; ``fid_ratio = fid / fid_floor``.
- ``inception_score``: ``exp(E_x KL(p(y|x) || p(y)))`` with the classifier's softmax (Salimans et al.
  2016), between 1 and 10 for ten digits; high when each sample is clearly one digit and all digits
  occur. ``inception_score_real``: the same for the test digits.
- ``share_<d>``: the share of samples the classifier calls digit d; ``share_min`` / ``share_max``, and
  ``shares_ok`` (1.0 when every digit's share is within [7%, 13%], the issue's rule).
- ``label_agreement`` (conditional generators, when `labels` are given): the share of samples the
  classifier assigns to the digit that was asked for.
- memorisation: for every sample, the L2 pixel distance to its nearest training digit; the same for every
  test digit (unseen real digits). ``nn_train_median`` / ``nn_train_median_real`` and their ratio
  ``nn_ratio`` (>= 1: samples are no closer to the training set than unseen digits are), and
  ``near_copy_share``: the share of samples closer to a training digit than all but 1% of test digits
  are (about 0.01 for a generator that does not copy; near 1 for one that replays its training set).

- ``fid_first250`` (when more than `QUICK_SAMPLES` samples are scored): the FID of the first 250 alone.
  Recipes draw their samples in a fixed order from fixed seeds, so a quick re-measure (the test suite's,
  ``zoo verify NAME --limit``) draws only those 250 and must find this number again exactly.

`sample_quality` is the one-call form with a per-process cache of the reference statistics.
"""

from __future__ import annotations

import functools
import math

import torch

from zoo.metrics.base import Metric
from zoo.metrics.generation import FID, classifier_features

__all__ = [
    "DEFAULT_CLASSIFIER",
    "QUICK_SAMPLES",
    "SAMPLE_METRICS",
    "SHARE_RANGE",
    "GeneratorEvaluation",
    "SampleQuality",
    "sample_quality",
]

DEFAULT_CLASSIFIER = "resnet8_small.mnist"  # the zoo's published MNIST classifier (99.2% test accuracy)
SHARE_RANGE = (0.07, 0.13)  # every digit's share among samples must fall here (issue 12)
COPY_QUANTILE = 0.01  # a sample nearer a training digit than this quantile of test digits is a near copy
QUICK_SAMPLES = 250  # the prefix of the samples whose FID is recorded too (``fid_first250``)
# The metrics that change with the samples scored (the others describe the real data); a quick re-measure
# on QUICK_SAMPLES samples compares only fid_first250 among these.
SAMPLE_METRICS = frozenset(
    ["fid", "fid_ratio", "inception_score", "shares_ok", "share_min", "share_max", "label_agreement"]
    + [f"share_{d}" for d in range(10)]
    + ["nn_train_median", "nn_ratio", "near_copy_share", f"fid_first{QUICK_SAMPLES}"]
)


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


class SampleQuality:
    """Sample-quality metrics of generated digits against real ones (see the module docstring).

    `test` and `train` are real digits ``(N, 1, 28, 28)``, uint8 or [0, 1] floats. The classifier (a
    published weight's name or a built zoo classifier with its `mean`/`std`) runs on `device`; the
    reference statistics (test features, the real-data floor, test nearest-neighbour distances) are
    computed once here. The floor draws ``floor_samples`` training digits with generator seed `seed`.
    """

    def __init__(
        self,
        test: torch.Tensor,
        train: torch.Tensor,
        classifier: str | torch.nn.Module = DEFAULT_CLASSIFIER,
        *,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        device: torch.device | str = "cpu",
        floor_samples: int = 1000,
        seed: int = 0,
        batch_size: int = 500,
    ):
        from zoo.factory import create_model

        self.device = torch.device(device)
        self.batch_size = batch_size
        if isinstance(classifier, str):
            model = create_model(classifier, pretrained=True)
            meta = model.pretrained_weights
            mean, std = mean or meta.mean, std or meta.std
        else:
            model = classifier
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.mean = torch.tensor(mean or [0.0]).view(1, -1, 1, 1).to(self.device)
        self.std = torch.tensor(std or [1.0]).view(1, -1, 1, 1).to(self.device)
        self.extractor, self.num_features = classifier_features(self.model, mean, std)
        self.input_size = tuple(self.model.input_size)

        self.test = _unit(test).to(self.device)
        self.train = _unit(train).to(self.device)
        self._train_flat = self.train.flatten(1)
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(self.train), generator=g)[: min(floor_samples, len(self.train))]
        # Real statistics once: every call reuses the test features (torchmetrics keeps them across resets).
        self.fid = FID(self.extractor, self.num_features, self.input_size, reset_real_features=False)
        for lo in range(0, len(self.test), batch_size):
            self.fid.update(None, self.test[lo : lo + batch_size])
        self.floor = self._fid(self.train[pick.to(self.device)])
        self.real_is = self._inception_score(self._probs(self.test))
        self.real_nn = self._nearest_train(self.test)
        self.copy_distance = float(torch.quantile(self.real_nn, COPY_QUANTILE))

    # pieces ---------------------------------------------------------------------------------------------
    def _fid(self, images: torch.Tensor) -> float:
        self.fid.reset()
        for lo in range(0, len(images), self.batch_size):
            self.fid.update(images[lo : lo + self.batch_size], None)
        return self.fid.compute()["fid"]

    @torch.no_grad()
    def _probs(self, images: torch.Tensor) -> torch.Tensor:
        chunks = [
            self.model((images[lo : lo + self.batch_size] - self.mean) / self.std).float().softmax(1)
            for lo in range(0, len(images), self.batch_size)
        ]
        return torch.cat(chunks)

    @staticmethod
    def _inception_score(probs: torch.Tensor) -> float:
        marginal = probs.mean(0, keepdim=True)
        kl = (probs * (probs.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1)
        return float(kl.mean().exp())

    @torch.no_grad()
    def _nearest_train(self, images: torch.Tensor) -> torch.Tensor:
        """L2 pixel distance from each image to its nearest training digit, (N,)."""
        flat = images.flatten(1)
        return torch.cat(
            [
                torch.cdist(flat[lo : lo + self.batch_size], self._train_flat).min(1).values
                for lo in range(0, len(flat), self.batch_size)
            ]
        )

    # the call -------------------------------------------------------------------------------------------
    def __call__(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """Every metric of the module docstring for `samples` ``(n, 1, 28, 28)`` in [0, 1] (uint8 is
        accepted too); `labels` ``(n,)``: the digits a conditional generator was asked for."""
        x = _unit(samples).to(self.device)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_size:
            raise ValueError(
                f"samples must be (n, {', '.join(map(str, self.input_size))}), got {tuple(x.shape)}"
            )
        if len(x) < 2:
            raise ValueError(f"sample quality needs at least 2 samples, got {len(x)}")
        x = x.clamp(0, 1)
        out: dict[str, float] = {}
        out["fid"] = self._fid(x)
        out["fid_floor"] = self.floor
        out["fid_ratio"] = out["fid"] / self.floor if self.floor > 0 else math.nan
        if len(x) > QUICK_SAMPLES:
            out[f"fid_first{QUICK_SAMPLES}"] = self._fid(x[:QUICK_SAMPLES])
        probs = self._probs(x)
        out["inception_score"] = self._inception_score(probs)
        out["inception_score_real"] = self.real_is
        predicted = probs.argmax(1)
        shares = torch.bincount(predicted, minlength=probs.shape[1]).float() / len(x)
        for digit, share in enumerate(shares.tolist()):
            out[f"share_{digit}"] = share
        out["share_min"], out["share_max"] = float(shares.min()), float(shares.max())
        low, high = SHARE_RANGE
        out["shares_ok"] = float(bool(((shares >= low) & (shares <= high)).all()))
        if labels is not None:
            labels = torch.as_tensor(labels, device=self.device).long()
            if labels.shape != predicted.shape:
                raise ValueError(f"{len(labels)} labels for {len(x)} samples")
            out["label_agreement"] = float((predicted == labels).float().mean())
        nearest = self._nearest_train(x)
        out["nn_train_median"] = float(nearest.median())
        out["nn_train_median_real"] = float(self.real_nn.median())
        out["nn_ratio"] = out["nn_train_median"] / max(out["nn_train_median_real"], 1e-12)
        out["near_copy_share"] = float((nearest < self.copy_distance).float().mean())
        return out


@functools.cache
def _reference(classifier: str, device: str) -> SampleQuality:
    from zoo.data import load_dataset

    splits = load_dataset("mnist_5k")
    return SampleQuality(splits.test.images, splits.train.images, classifier, device=device)


def sample_quality(
    samples: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    classifier: str = DEFAULT_CLASSIFIER,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """`SampleQuality` of `samples` against the MNIST 5k test digits (train digits for the floor and the
    memorisation check), with the reference statistics cached per (classifier, device) in this process.
    Draw 1000 samples to compare with the issue's numbers: FID is biased upward for small sets."""
    where = str(torch.device(device) if device is not None else samples.device)
    return _reference(classifier, where)(samples, labels)


class GeneratorEvaluation(Metric):
    """The evaluation metric of a generator recipe: `update` counts the split's real images and keeps the
    generator that the objective's ``eval_step`` sets as `model` (unwrapped from EMA or DDP); `_compute`,
    the recipe's, draws its samples from `model` (fixed seeds) and returns `sample_quality` of them. Its
    outputs are `SampleQuality`'s, with their directions for early stopping and the cards."""

    def __init__(self) -> None:
        super().__init__()
        self.model: torch.nn.Module | None = None
        self.add_state("count", torch.zeros((), dtype=torch.float64))
        self.higher_is_better = dict.fromkeys(["fid", "fid_ratio", "near_copy_share"], False)
        self.higher_is_better.update(
            dict.fromkeys(["inception_score", "nn_ratio", "shares_ok", "label_agreement"], True)
        )

    def reset(self) -> None:
        super().reset()
        self.model = None

    def update(self, outputs: torch.Tensor, targets: object = None) -> None:
        self.count += len(outputs)
