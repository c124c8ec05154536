"""How genae sets up the processes it owns: OpenMP threads and the floating-point mode.

This module imports nothing heavy at load time, so `genae.cli` can run it before torch is loaded.

What the `genae` command sets, and why
--------------------------------------
* ``OMP_WAIT_POLICY=PASSIVE``. An OpenMP worker that has finished its share of a parallel region
  spins, burning its core, while it waits for the next one (libgomp: ~300,000 spins). Alone that
  saves a wake-up per op; beside another busy process the spinning threads hold the cores that
  the other one's threads wait for at every barrier, and both crawl. PASSIVE workers sleep.
  libgomp reads the variable once, when torch loads it, so it must be in the environment before
  ``import torch``: hence `genae/__init__.py` is lazy and `genae.cli.main` calls
  `start_process` first. Measured with benchmarks/corun.py (two 2-epoch Fashion-MNIST
  `genae train vae` jobs at once vs one alone) on a 2-vCPU VM that other work shared, so noisy:
    - torch's default waiting: both jobs together 0.30-0.41x one job's samples/s (the issue saw
      0.09-0.59x); a job alone 17,700-18,800 samples/s on a quiet machine, but 1,100 while
      other processes were busy.
    - PASSIVE: 0.80-2.17x (median ~1.9x; 8,800-21,900 samples/s together); alone 10,000-11,000
      samples/s, quiet or busy. So a lone job on an idle machine is ~45% slower here: each
      parallel op waits for a sleeping worker to wake, which is slow on this VM.
    - Shorter spinning (GOMP_SPINCOUNT): 30,000 and 10,000 spins keep solo speed (18,200 and
      17,500) but pairs still collapse (0.16x, 0.38x); 1,000 spins: alone 13,500.
    - One thread per job (GENAE_THREADS=1): alone 12,400 on a quiet machine, pairs fine
      (22,800 together); but it would forfeit every other core on a bigger machine.
* Intra-op threads: torch's own default (one per core) for a single process, so that a job
  alone uses a bigger machine's cores (on this 2-vCPU VM one thread would in fact be faster
  than two PASSIVE ones). Ranks on one host (``LOCAL_WORLD_SIZE`` > 1) divide that default
  between them, so N ranks do not run N x cores threads. torchrun itself exports
  ``OMP_NUM_THREADS=1`` to each rank when it starts several and the user has not set it; genae
  cannot tell that from a user's own value, so it is left alone, and ``--threads N`` gives the
  ranks more. ``--threads N`` (anywhere on the command line) or ``GENAE_THREADS=N`` sets the
  count explicitly, per process.
* Flush denormals (``torch.set_flush_denormal(True)``) for the whole process, set before torch
  starts its worker threads, so they inherit it. `flushing_denormals` says why, and what the
  Python API does instead.

A setting the user exported always wins: the waiting is only set when neither
``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT`` is, and an exported ``OMP_NUM_THREADS`` is left to
torch. ``--threads`` and ``GENAE_THREADS`` are genae's own and win over ``OMP_NUM_THREADS``.
``GENAE_THREADS=off`` makes genae set none of the thread settings (benchmarks/corun.py
--baseline uses it). ``GENAE_KEEP_DENORMALS=1`` keeps denormals. ``GENAE_SHOW_RUNTIME=1`` prints
the settings in effect to stderr (for tests and bug reports).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass

from genae.errors import ConfigError

THREADS_OPTION = "--threads"
THREADS_VARIABLE = "GENAE_THREADS"
THREADS_OFF = "off"
KEEP_DENORMALS_VARIABLE = "GENAE_KEEP_DENORMALS"
SHOW_VARIABLE = "GENAE_SHOW_RUNTIME"
# How idle OpenMP workers wait; exported when the user has set none of WAITING_VARIABLES (in
# libgomp GOMP_SPINCOUNT overrides OMP_WAIT_POLICY, so setting one beside the user's other would
# override the user).
WAITING = {"OMP_WAIT_POLICY": "PASSIVE"}
WAITING_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

_OMP_PAUSE_HARD = 2  # omp_pause_hard: the runtime frees its threads
# The smallest normal float32; half of it is subnormal, so it reads as 0 while flushing is on.
_SMALLEST_NORMAL_FLOAT32 = 1.1754943508222875e-38


@dataclass(frozen=True)
class ThreadSettings:
    """What genae decided for this process's threads (before anything is applied)."""

    threads: int | None  # intra-op threads to use; None: torch's default (or OMP_NUM_THREADS)
    ranks_per_host: int  # torch's default is divided by this when `threads` is None
    set_waiting: bool  # export WAITING, unless the user has set one of WAITING_VARIABLES
    source: str  # where the thread count comes from, for GENAE_SHOW_RUNTIME


