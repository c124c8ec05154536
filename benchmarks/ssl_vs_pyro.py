"""Semi-supervised classification: genae's M2 against Pyro's SS-VAE (M2), on the same data.

    python benchmarks/ssl_vs_pyro.py --dataset fashion-mnist --labels 100 --seeds 0,1,2,3 \
        [--epochs N] [--data-dir DIR] [--max-train-examples N] [--json OUT] \
        [--genae-compile] [--pyro-jit]

Needs the benchmark extra: `pip install -e '.[bench]'` (pyro-ppl).

Both contenders, for every seed, see the same arrays: the dataset as genae.data.sources loads it,
the same training subset (`random_subset`, for --max-train-examples), the same labelled examples
(`stratified_indices`: labels / K per class, seeded) and the same test set, binarised the same
way (a fresh Bernoulli draw of every training pixel each time it is seen; the test set binarised
once with the seed) when --binarize is on. Every training example is in the unlabelled stream,
the labelled ones included (their labels hidden there), for both contenders. Test accuracy is
the classifier q(y|x) on the test split.

genae: `genae.api.fit("m2", ...)` with the recipe of the m2 run of the `m2-vs-m1m2` experiment
(genae/experiments/m2-vs-m1m2.toml), so the benchmark follows that recipe as it changes; only
dataset, epochs, seed, labels, binarisation and the training subset come from this command.

Pyro: an SS-VAE (M2) written here against Pyro's public API (pyro.sample, pyro.plate,
config_enumerate + TraceEnum_ELBO), with the settings of Pyro's SS-VAE tutorial: MLPs with one
hidden layer of 500 softplus units, a 50-d z, a Bernoulli decoder, y in the guide enumerated
exactly and in parallel (so the unlabelled bound is the exact sum over classes), an auxiliary
classification loss -46 * log q(y|x) on the labelled examples (its own SVI step, after the ELBO
step, on each labelled batch), summed (not averaged) losses, Adam with lr 4.2e-4 and betas
(0.9, 0.999), batch 200. Schedule, as in the tutorial: each epoch is one pass over the
unlabelled stream in batches of 200 with the labelled examples, shuffled and cut into batches
of 200, spread evenly between them, so every labelled example is visited about once per epoch
(with 100 labels: one labelled batch of 100 per ~300 unlabelled ones on Fashion-MNIST).

Supervised baseline: genae's runs report `supervised_baseline_accuracy`, the same classifier
network trained on the labelled examples alone. Pyro's classifier is that same network
(784-500-K, softplus) on the same labelled examples and test set whenever genae's recipe uses
`classifier_hidden = [500]` with softplus, and then the Pyro entry reuses genae's number for
that seed (one computation for both; `baseline_source: "genae"`). Otherwise, or when genae's run
failed, the Pyro worker trains that classifier itself on the labels alone, one labelled batch
(up to 200) per SVI step for as many steps as the SS-VAE took, Adam at Pyro's learning rate
(`baseline_source: "pyro-worker"`).

Speed: training samples/s, the mean over epochs 2.. (epoch 1 alone when there is one; the first
epoch carries the warm-up), evaluation excluded. genae: its `train_objective_samples_per_s`
(training examples per second of M2's own phase; the labelled minibatch that rides along in every
step is not counted, and the supervised baseline's phase, a yardstick that Pyro's timed loop does
not train, is left out; the whole step's speed, baseline included, is `train_samples_per_s`,
reported as `with_baseline_samples_per_s`).
Pyro: every example an SVI step consumed (unlabelled and labelled) per second of its training
loop. Each contender runs in its own subprocess per seed (so a crash of one leaves the other's
numbers, and process-wide settings do not leak): genae flushes denormal floats at import, and as
in benchmarks/throughput.py the Pyro worker keeps torch's default (GENAE_KEEP_DENORMALS=1; pass
--pyro-flush-denormals to give Pyro the same setting).

Validation: both contenders hold out the same validation split of the training data (genae's
default size, seeded and stratified, exactly as genae's trainer carves it) before the training
subset and the labelled examples are drawn. Per-epoch accuracy is measured on it
(`epoch_val_accuracy`); the test split is read once, after the last epoch, for the reported
accuracy. Nothing here is tuned: genae's recipe was chosen on validation by
scripts/m2_recipe_sweep.py, and Pyro's settings are its tutorial's.

Output: a per-seed table (test accuracy, supervised baseline, gain, training samples/s) for both
contenders, then mean +- sd; with --json, {"genae": {...}, "pyro": {...}, "settings": {...}},
each contender with per-seed lists (`per_seed`), `mean` and `sd` of accuracy,
supervised_baseline_accuracy, samples_per_s and with_baseline_samples_per_s (genae's whole step;
None for Pyro). The exit status is 1 when a contender crashed
on any seed (the other's results are still printed and written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GENAE_EXPERIMENT = "m2-vs-m1m2"  # genae's recipe: this experiment's run named GENAE_RUN
GENAE_RUN = "m2"
RESULT_PREFIX = "RESULT "  # a worker's last line on stdout: RESULT {json}
METRICS = ("accuracy", "supervised_baseline_accuracy", "samples_per_s")
# summarised per contender beside METRICS (None where a contender has no such figure)
SUMMARISED = (*METRICS, "with_baseline_samples_per_s")

# Pyro's SS-VAE tutorial settings.
PYRO_HIDDEN = (500,)
PYRO_LATENT_DIM = 50
PYRO_BATCH_SIZE = 200
PYRO_LR = 4.2e-4
PYRO_BETAS = (0.9, 0.999)
PYRO_AUX_MULTIPLIER = 46.0


# ---------------------------------------------------------------------------------------------
# Shared data: what both contenders train and are tested on
# ---------------------------------------------------------------------------------------------


def load_splits(dataset: str, data_dir: str | None):
    from genae.data.sources import load_dataset

    return load_dataset(dataset, data_dir)


def shared_config(*, seed: int, labels: int, binarize: bool, max_train_examples: int):
    """The training config whose data genae's m2 run draws for this seed (the default validation
    size); the Pyro worker draws the same through genae's own functions."""
    from genae.config import TrainConfig

    return TrainConfig(
        seed=seed, labels=labels, binarize=binarize, max_train_examples=max_train_examples
    )


