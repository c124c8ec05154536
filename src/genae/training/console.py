"""What a run prints while it trains: a heading naming the model and the run, then one short line
per epoch with the numbers a user watches. Every number also goes to metrics.jsonl, which is
where the rest of them are read."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from genae.config import TrainConfig, to_mapping
from genae.models.base import GenerativeModel

CONSOLE_WIDTH = 120  # characters of an epoch line, and of each heading line
SPEED_KEY = "train_samples_per_s"


def _shown(value: Any) -> str:
    """A setting as it would be typed on the command line (tuples comma-separated)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _fit(line: str) -> str:
    return line if len(line) <= CONSOLE_WIDTH else line[: CONSOLE_WIDTH - 3] + "..."


def run_heading(
    model: GenerativeModel,
    config: TrainConfig,
    run_dir: Path | None,
    train_examples: int,
    *,
    model_options: Sequence[str] | None = None,
    resumed_at: tuple[int, int] | None = None,
) -> str:
    """Two lines: which model trains on which dataset into which run directory, then the
    settings that decide what it learns. model_options: the model settings the caller chose
    (shown with their values); None: all of them. resumed_at: (epoch, step in epoch) where a
    resumed run continues."""
    where = str(run_dir) if run_dir is not None else "no run directory"
    title = f"== {model.name} on {config.dataset} -> {where}"
    if resumed_at is not None:
        epoch, step = resumed_at
        title += f" (resumed at epoch {epoch}" + (f", step {step})" if step else ")")
    schedule = "" if config.lr_schedule == "constant" else f" ({config.lr_schedule})"
    settings = [
        f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} of {train_examples} examples",
        f"batch {config.batch_size}",
        f"lr {config.lr:g}{schedule}",
        f"seed {config.seed}",
        config.device,
    ]
    if config.labels != "all":
        settings.append(f"{config.labels} labelled")
    if config.binarize:
        settings.append("binarized")
    if config.precision != "fp32":
        settings.append(config.precision)
    values = to_mapping(model.config)
    chosen = list(values) if model_options is None else list(model_options)
    details = "   " + ", ".join(settings) + f"; {model.name}:"
    model_settings = [f"{k}={_shown(values[k])}" for k in chosen if k in values]
    if not model_settings:
        details += " defaults"
    for i, setting in enumerate(model_settings):
        more = " ..." if i + 1 < len(model_settings) else ""
        if len(details) + 1 + len(setting) + len(more) > CONSOLE_WIDTH:
            details += " ..."
            break
        details += " " + setting
    return _fit(title) + "\n" + _fit(details)


def watched_keys(model: GenerativeModel, record: Mapping[str, Any]) -> list[str]:
    """The record's keys a user watches, most important first: the model's `console_metrics`;
    by default every phase's training loss, then the validation metrics."""
    if model.console_metrics:
        return [key for key in model.console_metrics if key in record]
    losses = [k for k in record if k.startswith("train_") and k.split(".")[-1].endswith("loss")]
    return losses + [k for k in record if k.startswith("val_")]


def epoch_line(model: GenerativeModel, record: Mapping[str, Any], epochs: int) -> str:
    """`epoch E/N  key value  ...  S samples/s` in at most CONSOLE_WIDTH characters: the watched
    numbers in their order of importance, as many as fit."""
    line = f"epoch {record['epoch']}/{epochs}"
    speed = record.get(SPEED_KEY, math.nan)
    tail = f"  {speed:.0f} samples/s" if math.isfinite(speed) else ""
    for key in watched_keys(model, record):
        part = f"  {key} {record[key]:.4g}"
        if len(line) + len(part) + len(tail) > CONSOLE_WIDTH:
            break
        line += part
    return line + tail
