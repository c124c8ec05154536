"""Fetching the standard MNIST-layout files from their official mirrors, verified by MD5.

A downloaded file reaches its final name only after its checksum matched, so a cache directory
never holds a partial or unverified file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from genae.errors import DataError

_log = logging.getLogger(__name__)

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

# How to get the files through the OS package manager, where a package exists.
SYSTEM_PACKAGE_HINTS: dict[str, str] = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist",
}

DOWNLOAD_TIMEOUT_S = 60.0


class DownloadFailed(Exception):
    """Every mirror failed for one file (network trouble, not a bad file)."""


def fetch(url: str, dest: Path) -> None:
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


def md5(path: Path) -> str:
    """The hex MD5 of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def checksum_problems(name: str, files: dict[str, Path]) -> list[str]:
    """MD5 mismatches among the standard-named .gz files (decompressed copies are not checked)."""
    problems = []
    for std_name, path in files.items():
        if path.name != std_name:
            continue
        expected = CHECKSUMS[name][std_name]
        actual = md5(path)
        if actual != expected:
            problems.append(f"{path} has md5 {actual}, expected {expected}")
    return problems


def how_to_get(name: str) -> str:
    """One-line advice for getting the files by hand (used in errors and dataset listings)."""
    package = SYSTEM_PACKAGE_HINTS.get(name)
    via_package = f"install them with `{package}`, or " if package else ""
    return (
        f"{via_package}download the four files ({', '.join(IDX_FILES)}) from "
        f"{MIRRORS[name][0]}, put them in a directory DIR and pass --data-dir DIR"
    )


def _download_file(name: str, filename: str, dest_dir: Path) -> None:
    """Download one file into `dest_dir`, trying each mirror, verifying its MD5.

    The bytes go to a temporary file in `dest_dir` that is renamed into place only after the
    checksum matches. A checksum mismatch is not retried on another mirror: it means the
    published file changed or was tampered with, which a user must know about.
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
                f"set GENAE_DATA_DIR to a writable directory or {how_to_get(name)}"
            ) from None
        os.close(fd)
        _log.info("downloading %s", url)
        tmp = Path(tmp_name)
        try:
            fetch(url, tmp)
        except (OSError, http.client.HTTPException) as exc:
            tmp.unlink(missing_ok=True)
            reasons.append(f"{url}: {_one_line(exc)}")
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        actual = md5(tmp)
        if actual != expected:
            tmp.unlink(missing_ok=True)
            raise DataError(
                f"{filename} downloaded from {url} has md5 {actual}, expected {expected}; "
                f"the file was discarded"
            )
        os.replace(tmp, dest_dir / filename)
        return
    raise DownloadFailed(f"downloading {filename} failed ({'; '.join(reasons)})")


def download_idx_files(name: str, target: Path) -> None:
    """Make `target` hold the four verified files of `name`, fetching only missing or bad ones.

    Raises DataError when `target` is not writable or a download has the wrong checksum, and
    DownloadFailed when every mirror failed for a file.
    """
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{name}: cannot create the cache directory {target} ({_one_line(exc)}); set "
            f"GENAE_DATA_DIR to a writable directory or {how_to_get(name)}"
        ) from None
    for filename in IDX_FILES:
        existing = target / filename
        if existing.is_file() and md5(existing) == CHECKSUMS[name][filename]:
            continue
        _download_file(name, filename, target)
