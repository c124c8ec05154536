"""Adversarial autoencoders and CAAE: priors, phase wiring, learning on digits, shapes."""

import json
import math

import numpy as np
import pytest
import torch

from genae.api import fit
from genae.data.arrays import from_arrays
from genae.data.sources import load_dataset
from genae.data.types import DataSpec
from genae.errors import ConfigError, NonFiniteLossError
from genae.models.base import Batch
from genae.models.registry import build_model
from genae.nn.adversarial import discriminator_loss, generator_loss
from genae.nn.priors import PRIORS, make_prior
from genae.nn.regularizers import total_variation
from genae.scores import clustering_accuracy
from genae.training.trainer import make_optimizer

TINY = {"hidden": [64], "disc_hidden": [32]}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def train_cfg(**overrides):
    return {"epochs": 3, "batch_size": 100, "progress": False, "snapshot_epochs": [], **overrides}


# --- priors ---------------------------------------------------------------------------------


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_every_prior_maps_labels_to_their_regions(name):
    prior = make_prior(name, 2, 10)
    labels = torch.arange(10).repeat(300)
    z = prior.sample_region(labels, gen())
    assert z.shape == (3000, 2)
    agreement = (prior.region_of(z) == labels).float().mean().item()
    # The swiss roll's segments touch where the roll is thick, hence a little slack.
    assert agreement > (0.95 if name == "swiss-roll" else 0.995)
    # Same generator seed, same samples.
    torch.testing.assert_close(prior.sample(50, gen(3)), prior.sample(50, gen(3)))


def test_normal_and_uniform_priors_have_their_statistics():
    z = make_prior("normal", 3, 10).sample(20000, gen())
    assert z.mean(0).abs().max() < 0.03 and (z.std(0) - 1).abs().max() < 0.03
    z = make_prior("uniform", 3, 10).sample(20000, gen())
    assert z.min() >= -1 and z.max() <= 1
    assert (z.std(0) - 1 / math.sqrt(3)).abs().max() < 0.02  # std of U[-1, 1]
    prior = make_prior("uniform", 2, 4)
    log_p = prior.log_prob(torch.tensor([[0.0, 0.0], [1.5, 0.0]])).tolist()
    assert log_p == [pytest.approx(-2 * math.log(2)), -math.inf]
    # Region k of the normal prior is the k-th angular sector: its samples keep N(0,1) radii.
    normal = make_prior("normal", 2, 4)
    z = normal.sample_region(torch.zeros(5000, dtype=torch.long), gen())
    assert (z >= 0).all()  # sector 0 of 4 is the first quadrant
    assert z.pow(2).sum(1).mean().item() == pytest.approx(2.0, rel=0.05)  # chi^2 with 2 dof


def test_mixture_prior_components_and_density():
    prior = make_prior("mixture", 2, 10)
    labels = torch.arange(10).repeat(1000)
    z = prior.sample_region(labels, gen())
    means = torch.stack([z[labels == k].mean(0) for k in range(10)])
    torch.testing.assert_close(means, prior.means, atol=0.08, rtol=0)
    assert torch.allclose(prior.means.norm(dim=1), torch.full((10,), prior.radius))
    # The mixture density integrates to ~1 over a grid covering it.
    r = prior.extent()
    grid = torch.linspace(-r, r, 400)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    density = prior.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp()
    assert density.sum().item() * (grid[1] - grid[0]).item() ** 2 == pytest.approx(1.0, abs=0.02)
    # In more dimensions the components sit on the axes.
    high = make_prior("mixture", 10, 10)
    torch.testing.assert_close(high.means, high.radius * torch.eye(10))
    assert (high.region_of(high.sample_region(labels, gen())) == labels).float().mean() > 0.99


def test_swiss_roll_and_prior_errors():
    roll = make_prior("swiss-roll", 2, 5)
    z = roll.sample(2000, gen())
    radius = z.norm(dim=1)
    assert radius.min() > 0.0 and radius.max() < 3.2
    assert not roll.has_density
    with pytest.raises(ConfigError, match="swiss-roll prior is 2-D"):
        make_prior("swiss-roll", 3, 5)
    with pytest.raises(ConfigError, match="prior: expected one of"):
        make_prior("laplace", 2, 5)
    with pytest.raises(ConfigError, match="prior_regions"):
        make_prior("mixture", 3, 10)


