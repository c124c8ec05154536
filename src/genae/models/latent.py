"""The objective every Gaussian-latent VAE shares, whatever its encoder and decoder look like.

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || p(z))

estimated with one reparameterised sample and the closed-form KL. A subclass builds its networks
and `self.likelihood` in `__init__` and says how to run them: `encode(x, c)` gives the posterior
mean and log-variance, `decode(z, c)` the likelihood parameters as flat (B, D) rows; c is the
condition vector of the labels for a conditional model (`is_conditional`), else None. Loss,
evaluation, reconstruction and generation are written once, here.

The prior p(z) is N(0, I), or for a conditional model optionally a learned p(z|y) =
N(mu(y), diag sigma^2(y)) (Sohn et al. 2015): a subclass whose config says `prior = "learned"`
sets `self.prior_net = LearnedPrior.for_spec(spec, latent_dim)`, and the KL, the importance
weights and sampling all use it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genae.config import require
from genae.data.types import DataSpec
from genae.models.base import (
    Batch,
    GenerativeModel,
    LogWeights,
    LossTerms,
    Reconstructs,
    TemperedPrior,
)
from genae.nn.blocks import GaussianHead, mlp, reparameterize
from genae.nn.divergences import (
    kl_normal_diag_units,
    kl_normal_standard_units,
    log_normal_diag,
    log_normal_standard,
)
from genae.nn.likelihoods import Likelihood

PRIORS = ("standard", "learned")  # the values of a conditional VAE's `prior` config field


def require_prior(prior: str) -> None:
    """The config check of a `prior` field."""
    require(prior in PRIORS, "prior", " | ".join(PRIORS), prior)


class LearnedPrior(nn.Module):
    """p(z|c) = N(mean(c), diag exp(log_var(c))) of a conditional VAE (Sohn et al. 2015), c the
    condition vector (`GenerativeModel.condition_vector`). For class labels (one-hot c) a linear
    map, which is a mean and a log-variance per class; for attribute vectors an MLP with one
    hidden layer. Its output layer starts at zero, so training starts from N(0, I)."""

    def __init__(self, condition_dim: int, latent_dim: int, hidden: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.body = mlp(condition_dim, hidden)
        self.head = GaussianHead(hidden[-1] if hidden else condition_dim, latent_dim)
        for layer in (self.head.mean, self.head.log_var):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @classmethod
    def for_spec(cls, spec: DataSpec, latent_dim: int) -> LearnedPrior:
        """The prior network for a dataset's conditions: a table per class, or an MLP (128
        hidden units) of the attribute vector."""
        hidden = (128,) if spec.attribute_names else ()
        return cls(spec.condition_dim, latent_dim, hidden)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (B, d) of p(z | c) for condition vectors c (B, condition_dim)."""
        return self.head(self.body(c))


