"""The contract every genae model follows, so one trainer, one checkpoint format and one CLI serve
them all.

A model is an `nn.Module` built from `(config, spec)`. Training is a list of *phases*: each phase
has a name, the parameters its own optimiser updates, and a loss function of a batch. A VAE has
one phase; an adversarial autoencoder has three (reconstruction, discriminator, generator) that
run in sequence on every batch. The trainer runs a phase through `genae.training.distributed.
PhaseRunner`, whose forward is the phase's loss, so a DistributedDataParallel wrapper sees every
phase as an ordinary forward call.

The model's own `forward` is what a PyTorch user expects of `model(x)`: an autoencoder returns its
reconstruction of images x, a classifier its logits (each family documents its forward).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genae.config import require
from genae.data.types import Batch, DataSpec, ImageArrays
from genae.errors import ConfigError
from genae.nn.blocks import standard_normal
from genae.nn.priors import Prior

LossTerms = dict[str, torch.Tensor]  # "loss" (what is minimised) plus named scalar terms


@dataclass(frozen=True)
class Pretrained:
    """A helper network a model needs trained before it (`GenerativeModel.pretrained`)."""

    role: str  # its name: its key in the helpers handed over, and its directory (RUN_DIR/<role>)
    model: str  # the registered model it is a run of
    model_config: Mapping[str, Any] = field(default_factory=dict)
    # Training options over the asking run's own (or over the defaults, when shared).
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    shared: bool = False  # one per dataset and config in the cache, not one per run
    run_dir: str | None = None  # a trained run the user named: used as it is, never trained
    option: str = ""  # the config field that names such a run, for error messages


@dataclass(frozen=True)
class TrainingSet:
    """The examples a run trains on, as a model's config is fitted to them
    (`GenerativeModel.adopt_training_set`)."""

    data: ImageArrays  # the training split as trained on
    labelled: int  # how many keep their labels (all of them unless the run sets --labels N)
    binarize: bool  # the run binarises its pixels
    seed: int  # the run's seed (for a fixed binarisation of `data`)


@dataclass(frozen=True)
class Progress:
    """Where training stands, handed to the model before every step (`GenerativeModel.at_step`).
    A function of the step alone, so a resumed run sees what an uninterrupted one did."""

    epoch: int  # the epoch in progress, from 1
    step: int  # steps of this epoch already done
    steps: int  # steps per epoch

    @property
    def epochs_done(self) -> float:
        return self.epoch - 1 + self.step / self.steps


def linear_warmup(progress: Progress | None, epochs: float) -> float:
    """The weight of a term warmed up linearly from 0 to 1 over the first `epochs` epochs of
    training (Sønderby et al. 2016); 1 with epochs 0, and outside the trainer (no progress)."""
    if epochs <= 0 or progress is None:
        return 1.0
    return min(1.0, progress.epochs_done / epochs)


@dataclass
class Phase:
    """One optimisation phase: its loss, and the parameters its optimiser owns."""

    name: str
    loss: Callable[[Batch], LossTerms]
    parameters: list[nn.Parameter]
    lr: float | None = None  # None: the run's learning rate
    betas: tuple[float, float] = (0.9, 0.999)
    # A network trained beside the model to measure it (M2's supervised baseline), not part of
    # its objective: the trainer reports the model's speed with and without its time.
    yardstick: bool = False


class GenerativeModel(nn.Module):
    """Base class of all genae models."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    needs_labels: ClassVar[bool] = False  # every training example must carry a label
    generative: ClassVar[bool] = True  # False: cannot sample (e.g. the domain classifier)
    semi_supervised: ClassVar[bool] = False  # can train with a labelled subset (--labels N)
    # The metrics.jsonl keys a user watches during training, most important first; the epoch
    # line shows as many as fit in 120 characters. Empty: each phase's loss, then val_ metrics.
    console_metrics: ClassVar[tuple[str, ...]] = ()
    # Training options (TrainConfig fields) whose best value for this model, chosen on
    # validation, is not TrainConfig's own default. A new run takes them under what its caller
    # set, so that `genae train MODEL` with no flags trains with the recipe the README reports;
    # an explicit value (a flag, an experiment's [train], a full TrainConfig) wins, and a
    # resumed run keeps what it saved.
    training_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, config: Any, spec: DataSpec) -> None:
        super().__init__()
        if self.needs_labels and spec.condition_dim == 0:
            raise ConfigError(
                f"model '{self.name}' needs labelled data, but the dataset has no labels"
            )
        self.config = config
        self.spec = spec
        self.progress: Progress | None = None  # set by the trainer (`at_step`)

    # --- helper networks, trained before the model (see `Pretrained`) ------------------------
    @classmethod
    def pretrained(cls, config: Any) -> tuple[Pretrained, ...]:
        """The helper networks this model needs trained first (M1+M2: its M1). The API trains
        or loads each and hands it over through `adopt_pretrained` and `use_pretrained`; a
        model never reads a run directory itself. Default: none."""
        return ()

    @classmethod
    def resolve_for_data(cls, config: Any, spec: DataSpec) -> Any:
        """`config` with the defaults that depend on the data (a field left at none or auto,
        e.g. a term that only applies to class labels) made concrete, so that config.json
        records the model as it was built and a later change of default cannot alter a saved
        run. Default: `config` unchanged."""
        return config

    @classmethod
    def adopt_pretrained(
        cls, config: Any, spec: DataSpec, helpers: Mapping[str, GenerativeModel]
    ) -> Any:
        """`config` fitted to the helpers that exist before the model is built (by role; a run
        the user named, or a cached one): check that each is usable and take from it what the
        architecture needs. Helpers trained later are trained from the config as it is.
        Default: `config` unchanged."""
        return config

    def use_pretrained(self, helpers: Mapping[str, GenerativeModel]) -> None:
        """Take the trained helpers (by role, in eval mode) before training starts. Default:
        nothing to take."""

    # --- the data a run trains on -------------------------------------------------------------
    @classmethod
    def adopt_training_set(
        cls, config: Any, train: TrainingSet, helpers: Mapping[str, GenerativeModel]
    ) -> Any:
        """`config` with its derived fields (`genae.config.derived`) filled in from the examples
        the run trains on and the helpers trained so far: what an objective weights by (M2's
        data sizes), what a helper makes of the data (M1+M2's active M1 units). The run calls
        it before building the model and again once its own helpers are trained; on a resume
        it gets the same data, so a derived field comes out as config.json has it. Default:
        `config` unchanged."""
        return config

    # --- training -----------------------------------------------------------------------------
    def at_step(self, progress: Progress) -> None:
        """Called by the trainer before every training step: a model whose loss changes as
        training goes (a warm-up, an occasional diagnostic) reads `self.progress`."""
        self.progress = progress

    def phases(self) -> list[Phase]:
        """The phases run on every batch, in order. Default: one phase minimising `loss`."""
        return [Phase("loss", self.loss, list(self.parameters()))]

    def loss(self, batch: Batch) -> LossTerms:
        raise NotImplementedError

    # --- model(x) ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """`model(x)`: images x (B, C, H, W) in [0, 1] (with labels y, for a model that reads
        them) to what the model computes for them, differentiably: an autoencoder's
        reconstructions (B, C, H, W) in [0, 1], a classifier's logits (B, K). Training losses
        are `loss(batch)` and the phases, not this."""
        raise NotImplementedError(f"model '{self.name}' does not define forward")

    # --- evaluation and generation ------------------------------------------------------------
    def evaluate(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example test metrics, each a tensor of shape (B,); the trainer averages them."""
        raise NotImplementedError

    def training_problem(self, train_means: dict[str, float]) -> str | None:
        """A one-line diagnosis when the epoch's training averages ("phase.term" keys) show that
        training has failed in a way the model knows about (e.g. a collapsed adversarial game);
        None when all is well. The trainer stops on it. Default: nothing to check."""
        return None

    def result_problem(self, metrics: dict[str, float]) -> str | None:
        """A one-line reason why a trained model whose evaluation gave `metrics` (its own
        per-example means, unprefixed) is a failed run rather than a result (e.g. a generator
        that ignores its code); None when it is a result. Reports and claims show such a run as
        collapsed. Default: nothing to check."""
        return None

    def dataset_metrics(self, data: Any, batch_size: int, train: Any = None) -> dict[str, float]:
        """Metrics that are not means over examples (e.g. clustering accuracy, which maps
        clusters to classes using the whole split), of a validation or test `TensorData` split.
        train: the training split (a `TensorData`, or None), for baselines fit on training data
        and scored on `data`. Default: none."""
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
    def categories_are_classes(self) -> bool:
        """Whether condition (or category) k of its samples and grids is the dataset's class k.
        False where the model found its categories itself: a clustering model's, or M2's with
        no labels, whose k says nothing about which class it holds."""
        return not (isinstance(self, Categories) and not self.semi_supervised)

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


