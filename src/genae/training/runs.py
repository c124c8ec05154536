"""Training a run, and the helper networks a model needs trained before it.

`train_run` is the core of `genae.api.fit`: it parses the configs once, draws the examples a run
trains on once, checks everything that can fail before an existing run directory is touched,
builds the model once and trains it with the one trainer.

`ensure_run` trains or loads a helper network (the M1 of M1+M2, DFC-VAE's feature network, the
judge of the metrics) through the same `train_run`, into one layout:

    RUN_DIR/<role>                           a helper of one run (M1+M2's m1)
    <cache>/runs/<role>-<dataset>-<key>      a helper shared by runs (the judge, DFC features)

where <key> hashes the helper's model, its configs and the data. A helper is trained in a
temporary directory beside its place and renamed into it, so a crash or a concurrent run never
leaves a half-trained helper where it would be found.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from genae.config import TrainConfig, from_mapping, to_mapping
from genae.data.cache import cache_dir
from genae.data.memory import TensorData, random_subset, stratified_indices, validation_split
from genae.data.sources import load_dataset
from genae.data.types import DatasetSplits, ImageArrays, SealedSplit
from genae.errors import CheckpointError, ConfigError
from genae.models.base import GenerativeModel, Pretrained, TrainingSet
from genae.models.registry import model_class
from genae.runtime import flushing_denormals
from genae.training import rundir
from genae.training.distributed import World, training_device, world_from_env
from genae.training.rundir import API_OPTIONS, OptionNames
from genae.training.tensorboard import check_available as check_tensorboard
from genae.training.trainer import Trainer, evaluate

# What may differ between a run and its --resume: everything else must match the saved config,
# or the resumed run would not be the run that was started. The same options do not change what
# a run learns, so they are left out of a shared helper's cache key.
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
        "tensorboard",
    }
)
RUNS_CACHE = "runs"  # cache_dir(RUNS_CACHE) holds the helpers shared between runs
# The validation split by default: the customary 5,000 of a 60,000-image training split
# (MNIST, Fashion-MNIST), else this share of the training split.
STANDARD_VAL_SIZES = {60_000: 5_000}
DEFAULT_VAL_FRACTION = 0.1
TEST_PREFIX = "test_"  # the final evaluation's keys in the last row of metrics.jsonl
VAL_PREFIX = "val_"  # the per-epoch evaluation's keys


@dataclass
class Run:
    """A trained (or training) model with its data and history."""

    model: GenerativeModel
    history: list[dict[str, Any]]
    run_dir: Path | None
    data: DatasetSplits


@dataclass(frozen=True)
class TrainingData:
    """The examples a run trains, validates and is finally tested on, drawn once from the
    dataset's splits."""

    train: ImageArrays  # the training split as trained on (a seeded subset, if asked for)
    val: ImageArrays | None  # carved out of the training split; None: --val-size 0
    test: SealedSplit  # read once, by the final evaluation
    labelled: torch.Tensor | None  # indices into `train` that keep their labels; None: all


@dataclass(frozen=True)
class Helper:
    """A trained helper network, loaded in eval mode, and the run directory it came from."""

    model: GenerativeModel
    run_dir: Path


# --- data -----------------------------------------------------------------------------------------


def load_data(config: TrainConfig, data: DatasetSplits | None = None) -> DatasetSplits:
    """`data` when given, else the config's named dataset."""
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
        raise ConfigError(f"device: expected 'cpu' or 'cuda[:N]', got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected 'cpu' or 'cuda[:N]', got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' asked for, but no CUDA device is available")
    return device


def labelled_subset(
    train: ImageArrays,
    splits: DatasetSplits,
    model: GenerativeModel,
    config: TrainConfig,
) -> torch.Tensor | None:
    """The indices (into `train`, the training split as trained on) that keep their labels: a
    seeded, class-balanced subset of `config.labels` examples for semi-supervised models; None
    when every label is used."""
    if config.labels == "all":
        return None
    if not model.semi_supervised:
        raise ConfigError(
            f"labels: model '{model.name}' is not semi-supervised; --labels {config.labels} "
            f"applies only to semi-supervised models"
        )
    num_classes = splits.spec.num_classes
    if train.labels is None or not num_classes:
        raise ConfigError(f"labels: dataset '{config.dataset}' has no class labels")
    n = int(config.labels)
    if n >= len(train):  # the unlabelled examples are what an epoch runs over
        raise ConfigError(
            f"labels: {n} labelled examples asked for, the training set has {len(train)}"
            + ("; for every label use 'all'" if n == len(train) else "")
        )
    return stratified_indices(train.labels, n, num_classes, config.seed)


