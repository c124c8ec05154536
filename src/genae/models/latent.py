"""The objective every Gaussian-latent VAE shares, whatever its encoder and decoder look like.

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || N(0, I))

estimated with one reparameterised sample and the closed-form KL. A subclass builds its networks
and `self.likelihood` in `__init__` and says how to run them: `encode(x, c)` gives the posterior
mean and log-variance, `decode(z, c)` the likelihood parameters as flat (B, D) rows. Loss,
evaluation, reconstruction and generation are written once, here.
"""

from __future__ import annotations

import torch

from genae.models.base import (
    Batch,
    GenerativeModel,
    LatentCodes,
    LogWeights,
    LossTerms,
    Reconstructs,
)
from genae.nn.blocks import reparameterize, standard_normal
from genae.nn.divergences import kl_normal_standard_units, log_normal_diag, log_normal_standard
from genae.nn.likelihoods import Likelihood


class GaussianLatentVAE(GenerativeModel, LatentCodes, LogWeights, Reconstructs):
    """Base class: diagonal-Gaussian posterior, N(0, I) prior, a pixel likelihood."""

    console_metrics = ("train_loss", "val_neg_elbo", "val_kl", "val_recon_mse")
    likelihood: Likelihood

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

    # Conditioning hooks: unconditional by default; a conditional model overrides both.
    @property
    def condition_dim(self) -> int:
        return 0

    def _condition(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return None

    # --- the objective ------------------------------------------------------------------------
    def _terms(self, x: torch.Tensor, c: torch.Tensor | None):
        """Per-example reconstruction NLL, the KL of each latent unit (B, d), and the
        posterior mean."""
        mean, log_var = self.encode(x, c)
        z = reparameterize(mean, log_var)
        recon_nll = -self.likelihood.log_prob(self.decode(z, c), x.flatten(1))
        return recon_nll, kl_normal_standard_units(mean, log_var), mean

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
        return (log_px + log_normal_standard(z) - log_q).view(k, b).T

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

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal((n, self.latent_dim), generator, self.device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        params = self.decode(z, self._condition(condition))
        return self.likelihood.mean(params).view(len(z), *self.spec.shape)
