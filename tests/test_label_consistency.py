"""The label-consistency term of the conditional conv models (`label_consistency_weight`, the
classification loss of CVAE-GAN): an auxiliary classifier learns the classes from real images,
and the generator pays for decodes of p(z|y) samples that it does not read as y. Checked against
a hand computation of the objective, for where each term's gradient goes (the samples' error
must never train the classifier, or it would learn to accept whatever the decoder draws), and on
a small problem the term has to solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genae.api import fit
from genae.data.arrays import from_arrays
from genae.data.types import Batch, DataSpec
from genae.errors import ConfigError
from genae.models import build_model
from genae.models.dfcvae import FEATURE_ROLE
from genae.models.latent import GaussianLatentVAE

CLASSES, SIDE, WEIGHT = 4, 8, 3.0
SPEC = DataSpec(shape=(1, SIDE, SIDE), num_classes=CLASSES)
CONFIG = {
    "latent_dim": 2,
    "stage_channels": (8, 16),
    "conditional": True,
    "prior": "learned",
    "label_consistency_weight": WEIGHT,
}


def model_and_batch(name: str = "convvae", **extra):
    torch.manual_seed(0)
    model = build_model(name, {**CONFIG, **extra}, SPEC).train()
    x = torch.rand(6, *SPEC.shape)
    return model, Batch(x=x, y=torch.tensor([0, 1, 2, 3, 0, 1]))


def test_the_loss_is_the_elbo_plus_the_classifiers_two_cross_entropies() -> None:
    model, batch = model_and_batch()
    torch.manual_seed(1)
    terms = model.loss(batch)
    # By hand, from the same noise: the ELBO's draw first, then one prior code per label.
    torch.manual_seed(1)
    elbo = GaussianLatentVAE.loss(model, batch)["loss"]
    eps = torch.randn(len(batch.y), 2)
    samples = model.generate(model.prior_codes(eps, batch.y), batch.y)
    classifier = model.label_consistency.classifier
    real_ce = F.cross_entropy(classifier(batch.x), batch.y)
    samples_ce = F.cross_entropy(classifier(samples), batch.y)
    assert terms["label_ce_real"].item() == pytest.approx(real_ce.item(), rel=1e-5)
    assert terms["label_ce_samples"].item() == pytest.approx(samples_ce.item(), rel=1e-5)
    expected = elbo + real_ce + WEIGHT * samples_ce
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_samples_error_moves_the_generator_and_never_the_classifier() -> None:
    model, batch = model_and_batch()

    def gradients(term: str) -> dict[str, torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(1)
        model.loss(batch)[term].backward()
        return {
            name: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for name, p in model.named_parameters()
        }

    whole, real = gradients("loss"), gradients("label_ce_real")
    samples = gradients("label_ce_samples")
    for name in whole:
        if name.startswith("label_consistency."):
            # the classifier learns from the real images alone
            assert torch.allclose(whole[name], real[name], atol=1e-6), name
            assert samples[name].abs().max() == 0, name
    moved = {name.split(".")[0] for name, g in samples.items() if g.abs().max() > 0}
    # the decoder and the learned prior draw the samples; the encoder never sees them
    assert moved == {"decoder", "prior_net"}


def test_dfcvae_adds_the_same_terms() -> None:
    from genae.models import build_model as build

    model, batch = model_and_batch("dfcvae", features="classifier")
    features = build("classifier", {"block_channels": (4,), "feature_width": 8}, SPEC)
    model.use_pretrained({FEATURE_ROLE: features})
    terms = model.loss(batch)
    assert {"feature", "kl", "label_ce_real", "label_ce_samples"} <= set(terms)


def test_a_weight_of_zero_builds_no_classifier_and_leaves_the_elbo() -> None:
    model, batch = model_and_batch(label_consistency_weight=0.0)
    assert model.label_consistency is None
    torch.manual_seed(1)
    terms = model.loss(batch)
    torch.manual_seed(1)
    assert set(terms) == {"loss", "recon", "kl"}
    assert torch.equal(terms["loss"], GaussianLatentVAE.loss(model, batch)["loss"])


def test_the_defaults_give_a_conditional_model_of_classes_the_measured_recipe() -> None:
    from genae.config import with_saved_defaults
    from genae.models.convvae import ConvVAEConfig
    from genae.models.dfcvae import DFCVAEConfig

    small = {"latent_dim": 2, "stage_channels": (8, 16)}
    conditional = build_model("convvae", {**small, "conditional": True}, SPEC)
    assert conditional.prior_net is not None
    assert conditional.label_consistency is not None
    assert conditional.label_consistency_weight == ConvVAEConfig.DEFAULT_LABEL_CONSISTENCY_WEIGHT
    assert ConvVAEConfig.DEFAULT_LABEL_CONSISTENCY_WEIGHT > 0
    # unconditional: N(0, I) and no classifier
    plain = build_model("convvae", small, SPEC)
    assert plain.prior_net is None and plain.label_consistency is None
    # attribute conditions: the learned prior, and no class to judge
    attributes = DataSpec(shape=(1, SIDE, SIDE), attribute_names=("a", "b"))
    on_attributes = build_model("convvae", {**small, "conditional": True}, attributes)
    assert on_attributes.prior_net is not None and on_attributes.label_consistency is None
    # not measured beside DFC's feature loss: off unless asked for
    assert DFCVAEConfig.DEFAULT_LABEL_CONSISTENCY_WEIGHT == 0
    # a run saved before these defaults is read as the model it was
    saved = with_saved_defaults(ConvVAEConfig, {**small, "conditional": True})
    assert saved["prior"] == "standard" and saved["label_consistency_weight"] == 0.0


@pytest.mark.parametrize(
    ("change", "spec", "needle"),
    [
        ({"conditional": False, "prior": "standard"}, SPEC, "unconditional"),
        (
            {"conditional": False, "label_consistency_weight": None, "prior": "learned"},
            SPEC,
            "conditional = true",
        ),
        ({"prior": "class"}, SPEC, "standard | learned | auto"),
        ({"label_consistency_weight": -1.0}, SPEC, "a number >= 0"),
        ({}, DataSpec(shape=(1, SIDE, SIDE), attribute_names=("a", "b")), "class labels"),
    ],
)
def test_bad_settings_are_refused(change, spec, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_model("convvae", {**CONFIG, **change}, spec)


def test_a_run_records_the_defaults_it_was_built_with(tmp_path) -> None:
    """config.json holds the concrete prior and weight, not `auto`/none: a later change of
    default must not change a saved run's model."""
    import json

    from genae.models.convvae import ConvVAEConfig

    rng = np.random.default_rng(0)
    labels = np.arange(40) % CLASSES
    data = from_arrays(rng.uniform(size=(40, SIDE, SIDE)), labels)
    small = {"latent_dim": 2, "stage_channels": (8, 16), "conditional": True}
    train = {"epochs": 1, "batch_size": 20, "snapshot_epochs": (), "progress": False}
    fit("convvae", model_config=small, train_config=train, data=data, run_dir=tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["model_config"]
    assert saved["prior"] == "learned"
    assert saved["label_consistency_weight"] == ConvVAEConfig.DEFAULT_LABEL_CONSISTENCY_WEIGHT


def test_training_teaches_the_classifier_on_real_images_and_the_decoder_the_class(
    tmp_path,
) -> None:
    """Through `fit`: the classifier's parameters reach the optimiser and learn the classes of
    real images (class k is a bright bar on row 2k), and samples drawn for each label show its
    row."""
    rng = np.random.default_rng(0)
    labels = np.arange(400) % CLASSES
    images = rng.uniform(0.0, 0.1, size=(len(labels), SIDE, SIDE))
    images[np.arange(len(labels)), 2 * labels, :] = 1.0
    data = from_arrays(images, labels, class_names=[f"bar{k}" for k in range(CLASSES)])
    train = {"epochs": 6, "lr": 0.003, "batch_size": 20, "seed": 0, "snapshot_epochs": ()}
    result = fit(
        "convvae",
        model_config={**CONFIG, "latent_dim": 4},
        train_config={**train, "progress": False},
        data=data,
        run_dir=tmp_path / "run",
    )
    model = result.model.eval()
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1)
    judged = model.label_consistency.predict(x)
    assert (judged == torch.as_tensor(labels)).float().mean() >= 0.95
    assert result.history[-1]["train_label_ce_real"] < 0.1
    wanted = torch.arange(CLASSES).repeat_interleave(50)
    drawn = model.sample(len(wanted), wanted, torch.Generator().manual_seed(0))
    rows = drawn.mean(dim=(1, 3)).argmax(dim=1)
    assert (rows == 2 * wanted).float().mean() >= 0.95


