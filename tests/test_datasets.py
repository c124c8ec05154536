"""Dataset sources: resolution order, checksums, (simulated) downloads, digits and user arrays.

No test touches the network or the real ~/.cache: an autouse fixture points the cache at a
temporary directory, empties the system directories and makes `download.fetch` fail like an
offline machine. Tests that need a download install their own `fetch`.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from genae.cli import main
from genae.data import download, sources
from genae.data.arrays import from_arrays
from genae.data.cache import cache_dir
from genae.data.download import IDX_FILES
from genae.data.idx import read_idx, write_idx
from genae.data.sources import (
    DATASET_NAMES,
    DatasetStatus,
    check_dataset_name,
    list_datasets,
    load_dataset,
)
from genae.errors import DataError

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class FakeIdx:
    """A small MNIST-layout dataset written to `directory`."""

    directory: Path
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def md5s(self) -> dict[str, str]:
        return {f: hashlib.md5((self.directory / f).read_bytes()).hexdigest() for f in IDX_FILES}


def make_idx_dir(directory: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> FakeIdx:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fake = FakeIdx(
        directory,
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_train, dtype=np.uint8),
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )
    arrays = (fake.train_images, fake.train_labels, fake.test_images, fake.test_labels)
    for filename, array in zip(IDX_FILES, arrays, strict=True):
        write_idx(directory / filename, array)
    return fake


class Offline:
    """A `fetch` that fails like a machine without network, recording what was asked."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str, dest: Path) -> None:
        self.urls.append(url)
        raise urllib.error.URLError("simulated: no network")


class CopyFetch:
    """A `fetch` serving files from a local directory; mirrors listed in `down` are offline."""

    def __init__(self, source: Path, down: tuple[str, ...] = ()) -> None:
        self.source = source
        self.down = down
        self.urls: list[str] = []

    def __call__(self, url: str, dest: Path) -> None:
        self.urls.append(url)
        if url.startswith(self.down):
            raise urllib.error.URLError("simulated: mirror down")
        assert dest.parent.is_dir() and dest.name.endswith(".part")
        shutil.copyfile(self.source / url.rsplit("/", 1)[1], dest)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Offline:
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))
    for name in ("mnist", "fashion-mnist"):
        monkeypatch.setitem(sources.SYSTEM_DIRS, name, (tmp_path / "system" / name,))
    offline = Offline()
    monkeypatch.setattr(download, "fetch", offline)
    return offline


def _patch_checksums(monkeypatch: pytest.MonkeyPatch, name: str, md5s: dict[str, str]) -> None:
    monkeypatch.setitem(download.CHECKSUMS, name, dict(md5s))


# --- names and registry -----------------------------------------------------------------------


def test_dataset_names() -> None:
    assert DATASET_NAMES == ("mnist", "fashion-mnist", "digits", "celeba", "folder")


def test_unknown_name_lists_valid_names_and_suggests() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnst")
    message = str(info.value)
    assert "did you mean 'fashion-mnist'" in message
    for name in DATASET_NAMES:
        assert name in message
    with pytest.raises(DataError, match="unknown dataset 'cifar10'") as info:
        load_dataset("cifar10")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("spelling", ["fashion_mnist", "Fashion-MNIST", "Fashion_MNIST"])
def test_only_the_registered_spelling_is_accepted(tmp_path: Path, spelling: str) -> None:
    # A second spelling would reach the run's config and miss every per-dataset table.
    make_idx_dir(tmp_path / "d")
    with pytest.raises(DataError) as info:
        load_dataset(spelling, tmp_path / "d")
    message = str(info.value)
    assert message.startswith(
        f"dataset: unknown dataset '{spelling}' (did you mean 'fashion-mnist'?)"
    )
    assert "\n" not in message
    with pytest.raises(DataError, match="did you mean 'fashion-mnist'"):
        check_dataset_name(spelling)
    assert check_dataset_name("fashion-mnist") == "fashion-mnist"


