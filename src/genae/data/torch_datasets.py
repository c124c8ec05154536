"""A torch `Dataset`, or a `DataLoader` over one, as a genae dataset.

`from_torch` reads a map-style dataset once, item by item, into the uint8 (N, C, H, W) arrays every
genae dataset is held as, so `genae.fit(data=...)` takes what a PyTorch user already has. Each
item is an image or an (image, label) pair:

- image: a tensor or numpy array (C, H, W) or (H, W) of floats in [0, 1] (what
  `torchvision.transforms.ToTensor` gives) or of uint8 0..255, or a PIL image (grayscale or RGB);
- label: an integer class index (a Python or numpy int, or a one-element integer tensor).

A `DataLoader` is read through its dataset, in index order: genae batches and shuffles by
itself, so the loader's batch size, sampler and collate_fn are not used. The test split is
`test_data` when given, else a share `test_fraction` of `data` held out by a permutation seeded
with `seed` (the same split on every run, whatever the run's seed; see `from_arrays`). Every
problem raises a one-line `DataError` naming the argument (`data` or `test_data`) and the item.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset

from genae.data.arrays import from_arrays
from genae.data.types import DatasetSplits
from genae.errors import DataError

TorchData = Dataset | DataLoader  # what `from_torch` reads

EXPECTED_IMAGE = (
    "a tensor or array (C, H, W) or (H, W) of floats in [0, 1] or of uint8, or a PIL image"
)


def from_torch(
    data: TorchData,
    test_data: TorchData | None = None,
    *,
    class_names: Sequence[str] = (),
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetSplits:
    """`data` (and `test_data`) read into genae's in-memory arrays; see the module docstring.

    class_names: one name per class index (e.g. torchvision's `dataset.classes`), for grid rows
    and reports. The dataset is named after the class of `data`'s dataset (e.g. "MNIST").
    """
    class_names = tuple(class_names)
    images, labels = read_items(data, "data", class_names)
    test_images = test_labels = None
    if test_data is not None:
        test_images, test_labels = read_items(test_data, "test_data", class_names)
        if test_images.shape[1:] != images.shape[1:]:
            raise DataError(
                f"test_data: images of shape {tuple(test_images.shape[1:])}, but data's are "
                f"{tuple(images.shape[1:])}; both must hold images of one size"
            )
        if (test_labels is None) != (labels is None):
            which = "data" if test_labels is None else "test_data"
            raise DataError(
                f"test_data: {which} has labels and the other has none; give (image, label) "
                f"pairs in both or in neither"
            )
    elif len(images) < 2:
        raise DataError(
            f"data: expected at least 2 items to hold out a test split, got {len(images)}; "
            f"pass test_data"
        )
    return from_arrays(
        images,
        labels,
        test_images=test_images,
        test_labels=test_labels,
        name=type(dataset_of(data, "data")).__name__,
        class_names=class_names,
        test_fraction=test_fraction,
        seed=seed,
    )


def dataset_of(source: object, arg: str) -> Dataset:
    """The map-style dataset `source` is, or that the DataLoader `source` reads."""
    dataset = source.dataset if isinstance(source, DataLoader) else source
    if isinstance(dataset, IterableDataset):
        raise DataError(
            f"{arg}: an IterableDataset cannot be read by index; pass a map-style Dataset "
            f"(with __len__ and __getitem__) or a DataLoader over one"
        )
    if not isinstance(dataset, Dataset):
        raise DataError(
            f"{arg}: expected a map-style torch Dataset of (image, label) pairs or a DataLoader "
            f"over one, got {type(source).__name__}"
        )
    return dataset


def read_items(
    source: TorchData, arg: str, class_names: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every item of `source`: uint8 images (N, C, H, W) and int64 labels (N,) or None."""
    dataset = dataset_of(source, arg)
    try:
        count = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise DataError(
            f"{arg}: the Dataset has no len(); genae reads a map-style Dataset with __len__ "
            f"and __getitem__"
        ) from None
    if count == 0:
        raise DataError(f"{arg}: the Dataset is empty")
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    labelled = False
    for index in range(count):
        item = dataset[index]
        where = f"{arg}: item {index}"
        if isinstance(item, (tuple, list)):
            if len(item) != 2:
                raise DataError(
                    f"{where} has {len(item)} parts; expected an image or an (image, label) pair"
                )
            image, label = item
        else:
            image, label = item, None
        pixels = image_pixels(image, where)
        if images is None:  # the first item sets the size and whether items carry labels
            images = np.empty((count, *pixels.shape), dtype=np.uint8)
            labelled = label is not None
            labels = np.empty(count, dtype=np.int64) if labelled else None
        elif pixels.shape != images.shape[1:]:
            raise DataError(
                f"{where}: image of shape {pixels.shape}, but item 0's is {images.shape[1:]}; "
                f"every image must have the same size (resize them in the Dataset's transform)"
            )
        if (label is not None) != labelled:
            first = "an (image, label) pair" if labelled else "an image without a label"
            raise DataError(f"{where}: {'no' if labelled else 'a'} label, but item 0 is {first}")
        images[index] = pixels
        if labels is not None:
            labels[index] = class_index(label, where, class_names)
    assert images is not None  # count >= 1
    return images, labels


def image_pixels(image: object, where: str) -> np.ndarray:
    """One image as uint8 (C, H, W)."""
    if isinstance(image, Image.Image):
        gray = image.mode in ("1", "L", "LA", "I", "I;16", "F")
        array = np.asarray(image.convert("L" if gray else "RGB"))
        if array.ndim == 3:  # PIL gives (H, W, C)
            array = array.transpose(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16
            tensor = tensor.float()
        array = tensor.numpy()
    elif isinstance(image, np.ndarray):
        array = image
    else:
        kind = type(image).__name__
        raise DataError(f"{where}: the image is a {kind}; expected {EXPECTED_IMAGE}")
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[2] in (1, 3, 4) and array.shape[0] > 4:
        raise DataError(
            f"{where}: image of shape {array.shape} looks channels-last (H, W, C); expected "
            f"(C, H, W) (ToTensor gives it, or .permute(2, 0, 1))"
        )
    elif array.ndim != 3:
        raise DataError(f"{where}: image of shape {array.shape}; expected {EXPECTED_IMAGE}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{where}: image of dtype {array.dtype}; expected {EXPECTED_IMAGE}")
    if not np.isfinite(array).all():
        raise DataError(f"{where}: the image holds NaN or infinity; expected floats in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"{where}: image values from {low:g} to {high:g}; expected floats in [0, 1] (leave "
            f"out a Normalize transform) or uint8 0..255"
        )
    return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)


def class_index(label: object, where: str, class_names: tuple[str, ...]) -> int:
    """One label as a class index >= 0 (below len(class_names) when names are given)."""
    value: object = label
    if isinstance(label, torch.Tensor):
        if label.numel() != 1 or label.is_floating_point() or label.dtype == torch.bool:
            raise DataError(
                f"{where}: label is a {label.dtype} tensor of shape {tuple(label.shape)}; "
                f"expected one integer class index"
            )
        value = int(label.item())
    elif isinstance(label, np.integer):
        value = int(label)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(
            f"{where}: label {label!r} is a {type(label).__name__}; expected an integer class "
            f"index (attribute vectors: use genae.data.sources.from_arrays)"
        )
    if value < 0:
        raise DataError(f"{where}: label {value}; expected a class index >= 0")
    if class_names and value >= len(class_names):
        raise DataError(
            f"{where}: label {value}; expected a class index below {len(class_names)} (the "
            f"number of class_names)"
        )
    return value
