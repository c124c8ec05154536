"""Convolutional VAE: the Gaussian-latent VAE objective with the DFC-VAE paper's networks.

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || N(0, I))

Encoder: four 4x4 stride-2 convolutions (32-64-128-256 channels) with BatchNorm and LeakyReLU,
then Gaussian heads for mean and log-variance (latent 100 by default). Decoder: a linear layer to
the smallest feature map, stages of nearest upsampling x2, 3x3 conv, BatchNorm, LeakyReLU, and a
final 3x3 conv giving Bernoulli logits (default) or, through a sigmoid, Gaussian means. How 28x28,
32x32, 64x64 and 8x8 images fit the stack is described in `genae.nn.conv`.

With `conditional`, the label (one-hot) or attribute vector c enters both networks, as in the MLP
CVAE: q(z | x, c) sees it as constant input channels beside the image, p(x | z, c) concatenated
to z before its linear layer, so z only has to carry what the label does not, and sampling
takes the class to draw. (Constant channels are the simplest way in: the first conv can add a
per-class bias everywhere, and unlike FiLM they add no parameters beyond the first layer's.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genae.config import require
from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.models.latent import GaussianLatentVAE, LearnedPrior, require_prior
from genae.models.registry import register
from genae.nn.blocks import GaussianHead
from genae.nn.conv import ConvDecoder, ConvEncoder
from genae.nn.likelihoods import Gaussian, make_likelihood


@dataclass
class ConvVAEConfig:
    latent_dim: int = 100
    """Dimension of the Gaussian latent z."""
    stage_channels: tuple[int, ...] = (32, 64, 128, 256)
    """Encoder conv stage channels (stride 2, or 1 on small images); the decoder mirrors them."""
    likelihood: str = "bernoulli"
    """Decoder likelihood p(x|z): bernoulli | gaussian."""
    decoder_std: float = 0.1
    """Fixed standard deviation of the gaussian likelihood (pixel units); unused otherwise."""
    conditional: bool = False
    """Condition encoder and decoder on the class (one-hot) or attribute vector; sample by label."""
    prior: str = "standard"
    """p(z|y) of a conditional model: standard (N(0, I)) | learned (N(mu(y), sigma^2(y)))."""

    def validate(self) -> None:
        require(self.latent_dim >= 1, "latent_dim", "an integer >= 1", self.latent_dim)
        require(
            len(self.stage_channels) >= 1 and all(c >= 1 for c in self.stage_channels),
            "stage_channels",
            "one or more positive channel counts",
            self.stage_channels,
        )
        make_likelihood(self.likelihood, self.decoder_std)
        require_prior(self.prior)
        require(
            self.prior == "standard" or self.conditional,
            "prior",
            "standard for an unconditional model (a learned p(z|y) needs conditional = true)",
            self.prior,
        )


@register
class ConvVAE(GaussianLatentVAE):
    """Convolutional VAE with the DFC-VAE paper's encoder and decoder."""

    name = "convvae"
    config_class = ConvVAEConfig

    def __init__(self, config: ConvVAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if config.conditional and spec.condition_dim == 0:
            raise ConfigError(
                f"conditional: model '{self.name}' conditions on labels, but the dataset has none"
            )
        # condition_dim is 0 unless conditional: the unconditional networks are unchanged.
        cond = self.condition_dim
        self.encoder = ConvEncoder(spec.shape, config.stage_channels, condition_dim=cond)
        self.posterior = GaussianHead(self.encoder.out_features, config.latent_dim)
        self.decoder = ConvDecoder(
            config.latent_dim, spec.shape, config.stage_channels, condition_dim=cond
        )
        self.likelihood = make_likelihood(config.likelihood, config.decoder_std)
        if config.prior == "learned":
            self.prior_net = LearnedPrior.for_spec(spec, config.latent_dim)
        # A Gaussian decoder's mean goes through a sigmoid so it stays a valid image.
        self._sigmoid_mean = isinstance(self.likelihood, Gaussian)

    @property
    def is_conditional(self) -> bool:
        return self.config.conditional

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None):
        """Posterior mean and log-variance of q(z | x[, c]); x is (B, C, H, W) or flat
        (B, C*H*W), c the condition vectors (B, K) of a conditional model."""
        return self.posterior(self.encoder(x.view(-1, *self.spec.shape), c))

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli logits or Gaussian means of p(x | z[, c]), flat (B, D)."""
        out = self.decoder(z, c).flatten(1)
        return torch.sigmoid(out) if self._sigmoid_mean else out