def _positive_int(text: str, where: str, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{where}: expected {expected}, got '{text}'")
    return value


def threads_option(argv: Sequence[str]) -> str | None:
    """The value of the last ``--threads N`` / ``--threads=N`` in `argv`, or None."""
    value = None
    for position, argument in enumerate(argv):
        if argument == "--":
            break
        if argument == THREADS_OPTION:
            if position + 1 >= len(argv):
                raise ConfigError(f"{THREADS_OPTION}: expected a positive integer after it")
            value = argv[position + 1]
        elif argument.startswith(THREADS_OPTION + "="):
            value = argument.split("=", 1)[1]
    return value


def choose_threads(argv: Sequence[str], environ: MutableMapping[str, str]) -> ThreadSettings:
    """Decide the thread settings from the command line and the environment (changes nothing)."""
    option = threads_option(argv)
    variable = environ.get(THREADS_VARIABLE, "").strip()
    if option is not None:
        threads = _positive_int(option, THREADS_OPTION, "a positive integer")
        return ThreadSettings(threads, 1, True, THREADS_OPTION)
    if variable.lower() == THREADS_OFF:
        return ThreadSettings(None, 1, False, f"{THREADS_VARIABLE}={THREADS_OFF}")
    if variable:
        expected = f"a positive integer or '{THREADS_OFF}'"
        threads = _positive_int(variable, THREADS_VARIABLE, expected)
        return ThreadSettings(threads, 1, True, THREADS_VARIABLE)
    if environ.get("OMP_NUM_THREADS"):
        return ThreadSettings(None, 1, True, "OMP_NUM_THREADS")
    ranks = environ.get("LOCAL_WORLD_SIZE", "1")
    ranks_per_host = _positive_int(ranks, "LOCAL_WORLD_SIZE", "a positive integer")
    source = "default" if ranks_per_host == 1 else f"default / LOCAL_WORLD_SIZE={ranks_per_host}"
    return ThreadSettings(None, ranks_per_host, True, source)


def configure_environment(
    argv: Sequence[str], environ: MutableMapping[str, str] = os.environ
) -> ThreadSettings:
    """Put genae's OpenMP settings into `environ`; only takes effect before torch is imported."""
    settings = choose_threads(argv, environ)
    if settings.set_waiting and not any(name in environ for name in WAITING_VARIABLES):
        environ.update(WAITING)
    if settings.threads is not None:
        # Explicitly asked for, so it replaces an exported value; MKL reads OMP_NUM_THREADS too.
        environ["OMP_NUM_THREADS"] = str(settings.threads)
    return settings


def start_process(argv: Sequence[str]) -> ThreadSettings:
    """Set up a process that genae owns (the `genae` command): environment, threads, denormals.

    Call it before anything imports torch; torch is imported here, after the environment is set.
    """
    settings = configure_environment(argv)
    import torch  # why: torch (and libgomp with it) must load after the OpenMP environment is set

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    elif settings.ranks_per_host > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // settings.ranks_per_host))
    if os.environ.get(KEEP_DENORMALS_VARIABLE, "") != "1":
        # Before torch's first parallel region, so every OpenMP worker inherits it (see below).
        torch.set_flush_denormal(True)
    if os.environ.get(SHOW_VARIABLE, "") == "1":
        print(describe(settings), file=sys.stderr)
    return settings


def describe(settings: ThreadSettings) -> str:
    """One line with the settings in effect (needs torch loaded)."""
    import torch  # why: only called after start_process has loaded torch

    return (
        f"genae runtime: threads {torch.get_num_threads()} ({settings.source}), "
        + "".join(f"{name} {os.environ.get(name, 'unset')}, " for name in WAITING_VARIABLES)
        + f"flush_denormal {denormals_flushed()}"
    )


def denormals_flushed() -> bool:
    """Whether the calling thread flushes denormals (torch has no getter, so it is probed)."""
    import torch  # why: this module must stay importable without loading torch

    halved = torch.tensor([_SMALLEST_NORMAL_FLOAT32], dtype=torch.float32) / 2
    return bool(halved.item() == 0.0)


@contextlib.contextmanager
def flushing_denormals() -> Iterator[None]:
    """Flush denormals in the calling thread and its OpenMP workers for the duration, then restore.

    Why flush: Adam's moments for units that stop receiving gradient decay geometrically into
    subnormal floats after ~800 steps, and x86 CPUs compute on subnormals through a slow
    microcode path. One Adam step of the MLP VAE's parameters with subnormal moments took 2.5x
    as long as with flushing (1 thread). The Fashion-MNIST VAE through `genae.fit` (2 threads,
    third epoch, steps 1200-1800; two runs each on a shared, noisy machine): 4,660 and 1,860
    samples/s without flushing, 6,020 and 5,510 flushing in the main thread only, 7,870 and
    9,740 flushing in all threads (this manager).

    Why only for the duration: a library should not change a host program's numerics behind its
    back, and `torch.set_flush_denormal` sets the MXCSR register of the calling thread only.

    The OpenMP workers: each worker copies the MXCSR of the thread that creates it and keeps it
    for life (measured with a probe reading every worker's MXCSR: a pool created while flushing
    still flushes after the main thread stops; a pool created before never starts). Flushing in
    the main thread alone gains little, since every parallel op waits for its slowest thread
    (Adam step, 2 threads: 236 ms main-only vs 209 ms none vs 72 ms all, same run). So this
    releases torch's worker pool (OpenMP 5's omp_pause_resource_all) on the way in, so that the
    workers training starts inherit flushing, and again on the way out, so that the host's next
    parallel op starts workers with the host's own setting. Where the OpenMP runtime lacks that
    call, only the calling thread flushes, and the pool is started first with the host's
    setting, so that nothing outlives the block. Does nothing if the calling thread already
    flushes (the `genae` command) or GENAE_KEEP_DENORMALS=1.
    """
    import torch  # why: this module must stay importable without loading torch

    if os.environ.get(KEEP_DENORMALS_VARIABLE, "") == "1" or denormals_flushed():
        yield
        return
    if not _release_openmp_workers():
        _start_worker_pool()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        _release_openmp_workers()
        torch.set_flush_denormal(False)


def _release_openmp_workers() -> bool:
    """End the calling thread's OpenMP worker threads (new ones start on the next parallel op).

    False where the process's OpenMP runtime cannot (no omp_pause_resource_all, e.g. Windows or
    an OpenMP older than 5.0). A native symbol has no other way to be asked for.
    """
    try:
        pause_all = ctypes.CDLL(None).omp_pause_resource_all
    except (AttributeError, OSError, TypeError):
        return False
    return pause_all(_OMP_PAUSE_HARD) == 0


def _start_worker_pool() -> None:
    """Run one parallel region, so torch's OpenMP workers exist before the setting changes."""
    import torch  # why: this module must stay importable without loading torch

    # Above torch's grain size (32768 elements), so the fill is split over the workers.
    torch.empty(1 << 17).fill_(0.0)