def shared_data(splits, *, seed: int, labels: int, binarize: bool, max_train_examples: int):
    """(train, labelled indices into train, validation) exactly as genae's trainer builds
    them for this seed: genae's `training_data` (validation split, training subset, labelled
    examples) and its binarisation."""
    from genae.data.memory import TensorData
    from genae.models.registry import model_class
    from genae.training.runs import test_on_device, training_data

    config = shared_config(
        seed=seed, labels=labels, binarize=binarize, max_train_examples=max_train_examples
    )
    drawn = training_data(splits, config, model_class("m2"))
    train = TensorData(drawn.train, binarize=binarize)
    return train, drawn.labelled, test_on_device(drawn.val, config)


def shared_test(splits, *, seed: int, binarize: bool):
    """The test set, binarised once with the seed as genae's final evaluation does; unsealed
    only after training."""
    from genae.training.runs import test_on_device

    config = shared_config(seed=seed, labels=1, binarize=binarize, max_train_examples=0)
    return test_on_device(splits.test.unseal(), config)


def mean_after_warmup(speeds: list[float]) -> float:
    """Mean samples/s over epochs 2.. (epoch 1 alone when it is the only one)."""
    later = speeds[1:] or speeds
    return sum(later) / len(later)


# ---------------------------------------------------------------------------------------------
# genae
# ---------------------------------------------------------------------------------------------


def genae_recipe(args: argparse.Namespace, seed: int) -> tuple[str, dict, dict]:
    """(model, model_config, train_config) of genae's m2 recipe with this command's settings."""
    from genae.experiments import load_experiment, train_config_of

    experiment = load_experiment(GENAE_EXPERIMENT)
    run = next(r for r in experiment.runs if r.name == GENAE_RUN)
    train = train_config_of(experiment, run, args.dataset, epochs=args.epochs)
    train.update(
        seed=seed,
        labels=args.labels,
        binarize=args.binarize,
        max_train_examples=args.max_train_examples,
        data_dir=args.data_dir,
        progress=False,
        snapshot_epochs=[],
        compile=args.genae_compile,
    )
    return run.model, dict(run.model_config), train


