"""A run directory: what a finished (or interrupted) run leaves, and how to load it back.

RUN_DIR/config.json             model name, model config, train config, data spec, version
RUN_DIR/model.safetensors       weights after the last finished epoch
RUN_DIR/checkpoint.safetensors  full training state for --resume
RUN_DIR/metrics.jsonl           one JSON object per epoch: train_* and val_* (validation)
                                metrics; the last row adds the test split's test_*
RUN_DIR/samples/epoch_NNN.png   sample grids at the snapshot epochs
RUN_DIR/pictures/*.png          the latent scatter, class grid or relabel grid (last epoch,
                                of validation images)
RUN_DIR/evaluation.json         extra metrics of the finished run (for reports)

A saved model (`save_model`, `genae.save`) is the first two files alone, and its config.json has
no "train" record; `load` reads either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genae.config import TrainConfig, from_mapping, to_mapping, with_saved_defaults
from genae.data.types import DataSpec
from genae.errors import CheckpointError
from genae.io import write_json_atomic, write_text_atomic
from genae.models.base import GenerativeModel
from genae.models.registry import MODELS, build_model
from genae.training.checkpoint import load_weights, save_weights
from genae.version import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
PICTURES_DIR = "pictures"  # latent scatter, class grid, CAAE grid: written after the last epoch
# Why a finished run is a failure rather than a result (GenerativeModel.result_problem): "test_"
# + this in the last metrics row, this in evaluation.json.
COLLAPSED = "collapsed"
EVALUATION_FILE = "evaluation.json"  # extra metrics: `genae evaluate --save`, `genae experiment`
SAVED_MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)  # what `save_model` writes


@dataclass(frozen=True)
class OptionNames:
    """How messages name the options of a run: as the caller spells them (the Python API's
    arguments, or the CLI's flags)."""

    resume: str
    force: str
    run_dir: str


API_OPTIONS = OptionNames(resume="resume=True", force="force=True", run_dir="run_dir")
CLI_OPTIONS = OptionNames(resume="--resume", force="--force", run_dir="--out")
# Bumped when the layout, config.json or weight names change incompatibly. 2: config fields
# renamed so no option name has two meanings (channels, features), one conv encoder (ConvVAE
# weights encoder.net.* -> encoder.convs.*), helper networks (M1, judge, DFC features) as runs.
# 3: a validation split (train.val_size) carved out of the training split; per-epoch metrics
# are validation metrics (val_*), the test split's (test_*) join the last row once.
RUN_FORMAT = 3


def write_run_config(
    run_dir: Path,
    model: GenerativeModel,
    train: TrainConfig,
    explicit: dict[str, list[str]] | None = None,
) -> None:
    """config.json; `explicit`: the options the caller set, {"train": [...], "model": [...]}
    (a resume compares only those with the saved run)."""
    config = {
        "genae_version": __version__,
        "run_format": RUN_FORMAT,
        "model": model.name,
        "model_config": to_mapping(model.config),
        "train": to_mapping(train),
        "data_spec": model.spec.to_json(),
        "validation": validation_note(train.val_size),
    }
    if explicit is not None:
        config["explicit"] = explicit
    write_json_atomic(run_dir / CONFIG_FILE, config)


def validation_note(val_size: int | None) -> str:
    """What config.json says of the run's validation split."""
    if not val_size:
        return "none (val_size 0): no per-epoch evaluation; nothing was chosen on held-out data"
    return (
        f"{val_size} examples carved out of the training split (seeded, stratified by class); "
        f"per-epoch val_* metrics are theirs, the test split is read once, at the end"
    )


def save_model(model: GenerativeModel, directory: Path) -> None:
    """The model alone, loadable with `load`: model.safetensors and a config.json naming the
    model, its config and its data spec. Each file is written atomically, the weights first, so
    config.json appears only beside weights that fit it. `directory` must be new, empty, or
    hold only an earlier save's two files (it never overwrites a run or anything else)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a directory")
    if directory.exists():
        others = sorted(
            p.name
            for p in directory.iterdir()
            # an earlier save's files, and the temporary file of one a kill interrupted
            if p.name not in SAVED_MODEL_FILES and not p.name.endswith(".tmp")
        )
        if others:
            raise CheckpointError(
                f"{directory}: holds other files ({', '.join(others[:3])}); save a model into a "
                f"new or empty directory"
            )
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(directory / WEIGHTS_FILE, model)
    record = {
        "genae_version": __version__,
        "run_format": RUN_FORMAT,
        "model": model.name,
        "model_config": to_mapping(model.config),
        "data_spec": model.spec.to_json(),
    }
    write_json_atomic(directory / CONFIG_FILE, record)


def read_model_config(run_dir: Path) -> dict[str, Any]:
    """config.json of a run or of a saved model: model name, model config and data spec."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: run directory not found")
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; is {run_dir} a genae run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    for key in ("model", "model_config", "data_spec"):
        if key not in config:
            raise CheckpointError(f"{path}: missing field '{key}'")
    if config.get("run_format", RUN_FORMAT) != RUN_FORMAT:
        raise CheckpointError(
            f"{path}: run format {config['run_format']} (written by genae "
            f"{config.get('genae_version', '?')}); this genae {__version__} reads format "
            f"{RUN_FORMAT}"
        )
    if isinstance(config["model_config"], dict) and config["model"] in MODELS:
        config_class = MODELS[config["model"]].config_class
        config["model_config"] = with_saved_defaults(config_class, config["model_config"])
    return config


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """config.json of a run: a saved model's, plus how it was trained ("train")."""
    config = read_model_config(run_dir)
    if "train" not in config:
        path = Path(run_dir) / CONFIG_FILE
        raise CheckpointError(
            f"{path}: missing field 'train'; {run_dir} holds a saved model, not a training run"
        )
    return config


def train_config_of(run_config: dict[str, Any]) -> TrainConfig:
    return from_mapping(TrainConfig, run_config["train"], where="config.json train")


def build_from_run(run_dir: Path) -> GenerativeModel:
    """The run's model, built from its config.json, with freshly initialised weights."""
    config = read_model_config(run_dir)
    spec = DataSpec.from_json(config["data_spec"])
    return build_model(config["model"], config["model_config"], spec)


def load(run_dir: Path | str, device: str = "cpu") -> GenerativeModel:
    """The trained model of a run directory or a saved model (`save_model`), in eval mode."""
    run_dir = Path(run_dir)
    model = build_from_run(run_dir)
    load_weights(run_dir / WEIGHTS_FILE, model)
    return model.to(device).eval()


def sample_grid_path(run_dir: Path, epoch: int) -> Path:
    """Where the sample grid of `epoch` goes (written at snapshot epochs)."""
    return Path(run_dir) / SAMPLES_DIR / f"epoch_{epoch:03d}.png"


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_text_atomic(run_dir / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in history))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of a run's metrics.jsonl; [] before its first epoch has ended."""
    path = Path(run_dir) / METRICS_FILE
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON lines ({exc})") from None
