"""Matplotlib figures for reports, returned as PNG bytes (Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def curves_png(
    series: dict[str, tuple[Sequence[int], Sequence[float]]], ylabel: str, title: str = ""
) -> bytes:
    """One line per run: x = epochs, y = the metric."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
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
    return _png(fig)


def latent_scatter_png(
    codes: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str], title: str
) -> bytes:
    """2-D codes as points, coloured by class (tab10), with a legend of class names."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=2, alpha=0.5, color="tab:blue")
    else:
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for k in np.unique(labels):
            chosen = labels == k
            name = class_names[k] if k < len(class_names) else str(k)
            ax.scatter(
                codes[chosen, 0],
                codes[chosen, 1],
                s=2,
                alpha=0.6,
                color=cmap(int(k)),
                label=name,
                rasterized=True,
            )
        ax.legend(
            markerscale=5, fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5)
        )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.grid(alpha=0.3)
    return _png(fig)
