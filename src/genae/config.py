"""Typed configuration: dataclasses filled from TOML files, CLI flags and JSON, with validation.

Every config is a dataclass whose field annotations are the schema. `from_mapping` rejects unknown
keys (suggesting the nearest valid one), coerces strings from the command line, checks types, and
then calls the dataclass's own `validate()` for ranges.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import textwrap
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from genae.errors import ConfigError

T = TypeVar("T")


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring (the string literal on the line after it, PEP 257), read
    from the class source over the MRO: base classes first, so a subclass's docstring wins."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        (class_def,) = ast.parse(textwrap.dedent(inspect.getsource(klass))).body
        body = class_def.body if isinstance(class_def, ast.ClassDef) else []
        for statement, following in zip(body, body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert `value` (from TOML, JSON or a CLI string) to `annotation`, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        return _coerce(value, inner[-1], where)
    if origin is tuple:
        item_type = args[0]
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {item_type.__name__}, got {value!r}")
        return tuple(_coerce(v, item_type, where) for v in value)
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: expected one of {choices}, got {value!r}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float):
        return _coerce_number(value, annotation, where)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {annotation!r}")


def _coerce_number(value: Any, kind: type, where: str) -> Any:
    """An int or float field's value: a number of that kind (an int where a float is expected),
    or a string that parses as one; never a bool."""
    expected = "an integer" if kind is int else "a number"
    accepted = (int,) if kind is int else (int, float)
    if isinstance(value, accepted) and not isinstance(value, bool):
        return kind(value)
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected {expected}, got {value!r}")


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str = "config") -> T:
    """Build dataclass `cls` from `data`; keys may use '-' or '_'."""
    types_by_name = field_types(cls)
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key not in types_by_name:
            raise ConfigError(f"{where}: unknown key '{raw_key}'{suggest(key, types_by_name)}")
        values[key] = _coerce(value, types_by_name[key], f"{where}.{key}")
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def to_mapping(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
        for f in dataclasses.fields(config)
    }


# The metadata key of a field whose default changed (`default_changed`).
SAVED_BEFORE = "saved_before"


def default_changed(default: Any, before: Any) -> Any:
    """A config field whose default changed after runs were saved with the old one: a saved
    config.json without the field was made under `before`, and is read so (`with_saved_defaults`)
    rather than silently becoming a different model."""
    return dataclasses.field(default=default, metadata={SAVED_BEFORE: before})


def with_saved_defaults(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config's values, with each `default_changed` field it lacks set to the default it
    was saved under."""
    present = {key.replace("-", "_") for key in data}
    filled = dict(data)
    for f in dataclasses.fields(cls):
        if SAVED_BEFORE in f.metadata and f.name not in present:
            filled[f.name] = f.metadata[SAVED_BEFORE]
    return filled


# The metadata key of a derived field (`derived`).
DERIVED = "derived"


def derived(default: Any) -> Any:
    """A config field the run fills in before the model is built, from its data or its helper
    networks (e.g. M2's data sizes, M1+M2's active M1 units): recorded in config.json, so a
    loaded or resumed run has the same value, and never a command-line flag."""
    return dataclasses.field(default=default, metadata={DERIVED: True})


def option_types(cls: type) -> dict[str, Any]:
    """`field_types` of the fields a user sets: every field but the derived ones."""
    derived_names = {f.name for f in dataclasses.fields(cls) if f.metadata.get(DERIVED)}
    return {k: v for k, v in field_types(cls).items() if k not in derived_names}


