"""Kingma, Rezende, Mohamed & Welling (2014), "Semi-supervised Learning with Deep Generative
Models": the M2 model and M1+M2.

Generative model  p(y) = Cat(1/K),  p(z) = N(0, I),  p(x | y, z)  (the decoder).
Inference         q(y | x)  (a classifier)  and  q(z | x, y).

Labelled (x, y):   L(x, y) = E_q(z|x,y)[-log p(x|y,z)] + KL(q(z|x,y) || p(z)) - log p(y)
Unlabelled x:      U(x)    = sum_y q(y|x) L(x, y) - H(q(y|x))
Objective:         mean U over the unlabelled batch + mean L over the labelled batch
                   + alpha * mean [-log q(y|x)] over the labelled batch.

The sum over y is exact: every unlabelled example is paired with all K classes in one batched
pass (B*K rows), not a Python loop. U(x) is an upper bound on -log p(x), reported as neg_elbo.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from genae.config import require
from genae.data.types import DataSpec
from genae.errors import CheckpointError, ConfigError
from genae.models.base import (
    Batch,
    GenerativeModel,
    LatentCodes,
    LossTerms,
    Phase,
    Pretrained,
    parameters_of,
)
from genae.models.registry import register
from genae.models.vae import VAE, VAEConfig
from genae.nn.blocks import (
    GaussianHead,
    mlp,
    reparameterize,
    require_mlp_fields,
    standard_normal,
)
from genae.nn.divergences import kl_normal_standard
from genae.nn.likelihoods import Bernoulli, LearnedGaussian, Likelihood
from genae.scores import clustering_accuracy


@dataclass
class M2Config:
    # The paper used one layer of 500 on MNIST. On Fashion-MNIST (100 labels, binarised, 30
    # epochs, seed 0) two layers took M2's gain over its baseline from +3.0 to +7.4 points (seeds
    # 1-3: +1.4 to +2.5): the unlabelled data teach q(y|x) only what the decoder can tell apart.
    hidden: tuple[int, ...] = (500, 500)
    """Widths of the encoder's hidden layers; the decoder mirrors them (comma-separated)."""
    classifier_hidden: tuple[int, ...] = (500,)
    """Widths of the hidden layers of the classifier q(y|x) (comma-separated)."""
    latent_dim: int = 50
    """Dimension of the Gaussian latent z."""
    activation: str = "softplus"
    """relu | leaky_relu | tanh | elu | softplus (the paper's choice)."""
    # The paper's alpha = 0.1 * N multiplies an average over labelled data in an objective summed
    # over all N examples; with per-batch means and a labelled minibatch in every step, a
    # per-example weight of this order plays the same role.
    alpha: float = 50.0
    """Weight of the labelled classification loss."""
    baseline: bool = True
    """Also train the same classifier on the labels alone, as a yardstick."""

    def validate(self) -> None:
        require(self.latent_dim >= 1, "latent_dim", "an integer >= 1", self.latent_dim)
        # the posterior head reads the last hidden layer, so there must be one
        require_mlp_fields(self.activation, min_layers=1, hidden=self.hidden)
        require_mlp_fields(self.activation, classifier_hidden=self.classifier_hidden)
        require(self.alpha >= 0, "alpha", "a weight >= 0", self.alpha)


def entropy_of_logits(logits: torch.Tensor) -> torch.Tensor:
    log_q = F.log_softmax(logits, dim=-1)
    return -(log_q.exp() * log_q).sum(-1)


