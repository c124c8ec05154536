"""Variational autoencoder (Kingma & Welling 2014) with MLP encoder and decoder.

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || N(0, I))

estimated with one reparameterised sample and the closed-form KL (see
`genae.models.latent.GaussianLatentVAE`, which holds the objective; this file holds the networks).
Optionally the training loss warms the KL up or gives each unit free bits (`kl_penalty`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genae.config import default_changed, require
from genae.data.types import DataSpec
from genae.models.base import linear_warmup
from genae.models.latent import GaussianLatentVAE, LearnedPrior, require_prior
from genae.models.registry import register
from genae.nn.blocks import GaussianHead, mlp, require_mlp_fields
from genae.nn.likelihoods import make_likelihood


@dataclass
class VAEConfig:
    hidden: tuple[int, ...] = (500, 500)
    """Widths of the encoder's hidden layers; the decoder mirrors them (comma-separated)."""
    latent_dim: int = 16
    """Dimension of the Gaussian latent z."""
    dropout: float = 0.0
    """Dropout probability after each hidden layer, in [0, 1)."""
    activation: str = "relu"
    """relu | leaky_relu | tanh | elu | softplus."""
    likelihood: str = "bernoulli"
    """Decoder likelihood p(x|z): bernoulli | gaussian."""
    decoder_std: float = 0.1
    """Fixed standard deviation of the gaussian likelihood (pixel units); unused otherwise."""
    # Both keep latent units from closing early (the KL pulls an unused unit onto the prior
    # before the decoder has learnt to use it): M2 on an M1's codes gains only from active units.
    kl_warmup_epochs: int = 0
    """Epochs over which the KL's weight in the loss ramps linearly from 0 to 1 (0: none)."""
    free_bits: float = 0.0
    """Nats of KL per latent unit (batch mean) the loss does not charge below (0: none)."""

    def validate(self) -> None:
        require(self.latent_dim >= 1, "latent_dim", "an integer >= 1", self.latent_dim)
        require(
            self.kl_warmup_epochs >= 0,
            "kl_warmup_epochs",
            "an integer >= 0",
            self.kl_warmup_epochs,
        )
        require(self.free_bits >= 0, "free_bits", "nats >= 0", self.free_bits)
        require_mlp_fields(self.activation, hidden=self.hidden)
        require(0.0 <= self.dropout < 1.0, "dropout", "a probability in [0, 1)", self.dropout)
        make_likelihood(self.likelihood, self.decoder_std)


@register
class VAE(GaussianLatentVAE):
    """Variational autoencoder with MLP encoder and decoder (Kingma & Welling 2014)."""

    name = "vae"
    config_class = VAEConfig

    def __init__(self, config: VAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        cond = self.condition_dim
        hidden = list(config.hidden)
        self.encoder = mlp(
            spec.numel + cond, hidden, activation=config.activation, dropout=config.dropout
        )
        self.posterior = GaussianHead(
            hidden[-1] if hidden else spec.numel + cond, config.latent_dim
        )
        self.decoder = mlp(
            config.latent_dim + cond,
            hidden[::-1],
            spec.numel,
            activation=config.activation,
            dropout=config.dropout,
        )
        self.likelihood = make_likelihood(config.likelihood, config.decoder_std)

    @staticmethod
    def _join(a: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return a if c is None else torch.cat([a, c], dim=1)

    # --- the networks (the objective is GaussianLatentVAE's) ----------------------------------
    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None):
        """Posterior mean and log-variance of q(z | x[, c]); x is (B, C, H, W) or (B, D)."""
        return self.posterior(self.encoder(self._join(x.flatten(1), c)))

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood parameters (logits or means), flat (B, D)."""
        return self.decoder(self._join(z, c))

    def kl_penalty(self, kl_units: torch.Tensor) -> torch.Tensor:
        """The KL as the loss charges it: each unit's batch mean at least `free_bits` nats
        (Kingma et al. 2016: below that, closing a unit gains the optimiser nothing), the sum
        weighted by the warm-up. The reported kl and the evaluation are the plain KL."""
        per_unit = kl_units.mean(0)
        if self.config.free_bits > 0:
            per_unit = per_unit.clamp(min=self.config.free_bits)
        return linear_warmup(self.progress, self.config.kl_warmup_epochs) * per_unit.sum()


@dataclass
class ConditionalVAEConfig(VAEConfig):
    # Learned by default: on Fashion-MNIST (latent 2, 10 epochs, 4 seeds) its samples were
    # judged the requested class 0.815 of the time against 0.683 under N(0, I), at the same
    # validation bound (250.78 vs 251.02 nats).
    prior: str = default_changed("learned", before="standard")
    """p(z|y): learned (N(mu(y), sigma^2(y)), Sohn et al. 2015) | standard (N(0, I))."""

    def validate(self) -> None:
        super().validate()
        require_prior(self.prior)


@register
class ConditionalVAE(VAE):
    """Supervised conditional VAE: the label (one-hot) or attribute vector is concatenated to the
    encoder input and to the decoder input, so z only has to carry what the label does not. The
    prior is N(0, I), or with `prior = "learned"` a Gaussian p(z|y) learned with the rest."""

    name = "cvae"
    config_class = ConditionalVAEConfig
    needs_labels = True

    def __init__(self, config: ConditionalVAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if config.prior == "learned":
            self.prior_net = LearnedPrior.for_spec(spec, config.latent_dim)

    @property
    def is_conditional(self) -> bool:
        return True

    @property
    def condition_dim(self) -> int:
        return self.spec.condition_dim

    def _condition(self, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ValueError("the conditional VAE needs a label for every example")
        return self.condition_vector(y)
