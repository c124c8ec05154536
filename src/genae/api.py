"""The Python entry points: train a model (on a named dataset, your own arrays, or a torch
Dataset), evaluate and sample a run, save and load a model. The CLI is a thin layer over these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from genae.config import TrainConfig
from genae.data.memory import TensorData
from genae.data.torch_datasets import TorchData, from_torch
from genae.data.types import DatasetSplits
from genae.errors import ConfigError, DataError
from genae.metrics import MetricOptions, compute_metrics
from genae.models.base import GenerativeModel
from genae.training import rundir
from genae.training.runs import (
    Run,
    check_device,
    load_data,
    test_on_device,
    train_run,
    training_data,
)

__all__ = ["Run", "evaluate_run", "fit", "load", "resolve_data", "save"]


def resolve_data(config: TrainConfig, data: DatasetSplits | None = None) -> DatasetSplits:
    """`data` when given, else the dataset the config names (loaded from its data_dir)."""
    return load_data(config, data)


def fit(
    model: str,
    *,
    model_config: Mapping[str, Any] | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    data: DatasetSplits | TorchData | None = None,
    test_data: TorchData | None = None,
    run_dir: Path | str | None = None,
    resume: bool = False,
    force: bool = False,
) -> Run:
    """Train `model` (a registered name) and return it with its per-epoch metrics.

    model_config, train_config: the options to set; the rest take their defaults (for training
    options, the model's `training_defaults` first, e.g. M2's binarised pixels; a full
    `TrainConfig` is taken as it is). Which options were given is recorded in the run's
    config.json: a `resume` compares only those with the saved run (every field, when
    train_config is a full `TrainConfig`).
    data: instead of the config's named dataset, a map-style torch `Dataset` of (image, label)
    pairs or of images, or a `DataLoader` over one (read once into memory; images as tensors of
    floats in [0, 1] or uint8, or PIL images; labels int class indices: see
    `genae.data.torch_datasets`), or a `DatasetSplits` (e.g. from
    `genae.data.sources.from_arrays`). test_data: the test split of a torch `data`, the same
    kind of items; without it, 10% of `data` is held out as the test split by a permutation
    with seed 0 (the same split for every run). run_dir: where config, weights, checkpoints,
    metrics and grids go; needed for `resume`. force: overwrite an existing run directory.
    """
    return train_run(
        model,
        model_config=model_config,
        train_config=train_config,
        data=as_splits(data, test_data),
        run_dir=run_dir,
        resume=resume,
        force=force,
    )


def as_splits(
    data: DatasetSplits | TorchData | None, test_data: TorchData | None
) -> DatasetSplits | None:
    """fit's `data` and `test_data` as a `DatasetSplits` (None: the config's named dataset)."""
    if isinstance(data, DatasetSplits) or data is None:
        if test_data is not None:
            why = "no data was given" if data is None else "a DatasetSplits holds its own"
            raise DataError(f"test_data: only with a torch Dataset or DataLoader as data ({why})")
        return data
    if isinstance(data, TorchData):
        return from_torch(data, test_data)
    raise DataError(
        f"data: expected a torch Dataset of (image, label) pairs, a DataLoader over one, or a "
        f"DatasetSplits (genae.data.sources.from_arrays), got {type(data).__name__}"
    )


def save(model: GenerativeModel, directory: Path | str) -> None:
    """Save a model (trained by `fit`, loaded, or built by hand) to `directory`: its weights
    (model.safetensors) and a config.json with its name, config and data spec, each written
    atomically. `directory` must be new, empty, or an earlier save. `load` reads it back."""
    if not isinstance(model, GenerativeModel):
        hint = " (fit returns a Run: save run.model)" if isinstance(model, Run) else ""
        raise ConfigError(
            f"model: expected a genae model (GenerativeModel), got {type(model).__name__}{hint}"
        )
    rundir.save_model(model, Path(directory))


def load(directory: Path | str, device: str = "cpu") -> GenerativeModel:
    """The model a `save` wrote, or the trained model of a run directory, in eval mode on
    `device`."""
    check_device(device)
    return rundir.load(directory, device)


EVALUATION_SPLITS = ("test", "validation")


def evaluate_run(
    run_dir: Path | str,
    *,
    data: DatasetSplits | None = None,
    device: str = "cpu",
    metrics: Sequence[str] = (),
    options: MetricOptions | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """Test-set metrics of a finished run, with what they were computed on.

    metrics: registered metrics to add to the model's own (`genae.metrics.METRICS`: iw_nll,
    fid, ...); their provenance goes under "computed_on".
    split: "test", the final number; or "validation", the run's own validation split (carved
    again exactly as the run carved it), for choosing between runs without reading the test
    split.
    """
    if split not in EVALUATION_SPLITS:
        raise ConfigError(f"split: expected one of {', '.join(EVALUATION_SPLITS)}, got {split!r}")
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
    # Training examples as the run drew them, for baselines fit on them (k-means).
    drawn = training_data(splits, train_config, model)
    trained_on = drawn.train
    if split == "validation":
        if drawn.val is None:
            raise ConfigError(
                f"{run_dir}: the run was trained with val_size 0, no validation split"
            )
        unsealed = drawn.val
    else:
        unsealed = splits.test.unseal()  # the final evaluation: the one place the test is read
    test = test_on_device(unsealed, train_config)
    values, computed_on = compute_metrics(
        model,
        test,
        splits.name,
        metrics,
        options=options,
        eval_batch_size=train_config.eval_batch_size,
        seed=train_config.seed,
        data_dir=Path(train_config.data_dir) if train_config.data_dir else None,
        train=TensorData(trained_on, device, binarize=train_config.binarize),
        test_grey=TensorData(unsealed, device) if train_config.binarize else None,
        split=split,
    )
    result = {
        "run": str(run_dir),
        "model": model.name,
        "dataset": splits.name,
        "split": split,
        "examples": len(test),
        **values,
    }
    problem = model.result_problem(values)
    if problem:
        result[rundir.COLLAPSED] = problem
    if metrics:
        result["computed_on"] = {k: v for k, v in computed_on.items() if k in values}
    return result
