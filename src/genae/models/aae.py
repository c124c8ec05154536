"""Adversarial autoencoders (Makhzani, Shlens, Jaitly, Goodfellow & Frey 2015).

A deterministic autoencoder whose code distribution q(z) is matched to a prior p(z) by an
adversarial game instead of a KL term. Every minibatch runs three phases, each with its own Adam:

    reconstruction   min_{enc, dec}  E_x[-log p(x | dec(enc(x)))]
    discriminator    min_D           -E_{z~p}[log D(z)] - E_x[log(1 - D(enc(x)))]
    regularisation   min_{enc}       -E_x[log D(enc(x))]

`aae`: any prior of `genae.nn.priors`. With `label_prior` (paper Fig. 4) the discriminator also
sees a one-hot label, with one extra "no label" class: a labelled code is judged against prior
samples from its label's region, an unlabelled one against the whole prior, so the labels pin
each class to its own region of the latent space (`--labels N` keeps only N of them).

`aae-ss` (sec. 5): the encoder outputs a categorical y (softmax) and a style z; one
discriminator imposes a categorical prior on y, another N(0, I) on z, and a fourth phase
minimises the cross-entropy of y on the labelled minibatch. `aae-cluster` (sec. 6) is the same
without labels and with K clusters: y becomes the cluster assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genae.config import require
from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.models.base import (
    Batch,
    Categories,
    GenerativeModel,
    LatentCodes,
    LatentPrior,
    LossTerms,
    Phase,
    parameters_of,
)
from genae.models.registry import register
from genae.nn.adversarial import (
    ADVERSARIAL_BETAS,
    adversarial_collapse,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
)
from genae.nn.blocks import mlp, require_mlp_fields, standard_normal
from genae.nn.likelihoods import Bernoulli
from genae.nn.noise import NOISE_KINDS, InputNoise
from genae.nn.priors import PRIORS, Prior, make_prior
from genae.scores import clustering_accuracy, kmeans_baseline


@dataclass
class AAEConfig:
    hidden: tuple[int, ...] = (1000, 1000)
    """Widths of the encoder's hidden layers; the decoder mirrors them (comma-separated)."""
    latent_dim: int = 2
    """Dimension of the code z."""
    disc_hidden: tuple[int, ...] = (1000, 1000)
    """Widths of the discriminator's hidden layers (comma-separated)."""
    activation: str = "relu"
    """relu | leaky_relu | tanh | elu | softplus."""
    prior: str = "normal"
    """Prior p(z) the codes are matched to: normal | uniform | swiss-roll | mixture."""
    prior_regions: int = 0
    """Label regions / mixture components of the prior; 0: the dataset's classes."""
    label_prior: bool = False
    """Show the discriminator the label, pinning each class to its own prior region (Fig. 4)."""
    input_noise: str = "none"
    """Corruption of the encoder input while training: none | gaussian | dropout."""
    noise_level: float = 0.3
    """Std of the gaussian input noise, or the dropout probability."""
    adversarial_lr: float = 0.0
    """Learning rate of the discriminator and regularisation phases; 0: the run's lr."""

    def validate(self) -> None:
        _validate_networks(self)
        require(self.prior in PRIORS, "prior", f"one of {sorted(PRIORS)}", self.prior)
        require(self.prior_regions >= 0, "prior_regions", "an integer >= 0", self.prior_regions)


def _validate_networks(config: AAEConfig | CategoricalAAEConfig) -> None:
    """Checks of the fields every adversarial autoencoder config has."""
    require(config.latent_dim >= 1, "latent_dim", "an integer >= 1", config.latent_dim)
    require_mlp_fields(config.activation, hidden=config.hidden, disc_hidden=config.disc_hidden)
    require(
        config.input_noise in NOISE_KINDS,
        "input_noise",
        f"one of {list(NOISE_KINDS)}",
        config.input_noise,
    )
    require(config.noise_level >= 0, "noise_level", "a number >= 0", config.noise_level)
    require(
        config.adversarial_lr >= 0, "adversarial_lr", "a learning rate >= 0", config.adversarial_lr
    )


