"""How genae sets up the processes it owns: OpenMP threads and the floating-point mode.

This module imports nothing heavy at load time, so `genae.cli` can run it before torch is loaded.

What the `genae` command sets, and why
--------------------------------------
* The OpenMP wait policy, chosen by how busy the machine is when the process starts. An OpenMP
  worker that has finished its share of a parallel region spins, burning its core, while it
  waits for the next one (libgomp: ~300,000 spins). Alone that saves a wake-up per op; beside
  another busy process the spinning threads hold the cores that the other one's threads wait
  for at every barrier, and both crawl. PASSIVE workers sleep instead, but every parallel op
  then waits for a sleeping worker to wake. So genae looks before torch loads: it reads the
  number of runnable tasks in /proc/loadavg a few times over ~20 ms (`other_runnable_tasks`)
  and the threads of the user's other genae processes (`ProcessRegistry`: two jobs started
  together are both still importing when each looks, so the run queue alone misses them), and
  when the busier count plus this process's threads exceed the cores, it exports
  ``OMP_WAIT_POLICY=PASSIVE``; otherwise it leaves torch's default spinning. Where neither can
  be read it assumes a busy machine. The wait policy changes no
  result, only speed: the bits of a run depend on the thread count, never on the waiting.
  libgomp reads the variable once, when torch loads it, so it must be in the environment before
  ``import torch``: hence `genae/__init__.py` is lazy and `genae.cli.main` calls
  `start_process` first. A job that started alone keeps spinning when a second one starts later;
  the second one sleeps. Measured with benchmarks/corun.py (two 2-epoch Fashion-MNIST
  `genae train vae` jobs at once vs one alone, 2-vCPU AMD VM; solo / both together):
    - torch's default waiting (always spinning): 19,500 / 5,900 samples/s, ratio 0.31 (an
      earlier issue measured 0.09-0.59).
    - always PASSIVE (genae 0.2.0's default): 10,400 / 22,700, ratio 2.18 against its own solo
      but a lone job ~45% slower.
    - one spinning job started first, a PASSIVE one beside it: 3,700 + 11,100 while both ran
      (0.76 of the spinning solo).
    - Shorter spinning (GOMP_SPINCOUNT): 30,000 and 10,000 spins keep solo speed (18,200 and
      17,500) but pairs still collapse (0.16x, 0.38x); 1,000 spins: alone 13,500.
    - One thread per job (GENAE_THREADS=1): alone 12,400 on a quiet machine, pairs fine
      (22,800 together); but it would forfeit every other core on a bigger machine, and the
      thread count changes the bits of a run, so genae does not pick it by load.
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

A setting the user exported always wins: the waiting is only chosen when neither
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
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from genae.errors import ConfigError

try:
    import fcntl  # POSIX file locks, for the process registry
except ImportError:  # Windows: no registry; the run queue (or the safe default) decides
    fcntl = None

THREADS_OPTION = "--threads"
THREADS_VARIABLE = "GENAE_THREADS"
THREADS_OFF = "off"
KEEP_DENORMALS_VARIABLE = "GENAE_KEEP_DENORMALS"
SHOW_VARIABLE = "GENAE_SHOW_RUNTIME"
# How idle OpenMP workers wait on a busy machine; exported when the user has set none of
# WAITING_VARIABLES (in libgomp GOMP_SPINCOUNT overrides OMP_WAIT_POLICY, so setting one beside
# the user's other would override the user).
WAITING = {"OMP_WAIT_POLICY": "PASSIVE"}
LOADAVG = "/proc/loadavg"
# Looks at the run queue before deciding: the minimum over them ignores a task that was runnable
# for a moment (a shell, a kernel thread); two jobs started together see each other, since each
# spends far longer than this starting Python.
LOOKS = 5
LOOK_INTERVAL_S = 0.004
WAITING_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

_OMP_PAUSE_HARD = 2  # omp_pause_hard: the runtime frees its threads
# The smallest normal float32; half of it is subnormal, so it reads as 0 while flushing is on.
_SMALLEST_NORMAL_FLOAT32 = 1.1754943508222875e-38


@dataclass(frozen=True)
class ThreadSettings:
    """What genae decided for this process's threads (before anything is applied)."""

    threads: int | None  # intra-op threads to use; None: torch's default (or OMP_NUM_THREADS)
    ranks_per_host: int  # torch's default is divided by this when `threads` is None
    set_waiting: bool  # choose the waiting, unless the user has set one of WAITING_VARIABLES
    source: str  # where the thread count comes from, for GENAE_SHOW_RUNTIME
    waiting: str = "left alone"  # what genae chose for the waiting and why, for GENAE_SHOW_RUNTIME


