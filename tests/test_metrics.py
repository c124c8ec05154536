"""Metrics against closed forms: the importance-weighted bound on a linear-Gaussian VAE (whose
log p(x) is exact), the Fréchet distance of Gaussians, accuracy and confusion matrices."""

import math

import numpy as np
import pytest
import torch
from torch import distributions as D

from genae.api import fit
from genae.data.memory import TensorData
from genae.data.sources import load_dataset
from genae.data.types import DataSpec, ImageArrays
from genae.errors import ConfigError
from genae.metrics.classification import accuracy, confusion_matrix
from genae.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from genae.metrics.likelihood import importance_weighted_nll
from genae.models.registry import build_model
from genae.training.trainer import evaluate

SIGMA = 0.5
SCALES = torch.tensor([1.5, 0.7])


def linear_gaussian_vae(exact_posterior: bool):
    """A VAE with linear decoder x = W z + b + N(0, SIGMA^2 I) on 6 pixels and a 2-D latent.
    W has orthogonal columns, so the true posterior is a diagonal Gaussian with an input-free
    variance: a linear encoder can represent it exactly."""
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 2, 3))
    config = {"hidden": [], "latent_dim": 2, "likelihood": "gaussian", "decoder_std": SIGMA}
    model = build_model("vae", config, spec).eval()
    q, _ = torch.linalg.qr(torch.randn(6, 2))
    w, b = q * SCALES, torch.rand(6) * 0.5 + 0.25
    precision = 1 + SCALES**2 / SIGMA**2  # diagonal of I + W^T W / sigma^2
    gain = (w.T / SIGMA**2) / precision[:, None]  # posterior mean = gain (x - b)
    with torch.no_grad():
        model.decoder[0].weight.copy_(w)
        model.decoder[0].bias.copy_(b)
        model.posterior.mean.weight.copy_(gain)
        model.posterior.mean.bias.copy_(-gain @ b)
        model.posterior.log_var.weight.zero_()
        model.posterior.log_var.bias.copy_(-precision.log())
        if not exact_posterior:  # a wrong but reasonable posterior: shifted and too wide
            model.posterior.mean.bias.add_(0.3)
            model.posterior.log_var.bias.add_(0.7)
    marginal = D.MultivariateNormal(b, w @ w.T + SIGMA**2 * torch.eye(6))
    return model, marginal


def pixel_data(n: int = 200) -> TensorData:
    images = torch.randint(0, 256, (n, 1, 2, 3), generator=torch.Generator().manual_seed(1))
    return TensorData(ImageArrays(images.to(torch.uint8)))


def exact_nll(marginal, data: TensorData) -> torch.Tensor:
    return -marginal.log_prob(data.images.float().div(255).flatten(1)).double()


def test_iw_nll_equals_exact_nll_with_the_true_posterior():
    """With q(z|x) = p(z|x) every importance weight equals p(x): the bound is exact for any k,
    also when k is split into chunks of unequal size."""
    model, marginal = linear_gaussian_vae(exact_posterior=True)
    data = pixel_data()
    for k, batch_size in ((1, 100), (450, 64)):
        iw = importance_weighted_nll(model, data, k, batch_size=batch_size)
        torch.testing.assert_close(iw, exact_nll(marginal, data), atol=2e-4, rtol=0)


def test_iw_nll_tightens_towards_the_exact_nll_as_k_grows():
    model, marginal = linear_gaussian_vae(exact_posterior=False)
    data = pixel_data()
    exact = exact_nll(marginal, data).mean().item()
    bounds = [importance_weighted_nll(model, data, k).mean().item() for k in (1, 10, 1000)]
    assert bounds[0] > bounds[1] > bounds[2] >= exact - 0.01
    assert bounds[0] - exact > 0.5  # the posterior is wrong enough for the ELBO to be loose
    assert bounds[2] - exact < 0.05


def test_iw_nll_is_reproducible_and_leaves_the_global_rng_alone():
    model, _ = linear_gaussian_vae(exact_posterior=False)
    data = pixel_data(50)
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = importance_weighted_nll(model, data, 20, seed=3)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert torch.equal(a, importance_weighted_nll(model, data, 20, seed=3))


