"""Rebuild a dataset's domain classifier ("judge") from its recipe and check it against the shipped
one.

    OMP_NUM_THREADS=1 python scripts/build_judge.py fashion-mnist --out DIR [--test]
    OMP_NUM_THREADS=1 python scripts/build_judge.py fashion-mnist --which second --out DIR

Trains the judge exactly as `genae.metrics.judge.domain_classifier` does when it trains one
(`judge_recipe(dataset, which)` through `genae.training.runs.ensure_run`: seed 0 for the first
judge, 1 for the second, validation split carved out of the training split, no test split), into
DIR/runs/<role>-<dataset>-<key> (role: judge, or judge2 for the second judge; DIR is the run
cache here, as $GENAE_DATA_DIR is for genae; a second call finds the finished run there and
trains nothing). It then writes the files genae ships for a pinned judge to DIR/<dataset>/ (the
second judge: DIR/<dataset>/second/):

    config.json, model.safetensors, metrics.jsonl   the run (genae.load works on the directory)
    judge.json                                      the training data's fingerprint and the build

and prints the weights' SHA-256, the validation accuracy, and whether the hash matches the one
recorded for the shipped judge (`PINNED_SHA256`; the second judge's: `SECOND_PINNED_SHA256`). To
ship a new judge, copy DIR/<dataset>/* to src/genae/judges/<dataset>/ (the second judge:
DIR/<dataset>/second/* to src/genae/judges/<dataset>/second/) and record the printed hash in
PINNED_SHA256 (SECOND_PINNED_SHA256).

--test reads the test split once, after training, and prints the judge's test accuracy (the
recipe must not be tuned on it).

Bitwise equality: training sums floats in an order that depends on the CPU kind (its SIMD width,
which kernels oneDNN/MKL pick), the number of intra-op threads and the torch version. The
shipped Fashion-MNIST judge was built on an x86-64 CPU with OMP_NUM_THREADS=1; a rebuild elsewhere
gives a judge of about the same accuracy whose hash usually differs, and this script then says
"different" (exit status 1) rather than failing anywhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import torch

from genae.data.sources import check_dataset_name, load_dataset
from genae.metrics.judge import (
    JUDGES,
    PINNED_INFO_FILE,
    domain_classifier,
    weights_sha256,
)
from genae.training import rundir
from genae.training.runs import data_fingerprint
from genae.version import __version__

SHIPPED_FILES = (rundir.CONFIG_FILE, rundir.WEIGHTS_FILE, rundir.METRICS_FILE)


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="a dataset with class labels, e.g. fashion-mnist")
    parser.add_argument("--out", type=Path, required=True, help="build directory")
    parser.add_argument("--data-dir", type=Path, help="where the dataset is (default: as genae)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--which",
        choices=tuple(JUDGES),
        default="first",
        help="which judge: first (fid, conditional_accuracy) or second (fid_second_judge)",
    )
    parser.add_argument("--test", action="store_true", help="print the test accuracy (read once)")
    args = parser.parse_args(argv)

    dataset = check_dataset_name(args.dataset)
    # Loaded before the cache moves to --out: the dataset is found where genae finds it.
    data = load_dataset(dataset, args.data_dir)
    os.environ["GENAE_DATA_DIR"] = str(args.out.resolve())
    kind = JUDGES[args.which]
    judge = domain_classifier(
        dataset, device=args.device, data=data, pinned=False, which=kind.which
    )

    ship = args.out / dataset / kind.pinned_subdir  # pinned_place's layout
    ship.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED_FILES:
        shutil.copyfile(judge.run_dir / name, ship / name)
    which_flag = "" if kind.which == "first" else f"--which {kind.which} "
    info = {
        "dataset": dataset,
        "judge": kind.which,
        "data_fingerprint": data_fingerprint(data).hex(),
        "sha256": judge.sha256,
        "val_accuracy": judge.val_accuracy,
        "built_with": {
            "command": f"python scripts/build_judge.py {dataset} {which_flag}--out DIR",
            "genae": __version__,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
        },
    }
    (ship / PINNED_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")

    print(f"judge:          {judge.run_dir}")
    print(f"shippable:      {ship}")
    print(f"threads:        {torch.get_num_threads()}")
    print(f"val_accuracy:   {judge.val_accuracy:.4f}")
    if args.test:
        test = data.test.unseal()
        predicted = judge.predict(test.images.float() / 255)
        accuracy = (predicted == test.labels).float().mean().item()
        print(f"test_accuracy:  {accuracy:.4f}")
    print(f"sha256:         {judge.sha256}")
    recorded = kind.pinned_sha256.get(dataset)
    if recorded is None:
        print(f"shipped:        none for '{dataset}'")
        return 0
    # The shipped file itself is checked against the record by the tests; here: the rebuild.
    assert weights_sha256(ship / rundir.WEIGHTS_FILE) == judge.sha256
    if judge.sha256 == recorded:
        print(f"shipped:        {recorded} - same (bitwise)")
        return 0
    print(
        f"shipped:        {recorded} - different (bitwise equality needs the CPU kind, thread "
        f"count and torch version it was built with; see this script's docstring)"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
