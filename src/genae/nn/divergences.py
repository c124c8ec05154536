"""Closed-form divergences and log-densities of diagonal Gaussians (summed over the last dim,
but for the per-unit KL)."""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def kl_normal_standard_units(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL( N(mean, exp(log_var)) || N(0, I) ) of each unit (not summed), in nats."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var)


def kl_normal_standard(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL( N(mean, exp(log_var)) || N(0, I) ) per row, in nats."""
    return kl_normal_standard_units(mean, log_var).sum(-1)


def log_normal_diag(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_var))) per row."""
    return -0.5 * (LOG_2PI + log_var + (x - mean).pow(2) * torch.exp(-log_var)).sum(-1)


def log_normal_standard(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) per row."""
    return -0.5 * (LOG_2PI + x.pow(2)).sum(-1)