def require(condition: bool, where: str, expected: str, got: Any) -> None:
    """Raise a ConfigError of the standard shape unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{where}: expected {expected}, got {got!r}")


# How the labelled subset of a semi-supervised run is served (TrainConfig.labelled_schedule).
LABELLED_SCHEDULES = ("every-step", "spread")

# Factor on the base learning rate at training progress t in [0, 1).
LR_SCHEDULES: dict[str, Any] = {
    "constant": lambda t: 1.0,
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
}


@dataclass
class TrainConfig:
    """How to train: data, optimisation, logging and checkpointing."""

    dataset: str = "fashion-mnist"
    """Dataset name (see `genae datasets`), e.g. fashion-mnist, mnist, digits, celeba."""
    data_dir: str | None = None
    """Where to look for the dataset first; none: the cache ($GENAE_DATA_DIR or ~/.cache/genae)."""
    epochs: int = 10
    """Passes over the training set."""
    batch_size: int = 100
    """Training examples per optimisation step."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_schedule: str = "constant"
    """constant | cosine (per step, from lr down to 0 at the end)."""
    seed: int = 0
    """Seed of every random draw: initial weights, batch order, noise."""
    device: str = "cpu"
    """cpu or cuda[:N]."""
    binarize: bool = False
    """Binarise pixels: a fresh Bernoulli draw per batch (the test set once, fixed)."""
    val_size: int | None = None
    """Seeded stratified validation split of train; none: 5000 of 60k, else 10%; 0: no split."""
    max_train_examples: int = 0
    """0: all; else a seeded random subset (quick runs)."""
    attributes: tuple[str, ...] = ()
    """celeba/folder: attribute columns used as labels, comma-separated ("all": every one)."""
    image_size: int = 0
    """celeba/folder: side of the square images in pixels; 0: 64."""
    skip_bad_images: bool = False
    """celeba/folder: leave out unreadable images (else an error)."""
    labels: int | str = "all"
    """Semi-supervised models: "all", or N labelled examples (N/K per class)."""
    labelled_batch_size: int = 100
    """Labelled examples in each labelled minibatch when labels is a number."""
    # A training option, beside labelled_batch_size, not a model's: it is how the data layer
    # serves the labelled subset to any semi-supervised model (M2, aae-ss). A model sees only
    # each step's labelled minibatch and its weight (Batch.labelled_weight), which keeps an
    # objective summed over the data unbiased under either schedule.
    labelled_schedule: str = "every-step"
    """every-step (a random labelled minibatch each step) | spread (each label once an epoch)."""
    snapshot_epochs: tuple[int, ...] = (1, 5, 10)
    """Epochs after which a sample grid is saved (the last epoch always is), comma-separated."""
    checkpoint_every: int = 0
    """Steps between mid-epoch checkpoints; 0: end of epoch only."""
    log_every: int = 50
    """Steps between progress updates and finiteness checks."""
    tensorboard: str | None = None
    """TensorBoard event directory (metrics, step losses, sample grids); needs genae[tb]."""
    eval_batch_size: int = 1000
    """Examples per batch when computing the validation and test metrics."""
    progress: bool = True
    """Show a progress line while training."""
    precision: str = "fp32"
    """fp32 | bf16 | fp16 (autocast; fp16 adds a gradient scaler)."""
    compile: bool = False
    """torch.compile the model's training step."""
    stop_on_collapse: bool = True
    """Stop on a failed epoch (see the model's training_problem), rather than train on."""

    def validate(self) -> None:
        require(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        require(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        require(self.lr > 0, "lr", "a positive learning rate", self.lr)
        require(
            self.lr_schedule in LR_SCHEDULES,
            "lr_schedule",
            "one of " + ", ".join(repr(k) for k in LR_SCHEDULES),
            self.lr_schedule,
        )
        require(self.seed >= 0, "seed", "an integer >= 0", self.seed)
        require(
            self.device == "cpu" or self.device.startswith("cuda"),
            "device",
            "'cpu' or 'cuda[:N]'",
            self.device,
        )
        require(
            self.val_size is None or self.val_size >= 0,
            "val_size",
            "an integer >= 0 (or none: the default share)",
            self.val_size,
        )
        require(self.image_size >= 0, "image_size", "an integer >= 0", self.image_size)
        require(
            self.max_train_examples >= 0,
            "max_train_examples",
            "an integer >= 0",
            self.max_train_examples,
        )
        require(
            all(e >= 1 for e in self.snapshot_epochs),
            "snapshot_epochs",
            "epoch numbers >= 1",
            self.snapshot_epochs,
        )
        if isinstance(self.labels, str) and self.labels.strip().isdigit():
            self.labels = int(self.labels)
        require(
            self.labels == "all" or (isinstance(self.labels, int) and self.labels >= 0),
            "labels",
            "'all' or a number of labelled examples >= 0",
            self.labels,
        )
        require(
            self.labelled_batch_size >= 1,
            "labelled_batch_size",
            "an integer >= 1",
            self.labelled_batch_size,
        )
        require(
            self.labelled_schedule in LABELLED_SCHEDULES,
            "labelled_schedule",
            "one of " + ", ".join(repr(k) for k in LABELLED_SCHEDULES),
            self.labelled_schedule,
        )
        require(
            self.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0", self.checkpoint_every
        )
        require(
            self.precision in ("fp32", "bf16", "fp16"),
            "precision",
            "one of 'fp32', 'bf16', 'fp16'",
            self.precision,
        )
        require(self.log_every >= 1, "log_every", "an integer >= 1", self.log_every)
        require(
            self.eval_batch_size >= 1, "eval_batch_size", "an integer >= 1", self.eval_batch_size
        )


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML config file; errors name the file."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
