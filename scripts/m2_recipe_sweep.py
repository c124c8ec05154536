"""Choose M2's recipe on validation: train each candidate setting for several seeds and print
validation accuracy against the supervised baseline of the same run (mean, sd and per seed).

The test split stays sealed (runs are made with final_test=False), so nothing here reads it.
By default it trains on a seeded 8,000-example subset with 100 labels, the size of the held-out
real-digit check of issue 18, where a recipe's schedule matters most; `--max-train-examples 0`
uses the whole training split.

    python scripts/m2_recipe_sweep.py --out /tmp/m2sweep --seeds 0,1 --only paper,spread
    python scripts/m2_recipe_sweep.py --list

Each finished (setting, seed) is one JSON line in OUT/results.jsonl; a rerun skips those.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from genae.training.runs import train_run

# M1+M2's objective before it took M2's defaults (2026-12-07): the ELBO's weight on I(x; y), the
# exact sum over classes, the labelled bound on every label
M1M2_BEFORE: dict[str, Any] = {
    "y_information_weight": 1.0,
    "sampled_tail_mass": 0.0,
    "labelled_bound_examples": 0,
}

# name -> (model options, training options), each over BASE_TRAIN and the model's defaults
# M1+M2's objective since 2026-12-07 (M2's defaults), with a 100-epoch M1 for the 8,000 examples
M1M2_DEFAULTS_2026_12_07 = {
    "m1_epochs": 100,
    "y_information_weight": -1.0,
    "sampled_tail_mass": 0.05,
    "labelled_bound_examples": 10,
}
CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "defaults": ({}, {}),
    "paper": ({"alpha": 0.1}, {}),  # the paper's alpha (the default until 2026-12-05)
    "spread": ({}, {"labelled_schedule": "spread"}),
    "alpha1": ({"alpha": 1.0}, {}),
    "alpha0.01": ({"alpha": 0.01}, {}),
    "warmup5": ({"warmup_epochs": 5}, {}),
    "spread-alpha1": ({"alpha": 1.0}, {"labelled_schedule": "spread"}),
    "lr3e-4": ({}, {"lr": 3e-4}),
    "batch200": ({}, {"batch_size": 200}),
    "constant-lr": ({}, {"lr_schedule": "constant"}),
    # TrainConfig's own defaults (grey levels, constant lr): what `genae train m2` gave before
    # M2 declared its training defaults
    "grey-constant-lr": ({}, {"binarize": False, "lr_schedule": "constant"}),
    "grey": ({}, {"binarize": False}),
    "latent10": ({"latent_dim": 10}, {}),
    "latent4": ({"latent_dim": 4}, {}),
    "latent10-alpha1": ({"latent_dim": 10, "alpha": 1.0}, {}),
    "latent10-spread": ({"latent_dim": 10}, {"labelled_schedule": "spread"}),
    "latent4-alpha1": ({"latent_dim": 4, "alpha": 1.0}, {}),
    "alpha10": ({"alpha": 10.0}, {}),
    "alpha3": ({"alpha": 3.0}, {}),
    "alpha30": ({"alpha": 30.0}, {}),
    "alpha100": ({"alpha": 100.0}, {}),
    "info1": ({"y_information_weight": 1.0}, {}),  # the ELBO (M2's default until 2026-12-06)
    # below 1, U(x) charges less for I(x; y) (see M2Config); 0 is M2's default
    "info0": ({"y_information_weight": 0.0}, {}),
    "info0.3": ({"y_information_weight": 0.3}, {}),
    # below 0: U(x) rewards I(x; y) (mutual-information clustering, as in IMSAT)
    "info-0.5": ({"y_information_weight": -0.5}, {}),
    "info-1": ({"y_information_weight": -1.0}, {}),
    "info-2": ({"y_information_weight": -2.0}, {}),
    "info-3": ({"y_information_weight": -3.0}, {}),
    "alpha1-info-1": ({"alpha": 1.0, "y_information_weight": -1.0}, {}),
    "alpha3-info-1": ({"alpha": 3.0, "y_information_weight": -1.0}, {}),
    "alpha10-info-1": ({"alpha": 10.0, "y_information_weight": -1.0}, {}),
    "latent4-info0": ({"latent_dim": 4, "y_information_weight": 0.0}, {}),
    "latent10-info0": ({"latent_dim": 10, "y_information_weight": 0.0}, {}),
    # M1+M2 (--model m1m2): M1 trained for more epochs; on small sets its 10 default epochs
    # are few steps (360 on 3,600 images). These pin M1+M2's objective before 2026-12-07 (the
    # ELBO's y_information_weight, the exact class sum), which they were measured with.
    "m1-epochs-100": ({"m1_epochs": 100, **M1M2_BEFORE}, {}),
    # M1 (and M1+M2's baseline) on grey levels: M1+M2's choice in m2-vs-m1m2 since version 10
    "m1-grey-epochs-100": ({"m1_epochs": 100, **M1M2_BEFORE}, {"binarize": False}),
    # M2's y_information_weight (-1) on M1's codes
    "m1-epochs-100-info-1": ({"m1_epochs": 100, **M1M2_BEFORE, "y_information_weight": -1.0}, {}),
    "m1-grey-epochs-100-info-1": (
        {"m1_epochs": 100, **M1M2_BEFORE, "y_information_weight": -1.0},
        {"binarize": False},
    ),
    # ... and M2's sampled class sum and labelled bound on 10: M1+M2's defaults since 2026-12-07
    "m1-grey-epochs-100-info-1-tail": (M1M2_DEFAULTS_2026_12_07, {"binarize": False}),
    "m1-grey-epochs-100-tail": (
        {
            "m1_epochs": 100,
            "y_information_weight": 1.0,
            "sampled_tail_mass": 0.05,
            "labelled_bound_examples": 10,
        },
        {"binarize": False},
    ),
    # M1+M2's defaults (above) with another alpha, and on a binarised M1 (as the unsupervised
    # experiment trains it)
    "m1-grey-epochs-100-info-1-tail-alpha10": (
        {**M1M2_DEFAULTS_2026_12_07, "alpha": 10.0},
        {"binarize": False},
    ),
    "m1-grey-epochs-100-info-1-tail-alpha100": (
        {**M1M2_DEFAULTS_2026_12_07, "alpha": 100.0},
        {"binarize": False},
    ),
    "m1-epochs-100-info-1-tail": (M1M2_DEFAULTS_2026_12_07, {}),
    # a smaller z, so that the class has to go through y (the unsupervised case)
    "m1-grey-epochs-100-info-1-tail-latent10": (
        {**M1M2_DEFAULTS_2026_12_07, "latent_dim": 10},
        {"binarize": False},
    ),
    "m1-grey-epochs-100-info-1-tail-latent4": (
        {**M1M2_DEFAULTS_2026_12_07, "latent_dim": 4},
        {"binarize": False},
    ),
    # the sum over y sampled beyond q(y|x)'s most probable classes (unbiased; faster steps)
    "tail0.05": ({"sampled_tail_mass": 0.05}, {}),
    "tail0.2": ({"sampled_tail_mass": 0.2}, {}),
    "tail0.01-lbound10": ({"sampled_tail_mass": 0.01, "labelled_bound_examples": 10}, {}),
    "exact-lbound10": ({"sampled_tail_mass": 0.0, "labelled_bound_examples": 10}, {}),
    "hidden500-tail0.05": ({"hidden": [500], "sampled_tail_mass": 0.05}, {}),  # the paper's nets
    "tail0.05-lbound10": ({"sampled_tail_mass": 0.05, "labelled_bound_examples": 10}, {}),
    "hidden500-tail0.05-lbound10": (
        {"hidden": [500], "sampled_tail_mass": 0.05, "labelled_bound_examples": 10},
        {},
    ),
    # fewer steps' fixed costs per example (the labelled minibatch's CE and baseline, Adam):
    # Pyro's batch of 200, with and without the lr scaled along; or half the labels per step
    "batch200-lr2e-3": ({}, {"batch_size": 200, "lr": 2e-3}),
    "lbatch50": ({}, {"labelled_batch_size": 50}),
    # dropout in q(y|x) (and in the baseline, the same network): it memorises 100 labels within
    # two epochs, after which the cross-entropy's gradient fades
    "cdrop0.5": ({"classifier_dropout": 0.5}, {}),
    "cindrop0.2-cdrop0.5": ({"classifier_input_dropout": 0.2, "classifier_dropout": 0.5}, {}),
    "cindrop0.2": ({"classifier_input_dropout": 0.2}, {}),
    # a dearer z, so that the decoder leans on y for what it can tell from y
    "zkl2": ({"z_kl_weight": 2.0}, {}),
    "zkl4": ({"z_kl_weight": 4.0}, {}),
    # p(z|y) a Gaussian per class (the CVAE's learned prior): z's class information then
    # enters L(x, y) through the KL, so the bound can tell the classes apart
    "learned-prior": ({"prior": "learned"}, {}),
}

BASE_TRAIN: dict[str, Any] = {
    "dataset": "fashion-mnist",
    "epochs": 30,
    "batch_size": 100,
    "lr": 1e-3,
    "lr_schedule": "cosine",
    "binarize": True,
    "labels": "100",
    "progress": False,
    "snapshot_epochs": [],
}


# beside an M1+M2 run that trained its own M1: the seed and m1_settings it was trained with
M1_SETTINGS_FILE = "m1-settings.json"


def m1_settings(model_options: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """What M1+M2's own M1 depends on besides the seed: its fields and the data it sees."""
    data_keys = ("dataset", "data_dir", "max_train_examples", "binarize", "lr", "lr_schedule")
    return {
        **{key: value for key, value in model_options.items() if key.startswith("m1_")},
        **{key: train.get(key) for key in (*data_keys, "batch_size")},
    }


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    per_seed = ", ".join(f"{v:.3f}" for v in values)
    return f"{statistics.mean(values):.3f} ± {sd:.3f} ({per_seed})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/m2-sweep"))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    parser.add_argument("--epochs", type=int, default=BASE_TRAIN["epochs"])
    parser.add_argument("--labels", default=BASE_TRAIN["labels"])
    parser.add_argument("--max-train-examples", type=int, default=8000)
    parser.add_argument("--dataset", default=BASE_TRAIN["dataset"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="m2")
    parser.add_argument("--list", action="store_true", help="print the candidates and exit")
    parser.add_argument("--report", action="store_true", help="summarise results.jsonl only")
    args = parser.parse_args()
    if args.list:
        for name, (model, train) in CANDIDATES.items():
            print(f"{name:14s} model {model}  train {train}")
        return 0
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        print(f"--only: unknown candidate(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.jsonl"
    done = {}
    # M1s trained by earlier sweeps into this --out, by (seed, m1_settings), so that a later
    # sweep (another --labels, new candidates) reuses them too
    trained_m1: dict[tuple[int, str], Path] = {}
    for record in sorted(args.out.glob(f"*/{M1_SETTINGS_FILE}")):
        about = json.loads(record.read_text())
        if (record.parent / "m1").is_dir():
            trained_m1[(about["seed"], about["m1_settings"])] = (record.parent / "m1").resolve()
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            row = json.loads(line)
            key = (row["model"], row["candidate"], row["max_train_examples"], row["seed"])
            # rows written before the dataset was recorded are Fashion-MNIST's, 100 labels; before
            # the epochs were, one validation accuracy per epoch tells them
            about = (
                str(row.get("labels", "100")),
                row.get("dataset", "fashion-mnist"),
                row.get("epochs", len(row["val_accuracy_by_epoch"])),
            )
            done[(*key, *about)] = row
    if not args.report:
        for name in names:
            model_options, train_options = CANDIDATES[name]
            for seed in seeds:
                key = (
                    args.model,
                    name,
                    args.max_train_examples,
                    seed,
                    str(args.labels),
                    args.dataset,
                    args.epochs,
                )
                if key in done:
                    continue
                train = {
                    **BASE_TRAIN,
                    "epochs": args.epochs,
                    "labels": args.labels,
                    "dataset": args.dataset,
                    "data_dir": args.data_dir,
                    "max_train_examples": args.max_train_examples,
                    "seed": seed,
                    **train_options,
                }
                start = time.perf_counter()
                # M1+M2: a seed's M1 is trained once and shared by the candidates that train the
                # same M1 on the same pixels (a seeded run: the same network either way)
                m1_key = (seed, json.dumps(m1_settings(model_options, train), sort_keys=True))
                shared_m1 = trained_m1.get(m1_key) if args.model == "m1m2" else None
                # every part of the results key, so that two sweeps into one --out (another
                # dataset, another label count or length) never train into the same directory
                run_dir = args.out / (
                    f"{args.model}-{name}-{args.dataset}-n{args.max_train_examples}"
                    f"-labels{args.labels}-epochs{args.epochs}-seed{seed}"
                )
                run = train_run(
                    args.model,
                    model_config={**model_options, "m1": str(shared_m1)}
                    if shared_m1
                    else model_options,
                    train_config=train,
                    run_dir=run_dir,
                    force=True,
                    final_test=False,
                )
                if args.model == "m1m2" and not shared_m1 and "m1" not in model_options:
                    trained_m1[m1_key] = (run_dir / "m1").resolve()
                    about = {"seed": seed, "m1_settings": m1_key[1]}
                    (run_dir / M1_SETTINGS_FILE).write_text(json.dumps(about) + "\n")
                history = run.history
                last = history[-1]
                row = {
                    "model": args.model,
                    "candidate": name,
                    "max_train_examples": args.max_train_examples,
                    "seed": seed,
                    "labels": str(args.labels),
                    "dataset": args.dataset,
                    "epochs": args.epochs,
                    "seconds": round(time.perf_counter() - start, 1),
                    "val_accuracy": last["val_accuracy"],
                    "val_supervised_baseline_accuracy": last["val_supervised_baseline_accuracy"],
                    "val_generative_accuracy": last.get("val_generative_accuracy"),
                    "val_accuracy_by_epoch": [r.get("val_accuracy") for r in history],
                    # training examples per second, the first epoch (warm-up) left out
                    "train_samples_per_s": statistics.mean(
                        r["train_samples_per_s"] for r in history[1:] or history
                    ),
                    # with --labels 0 the categories are clusters: scored by Hungarian matching
                    "val_clustering_accuracy": last.get("val_clustering_accuracy"),
                    "val_kmeans_clustering_accuracy": last.get("val_kmeans_clustering_accuracy"),
                }
                done[key] = row
                with results_file.open("a") as out:
                    out.write(json.dumps(row) + "\n")
                print(
                    f"{name} seed {seed}: val accuracy {row['val_accuracy']:.3f}, baseline "
                    f"{row['val_supervised_baseline_accuracy']:.3f} ({row['seconds']:.0f} s)",
                    flush=True,
                )
    examples = args.max_train_examples or "all"
    print(f"\n{args.model}, {examples} training examples, {args.labels} labels")
    unsupervised = str(args.labels) == "0"
    if unsupervised:
        print(f"{'candidate':14s} {'val clustering accuracy':34s} {'k-means on the same pixels'}")
    else:
        print(f"{'candidate':14s} {'val accuracy':34s} {'gain over baseline'}")
    this_sweep = (str(args.labels), args.dataset, args.epochs)
    for name in CANDIDATES:
        wanted = (args.model, name, args.max_train_examples)
        # by seed, not by when each finished: parallel sweeps append their seeds interleaved
        rows = sorted(
            (r for k, r in done.items() if k[:3] == wanted and k[4:] == this_sweep),
            key=lambda row: row["seed"],
        )
        if not rows:
            continue
        if unsupervised:
            clusters = [r["val_clustering_accuracy"] for r in rows]
            kmeans = [r["val_kmeans_clustering_accuracy"] for r in rows]
            print(f"{name:14s} {summary(clusters):34s} {summary(kmeans)}")
            continue
        acc = [r["val_accuracy"] for r in rows]
        gain = [r["val_accuracy"] - r["val_supervised_baseline_accuracy"] for r in rows]
        speed = [r["train_samples_per_s"] for r in rows if "train_samples_per_s" in r]
        speed_note = f"  {statistics.mean(speed):,.0f} samples/s" if speed else ""
        print(f"{name:14s} {summary(acc):34s} {summary(gain)}{speed_note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