def resolve_val_size(val_size: int | None, training_size: int) -> int:
    """The validation split's size: `val_size` when set, else the default for a training split
    of `training_size` examples; a one-line error when it would leave nothing to train on."""
    if val_size is None:
        default = STANDARD_VAL_SIZES.get(training_size)
        val_size = default if default is not None else round(training_size * DEFAULT_VAL_FRACTION)
    if not 0 <= val_size < training_size:
        raise ConfigError(
            f"val_size: expected 0 to {training_size - 1} (fewer than the training split's "
            f"{training_size} examples), got {val_size}"
        )
    return val_size


def training_data(
    splits: DatasetSplits, config: TrainConfig, model: GenerativeModel
) -> TrainingData:
    """The validation split, the training subset and the labelled subset of a run, each drawn
    once (seeded) and in this order, so neither --max-train-examples nor --labels changes which
    examples validate. config.val_size None: the default size (`resolve_val_size`)."""
    val_size = resolve_val_size(config.val_size, len(splits.train))
    rest, val = validation_split(splits.train, val_size, splits.spec.num_classes, config.seed)
    train = random_subset(rest, config.max_train_examples, config.seed)
    return TrainingData(train, val, splits.test, labelled_subset(train, splits, model, config))


def training_set(data: TrainingData, config: TrainConfig) -> TrainingSet:
    """The training examples as a model's config is fitted to them (`adopt_training_set`)."""
    labelled = len(data.train) if data.labelled is None else len(data.labelled)
    return TrainingSet(data.train, labelled, config.binarize, config.seed)


def test_on_device(test: ImageArrays, config: TrainConfig) -> TensorData:
    """An evaluation split (validation or the unsealed test split) on the run's device,
    binarised once with the run's seed if the run binarises."""
    return TensorData(
        test,
        check_device(config.device),
        fixed_binarization_seed=config.seed if config.binarize else None,
    )


def on_device(data: TrainingData, config: TrainConfig) -> tuple[TensorData, TensorData | None]:
    """Training and validation splits on the training device, as the run's config asks."""
    train = TensorData(data.train, check_device(config.device), binarize=config.binarize)
    if data.labelled is not None:
        train.use_labelled_subset(
            data.labelled, config.labelled_batch_size, config.labelled_schedule
        )
    val = test_on_device(data.val, config) if data.val is not None else None
    return train, val


def evaluate_test_once(trainer: Trainer, test: SealedSplit, config: TrainConfig) -> None:
    """The run's one read of the test split, after its last epoch: its metrics, prefixed
    `test_`, join the last row of the history and metrics.jsonl. A run resumed after this
    (with the same epochs) finds them there and reads nothing; one continued for more epochs
    drops those of its shorter self and is tested again at its own end."""
    history = trainer.history
    if not history or any(key.startswith(TEST_PREFIX) for key in history[-1]):
        return
    for row in history[:-1]:
        for key in [k for k in row if k.startswith(TEST_PREFIX)]:
            del row[key]
    split = test_on_device(test.unseal(), config)
    values = evaluate(
        trainer.model,
        split,
        config.eval_batch_size,
        config.seed,
        trainer.world,
        train=trainer.train_data,
    )
    history[-1].update({TEST_PREFIX + name: value for name, value in values.items()})
    problem = trainer.model.result_problem(values)
    if problem:  # kept with the numbers, so reports and claims show the run as collapsed
        history[-1][TEST_PREFIX + rundir.COLLAPSED] = problem
        if trainer.world.is_main:
            print(f"warning: {problem}", file=sys.stderr)
    if trainer.run_dir is not None:
        trainer.save_checkpoint()  # holds the history: a resume then reads no test split
        if trainer.world.is_main:
            rundir.write_metrics(trainer.run_dir, history)


# --- run directories and configs ------------------------------------------------------------------


