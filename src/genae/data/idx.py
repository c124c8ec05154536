"""Reading and writing IDX files, the format MNIST and Fashion-MNIST are distributed in.

An IDX file is a tiny header followed by raw big-endian array data:

    byte 0-1   0x00 0x00                      (magic)
    byte 2     dtype code                     (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                               0x0D float32, 0x0E float64)
    byte 3     ndim                           (1..4 here)
    then       ndim big-endian uint32 sizes, then prod(sizes) items, nothing after them.

The reader is strict on purpose: downloaded dataset files are sometimes truncated, decompressed
by a browser while keeping their `.gz` name, or swapped (images given as labels). Each of these
becomes a one-line `DataError` naming the file and what was expected, instead of a reshape
error deep inside numpy or, worse, silently wrong training data.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from genae.data.types import ImageArrays
from genae.errors import DataError

StrPath = str | os.PathLike[str]

# IDX dtype code -> numpy dtype of the (big-endian) data that follows the header.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Native numpy dtype -> IDX dtype code, for writing.
_DTYPE_TO_CODE: dict[np.dtype, int] = {
    dt.newbyteorder("="): code for code, dt in _CODE_TO_DTYPE.items()
}

MAX_NDIM = 4  # images (N, H, W) need 3; nothing we read needs more than (N, C, H, W)


def _one_line(text: object) -> str:
    """Collapse an exception text onto one line so CLI error messages stay one line."""
    return " ".join(str(text).split())


def _decompress(path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        hint = ""
        if raw[:2] == b"\x00\x00":
            hint = " (it looks like an already decompressed IDX file: drop the .gz suffix)"
        raise DataError(
            f"{path}: expected a gzip-compressed IDX file because the name ends in .gz, "
            f"but it is not valid gzip ({_one_line(exc)}){hint}"
        ) from None


def read_idx(path: StrPath) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in `.gz`) into a native-endian array.

    Raises `DataError` with a one-line message naming the file for a missing or unreadable
    file, bad gzip data, a wrong magic number, an unknown dtype code, ndim 0 or above 4, and
    for data shorter or longer than the header's sizes imply.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (expected an IDX file)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read IDX file ({_one_line(exc)})") from None
    data = _decompress(path, raw) if path.name.endswith(".gz") else raw

    if len(data) < 4:
        raise DataError(
            f"{path}: truncated IDX file: expected a 4-byte header, found {len(data)} bytes"
        )
    if data[0] != 0 or data[1] != 0:
        hint = " (it looks gzip-compressed: name it *.gz)" if data[:2] == b"\x1f\x8b" else ""
        raise DataError(
            f"{path}: not an IDX file: expected the first two bytes to be 0x00 0x00, "
            f"got 0x{data[0]:02x} 0x{data[1]:02x}{hint}"
        )
    code, ndim = data[2], data[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02X}; expected one of {known}")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{path}: IDX header says ndim={ndim}; expected 1 to {MAX_NDIM} dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated IDX header: expected {header_len} bytes for {ndim} dimensions, "
            f"found {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _CODE_TO_DTYPE[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header_len
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX data: shape {shape} of {dtype.newbyteorder('=')} needs "
            f"{expected} bytes after the header, found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: {found - expected} unexpected trailing bytes after the IDX data of shape "
            f"{shape} (expected exactly {expected} data bytes)"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_len)
    # astype copies: the result is writable, native-endian and owns its memory (torch-friendly).
    return array.astype(dtype.newbyteorder("=")).reshape(shape)


def write_idx(path: StrPath, array: np.ndarray | torch.Tensor) -> None:
    """Write `array` as an IDX file, gzip-compressed when `path` ends in `.gz`.

    Used to prepare data in the MNIST layout and by the tests to make small fixtures. The
    write goes through a temporary file in the same directory and a rename, so a reader
    never sees a half-written file. Gzip output has a zero timestamp, so the same array
    always gives the same bytes (and md5).
    """
    path = Path(path)
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _DTYPE_TO_CODE:
        names = ", ".join(str(dt) for dt in _DTYPE_TO_CODE)
        raise DataError(f"{path}: cannot write dtype {array.dtype} to IDX; expected one of {names}")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise DataError(
            f"{path}: cannot write a {array.ndim}-D array to IDX; expected 1 to {MAX_NDIM} dims"
        )
    code = _DTYPE_TO_CODE[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_idx_images_labels(
    images_path: StrPath,
    labels_path: StrPath,
    *,
    expect_hw: tuple[int, int] | None = None,
) -> ImageArrays:
    """Read an MNIST-style pair of IDX files into an `ImageArrays` split.

    Images must be uint8 (N, H, W) and come back as (N, 1, H, W); labels must be uint8 (N,)
    and come back as int64 class indices. Checking the pairing here catches swapped or
    mismatched files (e.g. train images with test labels) before they reach training.
    `expect_hw` additionally pins the image size, e.g. (28, 28) for MNIST.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W), got {images.dtype} "
            f"with shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} "
            f"with shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"image/label count mismatch: {images_path} holds {images.shape[0]} images but "
            f"{labels_path} holds {labels.shape[0]} labels"
        )
    if expect_hw is not None and tuple(images.shape[1:]) != tuple(expect_hw):
        raise DataError(
            f"{images_path}: expected {expect_hw[0]}x{expect_hw[1]} images, "
            f"got {images.shape[1]}x{images.shape[2]}"
        )
    return ImageArrays(
        images=torch.from_numpy(images).unsqueeze(1).contiguous(),
        labels=torch.from_numpy(labels).to(torch.int64),
    )
