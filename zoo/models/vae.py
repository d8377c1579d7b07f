"""Variational autoencoder: a convolutional encoder to q(z|x) = N(mu, diag(exp(logvar))), a decoder to
p(x|z), and a standard normal prior p(z).

"Auto-Encoding Variational Bayes", Kingma & Welling, 2014 (https://arxiv.org/abs/1312.6114): the
reparameterisation z = mu + exp(logvar / 2) * eps, eps ~ N(0, I), and the evidence lower bound
ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) (the KL in closed form). The likelihood is estimated by
importance sampling with q as the proposal, "Importance Weighted Autoencoders", Burda, Grosse &
Salakhutdinov, 2016 (https://arxiv.org/abs/1509.00519)::

    log p(x) >= L_k = E[log (1/k) sum_j p(x, z_j) / q(z_j|x)],   z_j ~ q(z|x),   L_1 = ELBO <= L_k

L_k rises towards log p(x) as k grows, so ``-L_1000`` is the NLL the zoo reports (`iwae_nll`).

Two decoders (``likelihood``):

- ``"bernoulli"`` (default): one Bernoulli per pixel, for **binarized** digits (`zoo.metrics.likelihood`:
  the zoo's fixed threshold at 0.5; `forward` applies it to whatever image it gets). NLLs are discrete:
  nats per image or bits per pixel, comparable with PixelCNN and the Bernoulli baselines.
- ``"continuous_bernoulli"``: grey levels in [0, 1] with the normalised continuous Bernoulli density
  ("The continuous Bernoulli: fixing a pervasive error in variational autoencoders", Loaiza-Ganem &
  Cunningham, 2019, https://arxiv.org/abs/1907.06845); a density, so its "NLL" can be negative and is not
  comparable with the discrete ones.

`decode` and `sample` return the decoder's **mean** image (Bernoulli probabilities), the usual picture of a
VAE sample: smooth, never speckled by pixel noise. β (Higgins et al. 2017) weighs the KL term in training
only (`elbo(..., beta=)`, a recipe value); the reported ELBO always uses β = 1.

`forward(image)` is what ``zoo predict`` and the ONNX ``model`` graph run: the reconstruction from the
posterior mean and the image's NLL in bits/dim by a k-sample importance estimate (``predict_samples``) with
a **fixed** set of standard-normal draws held as a buffer, so forward is deterministic (save/load and
ONNX parity hold exactly) while remaining an unbiased-in-expectation IWAE bound for a random image.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.layers import ConvNormAct, create_act
from zoo.losses import bernoulli_log_likelihood
from zoo.models.autoencoder import DeconvNormAct
from zoo.models.base import ZooModel
from zoo.registry import register_model

__all__ = ["VAE", "continuous_bernoulli_log_norm", "continuous_bernoulli_mean"]

PAPERS = ("https://arxiv.org/abs/1312.6114", "https://arxiv.org/abs/1509.00519")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli")
LOG_2PI = math.log(2 * math.pi)
_CB_SMALL = 1e-3  # |1 - 2 lambda| below this: the continuous Bernoulli's Taylor branch (0/0 otherwise)


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda) of the continuous Bernoulli, lambda = sigmoid(logits):
    C = 2 atanh(u) / u with u = 1 - 2 lambda, and its Taylor series log(2 (1 + u^2/3)) near u = 0."""
    lam = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
    u = 1 - 2 * lam
    small = u.abs() < _CB_SMALL
    safe = torch.where(small, torch.full_like(u, _CB_SMALL), u)  # no 0/0 in the branch torch.where drops
    exact = torch.log(2 * torch.atanh(safe) / safe)
    return torch.where(small, math.log(2.0) + torch.log1p(u.square() / 3), exact)