# --- optional abilities -------------------------------------------------------------------------
# What a model can do beyond the contract above is declared by inheriting one of these, and a
# caller asks with isinstance (never hasattr): a model that declares an ability but lacks one of
# its methods cannot be instantiated, and a typo cannot silently turn an ability off.


class LatentCodes(ABC):
    """Encodes images to one latent vector each: the VAE family (posterior means), adversarial
    autoencoders (the code, or the style z of a categorical one) and the CAAE."""

    @property
    @abstractmethod
    def latent_dim(self) -> int:
        """Width d of the codes."""

    @abstractmethod
    def latent_codes(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic codes (B, d) of images x (B, C, H, W) in [0, 1], as in eval mode (no
        sampling, no input noise). `y`: the labels, for an encoder that reads them (CVAE)."""


class LatentPrior(ABC):
    """Matches its codes to an explicit prior of `genae.nn.priors` (divided into label regions),
    which a picture of the codes can draw underneath them."""

    @property
    @abstractmethod
    def latent_prior(self) -> Prior:
        """The prior over codes."""


class Categories(ABC):
    """Sorts images into `num_categories` categories of its own: clusters, or the classes of a
    semi-supervised model; a category need not be the class of the same index."""

    num_categories: int

    @abstractmethod
    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable category (B,) of each image."""


class TemperedPrior(LatentCodes):
    """Draws its codes from a diagonal Gaussian prior, N(0, I) or a learned p(z|y) given the
    condition, as z = mean + T * std * eps with eps ~ N(0, I): the temperature T scales the
    spread (1: the prior itself, 0: its mean). `prior_sample(n, generator, condition,
    temperature)` and `sample(n, condition, generator, temperature)` take both.

    The mechanics live here once; a model sets `prior_net`: None for N(0, I), or a network from
    condition vectors (`GenerativeModel.condition_vector`) to the prior's mean and log-variance.
    A model lists it before GenerativeModel, whose unconditional `prior_sample` it replaces.
    """

    prior_net: nn.Module | None

    @property
    def prior_kind(self) -> str:
        """What the codes are drawn from, as a metric records it."""
        return "standard N(0, I)" if self.prior_net is None else "learned p(z|y)"

    def prior_params(self, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Mean and log-variance of p(z|c) for condition vectors c; None under N(0, I), which
        needs no condition."""
        if self.prior_net is None:
            return None
        if c is None:
            raise ValueError("the learned prior p(z|y) needs a label for every code")
        return self.prior_net(c)

    def prior_for_labels(
        self, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`prior_params` for labels shaped like `Batch.y`."""
        if condition is None or self.prior_net is None:  # N(0, I) reads no labels
            return self.prior_params(None)  # None, or the learned prior's missing-label error
        return self.prior_params(self.condition_vector(condition))  # type: ignore[attr-defined]

    def prior_codes(
        self, eps: torch.Tensor, condition: torch.Tensor | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Codes (n, d) from standard-normal noise eps (n, d) and, for a prior that depends on
        the condition, labels shaped like `Batch.y` (n of them): the same eps under different
        labels gives each label's code of the same quantile."""
        require_temperature(temperature)
        prior = self.prior_for_labels(condition)
        if prior is None:
            return eps if temperature == 1.0 else eps * temperature
        mean, log_var = prior
        return torch.addcmul(mean, eps, temperature * torch.exp(0.5 * log_var))

    def prior_sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        condition: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """n codes from the prior at a temperature (given n labels, for a learned p(z|y))."""
        device = self.device  # type: ignore[attr-defined]
        eps = standard_normal((n, self.latent_dim), generator, device)
        return self.prior_codes(eps, condition, temperature)


def require_temperature(temperature: Any, where: str = "temperature") -> None:
    """A sampling temperature is a finite number >= 0."""
    number = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    require(
        number and math.isfinite(temperature) and temperature >= 0,
        where,
        "a number >= 0 (1: the prior itself, 0: its mean)",
        temperature,
    )


def check_temperature(
    model: GenerativeModel, temperature: float, where: str = "temperature"
) -> None:
    """Only a Gaussian prior (`TemperedPrior`) can be sampled at a temperature other than 1.
    where: how the message names the setting (an API argument or a CLI flag)."""
    if temperature != 1.0 and not isinstance(model, TemperedPrior):
        raise ConfigError(
            f"{where}: model '{model.name}' has no Gaussian prior to temper; expected 1, "
            f"got {temperature}"
        )


@torch.no_grad()
def tempered_sample(
    model: GenerativeModel,
    n: int,
    condition: torch.Tensor | None,
    generator: torch.Generator | None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """`model.sample`, at `temperature` for a model with a Gaussian prior (given the labels,
    for a learned p(z|y)); any other model takes 1 only."""
    check_temperature(model, temperature)
    if isinstance(model, TemperedPrior):
        return model.sample(n, condition, generator=generator, temperature=temperature)
    return model.sample(n, condition, generator=generator)


class Reconstructs(ABC):
    """Maps an image back to an image through its latent."""

    @abstractmethod
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstructions of images x (with their labels y, for a conditional model)."""


class Relabels(ABC):
    """Re-generates an image under another label, keeping its code (the CAAE)."""

    @abstractmethod
    def relabel(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images x re-generated under labels y (class indices or attribute vectors)."""


class LogWeights(ABC):
    """Has a tractable posterior and prior, so importance weights can be computed."""

    @abstractmethod
    def log_weights(self, batch: Batch, k: int) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) of k posterior samples per example, (B, k)."""
