"""IDX reader/writer: round trips, byte layout, and every corrupt-file case the reader rejects."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genae.data.idx import read_idx, read_idx_images_labels, write_idx
from genae.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _raw_idx(code: int, shape: tuple[int, ...], data: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


def _assert_one_line_error(exc_info: pytest.ExceptionInfo[DataError], path: Path) -> str:
    message = str(exc_info.value)
    assert path.name in message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path: Path, dtype: type, suffix: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(5, 3, 4)) * 50).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    assert back.shape == (5, 3, 4)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (1, 2, 3, 4), (0, 28, 28)])
def test_round_trip_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)


def test_written_bytes_are_big_endian_idx(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.array([1, 258], dtype=np.int32))
    raw = (tmp_path / "x").read_bytes()
    assert raw == b"\x00\x00\x0c\x01" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x01\x00\x00\x01\x02"


def test_gz_output_is_gzip_and_deterministic(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.uint8).reshape(4, 5, 5)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", torch.from_numpy(array))  # tensors are accepted too
    raw = (tmp_path / "a.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw == (tmp_path / "b.gz").read_bytes()
    assert gzip.decompress(raw)[:4] == b"\x00\x00\x08\x03"
    assert not list(tmp_path.glob("*.part"))


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory,
    dtype: type,
    shape: tuple[int, ...],
    gz: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    array = rng.integers(-128, 128, size=shape).astype(dtype)
    path = tmp_path_factory.mktemp("prop") / ("x.gz" if gz else "x")
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as info:
        read_idx(tmp_path / "nope-idx3-ubyte.gz")
    _assert_one_line_error(info, tmp_path / "nope-idx3-ubyte.gz")


def test_gz_name_but_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_raw_idx(0x08, (1, 2, 2), bytes(4)))  # e.g. a browser decompressed it
    with pytest.raises(DataError, match="gzip") as info:
        read_idx(path)
    message = _assert_one_line_error(info, path)
    assert "drop the .gz suffix" in message


def test_corrupt_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((10, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-12])  # cut off the end of the stream
    with pytest.raises(DataError, match="not valid gzip") as info:
        read_idx(path)
    _assert_one_line_error(info, path)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-magic"
    path.write_bytes(b"\x01\x00" + _raw_idx(0x08, (4,), bytes(4))[2:])
    with pytest.raises(DataError, match="0x00 0x00, got 0x01 0x00") as info:
        read_idx(path)
    _assert_one_line_error(info, path)


def test_gzip_content_without_gz_name(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(gzip.compress(_raw_idx(0x08, (4,), bytes(4))))
    with pytest.raises(DataError, match=r"name it \*\.gz") as info:
        read_idx(path)
    _assert_one_line_error(info, path)


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = tmp_path / "code"
    path.write_bytes(_raw_idx(0x07, (4,), bytes(4)))
    with pytest.raises(DataError, match="unknown IDX dtype code 0x07") as info:
        read_idx(path)
    _assert_one_line_error(info, path)


@pytest.mark.parametrize("ndim", [0, 5])
def test_bad_ndim(tmp_path: Path, ndim: int) -> None:
    path = tmp_path / f"ndim{ndim}"
    path.write_bytes(_raw_idx(0x08, (1,) * ndim, b"\x00"))
    with pytest.raises(DataError, match=f"ndim={ndim}; expected 1 to 4") as info:
        read_idx(path)
    _assert_one_line_error(info, path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short-header"
    path.write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02")  # 3 dims announced, 1 given
    with pytest.raises(DataError, match="truncated IDX header") as info:
        read_idx(path)
    _assert_one_line_error(info, path)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="4-byte header"):
        read_idx(tiny)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_data(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"trunc{suffix}"
    payload = _raw_idx(0x08, (3, 28, 28), bytes(3 * 28 * 28 - 1))
    path.write_bytes(gzip.compress(payload) if suffix else payload)
    with pytest.raises(DataError, match="needs 2352 bytes after the header, found 2351") as info:
        read_idx(path)
    _assert_one_line_error(info, path)


def test_truncated_multibyte_data(tmp_path: Path) -> None:
    path = tmp_path / "floats"
    path.write_bytes(_raw_idx(0x0D, (4,), bytes(15)))  # 4 float32 need 16 bytes
    with pytest.raises(DataError, match="needs 16 bytes"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "trailing.gz"
    path.write_bytes(gzip.compress(_raw_idx(0x08, (2, 2), bytes(4) + b"xyz")))
    with pytest.raises(DataError, match="3 unexpected trailing bytes") as info:
        read_idx(path)
    _assert_one_line_error(info, path)


def test_write_rejects_unsupported_arrays(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot write dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match="0-D"):
        write_idx(tmp_path / "x", np.uint8(3))
    with pytest.raises(DataError, match="5-D"):
        write_idx(tmp_path / "x", np.zeros((1,) * 5, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


# --- image/label pairs ------------------------------------------------------------------------


def _pair(tmp_path: Path, n_images: int = 6, n_labels: int = 6, hw: tuple[int, int] = (28, 28)):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n_images, *hw), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_labels, dtype=np.uint8)
    write_idx(tmp_path / "imgs-idx3-ubyte.gz", images)
    write_idx(tmp_path / "lbls-idx1-ubyte", labels)
    return tmp_path / "imgs-idx3-ubyte.gz", tmp_path / "lbls-idx1-ubyte", images, labels


def test_images_labels_pair(tmp_path: Path) -> None:
    img_path, lbl_path, images, labels = _pair(tmp_path)
    split = read_idx_images_labels(img_path, lbl_path, expect_hw=(28, 28))
    assert split.images.shape == (6, 1, 28, 28)
    assert split.images.dtype == torch.uint8
    assert split.labels is not None and split.labels.dtype == torch.int64
    np.testing.assert_array_equal(split.images[:, 0].numpy(), images)
    np.testing.assert_array_equal(split.labels.numpy(), labels.astype(np.int64))
    assert len(split) == 6


def test_count_mismatch_names_both_files(tmp_path: Path) -> None:
    img_path, lbl_path, _, _ = _pair(tmp_path, n_images=6, n_labels=5)
    with pytest.raises(DataError) as info:
        read_idx_images_labels(img_path, lbl_path)
    message = str(info.value)
    assert img_path.name in message and lbl_path.name in message
    assert "6 images" in message and "5 labels" in message


def test_swapped_files(tmp_path: Path) -> None:
    img_path, lbl_path, _, _ = _pair(tmp_path)
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, H, W\)") as info:
        read_idx_images_labels(lbl_path, img_path)
    _assert_one_line_error(info, lbl_path)


def test_images_of_wrong_dtype(tmp_path: Path) -> None:
    _, lbl_path, _, _ = _pair(tmp_path)
    bad = tmp_path / "float-images"
    write_idx(bad, np.zeros((6, 28, 28), dtype=np.float32))
    with pytest.raises(DataError, match="got float32") as info:
        read_idx_images_labels(bad, lbl_path)
    _assert_one_line_error(info, bad)


def test_labels_of_wrong_shape(tmp_path: Path) -> None:
    img_path, _, _, _ = _pair(tmp_path)
    bad = tmp_path / "labels-2d"
    write_idx(bad, np.zeros((6, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 labels of shape \(N,\)") as info:
        read_idx_images_labels(img_path, bad)
    _assert_one_line_error(info, bad)


def test_expected_image_size(tmp_path: Path) -> None:
    img_path, lbl_path, _, _ = _pair(tmp_path, hw=(32, 28))
    with pytest.raises(DataError, match="expected 28x28 images, got 32x28") as info:
        read_idx_images_labels(img_path, lbl_path, expect_hw=(28, 28))
    _assert_one_line_error(info, img_path)