# --- the CAAE: images re-generated under another class --------------------------------------

CAAE_CONFIG = {
    "latent_dim": 4,
    "encoder_channels": (8, 16),
    "img_disc_channels": (8,),
    "relabel_consistency_weight": WEIGHT,
}


def caae_and_batch():
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 16, 16), num_classes=CLASSES)
    model = build_model("caae", CAAE_CONFIG, spec).train()
    return model, Batch(x=torch.rand(6, 1, 16, 16), y=torch.tensor([0, 1, 2, 3, 0, 1]))


def test_the_caae_pays_the_classifiers_error_on_images_relabelled_to_another_class() -> None:
    model, batch = caae_and_batch()
    torch.manual_seed(1)
    terms = model.autoencoder_loss(batch)
    # By hand: the same noise gives the MMD's prior draw, then one other class per image.
    torch.manual_seed(1)
    z = model.encode(batch.x)
    model.prior.sample(len(z), device=z.device)
    other = (batch.y + torch.randint(1, CLASSES, batch.y.shape)) % CLASSES
    assert (other != batch.y).all()
    relabelled = model.decode(z, model.condition_vector(other))
    expected = F.cross_entropy(model.label_consistency.classifier(relabelled), other)
    assert terms["relabel_ce"].item() == pytest.approx(expected.item(), rel=1e-5)
    without = {k: v for k, v in terms.items() if k not in ("loss", "relabel_ce")}
    assert terms["loss"].item() == pytest.approx(
        (
            without["l1"]
            + 1e-3 * without["tv"]
            + 1e-4 * (without["z_adversarial"] + without["img_adversarial"])
            + 0.1 * without["label_confusion"]
            + 10.0 * without["mmd"]
            + WEIGHT * terms["relabel_ce"]
        ).item(),
        rel=1e-5,
    )
    # f is not the autoencoder phase's to move; it has a phase of its own, on real images
    model.zero_grad()
    terms["relabel_ce"].backward()
    assert all(p.grad is None for p in model.label_consistency.parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.generator.parameters())
    phases = {phase.name: phase for phase in model.phases()}
    owned = {id(p) for p in phases["label_classifier"].parameters}
    assert owned == {id(p) for p in model.label_consistency.parameters()}
    real = phases["label_classifier"].loss(batch)["loss"]
    assert real.item() == pytest.approx(
        F.cross_entropy(model.label_consistency.classifier(batch.x), batch.y).item(), rel=1e-5
    )


