"""Image-space regularisers shared by models."""

from __future__ import annotations

import torch


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image: the summed absolute differences between
    neighbouring pixels (down and right), averaged over pixels so the weight does not depend
    on image size. images: (B, C, H, W); returns (B,)."""
    dh = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().flatten(1).sum(1)
    dw = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).sum(1)
    return (dh + dw) / images[0].numel()
