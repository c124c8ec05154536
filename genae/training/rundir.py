"""A run directory: what a finished (or interrupted) run leaves, and how to load it back.

RUN_DIR/config.json             model name, model config, train config, data spec, version
RUN_DIR/model.safetensors       weights after the last finished epoch
RUN_DIR/checkpoint.safetensors  full training state for --resume
RUN_DIR/metrics.jsonl           one JSON object per epoch
RUN_DIR/samples/epoch_NNN.png   sample grids at the snapshot epochs
RUN_DIR/pictures/*.png          the latent scatter, class grid or relabel grid (last epoch)
RUN_DIR/evaluation.json         extra metrics of the finished run (for reports)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genae.config import TrainConfig, from_mapping, to_mapping
from genae.data.types import DataSpec
from genae.errors import CheckpointError
from genae.io import write_json_atomic, write_text_atomic
from genae.models.base import GenerativeModel
from genae.models.registry import build_model
from genae.training.checkpoint import load_weights
from genae.version import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
PICTURES_DIR = "pictures"  # latent scatter, class grid, CAAE grid: written after the last epoch
EVALUATION_FILE = "evaluation.json"  # extra metrics: `genae evaluate --save`, `genae experiment`
# Bumped when the layout, config.json or weight names change incompatibly. 2: config fields
# renamed so no option name has two meanings (channels, features), one conv encoder (ConvVAE
# weights encoder.net.* -> encoder.convs.*), helper networks (M1, judge, DFC features) as runs.
RUN_FORMAT = 2


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
    }
    if explicit is not None:
        config["explicit"] = explicit
    write_json_atomic(run_dir / CONFIG_FILE, config)


def read_run_config(run_dir: Path) -> dict[str, Any]:
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
    for key in ("model", "model_config", "train", "data_spec"):
        if key not in config:
            raise CheckpointError(f"{path}: missing field '{key}'")
    if config.get("run_format", RUN_FORMAT) != RUN_FORMAT:
        raise CheckpointError(
            f"{path}: run format {config['run_format']} (written by genae "
            f"{config.get('genae_version', '?')}); this genae {__version__} reads format "
            f"{RUN_FORMAT}"
        )
    return config


def train_config_of(run_config: dict[str, Any]) -> TrainConfig:
    return from_mapping(TrainConfig, run_config["train"], where="config.json train")


def build_from_run(run_dir: Path) -> GenerativeModel:
    """The run's model, built from its config.json, with freshly initialised weights."""
    config = read_run_config(run_dir)
    spec = DataSpec.from_json(config["data_spec"])
    return build_model(config["model"], config["model_config"], spec)


def load(run_dir: Path | str, device: str = "cpu") -> GenerativeModel:
    """The trained model of a run directory, in eval mode."""
    run_dir = Path(run_dir)
    model = build_from_run(run_dir)
    load_weights(run_dir / WEIGHTS_FILE, model)
    return model.to(device).eval()


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_text_atomic(run_dir / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in history))
