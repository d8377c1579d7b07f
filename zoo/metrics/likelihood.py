"""Likelihoods of binarized digits: one stated binarization, nats and bits/dim, and two baselines.

Every likelihood model of the zoo (VAE, PixelCNN) is scored on the *same* binary data, so their numbers
can stand side by side:

- **Binarization** (`binarize`, `BINARIZATION`): by default a fixed threshold, a pixel is 1 when its value
  is at least 128 of 255 (``>= 0.5`` on [0, 1] pixels; the two agree on every 8-bit value). Deterministic,
  so a single image in ``zoo predict`` and the test split in a recipe are binarized alike. The stochastic
  binarization of the literature (each pixel ~ Bernoulli(intensity), Salakhutdinov & Murray 2008) is
  available with a fixed seed; its NLLs are higher (the data carry more noise), and neither matches the
  literature's 60k-image numbers, which come from another split and far more training data.
- **Units** (`bits_per_dim`): an NLL of ``n`` nats per image is ``n / (D ln 2)`` bits per dimension, with
  D = 784 pixels for 28x28 digits.
- **Baselines**, fit on the training digits and measured on the test digits: `IndependentBernoulli` (one
  probability per pixel, from counts) and `BernoulliMixture` (K components fit by EM; K is chosen on a
  validation slice carved from train, never on test: see `likelihood_baselines`). A generative model that
  does not beat the mixture has learned little beyond a clustering of the digits.

Everything here runs on tensors of any device; nothing is imported by ``import zoo``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import torch

__all__ = [
    "BINARIZATION",
    "BernoulliMixture",
    "IndependentBernoulli",
    "binarize",
    "bits_per_dim",
    "gap_subset",
    "likelihood_baselines",
    "recorded_baselines",
]

BINARIZATION = "fixed threshold: a pixel is 1 when its value is >= 128 of 255 (>= 0.5 on [0, 1] pixels)"
THRESHOLD = 0.5


def _unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> [0, 1] floats; float images are taken as already in [0, 1]."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def binarize(
    images: torch.Tensor, mode: Literal["threshold", "stochastic"] = "threshold", seed: int = 0
) -> torch.Tensor:
    """uint8 or [0, 1] images -> float {0, 1} images of the same shape.

    ``"threshold"`` (the zoo's stated binarization, `BINARIZATION`): ``x >= 0.5``. ``"stochastic"``: each
    pixel ~ Bernoulli(x), drawn from a generator seeded with `seed` (on the images' device), so the same
    call gives the same binary digits every time.
    """
    x = _unit(images)
    if mode == "threshold":
        return (x >= THRESHOLD).float()
    if mode == "stochastic":
        generator = torch.Generator(device=x.device).manual_seed(seed)
        return torch.bernoulli(x.clamp(0, 1), generator=generator)
    raise ValueError(f"binarization mode must be 'threshold' or 'stochastic', not {mode!r}")


def bits_per_dim(nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """An NLL in nats per image -> bits per dimension (``nats / (dims * ln 2)``)."""
    return nats / (dims * math.log(2.0))


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).float()


def _bernoulli_log_prob(x: torch.Tensor, log_p: torch.Tensor, log_1mp: torch.Tensor) -> torch.Tensor:
    """sum_d x_d log p_d + (1 - x_d) log(1 - p_d), as matrix products: (N, D) data, (K, D) params -> (N, K)."""
    return x @ log_p.T + (1 - x) @ log_1mp.T


class IndependentBernoulli:
    """One Bernoulli per pixel, independent of the others: ``p_d = (count_d + alpha) / (N + 2 alpha)``.

    The counts are the training digits' ones per pixel; ``alpha`` (add-one smoothing by default) keeps a
    pixel never lit in training from giving a test digit that lights it an infinite NLL.
    """

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha
        self.probs: torch.Tensor | None = None

    def fit(self, x: torch.Tensor) -> IndependentBernoulli:
        """`x`: binary images (N, ...) -> self."""
        x = _flat(x)
        self.probs = (x.sum(0) + self.alpha) / (len(x) + 2 * self.alpha)
        return self

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image negative log-likelihood in nats, (N,)."""
        if self.probs is None:
            raise RuntimeError("fit the model first")
        p = self.probs.to(x.device)
        return -_bernoulli_log_prob(_flat(x), p.log()[None], torch.log1p(-p)[None])[:, 0]


class BernoulliMixture:
    """A mixture of K products of Bernoullis, fit by EM (e.g. Bishop, *PRML* 2006, section 9.3.3).

    E step: responsibilities ``r_nk ∝ pi_k prod_d mu_kd^x_nd (1 - mu_kd)^(1 - x_nd)`` (in log space).
    M step: ``pi_k = (sum_n r_nk + 1) / (N + K)`` and ``mu_kd = (sum_n r_nk x_nd + alpha) / (sum_n r_nk +
    2 alpha)``: MAP estimates under flat Dirichlet / Beta(1 + alpha) priors, so a component that loses
    its digits keeps finite parameters instead of collapsing to 0/1 probabilities (which would give unseen
    test digits infinite NLL). Initialised with the means of K random training digits, shrunk towards 0.5.
    """

    def __init__(
        self, components: int, iters: int = 100, alpha: float = 1.0, seed: int = 0, tol: float = 1e-4
    ):
        if components < 1:
            raise ValueError(f"components must be >= 1, not {components}")
        self.k, self.iters, self.alpha, self.seed, self.tol = components, iters, alpha, seed, tol
        self.log_pi: torch.Tensor | None = None
        self.mu: torch.Tensor | None = None

    def _joint(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log p(x_n | k): (N, K)."""
        assert self.mu is not None and self.log_pi is not None
        return self.log_pi + _bernoulli_log_prob(x, self.mu.log(), torch.log1p(-self.mu))

    def fit(self, x: torch.Tensor) -> BernoulliMixture:
        """EM on binary images `x` (N, ...) until the mean log-likelihood improves by less than `tol` nats."""
        x = _flat(x).double()  # float64: sums of 784 log-probabilities over thousands of digits
        n = len(x)
        g = torch.Generator().manual_seed(self.seed)
        start = torch.randperm(n, generator=g)[: self.k].to(x.device)
        self.mu = 0.5 + 0.5 * (x[start] - 0.5) * 0.5  # in [0.375, 0.625]: a nudge, not a hard start
        self.log_pi = torch.full((self.k,), -math.log(self.k), dtype=x.dtype, device=x.device)
        previous = -math.inf
        for _ in range(self.iters):
            joint = self._joint(x)
            log_lik = torch.logsumexp(joint, 1)
            r = (joint - log_lik[:, None]).exp()  # responsibilities (N, K)
            counts = r.sum(0)
            self.log_pi = ((counts + 1) / (n + self.k)).log()
            self.mu = (r.T @ x + self.alpha) / (counts[:, None] + 2 * self.alpha)
            mean = float(log_lik.mean())
            if mean - previous < self.tol:
                break
            previous = mean
        return self

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image negative log-likelihood in nats, (N,)."""
        if self.mu is None:
            raise RuntimeError("fit the model first")
        joint = self._joint(_flat(x).double().to(self.mu.device))
        return -torch.logsumexp(joint, 1).float()


def recorded_baselines(components: int | None = None) -> dict[str, float]:
    """What a likelihood model's evaluation records beside its own NLL: `likelihood_baselines` without the
    validation sweep over K (the K used stays, as ``mixture_k``)."""
    base = likelihood_baselines(components=components)
    return {k: v for k, v in base.items() if not k.startswith("mixture_val")}


def gap_subset(train_size: int, count: int, seed: int) -> torch.Tensor:
    """Indices of the `count` training digits a train/test gap is measured on: the first of a seeded
    permutation (the file is sorted by label, so a plain prefix would hold few digits)."""
    return torch.randperm(train_size, generator=torch.Generator().manual_seed(seed))[:count]


@functools.cache
def likelihood_baselines(
    components: int | None = None,
    candidates: Sequence[int] = (1, 5, 10, 20, 50, 100),
    val_per_class: int = 40,
    mode: Literal["threshold", "stochastic"] = "threshold",
    seed: int = 0,
) -> dict[str, float]:
    """Both baselines on MNIST 5k, binarized with `binarize` (`mode`): NLL on the test digits, in nats and
    bits/dim, plus the training NLL (the train/test gap).

    The mixture's K is `components` when given; otherwise each of `candidates` is fit on train minus a
    validation slice (the last `val_per_class` train digits of each class) and the K with the lowest
    validation NLL wins. Either way the reported mixture is then refit on the whole training split. Cached
    per process: recipes call it at every evaluation. Keys: ``bernoulli_nll_nats``, ``bernoulli_bpd``,
    ``bernoulli_train_nll_nats``, ``mixture_nll_nats``, ``mixture_bpd``, ``mixture_train_nll_nats``,
    ``mixture_k`` and, when K was chosen, ``mixture_val_nll_nats_k<K>`` for every candidate.
    """
    from zoo.data import load_dataset

    def binary(split: object) -> torch.Tensor:
        return binarize(split.images, mode, seed)  # type: ignore[attr-defined]

    full = load_dataset("mnist_5k")
    train, test = binary(full.train), binary(full.test)
    dims = train[0].numel()
    out: dict[str, float] = {}
    independent = IndependentBernoulli().fit(train)
    out["bernoulli_nll_nats"] = float(independent.nll(test).mean())
    out["bernoulli_train_nll_nats"] = float(independent.nll(train).mean())
    if components is None:
        carved = load_dataset("mnist_5k", val_per_class=val_per_class)
        fit_on, val = binary(carved.train), binary(carved.val)
        scores = {}
        for k in candidates:
            scores[k] = float(BernoulliMixture(k, seed=seed).fit(fit_on).nll(val).mean())
            out[f"mixture_val_nll_nats_k{k}"] = scores[k]
        components = min(scores, key=scores.__getitem__)
    mixture = BernoulliMixture(components, seed=seed).fit(train)
    out["mixture_nll_nats"] = float(mixture.nll(test).mean())
    out["mixture_train_nll_nats"] = float(mixture.nll(train).mean())
    out["mixture_k"] = float(components)
    out["bernoulli_bpd"] = float(bits_per_dim(out["bernoulli_nll_nats"], dims))
    out["mixture_bpd"] = float(bits_per_dim(out["mixture_nll_nats"], dims))
    return out
