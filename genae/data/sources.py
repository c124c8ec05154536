"""Where datasets come from: a registry of named datasets, file resolution, download, and arrays.

Named datasets (`DATASET_NAMES`):

* ``mnist`` and ``fashion-mnist``: the four standard IDX files
  (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz``; each may also be present decompressed, without ``.gz``),
  looked for in this order, the first directory holding all four winning:

  1. ``data_dir`` itself, then ``data_dir/<name>`` (when ``data_dir`` is given);
  2. the cache directory ``$GENAE_DATA_DIR/<name>``, or ``~/.cache/genae/<name>`` when the
     variable is unset or empty;
  3. system package directories (fashion-mnist: ``/usr/share/datasets/fashion-mnist`` from
     Debian's ``dataset-fashion-mnist``);
  4. a download from the official mirrors into the cache directory (unless ``download=False``).

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

User arrays go through `from_arrays`, which applies the same checks and conversions so the
rest of the library only ever sees uint8 (N, C, H, W) images.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genae.config import suggest
from genae.data.idx import read_idx_images_labels
from genae.data.types import DatasetSplits, ImageArrays
from genae.errors import DataError

StrPath = str | os.PathLike[str]

_log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# IDX (MNIST-layout) datasets
# ---------------------------------------------------------------------------------------------

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
IDX_FILES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# Official MD5s of the gzip files as published (the values torchvision checks too).
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
        TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
        TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
        TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
        TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

# Tried in order; each URL is mirror + file name.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# Directories filled by OS packages; trusted like data_dir (see the module docstring).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "mnist": (),
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

# How to get the files through the OS package manager, where a package exists.
SYSTEM_PACKAGE_HINTS: dict[str, str] = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist",
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

DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a named dataset can be loaded right now, and from where.

    location: the directory it would be loaded from, "embedded", or (when not available) a
    one-line hint how to get it.
    """

    name: str
    available: bool
    location: str