@pytest.mark.parametrize("name", ["vae", "cvae"])
def test_iw_nll_is_below_neg_elbo_on_a_trained_run(name):
    digits = load_dataset("digits")
    cfg = {"epochs": 4, "batch_size": 100, "lr": 3e-3, "progress": False, "snapshot_epochs": []}
    run = fit(name, model_config={"hidden": [64], "latent_dim": 4}, train_config=cfg, data=digits)
    test = TensorData(digits.test.unseal())
    neg_elbo = evaluate(run.model, test, 1000, seed=0)["neg_elbo"]
    iw = importance_weighted_nll(run.model, test, 50).mean().item()
    assert iw < neg_elbo - 0.1, f"{name}: iw_nll {iw:.2f} vs neg_elbo {neg_elbo:.2f}"


def test_iw_nll_refuses_a_model_without_log_weights():
    digits = load_dataset("digits")
    model = build_model("classifier", {"block_channels": [4], "feature_width": 8}, digits.spec)
    with pytest.raises(ConfigError, match="iw_nll.*classifier"):
        importance_weighted_nll(model, TensorData(digits.test.unseal()), 10)


# --- Fréchet distance ----------------------------------------------------------------------


def test_frechet_distance_of_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    assert fid_from_features(features, features.copy()) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(torch.from_numpy(features), features) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_of_diagonal_gaussians_by_hand():
    # ||mu1 - mu2||^2 = 1 + 4 + 1; trace term = sum (sqrt(a) - sqrt(b))^2 = 1 + 1 + 4
    mu1, mu2 = np.array([1.0, 2.0, 0.0]), np.array([0.0, 0.0, 1.0])
    cov1, cov2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(12.0, rel=1e-9)
    assert frechet_distance(mu1, cov1, mu1, cov1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_rotated_gaussians_matches_the_closed_form():
    """Same rotation for both: the distance is that of the diagonal pair, rotation-invariant."""
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    cov1 = rotation @ np.diag([1.0, 4.0, 9.0]) @ rotation.T
    cov2 = rotation @ np.diag([4.0, 1.0, 1.0]) @ rotation.T
    mu1, mu2 = rotation @ np.array([1.0, 2.0, 0.0]), rotation @ np.array([0.0, 0.0, 1.0])
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(12.0, rel=1e-6)


def test_frechet_distance_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    a = rng.normal([1.0, 2.0, 0.0], [1.0, 2.0, 3.0], size=(40_000, 3))
    b = rng.normal([0.0, 0.0, 1.0], [2.0, 1.0, 1.0], size=(40_000, 3))
    mean, cov = feature_statistics(a)
    np.testing.assert_allclose(mean, [1.0, 2.0, 0.0], atol=0.05)
    assert fid_from_features(a, b) == pytest.approx(12.0, rel=0.03)


# --- classification ------------------------------------------------------------------------


def test_accuracy_and_confusion_matrix():
    predicted = torch.tensor([0, 1, 1, 2, 2, 2])
    labels = torch.tensor([0, 1, 2, 2, 2, 0])
    assert accuracy(predicted, labels) == pytest.approx(4 / 6)
    matrix = confusion_matrix(predicted, labels, num_classes=3)
    expected = np.array([[1, 0, 1], [0, 1, 0], [0, 1, 2]])  # rows: true, columns: predicted
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == 6 and np.trace(matrix) == 4
    with pytest.raises(ValueError, match="as many"):
        accuracy(predicted, labels[:3])


def test_log_weights_of_a_cvae_use_the_label():
    digits = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("cvae", {"hidden": [16], "latent_dim": 2}, digits.spec).eval()
    batch = TensorData(digits.test.unseal()).batch(torch.arange(4))
    torch.manual_seed(1)
    own = model.log_weights(batch, 3)
    batch.y = (batch.y + 1) % 10
    torch.manual_seed(1)
    other = model.log_weights(batch, 3)
    assert own.shape == (4, 3) and torch.isfinite(own).all()
    assert not torch.allclose(own, other)
    assert math.isfinite(own.logsumexp(1).mean().item())
