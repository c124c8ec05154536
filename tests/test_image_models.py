"""Convolutional VAE and DFC-VAE: shapes for every image size, the feature networks (VGG19 taps,
loading, freezing), the perceptual loss, and a tiny convvae/dfcvae learning on digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from genae.api import fit
from genae.data.memory import TensorData
from genae.data.sources import load_dataset
from genae.data.types import DataSpec
from genae.errors import CheckpointError, ConfigError
from genae.models.base import Batch
from genae.models.dfcvae import FEATURE_NETWORK, FEATURE_ROLE
from genae.models.registry import build_model
from genae.nn.perceptual import VGG19_RELU_INDEX, feature_mse, vgg19_features
from genae.training.trainer import evaluate

SMALL = {"latent_dim": 8, "stage_channels": [8, 16, 16, 32]}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """torchvision's vgg19 with random weights, saved as a .pth state dict."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    # Only the convolutional part: the 120M-parameter classifier would make a 0.5 GB file.
    state = {f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()}
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "shape", [(3, 64, 64), (1, 28, 28), (1, 32, 32), (3, 32, 32), (1, 8, 8), (3, 28, 28)]
)
def test_convvae_shapes(shape):
    model = build_model("convvae", SMALL, DataSpec(shape=shape))
    x = torch.rand(3, *shape)
    mean, log_var = model.encode(x)
    assert mean.shape == log_var.shape == (3, 8)
    assert model.decode(mean).shape == (3, shape[0] * shape[1] * shape[2])
    assert model.reconstruct(x).shape == (3, *shape)
    samples = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, *shape) and samples.min() >= 0 and samples.max() <= 1
    assert set(model.evaluate(Batch(x))) == {"neg_elbo", "recon_nll", "kl", "recon_mse"}


