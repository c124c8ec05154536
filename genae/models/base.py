"""The contract every genae model follows, so one trainer, one checkpoint format and one CLI serve
them all.

A model is an `nn.Module` built from `(config, spec)`. Training is a list of *phases*: each phase
has a name, the parameters its own optimiser updates, and a loss function of a batch. A VAE has
one phase; an adversarial autoencoder has three (reconstruction, discriminator, generator) that
run in sequence on every batch. `forward(batch, phase)` returns that phase's named loss terms, so a
DistributedDataParallel wrapper sees every phase as an ordinary forward call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genae.data.types import DataSpec
from genae.errors import ConfigError

LossTerms = dict[str, torch.Tensor]  # "loss" (what is minimised) plus named scalar terms


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

    def __len__(self) -> int:
        return self.x.shape[0]

    def labelled_part(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(x, y) of the examples whose labels the model may use, or None."""
        if self.y is not None:
            return self.x, self.y
        if self.y_labelled is not None and len(self.y_labelled):
            return self.x_labelled, self.y_labelled
        return None


@dataclass
class Phase:
    """One optimisation phase: its loss, and the parameters its optimiser owns."""

    name: str
    loss: Callable[[Batch], LossTerms]
    parameters: list[nn.Parameter]
    lr: float | None = None  # None: the run's learning rate
    betas: tuple[float, float] = (0.9, 0.999)


class GenerativeModel(nn.Module):
    """Base class of all genae models."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    needs_labels: ClassVar[bool] = False  # every training example must carry a label
    generative: ClassVar[bool] = True  # False: cannot sample (e.g. the domain classifier)
    semi_supervised: ClassVar[bool] = False  # can train with a labelled subset (--labels N)

    def __init__(self, config: Any, spec: DataSpec) -> None:
        super().__init__()
        if self.needs_labels and spec.condition_dim == 0:
            raise ConfigError(
                f"model '{self.name}' needs labelled data, but the dataset has no labels"
            )
        self.config = config
        self.spec = spec
        self._phases: dict[str, Phase] | None = None

    @classmethod
    def prepare(cls, model_config: dict, train_config: Any, data: Any, run_dir: Any) -> dict:
        """Before the model is built for a new run: resolve or train what it depends on (M1+M2
        trains its M1 here). Returns the model config to build with. Default: unchanged."""
        return model_config

    # --- training -----------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        """The phases run on every batch, in order. Default: one phase minimising `loss`."""
        return [Phase("loss", self.loss, list(self.parameters()))]

    def loss(self, batch: Batch) -> LossTerms:
        raise NotImplementedError

    def forward(self, batch: Batch, phase: str = "loss") -> LossTerms:
        if self._phases is None:
            self._phases = {p.name: p for p in self.phases()}
        return self._phases[phase].loss(batch)

    # --- evaluation and generation ------------------------------------------------------------
    def evaluate(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example test metrics, each a tensor of shape (B,); the trainer averages them."""
        raise NotImplementedError

    def training_problem(self, train_means: dict[str, float]) -> str | None:
        """A one-line diagnosis when the epoch's training averages ("phase.term" keys) show that
        training has failed in a way the model knows about (e.g. a collapsed adversarial game);
        None when all is well. The trainer stops on it. Default: nothing to check."""
        return None

    def dataset_metrics(self, data: Any, batch_size: int) -> dict[str, float]:
        """Test metrics that are not means over examples (e.g. clustering accuracy, which maps
        clusters to classes using the whole split), from a `TensorData` split. Default: none."""
        return {}

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent codes drawn from the model's prior."""
        raise NotImplementedError

    def generate(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Images (n, C, H, W) in [0, 1] decoded from latent codes (and labels, if conditional)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self,
        n: int,
        condition: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """n images in [0, 1]; `condition` is a label tensor shaped like `Batch.y`."""
        return self.generate(self.prior_sample(n, generator), condition)

    @property
    def is_conditional(self) -> bool:
        """True when generation takes a label or attribute vector."""
        return False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def condition_vector(self, y: torch.Tensor) -> torch.Tensor:
        """Class indices as one-hot rows, attribute vectors as they are (float)."""
        if self.spec.attribute_names:
            return y.float()
        return F.one_hot(y, self.spec.num_classes).float()

    def grid_labels(self, per_row: int) -> torch.Tensor | None:
        """Labels for a snapshot grid with one row per class (None: unconditional)."""
        if not self.is_conditional or not self.spec.num_classes:
            return None
        return torch.arange(self.spec.num_classes, device=self.device).repeat_interleave(per_row)


def parameters_of(*modules: nn.Module) -> list[nn.Parameter]:
    """The parameters of several sub-networks, for a phase's optimiser."""
    params: Iterable[nn.Parameter] = (p for m in modules for p in m.parameters())
    return list(params)
