"""M2 and M1+M2: the enumerated bound, J^alpha / N and its weights, the labelled schedules, the
warm-up, the classifier's gradient shares, M1's active units, the label budget, learning from few
labels, bad input."""

import json
import math
import time

import pytest
import torch
import torch.nn.functional as F

import genae
import genae.models.m2 as m2_module
from genae.api import evaluate_run, fit
from genae.data.arrays import from_arrays
from genae.data.memory import TensorData, stratified_indices
from genae.data.sources import load_dataset
from genae.data.types import DataSpec, ImageArrays
from genae.errors import CheckpointError, ConfigError, DataError
from genae.models.base import Batch, Progress, TrainingSet, linear_warmup
from genae.models.m2 import M1M2, M2, M1M2Config, active_units, every_class_pairs
from genae.models.registry import build_model
from genae.models.vae import VAE, VAEConfig
from genae.nn.blocks import mlp, mlp_for_class_pairs
from genae.training.checkpoint import load_checkpoint

SMALL = {"hidden": [32], "classifier_hidden": [32], "latent_dim": 4}
SIZES = {"labelled_examples": 20, "unlabelled_examples": 80}  # N = 100


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("prior", ["standard", "learned"])
def test_unlabelled_bound_equals_a_loop_over_classes(monkeypatch, prior):
    """U(x) = sum_y q(y|x) L(x,y) - H(q(y|x)), with L written out per class by hand; under a
    learned p(z|y) the KL of z is against class y's own Gaussian."""
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 3, 3), num_classes=4)
    model = build_model("m2", {**SMALL, "prior": prior}, spec)
    prior_mean, prior_log_var = torch.zeros(4, 4), torch.zeros(4, 4)  # N(0, I) for every class
    if prior == "learned":  # it starts at N(0, I): move it, or the test could not tell
        prior_mean, prior_log_var = torch.randn(4, 4), torch.randn(4, 4) * 0.5
        with torch.no_grad():
            model.prior_net.head.mean.weight.copy_(prior_mean.T)
            model.prior_net.head.log_var.weight.copy_(prior_log_var.T)
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
        m, lv = prior_mean[k], prior_log_var[k]
        kl = 0.5 * (lv - log_var + (log_var.exp() + (mean - m) ** 2) / lv.exp() - 1).sum(1)
        expected += q[:, k] * (recon + kl + math.log(4))
    expected += (q * q.log()).sum(1)  # minus the entropy
    torch.testing.assert_close(batched, expected, rtol=1e-4, atol=1e-4)


def test_every_class_pass_equals_the_network_on_repeated_rows_with_one_hot_classes():
    """The encoder's first layer runs once per example; the result must be what the network
    gives on every (example, class) row with the class concatenated as a one-hot."""
    torch.manual_seed(0)
    net = mlp(6 + 3, (5, 4), activation="softplus")
    v = torch.randn(7, 6)
    every_class = torch.arange(3).repeat_interleave(7)
    naive = net(torch.cat([v.repeat(3, 1), F.one_hot(every_class, 3).float()], 1))
    rows, classes = every_class_pairs(7, 3, v.device)
    torch.testing.assert_close(mlp_for_class_pairs(net, v, rows, classes, 3), naive)


def test_class_pairs_pass_equals_the_network_on_each_pairs_row_and_one_hot_class():
    torch.manual_seed(0)
    net = mlp(6 + 3, (5, 4), activation="softplus")
    v = torch.randn(4, 6)
    rows, classes = torch.tensor([0, 0, 2, 3, 3, 1]), torch.tensor([2, 0, 1, 1, 2, 0])
    naive = net(torch.cat([v[rows], F.one_hot(classes, 3).float()], 1))
    torch.testing.assert_close(mlp_for_class_pairs(net, v, rows, classes, 3), naive)


def sum_and_sample(model, v, q, tail_mass):
    """The training step's sum and sample (`step_bounds`), its pieces composed as there: the
    estimate of sum_y q(y|v) L(v, y) per row and the number of pairs it evaluated."""
    pairs = m2_module.sampled_pairs(q, tail_mass)
    bounds = model.pair_bounds(v, pairs.rows, pairs.classes)
    return pairs.estimate(q, bounds, tail_mass), len(pairs.rows)


def sum_and_sample_setup(monkeypatch, sharpness: float):
    """A small M2 with deterministic class bounds (z = the posterior mean) and q(y|x) made
    `sharpness` times more peaked; the parameters that U reaches (not the baseline's)."""
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    torch.manual_seed(0)
    model = build_model("m2", {**SMALL, **SIZES}, DataSpec(shape=(1, 3, 3), num_classes=5))
    with torch.no_grad():
        model.classifier[-1].weight.mul_(sharpness)
    parameters = [p for name, p in model.named_parameters() if not name.startswith("baseline")]
    return model, parameters