# --- shared pieces ----------------------------------------------------------------------------


def test_total_variation_and_adversarial_losses_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    # |1-0| down the first column, |1-0| along the first row: 2, over 4 pixels.
    assert total_variation(image).item() == pytest.approx(0.5)
    assert total_variation(torch.ones(2, 3, 5, 5)).tolist() == [0.0, 0.0]
    zero = torch.zeros(4)
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert generator_loss(zero).item() == pytest.approx(math.log(2))


def test_clustering_accuracy_matching_rules():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    assert clustering_accuracy(torch.tensor([2, 2, 0, 0, 1, 1]), y) == 1.0
    assert clustering_accuracy(torch.tensor([0, 0, 0, 0, 1, 1]), y) == pytest.approx(4 / 6)
    # More clusters than classes: each cluster takes its majority class.
    assert clustering_accuracy(torch.tensor([0, 1, 2, 3, 4, 4]), y) == 1.0


# --- phases touch only their own parameters -------------------------------------------------


def phase_step_changes(model, batch, phase):
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = make_optimizer(phase.parameters, 1e-2, phase.betas, torch.device("cpu"))
    terms = phase.loss(batch)
    model.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    own = {k for k, v in model.named_parameters() if any(v is p for p in phase.parameters)}
    return changed, own


SPEC = DataSpec(shape=(1, 8, 8), num_classes=10)
PHASE_CASES = [
    ("aae", {**TINY, "label_prior": True, "prior": "mixture"}, SPEC),
    ("aae-ss", TINY, SPEC),
    ("aae-cluster", {**TINY, "clusters": 4}, SPEC),
    (
        "caae",
        {"encoder_channels": [8], "img_disc_channels": [4], "label_adversary_weight": 0.1},
        SPEC,
    ),
]
PREFIXES = {
    "aae": {
        "reconstruction": ("encoder", "decoder"),
        "discriminator": ("discriminator",),
        "regularization": ("encoder",),
    },
    "aae-ss": {
        "reconstruction": ("encoder", "y_head", "z_head", "decoder"),
        "discriminator": ("y_discriminator", "z_discriminator"),
        "regularization": ("encoder", "y_head", "z_head"),
        "supervised": ("encoder", "y_head"),
    },
    "aae-cluster": {
        "reconstruction": ("encoder", "y_head", "z_head", "decoder"),
        "discriminator": ("y_discriminator", "z_discriminator"),
        "regularization": ("encoder", "y_head", "z_head"),
    },
    "caae": {
        "autoencoder": ("encoder", "generator"),
        "z_discriminator": ("z_discriminator",),
        "image_discriminator": ("img_discriminator",),
        "label_adversary": ("label_adversary",),
        "label_classifier": ("label_consistency",),
    },
}


@pytest.mark.parametrize("name,config,spec", PHASE_CASES, ids=[c[0] for c in PHASE_CASES])
def test_one_step_of_each_phase_changes_only_its_parameters(name, config, spec):
    torch.manual_seed(0)
    model = build_model(name, config, spec)
    x = torch.rand(12, *spec.shape)
    batch = Batch(x[:8], x_labelled=x[8:], y_labelled=torch.tensor([0, 1, 2, 3]))
    if name == "caae":
        batch = Batch(x, torch.arange(12) % 10)
    phases = model.phases()
    assert [p.name for p in phases] == list(PREFIXES[name])
    for phase in phases:
        changed, own = phase_step_changes(model, batch, phase)
        expected = {k for k in own}
        assert all(k.split(".")[0] in PREFIXES[name][phase.name] for k in own), phase.name
        assert changed <= expected, f"{phase.name} changed {sorted(changed - expected)}"
        assert changed, f"{phase.name} changed nothing"


# --- learning -------------------------------------------------------------------------------


def test_aae_codes_match_a_2d_normal_prior(digits):
    torch.manual_seed(0)
    run = fit(
        "aae",
        model_config={**TINY, "latent_dim": 2},
        train_config=train_cfg(epochs=8, batch_size=50, lr=2e-3),
        data=digits,
    )
    z = run.model.latent_codes(digits.test.unseal().images.float() / 255)
    assert z.mean(0).abs().max() < 0.6, z.mean(0)
    assert ((z.std(0) > 0.5) & (z.std(0) < 1.8)).all(), z.std(0)
    # An unregularised encoder has no reason to centre its codes at the prior's scale.
    assert run.history[-1]["val_recon_mse"] < run.history[0]["val_recon_mse"]


