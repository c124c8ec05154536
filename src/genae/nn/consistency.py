"""The label-consistency term of conditional generators: the classification loss of CVAE-GAN
(Bao et al. 2017), shared by the conditional conv VAE and the CAAE.

An auxiliary classifier f learns the classes from real images alone (`real_loss`); the
generator is charged the cross-entropy of its images for the labels it was asked to draw, under
f held fixed (`generated_loss`). Holding f fixed matters: were it trained on the generated images
too, it would learn to accept whatever the generator draws, and the term would teach nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.nn.conv import LEAKY_SLOPE, ConvEncoder, ConvStyle

# Three stride-2 conv stages (the default width) without BatchNorm: judging a batch of generated
# images then leaves no trace in f (no batch statistics to update).
CHANNELS = (32, 64, 128)
STYLE = ConvStyle(kernel=4, batch_norm=False, activation=lambda: nn.LeakyReLU(LEAKY_SLOPE))


class LabelConsistency(nn.Module):
    """f: images (B, C, H, W) in [0, 1] -> class logits, and the two cross-entropies."""

    def __init__(
        self, shape: tuple[int, int, int], num_classes: int, channels: tuple[int, ...] = CHANNELS
    ) -> None:
        super().__init__()
        body = ConvEncoder(shape, channels, style=STYLE)
        self.classifier = nn.Sequential(body, nn.Linear(body.out_features, num_classes))

    @classmethod
    def for_spec(cls, spec: DataSpec, channels: tuple[int, ...], option: str) -> LabelConsistency:
        """f for a dataset of class labels; a ConfigError naming `option` (the weight that asked
        for it) for attribute vectors or unlabelled data, which have no class to judge."""
        if not spec.has_class_labels:
            raise ConfigError(
                f"{option}: needs class labels, and this dataset has attributes or none"
            )
        return cls(spec.shape, spec.num_classes, channels)

    def real_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CE(f(x), y) on real images: what trains f."""
        return F.cross_entropy(self.classifier(images), labels)

    def generated_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CE(f(x_y), y) on generated images, with f's weights as constants: its gradient
        reaches the generator only."""
        frozen = {name: p.detach() for name, p in self.classifier.named_parameters()}
        return F.cross_entropy(functional_call(self.classifier, frozen, (images,)), labels)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """f's class for each image."""
        return self.classifier(images).argmax(-1)