def test_sum_and_sample_is_unbiased_in_value_and_in_every_gradient(monkeypatch):
    """Averaged over many draws, the estimate of sum_y q(y|x) L(x, y) and its gradient, for
    the classifier as for the encoder and decoder, are the exact sum's."""
    model, parameters = sum_and_sample_setup(monkeypatch, sharpness=3.0)
    v = torch.rand(3, 9)
    q = F.softmax(model.classifier(v), -1)
    assert ((q > 0.05) & (q < 0.95)).any(), "the test needs classes in the sampled tail"
    exact = (q * model.class_bounds(v)).sum(-1)
    exact_grads = torch.autograd.grad(exact.sum(), parameters)

    draws = 20_000
    repeated = v.repeat(draws, 1)
    q_repeated = F.softmax(model.classifier(repeated), -1)
    estimate, _ = sum_and_sample(model, repeated, q_repeated, 0.4)
    per_row = estimate.view(draws, 3)
    standard_error = per_row.std(0) / draws**0.5
    assert (standard_error > 0).all(), "the tail was never sampled"
    assert ((per_row.mean(0) - exact).abs() < 5 * standard_error + 1e-4).all()
    grads = torch.autograd.grad(estimate.sum() / draws, parameters)
    for exact_grad, grad in zip(exact_grads, grads, strict=True):
        assert (grad - exact_grad).norm() < 0.02 * exact_grad.norm()


def test_sum_and_sample_evaluates_one_class_per_example_once_q_is_confident(monkeypatch):
    model, _ = sum_and_sample_setup(monkeypatch, sharpness=200.0)
    evaluated = []
    original = model.bound_from_encoding

    def counting(hidden, *args):
        evaluated.append(len(hidden))
        return original(hidden, *args)

    monkeypatch.setattr(model, "bound_from_encoding", counting)
    v = torch.rand(50, 9)
    q = F.softmax(model.classifier(v), -1)
    assert (q.max(-1).values > 0.999).all()
    estimate, pairs = sum_and_sample(model, v, q, 0.05)
    assert evaluated[0] == pairs < 55  # 50 most probable classes, a tail drawn for few if any
    exact = (q * model.class_bounds(v)).sum(-1)
    torch.testing.assert_close(estimate, exact, rtol=1e-3, atol=1e-3)
    # a training step reports what it cost: about one class per example, K when exact
    unlabelled = Batch(x=v.view(50, 1, 3, 3))
    model.config.sampled_tail_mass = 0.05
    assert model.loss(unlabelled)["class_passes"] == pairs / 50
    model.config.sampled_tail_mass = 0.0
    assert model.loss(unlabelled)["class_passes"] == 5


def test_sampled_tail_mass_is_a_share_below_one_and_the_bound_subset_a_count():
    spec = DataSpec(shape=(1, 3, 3), num_classes=4)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="sampled_tail_mass"):
            build_model("m2", {**SMALL, "sampled_tail_mass": bad}, spec)
    with pytest.raises(ConfigError, match="labelled_bound_examples"):
        build_model("m2", {**SMALL, "labelled_bound_examples": -1}, spec)


def test_labelled_bound_on_a_random_subset_is_unbiased_and_the_ce_sees_every_label(
    monkeypatch,
):
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 3, 3), num_classes=4)
    model = build_model("m2", {**SMALL, **SIZES, "labelled_bound_examples": 3}, spec)
    x, y = torch.rand(8, 1, 3, 3), torch.arange(8) % 4
    full_mean = model.labelled_bound(x.flatten(1), y).mean()
    sizes = []  # the pairs each step's one encoder-decoder pass evaluates
    original = model.pair_bounds
    monkeypatch.setattr(
        model, "pair_bounds", lambda v, rows, *a: sizes.append(len(rows)) or original(v, rows, *a)
    )
    with torch.no_grad():
        draws = [model.loss(Batch(x=x, y=y)) for _ in range(3000)]
    assert set(sizes) == {3}
    subset_means = torch.stack([terms["labelled"] for terms in draws])
    spread = subset_means.std() / len(draws) ** 0.5
    assert spread > 0 and (subset_means.mean() - full_mean).abs() < 5 * spread
    torch.testing.assert_close(
        draws[0]["classification"], F.cross_entropy(model.classifier(x.flatten(1)), y)
    )


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


def bernoulli_bound(model, v, y, kl_weight):
    """L(v, y) written out: Bernoulli NLL of the decoded posterior mean (reparameterize is
    patched to the mean), the KL of z weighted by the warm-up, and log K."""
    k = model.spec.num_classes
    onehot = F.one_hot(y, k).float()
    mean, log_var = model.posterior(model.encoder(torch.cat([v, onehot], 1)))
    p = torch.sigmoid(model.decoder(torch.cat([mean, onehot], 1)))
    recon = -(v * p.log() + (1 - v) * (1 - p).log()).sum(1)
    kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(1)
    return recon + kl_weight * kl + math.log(k)