def test_label_prior_puts_each_class_in_its_region(digits):
    torch.manual_seed(0)
    run = fit(
        "aae",
        model_config={**TINY, "latent_dim": 2, "prior": "mixture", "label_prior": True},
        train_config=train_cfg(epochs=20, batch_size=50, lr=2e-3),
        data=digits,
    )
    # The discriminator must first learn where each label belongs before the encoder can follow,
    # so agreement rises late; a few hundred steps already put it well above chance.
    agreement = max(h["val_prior_region_agreement"] for h in run.history[-3:])
    assert agreement > 0.25, f"prior_region_agreement {agreement:.2f} (chance 0.1)"


@pytest.mark.parametrize(
    ("model", "config", "pictures"),
    [
        (
            "aae",
            {**TINY, "latent_dim": 2, "prior": "mixture", "label_prior": True},
            {"latent.png", "class_grid.png"},
        ),
        ("aae", {**TINY, "latent_dim": 2, "prior": "swiss-roll"}, {"latent.png"}),
        ("aae-cluster", {**TINY, "latent_dim": 2, "clusters": 4}, {"latent.png", "class_grid.png"}),
        (
            "caae",
            {"latent_dim": 4, "encoder_channels": [8], "img_disc_channels": [8]},
            {"latent.png", "caae_grid.png"},
        ),
    ],
)
def test_training_writes_the_models_pictures(digits, tmp_path, model, config, pictures):
    """After the last epoch the run directory holds the pictures the model supports, as PNGs
    with something drawn in them."""
    from PIL import Image

    fit(
        model,
        model_config=config,
        train_config=train_cfg(epochs=1),
        data=digits,
        run_dir=tmp_path / "run",
    )
    written = {p.name for p in (tmp_path / "run" / "pictures").iterdir()}
    assert written == pictures
    for name in written:
        pixels = np.asarray(Image.open(tmp_path / "run" / "pictures" / name), dtype=float)
        assert pixels.std() > 5, f"{name} is blank"


def test_label_prior_with_a_label_budget_and_without_labels(digits):
    run = fit(
        "aae",
        model_config={**TINY, "latent_dim": 2, "prior": "mixture", "label_prior": True},
        train_config=train_cfg(epochs=1, labels="100", labelled_batch_size=20),
        data=digits,
    )
    assert 0 <= run.history[0]["val_prior_region_agreement"] <= 1
    with pytest.raises(ConfigError, match="not semi-supervised"):
        fit("aae", model_config=TINY, train_config=train_cfg(labels="100"), data=digits)
    with pytest.raises(ConfigError, match="label_prior: needs a dataset with class labels"):
        build_model("aae", {"label_prior": True}, DataSpec(shape=(1, 8, 8)))


def test_categorical_models_report_accuracy_and_clustering(digits):
    run = fit(
        "aae-ss", model_config=TINY, train_config=train_cfg(epochs=1, labels="100"), data=digits
    )
    assert 0 <= run.history[0]["val_accuracy"] <= 1
    run = fit(
        "aae-cluster",
        model_config={**TINY, "clusters": 12},
        train_config=train_cfg(epochs=1),
        data=digits,
    )
    last = run.history[-1]
    assert 0 < last["val_clustering_accuracy"] <= 1 and last["val_kmeans_clustering_accuracy"] > 0.5
    assert run.model.sample(3, torch.tensor([0, 5, 11])).shape == (3, 1, 8, 8)
    assert len(run.model.grid_labels(2)) == 24


def test_a_diverging_aae_stops_with_a_named_term(digits, monkeypatch):
    from genae.models.aae import AAE

    original = AAE.regularization_loss

    def exploding(self, batch):
        terms = original(self, batch)
        return {"loss": terms["loss"] * float("inf")}

    monkeypatch.setattr(AAE, "regularization_loss", exploding)
    with pytest.raises(NonFiniteLossError) as info:
        fit("aae", model_config=TINY, train_config=train_cfg(epochs=1, log_every=3), data=digits)
    assert info.value.term == "regularization.loss" and info.value.step == 0


