"""The domain classifier as a model: trained by the common trainer through the CLI, evaluated
per example, and refusing to generate."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from genae.cli import main
from genae.data.sources import load_dataset
from genae.errors import ConfigError
from genae.models.base import Batch
from genae.models.classifier import random_shift
from genae.models.registry import build_model

SMALL = ["--block-channels", "8,16", "--feature-width", "32"]


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_train_classifier_through_the_cli_without_snapshots(tmp_path):
    run = tmp_path / "clf"
    code, out, err = cli(
        "train",
        "classifier",
        "--dataset",
        "digits",
        "--epochs",
        "3",
        "--lr",
        "3e-3",
        "--shift",
        "0",
        *SMALL,
        "--no-progress",
        "--out",
        run,
    )
    assert code == 0, err
    assert "finished classifier" in out and "accuracy" in out
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_accuracy"] > 0.6 and rows[-1]["val_nll"] < rows[0]["val_nll"] + 0.5
    assert not (run / "samples").exists()  # a classifier has no snapshot grids

    code, out, err = cli("sample", run, "--out", tmp_path / "x.png")
    assert code == 2 and "does not generate" in err and len(err.strip().splitlines()) == 1


def test_evaluate_gives_per_example_accuracy_and_nll():
    digits = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model(
        "classifier", {"block_channels": [8], "feature_width": 16}, digits.spec
    ).eval()
    batch = Batch(digits.test.unseal().images[:5].float() / 255, digits.test.unseal().labels[:5])
    metrics = model.evaluate(batch)
    assert set(metrics) == {"accuracy", "nll"}
    assert metrics["accuracy"].shape == (5,) and set(metrics["accuracy"].tolist()) <= {0.0, 1.0}
    assert (metrics["nll"] > 0).all()
    assert model.features(batch.x).shape == (5, 16)
    with pytest.raises(ConfigError, match="does not generate"):
        model.sample(4)
    assert model.generative is False


def test_random_shift_moves_the_whole_batch_and_keeps_its_shape():
    x = torch.zeros(3, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    torch.manual_seed(0)
    moved = [random_shift(x, 2) for _ in range(20)]
    assert all(m.shape == x.shape for m in moved)
    positions = {tuple(torch.nonzero(m[0, 0])[0].tolist()) for m in moved}
    assert len(positions) > 3 and all(2 <= r <= 6 and 2 <= c <= 6 for r, c in positions)
    assert all(torch.equal(m[0], m[1]) for m in moved)