def cache_dir(name: str) -> Path:
    """The per-dataset cache directory: ``$GENAE_DATA_DIR/<name>`` or ``~/.cache/genae/<name>``."""
    root = os.environ.get("GENAE_DATA_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "genae"
    return base / name


def _fetch(url: str, dest: Path) -> None:
    """Download `url` into the file `dest` (overwriting it).

    Module-level so tests (and users behind proxies) can replace it; errors propagate as
    OSError (URLError, timeouts) or http.client.HTTPException.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "genae"})
    with (
        urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
        dest.open("wb") as out,
    ):
        shutil.copyfileobj(response, out, 1 << 20)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


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


def _checksum_problems(name: str, files: dict[str, Path]) -> list[str]:
    """MD5 mismatches among the standard-named .gz files (decompressed copies are not checked)."""
    problems = []
    for std_name, path in files.items():
        if path.name != std_name:
            continue
        expected = CHECKSUMS[name][std_name]
        actual = _md5(path)
        if actual != expected:
            problems.append(f"{path} has md5 {actual}, expected {expected}")
    return problems


class _DownloadFailed(Exception):
    """Every mirror failed for one file (network trouble, not a bad file)."""


def _download_file(name: str, filename: str, dest_dir: Path) -> None:
    """Download one file into `dest_dir`, trying each mirror, verifying its MD5.

    The bytes go to a temporary file in `dest_dir` that is renamed into place only after the
    checksum matches, so the cache never holds a partial or unverified file. A checksum
    mismatch is not retried on another mirror: it means the published file changed or was
    tampered with, which a user must know about.
    """
    expected = CHECKSUMS[name][filename]
    reasons = []
    for mirror in MIRRORS[name]:
        url = mirror + filename
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
        except OSError as exc:
            raise DataError(
                f"{name}: cannot write into the cache directory {dest_dir} ({_one_line(exc)}); "
                f"set GENAE_DATA_DIR to a writable directory or {_how_to_get(name)}"
            ) from None
        os.close(fd)
        _log.info("downloading %s", url)
        tmp = Path(tmp_name)
        try:
            _fetch(url, tmp)
        except (OSError, http.client.HTTPException) as exc:
            tmp.unlink(missing_ok=True)
            reasons.append(f"{url}: {_one_line(exc)}")
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        actual = _md5(tmp)
        if actual != expected:
            tmp.unlink(missing_ok=True)
            raise DataError(
                f"{filename} downloaded from {url} has md5 {actual}, expected {expected}; "
                f"the file was discarded"
            )
        os.replace(tmp, dest_dir / filename)
        return
    raise _DownloadFailed("; ".join(reasons))


def _how_to_get(name: str) -> str:
    """One-line advice for getting the files by hand (used in errors and `list_datasets`)."""
    package = SYSTEM_PACKAGE_HINTS.get(name)
    via_package = f"install them with `{package}`, or " if package else ""
    return (
        f"{via_package}download the four files ({', '.join(IDX_FILES)}) from "
        f"{MIRRORS[name][0]}, put them in a directory DIR and pass --data-dir DIR"
    )


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
        bad = _checksum_problems(name, files) if verified else []
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
            f"off; {_how_to_get(name)}"
        )
    target = cache_dir(name)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{name}: cannot create the cache directory {target} ({_one_line(exc)}); set "
            f"GENAE_DATA_DIR to a writable directory or {_how_to_get(name)}"
        ) from None
    for filename in IDX_FILES:
        existing = target / filename
        if existing.is_file() and _md5(existing) == CHECKSUMS[name][filename]:
            continue
        try:
            _download_file(name, filename, target)
        except _DownloadFailed as exc:
            raise DataError(
                f"{name}: not found in {where}{trouble}, and downloading {filename} failed "
                f"({exc}); {_how_to_get(name)}"
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
        test=test,
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
        f"not found; the first load downloads it into {cache_dir(name)}, or " + _how_to_get(name),
    )


_IDX_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": DIGIT_CLASSES,
    "fashion-mnist": FASHION_MNIST_CLASSES,
}

# ---------------------------------------------------------------------------------------------
# scikit-learn's embedded digits
# ---------------------------------------------------------------------------------------------

DIGITS_TRAIN_SIZE = 1500  # of 1797; the remaining 297 are the test split
DIGITS_SPLIT_SEED = 0


def _load_digits(data_dir: Path | None, download: bool) -> DatasetSplits:
    """8x8 digits shipped inside scikit-learn: always available, ideal for quick smoke runs."""
    del data_dir, download  # embedded: nothing to find or fetch
    try:
        from sklearn.datasets import load_digits
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
        test=ImageArrays(torch.from_numpy(images[test_idx]), torch.from_numpy(labels[test_idx])),
        source="embedded",
        class_names=DIGIT_CLASSES,
    )


def _digits_status(name: str, data_dir: Path | None) -> DatasetStatus:
    del data_dir
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return DatasetStatus(name, False, "needs scikit-learn: pip install scikit-learn")
    return DatasetStatus(name, True, "embedded")


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    load: Callable[..., DatasetSplits]  # (data_dir, download[, ImageOptions])
    status: Callable[[str, Path | None], DatasetStatus]
    takes_options: bool = False  # image-file datasets: attributes, image size, skipping


# ---------------------------------------------------------------------------------------------
# Image-file datasets (genae.data.images): CelebA and any folder of images
# ---------------------------------------------------------------------------------------------


def _load_celeba(data_dir: Path | None, download: bool, options) -> DatasetSplits:
    del download  # CelebA is too large and licence-bound to fetch automatically
    from genae.data.images import load_celeba

    return load_celeba(data_dir, options, cache_dir("celeba"))


def _celeba_status(name: str, data_dir: Path | None) -> DatasetStatus:
    from genae.data.images import CELEBA_URL, find_celeba

    root = find_celeba(data_dir, cache_dir(name))
    if root is not None:
        return DatasetStatus(name, True, str(root))
    return DatasetStatus(name, False, f"download from {CELEBA_URL}, pass --data-dir DIR")


def _load_folder(data_dir: Path | None, download: bool, options) -> DatasetSplits:
    del download
    from genae.data.images import load_folder

    return load_folder(data_dir, options)


def _folder_status(name: str, data_dir: Path | None) -> DatasetStatus:
    if data_dir is not None and data_dir.is_dir():
        return DatasetStatus(name, True, str(data_dir))
    return DatasetStatus(name, False, "any directory of images: pass --data-dir DIR")


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


def _canonical(name: str) -> str:
    """Registry key for `name`: case and '_' vs '-' are forgiven ("Fashion_MNIST" works)."""
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise DataError(
            f"unknown dataset '{name}'{suggest(key, _REGISTRY)}; "
            f"available: {', '.join(DATASET_NAMES)}"
        )
    return key


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
    key = _canonical(name)
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    entry = _REGISTRY[key]
    if entry.takes_options:
        from genae.data.images import ImageOptions

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


# ---------------------------------------------------------------------------------------------
# User arrays
# ---------------------------------------------------------------------------------------------


def _to_numpy(value: object, arg: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16
            value = value.float()
        return value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{arg}: expected a numpy array or torch tensor ({_one_line(exc)})"
        ) from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise DataError(f"{arg}: expected a numeric numpy array or torch tensor, got {array.dtype}")
    return array


def _as_uint8_images(value: object, arg: str) -> np.ndarray:
    """Validate and convert user images to uint8 (N, C, H, W)."""
    array = _to_numpy(value, arg)
    if array.dtype == np.bool_:
        raise DataError(f"{arg}: expected uint8 0..255 or floats in [0, 1], got booleans")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise DataError(f"{arg}: expected finite values, found NaN or infinity")
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise DataError(
                f"{arg}: expected floats in [0, 1] (or uint8 0..255), got values from "
                f"{array.min():g} to {array.max():g}"
            )
        array = np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        # Integer arrays (e.g. int64 from Python lists) are fine when they hold pixel values.
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DataError(
                f"{arg}: expected pixel values 0..255, got integers from {array.min()} to "
                f"{array.max()}"
            )
        array = array.astype(np.uint8)

    expected = "(N, H, W), (N, C, H, W) or (N, D) with D a perfect square"
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1] or side == 0:
            raise DataError(
                f"{arg}: expected shape {expected}; got (N, D) with D={array.shape[1]}, "
                f"which is not a perfect square"
            )
        array = array.reshape(array.shape[0], 1, side, side)
    elif array.ndim == 3:
        array = array[:, None, :, :]
    elif array.ndim == 4:
        if array.shape[3] in (1, 3, 4) and array.shape[1] > 4:
            raise DataError(
                f"{arg}: expected shape (N, C, H, W), got {array.shape}, which looks "
                f"channels-last (N, H, W, C); transpose it with .transpose(0, 3, 1, 2)"
            )
    else:
        raise DataError(f"{arg}: expected shape {expected}, got {array.ndim}-D shape {array.shape}")
    if array.shape[0] == 0 or 0 in array.shape[1:]:
        raise DataError(f"{arg}: expected at least one non-empty image, got shape {array.shape}")
    return np.ascontiguousarray(array)


def _as_labels(
    value: object,
    arg: str,
    count: int,
    count_arg: str,
    class_names: Sequence[str],
    attribute_names: Sequence[str],
) -> torch.Tensor:
    """Validate user labels: int64 class indices (N,) or float32 +1/-1 attributes (N, A)."""
    array = _to_numpy(value, arg)
    if array.ndim not in (1, 2):
        raise DataError(
            f"{arg}: expected class indices of shape (N,) or attributes of shape (N, A), got "
            f"shape {array.shape}"
        )
    if array.shape[0] != count:
        raise DataError(
            f"{arg}: expected {count} labels (one per image in {count_arg}), got {array.shape[0]}"
        )
    if array.ndim == 1:
        if attribute_names:
            raise DataError(
                f"{arg}: attribute_names were given, so expected attributes of shape (N, "
                f"{len(attribute_names)}), got shape {array.shape}"
            )
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise DataError(
                f"{arg}: expected integer class indices, got {array.dtype} (cast to int for "
                f"class labels, or pass attributes of shape (N, A) with attribute_names)"
            )
        array = array.astype(np.int64)
        if array.size and array.min() < 0:
            raise DataError(f"{arg}: expected class indices >= 0, found {array.min()}")
        if class_names and array.size and array.max() >= len(class_names):
            raise DataError(
                f"{arg}: expected class indices below {len(class_names)} (the number of "
                f"class_names), found {array.max()}"
            )
        return torch.from_numpy(np.ascontiguousarray(array))

    width = array.shape[1]
    if not attribute_names:
        raise DataError(
            f"{arg}: attribute labels of shape {array.shape} need attribute_names ({width} names)"
        )
    if len(attribute_names) != width:
        raise DataError(
            f"{arg}: expected {len(attribute_names)} attribute columns (one per attribute_names "
            f"entry), got {width}"
        )
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{arg}: expected attribute values +1/-1 or 0/1, found NaN or infinity")
    present = set(np.unique(values).tolist())
    if present <= {-1.0, 1.0}:
        signed = values
    elif present <= {0.0, 1.0}:
        signed = values * 2.0 - 1.0
    else:
        shown = ", ".join(f"{v:g}" for v in sorted(present)[:6])
        raise DataError(f"{arg}: expected attribute values +1/-1 or 0/1, found {shown}")
    return torch.from_numpy(np.ascontiguousarray(signed, dtype=np.float32))


def from_arrays(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | None = None,
    *,
    test_images: np.ndarray | torch.Tensor | None = None,
    test_labels: np.ndarray | torch.Tensor | None = None,
    name: str = "arrays",
    class_names: Sequence[str] = (),
    attribute_names: Sequence[str] = (),
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetSplits:
    """Wrap user arrays as a dataset, validated and converted like the built-in ones.

    images: uint8 0..255, other integers within 0..255, or floats in [0, 1] (stored as
    round(x * 255)); shape (N, H, W), (N, C, H, W), or (N, D) with D a perfect square (1xHxW).
    labels: integer class indices (N,) >= 0, or attributes (N, A) of +1/-1 or 0/1 (stored as
    float32 +1/-1; needs `attribute_names`). Without `test_images`, a `test_fraction` share is
    held out by a permutation seeded with `seed`, so the split is the same on every run.
    Every problem raises a one-line `DataError` naming the argument.
    """
    class_names = tuple(class_names)
    attribute_names = tuple(attribute_names)
    train_x = _as_uint8_images(images, "images")
    train_y = (
        None
        if labels is None
        else _as_labels(labels, "labels", len(train_x), "images", class_names, attribute_names)
    )
    if labels is None and attribute_names:
        raise DataError("attribute_names: given without labels; pass the (N, A) attributes too")

    if test_images is None:
        if test_labels is not None:
            raise DataError("test_labels: given without test_images; pass both or neither")
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
        n = len(train_x)
        if n < 2:
            raise DataError(
                f"images: expected at least 2 images to hold out a test split, got {n}; "
                f"pass test_images explicitly"
            )
        n_test = min(max(1, round(n * test_fraction)), n - 1)
        order = np.random.default_rng(seed).permutation(n)
        test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        test_x, train_x = train_x[test_idx], train_x[train_idx]
        test_y = None
        if train_y is not None:
            test_y, train_y = (
                train_y[torch.from_numpy(test_idx)],
                train_y[torch.from_numpy(train_idx)],
            )
    else:
        test_x = _as_uint8_images(test_images, "test_images")
        if test_x.shape[1:] != train_x.shape[1:]:
            raise DataError(
                f"test_images: expected images of shape {tuple(train_x.shape[1:])} like images, "
                f"got {tuple(test_x.shape[1:])}"
            )
        if (test_labels is None) != (labels is None):
            missing = "test_labels" if test_labels is None else "labels"
            raise DataError(f"{missing}: expected labels for both splits or for neither")
        test_y = (
            None
            if test_labels is None
            else _as_labels(
                test_labels,
                "test_labels",
                len(test_x),
                "test_images",
                class_names,
                attribute_names,
            )
        )
        if test_y is not None and train_y is not None and test_y.dim() != train_y.dim():
            raise DataError(
                f"test_labels: expected the same kind of labels as labels (shape "
                f"{tuple(train_y.shape[1:])} per image), got {tuple(test_y.shape[1:])}"
            )

    return DatasetSplits(
        name=name,
        train=ImageArrays(torch.from_numpy(np.ascontiguousarray(train_x)), train_y),
        test=ImageArrays(torch.from_numpy(np.ascontiguousarray(test_x)), test_y),
        source="arrays",
        class_names=class_names,
        attribute_names=attribute_names,
    )