def test_collapse_diagnosis_reads_discriminator_accuracies():
    from genae.nn.adversarial import adversarial_collapse

    assert adversarial_collapse({"discriminator.accuracy": 0.95, "reconstruction.loss": 3}) is None
    # a classifier's accuracy is not a discriminator's
    assert adversarial_collapse({"supervised.accuracy": 1.0}) is None
    message = adversarial_collapse(
        {
            "discriminator.y_accuracy": 1.0,
            "discriminator.z_accuracy": 0.6,
            "z_discriminator.loss": 0,
        }
    )
    assert "discriminator.y_accuracy 1.0000" in message and "z_accuracy" not in message


def test_an_aae_whose_discriminator_wins_outright_stops_as_collapsed(digits, tmp_path):
    """An encoder that never tries to fool its discriminator (regularisation switched off) lets
    the discriminator win every time: training stops after that epoch, which is kept, and says
    why; --no-stop-on-collapse trains on."""
    from genae.errors import TrainingError
    from genae.models.aae import AAE

    def no_regularisation(self, batch):
        zero = self.encoder[0].weight.sum() * 0.0
        return {"loss": zero}

    config = {**TINY, "latent_dim": 2, "prior": "uniform"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AAE, "regularization_loss", no_regularisation)
        with pytest.raises(TrainingError, match=r"epoch \d+: the adversarial game collapsed"):
            fit(
                "aae",
                model_config=config,
                train_config=train_cfg(epochs=10, lr=3e-3),
                data=digits,
                run_dir=tmp_path / "run",
            )
        rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        assert 1 <= len(rows) < 10
        assert json.loads(rows[-1])["train_discriminator.accuracy"] >= 0.999
        run = fit(
            "aae",
            model_config=config,
            data=digits,
            train_config=train_cfg(epochs=len(rows) + 1, lr=3e-3, stop_on_collapse=False),
        )
        assert len(run.history) == len(rows) + 1


# --- CAAE -----------------------------------------------------------------------------------


def caae_small(spec):
    return build_model(
        "caae",
        {
            "encoder_channels": [8, 16, 16, 16],
            "img_disc_channels": [4, 8],
            "latent_dim": 5,
            "label_adversary_weight": 0.1,
        },
        spec,
    )


def test_caae_shapes_28x28_classes():
    spec = DataSpec(shape=(1, 28, 28), num_classes=10)
    model = caae_small(spec)
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 4, 9])
    z = model.encode(x)
    assert z.shape == (3, 5) and z.abs().max() <= 1
    assert model.decode(z, model.condition_vector(y)).shape == (3, 1, 28, 28)
    for phase in model.phases():
        model.zero_grad()
        phase.loss(Batch(x, y))["loss"].backward()
    images = model.sample(4, torch.tensor([1, 2, 3, 4]))
    assert images.shape == (4, 1, 28, 28) and images.min() >= 0 and images.max() <= 1


def test_caae_shapes_64x64_rgb_with_attributes():
    names = ("Male", "Smiling", "Young")
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 64, 64), dtype=torch.uint8, generator=rng)
    attributes = torch.randint(0, 2, (20, 3), generator=rng) * 2 - 1
    data = from_arrays(images, attributes, attribute_names=names, test_fraction=0.2)
    model = caae_small(data.spec)
    assert model.spec.condition_dim == 3
    x = data.train.images[:4].float() / 255
    y = data.train.labels[:4]
    for phase in model.phases():
        model.zero_grad()
        terms = phase.loss(Batch(x, y))
        terms["loss"].backward()
        assert torch.isfinite(terms["loss"])
    assert model.relabel(x, -y).shape == (4, 3, 64, 64)
    metrics = model.evaluate(Batch(x, y))
    assert set(metrics) == {
        "recon_l1",
        "recon_mse",
        "label_sensitivity",
        "code_sensitivity",
        "image_difference",
    }
    assert all(v.shape == (4,) for v in metrics.values())
    assert (metrics["code_sensitivity"] > 0).all()
    # A generator blind to z (its first layer's z columns zeroed) draws one image per label:
    # code_sensitivity says so, while the label still matters.
    with torch.no_grad():
        model.generator.fc.weight[:, : model.config.latent_dim] = 0
    metrics = model.evaluate(Batch(x, y))
    assert metrics["code_sensitivity"].abs().max() < 1e-6
    assert (metrics["label_sensitivity"] > 0).all()
    # ... and is reported as collapsed; a code that moves images by 0.2 of what separates two
    # real ones is a result
    means = {k: v.mean().item() for k, v in metrics.items()}
    assert means["image_difference"] > 0.2  # random pixels
    assert "collapsed: code_sensitivity" in model.result_problem(means)
    healthy = {**means, "code_sensitivity": 0.2 * means["image_difference"]}
    assert model.result_problem(healthy) is None
    run = fit(
        "caae",
        model_config={"encoder_channels": [4], "img_disc_channels": [4], "latent_dim": 3},
        train_config=train_cfg(epochs=1, batch_size=8),
        data=data,
    )
    assert math.isfinite(run.history[0]["val_recon_l1"])


