"""Test log-likelihood bounds.

The importance-weighted bound (Burda et al. 2016) with k posterior samples z_i ~ q(z|x):

    log p(x) >= log (1/k) sum_i p(x, z_i) / q(z_i | x)

is tighter than the ELBO for every k >= 1 (k = 1 is the ELBO in expectation) and tends to log p(x)
as k grows; `iw_nll` is its negative, in nats per image. The model supplies the log-weights
(`log_weights(batch, k) -> (B, k)`); here they are drawn in chunks of k so memory stays bounded
whatever k is, and combined with logsumexp so no weight is ever exponentiated on its own.
"""

from __future__ import annotations

import math

import torch

from genae.data.memory import TensorData
from genae.errors import ConfigError
from genae.metrics.registry import EvalContext, Result, register_metric
from genae.models.base import GenerativeModel, LogWeights

ROWS_PER_CHUNK = 20_000  # decoder rows per log_weights call (B * chunk), bounding memory


@torch.no_grad()
def importance_weighted_nll(
    model: GenerativeModel,
    data: TensorData,
    k: int = 1000,
    *,
    batch_size: int = 100,
    seed: int = 0,
) -> torch.Tensor:
    """-log (1/k) sum_i w_i for every example of `data`, (N,) float64, with its own RNG stream."""
    if not isinstance(model, LogWeights):
        raise ConfigError(
            f"metric 'iw_nll': model '{model.name}' has no tractable posterior and prior "
            f"(no log_weights)"
        )
    was_training = model.training
    model.eval()
    chunk = max(1, min(k, ROWS_PER_CHUNK // batch_size))
    out = []
    devices = [data.device] if data.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for batch in data.batches(batch_size):
            pieces = [model.log_weights(batch, min(chunk, k - i)) for i in range(0, k, chunk)]
            weights = torch.cat(pieces, dim=1).double()
            out.append(math.log(k) - torch.logsumexp(weights, dim=1))
    model.train(was_training)
    return torch.cat(out)


@register_metric("iw_nll")
def iw_nll(ctx: EvalContext) -> Result:
    """Test-set mean of the importance-weighted negative log-likelihood bound (nats/image)."""
    k = ctx.options.iw_samples
    values = importance_weighted_nll(
        ctx.model, ctx.test, k, batch_size=ctx.options.batch_size, seed=ctx.options.seed
    )
    return Result(
        {"iw_nll": float(values.mean())},
        {"split": ctx.split, "examples": len(values), "k": k, "seed": ctx.options.seed},
    )