def run_genae(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from genae.api import fit

    model, model_config, train_config = genae_recipe(args, seed)
    splits = load_splits(args.dataset, args.data_dir)
    run = fit(model, model_config=model_config, train_config=train_config, data=splits)
    last = run.history[-1]
    # M2's own training, its supervised baseline's phase left out (a yardstick that Pyro's timed
    # loop does not train); the whole step's speed is kept beside it
    speeds = [h.get("train_objective_samples_per_s", h["train_samples_per_s"]) for h in run.history]
    step_speeds = [h["train_samples_per_s"] for h in run.history]
    config = run.model.config
    return {
        "accuracy": last["test_accuracy"],  # the run's one read of the test split
        "supervised_baseline_accuracy": last.get("test_supervised_baseline_accuracy"),
        "val_accuracy": last["val_accuracy"],
        "samples_per_s": mean_after_warmup(speeds),
        "epoch_samples_per_s": speeds,
        "with_baseline_samples_per_s": mean_after_warmup(step_speeds),
        "epoch_val_accuracy": [h["val_accuracy"] for h in run.history],
        "classifier_hidden": list(config.classifier_hidden),
        "activation": config.activation,
        "recipe": {"model": model, "model_config": model_config, "train_config": train_config},
    }


# ---------------------------------------------------------------------------------------------
# Pyro
# ---------------------------------------------------------------------------------------------


def net(n_in: int, n_out: int):
    """The tutorial's MLP: hidden layers of PYRO_HIDDEN softplus units, then a linear output."""
    from torch import nn

    layers: list[nn.Module] = []
    for width in PYRO_HIDDEN:
        layers += [nn.Linear(n_in, width), nn.Softplus()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


def pyro_ssvae(x_dim: int, num_classes: int):
    """An SS-VAE (Kingma et al.'s M2) as a Pyro model and guide, built on nn.Modules."""
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro import poutine
    from torch import nn

    def joined(*parts: torch.Tensor) -> torch.Tensor:
        """Concatenate on the last dim after broadcasting the leading ones: under parallel
        enumeration y carries an extra leading dim (K, 1, K) that x (B, D) does not."""
        lead = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
        return torch.cat([p.expand(*lead, p.shape[-1]) for p in parts], dim=-1)

    class SSVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = net(x_dim, num_classes)  # q(y|x), logits
            self.encoder = net(x_dim + num_classes, 2 * PYRO_LATENT_DIM)  # q(z|x,y)
            self.decoder = net(PYRO_LATENT_DIM + num_classes, x_dim)  # p(x|y,z), logits

        def model(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> None:
            """p(y) p(z) p(x|y,z); y observed for labelled batches, else from the guide."""
            pyro.module("ssvae", self)
            b = xs.shape[0]
            with pyro.plate("examples", b):
                z = pyro.sample(
                    "z",
                    dist.Normal(xs.new_zeros(b, PYRO_LATENT_DIM), 1.0).to_event(1),
                )
                y = pyro.sample(
                    "y", dist.OneHotCategorical(logits=xs.new_zeros(b, num_classes)), obs=ys
                )
                logits = self.decoder(joined(z, y))
                pyro.sample(
                    "x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=xs
                )

        def guide(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> None:
            """q(y|x) q(z|x,y); y is enumerated (all K values at once) when unobserved."""
            with pyro.plate("examples", xs.shape[0]):
                if ys is None:
                    ys = pyro.sample("y", dist.OneHotCategorical(logits=self.classifier(xs)))
                loc, log_scale = self.encoder(joined(xs, ys)).chunk(2, dim=-1)
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

        def classification_model(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
            """The auxiliary term: -PYRO_AUX_MULTIPLIER * log q(y|x) summed over the batch."""
            pyro.module("ssvae", self)
            with pyro.plate("examples", xs.shape[0]), poutine.scale(scale=PYRO_AUX_MULTIPLIER):
                pyro.sample("y_aux", dist.OneHotCategorical(logits=self.classifier(xs)), obs=ys)

        def classification_guide(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
            pass  # no latent variables in the auxiliary model

    return SSVAE()


def pyro_schedule(n_unlabelled: int, n_labelled: int, seed: int, epoch: int):
    """One epoch's batches: ("u", index) over a shuffled pass of the unlabelled stream, with
    ("l", index) batches of the shuffled labelled examples spread evenly between them."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    unlabelled = torch.randperm(n_unlabelled, generator=gen).split(PYRO_BATCH_SIZE)
    labelled = torch.randperm(n_labelled, generator=gen).split(PYRO_BATCH_SIZE)
    total = len(unlabelled) + len(labelled)
    at = {min(total - 1, int((j + 0.5) * total / len(labelled))) for j in range(len(labelled))}
    schedule, next_u, next_l = [], iter(unlabelled), iter(labelled)
    for position in range(total):
        schedule.append(("l", next(next_l)) if position in at else ("u", next(next_u)))
    return schedule


def classifier_accuracy(classifier, test) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for batch in test.batches(1000):
            correct += int((classifier(batch.x.flatten(1)).argmax(-1) == batch.y).sum())
    return correct / len(test)


def run_pyro(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    import pyro
    import torch.nn.functional as F
    from pyro.infer import (
        SVI,
        JitTrace_ELBO,
        JitTraceEnum_ELBO,
        Trace_ELBO,
        TraceEnum_ELBO,
        config_enumerate,
    )
    from pyro.optim import Adam

    splits = load_splits(args.dataset, args.data_dir)
    train, labelled, val = shared_data(
        splits,
        seed=seed,
        labels=args.labels,
        binarize=args.binarize,
        max_train_examples=args.max_train_examples,
    )
    k, x_dim = splits.spec.num_classes, splits.spec.numel
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    ssvae = pyro_ssvae(x_dim, k)
    optim = Adam({"lr": PYRO_LR, "betas": PYRO_BETAS})  # one optimiser state for both losses
    guide = config_enumerate(ssvae.guide, "parallel", expand=False)
    enum_elbo, elbo = (
        (JitTraceEnum_ELBO, JitTrace_ELBO) if args.pyro_jit else (TraceEnum_ELBO, Trace_ELBO)
    )
    unlabelled_elbo = SVI(ssvae.model, guide, optim, loss=enum_elbo(max_plate_nesting=1))
    labelled_elbo = SVI(ssvae.model, ssvae.guide, optim, loss=elbo())  # y observed
    aux = SVI(ssvae.classification_model, ssvae.classification_guide, optim, loss=elbo())

    speeds, accuracies, steps = [], [], 0
    for epoch in range(1, args.epochs + 1):
        ssvae.train()
        started, seen, loss = time.perf_counter(), 0, 0.0
        for kind, index in pyro_schedule(len(train), len(labelled), seed, epoch):
            if kind == "u":
                xs = train.batch(index).x.flatten(1)
                loss += unlabelled_elbo.step(xs)
            else:
                batch = train.batch(labelled[index])
                xs, ys = batch.x.flatten(1), F.one_hot(batch.y, k).float()
                loss += labelled_elbo.step(xs, ys) + aux.step(xs, ys)
            seen += len(index)
            steps += 1
        speeds.append(seen / (time.perf_counter() - started))
        ssvae.eval()
        accuracies.append(classifier_accuracy(ssvae.classifier, val))
        print(
            f"pyro seed {seed} epoch {epoch}/{args.epochs}  loss/example {loss / seen:.2f}  "
            f"val_accuracy {accuracies[-1]:.4f}  train_samples_per_s {speeds[-1]:.1f}",
            file=sys.stderr,
            flush=True,
        )
        if not math.isfinite(loss):
            raise RuntimeError(f"pyro seed {seed} epoch {epoch}: the loss is not finite")
    test = shared_test(splits, seed=seed, binarize=args.binarize)  # its one read, after training
    baseline = None
    if args.train_baseline:
        baseline = supervised_baseline(train, labelled, test, k, x_dim, steps, seed)
    return {
        "accuracy": classifier_accuracy(ssvae.classifier, test),
        "val_accuracy": accuracies[-1],
        "supervised_baseline_accuracy": baseline,
        "baseline_source": "pyro-worker" if args.train_baseline else None,
        "samples_per_s": mean_after_warmup(speeds),
        "epoch_samples_per_s": speeds,
        "epoch_val_accuracy": accuracies,
        "steps": steps,
    }


def supervised_baseline(train, labelled, test, k: int, x_dim: int, steps: int, seed: int):
    """Test accuracy of the SS-VAE's classifier network trained on the labelled examples alone:
    a batch of up to PYRO_BATCH_SIZE of them per step, `steps` steps, Adam at Pyro's lr."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    classifier = net(x_dim, k)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=PYRO_LR, betas=PYRO_BETAS)
    for _ in range(steps):
        pick = torch.randperm(len(labelled))[:PYRO_BATCH_SIZE]
        batch = train.batch(labelled[pick])
        loss = F.cross_entropy(classifier(batch.x.flatten(1)), batch.y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    classifier.eval()
    return classifier_accuracy(classifier, test)


# ---------------------------------------------------------------------------------------------
# The command: one subprocess per contender and seed, then the tables
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None, help="where the dataset's files are")
    parser.add_argument("--labels", type=int, default=100, help="labelled training examples")
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: the genae recipe's epochs"
    )
    parser.add_argument("--seeds", default="0,1,2,3", help="comma-separated, e.g. 0,1,2,3")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    parser.add_argument(
        "--contenders",
        default="genae,pyro",
        help="which to run (default both; one alone gives no speed ratio)",
    )
    parser.add_argument(
        "--max-train-examples",
        type=int,
        default=0,
        help="train on a seeded random subset of this many examples (0: all; quick runs)",
    )
    parser.add_argument(
        "--binarize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dynamic binarisation of the training images (default: the genae recipe's)",
    )
    parser.add_argument(
        "--genae-compile",
        action="store_true",
        help="genae trains through torch.compile (`genae train --compile`; default: eager)",
    )
    parser.add_argument(
        "--pyro-jit",
        action="store_true",
        help="Pyro's losses are its JIT-traced ones (its example's --jit; default: not traced)",
    )
    parser.add_argument(
        "--pyro-flush-denormals",
        action="store_true",
        help="let the Pyro worker flush denormal floats, as genae does (default: torch's)",
    )
    # Worker mode (one contender, one seed), used by the command itself.
    parser.add_argument("--worker", choices=("genae", "pyro"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--train-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not args.seed_list:
        parser.error("--seeds: no seeds given")
    args.contender_list = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = sorted(set(args.contender_list) - {"genae", "pyro"})
    if unknown or not args.contender_list:
        parser.error(f"--contenders: expected genae and/or pyro, got {args.contenders!r}")
    if args.labels < 1:
        parser.error("--labels: expected at least 1 labelled example")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs: expected an integer >= 1")
    return args


def worker(args: argparse.Namespace) -> int:
    run = run_genae if args.worker == "genae" else run_pyro
    result = run(args, args.seed)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def launch(name: str, seed: int, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """Run one contender on one seed in its own process; its progress goes to stderr."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--seed",
        str(seed),
        "--dataset",
        args.dataset,
        "--labels",
        str(args.labels),
        "--epochs",
        str(args.epochs),
        "--max-train-examples",
        str(args.max_train_examples),
        "--binarize" if args.binarize else "--no-binarize",
        *(["--data-dir", args.data_dir] if args.data_dir else []),
        *(["--genae-compile"] if args.genae_compile else []),
        *(["--pyro-jit"] if args.pyro_jit else []),
        *extra,
    ]
    env = dict(os.environ)
    if name == "pyro" and not args.pyro_flush_denormals:
        env["GENAE_KEEP_DENORMALS"] = "1"
    elif name == "pyro":
        env.pop("GENAE_KEEP_DENORMALS", None)
    print(f"--- {name}, seed {seed}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        why = f"exit status {done.returncode}" if done.returncode else "no result printed"
        print(f"--- {name}, seed {seed}: FAILED ({why})", file=sys.stderr, flush=True)
        return {"seed": seed, "error": why}
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return {"seed": seed, "seconds": round(time.perf_counter() - started, 1), **result}


def reuses_baseline(genae_result: dict[str, Any]) -> bool:
    """Whether genae's supervised baseline is the Pyro classifier's network on the same data."""
    return (
        "error" not in genae_result
        and genae_result.get("supervised_baseline_accuracy") is not None
        and tuple(genae_result["classifier_hidden"]) == PYRO_HIDDEN
        and genae_result["activation"] == "softplus"
    )


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_seed = {m: [r.get(m) for r in runs] for m in SUMMARISED}
    mean, sd = {}, {}
    for metric, values in per_seed.items():
        finished = [v for v in values if v is not None]
        mean[metric] = statistics.fmean(finished) if finished else None
        sd[metric] = statistics.stdev(finished) if len(finished) > 1 else None
    return {
        "seeds": [r["seed"] for r in runs],
        "per_seed": per_seed,
        "mean": mean,
        "sd": sd,
        "failed_seeds": [r["seed"] for r in runs if "error" in r],
        "runs": runs,
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def plus_minus(entry: dict[str, Any], metric: str, spec: str) -> str:
    """'mean +- sd' of a contender's metric over its finished seeds."""
    mean, sd = entry["mean"][metric], entry["sd"][metric]
    if mean is None:
        return "-"
    return format(mean, spec) + ("" if sd is None else f" +- {format(sd, spec)}")


def print_tables(summary: dict[str, dict[str, Any]]) -> None:
    header = f"{'contender':<9} {'seed':>4} {'accuracy':>15} {'baseline':>15} {'gain':>8} "
    print(header + f"{'samples/s':>16}")
    for name, entry in summary.items():
        for run in entry["runs"]:
            if "error" in run:
                print(f"{name:<9} {run['seed']:>4}  FAILED ({run['error']})")
                continue
            acc, base = run["accuracy"], run.get("supervised_baseline_accuracy")
            gain = None if base is None else acc - base
            print(
                f"{name:<9} {run['seed']:>4} {acc:>15.4f} {fmt(base, '.4f'):>15} "
                f"{fmt(gain, '+.4f'):>8} {run['samples_per_s']:>16,.0f}"
            )
    print()
    for name, entry in summary.items():
        acc, base, speed = (
            plus_minus(entry, metric, spec) for metric, spec in zip(METRICS, (".4f", ".4f", ",.0f"))
        )
        print(f"{name:<9} {'mean':>4} {acc:>15} {base:>15} {'':>8} {speed:>16}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    from genae.experiments import load_experiment

    recipe = load_experiment(GENAE_EXPERIMENT).train
    if args.epochs is None:
        args.epochs = int(recipe.get("epochs", 10))
    if args.binarize is None:
        args.binarize = bool(recipe.get("binarize", False))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.contender_list}
    for seed in args.seed_list:
        genae_result = {"seed": seed, "error": "not run"}
        if "genae" in runs:
            genae_result = launch("genae", seed, args, [])
            runs["genae"].append(genae_result)
        if "pyro" not in runs:
            continue
        reuse = reuses_baseline(genae_result)
        pyro_result = launch("pyro", seed, args, [] if reuse else ["--train-baseline"])
        if reuse and "error" not in pyro_result:
            pyro_result["supervised_baseline_accuracy"] = genae_result[
                "supervised_baseline_accuracy"
            ]
            pyro_result["baseline_source"] = "genae"
        runs["pyro"].append(pyro_result)
    summary = {name: summarise(entries) for name, entries in runs.items()}
    print_tables(summary)
    genae_speed, pyro_speed = (
        summary[n]["mean"]["samples_per_s"] if n in summary else None for n in ("genae", "pyro")
    )
    ratio = genae_speed / pyro_speed if genae_speed and pyro_speed else None
    with_baseline = (
        summary["genae"]["mean"]["with_baseline_samples_per_s"] if "genae" in summary else None
    )
    ratio_with_baseline = with_baseline / pyro_speed if with_baseline and pyro_speed else None
    if ratio is not None:
        print(f"\ngenae / pyro training samples/s: {ratio:.2f}x")
    if ratio_with_baseline is not None:
        print(
            f"  (genae's step with its supervised baseline trained alongside: "
            f"{ratio_with_baseline:.2f}x)"
        )
    failed = [name for name, entry in summary.items() if entry["failed_seeds"]]
    if args.json is not None:
        report = {
            **summary,
            "speed_ratio_genae_over_pyro": ratio,
            "speed_ratio_with_genae_baseline": ratio_with_baseline,
            "settings": {
                "dataset": args.dataset,
                "labels": args.labels,
                "epochs": args.epochs,
                "seeds": args.seed_list,
                "binarize": args.binarize,
                "max_train_examples": args.max_train_examples,
                "pyro_flush_denormals": args.pyro_flush_denormals,
                "genae_compile": args.genae_compile,
                "pyro_jit": args.pyro_jit,
                "genae_recipe": f"{GENAE_EXPERIMENT}/{GENAE_RUN}",
                "pyro": {
                    "hidden": list(PYRO_HIDDEN),
                    "latent_dim": PYRO_LATENT_DIM,
                    "batch_size": PYRO_BATCH_SIZE,
                    "lr": PYRO_LR,
                    "betas": list(PYRO_BETAS),
                    "aux_multiplier": PYRO_AUX_MULTIPLIER,
                },
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if failed:
        print(f"crashed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