def test_convvae_default_architecture_is_the_papers():
    model = build_model("convvae", {}, DataSpec(shape=(3, 64, 64)))
    convs = [m for m in model.encoder.convs if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert model.posterior.mean.out_features == 100
    assert model.decoder.bottom_shape == (256, 4, 4)
    ups = [m for m in model.decoder.net if isinstance(m, nn.Upsample)]
    assert len(ups) == 4
    # 28x28 is padded to 32x32 inside and cropped back.
    small = build_model("convvae", {}, DataSpec(shape=(1, 28, 28)))
    assert small.encoder.geometry.padded == (32, 32)


def test_gaussian_likelihood_decodes_through_a_sigmoid():
    model = build_model("convvae", {**SMALL, "likelihood": "gaussian"}, DataSpec(shape=(1, 8, 8)))
    out = model.decode(torch.randn(4, 8) * 10)
    assert out.min() >= 0 and out.max() <= 1


def test_vgg_taps_are_the_documented_relu_layers(vgg_file):
    from torchvision.models import vgg19

    features = vgg19(weights=None).features
    conv_index = {}  # relu name -> its conv, counting blocks by the max-pools before it
    block, conv_in_block = 1, 0
    for i, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            block, conv_in_block = block + 1, 0
        elif isinstance(layer, nn.Conv2d):
            conv_in_block += 1
        elif isinstance(layer, nn.ReLU):
            conv_index[f"relu{block}_{conv_in_block}"] = i
    for name, index in VGG19_RELU_INDEX.items():
        assert conv_index[name] == index, name
    net = vgg19_features("vgg19-345", vgg_file)
    assert net.taps == (11, 20, 29)
    outs = net(torch.rand(2, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [256, 512, 512]
    assert [o.shape[-1] for o in outs] == [8, 4, 2]
    assert [
        o.shape[1] for o in vgg19_features("vgg19-123", vgg_file)(torch.rand(1, 1, 16, 16))
    ] == [
        64,
        128,
        256,
    ]


def test_vgg_weights_load_from_pth_and_safetensors(vgg_file, tmp_path):
    state = torch.load(vgg_file, weights_only=True)
    st_file = tmp_path / "vgg.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st_file))
    a, b = vgg19_features("vgg19-123", vgg_file), vgg19_features("vgg19-123", st_file)
    torch.testing.assert_close(a.body[0].weight, state["features.0.weight"])
    torch.testing.assert_close(b.body[0].weight, state["features.0.weight"])


def test_missing_or_bad_vgg_weights_are_one_line_config_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match=r"vgg19-dcbb9e9d\.pth.*download https://") as info:
        vgg19_features("vgg19-123")
    assert "\n" not in str(info.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pth"):
        vgg19_features("vgg19-123", junk)
    with pytest.raises(ConfigError, match="at least 16x16"):
        vgg19_features("vgg19-345", junk, (1, 8, 8))
    with pytest.raises(ConfigError, match="features"):
        build_model("dfcvae", {"features": "vgg16"}, DataSpec(shape=(3, 64, 64)))


def test_perceptual_loss_is_zero_for_identical_images(vgg_file):
    net = vgg19_features("vgg19-123", vgg_file)
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(feature_mse(net, x, x.clone()), torch.zeros(3))
    assert (feature_mse(net, x, torch.rand_like(x)) > 0).all()


def _feature_classifier(channels: int = 1):
    """An untrained `classifier` of DFC-VAE's feature network, as if handed over by `fit`."""
    torch.manual_seed(3)
    spec = DataSpec(shape=(channels, 16, 16), num_classes=10)
    net = build_model("classifier", FEATURE_NETWORK, spec)
    for m in net.modules():  # non-trivial running statistics, to see that they never move
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize("features", ["vgg19-123", "classifier"])
def test_gradients_reach_the_vae_never_the_feature_network(features, vgg_file, tmp_path):
    config = {**SMALL, "features": features}
    if features != "classifier":
        config["feature_weights"] = str(vgg_file)
    model = build_model("dfcvae", config, DataSpec(shape=(3, 16, 16)))
    model.use_pretrained({FEATURE_ROLE: _feature_classifier(3)})
    model.train()
    x = torch.rand(4, 3, 16, 16)
    phi = model.feature_network(x.device)
    before = {k: v.clone() for k, v in phi.state_dict().items()}
    assert not phi.training and all(not p.requires_grad for p in phi.parameters())
    assert not any(k.startswith("_phi") for k in model.state_dict())
    assert all(
        p.data_ptr() not in {q.data_ptr() for q in phi.parameters()} for p in model.parameters()
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        terms = model.loss(Batch(x))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    assert set(terms) == {"loss", "kl", "feature"}
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert all(p.grad is None for p in phi.parameters())
    phi.train()  # asking for training mode must not unfreeze BatchNorm statistics
    assert not phi.training
    after = phi.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def test_pixel_term_is_added_on_request():
    config = {**SMALL, "features": "classifier", "pixel_weight": 1.0}
    model = build_model("dfcvae", config, DataSpec(shape=(1, 8, 8)))
    with pytest.raises(ConfigError, match="handed over"):  # phi comes from `fit`, not a file
        model.feature_network(torch.device("cpu"))
    model.use_pretrained({FEATURE_ROLE: _feature_classifier(1)})
    terms = model.loss(Batch(torch.rand(2, 1, 8, 8)))
    assert set(terms) == {"loss", "kl", "feature", "pixel"}


def test_tiny_convvae_learns_on_digits(digits):
    cfg = {"epochs": 4, "batch_size": 50, "lr": 3e-3, "progress": False, "snapshot_epochs": []}
    torch.manual_seed(0)
    untrained = build_model("convvae", {**SMALL, "latent_dim": 4}, digits.spec)
    base = evaluate(untrained, TensorData(digits.test.unseal()), 1000, seed=0)["neg_elbo"]
    run = fit("convvae", model_config={**SMALL, "latent_dim": 4}, train_config=cfg, data=digits)
    first, last = run.history[0]["val_neg_elbo"], run.history[-1]["val_neg_elbo"]
    # Untrained: ~log 2 nats per pixel (64 pixels); trained well below, and still improving.
    assert base > 40 and last < base - 15 and last < first - 1.5, (base, first, last)


def test_dfcvae_with_classifier_features_trains_caches_and_resumes(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))
    model_config = {**SMALL, "features": "classifier", "feature_epochs": 1}
    cfg = {"epochs": 1, "batch_size": 100, "progress": False, "snapshot_epochs": []}
    cfg["max_train_examples"] = 500
    run = fit(
        "dfcvae", model_config=model_config, train_config=cfg, data=digits, run_dir=tmp_path / "run"
    )
    # The feature network is an ordinary 'classifier' run, shared through the cache.
    cached = list((tmp_path / "cache" / "runs").glob(f"{FEATURE_ROLE}-digits-*"))
    assert len(cached) == 1
    assert json.loads((cached[0] / "config.json").read_text())["model"] == "classifier"
    assert not any(k.startswith("_phi") for k in run.model.state_dict())
    assert run.history[-1]["train_feature"] > 0
    mtime = (cached[0] / "model.safetensors").stat().st_mtime_ns
    # The second run and a resumed one reuse the cached network.
    fit(
        "dfcvae",
        model_config=model_config,
        train_config={**cfg, "epochs": 1},
        data=digits,
        run_dir=tmp_path / "run2",
    )
    fit(
        "dfcvae",
        model_config=model_config,
        train_config={**cfg, "epochs": 2},
        data=digits,
        run_dir=tmp_path / "run",
        resume=True,
    )
    assert (cached[0] / "model.safetensors").stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "cache" / "runs").iterdir())) == 1
    import genae

    assert genae.load(tmp_path / "run").sample(2).shape == (2, 1, 8, 8)
    # --feature-weights names a trained classifier run directory.
    named = {**model_config, "feature_weights": str(cached[0])}
    fit("dfcvae", model_config=named, train_config=cfg, data=digits, run_dir=tmp_path / "run3")
    assert len(list((tmp_path / "cache" / "runs").iterdir())) == 1


def test_dfcvae_feature_weights_must_name_a_classifier_run(digits, tmp_path):
    cfg = {"epochs": 1, "progress": False, "snapshot_epochs": [], "max_train_examples": 200}
    config = {**SMALL, "features": "classifier", "feature_weights": str(tmp_path / "none")}
    with pytest.raises(CheckpointError, match="feature_weights: .*none: run directory not found"):
        fit("dfcvae", model_config=config, train_config=cfg, data=digits, run_dir=tmp_path / "r")
    fit(
        "vae",
        model_config={"hidden": [8], "latent_dim": 2},
        train_config=cfg,
        data=digits,
        run_dir=tmp_path / "vae",
    )
    config["feature_weights"] = str(tmp_path / "vae")
    with pytest.raises(ConfigError, match="feature_weights: .* is a 'vae' run"):
        fit("dfcvae", model_config=config, train_config=cfg, data=digits, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before the run directory was made