@pytest.mark.parametrize("z_kl_weight", [1.0, 2.5])
def test_loss_is_one_steps_estimate_of_j_alpha_over_n(monkeypatch, z_kl_weight):
    """(N_u/N) mean U + w (N_l/N) mean L + w alpha mean CE, with the warm-up weighting the KL
    of z and the entropy, written out by hand; z_kl_weight weighs the KL of z in both bounds,
    not the entropy of q(y|x). (y_information_weight 1: the paper's bound; the default's
    reweighting is checked against its own decomposition below.)"""
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 2, 2), num_classes=3)
    config = {**SMALL, **SIZES, "alpha": 0.3, "warmup_epochs": 2, "y_information_weight": 1.0}
    config["z_kl_weight"] = z_kl_weight
    config["sampled_tail_mass"] = 0.0  # the exact sum (the sampled one: its unbiasedness test)
    model = build_model("m2", config, spec)
    model.at_step(Progress(epoch=2, step=1, steps=4))  # warm-up (1 + 1/4) / 2
    beta = 0.625
    x, xl, yl = torch.rand(4, 1, 2, 2), torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
    terms = model.loss(Batch(x, None, xl, yl, labelled_weight=3.0))

    v, vl = x.flatten(1), xl.flatten(1)
    q = F.softmax(model.classifier(v), -1)
    z_kl = beta * z_kl_weight
    u = sum(q[:, k] * bernoulli_bound(model, v, torch.full((4,), k), z_kl) for k in range(3))
    u = u + beta * (q * q.log()).sum(1)  # minus the warmed-up entropy
    lab = bernoulli_bound(model, vl, yl, z_kl)
    ce = -F.log_softmax(model.classifier(vl), -1)[torch.arange(2), yl]
    expected = 0.8 * u.mean() + 3.0 * (0.2 * lab.mean() + 0.3 * ce.mean())
    torch.testing.assert_close(terms["loss"], expected, rtol=1e-5, atol=1e-5)
    # the reported terms are the plain means, whatever their weights
    torch.testing.assert_close(terms["unlabelled"], u.mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms["labelled"], lab.mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms["classification"], ce.mean(), rtol=1e-5, atol=1e-5)
    unlabelled_terms = {"unlabelled", "class_passes"}
    assert set(terms) == {*unlabelled_terms, "labelled", "classification", "loss"}  # no diag
    assert terms["class_passes"] == 3  # exact: every class

    # sampled: the labelled pairs ride in the same encoder-decoder pass as the unlabelled ones
    model.config.sampled_tail_mass = 0.05
    passes = []
    original = model.pair_bounds
    monkeypatch.setattr(
        model, "pair_bounds", lambda v, rows, *a: passes.append(len(rows)) or original(v, rows, *a)
    )
    sampled = model.loss(Batch(x, None, xl, yl, labelled_weight=3.0))
    assert passes == [4 * sampled["class_passes"] + 2]
    torch.testing.assert_close(sampled["labelled"], lab.mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sampled["classification"], ce.mean(), rtol=1e-5, atol=1e-5)
    model.config.sampled_tail_mass = 0.0
    monkeypatch.setattr(model, "pair_bounds", original)

    # no labelled minibatch in this step: U alone; fully supervised: L and the classifier
    assert set(model.loss(Batch(x)).keys()) == {*unlabelled_terms, "loss"}
    torch.testing.assert_close(model.loss(Batch(x))["loss"], 0.8 * u.mean(), rtol=1e-5, atol=1e-5)
    assert set(model.loss(Batch(x, torch.tensor([0, 1, 2, 0]))).keys()) == {
        "labelled",
        "classification",
        "loss",
    }