class GaussianLatentVAE(TemperedPrior, GenerativeModel, LogWeights, Reconstructs):
    """Base class: diagonal-Gaussian posterior, N(0, I) prior (or a learned p(z|y)), a pixel
    likelihood."""

    console_metrics = ("train_loss", "val_neg_elbo", "val_kl", "val_recon_mse")
    likelihood: Likelihood

    def __init__(self, config: Any, spec: DataSpec) -> None:
        super().__init__(config, spec)
        # None: p(z) = N(0, I). A conditional subclass may set a LearnedPrior: p(z|y).
        self.prior_net: LearnedPrior | None = None

    # --- what a subclass provides -------------------------------------------------------------
    def encode(
        self, x: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of q(z | x[, c]); x is (B, C, H, W)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood parameters (logits or means), flat (B, D)."""
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # Conditioning follows from `is_conditional` (cvae always; the conv models with
    # `conditional`): the networks take condition vectors of this width (0: none) ...
    @property
    def condition_dim(self) -> int:
        return self.spec.condition_dim if self.is_conditional else 0

    # ... and every method here turns a batch's labels into them through this one function.
    def _condition(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if not self.is_conditional:
            return None
        if y is None:
            raise ValueError(f"the conditional model '{self.name}' needs a label for every example")
        return self.condition_vector(y)

    # --- the prior (TemperedPrior.prior_params) ------------------------------------------------
    def _kl_units(
        self, mean: torch.Tensor, log_var: torch.Tensor, c: torch.Tensor | None
    ) -> torch.Tensor:
        """KL(q(z|x[,c]) || p(z[|c])) of each unit, (B, d)."""
        prior = self.prior_params(c)
        if prior is None:
            return kl_normal_standard_units(mean, log_var)
        return kl_normal_diag_units(mean, log_var, *prior)

    # --- the objective ------------------------------------------------------------------------
    def _terms(self, x: torch.Tensor, c: torch.Tensor | None):
        """Per-example reconstruction NLL, the KL of each latent unit (B, d), and the
        posterior mean."""
        mean, log_var = self.encode(x, c)
        z = reparameterize(mean, log_var)
        recon_nll = -self.likelihood.log_prob(self.decode(z, c), x.flatten(1))
        return recon_nll, self._kl_units(mean, log_var, c), mean

    def loss(self, batch: Batch) -> LossTerms:
        recon_nll, kl_units, _ = self._terms(batch.x, self._condition(batch.y))
        recon, kl = recon_nll.mean(), kl_units.sum(-1).mean()
        return {"loss": recon + self.kl_penalty(kl_units), "recon": recon, "kl": kl}

    def kl_penalty(self, kl_units: torch.Tensor) -> torch.Tensor:
        """What the training loss charges for the KL, given each unit's KL (B, d): the batch
        mean of KL(q(z|x) || p(z)), as the ELBO has it. A model may warm it up or floor it
        (the MLP VAE's kl_warmup_epochs and free_bits)."""
        return kl_units.sum(-1).mean()

    def evaluate(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, c = batch.x, self._condition(batch.y)
        recon_nll, kl_units, mean = self._terms(x, c)
        kl = kl_units.sum(-1)
        recon_mean = self.likelihood.mean(self.decode(mean, c))
        return {
            "neg_elbo": recon_nll + kl,
            "recon_nll": recon_nll,
            "kl": kl,
            "recon_mse": (recon_mean - x.flatten(1)).pow(2).mean(-1),
        }

    @torch.no_grad()
    def latent_codes(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior means (B, latent_dim) of images (and labels, if conditional)."""
        return self.encode(x, self._condition(y))[0]

    @torch.no_grad()
    def log_weights(self, batch: Batch, k: int) -> torch.Tensor:
        """Importance log-weights log p(x, z_i) - log q(z_i | x) of k posterior samples per
        example, (B, k): what the importance-weighted bound `genae.metrics.likelihood` needs.
        A conditional model conditions on the batch's true labels."""
        x, c = batch.x.flatten(1), self._condition(batch.y)
        mean, log_var = self.encode(batch.x, c)
        b = len(x)
        z = reparameterize(mean.expand(k, *mean.shape), log_var.expand(k, *log_var.shape))
        z = z.reshape(k * b, -1)  # sample-major: row i * b + j is sample i of example j
        c_rep = None if c is None else c.repeat(k, 1)
        log_px = self.likelihood.log_prob(self.decode(z, c_rep), x.repeat(k, 1))
        log_q = log_normal_diag(z, mean.repeat(k, 1), log_var.repeat(k, 1))
        prior = self.prior_params(c)
        if prior is None:
            log_pz = log_normal_standard(z)
        else:
            log_pz = log_normal_diag(z, prior[0].repeat(k, 1), prior[1].repeat(k, 1))
        return (log_px + log_pz - log_q).view(k, b).T

    # --- model(x), reconstruction and generation ----------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """`model(x)`: reconstructions (B, C, H, W) in [0, 1] of images x, decoded from the
        posterior means (no sampling), differentiably. A conditional model (cvae) needs the
        labels y."""
        c = self._condition(y)
        mean, _ = self.encode(x, c)
        return self.likelihood.mean(self.decode(mean, c)).view(-1, *self.spec.shape)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded posterior means, as images: `model(x, y)` without gradients."""
        return self(x, y)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        condition: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """n images in [0, 1] decoded from prior codes; `condition`: labels shaped like
        `Batch.y` (a learned p(z|y) draws from them too); `temperature` scales the prior's
        spread (1: the prior itself, 0: its mean)."""
        return self.generate(self.prior_sample(n, generator, condition, temperature), condition)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        params = self.decode(z, self._condition(condition))
        return self.likelihood.mean(params).view(len(z), *self.spec.shape)
