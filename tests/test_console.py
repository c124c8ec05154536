"""What a user reads: the heading and epoch lines a run prints, class names on sample grids, and
`genae sample --label NAME`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genae.api import fit
from genae.cli import main
from genae.data.arrays import from_arrays
from genae.data.sources import FASHION_MNIST_CLASSES, load_dataset
from genae.data.types import DataSpec
from genae.demo import run_demo
from genae.models.registry import MODELS, build_model
from genae.training.console import CONSOLE_WIDTH, epoch_line, watched_keys
from genae.viz.grids import label_names, sample_grid_row_labels, save_grid, tile

QUICK = {"epochs": 1, "batch_size": 100, "progress": False, "snapshot_epochs": []}


@pytest.fixture(autouse=True)
def _isolated(offline_data) -> None:
    """No network, no real dataset cache."""


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


# --- the console ------------------------------------------------------------------------------


def test_caae_run_prints_a_heading_and_short_epoch_lines(digits, capsys) -> None:
    config = {"latent_dim": 4, "encoder_channels": [8], "img_disc_channels": [8]}
    train = {**QUICK, "epochs": 2, "stop_on_collapse": False}
    fit("caae", model_config=config, train_config=train, data=digits)
    lines = stderr_lines(capsys)
    assert lines[0] == "== caae on digits -> no run directory"
    assert "2 epochs of" in lines[1] and "caae: encoder_channels=8" in lines[1]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    for line in lines:
        assert len(line) <= CONSOLE_WIDTH, line
    first = epochs[0].split("  ")
    assert first[1].startswith("train_autoencoder.loss ")  # the model's first watched number
    assert any(part.startswith("val_recon_l1 ") for part in first)
    assert first[-1].endswith(" samples/s")


def test_epoch_line_keeps_the_first_watched_numbers_that_fit() -> None:
    """Whatever the numbers, the line stays within the width and keeps the model's order."""
    model = build_model("caae", {"encoder_channels": [8]}, DataSpec((1, 8, 8), num_classes=10))
    record = {"epoch": 1000, "step": 10**7, "train_samples_per_s": 123456.7}
    record |= {key: -1.234567e-10 for key in model.console_metrics}
    record |= {f"train_extra_{k}.loss": 1.0 for k in range(20)}  # never shown: not watched
    line = epoch_line(model, record, epochs=1000)
    assert len(line) <= CONSOLE_WIDTH, line
    shown = [part.split()[0] for part in line.split("  ")[1:-1]]
    assert shown == list(model.console_metrics[: len(shown)]) and shown
    assert line.endswith("123457 samples/s")
    assert "train_extra" not in line


def test_every_model_declares_numbers_that_it_reports() -> None:
    """A declared console metric names a training term or a validation metric: the trainer's
    prefixes, never a bare metric name."""
    for name, cls in MODELS.items():
        for key in cls.console_metrics:
            assert key.startswith(("train_", "val_")), (name, key)


def test_default_watched_numbers_are_losses_then_validation_metrics(monkeypatch) -> None:
    model = build_model("vae", {"hidden": [8]}, DataSpec((1, 8, 8)))
    monkeypatch.setattr(type(model), "console_metrics", ())  # as a model declaring none
    record = {"epoch": 1, "val_a": 1.0, "train_b.loss": 2.0, "train_c": 3.0, "train_loss": 4}
    assert watched_keys(model, record) == ["train_b.loss", "train_loss", "val_a"]


def test_run_heading_names_the_run_directory_and_the_chosen_settings(
    digits, tmp_path: Path, capsys
) -> None:
    run_dir = tmp_path / "run"
    fit(
        "vae",
        model_config={"hidden": [16, 8]},
        train_config={**QUICK, "max_train_examples": 500},
        data=digits,
        run_dir=run_dir,
    )
    heading = stderr_lines(capsys)[:2]
    assert heading[0] == f"== vae on digits -> {run_dir}"
    assert "1 epoch of" in heading[1] and "batch 100" in heading[1]
    assert heading[1].endswith("; vae: hidden=16,8")  # only what the caller chose
    fit(
        "vae",
        model_config={"hidden": [16, 8]},
        train_config={**QUICK, "epochs": 2},
        data=digits,
        run_dir=run_dir,
        resume=True,
    )
    assert stderr_lines(capsys)[0].endswith("(resumed at epoch 2)")


# --- grids ------------------------------------------------------------------------------------


