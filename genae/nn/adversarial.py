"""The losses of adversarial training, shared by every adversarial model.

A discriminator emits one logit per example: positive means "from the target distribution"
(the prior, or real images). Losses use the non-saturating form of Goodfellow et al. (2014):
the generator maximises log D(fake) rather than minimising log(1 - D(fake)), which keeps its
gradient alive while the discriminator is winning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[log D(real)] - E[log(1 - D(fake))]: the discriminator's cross-entropy."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[log D(fake)]: the generator (an encoder, for an AAE) wants its output called real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@torch.no_grad()
def discriminator_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Share of examples the discriminator classifies correctly; 0.5 when it cannot tell the two
    distributions apart."""
    hits = torch.cat([real_logits > 0, fake_logits <= 0])
    return hits.float().mean()
