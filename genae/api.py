"""The Python entry points: train a model (on a named dataset or on your own arrays), evaluate
and sample a run. The CLI is a thin layer over these."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from genae.config import TrainConfig, from_mapping, to_mapping
from genae.data.memory import TensorData, random_subset, stratified_indices
from genae.data.sources import load_dataset
from genae.data.types import DatasetSplits
from genae.errors import CheckpointError, ConfigError
from genae.metrics import MetricOptions, compute_metrics
from genae.models.base import GenerativeModel
from genae.models.registry import build_model, model_class
from genae.training import rundir
from genae.training.distributed import World, training_device, world_from_env
from genae.training.trainer import Trainer

# What may differ between a run and its --resume: everything else must match the saved config,
# or the resumed run would not be the run that was started.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "progress",
        "log_every",
        "checkpoint_every",
        "snapshot_epochs",
        "device",
        "data_dir",
        "eval_batch_size",
        "stop_on_collapse",
    }
)


@dataclass
class Run:
    """A trained (or training) model with its data and history."""

    model: GenerativeModel
    history: list[dict[str, Any]]
    run_dir: Path | None
    data: DatasetSplits


def resolve_data(config: TrainConfig, data: DatasetSplits | None = None) -> DatasetSplits:
    if data is not None:
        return data
    data_dir = Path(config.data_dir) if config.data_dir else None
    return load_dataset(
        config.dataset,
        data_dir,
        attributes=config.attributes,
        image_size=config.image_size,
        skip_bad_images=config.skip_bad_images,
    )


def check_device(name: str) -> torch.device:
    """The torch device for `name`, or a one-line error when this machine does not have it."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: expected 'cpu' or 'cuda[:N]', got '{name}'") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected 'cpu' or 'cuda[:N]', got '{name}'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' asked for, but no CUDA device is available")
    return device


def device_data(splits: DatasetSplits, config: TrainConfig) -> tuple[TensorData, TensorData]:
    """Train and test splits on the training device, as the run's config asks."""
    device = check_device(config.device)
    train_arrays = random_subset(splits.train, config.max_train_examples, config.seed)
    train = TensorData(train_arrays, device, binarize=config.binarize)
    test = TensorData(
        splits.test, device, fixed_binarization_seed=config.seed if config.binarize else None
    )
    return train, test


def labelled_subset(
    splits: DatasetSplits, model: GenerativeModel, config: TrainConfig
) -> torch.Tensor | None:
    """The indices (into the training split as trained on) that keep their labels: a seeded,
    class-balanced subset of `config.labels` examples for semi-supervised models; None when
    every label is used."""
    if config.labels == "all":
        return None
    if not model.semi_supervised:
        raise ConfigError(
            f"labels: model '{model.name}' is not semi-supervised; --labels {config.labels} "
            f"applies only to semi-supervised models"
        )
    train = random_subset(splits.train, config.max_train_examples, config.seed)
    if train.labels is None or not model.spec.num_classes:
        raise ConfigError(f"labels: dataset '{config.dataset}' has no class labels")
    n = int(config.labels)
    if n > len(train):
        raise ConfigError(
            f"labels: {n} labelled examples asked for, the training set has {len(train)}"
        )
    return stratified_indices(train.labels, n, model.spec.num_classes, config.seed)


