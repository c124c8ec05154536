"""The VAE objective against hand computation, and the conditional VAE's wiring."""

import math

import pytest
import torch
from torch import distributions as D

from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.models.base import Batch, Progress
from genae.models.registry import build_model
from genae.nn.divergences import kl_normal_standard, log_normal_diag, log_normal_standard
from genae.nn.likelihoods import Bernoulli, Gaussian


def test_kl_against_hand_computed_value():
    mean = torch.tensor([[1.0, 0.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)]])
    # dim 1: 0.5*(1 + 1 - 1 - 0) = 0.5; dim 2: 0.5*(0 + 2 - 1 - log 2)
    expected = 0.5 + 0.5 * (1.0 - math.log(2.0))
    assert kl_normal_standard(mean, log_var).item() == pytest.approx(expected, rel=1e-6)


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_var = torch.randn(5, 3), torch.randn(5, 3)
    q = D.Normal(mean, torch.exp(0.5 * log_var))
    p = D.Normal(torch.zeros(3), torch.ones(3))
    expected = D.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(kl_normal_standard(mean, log_var), expected)


def test_gaussian_log_densities_match_torch():
    torch.manual_seed(1)
    x, mean, log_var = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    expected = D.Normal(mean, torch.exp(0.5 * log_var)).log_prob(x).sum(-1)
    torch.testing.assert_close(log_normal_diag(x, mean, log_var), expected)
    torch.testing.assert_close(log_normal_standard(x), D.Normal(0.0, 1.0).log_prob(x).sum(-1))


def test_bernoulli_likelihood_is_bce_by_hand():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    x = torch.tensor([[1.0, 0.25, 0.0]])
    p = torch.sigmoid(logits)
    expected = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1)
    torch.testing.assert_close(Bernoulli().log_prob(logits, x), expected)
    # log(0.5) for a 0.5 pixel at logit 0: the classic -log 2 per pixel
    assert Bernoulli().log_prob(torch.zeros(1, 4), torch.ones(1, 4)).item() == pytest.approx(
        4 * math.log(0.5)
    )


def test_gaussian_likelihood_matches_torch():
    x, mu = torch.rand(2, 5), torch.rand(2, 5)
    expected = D.Normal(mu, 0.1).log_prob(x).sum(-1)
    torch.testing.assert_close(Gaussian(0.1).log_prob(mu, x), expected)
    with pytest.raises(ConfigError, match="decoder_std"):
        Gaussian(0.0)


