"""The registry of named datasets and where each one is found.

Named datasets (`DATASET_NAMES`; a name must be spelled exactly, e.g. ``fashion-mnist``):

* ``mnist`` and ``fashion-mnist``: the four standard IDX files
  (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz``; each may also be present decompressed, without ``.gz``),
  looked for in this order, the first directory holding all four winning:

  1. ``data_dir`` itself, then ``data_dir/<name>`` (when ``data_dir`` is given);
  2. the cache directory ``$GENAE_DATA_DIR/<name>``, or ``~/.cache/genae/<name>`` when the
     variable is unset or empty (`genae.data.cache`);
  3. system package directories (fashion-mnist: ``/usr/share/datasets/fashion-mnist`` from
     Debian's ``dataset-fashion-mnist``);
  4. a download from the official mirrors into the cache directory (unless ``download=False``;
     `genae.data.download`).

  Checksum rule: the MD5 of a standard ``.gz`` file is checked against the official value for
  files in the cache directory and for every downloaded file, because those are files genae
  itself fetched and is responsible for. Files in ``data_dir`` and in system package
  directories are trusted (the user or the package manager vouches for them; Debian recompresses
  the Fashion-MNIST files, so their MD5s differ from upstream's although the data is the
  same), but they are still fully validated structurally by the IDX reader: magic, dtype,
  sizes, image/label counts and 28x28 images.

* ``digits``: scikit-learn's embedded 8x8 digits, no files or network needed.

* ``celeba`` (official layout under ``data_dir``) and ``folder`` (any directory of images):
  decoded once into a memory-mapped cache, see `genae.data.images`.

User arrays go through `genae.data.arrays.from_arrays`, re-exported here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genae.config import suggest
from genae.data.arrays import from_arrays as from_arrays  # re-exported: README's example
from genae.data.cache import cache_dir
from genae.data.download import (
    IDX_FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DownloadFailed,
    checksum_problems,
    download_idx_files,
    how_to_get,
)
from genae.data.idx import read_idx_images_labels
from genae.data.images import (
    CELEBA_URL,
    ImageOptions,
    find_celeba,
    load_celeba,
    load_folder,
)
from genae.data.types import DatasetSplits, ImageArrays, SealedSplit
from genae.errors import DataError

StrPath = str | os.PathLike[str]

# ---------------------------------------------------------------------------------------------
# IDX (MNIST-layout) datasets
# ---------------------------------------------------------------------------------------------

# Directories filled by OS packages; trusted like data_dir (see the module docstring).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "mnist": (),
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

_IDX_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": DIGIT_CLASSES,
    "fashion-mnist": FASHION_MNIST_CLASSES,
}


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a named dataset can be loaded right now, and from where.

    location: the directory it would be loaded from, "embedded", or (when not available) a
    one-line hint how to get it.
    """

    name: str
    available: bool
    location: str