class SemiSupervisedVAE(GenerativeModel, LatentCodes):
    """M2 over a flat feature vector; `features(x)` says what the vector is (pixels for M2,
    an M1 latent code for M1+M2) and `likelihood` how it is modelled."""

    semi_supervised = True
    console_metrics = ("train_loss", "val_accuracy", "val_neg_elbo")
    likelihood: Likelihood

    def __init__(self, config: M2Config, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if spec.num_classes < 2:
            raise ConfigError(
                f"model '{self.name}' needs a dataset with class labels (2 or more classes)"
            )

    def build_m2(self, config: M2Config, feature_dim: int, param_dim: int) -> None:
        k = self.spec.num_classes
        act = config.activation
        self.classifier = mlp(feature_dim, config.classifier_hidden, k, activation=act)
        self.encoder = mlp(feature_dim + k, config.hidden, activation=act)
        self.posterior = GaussianHead(config.hidden[-1], config.latent_dim)
        self.decoder = mlp(config.latent_dim + k, config.hidden[::-1], param_dim, activation=act)
        # Same network, trained on the labelled examples alone: what the unlabelled data bought.
        self.baseline = (
            mlp(feature_dim, config.classifier_hidden, k, activation=act)
            if config.baseline
            else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    # --- the objective ------------------------------------------------------------------------
    def labelled_bound(self, v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L(v, y) per row: -ELBO of the pair, including -log p(y) = log K."""
        y_onehot = F.one_hot(y, self.spec.num_classes).float()
        mean, log_var = self.posterior(self.encoder(torch.cat([v, y_onehot], 1)))
        z = reparameterize(mean, log_var)
        params = self.decoder(torch.cat([z, y_onehot], 1))
        recon = -self.likelihood.log_prob(params, v)
        return recon + kl_normal_standard(mean, log_var) + math.log(self.spec.num_classes)

    def class_bounds(self, v: torch.Tensor) -> torch.Tensor:
        """L(v, y) for every class y, shape (B, K), in one batched pass of B*K rows."""
        k, b = self.spec.num_classes, v.shape[0]
        every_class = torch.arange(k, device=v.device).repeat_interleave(b)  # (K*B,)
        return self.labelled_bound(v.repeat(k, 1), every_class).view(k, b).T

    def unlabelled_bound(
        self, v: torch.Tensor, bounds: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """U(v) per row, exact over the K classes; also the classifier logits. `bounds`: the
        class bounds of `v` when the caller already has them."""
        logits = self.classifier(v)
        if bounds is None:
            bounds = self.class_bounds(v)
        q_y = F.softmax(logits, dim=-1)
        return (q_y * bounds).sum(-1) - entropy_of_logits(logits), logits

    def loss(self, batch: Batch) -> LossTerms:
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=batch.x.device)
        if batch.y is None:
            unlabelled, _ = self.unlabelled_bound(self.features(batch.x))
            terms["unlabelled"] = unlabelled.mean()
            total = total + terms["unlabelled"]
        labelled = batch.labelled_part()
        if labelled is not None:
            v, y = self.features(labelled[0]), labelled[1]
            terms["labelled"] = self.labelled_bound(v, y).mean()
            terms["classification"] = F.cross_entropy(self.classifier(v), y)
            total = total + terms["labelled"] + self.config.alpha * terms["classification"]
        terms["loss"] = total
        return terms

    def baseline_loss(self, batch: Batch) -> LossTerms:
        labelled = batch.labelled_part()
        if labelled is None:  # no labels at all: nothing for the baseline to learn
            zero = self.baseline[0].weight.sum() * 0.0
            return {"loss": zero}
        ce = F.cross_entropy(self.baseline(self.features(labelled[0]).detach()), labelled[1])
        return {"loss": ce}

    def phases(self) -> list[Phase]:
        m2 = parameters_of(self.classifier, self.encoder, self.posterior, self.decoder)
        phases = [Phase("loss", self.loss, m2)]
        if self.baseline is not None:
            phases.append(Phase("baseline", self.baseline_loss, list(self.baseline.parameters())))
        return phases

    # --- model(x), evaluation and generation -----------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """`model(x)`: reconstructions (B, C, H, W) in [0, 1] of images x, decoded from the
        posterior mean of q(z | x, y) and y, differentiably; without labels y is q(y|x)'s most
        probable class. For the class itself use `classify(x)` (logits of q(y|x))."""
        v = self.features(x)
        if y is None:
            y = self.classifier(v).argmax(-1)
        y_onehot = F.one_hot(y, self.spec.num_classes).float()
        mean = self.posterior(self.encoder(torch.cat([v, y_onehot], 1)))[0]
        return self.features_to_images(self.decode_features(mean, y))

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of q(y|x)."""
        return self.classifier(self.features(x))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @torch.no_grad()
    def latent_codes(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior means of q(z | x, y); without labels y is q(y|x)'s most probable class."""
        v = self.features(x)
        if y is None:
            y = self.classifier(v).argmax(-1)
        y_onehot = F.one_hot(y, self.spec.num_classes).float()
        return self.posterior(self.encoder(torch.cat([v, y_onehot], 1)))[0]

    def evaluate(self, batch: Batch) -> dict[str, torch.Tensor]:
        v = self.features(batch.x)
        bounds = self.class_bounds(v)
        bound, logits = self.unlabelled_bound(v, bounds)
        predicted = logits.argmax(-1)
        metrics = {"neg_elbo": bound}
        if batch.y is not None:
            metrics["accuracy"] = (predicted == batch.y).float()
            # The generative model's own classification, argmax_y p(x, y) ~ argmin_y L(x, y).
            # Unlabelled data train q(y|x) towards it, so when the two agree the unlabelled
            # data have nothing left to teach the classifier.
            metrics["generative_accuracy"] = (bounds.argmin(-1) == batch.y).float()
            if self.baseline is not None:
                baseline_correct = (self.baseline(v).argmax(-1) == batch.y).float()
                metrics["supervised_baseline_accuracy"] = baseline_correct
                # its mean is the accuracy difference: what the unlabelled data bought
                metrics["accuracy_gain_over_baseline"] = metrics["accuracy"] - baseline_correct
        return metrics

    def dataset_metrics(self, data, batch_size: int, train=None) -> dict[str, float]:
        """Clustering accuracy of q(y|x) (best one-to-one map of the K categories to the
        classes): the measure that still means something with 0 labels, where category k
        need not be class k."""
        if data.labels is None or data.labels.dim() != 1:
            return {}
        predicted = torch.cat([self.classify(b.x).argmax(-1) for b in data.batches(batch_size)])
        return {"clustering_accuracy": clustering_accuracy(predicted, data.labels)}

    @property
    def is_conditional(self) -> bool:
        return True

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal((n, self.config.latent_dim), generator, self.device)

    def decode_features(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y_onehot = F.one_hot(y, self.spec.num_classes).float()
        return self.likelihood.mean(self.decoder(torch.cat([z, y_onehot], 1)))

    @torch.no_grad()
    def generate(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is None:  # draw y from its prior
            condition = torch.randint(self.spec.num_classes, (len(z),), device=z.device)
        return self.features_to_images(self.decode_features(z, condition))

    def features_to_images(self, v: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *self.spec.shape)


@register
class M2(SemiSupervisedVAE):
    """Semi-supervised VAE M2 (Kingma et al. 2014): the class is a latent variable."""

    name = "m2"
    config_class = M2Config

    def __init__(self, config: M2Config, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.likelihood = Bernoulli()
        self.build_m2(config, spec.numel, spec.numel)


@dataclass
class M1M2Config(M2Config):
    m1: str = ""
    """Run directory of a trained M1 ('vae'); empty: train one first, into RUN_DIR/m1."""
    m1_epochs: int = 10
    """Epochs of training M1 when m1 is empty."""
    m1_hidden: tuple[int, ...] = (600, 600)
    """M1's hidden layer widths when it is trained here (else read from its run)."""
    m1_latent_dim: int = 50
    """M1's latent dimension when it is trained here (else read from its run)."""
    m1_sample: bool = True
    """M2 sees samples of q(z1|x) (the paper) rather than posterior means."""

    def validate(self) -> None:
        super().validate()
        require(self.m1_epochs >= 1, "m1_epochs", "an integer >= 1", self.m1_epochs)
        require(self.m1_latent_dim >= 1, "m1_latent_dim", "an integer >= 1", self.m1_latent_dim)


@register
class M1M2(SemiSupervisedVAE):
    """M2 trained on the latent space of a trained, frozen M1 VAE. Generation decodes through
    M2 (to an M1 code) then M1 (to an image)."""

    name = "m1m2"
    config_class = M1M2Config

    def __init__(self, config: M1M2Config, spec: DataSpec) -> None:
        super().__init__(config, spec)
        # Built (drawing its initial weights) before M2, then overwritten by the trained M1.
        self.m1 = VAE(VAEConfig(hidden=config.m1_hidden, latent_dim=config.m1_latent_dim), spec)
        self.m1.requires_grad_(False)
        self.likelihood = LearnedGaussian()
        self.build_m2(config, config.m1_latent_dim, 2 * config.m1_latent_dim)

    def train(self, mode: bool = True) -> M1M2:
        super().train(mode)
        self.m1.eval()  # frozen feature extractor: never in training mode
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            mean, log_var = self.m1.encode(x.flatten(1))
            if self.config.m1_sample and self.training:
                return reparameterize(mean, log_var)
            return mean

    def features_to_images(self, v: torch.Tensor) -> torch.Tensor:
        # M1's decoder without `generate`'s no_grad, so that model(x) is differentiable in M2
        return self.m1.likelihood.mean(self.m1.decode(v)).view(len(v), *self.spec.shape)

    @classmethod
    def pretrained(cls, config: M1M2Config) -> tuple[Pretrained, ...]:
        """M1: the run `m1` names, or, when empty, a 'vae' trained for this run into RUN_DIR/m1
        on the same data (all of it, without labels), as the run is trained but for
        `m1_epochs` epochs."""
        m1_config = {"hidden": config.m1_hidden, "latent_dim": config.m1_latent_dim}
        overrides = {"epochs": config.m1_epochs, "labels": "all"}
        return (
            Pretrained(
                M1_ROLE, "vae", m1_config, overrides, run_dir=config.m1 or None, option="m1"
            ),
        )

    @classmethod
    def adopt_pretrained(
        cls, config: M1M2Config, spec: DataSpec, helpers: Mapping[str, GenerativeModel]
    ) -> M1M2Config:
        m1 = helpers.get(M1_ROLE)
        return config if m1 is None else m1_architecture(config, spec, m1)

    def use_pretrained(self, helpers: Mapping[str, GenerativeModel]) -> None:
        self.m1.load_state_dict(helpers[M1_ROLE].state_dict())


M1_ROLE = "m1"  # the helper's name, and its directory in a run (scripts/m1_code_probe.py)


def m1_architecture(config: M1M2Config, spec: DataSpec, m1: GenerativeModel) -> M1M2Config:
    """`config` with the M1 fields read from the trained M1 `m1`, after checking it is an M1 this
    model can use: a 'vae' with a Bernoulli decoder, trained on images of this shape."""
    where = config.m1 or f"RUN_DIR/{M1_ROLE}"
    if m1.name != "vae":
        raise CheckpointError(f"m1: {where} is a '{m1.name}' run; M1 must be a 'vae' run")
    if m1.spec.shape != spec.shape:
        raise CheckpointError(
            f"m1: {where} was trained on images of shape {list(m1.spec.shape)}, "
            f"this dataset has {list(spec.shape)}"
        )
    m1_config = m1.config
    if m1_config.likelihood != "bernoulli":
        raise CheckpointError(f"m1: {where} must use the bernoulli likelihood")
    return replace(
        config, m1_hidden=tuple(m1_config.hidden), m1_latent_dim=int(m1_config.latent_dim)
    )
