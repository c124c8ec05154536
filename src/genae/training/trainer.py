"""The one training loop of genae.

Every model is a list of phases (see `genae.models.base`); each batch runs them in order, each
with its own Adam. The loop never reads a loss back to the host per step: loss terms are summed
on the device and checked for NaN/inf every `log_every` steps and before any checkpoint, so a
checkpoint on disk always holds finite weights.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from genae.config import LR_SCHEDULES, TrainConfig
from genae.data.memory import TensorData, seeded_generator
from genae.errors import CheckpointError, NonFiniteLossError, TrainingError
from genae.models.base import GenerativeModel, Progress
from genae.training import rundir
from genae.training.checkpoint import (
    apply_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from genae.training.console import epoch_line, run_heading
from genae.training.distributed import World, wrap
from genae.training.tensorboard import TensorBoardLog
from genae.viz.grids import save_sample_grid
from genae.viz.latent import write_pictures

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,  # no autocast
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


class TrainingInterrupted(TrainingError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved and the run can be resumed."""


class LossMeter:
    """Sums loss terms on the device and remembers the first step at which each went non-finite.

    Per phase and step this is three small tensor ops, whatever the number of terms: the terms are
    stacked once, added to a running sum, and masked into the first-bad-step record. A phase may
    report some terms on some steps only (an occasional diagnostic; the labelled terms of a spread
    labelled schedule): such a step also counts, per term, the steps that did not report it (one
    more small op, with a mask made once per pattern), and a term's mean is over the steps that
    did.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.names: dict[str, list[str]] = {}  # phase -> term names, in the model's order
        self.sums: dict[str, torch.Tensor] = {}
        self.first_bad: dict[str, torch.Tensor] = {}
        self.missing: dict[str, torch.Tensor] = {}  # phase -> steps that did not report a term
        self.count = 0
        self._masks: dict[tuple[str, tuple[bool, ...]], torch.Tensor] = {}

    @torch.no_grad()
    def add(self, phase: str, terms: dict[str, torch.Tensor], step: int) -> None:
        names = self.names.get(phase)
        if names is not None and list(terms) == names:  # every term: the common case
            values = torch.stack([t.detach().float() for t in terms.values()])
        else:
            values = self._add_partial(phase, terms)
        self.sums[phase] += values
        bad = self.first_bad[phase]
        bad.masked_fill_((bad < 0) & ~torch.isfinite(values), step)

    def _add_partial(self, phase: str, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The step's values in the phase's term order, 0 where a term was not reported (which
        is counted); a term never seen before joins the phase, missing from the earlier steps."""
        if phase not in self.names:
            self.names[phase] = []
            self.sums[phase] = torch.zeros(0, device=self.device)
            self.first_bad[phase] = torch.zeros(0, dtype=torch.long, device=self.device)
            self.missing[phase] = torch.zeros(0, device=self.device)
        names = self.names[phase]
        new = [name for name in terms if name not in names]
        if new:
            names.extend(new)
            grow = len(new)
            self.sums[phase] = torch.cat([self.sums[phase], self.sums[phase].new_zeros(grow)])
            self.first_bad[phase] = torch.cat(
                [self.first_bad[phase], self.first_bad[phase].new_full((grow,), -1)]
            )
            self.missing[phase] = torch.cat(
                [self.missing[phase], self.missing[phase].new_full((grow,), float(self.count))]
            )
        present = tuple(name in terms for name in names)
        if not all(present):
            key = (phase, present)
            if key not in self._masks:  # one host-to-device copy per pattern, not per step
                absent = [0.0 if p else 1.0 for p in present]
                self._masks[key] = torch.tensor(absent, device=self.device)
            self.missing[phase] += self._masks[key]
        zero = next(iter(terms.values())).detach().new_zeros((), dtype=torch.float32)
        return torch.stack([terms[n].detach().float() if n in terms else zero for n in names])

    def step_done(self) -> None:
        self.count += 1

    def keys(self) -> list[str]:
        return [n if p == "loss" else f"{p}.{n}" for p, names in self.names.items() for n in names]

    def reported(self, phase: str) -> torch.Tensor:
        """Steps that reported each term of `phase`."""
        return float(self.count) - self.missing[phase]

    def check_finite(self, checkpoint: Path | None, world: World | None = None) -> None:
        """One host sync: raise NonFiniteLossError naming the earliest bad step and term (over
        all ranks, so that every rank stops together)."""
        if not self.first_bad:
            return
        bad = torch.cat(list(self.first_bad.values()))
        if world is not None and world.distributed:
            never = torch.iinfo(torch.long).max
            bad = world.min_(torch.where(bad < 0, never, bad))
            bad = torch.where(bad == never, -1, bad)
        # Earliest step first; at equal steps a named component before the total it makes up.
        hits = [
            (s, k.split(".")[-1] == "loss", i, k)
            for i, (s, k) in enumerate(zip(bad.tolist(), self.keys()))
            if s >= 0
        ]
        if hits:
            step, _, _, term = min(hits)
            kept = str(checkpoint) if checkpoint is not None and checkpoint.exists() else None
            raise NonFiniteLossError(step, term, kept)

    def means(self, world: World | None = None) -> dict[str, float]:
        if not self.count:
            return {}
        totals = torch.cat(list(self.sums.values()))
        count = torch.cat([self.reported(phase) for phase in self.sums])
        if world is not None and world.distributed:
            totals, count = world.sum_(totals.clone()), world.sum_(count)
        return dict(zip(self.keys(), (totals / count).tolist()))

    def state(self) -> dict[str, torch.Tensor]:
        return {
            **{f"meter.{p}": v for p, v in self.sums.items()},
            **{f"meter_missing.{p}": v for p, v in self.missing.items()},
        }

    def load_state(self, tensors: dict[str, torch.Tensor], names: dict, count: int) -> None:
        for phase, terms in names.items():
            self.names[phase] = list(terms)
            self.sums[phase] = tensors[f"meter.{phase}"].to(self.device)
            self.first_bad[phase] = torch.full(
                (len(terms),), -1, dtype=torch.long, device=self.device
            )
            missing = tensors.get(f"meter_missing.{phase}")
            self.missing[phase] = (
                torch.zeros(len(terms), device=self.device)
                if missing is None  # a checkpoint of before partial terms
                else missing.to(self.device)
            )
        self.count = count