def _positive_int(text: str, where: str, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{where}: expected {expected}, got {text!r}")
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


def other_runnable_tasks(path: str = LOADAVG) -> int | None:
    """Tasks runnable now besides the caller (the fewest over a few looks), from the kernel's
    run queue in /proc/loadavg ('1.0 0.5 0.3 RUNNABLE/TOTAL LAST_PID'); None where unreadable.
    Counts the caller once, so call it while this process has a single thread."""
    fewest = None
    for look in range(LOOKS):
        if look:
            time.sleep(LOOK_INTERVAL_S)
        try:
            with open(path) as loadavg:
                runnable = int(loadavg.read().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return None
        fewest = runnable - 1 if fewest is None else min(fewest, runnable - 1)
    return max(fewest or 0, 0)


class ProcessRegistry:
    """The user's genae processes alive now, with the threads each uses: one file per process,
    named by its pid and holding its thread count, exclusively locked (flock) for the process's
    life. The run queue alone misses a job that starts at the same moment (both are still
    starting, mostly waiting on imports, when each looks); a lock cannot go stale, since the
    kernel releases it when its process ends, however that happens."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: int | None = None  # the descriptor whose lock marks this process alive

    def register(self, threads: int) -> None:
        """Announce this process. The file appears under its final name already locked, so a
        reader never takes a process that is registering for a dead one."""
        if fcntl is None:
            raise OSError("no POSIX file locks here")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        pending = self.directory / f".{os.getpid()}.pending"
        descriptor = os.open(pending, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.write(descriptor, str(threads).encode())
        os.replace(pending, self.directory / str(os.getpid()))
        self._held = descriptor

    def other_threads(self) -> int:
        """Threads of the other live genae processes; files of dead ones are removed."""
        if fcntl is None:
            raise OSError("no POSIX file locks here")
        total = 0
        for entry in self.directory.iterdir():
            if entry.name.startswith(".") or entry.name == str(os.getpid()):
                continue
            try:
                descriptor = os.open(entry, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # locked: its process is alive
                text = os.read(descriptor, 32).decode(errors="replace").strip()
                total += int(text) if text.isdigit() else 1
            else:  # nobody holds it: its process has ended
                with contextlib.suppress(OSError):
                    entry.unlink()
            finally:
                os.close(descriptor)
        return total


def user_registry() -> ProcessRegistry:
    """The registry of this user's genae processes, in the temporary directory."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return ProcessRegistry(Path(tempfile.gettempdir()) / f"genae-{user}" / "processes")


def competing_threads(threads: int, registry: ProcessRegistry | None = None) -> int | None:
    """Register this process (with the `threads` it will use) and count the threads that will
    compete with it for the cores: the other runnable tasks or the threads of the user's other
    genae processes, whichever is more. None where neither can be read."""
    registry = registry if registry is not None else user_registry()
    try:
        registry.register(threads)
    except OSError:
        registry = None
    runnable = other_runnable_tasks()
    try:
        registered = registry.other_threads() if registry is not None else None
    except OSError:
        registered = None
    known = [count for count in (runnable, registered) if count is not None]
    return max(known) if known else None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def intended_threads(settings: ThreadSettings, environ: Mapping[str, str], cores: int) -> int:
    """The intra-op threads this process will run with (torch's default is one per core)."""
    if settings.threads is not None:
        return settings.threads
    exported = environ.get("OMP_NUM_THREADS", "").strip()
    if exported.isdigit() and int(exported) > 0:
        return int(exported)
    return max(1, cores // settings.ranks_per_host)


def choose_waiting(competing: int | None, threads: int, cores: int) -> tuple[dict[str, str], str]:
    """(variables to export, why) for the OpenMP wait policy; see the module's docstring."""
    if competing is None:
        return dict(WAITING), "passive: the machine's load cannot be read"
    if competing + threads > cores:
        return dict(WAITING), f"passive: {competing} other thread(s) busy, {cores} cores"
    return {}, f"spinning: {competing} other thread(s) busy, {cores} cores"


def configure_environment(
    argv: Sequence[str],
    environ: MutableMapping[str, str] = os.environ,
    competition: Callable[[int], int | None] = competing_threads,
) -> ThreadSettings:
    """Put genae's OpenMP settings into `environ`; only takes effect before torch is imported.
    `competition(threads)` counts the threads that would compete with this process's `threads`
    (tests pass their own)."""
    settings = choose_threads(argv, environ)
    why = "left alone"
    if settings.set_waiting:
        if any(name in environ for name in WAITING_VARIABLES):
            why = "the user's"
        else:
            cores = usable_cores()
            threads = intended_threads(settings, environ, cores)
            variables, why = choose_waiting(competition(threads), threads, cores)
            environ.update(variables)
    if settings.threads is not None:
        # Explicitly asked for, so it replaces an exported value; MKL reads OMP_NUM_THREADS too.
        environ["OMP_NUM_THREADS"] = str(settings.threads)
    return replace(settings, waiting=why)


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
        + f"waiting {settings.waiting}, flush_denormal {denormals_flushed()}"
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
