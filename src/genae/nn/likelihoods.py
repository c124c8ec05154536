"""Decoder likelihoods p(x|z): the decoder emits parameters, these turn them into log p(x|z).

Each likelihood works on flattened images (B, D) and sums over pixels, so the result is
nats per image.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from genae.config import require
from genae.errors import ConfigError
from genae.nn.divergences import log_normal_diag
from genae.nn.elementwise import bernoulli_nll


class Likelihood(Protocol):
    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | params) per row, summed over the last dim."""

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The expected image in [0, 1] (what a sample grid shows)."""


class Bernoulli:
    """Pixel intensities in [0, 1] as Bernoulli probabilities; params are logits.

    Computed from logits (not from sigmoid outputs) for numerical stability, and with
    `bernoulli_nll`, 3x faster on CPU than torch's BCE with logits. With grey-level targets this
    is the usual 'BCE' VAE objective.
    """

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -bernoulli_nll(params, x).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)


class Gaussian:
    """Isotropic Gaussian with a fixed standard deviation; params are the mean."""

    def __init__(self, std: float) -> None:
        if not std > 0:
            raise ConfigError(f"decoder_std: expected a positive number, got {std}")
        self.log_var = 2.0 * math.log(std)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        sq = (x - params).pow(2).sum(-1)
        return -0.5 * (
            sq * math.exp(-self.log_var) + x.shape[-1] * (math.log(2 * math.pi) + self.log_var)
        )

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.clamp(0.0, 1.0)


def make_likelihood(name: str, decoder_std: float = 0.1) -> Likelihood:
    """The likelihood named in a model config ('bernoulli' or 'gaussian')."""
    factories = {"bernoulli": Bernoulli, "gaussian": lambda: Gaussian(decoder_std)}
    require(name in factories, "likelihood", f"one of {sorted(factories)}", name)
    return factories[name]()


class LearnedGaussian:
    """Diagonal Gaussian whose mean and log-variance are both decoded; params are [mean, log_var]
    (2 * D wide). For continuous targets such as another model's latent codes."""

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mean, log_var = params.chunk(2, dim=-1)
        return log_normal_diag(x, mean, log_var)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.chunk(2, dim=-1)[0]