def test_a_learned_prior_draws_each_labels_codes_and_trains_with_m2():
    """Under p(z|y) = N(mean_y, std_y^2) a code is mean_y + T std_y eps: at temperature 0 the
    class means; its parameters are among those M2's phase optimises."""
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 3, 3), num_classes=4)
    model = build_model("m2", {**SMALL, "prior": "learned"}, spec)
    with torch.no_grad():
        model.prior_net.head.mean.bias.copy_(torch.arange(4.0))
        model.prior_net.head.mean.weight.copy_(torch.eye(4) * 10)
        model.prior_net.head.log_var.bias.fill_(math.log(4.0))
    labels = torch.tensor([0, 3, 3])
    eps = torch.ones(3, 4)
    codes = model.prior_codes(eps, labels, temperature=0.0)
    expected_means = torch.arange(4.0) + 10 * F.one_hot(labels, 4).float()
    torch.testing.assert_close(codes, expected_means)
    torch.testing.assert_close(model.prior_codes(eps, labels, 0.5), expected_means + 0.5 * 2.0)
    assert model.prior_kind == "learned p(z|y)"
    assert model.sample(3, labels).shape == (3, 1, 3, 3)
    with pytest.raises(ValueError, match="needs a label"):
        model.prior_codes(eps)
    (phase,) = [p for p in model.phases() if p.name == "loss"]
    assert {id(p) for p in model.prior_net.parameters()} <= {id(p) for p in phase.parameters}
    # the paper's N(0, I): the noise itself, no prior network
    standard = build_model("m2", SMALL, spec)
    assert standard.prior_net is None and standard.prior_kind == "standard N(0, I)"
    torch.testing.assert_close(standard.prior_codes(eps, labels, 0.5), eps * 0.5)
    with pytest.raises(ConfigError, match="prior: expected standard | learned"):
        build_model("m2", {**SMALL, "prior": "gaussian"}, spec)


def test_classifier_dropout_is_in_q_and_its_baseline_in_training_only():
    """Dropout on the input and after the hidden layers of q(y|x) and of the baseline (the same
    network): random in training, off in evaluation; without it the layers keep the indices of
    older checkpoints."""
    spec = DataSpec(shape=(1, 3, 3), num_classes=4)
    plain = build_model("m2", SMALL, spec).state_dict()
    assert {"classifier.0.weight", "classifier.2.weight", "baseline.2.weight"} <= set(plain)
    config = {**SMALL, "classifier_input_dropout": 0.3, "classifier_dropout": 0.5}
    torch.manual_seed(0)
    model = build_model("m2", config, spec)
    v = torch.rand(64, 9)
    for net in (model.classifier, model.baseline):
        dropouts = [m.p for m in net if isinstance(m, torch.nn.Dropout)]
        assert dropouts == [0.3, 0.5]
        model.train()
        assert not torch.equal(net(v), net(v))
        model.eval()
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        by_hand = linears[1](F.softplus(linears[0](v)))
        torch.testing.assert_close(net(v), by_hand)
    for name in ("classifier_input_dropout", "classifier_dropout"):
        with pytest.raises(ConfigError, match=f"{name}: expected a dropout probability"):
            build_model("m2", {**SMALL, name: 1.0}, spec)
    with pytest.raises(ConfigError, match="z_kl_weight: expected a weight > 0"):
        build_model("m2", {**SMALL, "z_kl_weight": 0.0}, spec)


def test_batch_marginal_kl_is_the_information_part_of_the_categories_kl():
    """mean_i KL(q_i || uniform) = mean_i KL(q_i || q_bar) + KL(q_bar || uniform), q_bar the
    batch mean of q_i, with every term written out as loops."""
    torch.manual_seed(1)
    logits = torch.randn(5, 3) * 2
    q = F.softmax(logits, -1).tolist()
    q_bar = [sum(row[k] for row in q) / 5 for k in range(3)]
    to_marginal = [sum(r[k] * math.log(r[k] / q_bar[k]) for k in range(3)) for r in q]
    torch.testing.assert_close(
        m2_module.kl_from_batch_marginal(logits), torch.tensor(to_marginal), rtol=1e-5, atol=1e-6
    )
    to_uniform = [sum(r[k] * math.log(3 * r[k]) for k in range(3)) for r in q]
    marginal_to_uniform = sum(p * math.log(3 * p) for p in q_bar)
    assert sum(to_uniform) / 5 == pytest.approx(sum(to_marginal) / 5 + marginal_to_uniform)
    # categories that do not depend on x carry no information
    assert m2_module.kl_from_batch_marginal(torch.tensor([[1.0, 2.0, 0.5]] * 4)).abs().max() < 1e-6


