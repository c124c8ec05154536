"""DFC-VAE's normalised feature loss: a hand-computed case, invariance to the scale of the
feature network's activations (what the normaliser is for), the config option, and the default
beta training a tiny model without posterior collapse."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genae.api import fit
from genae.config import from_mapping
from genae.data.sources import load_dataset
from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.models.base import Batch
from genae.models.dfcvae import DEFAULT_FEATURE_WEIGHT, DFCVAEConfig
from genae.models.registry import build_model
from genae.nn.perceptual import FeatureExtractor, feature_loss, feature_mse

SMALL = {"latent_dim": 8, "stage_channels": [8, 16, 16, 32]}


def times_three_net() -> FeatureExtractor:
    """Taps: the image itself, then 3 x the image (a bias-free 1x1 convolution)."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(3.0)
    return FeatureExtractor(nn.Sequential(nn.Identity(), conv), (0, 1), in_channels=1)


def test_normalised_loss_matches_a_hand_computation():
    # Two 1x1x2 images and their reconstructions; both taps see C*H*W = 2 elements.
    x = torch.tensor([[1.0, 3.0], [2.0, 2.0]]).view(2, 1, 1, 2)
    recon = torch.tensor([[0.0, 3.0], [2.0, 4.0]]).view(2, 1, 1, 2).requires_grad_()
    net = times_three_net()
    # raw, per layer 1/(2CHW) ||d||^2: layer 0 gives 1/4 and 4/4, layer 1 nine times that.
    assert torch.allclose(feature_mse(net, x, recon), torch.tensor([2.5, 10.0]))
    # normalised: divided by the batch's mean square target (layer 0: (1+9+4+4)/4 = 4.5, layer 1:
    # 9 x 4.5), i.e. ||d_i||^2 / (2 mean_j ||phi(x_j)||^2) per layer = 1/18 and 4/18, twice.
    loss = feature_loss(net, x, recon)
    assert torch.allclose(loss, torch.tensor([1 / 9, 4 / 9]))
    # The normaliser is a constant of the batch: d/d recon = 2 layers x (recon - x) / (2 * 4.5).
    loss.sum().backward()
    assert torch.allclose(recon.grad, (recon - x).detach() / 4.5)


def homogeneous_net(std: float) -> FeatureExtractor:
    """A bias-free ReLU CNN: dividing its input by `std` divides every tap by `std`."""
    torch.manual_seed(0)
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.ReLU(),
    )
    return FeatureExtractor(body, (1, 3), in_channels=3, mean=[0.0] * 3, std=[std] * 3)


def test_normalised_loss_is_invariant_to_the_scale_of_the_activations():
    unit, scaled = homogeneous_net(1.0), homogeneous_net(0.01)  # activations x 100
    x, recon = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    a, b = feature_loss(unit, x, recon), feature_loss(scaled, x, recon)
    assert torch.allclose(a, b, rtol=1e-5)
    assert 0 < a.mean() < 2  # relative errors: 1/2 per layer for an all-zero reconstruction
    # The raw loss is not: it grows with the square of the activations.
    ratio = feature_mse(scaled, x, recon) / feature_mse(unit, x, recon)
    assert torch.allclose(ratio, torch.full((4,), 1e4), rtol=1e-4)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16)])
def test_dfcvae_objective_does_not_depend_on_the_feature_scale(shape):
    """The model's loss, not just the function: a missing normaliser would change it 10^4-fold."""
    model = build_model("dfcvae", {**SMALL, "features": "classifier"}, DataSpec(shape=shape))
    assert model.config.feature_loss == "normalized"
    x = torch.rand(4, *shape)
    losses = {}
    for std in (1.0, 0.01):
        model._phi = homogeneous_net(std)
        torch.manual_seed(1)  # the same z draw
        losses[std] = model.loss(Batch(x))
    for key in ("loss", "kl", "feature"):
        assert torch.allclose(losses[1.0][key], losses[0.01][key], rtol=1e-5), key
    assert losses[1.0]["feature"] > 0


def test_feature_loss_option_and_default_beta():
    config = from_mapping(DFCVAEConfig, {})
    assert config.feature_loss == "normalized"
    assert config.feature_weight == DEFAULT_FEATURE_WEIGHT
    assert from_mapping(DFCVAEConfig, {"feature-loss": "raw"}).feature_loss == "raw"
    with pytest.raises(ConfigError, match="feature_loss: expected one of normalized, raw"):
        from_mapping(DFCVAEConfig, {"feature_loss": "sum"})
    # raw is the paper's unnormalised term, which grows with the activations' scale.
    model = build_model(
        "dfcvae", {**SMALL, "features": "classifier", "feature_loss": "raw"}, DataSpec((1, 8, 8))
    )
    model._phi = homogeneous_net(0.01)
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(1)
    raw = model.loss(Batch(x))["feature"]
    model.config.feature_loss = "normalized"
    torch.manual_seed(1)
    assert raw > 10 * model.loss(Batch(x))["feature"]


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """torchvision's vgg19 with random weights, saved as a .pth state dict (as in
    test_image_models): the real file format, without the ImageNet download."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    state = {f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()}
    torch.save(state, path)
    return path


def test_default_beta_trains_without_collapse_where_the_old_default_collapsed(vgg_file):
    """digits (8x8 grey) through VGG19 relu1_1/2_1/3_1: the default (normalised loss, beta
    DEFAULT_FEATURE_WEIGHT) keeps a code; the raw loss with the paper's beta 0.5 does not."""
    digits = load_dataset("digits")
    cfg = {"epochs": 3, "batch_size": 50, "lr": 3e-3, "progress": False, "snapshot_epochs": []}
    config = {**SMALL, "features": "vgg19-123", "feature_weights": str(vgg_file)}
    default = fit("dfcvae", model_config=config, train_config=cfg, data=digits).history
    old = {**config, "feature_loss": "raw", "feature_weight": 0.5}
    collapsed = fit("dfcvae", model_config=old, train_config=cfg, data=digits).history
    # Measured: val_kl 6.4 nats and val_recon_mse 0.078 -> 0.040 against 0.00 nats, 0.083.
    assert default[-1]["val_kl"] > 2.0, default
    assert default[-1]["val_recon_mse"] < 0.8 * collapsed[-1]["val_recon_mse"], (default, collapsed)
    assert collapsed[-1]["val_kl"] < 0.5, collapsed
