"""Pinned judges: the Fashion-MNIST domain classifier ships with the package.

The shipped weights have the SHA-256 recorded in genae.metrics.judge; they are package data; the
judge is loaded, with nothing trained, for data with the fingerprint it was trained on (the real
Fashion-MNIST when it is installed, and a stand-in given that fingerprint); other data, or a
shipped file that lost its hash, fall back to training a judge, which the user is told first.
"""

from __future__ import annotations

import fnmatch
import io
import json
import shutil
import tomllib
import urllib.error
from contextlib import redirect_stderr, redirect_stdout
from importlib import resources
from pathlib import Path

import pytest
import torch

from genae.api import fit
from genae.cli import main
from genae.data import download
from genae.data.arrays import from_arrays
from genae.data.sources import load_dataset
from genae.errors import GenaeError
from genae.metrics import judge as judge_module
from genae.metrics.judge import (
    PINNED_DIR,
    PINNED_INFO_FILE,
    PINNED_SHA256,
    domain_classifier,
    pinned_place,
    weights_sha256,
)
from genae.training import rundir
from genae.training import runs as runs_module
from genae.training.runs import data_fingerprint

REPO = Path(__file__).resolve().parent.parent
FASHION = "fashion-mnist"
SHIPPED = (rundir.CONFIG_FILE, rundir.WEIGHTS_FILE, rundir.METRICS_FILE, PINNED_INFO_FILE)
CLASS_NAMES = tuple(f"c{k}" for k in range(10))


class TrainingCalled(Exception):
    pass


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any judge (or other helper) training from here on fails the test."""

    def fail(*args, **kwargs):
        raise TrainingCalled("a network was trained")

    monkeypatch.setattr(judge_module, "ensure_run", fail)
    monkeypatch.setattr(runs_module, "train_run", fail)


def stand_in(seed: int = 0):
    """A tiny 28x28 ten-class dataset named fashion-mnist (not Fashion-MNIST's data)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (60, 1, 28, 28), generator=gen, dtype=torch.uint8)
    labels = torch.arange(60) % 10
    return from_arrays(images, labels, name=FASHION, class_names=CLASS_NAMES)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_shipped_weights_have_the_recorded_sha256():
    weights = pinned_place(FASHION) / rundir.WEIGHTS_FILE
    assert weights_sha256(weights) == PINNED_SHA256[FASHION]
    info = json.loads((pinned_place(FASHION) / PINNED_INFO_FILE).read_text())
    assert info["sha256"] == PINNED_SHA256[FASHION] and info["dataset"] == FASHION
    assert weights.stat().st_size < 5_000_000  # small enough to ship


def test_the_pinned_judge_is_package_data():
    shipped = resources.files("genae").joinpath(PINNED_DIR, FASHION)
    for name in SHIPPED:
        assert shipped.joinpath(name).is_file(), name
    # ...and listed in pyproject's package data, so a wheel or sdist carries it
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["genae"]
    for name in SHIPPED:
        path = f"{PINNED_DIR}/{FASHION}/{name}"
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path


def test_the_shipped_run_loads_with_genae_load():
    model = rundir.load(pinned_place(FASHION))
    assert model.name == "classifier"


def test_other_data_named_fashion_mnist_train_their_own_judge_and_say_so_first(
    fresh_cache, monkeypatch, capsys
):
    # a tiny recipe: the stand-in's judge is trained for real, in a second
    tiny = {"epochs": 1, "batch_size": 20, "model": {"block_channels": [4], "feature_width": 8}}
    monkeypatch.setitem(judge_module.RECIPES, FASHION, tiny)
    judge = domain_classifier(FASHION, data=stand_in())
    assert not judge.pinned and "pinned" not in judge.id
    assert judge.run_dir.parent == fresh_cache / "runs"
    assert judge.run_dir.name.startswith(f"judge-{FASHION}-")
    err = capsys.readouterr().err.splitlines()
    assert "differ from those the domain classifier shipped with genae was trained on" in err[0]
    assert "training one" in err[0]
    assert any(line.startswith("epoch 1/1") for line in err[1:])  # its progress


def test_the_shipped_judge_is_used_for_data_with_its_fingerprint(
    tmp_path, fresh_cache, monkeypatch
):
    """Without the real data: a copy of the shipped judge whose record names the stand-in's
    fingerprint is loaded, nothing trained; once its weights lose their hash, it is not."""
    data = stand_in()
    place = tmp_path / PINNED_DIR / FASHION
    shutil.copytree(pinned_place(FASHION), place)
    info = json.loads((place / PINNED_INFO_FILE).read_text())
    info["data_fingerprint"] = data_fingerprint(data).hex()
    (place / PINNED_INFO_FILE).write_text(json.dumps(info))
    monkeypatch.setattr(
        judge_module, "pinned_place", lambda dataset: tmp_path / PINNED_DIR / dataset
    )
    forbid_training(monkeypatch)

    judge = domain_classifier(FASHION, data=data)
    assert judge.pinned and judge.run_dir == place
    assert judge.sha256 == PINNED_SHA256[FASHION]
    assert judge.id == f"classifier-sha256:{PINNED_SHA256[FASHION][:16]} (pinned)"
    assert not (fresh_cache / "runs").exists()

    weights = bytearray((place / rundir.WEIGHTS_FILE).read_bytes())
    weights[-1] ^= 1
    (place / rundir.WEIGHTS_FILE).write_bytes(bytes(weights))
    with pytest.raises(TrainingCalled):
        domain_classifier(FASHION, data=data)


@pytest.fixture
def fashion_mnist(fresh_cache, monkeypatch):
    """The real Fashion-MNIST, from where it is installed (no download), or skip."""

    def offline(url, dest):
        raise urllib.error.URLError("no downloads in this test")

    monkeypatch.setattr(download, "fetch", offline)
    try:
        return load_dataset(FASHION)
    except GenaeError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")


def test_fashion_mnist_loads_the_shipped_judge_without_training(
    fashion_mnist, fresh_cache, monkeypatch
):
    forbid_training(monkeypatch)
    judge = domain_classifier(FASHION)
    assert judge.pinned and judge.run_dir == pinned_place(FASHION)
    assert judge.sha256 == PINNED_SHA256[FASHION] and "(pinned)" in judge.id
    assert judge.val_accuracy >= judge_module.TARGET_ACCURACY[FASHION]
    train = fashion_mnist.train
    predicted = judge.predict(train.images[:2000].float() / 255)
    assert (predicted == train.labels[:2000]).float().mean() > 0.9
    assert not (fresh_cache / "runs").exists()


@pytest.mark.slow
def test_evaluate_fid_on_a_fashion_mnist_run_trains_nothing(
    fashion_mnist, fresh_cache, tmp_path, monkeypatch
):
    run = tmp_path / "vae"
    train = {"epochs": 1, "max_train_examples": 500, "progress": False}
    fit("vae", model_config={"latent_dim": 2}, train_config=train, data=fashion_mnist, run_dir=run)
    forbid_training(monkeypatch)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["evaluate", str(run), "--metrics", "fid", "--samples", "500", "--json"])
    assert code == 0, err.getvalue()
    result = json.loads(out.getvalue())
    assert result["fid"] > 0
    classifier = result["computed_on"]["fid"]["classifier"]
    assert classifier == f"classifier-sha256:{PINNED_SHA256[FASHION][:16]} (pinned)"
    assert "training" not in err.getvalue()
    assert not (fresh_cache / "runs").exists()
