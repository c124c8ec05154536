"""Evaluation metrics, one module per family, each registered by name (see `registry`).

likelihood.py      iw_nll: importance-weighted bound on -log p(x)
fid.py             fid: Fréchet distance in the domain classifier's feature space (and
                   fid_second_judge: in the second judge's)
classification.py  accuracy, confusion matrix, clustering accuracy (functions);
                   conditional_accuracy and clustering_accuracy (metrics)
judge.py           the per-dataset domain classifiers (first and second), trained once and
                   cached, or shipped
anchors.py         published reference numbers shown beside ours in reports
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genae.config import suggest
from genae.data.memory import TensorData
from genae.errors import ConfigError
from genae.metrics import classification, fid, likelihood  # noqa: F401  (register metrics)
from genae.metrics.registry import METRICS, EvalContext, MetricOptions, Result
from genae.models.base import GenerativeModel
from genae.training.trainer import evaluate

__all__ = ["METRICS", "EvalContext", "MetricOptions", "Result", "compute_metrics", "parse_names"]


def parse_names(text: str | Sequence[str] | None) -> list[str]:
    """'neg_elbo,iw_nll' -> ['neg_elbo', 'iw_nll'] (order kept, duplicates dropped)."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


def compute_metrics(
    model: GenerativeModel,
    test: TensorData,
    dataset: str,
    names: Sequence[str] = (),
    *,
    options: MetricOptions | None = None,
    eval_batch_size: int = 1000,
    seed: int = 0,
    data_dir: Path | None = None,
    train: TensorData | None = None,
    test_grey: TensorData | None = None,
    split: str = "test",
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """The model's own test metrics plus the registered metrics in `names`.

    train: the run's training split, for baselines fit on it (k-means). test_grey: the test
    split's grey levels when `test` is binarised (see `EvalContext`). split: which split `test`
    holds ("test", or "validation" when choosing between runs), recorded in computed_on.
    Returns (values, computed_on): computed_on[metric] says what each number was computed on.
    A name that is neither registered nor one of the model's own metrics is a ConfigError.
    """
    options = options or MetricOptions()
    options.validate()
    values = evaluate(model, test, eval_batch_size, seed, train=train)
    unknown = [n for n in names if n not in METRICS and n not in values]
    if unknown:
        known = sorted({*METRICS, *values})
        raise ConfigError(
            f"metrics: unknown metric '{unknown[0]}' for model '{model.name}'"
            f"{suggest(unknown[0], known)}; available: {', '.join(known)}"
        )
    own = {"split": split, "examples": len(test), "seed": seed}
    computed_on: dict[str, dict[str, Any]] = {name: own for name in values}
    ctx = EvalContext(model, test, dataset, options, data_dir, test_grey, split)
    for name in names:
        if name in METRICS:
            result = METRICS[name](ctx)
            values.update(result.values)
            computed_on.update(
                {key: result.about_each.get(key, result.about) for key in result.values}
            )
    return values, computed_on
