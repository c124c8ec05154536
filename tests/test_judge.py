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

from genae.api import evaluate_run, fit
from genae.cli import main
from genae.config import from_mapping
from genae.data import download
from genae.data.arrays import from_arrays
from genae.data.memory import TensorData
from genae.data.sources import load_dataset
from genae.errors import GenaeError
from genae.metrics import judge as judge_module
from genae.metrics.fid import fid
from genae.metrics.judge import (
    FIRST,
    JUDGES,
    PINNED_DIR,
    PINNED_INFO_FILE,
    PINNED_SHA256,
    RECIPES,
    SECOND,
    SECOND_PINNED_SHA256,
    SECOND_RECIPES,
    domain_classifier,
    judge_recipe,
    pinned_place,
    weights_sha256,
)
from genae.metrics.registry import EvalContext, MetricOptions
from genae.models.classifier import ClassifierConfig
from genae.models.dfcvae import FEATURE_NETWORK
from genae.training import rundir
from genae.training import runs as runs_module
from genae.training.runs import data_fingerprint, train_run

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


def ship_stand_in_judge(tmp_path, monkeypatch, data, kind=FIRST):
    """A copy of the shipped Fashion-MNIST judge's files, placed where judge `kind` of the package
    would lie (under tmp_path) and recorded as trained on `data`; returns its directory."""
    place = tmp_path / PINNED_DIR / FASHION / kind.pinned_subdir
    shutil.copytree(pinned_place(FASHION), place)
    info = json.loads((place / PINNED_INFO_FILE).read_text())
    info["data_fingerprint"] = data_fingerprint(data).hex()
    (place / PINNED_INFO_FILE).write_text(json.dumps(info))
    monkeypatch.setattr(
        judge_module,
        "pinned_place",
        lambda dataset, which="first": (
            tmp_path / PINNED_DIR / dataset / JUDGES[which].pinned_subdir
        ),
    )
    return place


def test_the_shipped_judge_is_used_for_data_with_its_fingerprint(
    tmp_path, fresh_cache, monkeypatch
):
    """Without the real data: a copy of the shipped judge whose record names the stand-in's
    fingerprint is loaded, nothing trained; once its weights lose their hash, it is not."""
    data = stand_in()
    place = ship_stand_in_judge(tmp_path, monkeypatch, data)
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
    second_pinned = FASHION in SECOND_PINNED_SHA256
    forbid_training(monkeypatch)
    if not second_pinned:
        # No second judge ships yet (scripts/build_judge.py --which second builds it): it is
        # trained, from a tiny recipe here, and nothing else is.
        tiny = {"epochs": 1, "max_train_examples": 500, "model": {"block_channels": [4]}}
        monkeypatch.setitem(judge_module.SECOND_RECIPES, FASHION, tiny)

        def second_only(need, *args, **kwargs):
            if need.role != SECOND.role:
                raise TrainingCalled(f"the {need.role} network was trained")
            return runs_module.ensure_run(need, *args, **kwargs)

        monkeypatch.setattr(judge_module, "ensure_run", second_only)
        monkeypatch.setattr(runs_module, "train_run", train_run)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["evaluate", str(run), "--metrics", "fid", "--samples", "500", "--json"])
    assert code == 0, err.getvalue()
    result = json.loads(out.getvalue())
    assert result["fid"] > 0 and result["fid_second_judge"] > 0
    classifier = result["computed_on"]["fid"]["classifier"]
    assert classifier == f"classifier-sha256:{PINNED_SHA256[FASHION][:16]} (pinned)"
    second = result["computed_on"]["fid"]["second_classifier"]
    if second_pinned:
        assert second == f"second_classifier-sha256:{SECOND_PINNED_SHA256[FASHION][:16]} (pinned)"
        assert "training" not in err.getvalue()
        assert not (fresh_cache / "runs").exists()
    else:
        assert second.startswith("second_classifier-sha256:") and "pinned" not in second
        assert "no second domain classifier for 'fashion-mnist' ships" in err.getvalue()
        assert [p.name.split("-")[0] for p in (fresh_cache / "runs").iterdir()] == ["judge2"]


