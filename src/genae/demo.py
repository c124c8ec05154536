"""`genae demo`: a VAE and a supervised conditional VAE, trained briefly side by side, with
sample grids per snapshot epoch (the conditional one labelled with a class per row) and a
per-epoch metrics table. Works offline, and takes about a minute of CPU time (see the README).

The demo's point is the difference between the two models' samples, which small networks on a
subset of the data show as well as the full setting; the experiments (`genae experiment
vae-vs-cvae`) train the paper-sized networks on all of it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from genae.api import fit
from genae.data.sources import load_dataset
from genae.data.types import DatasetSplits
from genae.errors import DataError
from genae.io import write_text_atomic

MODELS = ("vae", "cvae")
MODEL_CONFIG: dict[str, Any] = {"hidden": [256, 256], "latent_dim": 2}
TRAIN_EXAMPLES = 20_000  # of a 28x28 dataset's training split; the 8x8 digits use all theirs
SMALL_EPOCH_FACTOR = 10  # the digits' 1,350 training images: ten times the epochs


def demo_data(data_dir: Path | None) -> DatasetSplits:
    """Fashion-MNIST or MNIST if present (never downloads), else the embedded 8x8 digits."""
    reasons = []
    for name in ("fashion-mnist", "mnist"):
        try:
            return load_dataset(name, data_dir, download=False)
        except DataError as exc:
            reasons.append(str(exc))
    print(
        "genae demo: no 28x28 dataset found, using the embedded 8x8 digits instead "
        "(install Debian's dataset-fashion-mnist, or pass --data-dir, for the full demo)",
        file=sys.stderr,
    )
    return load_dataset("digits")


def demo_train_config(data: DatasetSplits, epochs: int) -> dict[str, Any]:
    """The training settings of both demo runs on `data`."""
    small = data.spec.shape[-1] <= 8
    epochs = epochs * (SMALL_EPOCH_FACTOR if small else 1)
    return {
        "epochs": epochs,
        "batch_size": 100,
        "lr": 1e-3,
        "seed": 0,
        "max_train_examples": 0 if small else TRAIN_EXAMPLES,
        "snapshot_epochs": sorted({1, (epochs + 1) // 2, epochs}),
    }


def metrics_table(data: DatasetSplits, train: dict[str, Any], histories: dict) -> str:
    """The markdown table of both runs: validation metrics per epoch, test metrics at the end."""
    hidden = "-".join(str(width) for width in MODEL_CONFIG["hidden"])
    examples = f"{train['max_train_examples']:,}" if train["max_train_examples"] else "all"
    lines = [
        f"# genae demo on {data.name} ({data.source})",
        "",
        f"Negative ELBO (nats per image, lower is better) and reconstruction MSE; MLP {hidden}, "
        f"latent {MODEL_CONFIG['latent_dim']}, {examples} training examples, "
        f"{train['epochs']} epochs. Per epoch on the validation split, last row on the test split.",
        "",
        "| epoch | vae neg_elbo | cvae neg_elbo | vae recon_mse | cvae recon_mse |",
        "|---:|---:|---:|---:|---:|",
    ]
    vae, cvae = histories["vae"], histories["cvae"]
    rows = [(str(v["epoch"]), "val", v, c) for v, c in zip(vae, cvae)]
    rows.append(("test", "test", vae[-1], cvae[-1]))
    for epoch, split, vae_row, cvae_row in rows:
        lines.append(
            f"| {epoch} | {vae_row[f'{split}_neg_elbo']:.2f} | "
            f"{cvae_row[f'{split}_neg_elbo']:.2f} | {vae_row[f'{split}_recon_mse']:.4f} | "
            f"{cvae_row[f'{split}_recon_mse']:.4f} |"
        )
    lines += [
        "",
        "Sample grids: `vae/samples/epoch_NNN.png` and `cvae/samples/epoch_NNN.png` "
        "(conditional VAE: one row per class, named on the left, one shared z per column). "
        "Codes of the test images: `vae/pictures/latent.png`, `cvae/pictures/latent.png`.",
    ]
    return "\n".join(lines) + "\n"


def run_demo(out: Path, epochs: int = 5, data_dir: Path | None = None) -> Path:
    data = demo_data(data_dir)
    train = demo_train_config(data, epochs)
    histories = {}
    for model in MODELS:
        run = fit(
            model,
            model_config=MODEL_CONFIG,
            train_config=train,
            data=data,
            run_dir=out / model,
            force=True,
        )
        histories[model] = run.history
    table = metrics_table(data, train, histories)
    write_text_atomic(out / "metrics.md", table)
    print(table)
    return out / "metrics.md"
