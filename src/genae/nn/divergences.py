"""Closed-form divergences and log-densities of diagonal Gaussians (summed over the last dim,
but for the per-unit KL), and a sample-based MMD between two sets of codes."""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)
MMD_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


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


def mmd_inverse_multiquadric(
    x: torch.Tensor, y: torch.Tensor, base_scale: float, scales: tuple[float, ...] = MMD_SCALES
) -> torch.Tensor:
    """Unbiased estimate of MMD^2 between the samples x (n, d) and y (m, d) under the inverse
    multiquadric kernel k(a, b) = c / (c + |a - b|^2), summed over c = s * base_scale for s in
    `scales` (heavy tails keep a gradient on far-off points; several widths, as in WAE-MMD).
    base_scale: about the mean squared distance between two draws of y, e.g. 2 d var(y)."""
    n, m = len(x), len(y)
    xx, yy, xy = torch.cdist(x, x).pow(2), torch.cdist(y, y).pow(2), torch.cdist(x, y).pow(2)
    off_x = 1.0 - torch.eye(n, device=x.device, dtype=x.dtype)
    off_y = 1.0 - torch.eye(m, device=y.device, dtype=y.dtype)
    total = x.new_zeros(())
    for s in scales:
        c = s * base_scale
        total = total + (c / (c + xx) * off_x).sum() / (n * (n - 1))
        total = total + (c / (c + yy) * off_y).sum() / (m * (m - 1))
        total = total - 2 * (c / (c + xy)).mean()
    return total