def test_row_labels_widen_the_grid_and_are_drawn(tmp_path: Path) -> None:
    images = torch.rand(6, 1, 8, 8)
    plain, labelled = tmp_path / "plain.png", tmp_path / "labelled.png"
    save_grid(images, 3, plain, scale=2)
    save_grid(images, 3, labelled, scale=2, row_labels=["T-shirt/top", "Ankle boot"])
    plain_pixels = np.asarray(Image.open(plain))
    labelled_pixels = np.asarray(Image.open(labelled))
    assert plain_pixels.shape == (2 * tile(images, 3).shape[0], 2 * tile(images, 3).shape[1])
    assert labelled_pixels.shape[0] == plain_pixels.shape[0]
    margin = labelled_pixels.shape[1] - plain_pixels.shape[1]
    assert margin > 20
    assert np.array_equal(labelled_pixels[:, margin:], plain_pixels)
    text = labelled_pixels[:, :margin] < 128
    rows_with_text = {int(r) // 20 for r in np.nonzero(text.any(axis=1))[0]}
    assert rows_with_text == {0, 1}  # each label beside its own row (20-pixel rows)
    with pytest.raises(ValueError, match="row_labels"):
        save_grid(images, 3, labelled, row_labels=["only one"])


def test_grid_rows_are_named_by_class_or_category() -> None:
    spec = DataSpec((1, 8, 8), num_classes=3, class_names=("Dress", "Bag", "Coat"))
    cvae = build_model("cvae", {"hidden": [8]}, spec)
    assert sample_grid_row_labels(cvae, 30, 10) == ["Dress", "Bag", "Coat"]
    assert sample_grid_row_labels(cvae, 16, 8, label=1) == ["Bag", "Bag"]
    vae = build_model("vae", {"hidden": [8]}, spec)
    assert sample_grid_row_labels(vae, 16, 8) == []
    clusters = build_model("aae-cluster", {"hidden": [8], "disc_hidden": [8], "clusters": 2}, spec)
    assert label_names(clusters, [0, 1]) == ["category 0", "category 1"]
    unnamed = build_model("cvae", {"hidden": [8]}, DataSpec((1, 8, 8), num_classes=2))
    assert label_names(unnamed, [1]) == ["class 1"]
    # M2's y is class y when labels tied it to the classes; with none it is a cluster's index
    small_m2 = {"hidden": [8], "classifier_hidden": [8], "latent_dim": 2}
    for labelled, names in ((10, ["Dress", "Bag"]), (0, ["category 0", "category 1"])):
        sizes = {"labelled_examples": labelled, "unlabelled_examples": 100}
        m2 = build_model("m2", {**small_m2, **sizes}, spec)
        assert label_names(m2, [0, 1]) == names
        assert sample_grid_row_labels(m2, 30, 10)[:2] == names


# --- genae sample --label NAME ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_like_cvae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch cvae run on random 28x28 images labelled with Fashion-MNIST's class names."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    data = from_arrays(images, np.arange(60) % 10, class_names=FASHION_MNIST_CLASSES)
    run_dir = tmp_path_factory.mktemp("fashion") / "cvae"
    fit(
        "cvae",
        model_config={"hidden": [16], "latent_dim": 2},
        train_config={**QUICK, "batch_size": 20},
        data=data,
        run_dir=run_dir,
    )
    return run_dir


def sample(capsys, run_dir: Path, label: str, out: Path) -> tuple[int, str]:
    code = main(["sample", str(run_dir), "--label", label, "--n", "16", "--out", str(out)])
    return code, capsys.readouterr().err


def test_sample_label_accepts_a_class_name(fashion_like_cvae: Path, tmp_path: Path, capsys):
    by_name, lower, by_index = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    assert sample(capsys, fashion_like_cvae, "Dress", by_name) == (0, "")
    assert sample(capsys, fashion_like_cvae, "dress", lower)[0] == 0
    assert sample(capsys, fashion_like_cvae, "3", by_index)[0] == 0  # Dress is class 3
    pixels = np.asarray(Image.open(by_name))
    assert np.array_equal(pixels, np.asarray(Image.open(lower)))
    assert np.array_equal(pixels, np.asarray(Image.open(by_index)))
    assert pixels.shape[1] > 2 * (8 * 30 + 2)  # 8 columns of 28-pixel cells, and the names


@pytest.mark.parametrize(
    ("label", "fragments"),
    [
        ("Dres", ["'Dres'", "did you mean 'Dress'", "T-shirt/top", "0..9"]),
        ("ankle-boot", ["did you mean 'Ankle boot'"]),
        ("Hat", ["'Hat'", "Ankle boot", "0..9"]),
        ("10", ["0..9", "got 10"]),
    ],
)
def test_sample_label_error_is_one_line(
    fashion_like_cvae: Path, tmp_path: Path, capsys, label: str, fragments: list[str]
) -> None:
    out = tmp_path / "s.png"
    code, err = sample(capsys, fashion_like_cvae, label, out)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("genae: error: --label:")
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists()


# --- genae demo -------------------------------------------------------------------------------


def test_demo_falls_back_to_digits_and_writes_its_table(tmp_path: Path, capsys) -> None:
    """Without a 28x28 dataset the demo trains on the embedded digits (10x the epochs) and
    writes a table with one row per epoch and the test row, and labelled grids."""
    table = run_demo(tmp_path / "demo", epochs=1).read_text()
    err = capsys.readouterr().err
    assert "using the embedded 8x8 digits" in err
    assert "== vae on digits" in err and "== cvae on digits" in err
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows == ["epoch", *(str(e) for e in range(1, 11)), "test"]
    cvae_grid = np.asarray(Image.open(tmp_path / "demo" / "cvae" / "samples" / "epoch_010.png"))
    vae_grid = np.asarray(Image.open(tmp_path / "demo" / "vae" / "samples" / "epoch_010.png"))
    assert cvae_grid.shape[1] > 2 * (10 * 10 + 2)  # 10 columns of 8x8 cells and class names
    assert vae_grid.shape[1] == 2 * (8 * 10 + 2)  # unconditional: no names