# --- the second judge: FID's cross-check ----------------------------------------------------


def resolved(need) -> ClassifierConfig:
    return from_mapping(ClassifierConfig, need.model_config)


@pytest.mark.parametrize("dataset", sorted({*RECIPES, *SECOND_RECIPES, "celeba", "folder"}))
def test_the_second_judge_differs_from_the_first_in_architecture_and_seed(dataset):
    first, second = judge_recipe(dataset), judge_recipe(dataset, "second")
    a, b = resolved(first), resolved(second)
    assert len(a.block_channels) != len(b.block_channels)  # another depth...
    assert a.block_channels != b.block_channels and a.feature_width != b.feature_width  # width
    # ...and DFC-VAE's classifier features are a third network (a loss may not share a judge's)
    dfc = from_mapping(ClassifierConfig, FEATURE_NETWORK)
    assert dfc not in (a, b)
    assert first.train_overrides["seed"] != second.train_overrides["seed"]
    assert first.role != second.role and first.shared and second.shared
    assert first.model == second.model == "classifier"


def test_which_judge_is_checked():
    with pytest.raises(GenaeError, match="expected one of first, second, got 'third'"):
        judge_recipe("digits", "third")


@pytest.fixture(scope="module")
def digits_judges(tmp_path_factory):
    """(cache, first judge, second judge, stderr) of digits, trained once into a fresh cache."""
    cache = tmp_path_factory.mktemp("judges") / "cache"
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stderr(err):
        patch.setenv("GENAE_DATA_DIR", str(cache))
        first = domain_classifier("digits")
        second = domain_classifier("digits", which="second")
    return cache, first, second, err.getvalue()


@pytest.fixture
def digits_cache(digits_judges, monkeypatch):
    monkeypatch.setenv("GENAE_DATA_DIR", str(digits_judges[0]))
    return digits_judges


def test_the_second_judge_is_its_own_helper_run(digits_cache):
    cache, first, second, err = digits_cache
    assert first.run_dir.name.startswith("judge-digits-")
    assert second.run_dir.name.startswith("judge2-digits-")
    assert first.run_dir.parent == second.run_dir.parent == cache / "runs"
    assert first.sha256 != second.sha256
    assert first.id.startswith("classifier-sha256:")
    assert second.id == f"second_classifier-sha256:{second.sha256[:16]}"
    assert second.kind is SECOND and not second.pinned
    config = rundir.read_run_config(second.run_dir)
    assert config["train"]["seed"] == 1
    assert config["model_config"] == {**config["model_config"], **SECOND_RECIPES["digits"]["model"]}
    assert second.val_accuracy >= judge_module.TARGET_ACCURACY["digits"]
    lines = [line for line in err.splitlines() if line.startswith("genae:")]
    assert "no second domain classifier for 'digits' ships with genae" in lines[1]
    assert "training one for FID's cross-check (15 epochs, seed 1)" in lines[1]


def test_the_second_judge_is_cached(digits_cache, monkeypatch):
    _, _, second, _ = digits_cache
    forbid_training(monkeypatch)
    monkeypatch.setattr(judge_module, "ensure_run", runs_module.ensure_run)  # finds, not trains
    again = domain_classifier("digits", which="second")
    assert again.run_dir == second.run_dir and again.sha256 == second.sha256


class Replay:
    """A stand-in generator whose samples are the given images, in order."""

    name = "replay"
    is_conditional = False

    def __init__(self, images: torch.Tensor, spec) -> None:
        self.images, self.spec, self.device = images, spec, images.device

    def eval(self):
        return self

    def sample(self, n, condition=None, generator=None):
        return self.images[:n]


