"""Image grids written as PNG (atomically), with the class of each row written beside it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from genae.io import atomic_path
from genae.models.base import (
    GenerativeModel,
    TemperedPrior,
    check_temperature,
    tempered_sample,
)
from genae.nn.blocks import standard_normal

LABEL_GAP = 4  # pixels between the widest row label and the grid


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


def with_row_labels(
    grid: Image.Image, labels: Sequence[str], row_top: int, row_pitch: int, row_height: int
) -> Image.Image:
    """`grid` with a white margin on its left holding labels[r] beside row r, right-aligned
    and vertically centred on the row (rows start at `row_top`, every `row_pitch` pixels)."""
    # The font's size follows the rows, so that labels of 8x8 digits do not overlap.
    font = ImageFont.load_default(size=max(8, min(14, round(row_height * 0.7))))
    boxes = [font.getbbox(label) for label in labels]
    margin = max(right for _, _, right, _ in boxes) + 2 * LABEL_GAP
    picture = Image.new(grid.mode, (grid.width + margin, grid.height), "white")
    picture.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(picture)
    for r, (label, (_, top, right, bottom)) in enumerate(zip(labels, boxes)):
        centre = row_top + r * row_pitch + row_height / 2
        position = (margin - LABEL_GAP - right, round(centre - (top + bottom) / 2))
        draw.text(position, label, fill="black", font=font)
    return picture


def save_grid(
    images: torch.Tensor,
    per_row: int,
    path: Path | str,
    scale: int = 1,
    row_labels: Sequence[str] = (),
    padding: int = 2,
) -> None:
    """Save images as one PNG grid; `scale` enlarges small images with nearest neighbours;
    `row_labels` (one per row, or none) are written on the left of their rows."""
    picture = Image.fromarray(tile(images, per_row, padding))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    if row_labels:
        rows = (len(images) + per_row - 1) // per_row
        if len(row_labels) != rows:
            raise ValueError(f"row_labels: expected {rows} (one per row), got {len(row_labels)}")
        height = images.shape[-2]
        picture = with_row_labels(
            picture,
            row_labels,
            row_top=padding * scale,
            row_pitch=(height + padding) * scale,
            row_height=height * scale,
        )
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def label_names(model: GenerativeModel, labels: Sequence[int]) -> list[str]:
    """What labels `labels` of `model`'s grids are called: the dataset's class names; for a
    model whose categories are its own (clusters, M2 with no labels), "category k"."""
    if not model.categories_are_classes:
        return [f"category {k}" for k in labels]
    names = model.spec.class_names
    return [names[k] if k < len(names) else f"class {k}" for k in labels]


@torch.no_grad()
def sample_grid(
    model: GenerativeModel,
    n: int = 64,
    label: int | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, int]:
    """Samples and the number per row. A class-conditional model without a chosen label gives
    one row per class with the same noise in each column, so rows differ only by the label (and,
    under a learned p(z|y), by where that label's prior puts the noise). temperature: scales the
    spread of a Gaussian prior (`TemperedPrior`); other models take 1 only."""
    check_temperature(model, temperature)
    if model.grid_labels(1) is not None and label is None:
        per_row = 10
        labels = model.grid_labels(per_row)
        repeats = len(labels) // per_row
        if isinstance(model, TemperedPrior):
            eps = standard_normal((per_row, model.latent_dim), generator, model.device)
            z = model.prior_codes(eps.repeat(repeats, 1), labels, temperature)
        else:
            z = model.prior_sample(per_row, generator).repeat(repeats, 1)
        return model.generate(z, labels), per_row
    condition = None
    if label is not None:
        condition = torch.full((n,), label, dtype=torch.long, device=model.device)
    return tempered_sample(model, n, condition, generator, temperature), 8


def sample_grid_row_labels(
    model: GenerativeModel, n: int, per_row: int, label: int | None = None
) -> list[str]:
    """The row labels of `sample_grid`'s picture: each row's class (the chosen `label` on
    every row); none for an unconditional model."""
    rows = (n + per_row - 1) // per_row
    if label is not None:
        return label_names(model, [label]) * rows
    grid_labels = model.grid_labels(1)
    if grid_labels is None:
        return []
    return label_names(model, grid_labels.tolist())


def save_sample_grid(
    model: GenerativeModel,
    path: Path | str,
    n: int = 64,
    label: int | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> None:
    """A grid of samples (see `sample_grid`) with each row's class written on its left."""
    was_training = model.training
    model.eval()
    images, per_row = sample_grid(model, n, label, generator, temperature)
    model.train(was_training)
    scale = 2 if images.shape[-1] <= 32 else 1
    row_labels = sample_grid_row_labels(model, len(images), per_row, label)
    save_grid(images, per_row, path, scale=scale, row_labels=row_labels)
