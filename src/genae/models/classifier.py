"""A small convolutional image classifier: the "domain classifier" that judges generated images.

    loss(x, y) = -log softmax(f(x))_y          (cross-entropy, one phase of the common trainer)

Conv blocks (conv 3x3 -> BatchNorm -> ReLU -> 2x2 max-pool) and an MLP head with
dropout; optionally, training batches are randomly shifted by up to `shift` pixels (cheap,
label-preserving augmentation for longer training). The penultimate layer (`features`) is
the embedding FID is computed in. A classifier does not generate: it is trained and evaluated
like any other model, but has no prior and no decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genae.config import require
from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.models.base import Batch, GenerativeModel, LossTerms
from genae.models.registry import register


@dataclass
class ClassifierConfig:
    block_channels: tuple[int, ...] = (32, 64, 128)
    """Channels of each conv block (3x3 conv, BatchNorm, ReLU, 2x2 max-pool), comma-separated."""
    feature_width: int = 256
    """Width of the penultimate layer (the FID embedding)."""
    dropout: float = 0.3
    """Dropout probability before the output layer, in [0, 1)."""
    # Off by default: at 10 epochs of constant-rate Adam it cost Fashion-MNIST test accuracy
    # (0.906-0.918 with 2 pixels).
    shift: int = 0
    """Random translation of training batches, in pixels; 0: none."""

    def validate(self) -> None:
        require(
            len(self.block_channels) >= 1 and all(c >= 1 for c in self.block_channels),
            "block_channels",
            "one or more positive channel counts",
            self.block_channels,
        )
        require(self.feature_width >= 1, "feature_width", "an integer >= 1", self.feature_width)
        require(0.0 <= self.dropout < 1.0, "dropout", "a probability in [0, 1)", self.dropout)
        require(self.shift >= 0, "shift", "an integer >= 0", self.shift)


def conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),  # BatchNorm has the bias
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """The batch translated by one random (dy, dx) in [-max_shift, max_shift], zero-filled.

    One shift per batch rather than per image: a slice instead of a gather (per-image shifts cost
    a fifth of a CPU training step), and over an epoch every image still sees many shifts."""
    _, _, h, w = x.shape
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,)).tolist()
    padded = F.pad(x, (max_shift,) * 4)
    return padded[:, :, dy : dy + h, dx : dx + w]


@register
class Classifier(GenerativeModel):
    """Image classifier (not generative): the domain classifier of fid and conditional_accuracy."""

    name = "classifier"
    config_class = ClassifierConfig
    needs_labels = True
    generative = False
    console_metrics = ("train_loss", "train_accuracy", "val_accuracy")

    def __init__(self, config: ClassifierConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if not spec.has_class_labels:
            raise ConfigError(
                "model 'classifier' needs class labels; this dataset has attribute vectors"
            )
        c, h, w = spec.shape
        blocks, size = [], min(h, w)
        for out_channels in config.block_channels:
            pool = size >= 4  # keep at least a 2x2 map on small (8x8) images
            blocks.append(conv_block(c, out_channels, pool))
            c, size = out_channels, size // 2 if pool else size
            h, w = (h // 2, w // 2) if pool else (h, w)
        self.body = nn.Sequential(*blocks)
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, config.feature_width), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(config.feature_width, spec.num_classes)
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations (B, features) of images in [0, 1]: the FID embedding."""
        return self.embed(self.body(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K) of images in [0, 1]."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """`model(x)`: class logits (B, K) of images x (B, C, H, W) in [0, 1] (y is unused)."""
        return self.logits(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most likely class of each image (B,)."""
        return self.logits(x).argmax(-1)

    def loss(self, batch: Batch) -> LossTerms:
        x = batch.x
        if self.config.shift and self.training:
            x = random_shift(x, self.config.shift)
        logits = self.logits(x)
        nll = F.cross_entropy(logits, batch.y)
        accuracy = (logits.detach().argmax(-1) == batch.y).float().mean()
        return {"loss": nll, "accuracy": accuracy}

    def evaluate(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.logits(batch.x)
        return {
            "accuracy": (logits.argmax(-1) == batch.y).double(),
            "nll": F.cross_entropy(logits, batch.y, reduction="none"),
        }

    # --- no generation ------------------------------------------------------------------------
    def _no_generation(self) -> ConfigError:
        return ConfigError("model 'classifier' is a classifier; it does not generate images")

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise self._no_generation()

    def generate(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        raise self._no_generation()

    def sample(self, n, condition=None, generator=None) -> torch.Tensor:  # type: ignore[override]
        raise self._no_generation()