def test_vae_loss_equals_hand_written_elbo():
    """A VAE without hidden layers, so the ELBO can be written out by hand."""
    spec = DataSpec(shape=(1, 2, 2))
    torch.manual_seed(0)
    model = build_model("vae", {"hidden": [], "latent_dim": 2}, spec)
    x = torch.tensor([[[[0.0, 1.0], [0.5, 0.2]]], [[[1.0, 1.0], [0.0, 0.9]]]])
    flat = x.flatten(1)
    w_mu, b_mu = model.posterior.mean.weight, model.posterior.mean.bias
    w_lv, b_lv = model.posterior.log_var.weight, model.posterior.log_var.bias
    w_dec, b_dec = model.decoder[0].weight, model.decoder[0].bias
    with torch.no_grad():
        mu = flat @ w_mu.T + b_mu
        lv = flat @ w_lv.T + b_lv
        torch.manual_seed(42)
        eps = torch.randn(2, 2)
        z = mu + eps * torch.exp(0.5 * lv)
        p = torch.sigmoid(z @ w_dec.T + b_dec)
        recon = -(flat * p.log() + (1 - flat) * (1 - p).log()).sum(-1)
        kl = 0.5 * (mu**2 + lv.exp() - 1 - lv).sum(-1)
    torch.manual_seed(42)
    terms = model.loss(Batch(x))
    assert terms["recon"].item() == pytest.approx(recon.mean().item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl.mean().item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx((recon + kl).mean().item(), rel=1e-5)
    torch.manual_seed(42)
    metrics = model.evaluate(Batch(x))
    torch.testing.assert_close(metrics["neg_elbo"], recon + kl, rtol=1e-5, atol=1e-5)


def test_kl_warmup_and_free_bits_change_the_loss_not_the_reported_kl():
    """Free bits charge each unit's batch-mean KL at least `free_bits` nats; the warm-up scales
    the charge; the reported kl and the evaluation stay the plain KL."""
    spec = DataSpec(shape=(1, 2, 2))
    config = {"hidden": [], "latent_dim": 3, "kl_warmup_epochs": 4, "free_bits": 0.5}
    model = build_model("vae", config, spec)
    kl_units = torch.tensor([[0.1, 1.0, 0.2], [0.3, 2.0, 0.4]])  # unit means 0.2, 1.5, 0.3
    assert model.kl_penalty(kl_units).item() == pytest.approx(0.5 + 1.5 + 0.5)
    model.at_step(Progress(epoch=2, step=0, steps=10))  # a quarter of the way
    assert model.kl_penalty(kl_units).item() == pytest.approx(0.25 * 2.5)
    x = torch.rand(2, 1, 2, 2)
    plain = build_model("vae", {"hidden": [], "latent_dim": 3}, spec)
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    terms = model.loss(Batch(x))
    torch.manual_seed(3)
    reference = plain.loss(Batch(x))
    assert terms["kl"].item() == pytest.approx(reference["kl"].item())
    assert terms["recon"].item() == pytest.approx(reference["recon"].item())
    assert terms["loss"].item() != pytest.approx(reference["loss"].item())
    with pytest.raises(ConfigError, match="free_bits"):
        build_model("vae", {"free_bits": -1}, spec)


def test_vae_shapes_and_sampling_are_in_range():
    spec = DataSpec(shape=(1, 8, 8), num_classes=10)
    model = build_model("vae", {"hidden": [16], "latent_dim": 3}, spec)
    assert model.encoder[0].in_features == 64
    images = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 8, 8)
    assert images.min() >= 0 and images.max() <= 1
    again = model.sample(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(images, again)
    assert model.reconstruct(torch.rand(3, 1, 8, 8)).shape == (3, 1, 8, 8)


def test_cvae_feeds_the_label_to_encoder_and_decoder():
    spec = DataSpec(shape=(1, 8, 8), num_classes=10)
    model = build_model("cvae", {"hidden": [16], "latent_dim": 3}, spec)
    assert model.encoder[0].in_features == 64 + 10
    assert model.decoder[0].in_features == 3 + 10
    z = torch.zeros(2, 3)
    a = model.generate(z, torch.tensor([0, 0]))
    b = model.generate(z, torch.tensor([0, 7]))
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1]), "the label must change what is decoded"
    x = torch.rand(2, 1, 8, 8)
    terms = model.loss(Batch(x, torch.tensor([1, 2])))
    assert torch.isfinite(terms["loss"])


def test_cvae_with_attribute_vectors():
    spec = DataSpec(shape=(3, 4, 4), attribute_names=("Male", "Smiling", "Young"))
    model = build_model("cvae", {"hidden": [8], "latent_dim": 2}, spec)
    assert model.encoder[0].in_features == 48 + 3
    attrs = torch.tensor([[1.0, -1.0, 1.0]])
    assert model.sample(1, attrs).shape == (1, 3, 4, 4)


def test_cvae_refuses_unlabelled_data():
    with pytest.raises(ConfigError, match="needs labelled data"):
        build_model("cvae", {}, DataSpec(shape=(1, 8, 8)))


def test_model_config_errors_name_the_field():
    spec = DataSpec(shape=(1, 8, 8))
    with pytest.raises(ConfigError, match="latent_dim"):
        build_model("vae", {"latent_dim": 0}, spec)
    with pytest.raises(ConfigError, match="did you mean 'latent_dim'"):
        build_model("vae", {"latent_dims": 4}, spec)
    with pytest.raises(ConfigError, match="likelihood"):
        build_model("vae", {"likelihood": "poisson"}, spec)
    with pytest.raises(ConfigError, match="unknown model 'vea'.*did you mean 'vae'"):
        build_model("vea", {}, spec)