def _find_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in `directory` (each .gz or decompressed), or None if any is missing."""
    found: dict[str, Path] = {}
    for name in IDX_FILES:
        for candidate in (directory / name, directory / name.removesuffix(".gz")):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _candidate_dirs(name: str, data_dir: Path | None) -> list[tuple[Path, bool]]:
    """Directories to search in order, each with whether its checksums are verified."""
    candidates: list[tuple[Path, bool]] = []
    if data_dir is not None:
        candidates += [(data_dir, False), (data_dir / name, False)]
    candidates.append((cache_dir(name), True))
    candidates += [(d, False) for d in SYSTEM_DIRS.get(name, ())]
    return candidates


def _load_idx_dataset(name: str, data_dir: Path | None, download: bool) -> DatasetSplits:
    notes: list[str] = []
    problems: list[str] = []
    looked: list[str] = []
    for directory, verified in _candidate_dirs(name, data_dir):
        looked.append(str(directory))
        files = _find_files(directory)
        if files is None:
            continue
        bad = checksum_problems(name, files) if verified else []
        if bad:
            problems += bad
            continue
        if data_dir is not None and directory not in (data_dir, data_dir / name):
            notes.append(f"{data_dir} does not hold the {name} files; using {directory}")
        return _read_split_dir(name, files, directory, notes)

    where = ", ".join(looked)
    trouble = f" ({'; '.join(problems)})" if problems else ""
    if not download:
        raise DataError(
            f"{name}: the four IDX files were not found in {where}{trouble} and download is "
            f"off; {how_to_get(name)}"
        )
    target = cache_dir(name)
    try:
        download_idx_files(name, target)
    except DownloadFailed as exc:
        raise DataError(
            f"{name}: not found in {where}{trouble}, and {exc}; {how_to_get(name)}"
        ) from None
    notes.append(f"downloaded {name} into {target}")
    files = _find_files(target)
    assert files is not None  # all four were just verified or downloaded
    return _read_split_dir(name, files, target, notes)


def _read_split_dir(
    name: str, files: dict[str, Path], directory: Path, notes: list[str]
) -> DatasetSplits:
    train = read_idx_images_labels(files[TRAIN_IMAGES], files[TRAIN_LABELS], expect_hw=(28, 28))
    test = read_idx_images_labels(files[TEST_IMAGES], files[TEST_LABELS], expect_hw=(28, 28))
    return DatasetSplits(
        name=name,
        train=train,
        test=SealedSplit(test),
        source=str(directory),
        class_names=_IDX_CLASS_NAMES[name],
        notes=tuple(notes),
    )


def _idx_status(name: str, data_dir: Path | None) -> DatasetStatus:
    """Cheap availability check: file presence only (no checksums, no reading)."""
    for directory, _verified in _candidate_dirs(name, data_dir):
        if _find_files(directory) is not None:
            return DatasetStatus(name, True, str(directory))
    return DatasetStatus(
        name,
        False,
        f"not found; the first load downloads it into {cache_dir(name)}, or " + how_to_get(name),
    )


# ---------------------------------------------------------------------------------------------
# scikit-learn's embedded digits
# ---------------------------------------------------------------------------------------------

DIGITS_TRAIN_SIZE = 1500  # of 1797; the remaining 297 are the test split
DIGITS_SPLIT_SEED = 0


def _load_digits(data_dir: Path | None, download: bool) -> DatasetSplits:
    """8x8 digits shipped inside scikit-learn: always available, ideal for quick smoke runs."""
    del data_dir, download  # embedded: nothing to find or fetch
    try:
        from sklearn.datasets import load_digits  # heavy (~1 s to import); only digits needs it
    except ImportError:
        raise DataError(
            "digits: needs scikit-learn, which is not installed; pip install scikit-learn"
        ) from None
    bunch = load_digits()
    images = np.round(np.asarray(bunch.images, dtype=np.float64) * 255.0 / 16.0)
    images = images.astype(np.uint8)[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    train_idx, test_idx = order[:DIGITS_TRAIN_SIZE], order[DIGITS_TRAIN_SIZE:]
    return DatasetSplits(
        name="digits",
        train=ImageArrays(torch.from_numpy(images[train_idx]), torch.from_numpy(labels[train_idx])),
        test=SealedSplit(
            ImageArrays(torch.from_numpy(images[test_idx]), torch.from_numpy(labels[test_idx]))
        ),
        source="embedded",
        class_names=DIGIT_CLASSES,
    )


def _digits_status(name: str, data_dir: Path | None) -> DatasetStatus:
    del data_dir
    if importlib.util.find_spec("sklearn") is None:
        return DatasetStatus(name, False, "needs scikit-learn: pip install scikit-learn")
    return DatasetStatus(name, True, "embedded")


# ---------------------------------------------------------------------------------------------
# Image-file datasets (genae.data.images): CelebA and any folder of images
# ---------------------------------------------------------------------------------------------


def _load_celeba(data_dir: Path | None, download: bool, options: ImageOptions) -> DatasetSplits:
    del download  # CelebA is too large and licence-bound to fetch automatically
    return load_celeba(data_dir, options, cache_dir("celeba"))


def _celeba_status(name: str, data_dir: Path | None) -> DatasetStatus:
    root = find_celeba(data_dir, cache_dir(name))
    if root is not None:
        return DatasetStatus(name, True, str(root))
    return DatasetStatus(name, False, f"download from {CELEBA_URL}, pass --data-dir DIR")


def _load_folder(data_dir: Path | None, download: bool, options: ImageOptions) -> DatasetSplits:
    del download
    return load_folder(data_dir, options)


def _folder_status(name: str, data_dir: Path | None) -> DatasetStatus:
    if data_dir is not None and data_dir.is_dir():
        return DatasetStatus(name, True, str(data_dir))
    return DatasetStatus(name, False, "any directory of images: pass --data-dir DIR")


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    load: Callable[..., DatasetSplits]  # (data_dir, download[, ImageOptions])
    status: Callable[[str, Path | None], DatasetStatus]
    takes_options: bool = False  # image-file datasets: attributes, image size, skipping


def _idx_entry(name: str) -> _Entry:
    return _Entry(
        load=lambda data_dir, download: _load_idx_dataset(name, data_dir, download),
        status=_idx_status,
    )


_REGISTRY: dict[str, _Entry] = {
    "mnist": _idx_entry("mnist"),
    "fashion-mnist": _idx_entry("fashion-mnist"),
    "digits": _Entry(load=_load_digits, status=_digits_status),
    "celeba": _Entry(load=_load_celeba, status=_celeba_status, takes_options=True),
    "folder": _Entry(load=_load_folder, status=_folder_status, takes_options=True),
}

DATASET_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def check_dataset_name(name: str) -> str:
    """`name` itself when it is a registered dataset, else a one-line DataError.

    Names are exact: "fashion_mnist" or "MNIST" would be recorded in a run's config under a
    second spelling, so they are refused with the registered name as a suggestion.
    """
    if name in _REGISTRY:
        return name
    loose = name.strip().lower().replace("_", "-")
    hint = f" (did you mean '{loose}'?)" if loose in _REGISTRY else suggest(loose, _REGISTRY)
    raise DataError(
        f"dataset: unknown dataset '{name}'{hint}; available: {', '.join(DATASET_NAMES)}"
    )


def load_dataset(
    name: str,
    data_dir: StrPath | None = None,
    *,
    download: bool = True,
    attributes: Sequence[str] = (),
    image_size: int = 0,
    skip_bad_images: bool = False,
) -> DatasetSplits:
    """Load the named dataset's train and test splits (see the module docstring for where from).

    `data_dir` is searched first, as the directory itself and as `data_dir/<name>`; with
    `download=False` nothing is fetched and a missing dataset raises a one-line `DataError`
    saying where genae looked and how to get the files. `attributes`, `image_size` and
    `skip_bad_images` apply to the image-file datasets (celeba, folder; see genae.data.images).
    """
    key = check_dataset_name(name)
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    entry = _REGISTRY[key]
    if entry.takes_options:
        options = ImageOptions(tuple(attributes), image_size, skip_bad_images)
        return entry.load(directory, download, options)
    if attributes or image_size:
        what = "attributes" if attributes else "image_size"
        raise DataError(f"{what}: dataset '{key}' has fixed images and no attributes")
    return entry.load(directory, download)


def list_datasets(data_dir: StrPath | None = None) -> list[DatasetStatus]:
    """Every named dataset with whether it is available locally and where (no download)."""
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    return [entry.status(key, directory) for key, entry in _REGISTRY.items()]