def test_y_information_weight_reweighs_only_the_information_in_the_unlabelled_loss(monkeypatch):
    """weight w: the unlabelled loss is the bound minus (1 - w) x warm-up x each row's
    KL(q(y|x) || batch q(y)) (w < 0 rewards the information); labelled terms and the evaluated
    bound are untouched."""
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    spec = DataSpec(shape=(1, 2, 2), num_classes=3)
    x = torch.rand(6, 1, 2, 2)
    losses, models = {}, {}
    for weight in (1.0, 0.25, -1.0):
        torch.manual_seed(0)
        config = {**SMALL, **SIZES, "warmup_epochs": 2, "y_information_weight": weight}
        models[weight] = build_model("m2", config, spec)
        models[weight].at_step(Progress(epoch=2, step=1, steps=4))  # warm-up 0.625
        losses[weight] = models[weight].loss(Batch(x))["loss"]
    q = F.softmax(models[1.0].classifier(x.flatten(1)), -1)
    information = (q * (q / q.mean(0)).log()).sum(1).mean()
    for weight in (0.25, -1.0):
        expected = losses[1.0] - 0.8 * 0.625 * (1 - weight) * information
        # the reweighting must move the loss by more than the tolerance, or any weight would pass
        tolerance = 1e-5 + 1e-5 * expected.abs()
        assert (losses[1.0] - expected).abs() > 2 * tolerance
        torch.testing.assert_close(losses[weight], expected, rtol=1e-5, atol=1e-5)
    labelled = Batch(x, torch.tensor([0, 1, 2, 0, 1, 2]))
    torch.testing.assert_close(
        models[0.25].loss(labelled)["loss"], models[1.0].loss(labelled)["loss"]
    )
    models[1.0].eval(), models[0.25].eval()
    torch.testing.assert_close(
        models[0.25].unlabelled_bound(x.flatten(1))[0],
        models[1.0].unlabelled_bound(x.flatten(1))[0],
    )
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="y_information_weight: expected a finite weight"):
            build_model("m2", {**SMALL, "y_information_weight": bad}, spec)


def test_warmup_is_linear_in_epochs_and_off_outside_training():
    at = Progress
    assert linear_warmup(at(1, 0, 10), 4) == 0.0
    assert linear_warmup(at(2, 0, 10), 4) == 0.25
    assert linear_warmup(at(3, 5, 10), 4) == pytest.approx(0.625)
    assert linear_warmup(at(5, 0, 10), 4) == 1.0 and linear_warmup(at(9, 3, 10), 4) == 1.0
    assert linear_warmup(at(1, 0, 10), 0) == 1.0  # no warm-up
    assert linear_warmup(None, 4) == 1.0  # outside the trainer


def test_m2_needs_its_data_sizes_and_takes_them_from_the_run():
    spec = DataSpec(shape=(1, 2, 2), num_classes=3)
    model = build_model("m2", SMALL, spec)
    with pytest.raises(ConfigError, match="labelled_examples and unlabelled_examples"):
        model.loss(Batch(torch.rand(2, 1, 2, 2)))
    images = ImageArrays(torch.zeros(30, 1, 2, 2, dtype=torch.uint8))
    adopted = M2.adopt_training_set(model.config, TrainingSet(images, 6, False, 0), {})
    assert (adopted.labelled_examples, adopted.unlabelled_examples) == (6, 24)
    assert M2.adopt_training_set(adopted, TrainingSet(images, 6, False, 0), {}) == adopted
    with pytest.raises(ConfigError, match="labelled_examples: the run's data have 9"):
        M2.adopt_training_set(adopted, TrainingSet(images, 9, False, 0), {})


def test_gradient_shares_are_the_classifiers_gradient_from_each_term(monkeypatch):
    monkeypatch.setattr(m2_module, "reparameterize", lambda mean, log_var: mean)
    torch.manual_seed(2)
    spec = DataSpec(shape=(1, 2, 2), num_classes=3)
    model = build_model("m2", {**SMALL, **SIZES, "alpha": 0.3}, spec)
    model.at_step(Progress(epoch=1, step=m2_module.DIAGNOSE_EVERY, steps=120))
    x, xl, yl = torch.rand(4, 1, 2, 2), torch.rand(2, 1, 2, 2), torch.tensor([1, 2])
    terms = model.loss(Batch(x, None, xl, yl, labelled_weight=5.0))

    params = list(model.classifier.parameters())

    def norm(term):
        return torch.sqrt(sum(g.pow(2).sum() for g in torch.autograd.grad(term, params)))

    # the training term: U with I(x; y) rewarded once (the default y_information_weight -1)
    bound, logits = model.unlabelled_bound(x.flatten(1))
    u_share = 0.8 * (bound - 2 * m2_module.kl_from_batch_marginal(logits)).mean()
    ce_share = 0.3 * F.cross_entropy(model.classifier(xl.flatten(1)), yl)  # without the 5
    torch.testing.assert_close(terms["classifier_grad_unlabelled"], norm(u_share))
    torch.testing.assert_close(terms["classifier_grad_classification"], norm(ce_share))
    terms["loss"].backward()  # the graph is still there for the step's own backward
    model.at_step(Progress(epoch=1, step=1, steps=120))
    assert "classifier_grad_unlabelled" not in model.loss(Batch(x, None, xl, yl))


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
    subset = stratified_indices(data.labels, 20, 10, 0)
    data.use_labelled_subset(subset, batch_size=8)
    # the epochs run over the unlabelled examples alone
    order = data.epoch_order(0, 1)
    assert sorted(order.tolist()) == sorted(set(range(len(data))) - set(subset.tolist()))
    index = torch.arange(16)
    first = data.training_batch(index, seed=0, epoch=1, step=5, steps=15)
    again = data.training_batch(index, seed=0, epoch=1, step=5, steps=15)
    assert first.y is None and first.x.shape[0] == 16
    assert first.y_labelled.shape == (8,) and first.labelled_weight == 1.0
    assert torch.equal(first.y_labelled, again.y_labelled)
    allowed = set(data.labelled_index.tolist())
    # every labelled example handed to the model is from the labelled subset, with its label
    for xl, yl in zip(first.x_labelled, first.y_labelled):
        match = [i for i in allowed if torch.equal(data.images[i].float() / 255, xl)]
        assert match and int(data.labels[match[0]]) == int(yl)


