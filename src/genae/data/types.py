"""Plain containers shared by every dataset source, the models and the trainer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from genae.errors import DataError, SealedSplitError


@dataclass(frozen=True)
class ImageArrays:
    """One split of an image dataset, held as raw uint8 pixels.

    images: uint8 tensor (N, C, H, W), values 0..255.
    labels: int64 tensor (N,) of class indices, a float tensor (N, A) of attributes, or None.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"images: expected a uint8 tensor of shape (N, C, H, W), got {self.images.dtype} "
                f"with shape {tuple(self.images.shape)}"
            )
        if self.labels is not None and self.labels.shape[0] != self.images.shape[0]:
            raise DataError(
                f"labels: expected {self.images.shape[0]} labels (one per image), "
                f"got {self.labels.shape[0]}"
            )

    def __len__(self) -> int:
        return self.images.shape[0]


class SealedSplit:
    """The test split, sealed: training and selection never see it. `unseal()` is its one way
    out, called only by a run's final evaluation and by `genae evaluate`; every other read
    (`images`, `labels`, `len`) raises SealedSplitError.

    source: the arrays (loaded with the training split, which is cheap), or a function that
    loads them on first unsealing.
    """

    def __init__(self, source: ImageArrays | Callable[[], ImageArrays]) -> None:
        self._source = source

    def unseal(self) -> ImageArrays:
        """The test split's arrays: for the final evaluation of a finished run only."""
        if not isinstance(self._source, ImageArrays):
            self._source = self._source()
        return self._source

    def _sealed(self, what: str) -> SealedSplitError:
        return SealedSplitError(
            f"test split: {what} read before the final evaluation; training and selection use "
            f"the validation split (only the final evaluation calls unseal())"
        )

    @property
    def images(self) -> torch.Tensor:
        raise self._sealed("images")

    @property
    def labels(self) -> torch.Tensor | None:
        raise self._sealed("labels")

    def __len__(self) -> int:
        raise self._sealed("size")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data to build its networks."""

    shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int = 0  # 0: no class labels
    attribute_names: tuple[str, ...] = ()  # non-empty: labels are +1/-1 attribute vectors
    class_names: tuple[str, ...] = ()

    @property
    def has_class_labels(self) -> bool:
        """Each example has one class (not attribute vectors, not unlabelled)."""
        return self.num_classes > 0 and not self.attribute_names

    @property
    def condition_dim(self) -> int:
        """Width of the condition vector a conditional model receives."""
        return len(self.attribute_names) or self.num_classes

    @property
    def numel(self) -> int:
        c, h, w = self.shape
        return c * h * w

    def to_json(self) -> dict:
        return {
            "shape": list(self.shape),
            "num_classes": self.num_classes,
            "attribute_names": list(self.attribute_names),
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_json(cls, data: dict) -> DataSpec:
        return cls(
            shape=tuple(data["shape"]),
            num_classes=int(data.get("num_classes", 0)),
            attribute_names=tuple(data.get("attribute_names", ())),
            class_names=tuple(data.get("class_names", ())),
        )


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset as found on disk: train and test splits plus where it came from. The test
    split is sealed (see `SealedSplit`); the validation split is carved out of `train` by the
    run that trains on it."""

    name: str
    train: ImageArrays
    test: SealedSplit
    source: str  # a path, or "embedded"
    class_names: tuple[str, ...] = ()
    attribute_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())  # messages to show the user (e.g. a fallback)

    @property
    def spec(self) -> DataSpec:
        c, h, w = self.train.images.shape[1:]
        labels = self.train.labels
        if self.attribute_names or labels is None:
            num_classes = 0
        else:
            num_classes = len(self.class_names) or int(labels.max().item()) + 1
        return DataSpec(
            shape=(int(c), int(h), int(w)),
            num_classes=num_classes,
            attribute_names=self.attribute_names,
            class_names=self.class_names,
        )


@dataclass
class Batch:
    """A minibatch on the training device.

    x: float images (B, C, H, W) in [0, 1].
    y: int64 class indices (B,), float +1/-1 attributes (B, A), or None.
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    # Semi-supervised training: `x` comes without labels (y is None) and a minibatch from the
    # labelled subset rides along, so a few labels are seen in every step.
    x_labelled: torch.Tensor | None = None
    y_labelled: torch.Tensor | None = None
    # What the labelled minibatch's terms are multiplied by in an objective summed over the data,
    # so that its expectation over an epoch's steps is the same whichever schedule served it:
    # 1 when one rides along every step; (steps per epoch) * (its size / labelled examples)
    # when each labelled example is served once an epoch (TrainConfig.labelled_schedule).
    labelled_weight: float = 1.0

    def __len__(self) -> int:
        return self.x.shape[0]

    def labelled_part(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(x, y) of the examples whose labels the model may use, or None."""
        if self.y is not None:
            return self.x, self.y
        if self.y_labelled is not None and len(self.y_labelled):
            return self.x_labelled, self.y_labelled
        return None
