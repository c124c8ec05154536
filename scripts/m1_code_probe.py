"""How much class information do an M1 VAE's codes hold? An upper bound for M1+M2.

Trains the M2 classifier's network (one softplus layer of 500) on samples of q(z1|x) from a
finished `vae` run with ALL training labels, and prints its accuracy on the run's validation
split per epoch (the test split stays sealed), with the number of active latent units
(posterior-mean variance over the data above 0.01). M1+M2 with a few labels cannot be expected
to beat this.

    python scripts/m1_code_probe.py RUN_DIR/m1 [--epochs 30] [--codes samples|means]

Measured on the M1 of each seed 0-3 of `genae experiment m2-vs-m1m2` (softplus 600-600 M1, free
bits 0.5, 30 epochs, cosine; 50 of 50 units active), validation accuracy after 10 epochs:
- binarised pixels (experiment version 9 and before; 2026-12-05, probe seeded 0): 0.831, 0.841,
  0.837, 0.833;
- grey levels (version 10; 2026-12-07, each probe seeded with its run's seed): on samples
  0.850, 0.851, 0.848, 0.846 (0.849 +- 0.002), on means 0.860, 0.854, 0.865, 0.866.
At 10 epochs the probe was still learning: on the grey M1s of the same command run again
(2026-12-07, `genae train vae --hidden 600,600 --latent-dim 50 --activation softplus --free-bits
0.5 --epochs 30 --lr-schedule cosine --no-binarize --seed S`, the same four networks: epoch 10
gave the values above to the last digit) the probe on samples reads 0.850, 0.851, 0.848, 0.846
at epoch 10, 0.856, 0.858, 0.857, 0.853 at epoch 20 and 0.856, 0.856, 0.862, 0.861
(0.859 +- 0.003) at epoch 30, where it levels off; 30 is the default since (10 before). The
last epoch's value is the probe's reading, not the best epoch's.
The same network on those runs' grey pixels (`--codes pixels`, 30 epochs, 2026-12-07): 0.898 +-
0.006 (0.905, 0.892, 0.894, 0.900). On Fashion-MNIST a classifier with all labels is 4 points
less accurate on M1's codes than on the pixels: a handicap M1+M2 carries against M2, which reads
pixels.
Before runs had a validation split, a relu M1 kept 7 active units of 50 and its probe reached
test accuracy 0.79.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from genae.api import resolve_data
from genae.nn.blocks import mlp, reparameterize
from genae.training import rundir
from genae.training.runs import on_device, training_data


def codes(model, data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    means, log_vars, labels = [], [], []
    with torch.no_grad():
        for batch in data.batches(1000):
            mean, log_var = model.encode(batch.x.flatten(1))
            means.append(mean)
            log_vars.append(log_var)
            labels.append(batch.y)
    return torch.cat(means), torch.cat(log_vars), torch.cat(labels)


def pixels(data) -> tuple[torch.Tensor, torch.Tensor]:
    xs, labels = zip(*((batch.x.flatten(1), batch.y) for batch in data.batches(1000)))
    return torch.cat(xs), torch.cat(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished 'vae' run (for M1+M2: RUN_DIR/m1)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=None, help="default: the run's own seed")
    parser.add_argument(
        "--codes",
        choices=("samples", "means", "pixels"),
        default="samples",
        help="train on samples of q(z1|x) (M1+M2's m1_sample, the default), on its means, or on "
        "the run's pixels instead of its codes (what M2 itself classifies: the yardstick)",
    )
    args = parser.parse_args()

    config = rundir.read_run_config(args.run_dir)
    if config["model"] != "vae":
        raise SystemExit(f"{args.run_dir}: a '{config['model']}' run; expected a 'vae' run")
    train_config = rundir.train_config_of(config)
    # The probe's own initialisation and batch order follow the run's seed, so four seeds of an
    # experiment give four independent probes rather than one probe repeated.
    torch.manual_seed(train_config.seed if args.seed is None else args.seed)
    m1 = rundir.load(args.run_dir, "cpu").eval()
    examples = training_data(resolve_data(train_config), train_config, m1)
    train, val = on_device(examples, train_config)
    if val is None:
        raise SystemExit(f"{args.run_dir}: the run has no validation split (val_size 0)")
    mean, log_var, labels = codes(m1, train)
    val_mean, _, val_labels = codes(m1, val)
    active = int((mean.var(0) > 0.01).sum())
    print(f"active units {active} of {mean.shape[1]}")
    features = "M1 codes"
    if args.codes == "pixels":
        (mean, labels), (val_mean, val_labels) = pixels(train), pixels(val)
        features = "pixels"

    classes = int(labels.max()) + 1
    classifier = mlp(mean.shape[1], [500], classes, activation="softplus")
    optimizer = torch.optim.Adam(classifier.parameters(), 1e-3)
    for epoch in range(1, args.epochs + 1):
        for index in torch.randperm(len(mean)).split(100):
            z = mean[index]
            if args.codes == "samples":
                z = reparameterize(z, log_var[index])
            loss = F.cross_entropy(classifier(z), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = (classifier(val_mean).argmax(-1) == val_labels).float().mean().item()
        print(f"epoch {epoch} validation accuracy (all labels, {features}) {accuracy:.4f}")


if __name__ == "__main__":
    main()