def check_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse to overwrite an existing run unless asked; --force only clears genae run dirs."""
    if resume:
        if not (run_dir / rundir.CHECKPOINT_FILE).exists():
            raise CheckpointError(f"{run_dir}: no checkpoint to resume from")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a directory")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            raise CheckpointError(
                f"{run_dir}: run directory exists; pass --resume to continue it or --force to "
                f"overwrite it"
            )
        if not (run_dir / rundir.CONFIG_FILE).exists():
            raise CheckpointError(
                f"{run_dir}: not a genae run directory (no {rundir.CONFIG_FILE}); refusing to "
                f"delete it with --force"
            )


def prepare_run_dir(run_dir: Path, *, resume: bool, force: bool, world: World) -> None:
    """Check on every rank, then let rank 0 alone clear and create the directory."""
    check_run_dir(run_dir, resume=resume, force=force)
    world.barrier()
    if world.is_main and not resume:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    if world.is_main and resume:
        # Temporary files of writes that a kill interrupted; the files they were to replace
        # are intact.
        for stale in run_dir.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
    world.barrier()


def merged_resume_config(
    run_dir: Path,
    model: str,
    overrides: Mapping[str, Any],
    model_overrides: Mapping[str, Any],
) -> tuple[dict, TrainConfig]:
    """The saved run's configs with the caller's overrides, refusing any change that would make
    the resumed run a different run."""
    saved = rundir.read_run_config(run_dir)
    if saved["model"] != model:
        raise CheckpointError(f"{run_dir}: run is of model '{saved['model']}', not '{model}'")
    config_class = model_class(model).config_class
    saved_model = to_mapping(from_mapping(config_class, saved["model_config"]))
    wanted_model = to_mapping(from_mapping(config_class, {**saved_model, **model_overrides}))
    saved_train = to_mapping(rundir.train_config_of(saved))
    train = from_mapping(TrainConfig, {**saved_train, **overrides})
    for key, value in to_mapping(train).items():
        if value != saved_train[key] and key not in RESUMABLE_CHANGES:
            raise ConfigError(
                f"{key}: the run was started with {saved_train[key]!r}; --resume cannot change "
                f"it (only {', '.join(sorted(RESUMABLE_CHANGES))})"
            )
    for key, value in wanted_model.items():
        if value != saved_model[key]:
            raise ConfigError(
                f"{key}: the run was started with {saved_model[key]!r}; --resume cannot change "
                f"the model's configuration"
            )
    return saved_model, train


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

    data: a `DatasetSplits` (e.g. from `genae.data.sources.from_arrays`) instead of the config's
    named dataset. run_dir: where config, weights, checkpoints, metrics and grids go; needed
    for `resume`.
    """
    run_path = Path(run_dir) if run_dir is not None else None
    model_config = dict(model_config or {})
    if resume:
        if run_path is None:
            raise ConfigError("resume: needs a run directory (--out)")
        # Only what the caller set explicitly counts as a change to the saved run.
        if isinstance(train_config, TrainConfig):
            defaults = to_mapping(TrainConfig())
            train_config = {k: v for k, v in to_mapping(train_config).items() if v != defaults[k]}
        model_config, train_config = merged_resume_config(
            run_path, model, dict(train_config or {}), model_config
        )
    elif not isinstance(train_config, TrainConfig):
        train_config = from_mapping(TrainConfig, train_config or {})
    if data is not None:
        train_config = replace(train_config, dataset=data.name)
    world = world_from_env(train_config.device)
    train_config = replace(train_config, device=training_device(train_config.device, world))
    check_device(train_config.device)
    splits = resolve_data(train_config, data)
    # Build once before the run directory is touched, so that every config, data or label error
    # surfaces while an existing run is still intact.
    labelled = labelled_subset(splits, build_model(model, model_config, splits.spec), train_config)
    if run_path is not None:
        prepare_run_dir(run_path, resume=resume, force=force, world=world)
    if not resume:
        model_config = model_class(model).prepare(model_config, train_config, splits, run_path)
    torch.manual_seed(train_config.seed)
    net = build_model(model, model_config, splits.spec).to(train_config.device)
    if world.rank:  # same initial weights everywhere, but each rank its own noise
        torch.manual_seed(train_config.seed * 1_000_003 + world.rank)
    train, test = device_data(splits, train_config)
    if labelled is not None:
        train.use_labelled_subset(labelled, train_config.labelled_batch_size)
    trainer = Trainer(net, train, test, train_config, run_path, world)
    if resume:
        trainer.resume()
    history = trainer.fit()
    net.eval()
    return Run(net, history, run_path, splits)


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
    splits = resolve_data(train_config, data)
    if splits.spec != model.spec:
        raise ConfigError(
            f"{run_dir}: the dataset '{splits.name}' does not match the run's data "
            f"(shape {splits.spec.shape}, expected {model.spec.shape})"
        )
    _, test = device_data(splits, train_config)
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
