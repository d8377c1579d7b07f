"""VAE: the generator contract, the bounds' ordering (ELBO <= IWAE_k), forward's fixed-draw NLL, and the
continuous Bernoulli's normaliser. (The generic suites cover forward, backward, save/load and ONNX.)"""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import build
from zoo.errors import ConfigError
from zoo.models.vae import continuous_bernoulli_log_norm, continuous_bernoulli_mean


def _digits(n: int = 6) -> torch.Tensor:
    from zoo.data import load_dataset

    test = load_dataset("mnist_5k").test
    return test.images[torch.arange(n) * 100].float() / 255  # one of each of the first digits


def test_encode_decode_and_sample_contract():
    model = build("vae", latent_dim=8).eval()
    x = model.prepare(_digits(4))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 8)
    image = model.decode(mu)
    assert image.shape == (4, 1, 28, 28) and image.min() >= 0 and image.max() <= 1
    g = torch.Generator().manual_seed(0)
    samples = model.sample(5, generator=g)
    assert samples.shape == (5, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert torch.equal(samples, model.sample(5, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ConfigError, match="unconditional"):
        model.sample(2, labels=torch.tensor([1, 2]))
    with pytest.raises(ConfigError, match="n=0"):
        model.sample(0)


def test_iwae_bound_is_above_the_elbo_and_k1_is_the_elbo():
    torch.manual_seed(0)
    model = build("vae").eval()
    x = model.prepare(_digits())
    g = torch.Generator().manual_seed(1)
    b = len(x)
    repeated = x.repeat(200, 1, 1, 1)  # 200 independent draws per image, in one batch
    with torch.no_grad():
        nelbo = -model.elbo(repeated, generator=g)["elbo"].view(200, b).mean(0)
        k1 = model.iwae_nll(repeated, 1, g).view(200, b).mean(0)
        k64 = model.iwae_nll(x.repeat(4, 1, 1, 1), 64, g, chunk=50 * b).view(4, b).mean(0)
    # E[-L_1] is -ELBO (the analytic KL only lowers the variance); -L_64 is a tighter (smaller) bound.
    torch.testing.assert_close(k1, nelbo, rtol=2e-3, atol=0.5)
    assert (k64 < nelbo).all()
    with pytest.raises(ConfigError):
        model.iwae_nll(x, 0)


def test_given_draws_are_the_generators_draws():
    model = build("vae").eval()
    x = model.prepare(_digits(3))
    eps = torch.randn((3, 10, model.latent_dim), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        drawn = model.iwae_nll(x, 10, torch.Generator().manual_seed(5), chunk=30)
        given = model.iwae_nll(x, eps=eps, chunk=12)  # chunked differently: the same draws per image
        elbo_drawn = model.elbo(x, generator=torch.Generator().manual_seed(5))["elbo"]
        elbo_given = model.elbo(x, eps=eps.reshape(-1, model.latent_dim)[:3])["elbo"]
    torch.testing.assert_close(given, drawn)
    torch.testing.assert_close(elbo_given, elbo_drawn)
    with pytest.raises(ValueError, match=r"\(3, k, 16\)"):
        model.iwae_nll(x, eps=eps[:, :, :4])


def test_forward_reconstructs_and_gives_the_fixed_draw_nll_in_bits_per_dim():
    model = build("vae", predict_samples=16).eval()
    images = _digits(3)
    with torch.no_grad():
        recon, bpd = model(images)
        again, _ = model(model.prepare(images))  # forward binarizes: the binary image is a fixed point
        x = model.prepare(images)
        mu, logvar = model.encode(x)
        log_w = model._log_weights(x, mu, logvar, model.predict_eps[None].expand(3, -1, -1))
        nats = -(torch.logsumexp(log_w, 1) - math.log(16))
    assert recon.shape == (3, 1, 28, 28) and bpd.shape == (3,)
    torch.testing.assert_close(recon, again)
    torch.testing.assert_close(bpd, nats / (784 * math.log(2)))
    assert model.predict_eps.shape == (16, model.latent_dim)


def test_continuous_bernoulli_is_normalised_and_its_mean_is_right():
    grid = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000  # midpoint rule on [0, 1]
    for lam in (0.02, 0.3, 0.4999, 0.5, 0.5004, 0.9):
        logit = torch.tensor(math.log(lam / (1 - lam)), dtype=torch.float64)
        log_density = (
            grid * math.log(lam) + (1 - grid) * math.log(1 - lam) + continuous_bernoulli_log_norm(logit)
        )
        density = log_density.exp()
        assert float(density.mean()) == pytest.approx(1.0, abs=1e-4), lam
        assert float(continuous_bernoulli_mean(logit)) == pytest.approx(
            float((grid * density).mean()), abs=1e-4
        )
    model = build("vae", likelihood="continuous_bernoulli").eval()
    with torch.no_grad():
        recon, nll = model(_digits(2))
    assert torch.isfinite(nll).all() and recon.shape == (2, 1, 28, 28)


def test_bad_configs_name_the_allowed_values():
    with pytest.raises(ConfigError, match="bernoulli"):
        build("vae", likelihood="gaussian")
    with pytest.raises(ConfigError, match="divisible"):
        build("vae", img_size=30)