def continuous_bernoulli_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] of the continuous Bernoulli: lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda)), 1/2 - u/6
    near u = 1 - 2 lambda = 0."""
    lam = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
    u = 1 - 2 * lam
    small = u.abs() < _CB_SMALL
    safe = torch.where(small, torch.full_like(u, _CB_SMALL), u)
    exact = -(1 - safe) / (2 * safe) + 1 / (2 * torch.atanh(safe))
    return torch.where(small, 0.5 - u / 6, exact).clamp(0, 1)


class VAE(ZooModel):
    """Conv encoder -> (mu, logvar) -> z -> deconv decoder -> per-pixel likelihood parameters."""

    # The decoder's output channels follow in_chans: no weight adapts to another channel count.
    first_conv = None
    classifier = None
    dynamic_size = False  # the linear layers fix the feature-map size, hence the image size
    output_names = ("reconstruction", "nll_bits_per_dim")

    def __init__(
        self,
        in_chans: int = 1,
        img_size: int = 28,
        widths: tuple[int, ...] = (32, 64),
        hidden: int = 256,
        latent_dim: int = 16,
        likelihood: str = "bernoulli",
        act: str = "silu",
        predict_samples: int = 32,
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ConfigError(f"likelihood={likelihood!r} is not one of {LIKELIHOODS}")
        factor = 2 ** len(widths)
        if not widths or img_size % factor:
            raise ConfigError(
                f"img_size={img_size} must be divisible by 2**len(widths)={factor} (widths={tuple(widths)})"
            )
        if predict_samples < 1:
            raise ConfigError(f"predict_samples={predict_samples} must be >= 1")
        self.input_size = (in_chans, img_size, img_size)
        self.latent_dim, self.likelihood = latent_dim, likelihood
        side = img_size // factor
        flat = widths[-1] * side * side

        # No batch norm: a VAE's per-image likelihood must not depend on the other images of the batch,
        # and train/eval statistics would make the training ELBO and the evaluated one different models.
        encoder: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            encoder.append(ConvNormAct(channels, width, 3, stride=2, norm=None, act=act))
            channels = width
        encoder += [
            nn.Flatten(1),
            nn.Linear(flat, hidden),
            create_act(act),
            nn.Linear(hidden, 2 * latent_dim),
        ]
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = [
            nn.Linear(latent_dim, hidden),
            create_act(act),
            nn.Linear(hidden, flat),
            create_act(act),
            nn.Unflatten(1, (widths[-1], side, side)),
        ]
        for width in reversed(widths[:-1]):
            decoder.append(DeconvNormAct(channels, width, norm=None, act=act))
            channels = width
        # The last upsampling step emits the logits directly: one cheap layer at full resolution, since the
        # decoder runs k times per image in the IWAE bound (k = 1000 in the reported NLL).
        decoder.append(nn.ConvTranspose2d(channels, in_chans, 4, 2, 1))
        self.decoder = nn.Sequential(*decoder)

        # Fixed draws for forward's k-sample NLL (see the module docstring); rebuilt identically at every
        # construction (not saved), on the CPU whatever the default device, then moved with the module.
        g = torch.Generator(device="cpu").manual_seed(0)
        eps = torch.randn(predict_samples, latent_dim, generator=g, device="cpu")
        self.register_buffer("predict_eps", eps, persistent=False)

    # ------------------------------------------------------------------------------------------ pieces
    @property
    def num_dims(self) -> int:
        return math.prod(self.input_size)

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ...]:
        # Pixels in [0, 1], as images are (forward binarizes them for the Bernoulli decoder).
        device = next(self.parameters()).device
        return (torch.rand(batch_size, *self.input_size, generator=generator).to(device),)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the data the likelihood is over: binarized at 0.5 (`zoo.metrics.likelihood`'s
        fixed threshold) for the Bernoulli decoder, clamped to [0, 1] for the continuous one."""
        if self.likelihood == "bernoulli":
            return (images >= 0.5).to(images.dtype)
        return images.clamp(0, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) data (see `prepare`) -> the posterior's (mu, logvar), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        # A soft floor and ceiling on log-variance: exp(logvar) never under- or overflows in early training.
        return mu, 8 * torch.tanh(logvar / 8)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, H, W) logits of the per-pixel (continuous) Bernoulli."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) codes -> (B, C, H, W) mean images in [0, 1]."""
        logits = self.decode_logits(z)
        if self.likelihood == "bernoulli":
            return torch.sigmoid(logits)
        return continuous_bernoulli_mean(logits)

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image, summed over pixels: (..., C, H, W) data and logits -> (...)."""
        ll = bernoulli_log_likelihood(logits, x.expand_as(logits))
        if self.likelihood == "continuous_bernoulli":
            ll = ll + continuous_bernoulli_log_norm(logits)
        return ll.flatten(-3).sum(-1)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor,
        logvar: torch.Tensor,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) drawn from `generator` (on mu's device) unless given."""
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps.to(mu)

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) || N(0, I)) per image, in closed form: (B, L) -> (B,)."""
        return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)

    # ------------------------------------------------------------------------------------------ bounds
    def elbo(
        self,
        x: torch.Tensor,
        beta: float = 1.0,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One-sample ELBO terms per image of data `x` (see `prepare`): ``rec`` = log p(x|z) with one z ~ q,
        ``kl``, ``elbo`` = rec - kl (β = 1, the bound) and ``loss`` = -(rec - beta * kl), the β-VAE
        objective (per image; mean it for a batch loss). All in nats. `eps` (B, latent_dim): the standard
        normal draws of z, instead of drawing them from `generator`."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator, eps)
        rec = self.log_likelihood(x, self.decode_logits(z).float())
        kl = self.kl(mu.float(), logvar.float())
        return {"rec": rec, "kl": kl, "elbo": rec - kl, "loss": -(rec - beta * kl)}

    def _log_weights(
        self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        """log p(x, z_j) - log q(z_j|x) for z_j = mu + sigma * eps_j: eps (B, k, L) -> (B, k)."""
        b, k, _ = eps.shape
        std = torch.exp(0.5 * logvar)
        z = mu[:, None] + std[:, None] * eps
        logits = self.decode_logits(z.reshape(b * k, -1)).float()
        rec = self.log_likelihood(x[:, None], logits.reshape(b, k, *logits.shape[1:]))
        # log N(z; 0, I) - log N(z; mu, sigma): the log(2 pi) terms cancel.
        log_prior = -0.5 * z.square().sum(-1)
        log_q = -0.5 * eps.square().sum(-1) - 0.5 * logvar.sum(-1)[:, None]
        return rec + log_prior - log_q

    @torch.no_grad()
    def iwae_nll(
        self,
        x: torch.Tensor,
        k: int = 1000,
        generator: torch.Generator | None = None,
        chunk: int = 4096,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """NLL estimate -L_k per image in nats (Burda et al.): k importance samples from q(z|x), decoded at
        most `chunk` latents at a time (k = 1000 over a batch of 100 images is 100,000 decodes). `eps`
        (B, k, latent_dim): the standard normal draws, instead of drawing them from `generator` (then
        ``k = eps.shape[1]``)."""
        if eps is not None:
            if eps.dim() != 3 or eps.shape[0] != len(x) or eps.shape[2] != self.latent_dim:
                raise ValueError(
                    f"eps {tuple(eps.shape)}: expected ({len(x)}, k, {self.latent_dim}) for {len(x)} images"
                )
            k = eps.shape[1]
        if k < 1:
            raise ConfigError(f"k={k} must be >= 1")
        mu, logvar = self.encode(x)
        b = len(x)
        per_pass = max(1, chunk // max(b, 1))
        weights = []
        for lo in range(0, k, per_pass):
            n = min(per_pass, k - lo)
            if eps is None:
                draw = torch.randn(
                    (b, n, self.latent_dim), generator=generator, device=mu.device, dtype=mu.dtype
                )
            else:
                draw = eps[:, lo : lo + n].to(mu)
            weights.append(self._log_weights(x, mu, logvar, draw))
        log_w = torch.cat(weights, 1)
        return -(torch.logsumexp(log_w, 1) - math.log(k))

    def bits_per_dim(self, nats: torch.Tensor) -> torch.Tensor:
        """Nats per image -> bits per pixel."""
        return nats / (self.num_dims * math.log(2.0))

    # ------------------------------------------------------------------------------------------ API
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0, 1] images -> (reconstruction from the posterior mean, NLL in bits/dim: the IWAE estimate
        with the ``predict_samples`` fixed draws)."""
        x = self.prepare(images)
        mu, logvar = self.encode(x)
        eps = self.predict_eps.to(mu.dtype)[None].expand(len(x), -1, -1)
        log_w = self._log_weights(x, mu, logvar, eps)
        nll = -(torch.logsumexp(log_w, 1) - math.log(eps.shape[1]))
        return self.decode(mu), self.bits_per_dim(nll)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None, **_: Any
    ) -> torch.Tensor:
        """`n` images (n, C, H, W) in [0, 1]: decoder means at z ~ N(0, I) drawn from `generator` (which
        must live on the model's device). Unconditional: `labels` must be None."""
        if labels is not None:
            raise ConfigError("this VAE is unconditional: it takes no labels (sample without --labels)")
        if int(n) < 1:
            raise ConfigError(f"n={n}: the number of samples must be >= 1")
        device = next(self.parameters()).device
        z = torch.randn(int(n), self.latent_dim, generator=generator, device=device)
        return self.decode(z).clamp(0, 1)


@register_model(task="image-generation", weights=("mnist",))
def vae(**kwargs: Any) -> VAE:
    """Variational autoencoder for 28x28 binarized digits: 32-64 conv encoder, 16-d latent, Bernoulli decoder.

    ``likelihood="continuous_bernoulli"`` models grey levels instead; ``latent_dim``, ``hidden`` and
    ``widths`` size it. The β of a β-VAE is a training value (the recipe's ``beta``), not the model's.
    """
    return VAE(**kwargs)
