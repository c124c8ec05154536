"""Datasets of image files: CelebA in its official layout, and any folder of images.

Decoding tens of thousands of JPEGs on every run would dominate training time, so the first use
decodes every image once (crop, resize, uint8) into a cache file that later runs memory-map:

    $GENAE_DATA_DIR/images/<name>-<settings>-<contents>.npy     (or ~/.cache/genae/images/...)
    ...and a .json beside it naming the images it holds (and the ones skipped)

<settings> hashes the source directory and the preprocessing (crop, size, colour mode, the
skip option); <contents> hashes the file list with every file's size and mtime. A changed file,
an added or removed image, or other settings give another name, so the cache is rebuilt; the
superseded cache of the same source and settings is deleted. Both files are written to a
temporary name and renamed (the .json last), so an interrupted build is never mistaken for a
finished one.

An image that cannot be decoded is a one-line DataError naming the file, unless the user asks
to skip such images (`skip_bad_images`), in which case they are left out and counted.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from genae.config import suggest
from genae.data.cache import cache_dir
from genae.data.types import DatasetSplits, ImageArrays, SealedSplit
from genae.errors import DataError
from genae.io import atomic_path, write_json_atomic

CACHE_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
PARALLEL_MIN = 2000  # below this many images, decoding in one process is faster than a pool

# CelebA's official layout and preprocessing (the DFC-VAE paper's: centre crop 148, resize 64).
CELEBA_IMAGES = "img_align_celeba"
CELEBA_ATTRS = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_CROP = 148
DEFAULT_SIZE = 64
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
FOLDER_LABELS = "labels.csv"
FOLDER_TEST_FRACTION = 0.1
FOLDER_SPLIT_SEED = 0


@dataclass(frozen=True)
class ImageOptions:
    """How to turn image files into arrays (TrainConfig's attributes, image_size,
    skip_bad_images)."""

    attributes: tuple[str, ...] = ()  # attribute columns to load as labels; ("all",) for all
    image_size: int = 0  # side of the square images; 0: 64
    skip_bad_images: bool = False  # leave out (and count) images that cannot be decoded

    @property
    def size(self) -> int:
        return self.image_size or DEFAULT_SIZE


# --- decoding ----------------------------------------------------------------------------------


def decode_image(path: Path, crop: int, size: int, mode: str) -> np.ndarray:
    """One image as uint8 (C, size, size): centre crop `crop` (0: the largest square), then a
    bicubic (antialiased) resize. Raises OSError/ValueError for undecodable files."""
    with Image.open(path) as image:
        image = image.convert(mode)
        w, h = image.size
        side = min(crop or min(w, h), w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
        if side != size:
            image = image.resize((size, size), Image.BICUBIC)
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _decode_or_reason(job: tuple[Path, int, int, str]) -> np.ndarray | str:
    try:
        return decode_image(*job)
    except Exception as exc:  # a broken file is data, reported by the caller with its name
        return " ".join(str(exc).split())[:160] or type(exc).__name__


def _file_signature(root: Path, files: Sequence[Path]) -> list[tuple[str, int, int]]:
    signature = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            signature.append((str(path.relative_to(root)), -1, -1))
        else:
            signature.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return signature


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DecodedImages:
    """Images decoded from a file list: `images` (memory-mapped uint8 N, C, H, W) holds the
    files whose indices are in `kept`; `skipped` names the ones left out."""

    images: torch.Tensor
    kept: np.ndarray
    skipped: tuple[str, ...]
    cache: Path


def cached_images(
    name: str,
    root: Path,
    files: Sequence[Path],
    *,
    crop: int,
    size: int,
    mode: str,
    skip_bad: bool,
    cache_root: Path,
) -> DecodedImages:
    """Decode `files` (each under `root`) once into a memory-mapped cache; reuse it while the
    files and settings stay the same (see the module docstring)."""
    settings = {
        "version": CACHE_VERSION,
        "root": str(root.resolve()),
        "crop": crop,
        "size": size,
        "mode": mode,
        "skip_bad": skip_bad,
    }
    stem = f"{name}-{_digest(settings)[:8]}"
    contents = _digest(_file_signature(root, files))[:12]
    array_path = cache_root / f"{stem}-{contents}.npy"
    index_path = array_path.with_suffix(".json")
    if array_path.is_file() and index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
            images = np.load(array_path, mmap_mode="c")  # copy-on-write: writable, file untouched
            if index.get("settings") == settings and len(images) == len(index["kept"]):
                return DecodedImages(
                    torch.from_numpy(images),
                    np.asarray(index["kept"], dtype=np.int64),
                    tuple(index["skipped"]),
                    array_path,
                )
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: rebuild it
    for old in cache_root.glob(f"{stem}-*"):
        old.unlink(missing_ok=True)
    kept, skipped = _build_cache(name, root, files, array_path, crop, size, mode, skip_bad)
    if skipped:
        print(
            f"genae: {name}: skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}",
            file=sys.stderr,
        )
    write_json_atomic(
        index_path, {"settings": settings, "kept": kept.tolist(), "skipped": list(skipped)}
    )
    images = np.load(array_path, mmap_mode="c")
    return DecodedImages(torch.from_numpy(images), kept, skipped, array_path)


def _build_cache(
    name: str,
    root: Path,
    files: Sequence[Path],
    array_path: Path,
    crop: int,
    size: int,
    mode: str,
    skip_bad: bool,
) -> tuple[np.ndarray, tuple[str, ...]]:
    channels = 1 if mode == "L" else 3
    jobs = [(path, crop, size, mode) for path in files]
    kept: list[int] = []
    skipped: list[str] = []
    with atomic_path(array_path) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(files), channels, size, size)
        )
        workers = min(os.cpu_count() or 1, 8)
        pool = ProcessPoolExecutor(workers) if len(files) >= PARALLEL_MIN and workers > 1 else None
        try:
            results = (
                pool.map(_decode_or_reason, jobs, chunksize=64)
                if pool
                else map(_decode_or_reason, jobs)
            )
            bar = tqdm(
                results,
                total=len(jobs),
                desc=f"decoding {name}",
                unit="img",
                disable=None,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            for i, result in enumerate(bar):
                if isinstance(result, str):
                    if not skip_bad:
                        raise DataError(
                            f"{files[i]}: cannot decode image ({result}); fix or remove it, or "
                            f"pass --skip-bad-images to leave unreadable images out"
                        )
                    skipped.append(str(files[i].relative_to(root)))
                    continue
                out[len(kept)] = result
                kept.append(i)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        out.flush()
        del out
        if skipped:
            # Rewrite without the unused tail rows (rare: only when images were skipped).
            full = np.load(tmp, mmap_mode="r")
            compact = np.ascontiguousarray(full[: len(kept)])
            del full
            np.save(tmp, compact)
            if tmp.suffix != ".npy":  # np.save appends .npy to other names
                os.replace(str(tmp) + ".npy", tmp)
    return np.asarray(kept, dtype=np.int64), tuple(skipped)


# --- CelebA ------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def read_partition(path: Path) -> list[tuple[str, int]]:
    """(file name, partition) pairs; partition 0 train, 1 valid, 2 test."""
    entries = []
    for number, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(
                f"{path}:{number}: expected '<image> <0|1|2>', got {line.strip()[:60]!r}"
            )
        entries.append((fields[0], int(fields[1])))
    if not entries:
        raise DataError(f"{path}: no entries")
    return entries


def read_attributes(path: Path, wanted: Sequence[str]) -> tuple[tuple[str, ...], dict[str, list]]:
    """The chosen attribute columns of list_attr_celeba.txt as +1/-1 per file name."""
    lines = _read_lines(path)
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a header line of attribute names")
    names = lines[1].split()
    chosen = tuple(names) if tuple(wanted) == ("all",) else tuple(wanted)
    for attribute in chosen:
        if attribute not in names:
            raise DataError(
                f"attributes: '{attribute}' is not a column of {path}{suggest(attribute, names)}"
            )
    columns = [names.index(a) for a in chosen]
    table: dict[str, list] = {}
    for number, line in enumerate(lines[2:], 3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise DataError(
                f"{path}:{number}: expected an image name and {len(names)} attribute values, "
                f"got {len(fields) - 1} values"
            )
        values = []
        for column in columns:
            value = fields[column + 1]
            if value not in ("1", "-1", "0"):
                raise DataError(
                    f"{path}:{number}: attribute {names[column]} is {value!r}, expected 1 or -1"
                )
            values.append(1.0 if value == "1" else -1.0)
        table[fields[0]] = values
    return chosen, table


def find_celeba(data_dir: Path | None, cache: Path) -> Path | None:
    """The first of data_dir, data_dir/celeba, the cache dir holding the official layout."""
    candidates = [data_dir, data_dir / "celeba"] if data_dir is not None else []
    for candidate in [*candidates, cache]:
        if (candidate / CELEBA_IMAGES).is_dir() and (candidate / CELEBA_PARTITION).is_file():
            return candidate
    return None


def load_celeba(data_dir: Path | None, options: ImageOptions, cache: Path) -> DatasetSplits:
    """CelebA (aligned) from its official files: train = partition 0, test = partition 2 (the
    validation partition 1 is decoded into the cache too, but not part of the splits).
    Images: centre crop 148x148, resized to `options.size` (64)."""
    root = find_celeba(data_dir, cache)
    if root is None:
        where = ", ".join(str(p) for p in ([data_dir, data_dir / "celeba"] if data_dir else []))
        where = f"{where}, {cache}" if where else str(cache)
        raise DataError(
            f"celeba: {CELEBA_IMAGES}/ and {CELEBA_PARTITION} not found in {where}; download "
            f"the aligned images and the attribute and partition files from {CELEBA_URL} and "
            f"pass --data-dir DIR"
        )
    partition = read_partition(root / CELEBA_PARTITION)
    attribute_names: tuple[str, ...] = ()
    table: dict[str, list] = {}
    if options.attributes:
        attribute_names, table = read_attributes(root / CELEBA_ATTRS, options.attributes)
        missing = [name for name, _ in partition if name not in table]
        if missing:
            raise DataError(
                f"{root / CELEBA_ATTRS}: no attributes for {len(missing)} image(s) of "
                f"{CELEBA_PARTITION}, e.g. {missing[0]}"
            )
    files = [root / CELEBA_IMAGES / name for name, _ in partition]
    decoded = cached_images(
        "celeba",
        root,
        files,
        crop=CELEBA_CROP,
        size=options.size,
        mode="RGB",
        skip_bad=options.skip_bad_images,
        cache_root=cache_dir("images"),
    )
    parts = np.asarray([p for _, p in partition])[decoded.kept]
    labels = None
    if attribute_names:
        labels = torch.tensor([table[partition[i][0]] for i in decoded.kept], dtype=torch.float32)

    def split(which: int) -> ImageArrays:
        rows = np.flatnonzero(parts == which)
        if not len(rows):
            raise DataError(f"{root / CELEBA_PARTITION}: no images in partition {which}")
        if rows[-1] - rows[0] + 1 == len(rows):  # the official order: a slice, still mapped
            index: slice | torch.Tensor = slice(int(rows[0]), int(rows[-1]) + 1)
        else:
            index = torch.from_numpy(rows)
        return ImageArrays(decoded.images[index], labels[index] if labels is not None else None)

    notes = (f"skipped {len(decoded.skipped)} unreadable images",) if decoded.skipped else ()
    return DatasetSplits(
        name="celeba",
        train=split(0),
        test=SealedSplit(split(2)),
        source=str(root),
        attribute_names=attribute_names,
        notes=notes,
    )


# --- any folder of images ----------------------------------------------------------------------


def _folder_labels(
    root: Path, files: list[Path], options: ImageOptions
) -> tuple[torch.Tensor | None, tuple[str, ...], tuple[str, ...]]:
    """Labels from root/labels.csv: a `file` column and either one `label` column (class names
    or indices) or attribute columns (+1/-1 or 0/1). Returns labels, class names, attributes."""
    path = root / FOLDER_LABELS
    if not path.is_file():
        if options.attributes:
            raise DataError(f"attributes: asked for, but {path} does not exist")
        return None, (), ()
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not rows or not rows[0] or rows[0][0] != "file":
        raise DataError(f"{path}: expected a header row starting with 'file'")
    header = rows[0]
    by_file = {}
    for number, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{number}: expected {len(header)} fields, got {len(row)}")
        by_file[row[0]] = row[1:]
    names = [str(f.relative_to(root)) for f in files]
    missing = [n for n in names if n not in by_file]
    if missing:
        raise DataError(f"{path}: no row for {len(missing)} image(s), e.g. {missing[0]}")
    columns = header[1:]
    if columns == ["label"]:
        if options.attributes:
            raise DataError(f"attributes: {path} has class labels, not attribute columns")
        values = [by_file[n][0] for n in names]
        if all(v.isdigit() for v in values):
            return torch.tensor([int(v) for v in values]), (), ()
        class_names = tuple(sorted(set(values)))
        index = {c: i for i, c in enumerate(class_names)}
        return torch.tensor([index[v] for v in values]), class_names, ()
    wanted = columns if tuple(options.attributes) in ((), ("all",)) else list(options.attributes)
    for attribute in wanted:
        if attribute not in columns:
            raise DataError(
                f"attributes: '{attribute}' is not a column of {path}{suggest(attribute, columns)}"
            )
    picks = [columns.index(a) for a in wanted]
    table = []
    for n in names:
        row = []
        for k in picks:
            value = by_file[n][k].strip()
            if value not in ("1", "-1", "0"):
                raise DataError(f"{path}: {n} has {columns[k]}={value!r}, expected 1, -1 or 0")
            row.append(1.0 if value == "1" else -1.0)
        table.append(row)
    return torch.tensor(table, dtype=torch.float32), (), tuple(wanted)


def load_folder(data_dir: Path | None, options: ImageOptions) -> DatasetSplits:
    """Every image under --data-dir (recursively; sorted by path), centre-cropped to a square and
    resized to `options.size`. Grayscale when the first image is, else RGB. Optional labels in
    labels.csv (see `_folder_labels`). A seeded 10% of the images is the test split."""
    if data_dir is None or not data_dir.is_dir():
        raise DataError(
            f"folder: expected --data-dir DIR, a directory of images, got {data_dir or 'none'}"
        )
    files = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise DataError(f"{data_dir}: expected at least 2 images ({', '.join(IMAGE_SUFFIXES)})")
    labels, class_names, attribute_names = _folder_labels(data_dir, files, options)
    try:
        with Image.open(files[0]) as first:
            mode = "L" if first.mode in ("L", "1", "I", "I;16", "F") else "RGB"
    except Exception:
        mode = "RGB"
    decoded = cached_images(
        "folder",
        data_dir,
        files,
        crop=0,
        size=options.size,
        mode=mode,
        skip_bad=options.skip_bad_images,
        cache_root=cache_dir("images"),
    )
    n = len(decoded.kept)
    if n < 2:
        raise DataError(f"{data_dir}: fewer than 2 readable images")
    if labels is not None:
        labels = labels[torch.from_numpy(decoded.kept)]
    order = np.random.default_rng(FOLDER_SPLIT_SEED).permutation(n)
    n_test = min(max(1, round(n * FOLDER_TEST_FRACTION)), n - 1)
    test_idx = torch.from_numpy(np.sort(order[:n_test]))
    train_idx = torch.from_numpy(np.sort(order[n_test:]))

    def take(index: torch.Tensor) -> ImageArrays:
        return ImageArrays(decoded.images[index], labels[index] if labels is not None else None)

    notes = (f"skipped {len(decoded.skipped)} unreadable images",) if decoded.skipped else ()
    return DatasetSplits(
        name="folder",
        train=take(train_idx),
        test=SealedSplit(take(test_idx)),
        source=str(data_dir),
        class_names=class_names,
        attribute_names=attribute_names,
        notes=notes,
    )