def test_fid_of_the_test_images_against_themselves_is_zero_under_both_judges(digits_cache):
    test = TensorData(load_dataset("digits").test.unseal())
    images = torch.cat([b.x for b in test.batches(1000)])
    model = Replay(images, load_dataset("digits").spec)
    result = fid(EvalContext(model, test, "digits", MetricOptions(samples=len(images))))
    assert result.values["fid"] == pytest.approx(0.0, abs=1e-3)
    assert result.values["fid_second_judge"] == pytest.approx(0.0, abs=1e-3)
    # ...and half of them against the whole split: the same images, judged in two spaces
    half = fid(EvalContext(model, test, "digits", MetricOptions(samples=len(images) // 2)))
    assert half.values["fid"] > 1e-3 and half.values["fid_second_judge"] > 1e-3


def test_fid_reports_both_judges_and_names_both(digits_cache, tmp_path):
    _, first, second, _ = digits_cache
    run = tmp_path / "vae"
    train = {"dataset": "digits", "epochs": 1, "progress": False, "snapshot_epochs": []}
    fit("vae", model_config={"latent_dim": 2}, train_config=train, run_dir=run)
    result = evaluate_run(run, metrics=["fid"], options=MetricOptions(samples=200))
    assert result["fid"] > 0 and result["fid_second_judge"] > 0
    assert result["fid"] != result["fid_second_judge"]
    for name in ("fid", "fid_second_judge"):
        about = result["computed_on"][name]
        assert about["classifier"] == first.id and about["second_classifier"] == second.id
        assert about["samples"] == 200


def test_judges_are_trained_only_for_the_metrics_that_read_them(fresh_cache, tmp_path):
    """A metric that reads no judge trains neither; conditional_accuracy reads both (its samples
    are judged twice, see `conditional_accuracy_second_judge`)."""
    run = tmp_path / "cvae"
    train = {"dataset": "digits", "epochs": 1, "progress": False, "snapshot_epochs": []}
    fit("cvae", model_config={"latent_dim": 2}, train_config=train, run_dir=run)
    cache = fresh_cache / "runs"
    evaluate_run(run, metrics=["neg_elbo"], options=MetricOptions(samples=100))
    assert not cache.exists() or not any(p.name.startswith("judge") for p in cache.iterdir())
    evaluate_run(run, metrics=["conditional_accuracy"], options=MetricOptions(samples=100))
    names = [p.name for p in cache.iterdir()]
    assert any(n.startswith("judge-digits-") for n in names)
    assert any(n.startswith("judge2-") for n in names)


def test_a_shipped_second_judge_is_used_for_data_with_its_fingerprint(
    tmp_path, fresh_cache, monkeypatch
):
    """The second judge ships like the first (genae/judges/<dataset>/second/, its hash in
    SECOND_PINNED_SHA256); stood in for here by a copy of the first's files."""
    data = stand_in()
    place = ship_stand_in_judge(tmp_path, monkeypatch, data, SECOND)
    sha256 = weights_sha256(place / rundir.WEIGHTS_FILE)
    monkeypatch.setitem(judge_module.SECOND_PINNED_SHA256, FASHION, sha256)
    forbid_training(monkeypatch)

    judge = domain_classifier(FASHION, data=data, which="second")
    assert judge.pinned and judge.run_dir == place and judge.kind is SECOND
    assert judge.id == f"second_classifier-sha256:{sha256[:16]} (pinned)"
    assert not (fresh_cache / "runs").exists()
    # without a recorded hash the shipped files are not used: the second judge is trained
    monkeypatch.delitem(judge_module.SECOND_PINNED_SHA256, FASHION)
    with pytest.raises(TrainingCalled):
        domain_classifier(FASHION, data=data, which="second")


def test_the_second_judges_place_is_package_data():
    assert pinned_place(FASHION, "second") == pinned_place(FASHION) / "second"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["genae"]
    for name in SHIPPED:
        path = f"{PINNED_DIR}/{FASHION}/second/{name}"
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path
    # shipped files, once built, carry the recorded hash
    for dataset, recorded in SECOND_PINNED_SHA256.items():
        assert weights_sha256(pinned_place(dataset, "second") / rundir.WEIGHTS_FILE) == recorded
