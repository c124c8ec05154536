"""Matplotlib figures, built with the object-oriented API (no pyplot: no global figure state and
no display backend to choose), saved as PNG bytes or files."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from genae.io import atomic_path

DPI = 110


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def save_png(fig: Figure, path: Path | str) -> None:
    """The figure as a PNG file, written atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


def curves_png(
    series: dict[str, tuple[Sequence[int], Sequence[float]]], ylabel: str, title: str = ""
) -> bytes:
    """One line per run: x = epochs, y = the metric."""
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    for name, (epochs, values) in series.items():
        ax.plot(epochs, values, marker="o", markersize=3, linewidth=1.6, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    epochs_all = sorted({e for xs, _ in series.values() for e in xs})
    if len(epochs_all) <= 20:
        ax.set_xticks(epochs_all)
    return png_bytes(fig)


def scatter_by_class(
    fig: Figure,
    points: np.ndarray,
    labels: np.ndarray | None,
    class_names: Sequence[str],
    background: np.ndarray | None = None,
    density: tuple[np.ndarray, float] | None = None,
):
    """Axes with 2-D points coloured by class (tab10, tab20 beyond 10 classes) and a legend of
    class names. Underneath: a density image (values on a square grid, half-width) or a grey
    cloud of background points (e.g. prior samples), when given."""
    ax = fig.add_subplot()
    if density is not None:
        values, r = density
        ax.imshow(values, extent=(-r, r, -r, r), origin="lower", cmap="Greys", alpha=0.6)
    if background is not None:
        ax.scatter(background[:, 0], background[:, 1], s=2, c="lightgrey", rasterized=True)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6, color="tab:blue", rasterized=True)
    else:
        cmap = matplotlib.colormaps["tab10" if labels.max() < 10 else "tab20"]
        for k in np.unique(labels):
            chosen = labels == k
            ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=3,
                alpha=0.7,
                color=cmap(int(k) % cmap.N),
                label=class_names[k] if k < len(class_names) else str(k),
                rasterized=True,
            )
        ax.legend(
            markerscale=4, fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5)
        )
    ax.grid(alpha=0.3)
    return ax
