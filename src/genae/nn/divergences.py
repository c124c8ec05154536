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


def kl_normal_diag_units(
    mean: torch.Tensor,
    log_var: torch.Tensor,
    prior_mean: torch.Tensor,
    prior_log_var: torch.Tensor,
) -> torch.Tensor:
    """KL( N(mean, exp(log_var)) || N(prior_mean, exp(prior_log_var)) ) of each unit (not
    summed), in nats: 0.5 (log s2^2/s1^2 + (s1^2 + (m1 - m2)^2) / s2^2 - 1)."""
    return 0.5 * (
        prior_log_var
        - log_var
        + (log_var.exp() + (mean - prior_mean).pow(2)) * torch.exp(-prior_log_var)
        - 1.0
    )


def kl_normal_diag(
    mean: torch.Tensor,
    log_var: torch.Tensor,
    prior_mean: torch.Tensor,
    prior_log_var: torch.Tensor,
) -> torch.Tensor:
    """KL( N(mean, exp(log_var)) || N(prior_mean, exp(prior_log_var)) ) per row, in nats."""
    return kl_normal_diag_units(mean, log_var, prior_mean, prior_log_var).sum(-1)


def log_normal_diag(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_var))) per row."""
    return -0.5 * (LOG_2PI + log_var + (x - mean).pow(2) * torch.exp(-log_var)).sum(-1)


def log_normal_standard(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) per row."""
    return -0.5 * (LOG_2PI + x.pow(2)).sum(-1)
