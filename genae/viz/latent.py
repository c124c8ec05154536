"""Pictures of adversarial autoencoders: the 2-D latent space over the prior, class-conditioned
sample grids, and the CAAE grid (rows: input images, columns: labels or attribute vectors).

`write_pictures(model, images, labels, out_dir)` writes whichever of them the model supports;
a report or a script calls it after training. Every file is written atomically.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from genae.io import atomic_path
from genae.models.base import GenerativeModel
from genae.viz.grids import save_grid


@torch.no_grad()
def latent_codes(model: GenerativeModel, images: torch.Tensor, batch_size: int = 1000):
    """The model's codes of uint8 or [0, 1] images, on the CPU."""
    model.eval()
    codes = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(model.device)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        codes.append(model.codes(x).cpu())
    return torch.cat(codes)


def save_latent_scatter(
    model: GenerativeModel,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    path: Path | str,
    max_points: int = 5000,
    class_names: tuple[str, ...] = (),
) -> None:
    """Scatter of the first two code dimensions coloured by class, over the prior's log-density
    (or, for priors without one, a cloud of prior samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, labels = images[:max_points], None if labels is None else labels[:max_points]
    z = latent_codes(model, images)[:, :2].numpy()
    prior = getattr(model, "prior", None)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    if prior is not None and prior.dim == 2:
        r = prior.extent()
        if prior.has_density:
            grid = torch.linspace(-r, r, 300)
            gx, gy = torch.meshgrid(grid, grid, indexing="xy")
            density = prior.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp()
            ax.imshow(
                density.view(300, 300).numpy(),
                extent=(-r, r, -r, r),
                origin="lower",
                cmap="Greys",
                alpha=0.6,
            )
        else:
            s = prior.sample(4000, torch.Generator().manual_seed(0)).numpy()
            ax.scatter(s[:, 0], s[:, 1], s=2, c="lightgrey")
        ax.set_xlim(-r, r)
        ax.set_ylim(-r, r)
    colours = labels.cpu().numpy() if labels is not None and labels.dim() == 1 else None
    points = ax.scatter(z[:, 0], z[:, 1], s=3, c=colours, cmap="tab10", alpha=0.8)
    if colours is not None:
        names = class_names or tuple(str(k) for k in np.unique(colours))
        handles = points.legend_elements()[0]
        ax.legend(handles, names[: len(handles)], loc="upper right", fontsize=7, markerscale=1.5)
    ax.set_title(f"{model.name}: test codes over the prior")
    ax.set_aspect("equal")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


@torch.no_grad()
def save_class_grid(
    model: GenerativeModel,
    path: Path | str,
    per_row: int = 10,
    generator: torch.Generator | None = None,
) -> None:
    """One row per class, each drawn with `model.sample(per_row, condition=class)`."""
    model.eval()
    rows = [
        model.sample(
            per_row,
            torch.full((per_row,), k, dtype=torch.long, device=model.device),
            generator=generator,
        )
        for k in range(getattr(model, "num_categories", 0) or model.spec.num_classes)
    ]
    images = torch.cat(rows)
    save_grid(images, per_row, path, scale=2 if images.shape[-1] <= 32 else 1)


def caae_columns(model: GenerativeModel, max_columns: int = 16) -> torch.Tensor:
    """The labels of the CAAE grid's columns: every class, or every +1/-1 combination of the
    attributes (the first log2(max_columns) of them)."""
    names = model.spec.attribute_names
    if not names:
        return torch.arange(model.spec.num_classes)
    k = min(len(names), int(np.log2(max_columns)))
    combos = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=k)))
    rest = -torch.ones(len(combos), len(names) - k)
    return torch.cat([combos, rest], dim=1)


@torch.no_grad()
def save_caae_grid(model, images: torch.Tensor, path: Path | str, rows: int = 8) -> None:
    """Rows: input images (first column), then each re-generated under every column label."""
    model.eval()
    x = images[:rows].to(model.device)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    columns = caae_columns(model).to(model.device)
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
    gen = torch.Generator().manual_seed(generator_seed)
    if hasattr(model, "relabel"):
        written.append(out_dir / "caae_grid.png")
        save_caae_grid(model, images, written[-1])
        return written
    if hasattr(model, "codes") and model.codes(images[:1].to(model.device).float()).shape[1] >= 2:
        written.append(out_dir / "latent.png")
        save_latent_scatter(model, images, labels, written[-1], class_names=model.spec.class_names)
    if model.is_conditional:
        written.append(out_dir / "class_grid.png")
        save_class_grid(model, written[-1], generator=gen)
    return written