class _AdversarialAE(GenerativeModel, LatentCodes):
    """What every MLP adversarial autoencoder shares: noisy encoder input, a Bernoulli decoder,
    and the phase wiring. Subclasses define the networks and the adversarial terms."""

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _adversarial_phase(self, name: str, loss, *modules) -> Phase:
        return Phase(
            name,
            loss,
            parameters_of(*modules),
            lr=self.config.adversarial_lr or None,
            betas=ADVERSARIAL_BETAS,
        )

    def training_problem(self, train_means: dict[str, float]) -> str | None:
        return adversarial_collapse(train_means)

    def _recon_nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -self.likelihood.log_prob(logits, x.flatten(1))

    def _recon_metrics(self, logits: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)
        return {
            "recon_nll": self._recon_nll(logits, x),
            "recon_mse": (self.likelihood.mean(logits) - flat).pow(2).mean(-1),
        }


@register
class AAE(_AdversarialAE, LatentPrior):
    """Adversarial autoencoder: codes matched to a chosen prior by a discriminator (sec. 2)."""

    name = "aae"
    config_class = AAEConfig
    console_metrics = (
        "train_reconstruction.loss",
        "train_discriminator.accuracy",
        "val_recon_mse",
        "val_prior_region_agreement",
    )

    def __init__(self, config: AAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        regions = config.prior_regions or spec.num_classes or 10
        if config.label_prior:
            if not spec.num_classes:
                raise ConfigError("label_prior: needs a dataset with class labels")
            if regions != spec.num_classes:
                raise ConfigError(
                    f"prior_regions: the label prior needs one region per class "
                    f"({spec.num_classes}), got {regions}"
                )
        self.prior = make_prior(config.prior, config.latent_dim, regions)
        self.input_noise = InputNoise(config.input_noise, config.noise_level)
        hidden = list(config.hidden)
        self.encoder = mlp(spec.numel, hidden, config.latent_dim, activation=config.activation)
        self.decoder = mlp(
            config.latent_dim, hidden[::-1], spec.numel, activation=config.activation
        )
        self.likelihood = Bernoulli()
        # With a label prior the discriminator reads a one-hot label with one extra class
        # ("no label") for unlabelled codes, which are matched to the whole prior.
        self.label_width = spec.num_classes + 1 if config.label_prior else 0
        self.discriminator = mlp(
            config.latent_dim + self.label_width,
            list(config.disc_hidden),
            1,
            activation=config.activation,
        )

    @property
    def semi_supervised(self) -> bool:  # type: ignore[override]
        return self.config.label_prior

    # --- the model ----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.input_noise(x.flatten(1)))

    def critic(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """The discriminator's logit that z came from the prior (given the label, if any)."""
        if condition is not None:
            z = torch.cat([z, F.one_hot(condition, self.label_width).float()], dim=1)
        return self.discriminator(z).squeeze(1)

    def _codes(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The batch's codes, as many prior samples to match them against, and (label prior
        only) the label each pair is judged under: its class, or the "no label" class."""
        if not self.config.label_prior:
            z = self.encode(batch.x)
            return z, self.prior.sample(len(z), device=z.device), None
        no_label = self.spec.num_classes
        xs, conditions = [], []
        if batch.y is None:  # unlabelled examples (semi-supervised training)
            xs.append(batch.x)
            conditions.append(torch.full((len(batch),), no_label, device=batch.x.device))
        labelled = batch.labelled_part()
        if labelled is not None:
            xs.append(labelled[0])
            conditions.append(labelled[1])
        condition = torch.cat(conditions)
        z = self.encode(torch.cat(xs))
        # An unlabelled code's target is the whole prior: a region drawn uniformly, which
        # every prior here weights equally.
        anywhere = torch.randint(0, no_label, condition.shape, device=z.device)
        regions = torch.where(condition == no_label, anywhere, condition)
        return z, self.prior.sample_region(regions), condition

    # --- the three phases ---------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        return [
            Phase(
                "reconstruction",
                self.reconstruction_loss,
                parameters_of(self.encoder, self.decoder),
            ),
            self._adversarial_phase("discriminator", self.discriminator_loss, self.discriminator),
            self._adversarial_phase("regularization", self.regularization_loss, self.encoder),
        ]

    def reconstruction_loss(self, batch: Batch) -> LossTerms:
        recon = self._recon_nll(self.decoder(self.encode(batch.x)), batch.x).mean()
        return {"loss": recon, "recon": recon}

    def discriminator_loss(self, batch: Batch) -> LossTerms:
        z, target, condition = self._codes(batch)
        real, fake = self.critic(target, condition), self.critic(z.detach(), condition)
        loss = discriminator_loss(real, fake)
        return {"loss": loss, "accuracy": discriminator_accuracy(real, fake)}

    def regularization_loss(self, batch: Batch) -> LossTerms:
        z, _, condition = self._codes(batch)
        loss = generator_loss(self.critic(z, condition))
        return {"loss": loss}

    # --- evaluation and generation ------------------------------------------------------------
    def evaluate(self, batch: Batch) -> dict[str, torch.Tensor]:
        z = self.encode(batch.x)
        metrics = self._recon_metrics(self.decoder(z), batch.x)
        if self.config.label_prior and batch.y is not None:
            metrics["prior_region_agreement"] = (self.prior.region_of(z) == batch.y).float()
        return metrics

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """`model(x)`: reconstructions (B, C, H, W) in [0, 1] of images x, decoded from their
        codes, differentiably (the encoder reads no label: y is unused)."""
        return torch.sigmoid(self.decoder(self.encode(x))).view(-1, *self.spec.shape)

    @torch.no_grad()
    def latent_codes(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes of images (no input noise in eval mode); the encoder reads no label."""
        return self.encode(x)

    @property
    def latent_prior(self) -> Prior:
        return self.prior

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.prior.sample(n, generator).to(self.device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded codes; a label prior puts the class in z itself, so `condition` is unused."""
        return torch.sigmoid(self.decoder(z)).view(len(z), *self.spec.shape)

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None) -> torch.Tensor:
        if condition is None or not self.config.label_prior:
            return self.generate(self.prior_sample(n, generator))
        regions = condition.to(generator.device if generator is not None else "cpu")
        return self.generate(self.prior.sample_region(regions, generator).to(self.device))

    @property
    def is_conditional(self) -> bool:
        return self.config.label_prior

    def grid_labels(self, per_row: int) -> torch.Tensor | None:
        # The label acts through the region z is drawn from, not through `generate`, so the
        # shared-noise grid does not apply; `genae.viz.latent.save_class_grid` draws per class.
        return None


@dataclass
class CategoricalAAEConfig:
    hidden: tuple[int, ...] = (1000, 1000)
    """Widths of the encoder's hidden layers; the decoder mirrors them (comma-separated)."""
    latent_dim: int = 10
    """Dimension of the continuous style z (beside the categorical y)."""
    disc_hidden: tuple[int, ...] = (1000, 1000)
    """Widths of the hidden layers of both discriminators, on y and on z (comma-separated)."""
    activation: str = "relu"
    """relu | leaky_relu | tanh | elu | softplus."""
    clusters: int = 0
    """Categories of y; 0: the dataset's classes (aae-ss) or 16 (aae-cluster)."""
    input_noise: str = "none"
    """Corruption of the encoder input while training: none | gaussian | dropout."""
    noise_level: float = 0.3
    """Std of the gaussian input noise, or the dropout probability."""
    adversarial_lr: float = 0.0
    """Learning rate of the discriminator and regularisation phases; 0: the run's lr."""
    supervised_lr: float = 0.0
    """Learning rate of the aae-ss supervised phase; 0: the run's lr."""
    # The y discriminator judges one example at a time, so it can be satisfied by confident
    # softmax outputs that all pick the same category; once the softmax saturates its gradient
    # vanishes and training stays collapsed in one cluster (seen on digits and Fashion-MNIST).
    # Matching the batch's category marginal directly is the same target q(y) = Cat(1/K),
    # non-adversarial.
    balance_weight: float = 1.0
    """Weight of KL(batch mean of q(y|x) || uniform) in regularisation (0: off); stops collapse."""

    def validate(self) -> None:
        _validate_networks(self)
        require(self.clusters >= 0, "clusters", "an integer >= 0", self.clusters)
        require(
            self.supervised_lr >= 0, "supervised_lr", "a learning rate >= 0", self.supervised_lr
        )
        require(self.balance_weight >= 0, "balance_weight", "a weight >= 0", self.balance_weight)


class _CategoricalAAE(_AdversarialAE, Categories):
    """q(y, z | x) with y categorical (softmax) and z a continuous style; x is decoded from
    [y, z]. Adversarial priors: Cat(1/K) on y, N(0, I) on z."""

    config_class = CategoricalAAEConfig
    default_clusters = 0

    def __init__(self, config: CategoricalAAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.num_categories = config.clusters or self.default_clusters or spec.num_classes
        if self.num_categories < 2:
            raise ConfigError(
                f"clusters: expected at least 2 categories, got {self.num_categories}"
            )
        hidden, act, k = list(config.hidden), config.activation, self.num_categories
        self.input_noise = InputNoise(config.input_noise, config.noise_level)
        self.encoder = mlp(spec.numel, hidden, activation=act)
        self.y_head = torch.nn.Linear(hidden[-1] if hidden else spec.numel, k)
        self.z_head = torch.nn.Linear(hidden[-1] if hidden else spec.numel, config.latent_dim)
        self.decoder = mlp(k + config.latent_dim, hidden[::-1], spec.numel, activation=act)
        self.likelihood = Bernoulli()
        self.y_discriminator = mlp(k, list(config.disc_hidden), 1, activation=act)
        self.z_discriminator = mlp(config.latent_dim, list(config.disc_hidden), 1, activation=act)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of y and the style z."""
        h = self.encoder(self.input_noise(x.flatten(1)))
        return self.y_head(h), self.z_head(h)

    def decode(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([y, z], dim=1))

    def _prior_pair(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, self.num_categories, (n,), device=device)
        y = F.one_hot(y, self.num_categories).float()
        return y, torch.randn(n, self.config.latent_dim, device=device)

    # --- phases -------------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        encoder = (self.encoder, self.y_head, self.z_head)
        return [
            Phase(
                "reconstruction", self.reconstruction_loss, parameters_of(*encoder, self.decoder)
            ),
            self._adversarial_phase(
                "discriminator", self.discriminator_loss, self.y_discriminator, self.z_discriminator
            ),
            self._adversarial_phase("regularization", self.regularization_loss, *encoder),
        ]

    def reconstruction_loss(self, batch: Batch) -> LossTerms:
        logits, z = self.encode(batch.x)
        recon = self._recon_nll(self.decode(logits.softmax(-1), z), batch.x).mean()
        return {"loss": recon, "recon": recon}

    def discriminator_loss(self, batch: Batch) -> LossTerms:
        with torch.no_grad():
            logits, z = self.encode(batch.x)
        y_real, z_real = self._prior_pair(len(batch), batch.x.device)
        y_true, y_fake = self.y_discriminator(y_real), self.y_discriminator(logits.softmax(-1))
        z_true, z_fake = self.z_discriminator(z_real), self.z_discriminator(z)
        y_loss, z_loss = discriminator_loss(y_true, y_fake), discriminator_loss(z_true, z_fake)
        return {
            "loss": y_loss + z_loss,
            "y": y_loss,
            "z": z_loss,
            "y_accuracy": discriminator_accuracy(y_true, y_fake),
            "z_accuracy": discriminator_accuracy(z_true, z_fake),
        }

    def regularization_loss(self, batch: Batch) -> LossTerms:
        logits, z = self.encode(batch.x)
        probs = logits.softmax(-1)
        y_loss = generator_loss(self.y_discriminator(probs))
        z_loss = generator_loss(self.z_discriminator(z))
        marginal = probs.mean(0)
        balance = (marginal * (marginal * self.num_categories).clamp_min(1e-12).log()).sum()
        loss = y_loss + z_loss + self.config.balance_weight * balance
        return {"loss": loss, "y": y_loss, "z": z_loss, "balance": balance}

    # --- evaluation and generation ------------------------------------------------------------
    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable category of each image."""
        return self.encode(x)[0].argmax(-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """`model(x)`: reconstructions (B, C, H, W) in [0, 1] of images x, decoded from the
        category probabilities and the style code, differentiably (y is unused: the category
        is the model's own)."""
        logits, z = self.encode(x)
        return torch.sigmoid(self.decode(logits.softmax(-1), z)).view(-1, *self.spec.shape)

    @torch.no_grad()
    def latent_codes(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The style codes z of images; the encoder reads no label."""
        return self.encode(x)[1]

    def evaluate(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits, z = self.encode(batch.x)
        return self._recon_metrics(self.decode(logits.softmax(-1), z), batch.x)

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal((n, self.config.latent_dim), generator, self.device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Decode style codes with category `condition` (random categories when None)."""
        if condition is None:
            condition = torch.randint(0, self.num_categories, (len(z),), device=z.device)
        y = F.one_hot(condition.to(z.device), self.num_categories).float()
        return torch.sigmoid(self.decode(y, z)).view(len(z), *self.spec.shape)

    @property
    def is_conditional(self) -> bool:
        return True

    def grid_labels(self, per_row: int) -> torch.Tensor | None:
        categories = torch.arange(self.num_categories, device=self.device)
        return categories.repeat_interleave(per_row)


@register
class SemiSupervisedAAE(_CategoricalAAE):
    """aae-ss: y is the class; a supervised phase fits it on the labelled minibatch."""

    name = "aae-ss"
    semi_supervised = True
    console_metrics = (
        "train_reconstruction.loss",
        "train_discriminator.accuracy",
        "val_accuracy",
        "val_recon_mse",
    )

    def __init__(self, config: CategoricalAAEConfig, spec: DataSpec) -> None:
        if not spec.num_classes:
            raise ConfigError("model 'aae-ss' needs a dataset with class labels")
        if config.clusters not in (0, spec.num_classes):
            raise ConfigError(
                f"clusters: aae-ss has one category per class ({spec.num_classes}), "
                f"got {config.clusters}"
            )
        super().__init__(config, spec)

    def phases(self) -> list[Phase]:
        supervised = Phase(
            "supervised",
            self.supervised_loss,
            parameters_of(self.encoder, self.y_head),
            lr=self.config.supervised_lr or None,
        )
        return [*super().phases(), supervised]

    def supervised_loss(self, batch: Batch) -> LossTerms:
        labelled = batch.labelled_part()
        if labelled is None:
            # No labels in this step (--labels 0): a zero loss that still has a graph.
            zero = self.y_head.weight.sum() * 0.0
            return {"loss": zero, "cross_entropy": zero.detach()}
        x, y = labelled
        cross_entropy = F.cross_entropy(self.encode(x)[0], y)
        return {"loss": cross_entropy, "cross_entropy": cross_entropy}

    def evaluate(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = super().evaluate(batch)
        if batch.y is not None:
            metrics["accuracy"] = (self.assign(batch.x) == batch.y).float()
        return metrics


@register
class ClusteringAAE(_CategoricalAAE):
    """aae-cluster: unsupervised; y is a cluster among K. Evaluation adds the clustering
    accuracy (each cluster takes its majority class) and, as a baseline, that of k-means on raw
    pixels with the same K and the same rule: fit on training pixels, scored on the same
    split."""

    name = "aae-cluster"
    default_clusters = 16
    console_metrics = (
        "train_reconstruction.loss",
        "train_discriminator.accuracy",
        "val_clustering_accuracy",
        "val_recon_mse",
    )

    def dataset_metrics(self, data, batch_size: int, train=None) -> dict[str, float]:
        if data.labels is None or data.labels.dim() != 1:
            return {}
        assignments = torch.cat([self.assign(b.x) for b in data.batches(batch_size)])
        labels = data.labels
        k = self.num_categories
        values = {
            "clustering_accuracy": clustering_accuracy(assignments, labels),
            "clusters_used": float(assignments.unique().numel()),
        }
        if train is not None:  # fit on training pixels as the model sees them
            values["kmeans_clustering_accuracy"] = kmeans_baseline(
                train.images, data.images, labels, k, binarize_fit=train.binarize
            )
        return values
