"""scripts/mnist5k_idx.py: a CSV of MNIST digits becomes IDX files genae's mnist loader reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genae.data.sources import load_dataset


@pytest.fixture(scope="module")
def script(repo_script):
    return repo_script("scripts/mnist5k_idx.py")


def write_csv(path: Path, per_class: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), per_class)
    pixels = rng.integers(0, 256, size=(len(labels), 784))
    pixels[:, 0] = np.arange(len(labels)) % 256  # a row id, to follow rows through the split
    table = np.column_stack([pixels, labels])
    np.savetxt(path, table, fmt="%d", delimiter=",")
    return table


def test_split_is_stratified_and_pixels_survive(script, tmp_path):
    table = write_csv(tmp_path / "digits.csv", per_class=5)
    assert (
        script.main(
            [str(tmp_path / "digits.csv"), "--out", str(tmp_path / "idx"), "--test-per-class", "2"]
        )
        == 0
    )
    splits = load_dataset("mnist", tmp_path / "idx", download=False)
    train, test = splits.train, splits.test.unseal()
    assert len(train.labels) == 30 and len(test.labels) == 20
    assert np.bincount(test.labels.numpy(), minlength=10).tolist() == [2] * 10
    # every written image is one of the CSV's rows, with its own label, each row used once
    rows = {tuple(row[:784]): row[784] for row in table}
    seen = set()
    for split in (train, test):
        pixels = split.images.flatten(1).numpy()  # uint8, as stored
        for image, label in zip(pixels, split.labels.tolist()):
            assert rows[tuple(image)] == label
            seen.add(tuple(image))
    assert len(seen) == len(table)


def test_bad_csv_is_one_line_and_exit_2(script, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("1,2,3\n")
    assert script.main([str(tmp_path / "bad.csv"), "--out", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.csv" in err and "\n" not in err
    assert not (tmp_path / "idx").exists()
