"""Image-file datasets: CelebA in the official layout and a plain folder, through the uint8 cache
(built once, reused, rebuilt when files or settings change), with corrupt images and bad
attribute files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genae.data.sources import load_dataset
from genae.errors import DataError

NAMES = ["Male", "Smiling", "Young"]


def make_celeba(root: Path, n: int = 24) -> list[str]:
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in files:
        pixels = rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name, quality=80)
    parts = [0] * (n - 8) + [1] * 4 + [2] * 4
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{f} {p}\n" for f, p in zip(files, parts))
    )
    rows = [f"{f} " + " ".join(str(rng.choice([-1, 1])) for _ in NAMES) for f in files]
    (root / "list_attr_celeba.txt").write_text(f"{n}\n{' '.join(NAMES)}\n" + "\n".join(rows) + "\n")
    return files


@pytest.fixture
def celeba(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))
    root = tmp_path / "celeba"
    make_celeba(root)
    return root


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "images").glob("*.npy"))


def test_celeba_official_layout_split_and_attributes(celeba, tmp_path):
    data = load_dataset("celeba", celeba, attributes=["Smiling", "Male"], image_size=16)
    assert data.train.images.shape == (16, 3, 16, 16) and len(data.test.unseal()) == 4
    assert data.attribute_names == ("Smiling", "Male")
    assert data.spec.condition_dim == 2 and data.spec.num_classes == 0
    lines = (celeba / "list_attr_celeba.txt").read_text().splitlines()
    first = lines[2].split()
    assert data.train.labels[0].tolist() == [float(first[2]), float(first[1])]
    # Centre crop 148 then resize: the same as doing it by hand with PIL.
    with Image.open(celeba / "img_align_celeba" / "000001.jpg") as image:
        w, h = image.size
        box = ((w - 148) // 2, (h - 148) // 2, (w - 148) // 2 + 148, (h - 148) // 2 + 148)
        expected = np.asarray(image.convert("RGB").crop(box).resize((16, 16), Image.BICUBIC))
    assert np.array_equal(data.train.images[0].numpy().transpose(1, 2, 0), expected)
    assert load_dataset("celeba", celeba).train.labels is None  # no attributes asked for


def test_cache_is_reused_and_rebuilt_when_files_or_settings_change(celeba, tmp_path):
    load_dataset("celeba", celeba, image_size=8)
    (first,) = cache_files(tmp_path)
    stamp = first.stat().st_mtime_ns
    again = load_dataset("celeba", celeba, image_size=8)
    assert cache_files(tmp_path) == [first] and first.stat().st_mtime_ns == stamp
    assert again.train.images.shape[-1] == 8
    load_dataset("celeba", celeba, image_size=12)  # other settings: another cache file
    assert len(cache_files(tmp_path)) == 2
    image = celeba / "img_align_celeba" / "000003.jpg"
    Image.new("RGB", (178, 218), (255, 0, 0)).save(image)
    os.utime(image, ns=(stamp + 10**9, stamp + 10**9))
    changed = load_dataset("celeba", celeba, image_size=8)
    assert first not in cache_files(tmp_path)  # superseded cache of these settings removed
    assert len(cache_files(tmp_path)) == 2
    assert changed.train.images[2, 0].float().mean() > 240  # the new red image


def test_corrupt_jpeg_is_an_error_naming_it_or_skipped_on_request(celeba, tmp_path):
    (celeba / "img_align_celeba" / "000005.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"000005\.jpg: cannot decode image.*skip-bad-images"):
        load_dataset("celeba", celeba, image_size=8)
    data = load_dataset("celeba", celeba, image_size=8, skip_bad_images=True, attributes=["Young"])
    assert len(data.train) == 15 and data.train.labels.shape == (15, 1)
    assert data.notes and "skipped 1" in data.notes[0]


def test_attribute_file_problems_are_one_line_errors(celeba):
    with pytest.raises(DataError, match="'Smilling' is not a column.*did you mean 'Smiling'"):
        load_dataset("celeba", celeba, attributes=["Smilling"])
    path = celeba / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[5] = " ".join(lines[5].split()[:-1])  # a row missing its last column
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:6: expected an image name and 3"):
        load_dataset("celeba", celeba, attributes=["Male"])


def test_missing_celeba_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="img_align_celeba/ .* not found .*--data-dir"):
        load_dataset("celeba", tmp_path / "nothing")
    with pytest.raises(DataError, match="attributes: dataset 'digits'"):
        load_dataset("digits", attributes=["Male"])


def test_folder_of_grayscale_images_with_class_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    rows = ["file,label"]
    for i in range(20):
        name = f"sub/{i:02d}.png" if i % 2 else f"{i:02d}.png"
        Image.new("L", (20, 30), i * 10).save(folder / name)
        rows.append(f"{name},{'cat' if i < 10 else 'dog'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset("folder", folder, image_size=10)
    assert data.train.images.shape[1:] == (1, 10, 10)
    assert len(data.train) + len(data.test.unseal()) == 20 and data.class_names == ("cat", "dog")
    assert data.spec.num_classes == 2
