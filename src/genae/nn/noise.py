"""Input corruption for denoising-style encoders (active in training mode only)."""

from __future__ import annotations

import torch
from torch import nn

from genae.config import require
from genae.errors import ConfigError

NOISE_KINDS = ("none", "gaussian", "dropout")


class InputNoise(nn.Module):
    """Corrupt the encoder's input while training: additive Gaussian noise of std `level`, or
    dropout of pixels with probability `level`; identity in eval mode."""

    def __init__(self, kind: str = "none", level: float = 0.0) -> None:
        super().__init__()
        require(kind in NOISE_KINDS, "input_noise", f"one of {list(NOISE_KINDS)}", kind)
        if kind == "dropout" and not 0.0 <= level < 1.0:
            raise ConfigError(f"noise_level: expected a probability in [0, 1), got {level}")
        if level < 0:
            raise ConfigError(f"noise_level: expected a number >= 0, got {level}")
        self.kind = kind
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.kind == "none" or self.level == 0:
            return x
        if self.kind == "gaussian":
            return x + self.level * torch.randn_like(x)
        # Inverted dropout would rescale intensities; masking alone keeps pixels in [0, 1].
        return x * (torch.rand_like(x) >= self.level)
