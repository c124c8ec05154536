"""Pictures of a trained model, written into RUN_DIR/pictures after the last epoch: its test codes
(one scatter plot for every model with a latent), a sample grid with one row per class or
category, and the relabel grid (rows: input images, columns: labels or attribute vectors).

`write_pictures(model, images, labels, out_dir)` writes whichever of them the model's declared
abilities (`genae.models.base`) allow. Every file is written atomically.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from genae.models.base import Categories, GenerativeModel, LatentCodes, LatentPrior, Relabels
from genae.viz.grids import label_names, save_grid
from genae.viz.plots import save_png, scatter_by_class

MAX_POINTS = 5000  # test codes in a scatter plot


def as_float_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 or [0, 1] images as float in [0, 1] on `device`."""
    images = images.to(device)
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def codes_of(
    model: LatentCodes,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 1000,
) -> torch.Tensor:
    """The model's codes (N, d) of uint8 or [0, 1] images, on the CPU; the labels go to an
    encoder that reads them (CVAE)."""
    model.eval()
    codes = []
    for start in range(0, len(images), batch_size):
        x = as_float_images(images[start : start + batch_size], model.device)
        y = None if labels is None else labels[start : start + batch_size].to(model.device)
        codes.append(model.latent_codes(x, y).cpu())
    return torch.cat(codes)


def save_latent_scatter(
    model: LatentCodes,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    path: Path | str,
    max_points: int = MAX_POINTS,
) -> None:
    """The first two code dimensions of test images, coloured by class, over the prior's density
    (or a cloud of its samples, for a prior without one) when the model has a 2-D prior."""
    images, labels = images[:max_points], None if labels is None else labels[:max_points]
    z = codes_of(model, images, labels)[:, :2].numpy()
    classes = labels.cpu().numpy() if labels is not None and labels.dim() == 1 else None
    names = model.spec.class_names or tuple(str(k) for k in range(model.spec.num_classes))
    prior = model.latent_prior if isinstance(model, LatentPrior) else None
    density = background = None
    if prior is not None and prior.dim == 2:
        r = prior.extent()
        if prior.has_density:
            grid = torch.linspace(-r, r, 300)
            gx, gy = torch.meshgrid(grid, grid, indexing="xy")
            log_p = prior.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1))
            density = (log_p.exp().view(300, 300).numpy(), r)
        else:
            background = prior.sample(4000, torch.Generator().manual_seed(0)).numpy()
    fig = Figure(figsize=(6, 5.2))
    ax = scatter_by_class(fig, z, classes, names, background=background, density=density)
    if prior is not None and prior.dim == 2:
        ax.set_xlim(-prior.extent(), prior.extent())
        ax.set_ylim(-prior.extent(), prior.extent())
        ax.set_aspect("equal")
    shown = "test codes over the prior" if prior is not None and prior.dim == 2 else "test codes"
    if model.latent_dim > 2:
        shown += f" (first 2 of {model.latent_dim} dimensions)"
    ax.set_title(f"{model.name}: {shown}", fontsize=10)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    save_png(fig, path)


@torch.no_grad()
def save_class_grid(
    model: GenerativeModel,
    path: Path | str,
    per_row: int = 10,
    generator: torch.Generator | None = None,
) -> None:
    """One row per class (or per category of a model with categories of its own), each drawn
    with `model.sample(per_row, condition=k)`."""
    model.eval()
    rows = model.num_categories if isinstance(model, Categories) else model.spec.num_classes
    images = torch.cat(
        [
            model.sample(
                per_row,
                torch.full((per_row,), k, dtype=torch.long, device=model.device),
                generator=generator,
            )
            for k in range(rows)
        ]
    )
    scale = 2 if images.shape[-1] <= 32 else 1
    save_grid(images, per_row, path, scale=scale, row_labels=label_names(model, range(rows)))


def relabel_columns(model: GenerativeModel, max_columns: int = 16) -> torch.Tensor:
    """The labels of the relabel grid's columns: every class, or every +1/-1 combination of the
    attributes (the first log2(max_columns) of them)."""
    names = model.spec.attribute_names
    if not names:
        return torch.arange(model.spec.num_classes)
    k = min(len(names), int(np.log2(max_columns)))
    combos = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=k)))
    rest = -torch.ones(len(combos), len(names) - k)
    return torch.cat([combos, rest], dim=1)


@torch.no_grad()
def save_relabel_grid(
    model: Relabels, images: torch.Tensor, path: Path | str, rows: int = 8
) -> None:
    """Rows: input images (first column), then each re-generated under every column label."""
    model.eval()
    x = as_float_images(images[:rows], model.device)
    columns = relabel_columns(model).to(model.device)
    tiles = []
    for image in x:
        repeated = image.unsqueeze(0).expand(len(columns), *image.shape)
        tiles += [image.unsqueeze(0), model.relabel(repeated, columns)]
    grid = torch.cat(tiles)
    save_grid(grid, len(columns) + 1, path, scale=2 if x.shape[-1] <= 32 else 1)


def write_pictures(
    model: GenerativeModel,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    out_dir: Path | str,
    generator_seed: int = 0,
) -> list[Path]:
    """Every picture `model` supports, into out_dir; returns the paths written."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    if isinstance(model, LatentCodes) and model.latent_dim >= 2:
        written.append(out_dir / "latent.png")
        save_latent_scatter(model, images, labels, written[-1])
    if isinstance(model, Relabels):  # its grid shows every label, on real images' codes
        written.append(out_dir / "caae_grid.png")
        save_relabel_grid(model, images, written[-1])
    elif model.is_conditional:
        written.append(out_dir / "class_grid.png")
        save_class_grid(model, written[-1], generator=torch.Generator().manual_seed(generator_seed))
    return written
