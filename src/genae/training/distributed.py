"""Multi-process training with torch.distributed, as started by `torchrun`.

One code path: a single process is the world of size 1, and every helper here is then a no-op.
Under torchrun each rank holds the whole (in-memory) dataset, takes its slice of every global
batch, and DistributedDataParallel averages gradients, so N ranks with a global batch B follow
the same trajectory as one process with batch B (up to floating-point summation order and the
ranks' own noise). Rank 0 alone writes files; all ranks keep in step so a checkpoint describes
every rank.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from genae.data.types import Batch
from genae.models.base import GenerativeModel, LossTerms, Phase


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # --- collectives (no-ops in a world of one) --------------------------------------------
    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def min_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True when `flag` is true on any rank (one tiny all-reduce)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """`tensor` from every rank (same shape on all), in rank order."""
        if not self.distributed:
            return [tensor]
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor)
        return parts

    def broadcast_object(self, value):
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch of indices."""
        if not self.distributed:
            return index
        return index.tensor_split(self.size)[self.rank]


def world_from_env(device: str) -> World:
    """Join the process group that torchrun describes in the environment (gloo on CPU, nccl on
    GPU); a world of one when not launched by torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def training_device(device: str, world: World) -> str:
    """Each rank of a GPU run takes its own local GPU."""
    if world.distributed and device == "cuda":
        return f"cuda:{world.local_rank}"
    return device


class PhaseRunner(nn.Module):
    """The model as the trainer calls it: `runner(batch, phase)` returns that phase's loss terms.

    A module of its own because DistributedDataParallel synchronises gradients around a forward
    call: with the phase's loss as this module's forward, DDP sees every phase as an ordinary
    forward call, and the model's own forward stays `model(x)`. It holds the model as its one
    submodule and adds no parameters; checkpoints save the model, not this.
    """

    def __init__(self, model: GenerativeModel, phases: list[Phase]) -> None:
        super().__init__()
        self.model = model
        self._losses = {phase.name: phase.loss for phase in phases}

    def forward(self, batch: Batch, phase: str) -> LossTerms:
        return self._losses[phase](batch)


def wrap(model: GenerativeModel, phases: list[Phase], world: World) -> nn.Module:
    """The callable the trainer runs each phase through: a `PhaseRunner` of the model, inside
    DistributedDataParallel when there are several ranks.

    find_unused_parameters: a phase (say an adversarial model's discriminator phase) uses only
    part of the model, and DDP must not wait for gradients that phase never produces.
    """
    runner = PhaseRunner(model, phases)
    if not world.distributed:
        return runner
    device_ids = [model.device.index] if model.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        runner, device_ids=device_ids, find_unused_parameters=True
    )


def leave_process_group(wait: bool = True) -> None:
    """Tear the process group down, after waiting for every rank when `wait` (the normal end:
    a rank that exits while another still uses the group aborts in gloo's teardown with
    'terminate called without an active exception'). On an error path it does not wait, since
    the other ranks may never arrive."""
    if dist.is_available() and dist.is_initialized():
        # A DistributedDataParallel wrapper left in a reference cycle keeps the gloo group (and
        # its threads) alive past destroy_process_group, to be torn down during interpreter exit,
        # where a still-joinable thread aborts the rank ("terminate called without an active
        # exception", seen under CPU load). Collect such cycles while the group still works.
        gc.collect()
        try:
            if wait:
                dist.barrier()
        finally:
            dist.destroy_process_group()
