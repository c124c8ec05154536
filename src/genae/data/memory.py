"""Datasets held as uint8 tensors on the training device.

Images of this size fit in memory many times over, so the hot path is a gather by index:
each epoch draws one seeded permutation and each batch is `images[idx]`, converted to float on
the device. No per-example `__getitem__`, no collate, no host-to-device copy per step.
"""

from __future__ import annotations

import torch

from genae.data.types import Batch, ImageArrays
from genae.errors import DataError


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator whose seed is derived from `parts` (e.g. run seed and epoch)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class TensorData:
    """An image split on a device, served as batches by index.

    binarize: draw pixel ~ Bernoulli(intensity) afresh for every batch (dynamic binarisation);
    `fixed_binarization_seed` instead binarises once, as is standard for a test set.
    """

    def __init__(
        self,
        arrays: ImageArrays,
        device: torch.device | str = "cpu",
        *,
        binarize: bool = False,
        fixed_binarization_seed: int | None = None,
    ) -> None:
        images = arrays.images
        if fixed_binarization_seed is not None:
            gen = seeded_generator(fixed_binarization_seed, 7)
            images = torch.bernoulli(images.float() / 255, generator=gen).to(torch.uint8) * 255
            binarize = False
        self.images = images.to(device)
        self.labels = arrays.labels.to(device) if arrays.labels is not None else None
        self.binarize = binarize
        self.labelled_index: torch.Tensor | None = None  # set by `use_labelled_subset`
        self.labelled_batch_size = 0

    def use_labelled_subset(self, index: torch.Tensor, batch_size: int) -> None:
        """Train semi-supervised: only examples in `index` keep their labels, and each training
        batch carries `batch_size` of them (all of them when there are fewer)."""
        self.labelled_index = index.to(self.device)
        self.labelled_batch_size = batch_size

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def epoch_order(self, seed: int, epoch: int) -> torch.Tensor:
        """The example order for one epoch: a function of (seed, epoch) only, so a resumed run
        visits exactly the examples an uninterrupted one would."""
        perm = torch.randperm(len(self), generator=seeded_generator(seed, epoch))
        return perm.to(self.device)

    def batch(self, index: torch.Tensor) -> Batch:
        x = self.images[index].float().div_(255.0)
        if self.binarize:
            x = torch.bernoulli(x)
        return Batch(x=x, y=self.labels[index] if self.labels is not None else None)

    def training_batch(self, index: torch.Tensor, seed: int, epoch: int, step: int) -> Batch:
        """The batch for one training step; with a labelled subset, `x` loses its labels and a
        labelled minibatch drawn by a (seed, epoch, step) generator rides along, so resumed runs
        draw the same labelled examples."""
        batch = self.batch(index)
        if self.labelled_index is None:
            return batch
        batch.y = None
        if len(self.labelled_index):
            gen = seeded_generator(seed, epoch, step, 17)
            pick = torch.randperm(len(self.labelled_index), generator=gen)
            labelled = self.batch(
                self.labelled_index[pick[: self.labelled_batch_size].to(self.device)]
            )
            batch.x_labelled, batch.y_labelled = labelled.x, labelled.y
        return batch

    def batches(self, batch_size: int):
        """Sequential batches (for evaluation)."""
        for start in range(0, len(self), batch_size):
            index = torch.arange(start, min(start + batch_size, len(self)), device=self.device)
            yield self.batch(index)


def random_subset(arrays: ImageArrays, n: int, seed: int) -> ImageArrays:
    """A seeded random subset of n examples (all of them when n >= len)."""
    if n <= 0 or n >= len(arrays):
        return arrays
    index = torch.randperm(len(arrays), generator=seeded_generator(seed, 11))[:n].sort().values
    labels = arrays.labels[index] if arrays.labels is not None else None
    return ImageArrays(arrays.images[index], labels)


def stratified_indices(labels: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """n indices, n / num_classes from each class, chosen by a seeded shuffle (sorted)."""
    if n % num_classes:
        raise DataError(f"labels: {n} is not divisible by the {num_classes} classes")
    per_class = n // num_classes
    gen = seeded_generator(seed, 13)
    chosen = []
    for k in range(num_classes):
        members = torch.nonzero(labels.cpu() == k).flatten()
        if len(members) < per_class:
            raise DataError(
                f"labels: asked for {per_class} examples of class {k}, the data has {len(members)}"
            )
        chosen.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(chosen).sort().values


def validation_split(
    arrays: ImageArrays, n: int, num_classes: int, seed: int
) -> tuple[ImageArrays, ImageArrays | None]:
    """(the rest, n validation examples) carved out of `arrays` by a seeded draw; stratified
    when the labels are class indices (each class gives its share of n, largest remainders
    first), a plain seeded draw otherwise. n == 0: (arrays, None)."""
    if n <= 0:
        return arrays, None
    if not 0 < n < len(arrays):
        raise DataError(f"val_size: expected fewer than {len(arrays)} examples, got {n}")
    gen = seeded_generator(seed, 19)
    labels = arrays.labels
    if labels is not None and labels.dim() == 1 and num_classes:
        members = [torch.nonzero(labels == k).flatten() for k in range(num_classes)]
        exact = [n * len(m) / len(arrays) for m in members]
        shares = [int(e) for e in exact]
        by_remainder = sorted(range(num_classes), key=lambda k: shares[k] - exact[k])
        for k in by_remainder[: n - sum(shares)]:
            shares[k] += 1
        picked = [m[torch.randperm(len(m), generator=gen)[:s]] for m, s in zip(members, shares)]
        val_index = torch.cat(picked)
    else:
        val_index = torch.randperm(len(arrays), generator=gen)[:n]
    in_val = torch.zeros(len(arrays), dtype=torch.bool)
    in_val[val_index] = True

    def take(mask: torch.Tensor) -> ImageArrays:
        return ImageArrays(arrays.images[mask], labels[mask] if labels is not None else None)

    return take(~in_val), take(in_val)
