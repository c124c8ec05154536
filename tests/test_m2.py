"""M2 and M1+M2: the enumerated bound, the label budget, learning from few labels, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

import genae.models.m2 as m2_module
from genae.api import fit
from genae.data.arrays import from_arrays
from genae.data.memory import TensorData, stratified_indices
from genae.data.sources import load_dataset
from genae.data.types import DataSpec
from genae.errors import CheckpointError, ConfigError, DataError
from genae.models.base import Batch
from genae.models.registry import build_model

SMALL = {"hidden": [32], "classifier_hidden": [32], "latent_dim": 4}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_unlabelled_bound_equals_a_loop_over_classes(monkeypatch):
    """U(x) = sum_y q(y|x) L(x,y) - H(q(y|x)), with L written out per class by hand."""
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 3, 3), num_classes=4)
    model = build_model("m2", SMALL, spec)
    x = torch.rand(5, 1, 3, 3)
    v = x.flatten(1)
    batched, _ = model.unlabelled_bound(v)

    q = F.softmax(model.classifier(v), -1)
    expected = torch.zeros(5)
    for k in range(4):
        y = F.one_hot(torch.full((5,), k), 4).float()
        mean, log_var = model.posterior(model.encoder(torch.cat([v, y], 1)))
        logits = model.decoder(torch.cat([mean, y], 1))
        p = torch.sigmoid(logits)
        recon = -(v * p.log() + (1 - v) * (1 - p).log()).sum(1)
        kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(1)
        expected += q[:, k] * (recon + kl + math.log(4))
    expected += (q * q.log()).sum(1)  # minus the entropy
    torch.testing.assert_close(batched, expected, rtol=1e-4, atol=1e-4)


def test_generative_accuracy_is_the_argmin_of_the_class_bounds(monkeypatch):
    """evaluate() scores argmin_y L(x, y), the generative model's own classification; built
    here from one labelled_bound call per class, so a transposed (K, B) table is caught."""
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    torch.manual_seed(1)
    spec = DataSpec(shape=(1, 3, 3), num_classes=4)
    model = build_model("m2", SMALL, spec)
    x = torch.rand(7, 1, 3, 3)
    per_class = torch.stack(
        [model.labelled_bound(x.flatten(1), torch.full((7,), k)) for k in range(4)], 1
    )
    generative = per_class.argmin(1)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    metrics = model.evaluate(Batch(x, y))
    torch.testing.assert_close(metrics["generative_accuracy"], (generative == y).float())
    # the labels that make it exactly right and exactly wrong
    assert model.evaluate(Batch(x, generative))["generative_accuracy"].mean() == 1.0
    assert model.evaluate(Batch(x, (generative + 1) % 4))["generative_accuracy"].mean() == 0.0


def test_loss_mixes_labelled_and_unlabelled_terms(monkeypatch):
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    spec = DataSpec(shape=(1, 2, 2), num_classes=3)
    model = build_model("m2", {**SMALL, "alpha": 2.0}, spec)
    x, xl, yl = torch.rand(4, 1, 2, 2), torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
    terms = model.loss(Batch(x, None, xl, yl))
    u, _ = model.unlabelled_bound(x.flatten(1))
    lab = model.labelled_bound(xl.flatten(1), yl)
    ce = F.cross_entropy(model.classifier(xl.flatten(1)), yl)
    torch.testing.assert_close(terms["loss"], u.mean() + lab.mean() + 2.0 * ce)
    # fully unsupervised: only U; fully supervised: only L and the classifier
    assert set(model.loss(Batch(x)).keys()) == {"unlabelled", "loss"}
    assert set(model.loss(Batch(x, torch.tensor([0, 1, 2, 0]))).keys()) == {
        "labelled",
        "classification",
        "loss",
    }


def test_stratified_subset_is_balanced_and_reproducible(digits):
    labels = digits.train.labels
    a = stratified_indices(labels, 100, 10, seed=3)
    b = stratified_indices(labels, 100, 10, seed=3)
    c = stratified_indices(labels, 100, 10, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(a.unique()) == 100
    assert torch.bincount(labels[a], minlength=10).tolist() == [10] * 10


def test_labelled_minibatch_rides_along_and_is_reproducible(digits):
    data = TensorData(digits.train)
    data.use_labelled_subset(stratified_indices(data.labels, 20, 10, 0), batch_size=8)
    index = torch.arange(16)
    first = data.training_batch(index, seed=0, epoch=1, step=5)
    again = data.training_batch(index, seed=0, epoch=1, step=5)
    assert first.y is None and first.x.shape[0] == 16
    assert first.y_labelled.shape == (8,)
    assert torch.equal(first.y_labelled, again.y_labelled)
    allowed = set(data.labelled_index.tolist())
    # every labelled example handed to the model is from the labelled subset, with its label
    for xl, yl in zip(first.x_labelled, first.y_labelled):
        match = [i for i in allowed if torch.equal(data.images[i].float() / 255, xl)]
        assert match and int(data.labels[match[0]]) == int(yl)


def test_labels_propagate_on_a_tiny_problem():
    """Two well separated clusters, 2 labels: M2 labels the rest correctly."""
    g = torch.Generator().manual_seed(0)
    n = 400
    y = torch.arange(n) % 2
    images = torch.zeros(n, 1, 4, 4)
    images[y == 0, :, :2, :] = 1.0  # class 0: top half lit
    images[y == 1, :, 2:, :] = 1.0  # class 1: bottom half lit
    images = (images * 0.8 + 0.2 * torch.rand(n, 1, 4, 4, generator=g)).clamp(0, 1)
    data = from_arrays(images, y, class_names=("top", "bottom"), test_fraction=0.25)
    run = fit(
        "m2",
        model_config={**SMALL, "latent_dim": 2},
        train_config={
            "labels": "2",
            "labelled_batch_size": 2,
            "epochs": 30,
            "batch_size": 50,
            "lr": 3e-3,
            "progress": False,
            "snapshot_epochs": [],
        },
        data=data,
    )
    assert run.history[-1]["val_accuracy"] >= 0.95


def test_bad_label_budgets_are_clear_errors(digits):
    quick = {"epochs": 1, "progress": False, "snapshot_epochs": []}
    with pytest.raises(DataError, match="not divisible by the 10 classes"):
        fit("m2", model_config=SMALL, train_config={**quick, "labels": "15"}, data=digits)
    with pytest.raises(ConfigError, match="labels: 5000 labelled examples asked for"):
        fit("m2", model_config=SMALL, train_config={**quick, "labels": "5000"}, data=digits)
    with pytest.raises(ConfigError, match="'all' or a number"):
        fit("m2", model_config=SMALL, train_config={**quick, "labels": "many"}, data=digits)
    with pytest.raises(ConfigError, match="not semi-supervised"):
        fit("vae", train_config={**quick, "labels": "100"}, data=digits)
    with pytest.raises(ConfigError, match="hidden: expected 1 or more positive layer widths"):
        build_model("m2", {**SMALL, "hidden": []}, digits.spec)  # the posterior head needs one
    unlabelled = from_arrays(torch.rand(50, 1, 4, 4))
    with pytest.raises(ConfigError, match="class labels"):
        fit("m2", model_config=SMALL, train_config=quick, data=unlabelled)


def test_m1m2_trains_m1_then_m2_and_generates_images(digits, tmp_path):
    quick = {"epochs": 1, "progress": False, "snapshot_epochs": [1], "labels": "50"}
    config = {**SMALL, "m1_epochs": 1, "m1_hidden": [32], "m1_latent_dim": 6}
    run = fit(
        "m1m2", model_config=config, train_config=quick, data=digits, run_dir=tmp_path / "m1m2"
    )
    assert (tmp_path / "m1m2" / "m1" / "model.safetensors").exists()
    assert (tmp_path / "m1m2" / "samples" / "epoch_001.png").exists()
    model = run.model
    assert model.classifier[0].in_features == 6  # M2 works on M1's 6-d codes
    images = model.sample(4, torch.tensor([0, 1, 2, 3]))
    assert images.shape == (4, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert 0 <= run.history[-1]["val_accuracy"] <= 1
    # M1 stays frozen: its weights equal the M1 run's
    from safetensors.torch import load_file

    m1 = load_file(str(tmp_path / "m1m2" / "m1" / "model.safetensors"))
    for key, value in m1.items():
        assert torch.equal(model.m1.state_dict()[key], value)


def test_m1m2_refuses_an_m1_of_the_wrong_kind(digits, tmp_path):
    quick = {"epochs": 1, "progress": False, "snapshot_epochs": []}
    fit(
        "cvae",
        model_config={"hidden": [16], "latent_dim": 2},
        train_config=quick,
        data=digits,
        run_dir=tmp_path / "notm1",
    )
    with pytest.raises(CheckpointError, match="must be a 'vae' run"):
        fit(
            "m1m2",
            model_config={**SMALL, "m1": str(tmp_path / "notm1")},
            train_config={**quick, "labels": "50"},
            data=digits,
        )


def test_unsupervised_m2_reports_clustering_accuracy(digits, tmp_path):
    """--labels 0: no label is used; the categories are scored by Hungarian matching."""
    quick = {"epochs": 2, "progress": False, "snapshot_epochs": [2], "labels": 0}
    run = fit("m2", model_config=SMALL, train_config=quick, data=digits, run_dir=tmp_path / "u")
    last = run.history[-1]
    assert 0.1 <= last["val_clustering_accuracy"] <= 1
    # the best mapping does at least as well as the identity
    assert last["val_clustering_accuracy"] >= last["val_accuracy"] - 1e-9
    assert "train_classification" not in last  # no labelled term was ever computed
    assert (tmp_path / "u" / "samples" / "epoch_002.png").exists()
    assert last["val_accuracy_gain_over_baseline"] == pytest.approx(
        last["val_accuracy"] - last["val_supervised_baseline_accuracy"], abs=1e-9
    )
