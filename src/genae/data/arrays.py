"""User arrays as a dataset: `from_arrays` validates and converts them like the built-in datasets,
so the rest of the library only ever sees uint8 (N, C, H, W) images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from genae.data.types import DatasetSplits, ImageArrays, SealedSplit
from genae.errors import DataError


def _to_numpy(value: object, arg: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16
            value = value.float()
        return value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())  # numpy's messages can span lines; errors are one
        raise DataError(f"{arg}: expected a numpy array or torch tensor ({reason})") from None
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
        test=SealedSplit(ImageArrays(torch.from_numpy(np.ascontiguousarray(test_x)), test_y)),
        source="arrays",
        class_names=class_names,
        attribute_names=attribute_names,
    )