def make_optimizer(params: list[torch.nn.Parameter], lr: float, betas, device: torch.device):
    """Adam with the fused kernel where this build has one for the device, else foreach."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


@torch.no_grad()
def evaluate(
    model: GenerativeModel,
    data: TensorData,
    batch_size: int,
    seed: int,
    world: World | None = None,
    *,
    train: TensorData | None = None,
) -> dict[str, float]:
    """Mean of the model's per-example metrics over `data` (a validation or test split), with
    its own fixed RNG stream so evaluation neither depends on nor disturbs the training stream.
    Under several ranks each evaluates a slice and the sums are reduced; whole-split metrics
    come from rank 0. train: the training split, for baselines fit on it (k-means)."""
    world = world or World()
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    rows = torch.arange(len(data), device=data.device).tensor_split(world.size)[world.rank]
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        torch.manual_seed(seed + world.rank)
        for index in rows.split(batch_size):
            for name, values in model.evaluate(data.batch(index)).items():
                sums[name] = sums.get(name, 0) + values.double().sum()
        whole = model.dataset_metrics(data, batch_size, train) if world.is_main else {}
    model.train(was_training)
    whole = world.broadcast_object(whole)
    if not sums:
        return whole
    totals = world.sum_(torch.stack(list(sums.values()))).div(len(data)).tolist()
    return {**dict(zip(sums, totals)), **whole}


class Trainer:
    """Trains `model` on `train` for `config.epochs`, evaluating on `val` (the validation split;
    None: none) after every epoch. The test split is not the trainer's: a run reads it once,
    after the last epoch (`genae.training.runs.evaluate_test_once`).

    With a `run_dir`, writes config, weights, checkpoints, metrics and sample grids there and can
    resume from it. Without one it only trains (for the Python API and tests).
    """

    def __init__(
        self,
        model: GenerativeModel,
        train: TensorData,
        val: TensorData | None,
        config: TrainConfig,
        run_dir: Path | None = None,
        world: World | None = None,
        explicit: dict[str, list[str]] | None = None,
        options: rundir.OptionNames = rundir.API_OPTIONS,
    ) -> None:
        if train.device.type == "cpu":
            # oneDNN's convolutions run 1.1-1.6x faster per step on channels_last weights (the
            # conv VAE, the classifier, the CAAE; benchmarks/throughput.py); a no-op for MLPs.
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.options = options  # how messages name the run options (API arguments, CLI flags)
        self.explicit = explicit  # the options the caller set, recorded in config.json
        self.world = world or World()
        self.train_data = train
        self.val_data = val
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.phases = model.phases()
        # The callable the loop trains through: DDP on several ranks, optionally compiled.
        self.forward = wrap(model, self.phases, self.world)
        if config.compile:
            self.forward = torch.compile(self.forward)
        device = train.device
        self.autocast_dtype = PRECISIONS[config.precision]
        self.scalers = {
            p.name: torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
            for p in self.phases
        }
        self.optimizers = {
            p.name: make_optimizer(p.parameters, p.lr or config.lr, p.betas, device)
            for p in self.phases
        }
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.history: list[dict[str, Any]] = []
        self.epoch = 1  # the epoch in progress (or next to start)
        self.step_in_epoch = 0  # steps of `epoch` already done
        self.global_step = 0
        self.meter = LossMeter(device)
        self._stop_signal: int | None = None

    # --- checkpoints --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / rundir.CHECKPOINT_FILE if self.run_dir else None

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None:
            return
        self.meter.check_finite(self.checkpoint_path, self.world)
        # Every rank's RNG, so each continues its own noise stream after --resume.
        rng = self.world.gather(torch.get_rng_state())
        if not self.world.is_main:
            self.world.barrier()
            return
        extra = {**self.meter.state(), **{f"rng_rank{r}": t for r, t in enumerate(rng)}}
        state = {
            "meter_names": self.meter.names,
            "world_size": self.world.size,
            "scalers": {k: v.state_dict() for k, v in self.scalers.items() if v.is_enabled()},
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "meter_count": self.meter.count,
            "history": self.history,
            "model": self.model.name,
        }
        save_checkpoint(self.checkpoint_path, self.model, self.optimizers, state, extra)
        self.world.barrier()

    def resume(self) -> None:
        """Continue from the run directory's checkpoint (model, optimisers, RNG, data position)."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            raise CheckpointError(f"{path}: no checkpoint to resume from")
        tensors, meta = load_checkpoint(path)
        state = meta["state"]
        if state.get("model") != self.model.name:
            raise CheckpointError(
                f"{path}: checkpoint is of model '{state.get('model')}', not '{self.model.name}'"
            )
        extra = apply_checkpoint(tensors, meta, self.model, self.optimizers, path)
        self.epoch = state["epoch"]
        self.step_in_epoch = state["step_in_epoch"]
        self.global_step = state["global_step"]
        self.history = state["history"]
        self.meter = LossMeter(self.train_data.device)
        self.meter.load_state(extra, state["meter_names"], state["meter_count"])
        if state.get("world_size", 1) != self.world.size:
            raise CheckpointError(
                f"{path}: checkpoint was written by {state.get('world_size', 1)} processes; "
                f"resume it with the same number (now {self.world.size})"
            )
        own_rng = extra.get(f"rng_rank{self.world.rank}")
        if own_rng is not None:
            torch.set_rng_state(own_rng)
        for name, scaler_state in state.get("scalers", {}).items():
            self.scalers[name].load_state_dict(scaler_state)

    # --- signals ------------------------------------------------------------------------------
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, _frame):
            self._stop_signal = signum

        return {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}

    # --- the loop -----------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        cfg = self.config
        if self.run_dir is not None and self.world.is_main:
            rundir.write_run_config(self.run_dir, self.model, cfg, self.explicit)
        if self.world.is_main:
            resumed = self.global_step > 0
            heading = run_heading(
                self.model,
                cfg,
                self.run_dir,
                len(self.train_data),
                model_options=self.explicit["model"] if self.explicit is not None else None,
                resumed_at=(self.epoch, self.step_in_epoch) if resumed else None,
            )
            tqdm.write(heading, file=sys.stderr)
        # After a resume has set the step: TensorBoard then drops what followed the checkpoint.
        self.tensorboard = TensorBoardLog(
            cfg, self.model, self.global_step, self.world.is_main, self.meter
        )
        previous_handlers = self._install_signal_handlers()
        try:
            while self.epoch <= cfg.epochs:
                self._train_epoch()
                self._end_epoch()
        finally:
            self.tensorboard.close()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        return self.history

    def _train_epoch(self) -> None:
        cfg, model = self.config, self.model
        model.train()
        order = self.train_data.epoch_order(cfg.seed, self.epoch)
        index_batches = order.split(cfg.batch_size)
        bar = tqdm(
            total=len(index_batches),
            initial=self.step_in_epoch,
            disable=None if cfg.progress and self.world.is_main else True,
            desc=f"epoch {self.epoch}/{cfg.epochs}",
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        started, first_step = time.perf_counter(), self.step_in_epoch
        yardstick_seconds = 0.0  # in phases that measure the model rather than train it
        device_type = self.train_data.device.type
        schedule = LR_SCHEDULES[cfg.lr_schedule]
        steps = len(index_batches)
        total_steps = cfg.epochs * steps
        for index in index_batches[self.step_in_epoch :]:
            index = self.world.shard(index)
            if cfg.lr_schedule != "constant":  # a function of the step alone: resume-exact
                self._set_lr_factor(schedule(self.global_step / total_steps))
            model.at_step(Progress(self.epoch, self.step_in_epoch, steps))  # resume-exact too
            batch = self.train_data.training_batch(
                index, cfg.seed, self.epoch, self.step_in_epoch, steps
            )
            for phase in self.phases:
                phase_started = time.perf_counter()
                with torch.autocast(
                    device_type, self.autocast_dtype, enabled=self.autocast_dtype is not None
                ):
                    terms = self.forward(batch, phase.name)
                model.zero_grad(set_to_none=True)
                scaler = self.scalers[phase.name]
                scaler.scale(terms["loss"]).backward()
                scaler.step(self.optimizers[phase.name])
                scaler.update()
                self.meter.add(phase.name, terms, self.global_step)
                if phase.yardstick:
                    yardstick_seconds += time.perf_counter() - phase_started
            self.meter.step_done()
            self.global_step += 1
            self.step_in_epoch += 1
            if self.global_step % cfg.log_every == 0:
                self.meter.check_finite(self.checkpoint_path, self.world)
                bar.update(self.step_in_epoch - bar.n)
                bar.set_postfix(loss=f"{self.meter.means().get('loss', math.nan):.2f}")
                self.tensorboard.log_steps(self.meter, self.global_step)
            if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            # Ranks must agree on stopping at the same step, or one would wait forever.
            if self.world.any(self._stop_signal is not None, self.train_data.device):
                self._stop_signal = self._stop_signal or signal.SIGTERM
                bar.close()
                self.save_checkpoint()
                name = signal.Signals(self._stop_signal).name
                raise TrainingInterrupted(
                    f"stopped by {name} at step {self.global_step}; checkpoint saved, "
                    f"continue with {self.options.resume}"
                )
        bar.close()
        elapsed = time.perf_counter() - started
        examples = sum(len(i) for i in index_batches[first_step:])  # over all ranks
        self._epoch_speed = examples / elapsed if elapsed > 0 else math.nan
        # Without the yardsticks' time: the model's own training, as a peer that trains no
        # yardstick is timed. On CPU only, where a phase's wall time is its compute; an
        # accelerator runs it asynchronously.
        self._epoch_objective_speed = None
        if device_type == "cpu" and any(p.yardstick for p in self.phases):
            own = elapsed - yardstick_seconds
            self._epoch_objective_speed = examples / own if own > 0 else math.nan

    def _set_lr_factor(self, factor: float) -> None:
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor

    def _end_epoch(self) -> None:
        cfg = self.config
        self.meter.check_finite(self.checkpoint_path, self.world)
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step}
        if self.val_data is not None:
            values = evaluate(
                self.model,
                self.val_data,
                cfg.eval_batch_size,
                cfg.seed,
                self.world,
                train=self.train_data,
            )
            record.update({f"val_{name}": value for name, value in values.items()})
        train_means = self.meter.means(self.world)
        record.update({f"train_{k}": v for k, v in train_means.items()})
        record["train_samples_per_s"] = round(self._epoch_speed, 1)
        if self._epoch_objective_speed is not None:
            record["train_objective_samples_per_s"] = round(self._epoch_objective_speed, 1)
        self.history.append(record)
        if self.run_dir is not None and self.world.is_main:
            at_snapshot = self.epoch in cfg.snapshot_epochs or self.epoch == cfg.epochs
            if at_snapshot and self.model.generative:
                self.write_snapshot()
            if self.epoch == cfg.epochs and self.model.generative:
                self.write_pictures()
            save_weights(self.run_dir / rundir.WEIGHTS_FILE, self.model)
        if self.world.is_main:  # the watched numbers; metrics.jsonl holds them all
            tqdm.write(epoch_line(self.model, record, cfg.epochs), file=sys.stderr)
            grid = rundir.sample_grid_path(self.run_dir, self.epoch) if self.run_dir else None
            self.tensorboard.log_epoch(record, self.global_step, grid)
        self.epoch += 1
        self.step_in_epoch = 0
        self.meter = LossMeter(self.train_data.device)
        if self.run_dir is not None:
            self.save_checkpoint()
            if self.world.is_main:
                rundir.write_metrics(self.run_dir, self.history)
        # Means are reduced over ranks, so every rank reaches the same verdict.
        problem = self.model.training_problem(train_means) if cfg.stop_on_collapse else None
        if problem:
            saved = f"; epoch {record['epoch']} is saved" if self.run_dir is not None else ""
            raise TrainingError(f"epoch {record['epoch']}: {problem}{saved}")

    def write_pictures(self) -> None:
        """The model's pictures of its validation codes and classes (whichever it supports);
        of its training examples when the run has no validation split (never of the test
        split: the pictures are looked at while choosing)."""
        shown = self.val_data if self.val_data is not None else self.train_data
        write_pictures(
            self.model,
            shown.images[:5000],
            None if shown.labels is None else shown.labels[:5000],
            self.run_dir / rundir.PICTURES_DIR,
            generator_seed=self.config.seed,
        )
        self.model.train()

    def write_snapshot(self) -> None:
        path = rundir.sample_grid_path(self.run_dir, self.epoch)
        save_sample_grid(self.model, path, generator=seeded_generator(self.config.seed, 99))
