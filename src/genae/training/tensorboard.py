"""TensorBoard logging of a run (`TrainConfig.tensorboard`, `--tensorboard DIR`).

What is written, all against the run's global step (optimisation steps so far), so that curves of
runs with different epoch lengths line up and a resumed run continues the same curves:

    train_step/<term>   every log_every steps: each loss term's mean over the steps since the
                        previous point (or since the epoch began)
    train/<name>, val/<name>, metrics/<name>
                        at the end of every epoch: the epoch's row of metrics.jsonl
    samples             the sample grid of a snapshot epoch (read back from RUN_DIR/samples, so
                        no extra sampling touches the random streams training depends on)
    config              at the start of a fresh run: the model and its configs, as text

Resume: the writer is opened with `purge_step` one past the checkpoint's step, so TensorBoard
drops what the interrupted process wrote after its last checkpoint, and the resumed run writes
those steps once more: no step appears twice. Only rank 0 writes. tensorboard is an optional
extra (`pip install 'genae[tb]'`); asking for it without the package is a one-line error before
the run starts (`check_available`).
"""

from __future__ import annotations

import json
import math
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from genae.config import TrainConfig, to_mapping
from genae.errors import ConfigError
from genae.models.base import GenerativeModel

SPLIT_PREFIXES = ("train", "val", "test")  # metrics.jsonl key prefixes that become tag groups
NOT_CURVES = ("epoch", "step")  # record keys that are the x axis, not values


def check_available(config: TrainConfig) -> None:
    """A one-line error when the config asks for TensorBoard and the package is missing."""
    if config.tensorboard is not None and find_spec("tensorboard") is None:
        raise ConfigError(
            "tensorboard: the tensorboard package is not installed; pip install 'genae[tb]' "
            "(or tensorboard), or leave the option out"
        )


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key: 'val_neg_elbo' -> 'val/neg_elbo'."""
    prefix, _, rest = key.partition("_")
    if prefix in SPLIT_PREFIXES and rest:
        return f"{prefix}/{rest}"
    return f"metrics/{key}"


def config_text(model: GenerativeModel, config: TrainConfig) -> str:
    """The run's model and configs as TensorBoard text (markdown)."""
    record = {"model": model.name, "model_config": to_mapping(model.config)}
    record["train"] = to_mapping(config)
    record["data_spec"] = model.spec.to_json()
    return "```\n" + json.dumps(record, indent=2) + "\n```"


class TensorBoardLog:
    """The event files of one run; every method is a no-op when the run does not log."""

    def __init__(
        self,
        config: TrainConfig,
        model: GenerativeModel,
        global_step: int,
        is_main: bool,
        meter: Any = None,
    ) -> None:
        """global_step: the run's step now (> 0 after a resume); meter: the trainer's
        `LossMeter` now (a resumed one holds the sums of its epoch up to the checkpoint)."""
        self.writer = None
        # The LossMeter of the previous point (held, so that `is` tells a new epoch's meter from
        # it), with its sums and reporting steps then: a resumed run's first window starts at the
        # checkpoint, as the interrupted run's did when the checkpoint step was a log point.
        self._meter: Any = meter
        self._meter_sums = {} if meter is None else self._sums_of(meter)
        if config.tensorboard is None or not is_main:
            return
        check_available(config)
        # why: tensorboard is an optional extra, imported only by runs that log to it
        from torch.utils.tensorboard import SummaryWriter

        directory = Path(config.tensorboard)
        # Steps after the checkpoint a resume starts from were written by the interrupted
        # process and are written again now: purge them (nothing to purge on a fresh run).
        self.writer = SummaryWriter(
            log_dir=str(directory), purge_step=global_step + 1 if global_step else None
        )
        if global_step == 0:
            self.writer.add_text("config", config_text(model, config), 0)

    def log_steps(self, meter: Any, global_step: int) -> None:
        """Each loss term's mean over the steps since the previous call that reported it, from
        the trainer's `LossMeter` (this rank's share of the batches, under several ranks)."""
        if self.writer is None or not meter.count:
            return
        sums = self._sums_of(meter)
        if self._meter is not meter:  # a new epoch's: its sums start from zero
            self._meter, self._meter_sums = meter, {}
        keys = iter(meter.keys())
        for phase, (total, reported) in sums.items():
            before_total, before_reported = self._meter_sums.get(phase, (None, None))
            if before_total is not None:  # terms that joined since are padded with zeros
                grow = len(total) - len(before_total)
                total = total - torch.cat([before_total, before_total.new_zeros(grow)])
                reported = reported - torch.cat([before_reported, before_reported.new_zeros(grow)])
            for key, value, steps in zip(keys, total.tolist(), reported.tolist()):
                if steps > 0:
                    self.writer.add_scalar(f"train_step/{key}", value / steps, global_step)
        self._meter_sums = sums
        # On disk before a checkpoint can follow: a killed run then loses no point before it.
        self.writer.flush()

    @staticmethod
    def _sums_of(meter: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per phase: each term's sum, and the steps that reported it."""
        return {
            phase: (total.detach().clone(), meter.reported(phase).clone())
            for phase, total in meter.sums.items()
        }

    def log_epoch(self, record: dict[str, Any], global_step: int, grid: Path | None) -> None:
        """The epoch's metrics (its metrics.jsonl row) and, at a snapshot epoch, its sample
        grid (the PNG the trainer wrote, or None)."""
        if self.writer is None:
            return
        for key, value in record.items():
            if key in NOT_CURVES or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(scalar_tag(key), value, global_step)
        if grid is not None and grid.exists():
            with Image.open(grid) as picture:
                pixels = np.asarray(picture.convert("RGB"))
            self.writer.add_image("samples", pixels, global_step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