def test_the_caae_without_the_term_is_the_paper_model() -> None:
    torch.manual_seed(0)
    config = {**CAAE_CONFIG, "relabel_consistency_weight": 0.0}
    model = build_model("caae", config, DataSpec(shape=(1, 16, 16), num_classes=CLASSES))
    assert model.label_consistency is None
    assert "label_classifier" not in {phase.name for phase in model.phases()}
    with pytest.raises(ConfigError, match="class labels"):
        build_model("caae", CAAE_CONFIG, DataSpec(shape=(1, 16, 16), attribute_names=("a",)))


def test_the_caae_defaults_to_the_term_for_classes_and_not_for_attributes() -> None:
    from genae.config import with_saved_defaults
    from genae.models.caae import CAAEConfig

    small = {k: v for k, v in CAAE_CONFIG.items() if k != "relabel_consistency_weight"}
    classes = build_model("caae", small, DataSpec(shape=(1, 16, 16), num_classes=CLASSES))
    assert classes.label_consistency is not None
    assert classes.relabel_consistency_weight == CAAEConfig.DEFAULT_RELABEL_CONSISTENCY_WEIGHT > 0
    attributes = DataSpec(shape=(1, 16, 16), attribute_names=("a",))
    assert build_model("caae", small, attributes).label_consistency is None
    assert with_saved_defaults(CAAEConfig, small)["relabel_consistency_weight"] == 0.0
    with pytest.raises(ConfigError, match="relabel_consistency_weight"):
        build_model("caae", {**small, "relabel_consistency_weight": -1.0}, attributes)


def test_the_help_lines_name_the_defaults_the_models_use() -> None:
    """The --help text quotes each default weight; it must be the one the code applies."""
    from genae.config import field_docs
    from genae.models.caae import CAAEConfig
    from genae.models.convvae import ConvVAEConfig

    convvae = field_docs(ConvVAEConfig)["label_consistency_weight"]
    caae = field_docs(CAAEConfig)["relabel_consistency_weight"]
    assert f"none: {ConvVAEConfig.DEFAULT_LABEL_CONSISTENCY_WEIGHT:g} " in convvae
    assert f"none: {CAAEConfig.DEFAULT_RELABEL_CONSISTENCY_WEIGHT:g} " in caae