def test_spread_schedule_serves_each_label_once_an_epoch_weighted_as_every_step(digits):
    data = TensorData(digits.train)
    subset = stratified_indices(data.labels, 20, 10, 0)
    data.use_labelled_subset(subset, batch_size=8, schedule="spread")
    batches = data.epoch_order(0, 1).split(100)
    steps = len(batches)  # 1417 unlabelled examples: 15 steps
    served: list[int] = []
    weights: dict[int, float] = {}
    for step, index in enumerate(batches):
        batch = data.training_batch(index, 0, 1, step, steps)
        assert batch.y is None
        if batch.y_labelled is None:
            continue
        positions = data.spread_plan(0, 1, steps)[step]
        assert torch.equal(batch.y_labelled, data.labels[subset[positions]])
        assert torch.equal(batch.x_labelled, data.images[subset[positions]].float() / 255)
        served += positions.tolist()
        weights[step] = batch.labelled_weight
        for _ in positions:  # each example's weight in the step's mean of L
            assert batch.labelled_weight / len(positions) == pytest.approx(steps / 20)
    # ceil(20 / 8) = 3 labelled minibatches, evenly spread from the first step; each label once
    assert sorted(served) == list(range(20)) and sorted(weights) == [0, 5, 10]
    # every-step: weight 1 on each of the 15 steps, a given example in a step's mean of 8 with
    # probability 8/20 and weight 1/8: steps/20 an epoch, as above; the weights sum the same
    assert sum(weights.values()) == pytest.approx(steps)
    # a function of (seed, epoch, steps): the same in a fresh process, another in another epoch
    again = TensorData(digits.train)
    again.use_labelled_subset(subset, batch_size=8, schedule="spread")
    plan, same = data.spread_plan(0, 1, steps), again.spread_plan(0, 1, steps)
    assert all(torch.equal(plan[k], same[k]) for k in plan)
    assert not torch.equal(again.spread_plan(0, 2, steps)[0], plan[0])
    # fewer steps than minibatches: every step carries one, weight 1 each
    assert [len(c) for c in again.spread_plan(0, 1, 2).values()] == [10, 10]


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
    # M2 works on M1's active units (of its 6), recorded in config.json and reported
    units = model.config.m1_units
    assert 1 <= len(units) <= 6 and model.classifier[0].in_features == len(units)
    saved = json.loads((tmp_path / "m1m2" / "config.json").read_text())["model_config"]
    assert saved["m1_units"] == list(units) and saved["m1_activation"] == "softplus"
    assert run.history[-1]["val_m1_active_units"] == len(units)
    loaded = genae.load(tmp_path / "m1m2")
    assert loaded.config.m1_units == units and loaded.units.tolist() == list(units)
    assert evaluate_run(tmp_path / "m1m2", data=digits)["m1_active_units"] == len(units)
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
    # the baseline the categories must beat: k-means with K clusters on training pixels
    assert 0.1 <= last["val_kmeans_clustering_accuracy"] <= 1
    assert (tmp_path / "u" / "samples" / "epoch_002.png").exists()
    assert last["val_accuracy_gain_over_baseline"] == pytest.approx(
        last["val_accuracy"] - last["val_supervised_baseline_accuracy"], abs=1e-9
    )


def linear_m1(stds_wanted: list[float]) -> tuple[VAE, TrainingSet]:
    """An M1 whose posterior mean is linear in pixel 0 (no hidden layer), and images whose pixel
    0 is 0 or 1 in equal numbers (std 0.5): unit j's mean has std 0.5 * |weight j|."""
    spec = DataSpec(shape=(1, 2, 2))
    m1 = VAE(VAEConfig(hidden=(), latent_dim=len(stds_wanted)), spec).eval()
    with torch.no_grad():
        m1.posterior.mean.weight.zero_()
        m1.posterior.mean.weight[:, 0] = torch.tensor(stds_wanted) / 0.5
        m1.posterior.mean.bias.fill_(0.7)  # an offset changes no std
    images = torch.zeros(40, 1, 2, 2, dtype=torch.uint8)
    images[::2, 0, 0, 0] = 255
    images[:, 0, 1, 1] = torch.randint(0, 256, (40,), dtype=torch.uint8)  # weight 0: no effect
    return m1, TrainingSet(ImageArrays(images), 0, False, 0)