def test_cli_refuses_an_unregistered_spelling_before_starting_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(["train", "vae", "--dataset", "fashion_mnist", "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        "genae: error: dataset: unknown dataset 'fashion_mnist' (did you mean 'fashion-mnist'?)"
    )
    assert not out.exists()


# --- IDX datasets: loading and resolution order -----------------------------------------------


@pytest.mark.parametrize("nested", [False, True])
def test_load_from_data_dir(tmp_path: Path, nested: bool) -> None:
    root = tmp_path / "data"
    fake = make_idx_dir(root / "mnist" if nested else root)
    ds = load_dataset("mnist", root, download=False)
    assert ds.name == "mnist"
    assert ds.source == str(fake.directory)
    assert ds.class_names == tuple("0123456789")
    assert ds.notes == ()
    assert ds.train.images.shape == (20, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert ds.test.unseal().images.shape == (10, 1, 28, 28)
    assert ds.train.labels is not None and ds.train.labels.dtype == torch.int64
    np.testing.assert_array_equal(ds.train.images[:, 0].numpy(), fake.train_images)
    np.testing.assert_array_equal(ds.test.unseal().labels.numpy(), fake.test_labels)
    assert ds.spec.shape == (1, 28, 28) and ds.spec.num_classes == 10


def test_data_dir_accepts_decompressed_files(tmp_path: Path) -> None:
    fake = make_idx_dir(tmp_path / "d")
    for filename in IDX_FILES:
        gz = fake.directory / filename
        write_idx(gz.with_suffix(""), read_idx(gz))
        gz.unlink()
    ds = load_dataset("fashion-mnist", fake.directory, download=False)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[-1] == "Ankle boot"
    np.testing.assert_array_equal(ds.train.images[:, 0].numpy(), fake.train_images)


def test_data_dir_wins_over_cache_and_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = make_idx_dir(tmp_path / "cache" / "mnist", n_train=30)
    make_idx_dir(tmp_path / "system" / "mnist", n_train=40)
    given = make_idx_dir(tmp_path / "mine", n_train=20)
    # data_dir files are trusted, but cache files are checked: make the cache valid too.
    _patch_checksums(monkeypatch, "mnist", cached.md5s)
    ds = load_dataset("mnist", given.directory, download=False)
    assert len(ds.train) == 20 and ds.source == str(given.directory)


def test_cache_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "elsewhere"
    monkeypatch.setenv("GENAE_DATA_DIR", str(root))
    fake = make_idx_dir(root / "fashion-mnist", n_train=12)
    make_idx_dir(tmp_path / "system" / "fashion-mnist", n_train=40)
    _patch_checksums(monkeypatch, "fashion-mnist", fake.md5s)
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.source == str(fake.directory) and len(ds.train) == 12
    assert cache_dir("fashion-mnist") == fake.directory


def test_default_cache_is_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GENAE_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("mnist") == tmp_path / "home" / ".cache" / "genae" / "mnist"


def test_cache_checksum_mismatch_is_reported(tmp_path: Path) -> None:
    fake = make_idx_dir(tmp_path / "cache" / "mnist")  # real MNIST md5s will not match
    with pytest.raises(DataError) as info:
        load_dataset("mnist", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert f"{fake.directory / IDX_FILES[0]} has md5 {fake.md5s[IDX_FILES[0]]}" in message
    assert download.CHECKSUMS["mnist"][IDX_FILES[0]] in message


def test_system_dir_used_when_cache_empty(tmp_path: Path) -> None:
    fake = make_idx_dir(tmp_path / "system" / "fashion-mnist", n_train=15)
    ds = load_dataset("fashion-mnist", download=False)  # system files are trusted: no md5
    assert ds.source == str(fake.directory) and len(ds.train) == 15


def test_empty_data_dir_falls_back_with_a_note(tmp_path: Path) -> None:
    fake = make_idx_dir(tmp_path / "system" / "fashion-mnist")
    (tmp_path / "empty").mkdir()
    ds = load_dataset("fashion-mnist", tmp_path / "empty", download=False)
    assert ds.source == str(fake.directory)
    assert len(ds.notes) == 1 and str(tmp_path / "empty") in ds.notes[0]


def test_incomplete_dir_is_not_used(tmp_path: Path) -> None:
    fake = make_idx_dir(tmp_path / "d")
    (fake.directory / IDX_FILES[3]).unlink()
    with pytest.raises(DataError, match="not found"):
        load_dataset("mnist", fake.directory, download=False)


def test_corrupt_file_in_data_dir_names_the_file(tmp_path: Path) -> None:
    fake = make_idx_dir(tmp_path / "d")
    labels = fake.directory / IDX_FILES[1]
    write_idx(labels, np.zeros(19, dtype=np.uint8))  # one label short
    with pytest.raises(DataError, match="20 images") as info:
        load_dataset("mnist", fake.directory)
    assert labels.name in str(info.value)


def test_wrong_image_size_in_data_dir(tmp_path: Path) -> None:
    fake = make_idx_dir(tmp_path / "d")
    write_idx(fake.directory / IDX_FILES[0], np.zeros((20, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="expected 28x28 images, got 32x32"):
        load_dataset("mnist", fake.directory)


# --- offline and downloads --------------------------------------------------------------------


def test_offline_with_download_off_gives_one_line_hint(tmp_path: Path, isolated: Offline) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", tmp_path / "d", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir DIR" in message
    for looked in (tmp_path / "d", tmp_path / "cache" / "fashion-mnist"):
        assert str(looked) in message
    assert isolated.urls == []  # download=False never touches the network


def test_offline_download_failure_gives_one_line_hint(tmp_path: Path, isolated: Offline) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "\n" not in message
    assert "downloading train-images-idx3-ubyte.gz failed" in message
    assert "simulated: no network" in message
    assert "--data-dir DIR" in message and "apt-get" not in message  # no MNIST package
    assert isolated.urls == [m + IDX_FILES[0] for m in download.MIRRORS["mnist"]]
    cache = tmp_path / "cache" / "mnist"
    assert list(cache.iterdir()) == []  # no temp files left behind


def test_simulated_download_fills_and_verifies_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = make_idx_dir(tmp_path / "upstream")
    _patch_checksums(monkeypatch, "mnist", upstream.md5s)
    fetch = CopyFetch(upstream.directory)
    monkeypatch.setattr(download, "fetch", fetch)

    ds = load_dataset("mnist")
    cache = tmp_path / "cache" / "mnist"
    assert ds.source == str(cache)
    assert any("downloaded mnist" in note for note in ds.notes)
    assert sorted(p.name for p in cache.iterdir()) == sorted(IDX_FILES)
    assert fetch.urls == [download.MIRRORS["mnist"][0] + f for f in IDX_FILES]
    np.testing.assert_array_equal(ds.train.images[:, 0].numpy(), upstream.train_images)

    # Second load comes from the verified cache, without any fetching.
    monkeypatch.setattr(download, "fetch", Offline())
    again = load_dataset("mnist")
    assert again.source == str(cache) and again.notes == ()


def test_download_falls_back_to_the_next_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = make_idx_dir(tmp_path / "upstream")
    _patch_checksums(monkeypatch, "mnist", upstream.md5s)
    first, second = download.MIRRORS["mnist"]
    fetch = CopyFetch(upstream.directory, down=(first,))
    monkeypatch.setattr(download, "fetch", fetch)
    ds = load_dataset("mnist")
    assert len(ds.train) == 20
    assert fetch.urls[:2] == [first + IDX_FILES[0], second + IDX_FILES[0]]


def test_download_only_fetches_missing_or_bad_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = make_idx_dir(tmp_path / "upstream")
    _patch_checksums(monkeypatch, "fashion-mnist", upstream.md5s)
    cache = tmp_path / "cache" / "fashion-mnist"
    cache.mkdir(parents=True)
    shutil.copy(upstream.directory / IDX_FILES[0], cache / IDX_FILES[0])  # good
    (cache / IDX_FILES[1]).write_bytes(b"stale")  # bad: replaced
    fetch = CopyFetch(upstream.directory)
    monkeypatch.setattr(download, "fetch", fetch)
    ds = load_dataset("fashion-mnist")
    assert [u.rsplit("/", 1)[1] for u in fetch.urls] == list(IDX_FILES[1:])
    np.testing.assert_array_equal(ds.train.labels.numpy(), upstream.train_labels)


def test_bad_checksum_is_rejected_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = make_idx_dir(tmp_path / "upstream")
    wrong = dict(upstream.md5s)
    wrong[IDX_FILES[2]] = "0" * 32
    _patch_checksums(monkeypatch, "mnist", wrong)
    monkeypatch.setattr(download, "fetch", CopyFetch(upstream.directory))
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert IDX_FILES[2] in message and "0" * 32 in message
    assert upstream.md5s[IDX_FILES[2]] in message
    cache = tmp_path / "cache" / "mnist"
    assert not (cache / IDX_FILES[2]).exists()
    assert not list(cache.glob("*.part"))
    assert not (cache / IDX_FILES[3]).exists()  # stopped at the bad file


def test_interrupted_download_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_then_fail(url: str, dest: Path) -> None:
        dest.write_bytes(b"\x1f\x8b partial")
        raise TimeoutError("simulated: read timed out")

    monkeypatch.setattr(download, "fetch", half_then_fail)
    with pytest.raises(DataError, match="read timed out"):
        load_dataset("fashion-mnist")
    assert list((tmp_path / "cache" / "fashion-mnist").iterdir()) == []


def test_unwritable_cache_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GENAE_DATA_DIR", str(blocker))
    with pytest.raises(DataError, match="cannot create the cache directory") as info:
        load_dataset("mnist")
    assert "GENAE_DATA_DIR" in str(info.value) and "\n" not in str(info.value)


# --- list_datasets ----------------------------------------------------------------------------


def test_list_datasets(tmp_path: Path) -> None:
    statuses = {s.name: s for s in list_datasets()}
    assert tuple(statuses) == DATASET_NAMES
    assert statuses["digits"] == DatasetStatus("digits", True, "embedded")
    assert not statuses["mnist"].available
    assert "--data-dir" in statuses["mnist"].location
    assert "apt-get install dataset-fashion-mnist" in statuses["fashion-mnist"].location

    fake = make_idx_dir(tmp_path / "d" / "mnist")
    statuses = {s.name: s for s in list_datasets(tmp_path / "d")}
    assert statuses["mnist"] == DatasetStatus("mnist", True, str(fake.directory))
    assert not statuses["fashion-mnist"].available


# --- digits -----------------------------------------------------------------------------------


def test_digits() -> None:
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", download=False)
    assert ds.source == "embedded" and ds.class_names == tuple("0123456789")
    test = ds.test.unseal()
    assert ds.train.images.shape == (1500, 1, 8, 8) and test.images.shape == (297, 1, 8, 8)
    assert ds.train.images.dtype == torch.uint8
    both = torch.cat([ds.train.images, ds.test.unseal().images])
    assert int(both.min()) == 0 and int(both.max()) == 255
    assert ds.train.labels.dtype == torch.int64
    labels = torch.cat([ds.train.labels, ds.test.unseal().labels]).numpy()
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(load_digits().target))
    # Pixel values: v in 0..16 maps to round(v * 255 / 16), so the sum is preserved up to that.
    expected = np.round(load_digits().images * 255 / 16).sum()
    assert int(both.sum(dtype=torch.int64)) == int(expected)
    assert ds.spec.shape == (1, 8, 8) and ds.spec.num_classes == 10

    again = load_dataset("digits")
    assert torch.equal(again.train.images, ds.train.images)
    assert torch.equal(again.test.unseal().labels, ds.test.unseal().labels)


# --- from_arrays ------------------------------------------------------------------------------


def test_from_arrays_uint8_with_seeded_split() -> None:
    images = np.zeros((50, 4, 4), dtype=np.uint8)
    images[:, 0, 0] = np.arange(50)  # pixel (0, 0) identifies the image
    labels = np.arange(50) % 5
    ds = from_arrays(images, labels, test_fraction=0.2, seed=3)
    assert ds.source == "arrays" and ds.name == "arrays"
    assert ds.train.images.shape == (40, 1, 4, 4) and ds.test.unseal().images.shape == (10, 1, 4, 4)
    assert ds.train.labels.dtype == torch.int64
    # The split is a partition of the input, image/label pairs stay together, and it is seeded.
    ids = torch.cat([ds.train.images[:, 0, 0, 0], ds.test.unseal().images[:, 0, 0, 0]])
    assert sorted(ids.tolist()) == list(range(50))
    for split in (ds.train, ds.test.unseal()):
        assert torch.equal(split.labels, split.images[:, 0, 0, 0].long() % 5)
    same = from_arrays(images, labels, test_fraction=0.2, seed=3)
    other = from_arrays(images, labels, test_fraction=0.2, seed=4)
    assert torch.equal(same.test.unseal().images, ds.test.unseal().images)
    assert not torch.equal(other.test.unseal().images, ds.test.unseal().images)


def test_from_arrays_float_conversion_and_flat_input() -> None:
    flat = np.zeros((3, 64), dtype=np.float32)
    flat[:, 0] = [0.0, 0.5, 1.0]
    ds = from_arrays(flat, test_images=torch.from_numpy(flat[:1]))
    assert ds.train.images.shape == (3, 1, 8, 8) and ds.test.unseal().images.shape == (1, 1, 8, 8)
    assert ds.train.images[:, 0, 0, 0].tolist() == [0, 128, 255]
    assert ds.train.labels is None and ds.test.unseal().labels is None
    assert ds.spec.num_classes == 0


def test_from_arrays_channels_and_tensors() -> None:
    images = torch.rand(10, 3, 5, 6)
    ds = from_arrays(images, torch.arange(10) % 2, test_images=images[:2], test_labels=[0, 1])
    assert ds.train.images.shape == (10, 3, 5, 6)
    expected = torch.round(images.double() * 255).to(torch.uint8)
    assert torch.equal(ds.train.images, expected)
    assert ds.test.unseal().labels.tolist() == [0, 1]


def test_from_arrays_half_precision_tensor() -> None:
    images = torch.tensor([0.0, 0.5, 1.0, 0.25], dtype=torch.bfloat16).reshape(1, 4).repeat(4, 1)
    ds = from_arrays(images, test_images=images[:1])
    assert ds.train.images.shape == (4, 1, 2, 2)
    assert ds.train.images[0].flatten().tolist() == [0, 128, 255, 64]


def test_from_arrays_attributes() -> None:
    images = np.zeros((4, 2, 2), dtype=np.uint8)
    ds = from_arrays(
        images,
        np.array([[0, 1], [1, 0], [1, 1], [0, 0]]),
        test_images=images[:1],
        test_labels=np.array([[-1.0, 1.0]]),
        attribute_names=("smiling", "glasses"),
    )
    assert ds.train.labels.dtype == torch.float32
    assert ds.train.labels.tolist() == [[-1, 1], [1, -1], [1, 1], [-1, -1]]
    assert ds.test.unseal().labels.tolist() == [[-1, 1]]
    assert ds.spec.condition_dim == 2 and ds.spec.num_classes == 0


@pytest.mark.parametrize(
    ("kwargs", "argument", "fragment"),
    [
        ({"images": np.full((3, 4, 4), np.nan)}, "images", "NaN"),
        ({"images": np.full((3, 4, 4), 1.5)}, "images", "[0, 1]"),
        ({"images": np.full((3, 4, 4), -0.1)}, "images", "[0, 1]"),
        ({"images": np.full((3, 4, 4), 300)}, "images", "0..255"),
        ({"images": np.zeros(5, dtype=np.uint8)}, "images", "1-D"),
        ({"images": np.zeros((1,) * 5, dtype=np.uint8)}, "images", "5-D"),
        ({"images": np.zeros((3, 10), dtype=np.uint8)}, "images", "perfect square"),
        ({"images": np.zeros((3, 28, 28, 1), dtype=np.uint8)}, "images", "channels-last"),
        ({"images": np.zeros((3, 4, 4), dtype=bool)}, "images", "booleans"),
        ({"images": np.array([["a"]])}, "images", "numeric"),
        ({"labels": np.arange(4)}, "labels", "expected 3 labels"),
        ({"labels": np.array([0, -1, 2])}, "labels", ">= 0"),
        ({"labels": np.array([0.0, 1.0, 2.0])}, "labels", "integer class indices"),
        ({"labels": np.zeros((3, 1, 1), dtype=int)}, "labels", "shape (N,)"),
        ({"labels": np.zeros((3, 2))}, "labels", "attribute_names"),
        ({"labels": np.array([0, 1, 5]), "class_names": ("a", "b")}, "labels", "below 2"),
        (
            {"labels": np.array([[0.0, 2.0]] * 3), "attribute_names": ("a", "b")},
            "labels",
            "+1/-1 or 0/1",
        ),
        (
            {"labels": np.array([[0.0, 1.0]] * 3), "attribute_names": ("a",)},
            "labels",
            "expected 1 attribute columns",
        ),
        ({"labels": np.arange(3), "attribute_names": ("a",)}, "labels", "(N, 1)"),
        ({"attribute_names": ("a",)}, "attribute_names", "without labels"),
        ({"test_labels": np.arange(3)}, "test_labels", "without test_images"),
        ({"test_fraction": 1.0}, "test_fraction", "(0, 1)"),
        ({"test_images": np.zeros((2, 5, 4), dtype=np.uint8)}, "test_images", "(1, 4, 4)"),
        (
            {"labels": np.arange(3), "test_images": np.zeros((2, 4, 4), dtype=np.uint8)},
            "test_labels",
            "both splits",
        ),
        (
            {
                "labels": np.arange(3),
                "test_images": np.zeros((2, 4, 4), dtype=np.uint8),
                "test_labels": np.arange(3),
            },
            "test_labels",
            "expected 2 labels",
        ),
    ],
)
def test_from_arrays_errors(kwargs: dict, argument: str, fragment: str) -> None:
    kwargs = {"images": np.zeros((3, 4, 4), dtype=np.uint8), **kwargs}
    images = kwargs.pop("images")
    with pytest.raises(DataError) as info:
        from_arrays(images, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{argument}:"), message
    assert fragment in message, message
    assert "\n" not in message


def test_from_arrays_needs_two_images_for_a_split() -> None:
    with pytest.raises(DataError, match="at least 2 images"):
        from_arrays(np.zeros((1, 4, 4), dtype=np.uint8))


# --- the real thing ---------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_system_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion-mnist", (REAL_FASHION,))
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.source == str(REAL_FASHION)
    assert len(ds.train) == 60000 and len(ds.test.unseal()) == 10000
    assert ds.train.images.shape[1:] == (1, 28, 28)
    assert ds.train.labels.min() == 0 and ds.train.labels.max() == 9
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test.unseal().labels).tolist() == [1000] * 10
    assert int(ds.train.images.max()) == 255
    assert ds.spec.num_classes == 10 and ds.class_names[9] == "Ankle boot"
