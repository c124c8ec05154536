"""Two `genae train vae` jobs at once against one alone: is genae a good neighbour?

    python benchmarks/corun.py                # genae's defaults
    python benchmarks/corun.py --baseline     # also with genae's thread settings off (before/after)

Runs one job alone, then two identical jobs at the same time, each a fresh `python -m genae train
vae` process with the same settings, and reads `train_samples_per_s` from each run's
metrics.jsonl (mean over its epochs). It prints the solo samples/s, each concurrent job's, and the
ratio of the two concurrent jobs together to the solo job: 1.0 means two jobs get as much done
as one alone, 2.0 means the machine had idle cores to spare, and far below 1.0 means the jobs
get in each other's way. The goal is at least 0.8 with genae's defaults.

The jobs get no thread-related variable from the user's environment (OMP_*, GOMP_*, KMP_*, MKL_*,
GENAE_THREADS, GENAE_KEEP_DENORMALS are removed), so the figures are genae's own defaults.
`--baseline` repeats both measurements with GENAE_THREADS=off (torch's defaults: spinning
OpenMP workers). Anything else running on the machine skews the figures: run it on an idle one,
and use --repeats to see the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SCRUBBED_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_")
SCRUBBED_NAMES = ("GENAE_THREADS", "GENAE_KEEP_DENORMALS")
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class JobResult:
    samples_per_s: float
    wall_s: float


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment without thread settings, plus `extra`."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(SCRUBBED_PREFIXES) and name not in SCRUBBED_NAMES
    }
    environment.update(extra)
    return environment


def train_command(out: Path, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "genae", "train", "vae", "--out", str(out), "--force"]
    command += ["--dataset", args.dataset, "--epochs", str(args.epochs), "--no-progress"]
    if args.max_train_examples:
        command += ["--max-train-examples", str(args.max_train_examples)]
    return command


def samples_per_s(run_dir: Path) -> float:
    """Mean `train_samples_per_s` over the run's epochs, from its metrics.jsonl."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    speeds = [json.loads(line)["train_samples_per_s"] for line in lines if line.strip()]
    return statistics.fmean(speeds)


def run_jobs(count: int, workdir: Path, args: argparse.Namespace, extra: dict[str, str]):
    """Start `count` identical jobs at once; their results once all have finished."""
    environment = clean_environment(extra)
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    jobs = []
    for index in range(count):
        out = workdir / f"job{index}"
        log = (workdir / f"job{index}.log").open("w")
        process = subprocess.Popen(
            train_command(out, args),
            env=environment,
            cwd=REPOSITORY,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        jobs.append((process, out, log))
    results = []
    for process, out, log in jobs:
        code = process.wait()
        log.close()
        if code != 0:
            tail = Path(log.name).read_text()[-2000:]
            raise SystemExit(f"corun: a training job failed (exit {code}):\n{tail}")
        results.append(JobResult(samples_per_s(out), time.perf_counter() - started))
    return results


def measure(label: str, args: argparse.Namespace, extra: dict[str, str]) -> float:
    """One solo job, then two at once; prints them and returns the ratio."""
    with tempfile.TemporaryDirectory(prefix="genae-corun-") as scratch:
        (solo,) = run_jobs(1, Path(scratch) / "solo", args, extra)
        pair = run_jobs(2, Path(scratch) / "pair", args, extra)
    ratio = sum(job.samples_per_s for job in pair) / solo.samples_per_s
    each = ", ".join(f"{job.samples_per_s:,.0f}" for job in pair)
    print(
        f"{label:<12} solo {solo.samples_per_s:>8,.0f} samples/s ({solo.wall_s:.0f} s)   "
        f"concurrent {each} samples/s ({max(job.wall_s for job in pair):.0f} s)   "
        f"ratio {ratio:.2f}",
        flush=True,
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--max-train-examples", type=int, default=0, help="a smaller training set (0: all)"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="also measure with genae's thread settings off"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:VAR=VALUE,...",
        help="also measure with these variables set, e.g. 'one-thread:GENAE_THREADS=1'",
    )
    parser.add_argument("--repeats", type=int, default=1, help="measure this many times")
    args = parser.parse_args()
    settings: dict[str, dict[str, str]] = {"defaults": {}}
    if args.baseline:
        settings["baseline"] = {"GENAE_THREADS": "off"}
    for variant in args.variant:
        label, _, assignments = variant.partition(":")
        pairs = [item.split("=", 1) for item in assignments.split(",") if item]
        if not label or any(len(pair) != 2 for pair in pairs):
            parser.error(f"--variant: expected LABEL:VAR=VALUE,..., got '{variant}'")
        settings[label] = dict(pairs)
    print(
        f"two concurrent `genae train vae` jobs vs one alone: {args.dataset}, {args.epochs} "
        f"epoch(s), {os.cpu_count()} CPUs; ratio = both concurrent together / solo",
        flush=True,
    )
    ratios: dict[str, list[float]] = {label: [] for label in settings}
    for _ in range(args.repeats):
        for label, extra in settings.items():
            ratios[label].append(measure(label, args, extra))
    if args.repeats > 1:
        for label, values in ratios.items():
            shown = ", ".join(f"{v:.2f}" for v in values)
            print(f"{label}: median ratio {statistics.median(values):.2f} ({shown})")


if __name__ == "__main__":
    main()
