"""The validation split and the sealed test split (issue 14).

Per-epoch metrics and every choice use a seeded, stratified validation split carved out of the
training split; the test split is read once, after the last epoch, and the guard here fails when
any code path reads it earlier.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from genae.api import evaluate_run, fit
from genae.data.memory import TensorData, validation_split
from genae.data.sources import load_dataset
from genae.data.types import ImageArrays, SealedSplit
from genae.errors import ConfigError, SealedSplitError
from genae.metrics.fid import fid
from genae.metrics.registry import EvalContext, MetricOptions
from genae.models.registry import build_model
from genae.scores import clustering_accuracy, kmeans_baseline
from genae.training.runs import resolve_val_size

QUICK = {"dataset": "digits", "epochs": 2, "progress": False, "snapshot_epochs": []}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def metrics_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class SentinelTest:
    """A test-split source that raises when read before the run's final evaluation (before
    metrics.jsonl holds a row for every epoch), and counts its reads."""

    def __init__(self, arrays: ImageArrays, run_dir: Path, epochs: int) -> None:
        self.arrays, self.run_dir, self.epochs = arrays, run_dir, epochs
        self.reads = 0

    def __call__(self) -> ImageArrays:
        done = len(metrics_rows(self.run_dir))
        if done < self.epochs:
            raise AssertionError(
                f"the test split was read during training ({done} of {self.epochs} epochs done)"
            )
        self.reads += 1
        return self.arrays


@pytest.mark.parametrize(
    "model, model_config",
    [("vae", {}), ("aae-cluster", {}), ("m1m2", {"m1_epochs": 1, "m1_hidden": [32]})],
)
def test_training_never_reads_the_test_split_before_the_final_evaluation(
    digits, tmp_path, model, model_config
):
    """The guard: fit (helper networks included) reads the test split once, at the end."""
    run_dir = tmp_path / "run"
    sentinel = SentinelTest(digits.test.unseal(), run_dir, epochs=2)
    labels = {"labels": 100} if model == "m1m2" else {}
    run = fit(
        model,
        model_config=model_config,
        train_config={**QUICK, **labels},
        data=replace(digits, test=SealedSplit(sentinel)),
        run_dir=run_dir,
    )
    assert sentinel.reads == 1
    rows = metrics_rows(run_dir)
    assert rows == run.history and len(rows) == 2
    assert not any(k.startswith("test_") for k in rows[0])
    assert {"val_neg_elbo" if model != "aae-cluster" else "val_recon_mse"} <= set(rows[0])
    assert any(k.startswith("test_") for k in rows[-1])


def test_the_sealed_test_split_refuses_every_read_but_unseal(digits):
    for read in (lambda t: t.images, lambda t: t.labels, len):
        with pytest.raises(SealedSplitError, match="test split"):
            read(digits.test)
    assert len(digits.test.unseal()) == 297


def test_validation_split_is_seeded_stratified_and_disjoint(digits):
    train = digits.train
    rest, val = validation_split(train, 150, 10, seed=3)
    again_rest, again_val = validation_split(train, 150, 10, seed=3)
    _, other_val = validation_split(train, 150, 10, seed=4)
    assert len(val) == 150 and len(rest) == len(train) - 150
    assert torch.equal(val.images, again_val.images) and torch.equal(rest.images, again_rest.images)
    assert not torch.equal(val.images, other_val.images)
    # every class gives its share (to within rounding)
    share = torch.bincount(train.labels, minlength=10).double() * 150 / len(train)
    assert (torch.bincount(val.labels, minlength=10) - share).abs().max() < 1
    # disjoint: together they are the training split, each image once
    both = torch.cat([rest.images, val.images]).flatten(1)
    assert sorted(map(bytes, both.numpy())) == sorted(map(bytes, train.images.flatten(1).numpy()))
    # attribute labels (or none): a plain seeded draw
    unlabelled = ImageArrays(train.images)
    rest, val = validation_split(unlabelled, 10, 0, seed=0)
    assert len(val) == 10 and val.labels is None


def test_default_validation_size_and_its_bounds():
    assert resolve_val_size(None, 60_000) == 5_000
    assert resolve_val_size(None, 1500) == 150
    assert resolve_val_size(0, 1500) == 0
    with pytest.raises(ConfigError, match="val_size: expected 0 to 1499"):
        resolve_val_size(1500, 1500)
    with pytest.raises(ConfigError, match="val_size"):
        fit("vae", train_config={**QUICK, "val_size": -1})


def test_validation_split_comes_before_the_training_subset_and_is_kept_on_resume(tmp_path):
    run = fit("vae", train_config={**QUICK, "max_train_examples": 300}, run_dir=tmp_path / "r")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["val_size"] == 150 and "150 examples" in config["validation"]
    assert run.history[0]["step"] == 3  # 300 training examples in batches of 100
    with pytest.raises(ConfigError, match="val_size: the run was started with 150"):
        fit("vae", train_config={**QUICK, "val_size": 100}, run_dir=tmp_path / "r", resume=True)
    resumed = fit("vae", train_config={**QUICK, "epochs": 3}, run_dir=tmp_path / "r", resume=True)
    tested = [any(k.startswith("test_") for k in row) for row in resumed.history]
    assert tested == [False, False, True]  # the shorter run's test values went with it


def test_no_validation_split_means_no_per_epoch_evaluation(tmp_path):
    run = fit("vae", train_config={**QUICK, "val_size": 0}, run_dir=tmp_path / "r")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["val_size"] == 0 and config["validation"].startswith("none")
    assert not any(k.startswith("val_") for row in run.history for k in row)
    assert "test_neg_elbo" in run.history[-1] and "test_neg_elbo" not in run.history[0]


def test_a_run_killed_before_its_test_evaluation_is_tested_on_resume(tmp_path, monkeypatch):
    from genae.training import runs

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(runs, "evaluate_test_once", killed)
        with pytest.raises(KeyboardInterrupt):
            fit("vae", train_config=QUICK, run_dir=tmp_path / "r")
    assert not any(k.startswith("test_") for k in metrics_rows(tmp_path / "r")[-1])
    resumed = fit("vae", train_config=QUICK, run_dir=tmp_path / "r", resume=True)
    last = metrics_rows(tmp_path / "r")[-1]
    assert last["test_neg_elbo"] == resumed.history[-1]["test_neg_elbo"]
    # the same number `genae evaluate` computes from the test split
    assert evaluate_run(tmp_path / "r")["neg_elbo"] == pytest.approx(last["test_neg_elbo"])
    # a resumed finished run reads the test split no more
    sentinel = SentinelTest(ImageArrays(torch.zeros(1, 1, 8, 8, dtype=torch.uint8)), tmp_path, 99)
    data = replace(load_dataset("digits"), test=SealedSplit(sentinel))
    again = fit("vae", train_config=QUICK, data=data, run_dir=tmp_path / "r", resume=True)
    assert again.history[-1] == last


def test_kmeans_baseline_is_fit_on_training_pixels_and_scored_on_the_split(digits):
    from sklearn.cluster import KMeans

    rest, val = validation_split(digits.train, 150, 10, seed=0)
    score = kmeans_baseline(rest.images, val.images, val.labels, 10)
    fitted = KMeans(n_clusters=10, n_init=3, random_state=0).fit(
        rest.images.flatten(1).float().div(255).numpy()
    )
    predicted = fitted.predict(val.images.flatten(1).float().div(255).numpy())
    assert score == pytest.approx(clustering_accuracy(torch.from_numpy(predicted), val.labels))


class FirstPixels:
    """A stand-in domain classifier whose features are the first 16 pixels."""

    id = "first-pixels"

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, :16].double()


def test_fid_on_a_binarized_run_compares_bernoulli_means_with_grey_levels(digits):
    model = build_model("vae", {"hidden": [8], "latent_dim": 2}, digits.spec)
    arrays = digits.test.unseal()
    grey = TensorData(arrays)
    binarized = TensorData(arrays, fixed_binarization_seed=0)
    options = MetricOptions(samples=64)
    judges = {"_judge": FirstPixels(), "_second_judge": FirstPixels()}
    on_binarized = fid(EvalContext(model, binarized, "digits", options, test_grey=grey, **judges))
    on_grey = fid(EvalContext(model, grey, "digits", options, **judges))
    assert on_binarized.about["compared"].startswith("Bernoulli means vs grey-level")
    assert on_binarized.values["fid"] == pytest.approx(on_grey.values["fid"])


def test_evaluating_on_the_validation_split_never_reads_the_test_split(digits, tmp_path):
    """`evaluate_run(split="validation")` (genae evaluate --split val), for choosing between
    runs: the run's own validation split, carved again as it was carved, and no test read."""
    run_dir = tmp_path / "run"
    fit("vae", train_config={**QUICK, "val_size": 150}, data=digits, run_dir=run_dir)
    last = metrics_rows(run_dir)[-1]
    sentinel = SentinelTest(digits.test.unseal(), tmp_path / "none", epochs=1)  # raises if read
    sealed = replace(digits, test=SealedSplit(sentinel))
    result = evaluate_run(run_dir, data=sealed, split="validation", metrics=["iw_nll"])
    assert sentinel.reads == 0
    assert result["split"] == "validation" and result["examples"] == 150
    # the same examples the run validated on in its last epoch
    assert result["neg_elbo"] == pytest.approx(last["val_neg_elbo"], rel=1e-5)
    assert result["computed_on"]["iw_nll"]["split"] == "validation"
    with pytest.raises(ConfigError, match="split: expected one of test, validation"):
        evaluate_run(run_dir, data=sealed, split="train")
    none_dir = tmp_path / "no-val"
    fit("vae", train_config={**QUICK, "val_size": 0}, data=digits, run_dir=none_dir)
    with pytest.raises(ConfigError, match="val_size 0, no validation split"):
        evaluate_run(none_dir, data=sealed, split="validation")
