"""The losses of adversarial training, shared by every adversarial model.

A discriminator emits one logit per example: positive means "from the target distribution"
(the prior, or real images). Losses use the non-saturating form of Goodfellow et al. (2014):
the generator maximises log D(fake) rather than minimising log(1 - D(fake)), which keeps its
gradient alive while the discriminator is winning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Adam betas for adversarial phases. GAN practice (Radford et al. 2016): a low first-moment decay
# keeps the updates responsive to the opponent's latest move.
ADVERSARIAL_BETAS = (0.5, 0.999)


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


# A discriminator right this often, averaged over a whole epoch, has won the game outright.
COLLAPSE_ACCURACY = 0.999


def adversarial_collapse(train_means: dict[str, float]) -> str | None:
    """A one-line diagnosis when some discriminator's mean accuracy over the epoch reached
    COLLAPSE_ACCURACY, else None. `train_means` holds the epoch's training averages keyed
    "phase.term"; discriminator phases report "...accuracy" terms.

    Once a discriminator separates (nearly) every example, the opponent's adversarial term no
    longer steers it anywhere useful; on Fashion-MNIST a CAAE in this state had stopped using its
    code at all (every image of a class decoded to one template)."""
    won = {
        key: value
        for key, value in train_means.items()
        if "discriminator" in key.split(".")[0]
        and key.endswith("accuracy")
        and value >= COLLAPSE_ACCURACY
    }
    if not won:
        return None
    which = ", ".join(f"{k} {v:.4f}" for k, v in sorted(won.items()))
    return (
        f"the adversarial game collapsed: mean discriminator accuracy over the epoch {which}; "
        "its opponent no longer fools it (lower that adversarial weight, or change the learning "
        "rates); stop_on_collapse false (--no-stop-on-collapse) trains on regardless"
    )