def test_cluster_balance_term_is_the_kl_of_the_batch_marginal_to_uniform():
    model = build_model("aae-cluster", {**TINY, "clusters": 4}, SPEC)
    batch = Batch(torch.rand(6, 1, 8, 8))
    with torch.no_grad():
        model.y_head.weight.zero_()
        model.y_head.bias.zero_()
    assert model.regularization_loss(batch)["balance"].item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.y_head.bias.copy_(torch.tensor([50.0, 0, 0, 0]))  # every example in cluster 0
    assert model.regularization_loss(batch)["balance"].item() == pytest.approx(
        math.log(4), rel=1e-4
    )


def test_mmd_inverse_multiquadric_matches_a_hand_computation():
    from genae.nn.divergences import mmd_inverse_multiquadric

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=gen), torch.randn(4, 3, generator=gen) + 1

    def k(a, b, c):
        return c / (c + float(((a - b) ** 2).sum()))

    expected = 0.0
    for s in (0.5, 2.0):
        c = s * 1.5
        xx = sum(k(x[i], x[j], c) for i in range(5) for j in range(5) if i != j) / 20
        yy = sum(k(y[i], y[j], c) for i in range(4) for j in range(4) if i != j) / 12
        xy = sum(k(x[i], y[j], c) for i in range(5) for j in range(4)) / 20
        expected += xx + yy - 2 * xy
    got = mmd_inverse_multiquadric(x, y, 1.5, scales=(0.5, 2.0))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # unbiased: about 0 for two draws of one distribution, clearly not for a shifted one
    a, b = torch.rand(400, 4, generator=gen) * 2 - 1, torch.rand(400, 4, generator=gen) * 2 - 1
    same = mmd_inverse_multiquadric(a, b, 8 / 3).item()
    shifted = mmd_inverse_multiquadric(a * 0.3, b, 8 / 3).item()
    assert abs(same) < 0.01 < shifted


def test_caae_prior_terms_add_their_weighted_losses_and_feed_the_discriminator():
    spec = DataSpec(shape=(1, 28, 28), num_classes=10)
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    losses = {}
    for name, extra in {
        "paper": {"mmd_weight": 0.0},
        "prior": {"prior_adversarial_weight": 0.5, "mmd_weight": 0.0},
        "mmd": {"mmd_weight": 2.0},
    }.items():
        torch.manual_seed(0)
        model = build_model(
            "caae",
            {
                "encoder_channels": [8, 16],
                "img_disc_channels": [4, 8],
                "latent_dim": 5,
                "relabel_consistency_weight": 0.0,
                **extra,
            },
            spec,
        )
        torch.manual_seed(1)
        losses[name] = model.autoencoder_loss(Batch(x, y))
        if name == "prior":
            # the discriminator sees the batch's reconstructions and as many prior decodes
            sizes: list[int] = []
            hook = model.img_discriminator.register_forward_hook(
                lambda module, args, out, into=sizes: into.append(len(out))
            )
            model.image_discriminator_loss(Batch(x, y))
            hook.remove()
            assert sizes == [6, 12]
    paper = losses["paper"]["loss"].item()
    prior, mmd = losses["prior"], losses["mmd"]
    assert "prior_adversarial" not in losses["paper"] and "mmd" not in losses["paper"]
    assert prior["loss"].item() == pytest.approx(paper + 0.5 * prior["prior_adversarial"].item())
    assert mmd["loss"].item() == pytest.approx(paper + 2.0 * mmd["mmd"].item(), rel=1e-6)
    assert mmd["mmd"].item() > 0  # untrained tanh codes sit near 0, not over the box