def check_run_dir(
    run_dir: Path, *, resume: bool, force: bool, options: OptionNames = API_OPTIONS
) -> None:
    """Refuse to overwrite an existing run unless asked; force only clears genae run dirs.
    options: how messages name resume and force (API arguments or CLI flags)."""
    if resume:
        if not (run_dir / rundir.CHECKPOINT_FILE).exists():
            raise CheckpointError(f"{run_dir}: no checkpoint to resume from")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a directory")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            raise CheckpointError(
                f"{run_dir}: run directory exists; pass {options.resume} to continue it or "
                f"{options.force} to overwrite it"
            )
        if not (run_dir / rundir.CONFIG_FILE).exists():
            raise CheckpointError(
                f"{run_dir}: not a genae run directory (no {rundir.CONFIG_FILE}); refusing to "
                f"delete it with {options.force}"
            )


def prepare_run_dir(
    run_dir: Path,
    *,
    resume: bool,
    force: bool,
    world: World,
    options: OptionNames = API_OPTIONS,
) -> None:
    """Check on every rank, then let rank 0 alone clear and create the directory."""
    check_run_dir(run_dir, resume=resume, force=force, options=options)
    world.barrier()
    if world.is_main and not resume:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    if world.is_main and resume:
        # Temporary files (and helper directories) of writes that a kill interrupted; what
        # they were to replace is intact.
        for stale in run_dir.rglob(".*.tmp"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
    world.barrier()


def explicit_options(
    model_config: Mapping[str, Any] | None, train_config: TrainConfig | Mapping[str, Any] | None
) -> dict[str, list[str]]:
    """The option names the caller set: a mapping's keys; every field of a full TrainConfig."""
    if isinstance(train_config, TrainConfig):
        train = [f.name for f in dataclasses.fields(TrainConfig)]
    else:
        train = [key.replace("-", "_") for key in train_config or {}]
    model = [key.replace("-", "_") for key in model_config or {}]
    return {"train": sorted(train), "model": sorted(model)}


def resumed_configs(
    run_dir: Path,
    model: type[GenerativeModel],
    model_overrides: Mapping[str, Any],
    train_overrides: Mapping[str, Any],
    options: OptionNames = API_OPTIONS,
) -> tuple[Any, TrainConfig, dict[str, list[str]]]:
    """The saved run's configs with the caller's explicit options, refusing any change that
    would make the resumed run a different run; and the options set explicitly when it started."""
    saved = rundir.read_run_config(run_dir)
    if saved["model"] != model.name:
        raise CheckpointError(f"{run_dir}: run is of model '{saved['model']}', not '{model.name}'")
    saved_model = to_mapping(from_mapping(model.config_class, saved["model_config"]))
    wanted_model = from_mapping(
        model.config_class, {**saved_model, **model_overrides}, where=f"{model.name} config"
    )
    saved_train = to_mapping(rundir.train_config_of(saved))
    train = from_mapping(TrainConfig, {**saved_train, **train_overrides})
    for key, value in to_mapping(train).items():
        if value != saved_train[key] and key not in RESUMABLE_CHANGES:
            raise ConfigError(
                f"{key}: the run was started with {saved_train[key]!r}; {options.resume} cannot "
                f"change it (only {', '.join(sorted(RESUMABLE_CHANGES))})"
            )
    for key, value in to_mapping(wanted_model).items():
        if value != saved_model[key]:
            raise ConfigError(
                f"{key}: the run was started with {saved_model[key]!r}; {options.resume} cannot "
                f"change the model's configuration"
            )
    return wanted_model, train, saved.get("explicit", {})


def merged_explicit(*records: Mapping[str, list[str]]) -> dict[str, list[str]]:
    return {
        part: sorted({name for record in records for name in record.get(part, [])})
        for part in ("train", "model")
    }


# --- training a run -------------------------------------------------------------------------------


@flushing_denormals()  # the speed depends on it; see genae/runtime.py
def train_run(
    model: str,
    *,
    model_config: Mapping[str, Any] | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    data: DatasetSplits | None = None,
    run_dir: Path | str | None = None,
    resume: bool = False,
    force: bool = False,
    world: World | None = None,
    final_test: bool = True,
    options: OptionNames = API_OPTIONS,
) -> Run:
    """Train `model` (a registered name); see `genae.api.fit`. world: the processes training
    together; None: as torchrun describes in the environment (a world of one without it).
    final_test: evaluate the test split once after the last epoch (helper networks, trained
    while another run is being prepared, are not: that run's test split stays unread).
    options: how messages name resume, force and run_dir (`rundir.CLI_OPTIONS` for the CLI)."""
    run_path = Path(run_dir) if run_dir is not None else None
    cls = model_class(model)
    explicit = explicit_options(model_config, train_config)
    if isinstance(train_config, TrainConfig):
        train_overrides = to_mapping(train_config)
    else:
        train_overrides = dict(train_config or {})
    if data is not None:  # the data name their dataset
        train_overrides["dataset"] = data.name
        explicit = merged_explicit(explicit, {"train": ["dataset"]})
    if resume:
        if run_path is None:
            raise ConfigError(f"resume: needs a run directory ({options.run_dir})")
        if train_overrides.get("val_size") is None:  # the default: the size the run resolved
            train_overrides.pop("val_size", None)
        config, train, started = resumed_configs(
            run_path, cls, model_config or {}, train_overrides, options
        )
        explicit = merged_explicit(started, explicit)
    else:
        config = from_mapping(cls.config_class, model_config or {}, where=f"{model} config")
        train = from_mapping(TrainConfig, {**cls.training_defaults, **train_overrides})
    world = world if world is not None else world_from_env(train.device)
    train = replace(train, device=training_device(train.device, world))
    check_device(train.device)
    check_tensorboard(train)
    splits = load_data(train, data)
    train = replace(train, val_size=resolve_val_size(train.val_size, len(splits.train)))
    config = cls.resolve_for_data(config, splits.spec)
    # Helpers that exist now (a run the user named, a cached one, this run's own on --resume)
    # are loaded before anything is written: the model checks them and takes its architecture
    # from them. Those still missing are trained once the run directory is ready.
    helpers: dict[str, GenerativeModel] = {}
    missing: list[Pretrained] = []
    for need in cls.pretrained(config):
        if not (need.run_dir or need.shared or run_path):
            raise ConfigError(
                f"{option_of(need)}: needs a trained '{need.model}' run, or a run directory to "
                f"train one in"
            )
        place = helper_place(need, splits, train, run_path)
        if need.run_dir or (is_finished(place) and (need.shared or resume)):
            helpers[need.role] = load_helper(need, place, train.device).model
        else:
            missing.append(need)
    config = cls.adopt_pretrained(config, splits.spec, helpers)
    # Built before the run directory is touched, so that every config or data error surfaces
    # while an existing run is still intact.
    torch.manual_seed(train.seed)
    net = cls(config, splits.spec)
    examples = training_data(splits, train, net)
    trained_on = training_set(examples, train)
    config = cls.adopt_training_set(config, trained_on, helpers)
    if run_path is not None:
        prepare_run_dir(run_path, resume=resume, force=force, world=world, options=options)
    for need in missing:
        helpers[need.role] = ensure_run(need, splits, train, run_dir=run_path, world=world).model
    if missing:  # helpers trained just now may fill in more (M1+M2's active M1 units)
        config = cls.adopt_training_set(
            cls.adopt_pretrained(config, splits.spec, helpers), trained_on, helpers
        )
    if config != net.config:
        # Derived fields filled in from the data and the helpers (M2's data sizes; M1+M2's
        # active units, which set M2's input width): the model as it is built at once where
        # they are known already (a resumed run), from the same seed.
        torch.manual_seed(train.seed)
        net = cls(config, splits.spec)
    net.use_pretrained(helpers)
    net = net.to(train.device)
    if world.rank:  # same initial weights everywhere, but each rank its own noise
        torch.manual_seed(train.seed * 1_000_003 + world.rank)
    train_split, val_split = on_device(examples, train)
    trainer = Trainer(
        net, train_split, val_split, train, run_path, world, explicit=explicit, options=options
    )
    if resume:
        trainer.resume()
    history = trainer.fit()
    if final_test:
        evaluate_test_once(trainer, examples.test, train)
    net.eval()
    return Run(net, history, run_path, splits)


# --- helper networks --------------------------------------------------------------------------


def helper_train_config(need: Pretrained, data: DatasetSplits, base: TrainConfig) -> TrainConfig:
    """How a helper is trained: a run's own helper as the run is (with the helper's overrides),
    a shared one from the defaults, so that it does not depend on which run asked first."""
    if need.shared:
        start = to_mapping(TrainConfig(device=base.device, progress=base.progress))
    else:
        start = to_mapping(base)
    return from_mapping(
        TrainConfig,
        # no TensorBoard: a helper's curves would mix with the run's
        {**start, **need.train_overrides, "dataset": data.name, "tensorboard": None},
        where=f"{need.role} training config",
    )


def data_fingerprint(data: DatasetSplits) -> bytes:
    """A digest of the training split's images and labels (a helper learns from nothing else;
    the test split stays sealed): changed data, another helper."""
    digest = hashlib.sha256(json.dumps(data.spec.to_json(), sort_keys=True).encode())
    digest.update(data.train.images.contiguous().numpy().tobytes())
    if data.train.labels is not None:
        digest.update(data.train.labels.contiguous().numpy().tobytes())
    return digest.digest()


def helper_place(
    need: Pretrained, data: DatasetSplits, base: TrainConfig, run_dir: Path | None
) -> Path:
    """Where helper `need` lives: the run the user named; RUN_DIR/<role> for a run's own
    helper; cache_dir("runs")/<role>-<dataset>-<key> for a shared one."""
    if need.run_dir:
        return Path(need.run_dir).expanduser()
    if not need.shared:
        if run_dir is None:
            raise ConfigError(f"{option_of(need)}: a run's own helper needs a run directory")
        return run_dir / need.role
    cls = model_class(need.model)
    model_config = to_mapping(from_mapping(cls.config_class, need.model_config))
    train = to_mapping(helper_train_config(need, data, base))
    recipe = {
        "model": need.model,
        "model_config": model_config,
        "train": {k: v for k, v in train.items() if k not in RESUMABLE_CHANGES},
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    digest.update(data_fingerprint(data))
    return cache_dir(RUNS_CACHE) / f"{need.role}-{data.name}-{digest.hexdigest()[:16]}"


def is_finished(run_dir: Path) -> bool:
    """A complete run: weights and one metrics row per configured epoch."""
    try:
        epochs = rundir.read_run_config(run_dir)["train"]["epochs"]
        rows = rundir.read_metrics(run_dir)
    except (CheckpointError, OSError):
        return False
    return (run_dir / rundir.WEIGHTS_FILE).exists() and len(rows) >= epochs


def load_helper(need: Pretrained, place: Path, device: str) -> Helper:
    """The helper run at `place`, loaded without touching the caller's random stream."""
    try:
        with forked_rng(device):  # building the network draws initial weights
            return Helper(rundir.load(place, device), place)
    except CheckpointError as exc:
        raise CheckpointError(f"{option_of(need)}: {exc}") from None


def option_of(need: Pretrained) -> str:
    """What error messages about helper `need` start with: the option naming it, or its role."""
    return need.option or need.role


def forked_rng(device: str):
    """A context in which random draws leave the CPU's (and the device's) stream as it was."""
    cuda = torch.device(device)
    return torch.random.fork_rng(devices=[cuda] if cuda.type == "cuda" else [])


def ensure_run(
    need: Pretrained,
    data: DatasetSplits,
    base: TrainConfig,
    *,
    run_dir: Path | None = None,
    world: World | None = None,
    announce: Callable[[Path], str] | None = None,
) -> Helper:
    """The helper network `need`, trained now through the one trainer unless its place already
    holds a finished run, and loaded in eval mode on `base.device`.

    base: the asking run's training config (a run's own helper is trained as the run is; a
    shared one takes only its device). run_dir: the asking run's directory. world: under
    several processes, rank 0 trains the helper alone and the others wait for it. announce: the
    line printed (to stderr) before training, given the helper's place.
    """
    world = world or World()
    place = helper_place(need, data, base, run_dir)
    if world.is_main and not need.run_dir and not is_finished(place):
        train = helper_train_config(need, data, base)
        if announce is None:
            print(
                f"genae: training the {need.role} network ('{need.model}', {train.epochs} "
                f"epochs, seed {train.seed}) into {place}",
                file=sys.stderr,
            )
        else:
            print(announce(place), file=sys.stderr)
        tmp = place.parent / f".{place.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with forked_rng(base.device):
            train_run(
                need.model,
                model_config=need.model_config,
                train_config=train,
                data=data,
                run_dir=tmp,
                world=World(),
                final_test=False,
            )
        if is_finished(place):  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(place, ignore_errors=True)
            os.replace(tmp, place)
    world.barrier()
    return load_helper(need, place, base.device)
