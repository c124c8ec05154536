"""Image grids written as PNG (atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genae.io import atomic_path
from genae.models.base import GenerativeModel


def tile(images: torch.Tensor, per_row: int, padding: int = 2) -> np.ndarray:
    """Tile (N, C, H, W) images in [0, 1] into one uint8 array (rows, cols[, C]) with a border."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    rows = (n + per_row - 1) // per_row
    canvas = torch.ones(c, rows * (h + padding) + padding, per_row * (w + padding) + padding)
    for i in range(n):
        r, col = divmod(i, per_row)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        canvas[:, top : top + h, left : left + w] = images[i]
    array = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if c == 1 else array


def save_grid(images: torch.Tensor, per_row: int, path: Path | str, scale: int = 1) -> None:
    """Save images as one PNG grid; `scale` enlarges small images with nearest neighbours."""
    picture = Image.fromarray(tile(images, per_row))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def sample_grid(
    model: GenerativeModel,
    n: int = 64,
    label: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Samples and the number per row. A class-conditional model without a chosen label gives
    one row per class with the same noise in each column, so rows differ only by the label."""
    if model.grid_labels(1) is not None and label is None:
        per_row = 10
        labels = model.grid_labels(per_row)
        z = model.prior_sample(per_row, generator).repeat(len(labels) // per_row, 1)
        return model.generate(z, labels), per_row
    condition = None
    if label is not None:
        condition = torch.full((n,), label, dtype=torch.long, device=model.device)
    return model.sample(n, condition, generator=generator), 8


def save_sample_grid(
    model: GenerativeModel,
    path: Path | str,
    n: int = 64,
    label: int | None = None,
    generator: torch.Generator | None = None,
) -> None:
    was_training = model.training
    model.eval()
    images, per_row = sample_grid(model, n, label, generator)
    model.train(was_training)
    scale = 2 if images.shape[-1] <= 32 else 1
    save_grid(images, per_row, path, scale=scale)
