"""Network pieces used by many models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genae.config import require
from genae.nn.elementwise import Softplus

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "softplus": Softplus,  # nn.Softplus is 4x slower on CPU (genae.nn.elementwise)
}


def require_mlp_fields(activation: str, *, min_layers: int = 0, **widths: Sequence[int]) -> None:
    """Config checks shared by every model built from `mlp`: a known activation, and for each
    named width list positive widths (at least `min_layers` of them)."""
    require(activation in ACTIVATIONS, "activation", f"one of {sorted(ACTIVATIONS)}", activation)
    for name, value in widths.items():
        require(
            len(value) >= min_layers and all(h >= 1 for h in value),
            name,
            f"{min_layers} or more positive layer widths"
            if min_layers
            else "positive layer widths",
            value,
        )


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int | None = None,
    *,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """Linear layers with an activation (and optional dropout) after each hidden layer.

    With `out_features`, a final linear layer without activation follows, so the result can feed
    a loss or a distribution head directly.
    """
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    if out_features is not None:
        layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def mlp_for_class_pairs(
    net: nn.Sequential,
    v: torch.Tensor,
    rows: torch.Tensor,
    classes: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """`net(cat([v[rows], one_hot(classes)]))`, one output row per (row, class) pair, for a `net`
    whose first module is a Linear over the concatenation. A one-hot input only selects a column
    of that layer's weight, so the layer runs once on the B rows of v and each pair adds its
    class's column, instead of running on every pair's repeated row: the widest matmul of an
    M2 step becomes K times smaller."""
    first = net[0]
    # W_v v + b through the layer itself (the class part zero), so hooks and wrappers see it
    shared = first(F.pad(v, (0, num_classes)))
    per_class = first.weight[:, -num_classes:].T  # (K, H): the column each one-hot selects
    # index_select, not shared[rows]: the same rows, and its backward is an index_add rather than
    # the sorting index_put of advanced indexing (a share of every M2 step on CPU)
    return net[1:](shared.index_select(0, rows) + per_class.index_select(0, classes))


class GaussianHead(nn.Module):
    """Maps features to the mean and log-variance of a diagonal Gaussian."""

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        self.mean = nn.Linear(in_features, latent_dim)
        self.log_var = nn.Linear(in_features, latent_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(features), self.log_var(features)


def reparameterize(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """z = mean + sigma * eps, differentiable in mean and log_var."""
    return torch.addcmul(mean, torch.randn_like(mean), torch.exp(0.5 * log_var))


def standard_normal(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """N(0, I) noise on `device`, drawn from `generator` wherever that generator lives.

    A CPU generator gives the same images on every device, which keeps sample grids comparable.
    """
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)
