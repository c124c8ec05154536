"""How much class information do an M1 VAE's codes hold? An upper bound for M1+M2.

Trains the M2 classifier's network (one softplus layer of 500) on samples of q(z1|x) from a
finished `vae` run with ALL training labels, and prints its accuracy on the run's validation
split per epoch (the test split stays sealed), with the number of active latent units
(posterior-mean variance over the data above 0.01). M1+M2 with a few labels cannot be expected
to beat this.

    python scripts/m1_code_probe.py RUN_DIR/m1 [--epochs 10]

Measured on the M1 of `genae train m1m2 --dataset fashion-mnist --labels 100 --binarize
--m1-epochs 30 ...` (seed 0), before runs had a validation split: 7 active units of 50,
test accuracy 0.79 after 10 epochs.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished 'vae' run (for M1+M2: RUN_DIR/m1)")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = rundir.read_run_config(args.run_dir)
    if config["model"] != "vae":
        raise SystemExit(f"{args.run_dir}: a '{config['model']}' run; expected a 'vae' run")
    train_config = rundir.train_config_of(config)
    m1 = rundir.load(args.run_dir, "cpu").eval()
    examples = training_data(resolve_data(train_config), train_config, m1)
    train, val = on_device(examples, train_config)
    if val is None:
        raise SystemExit(f"{args.run_dir}: the run has no validation split (val_size 0)")
    mean, log_var, labels = codes(m1, train)
    val_mean, _, val_labels = codes(m1, val)
    active = int((mean.var(0) > 0.01).sum())
    print(f"active units {active} of {mean.shape[1]}")

    classes = int(labels.max()) + 1
    classifier = mlp(mean.shape[1], [500], classes, activation="softplus")
    optimizer = torch.optim.Adam(classifier.parameters(), 1e-3)
    for epoch in range(1, args.epochs + 1):
        for index in torch.randperm(len(mean)).split(100):
            z = reparameterize(mean[index], log_var[index])
            loss = F.cross_entropy(classifier(z), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = (classifier(val_mean).argmax(-1) == val_labels).float().mean().item()
        print(f"epoch {epoch} validation accuracy (all labels, M1 codes) {accuracy:.4f}")


if __name__ == "__main__":
    main()