def test_active_units_are_those_whose_posterior_mean_varies(monkeypatch):
    m1, train = linear_m1([0.5, 0.05, 0.15, 0.095, -0.3])
    assert active_units(m1, train, 0.1) == (0, 2, 4)
    assert active_units(m1, train, 0.0) == (0, 1, 2, 3, 4)
    assert active_units(m1, train, 0.6) == (0,)  # none: the most varying one, so M2 has input
    # binarised runs measure on one fixed, seeded draw: the same units every time
    grey = TrainingSet(ImageArrays(train.data.images // 2 + 60), 0, True, 3)
    assert active_units(m1, grey, 0.1) == active_units(m1, grey, 0.1)
    # M2 sees the kept units alone; decoding puts the others at their prior mean, 0
    spec = DataSpec(shape=(1, 2, 2), num_classes=2)
    config = M1M2Config(**SMALL, m1_hidden=(), m1_latent_dim=5, m1_units=(0, 2, 4))
    model = M1M2(config, spec).eval()
    model.m1.load_state_dict(m1.state_dict())
    x = train.data.images[:6].float() / 255
    assert model.classifier[0].in_features == 3
    torch.testing.assert_close(model.features(x), m1.latent_codes(x)[:, [0, 2, 4]])
    decoded = model.features_to_images(torch.ones(1, 3))
    full = m1.likelihood.mean(m1.decode(torch.tensor([[1.0, 0, 1, 0, 1]]))).view(1, 1, 2, 2)
    torch.testing.assert_close(decoded, full)
    with pytest.raises(ConfigError, match="m1_units"):
        M1M2Config(m1_latent_dim=5, m1_units=(0, 5)).validate()


def test_spread_and_warmup_resume_mid_epoch_exactly_and_report_gradient_shares(
    digits, tmp_path, monkeypatch
):
    """A run cut after a mid-epoch checkpoint, resumed, ends as the uninterrupted one: weights,
    and the per-epoch train_ means of terms some steps do not report (the labelled ones under
    the spread schedule, the gradient shares)."""
    train = {
        "epochs": 3,
        "batch_size": 50,
        "max_train_examples": 400,  # 350 unlabelled: 7 steps an epoch
        "labels": 50,
        "labelled_batch_size": 20,  # 3 labelled minibatches an epoch: steps 0, 2 and 4
        "labelled_schedule": "spread",
        "checkpoint_every": 3,
        "progress": False,
        "snapshot_epochs": [],
    }
    config = {**SMALL, "warmup_epochs": 2}
    full = fit("m2", model_config=config, train_config=train, data=digits, run_dir=tmp_path / "a")

    calls = {"n": 0}
    original = TensorData.training_batch

    def crashing(self, *args):
        calls["n"] += 1
        if calls["n"] == 12:  # epoch 2, step 4: after the checkpoint at its step 2
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(TensorData, "training_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        fit("m2", model_config=config, train_config=train, data=digits, run_dir=tmp_path / "b")
    monkeypatch.setattr(TensorData, "training_batch", original)
    _, meta = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert (meta["state"]["epoch"], meta["state"]["step_in_epoch"]) == (2, 2)
    resumed = fit("m2", train_config={}, data=digits, run_dir=tmp_path / "b", resume=True)

    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key

    def untimed(history):
        return [{k: v for k, v in r.items() if not k.endswith("samples_per_s")} for r in history]

    assert untimed(resumed.history) == untimed(full.history)
    rows = [
        json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    ]
    for row in rows:  # measured at each epoch's first step, which carries labels too
        assert row["train_classifier_grad_unlabelled"] > 0
        assert row["train_classifier_grad_classification"] > 0
        assert row["train_classification"] > 0 and row["train_labelled"] > 0
    config_json = json.loads((tmp_path / "a" / "config.json").read_text())["model_config"]
    assert (config_json["labelled_examples"], config_json["unlabelled_examples"]) == (50, 350)


def test_speed_without_the_baselines_time_leaves_out_exactly_that_phase(digits, monkeypatch):
    """train_objective_samples_per_s times M2's own phase, as a peer that trains no yardstick
    is timed. With 200 ms added to each phase of every step (several times the tiny model's
    own compute), the whole step's time holds both and M2's own time only M2's: one-sided
    checks, so a loaded machine cannot break them."""
    train = {
        "epochs": 1,
        "batch_size": 50,
        "max_train_examples": 200,  # 150 after the 50 labels: 3 steps
        "labels": 50,
        "progress": False,
        "snapshot_epochs": [],
    }
    added = 0.2

    def slowed(method):
        def slow(self, batch):
            time.sleep(added)
            return method(self, batch)

        return slow

    monkeypatch.setattr(M2, "loss", slowed(M2.loss))
    monkeypatch.setattr(M2, "baseline_loss", slowed(M2.baseline_loss))
    [row] = fit("m2", model_config=SMALL, train_config=train, data=digits).history
    whole_seconds = 150 / row["train_samples_per_s"]
    own_seconds = 150 / row["train_objective_samples_per_s"]
    assert own_seconds >= 3 * added  # M2's phase is counted
    assert whole_seconds - own_seconds >= 3 * added  # the baseline's is not
    without = fit("m2", model_config={**SMALL, "baseline": False}, train_config=train, data=digits)
    assert "train_objective_samples_per_s" not in without.history[0]  # no yardstick to leave out


def test_a_compiled_step_trains_and_leaves_out_only_the_gradient_diagnostics(
    digits, compile_without_codegen
):
    """`--compile` on M2: the diagnostic gradient passes (an extra backward through the step's
    graph) cannot run inside a compiled step, whose backward owns its buffers; they are skipped
    there, and the step trains as the eager one does."""
    train = {
        "epochs": 2,
        "batch_size": 50,
        "max_train_examples": 250,  # 200 unlabelled: 4 steps an epoch, the first a diagnostic
        "labels": 50,
        "progress": False,
        "snapshot_epochs": [],
    }
    eager = fit("m2", model_config=SMALL, train_config=train, data=digits)
    compiled = fit("m2", model_config=SMALL, train_config={**train, "compile": True}, data=digits)
    assert len(compile_without_codegen) == 1  # the compiled run's training step
    assert "train_classifier_grad_unlabelled" in eager.history[-1]
    assert "train_classifier_grad_unlabelled" not in compiled.history[-1]
    for key, value in eager.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[key], value, rtol=1e-3, atol=1e-4)


def test_a_new_run_takes_the_models_training_defaults_under_what_its_caller_set(digits, tmp_path):
    """M2's recipe (binarised pixels, cosine lr) fills in what a caller leaves unset, so a bare
    `genae train m2` trains as the README's numbers were measured; a value the caller gives
    wins, a full TrainConfig is taken as it is, and a resumed run keeps what it saved."""
    from genae.config import TrainConfig

    train = {"epochs": 1, "max_train_examples": 150, "labels": 50, "progress": False}
    train["snapshot_epochs"] = []

    def saved(run_dir):
        return json.loads((run_dir / "config.json").read_text())["train"]

    fit("m2", model_config=SMALL, train_config=train, data=digits, run_dir=tmp_path / "bare")
    assert (saved(tmp_path / "bare")["binarize"], saved(tmp_path / "bare")["lr_schedule"]) == (
        True,
        "cosine",
    )
    given = {**train, "binarize": False, "lr_schedule": "constant"}
    fit("m2", model_config=SMALL, train_config=given, data=digits, run_dir=tmp_path / "given")
    assert (saved(tmp_path / "given")["binarize"], saved(tmp_path / "given")["lr_schedule"]) == (
        False,
        "constant",
    )
    full = TrainConfig(epochs=1, max_train_examples=150, labels=50, progress=False)
    fit("m2", model_config=SMALL, train_config=full, data=digits, run_dir=tmp_path / "full")
    assert saved(tmp_path / "full")["binarize"] is False
    assert (M1M2.training_defaults.get("binarize", False), M2.training_defaults["binarize"]) == (
        False,
        True,
    )
    resumed = fit(
        "m2", train_config={"epochs": 2}, data=digits, run_dir=tmp_path / "given", resume=True
    )
    assert len(resumed.history) == 2
    assert saved(tmp_path / "given")["binarize"] is False


def test_bare_m2_and_m1m2_train_as_long_as_the_experiments_that_report_their_numbers():
    """`genae train m2` / `m1m2` with no flags must be the recipe the README's numbers come
    from: the epochs of m2-vs-m1m2 and M1's epochs of both M1+M2 experiments."""
    from genae.experiments import load_experiment

    recipe = load_experiment("m2-vs-m1m2")
    assert M2.training_defaults["epochs"] == recipe.train["epochs"]
    assert M1M2.training_defaults["epochs"] == recipe.train["epochs"]
    for name in ("m2-vs-m1m2", "m2-vs-m3-unsupervised"):
        m1m2 = next(run for run in load_experiment(name).runs if run.model == "m1m2")
        assert m1m2.model_config["m1_epochs"] == M1M2Config().m1_epochs
