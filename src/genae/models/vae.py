"""Variational autoencoder (Kingma & Welling 2014) with MLP encoder and decoder.

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || N(0, I))

estimated with one reparameterised sample and the closed-form KL (see
`genae.models.latent.GaussianLatentVAE`, which holds the objective; this file holds the networks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genae.config import require
from genae.data.types import DataSpec
from genae.models.latent import GaussianLatentVAE
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

    def validate(self) -> None:
        require(self.latent_dim >= 1, "latent_dim", "an integer >= 1", self.latent_dim)
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


@register
class ConditionalVAE(VAE):
    """Supervised conditional VAE: the label (one-hot) or attribute vector is concatenated to the
    encoder input and to the decoder input, so z only has to carry what the label does not."""

    name = "cvae"
    config_class = VAEConfig
    needs_labels = True

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
