"""One fault-injection runner for the subprocess tests: it runs the genae CLI with faults
switched on by environment variables, so kills happen at exact, repeatable points.

    FAULT_AT_BATCH=N           send FAULT_SIGNAL (default SIGKILL) to itself while the N-th
                               training batch is drawn (on rank FAULT_RANK, default 0)
    FAULT_IN_CHECKPOINT_WRITE=N  on the N-th checkpoint/weights write, leave half a file on disk
                               and SIGKILL itself
    NO_NOISE=1                 remove sampling noise (VAE reparameterisation, AAE normal prior)
                               so that runs split over different numbers of ranks are comparable
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

RUNNER = """
import os, signal, sys
from genae.data import memory
from genae.training import checkpoint
from genae.cli import main

if os.environ.get("NO_NOISE") == "1":
    import torch
    import genae.models.latent as latent
    import genae.nn.priors as priors
    latent.reparameterize = lambda mean, log_var: mean
    # one fixed code: its batch mean is the same on any split of the batch
    priors.NormalPrior.sample = (
        lambda self, n, generator=None, device=None:
        torch.full((n, self.dim), 0.3, device=device or "cpu")
    )

at = int(os.environ.get("FAULT_AT_BATCH", "0"))
in_write = int(os.environ.get("FAULT_IN_CHECKPOINT_WRITE", "0"))
fault = getattr(signal, os.environ.get("FAULT_SIGNAL", "SIGKILL"))
mine = int(os.environ.get("RANK", "0")) == int(os.environ.get("FAULT_RANK", "0"))
batches = writes = 0
original_batch = memory.TensorData.training_batch
original_save = checkpoint.save_file


def training_batch(self, *args):
    global batches
    batches += 1
    if mine and batches == at:
        os.kill(os.getpid(), fault)
    return original_batch(self, *args)


def save_file(tensors, path, metadata=None):
    global writes
    writes += 1
    if writes == in_write:  # half a file on disk, then the power goes
        with open(path, "wb") as handle:
            handle.write(b"partial")
            handle.flush()
            os.fsync(handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return original_save(tensors, path, metadata=metadata)


memory.TensorData.training_batch = training_batch
checkpoint.save_file = save_file
sys.exit(main(sys.argv[1:]))
"""


def run_genae(
    workdir: Path, args: Sequence[str], *, nproc: int = 1, **env: str
) -> subprocess.CompletedProcess:
    """Run `genae ARGS` in a subprocess (under torchrun when nproc > 1) with the faults in
    `env` (see the module docstring)."""
    script = Path(workdir) / "genae_faults.py"
    script.write_text(RUNNER)
    command = [sys.executable, str(script)]
    if nproc > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            str(script),
        ]
    return subprocess.run(
        [*command, *map(str, args)],
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
