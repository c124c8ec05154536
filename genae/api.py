"""The Python entry points: train a model (on a named dataset or on your own arrays), evaluate
and sample a run. The CLI is a thin layer over these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from genae.config import TrainConfig
from genae.data.types import DatasetSplits
from genae.errors import ConfigError
from genae.metrics import MetricOptions, compute_metrics
from genae.training import rundir
from genae.training.runs import Run, check_device, load_data, test_on_device, train_run

__all__ = ["Run", "evaluate_run", "fit", "resolve_data"]


def resolve_data(config: TrainConfig, data: DatasetSplits | None = None) -> DatasetSplits:
    """`data` when given, else the dataset the config names (loaded from its data_dir)."""
    return load_data(config, data)


def fit(
    model: str,
    *,
    model_config: Mapping[str, Any] | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    data: DatasetSplits | None = None,
    run_dir: Path | str | None = None,
    resume: bool = False,
    force: bool = False,
) -> Run:
    """Train `model` (a registered name) and return it with its per-epoch metrics.

    model_config, train_config: the options to set; the rest take their defaults. Which options
    were given is recorded in the run's config.json: a `resume` compares only those with the
    saved run (every field, when train_config is a full `TrainConfig`).
    data: a `DatasetSplits` (e.g. from `genae.data.sources.from_arrays`) instead of the config's
    named dataset. run_dir: where config, weights, checkpoints, metrics and grids go; needed
    for `resume`. force: overwrite an existing run directory.
    """
    return train_run(
        model,
        model_config=model_config,
        train_config=train_config,
        data=data,
        run_dir=run_dir,
        resume=resume,
        force=force,
    )


def evaluate_run(
    run_dir: Path | str,
    *,
    data: DatasetSplits | None = None,
    device: str = "cpu",
    metrics: Sequence[str] = (),
    options: MetricOptions | None = None,
) -> dict[str, Any]:
    """Test-set metrics of a finished run, with what they were computed on.

    metrics: registered metrics to add to the model's own (`genae.metrics.METRICS`: iw_nll,
    fid, ...); their provenance goes under "computed_on".
    """
    run_dir = Path(run_dir)
    config = rundir.read_run_config(run_dir)
    check_device(device)
    train_config = replace(rundir.train_config_of(config), device=device)
    model = rundir.load(run_dir, device)
    splits = load_data(train_config, data)
    if splits.spec != model.spec:
        raise ConfigError(
            f"{run_dir}: the dataset '{splits.name}' does not match the run's data "
            f"(shape {splits.spec.shape}, expected {model.spec.shape})"
        )
    test = test_on_device(splits.test, train_config)
    values, computed_on = compute_metrics(
        model,
        test,
        splits.name,
        metrics,
        options=options,
        eval_batch_size=train_config.eval_batch_size,
        seed=train_config.seed,
        data_dir=Path(train_config.data_dir) if train_config.data_dir else None,
    )
    result = {
        "run": str(run_dir),
        "model": model.name,
        "dataset": splits.name,
        "split": "test",
        "examples": len(test),
        **values,
    }
    if metrics:
        result["computed_on"] = {k: v for k, v in computed_on.items() if k in values}
    return result
