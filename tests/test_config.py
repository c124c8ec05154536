"""The config layer: `from_mapping` coercion and checks, `validate()` ranges, `to_mapping`,
`read_toml`. CLI flags arrive as strings, TOML and JSON as typed values; both must end up as the
same typed dataclass, and every mistake as a one-line ConfigError that names the field."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from genae.config import (
    TrainConfig,
    field_docs,
    field_types,
    from_mapping,
    read_toml,
    suggest,
    to_mapping,
)
from genae.errors import ConfigError, GenaeError
from genae.metrics import MetricOptions
from genae.models import MODELS
from genae.models.dfcvae import DFCVAEConfig
from genae.models.vae import VAEConfig


def config_error(cls: type, data: dict[str, Any], where: str = "config") -> str:
    with pytest.raises(ConfigError) as info:
        from_mapping(cls, data, where=where)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- coercion of command-line strings ---------------------------------------------------------


def test_cli_strings_are_coerced() -> None:
    config = from_mapping(
        TrainConfig,
        {
            "epochs": "3",
            "batch_size": " 7 ",
            "lr": "1e-3",
            "seed": "0",
            "binarize": "true",
            "progress": "false",
            "data_dir": "none",
            "snapshot_epochs": "1,2",
            "device": "cuda:1",
            "dataset": "digits",
        },
    )
    assert config.epochs == 3 and type(config.epochs) is int
    assert config.batch_size == 7
    assert config.lr == 0.001 and type(config.lr) is float
    assert config.seed == 0
    assert config.binarize is True and config.progress is False
    assert config.data_dir is None
    assert config.snapshot_epochs == (1, 2)
    assert config.device == "cuda:1" and config.dataset == "digits"


def test_model_config_strings_are_coerced() -> None:
    config = from_mapping(
        VAEConfig,
        {"hidden": "500,500", "latent_dim": "8", "dropout": "0.25", "activation": "tanh"},
    )
    assert config.hidden == (500, 500) and isinstance(config.hidden, tuple)
    assert all(type(h) is int for h in config.hidden)
    assert config.latent_dim == 8 and config.dropout == 0.25 and config.activation == "tanh"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500", (500,)),
        ("500, 250", (500, 250)),
        ("64,32,", (64, 32)),
        ([64, 32], (64, 32)),
        ((16,), (16,)),
        (["8", "4"], (8, 4)),
    ],
)
def test_tuple_fields(value: Any, expected: tuple[int, ...]) -> None:
    assert from_mapping(VAEConfig, {"hidden": value}).hidden == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        (True, True),
        (False, False),
    ],
)
def test_booleans(value: Any, expected: bool) -> None:
    assert from_mapping(TrainConfig, {"binarize": value}).binarize is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", 1, 0, None, 1.0])
def test_bad_booleans(value: Any) -> None:
    message = config_error(TrainConfig, {"progress": value})
    assert message.startswith("config.progress:") and "true or false" in message


@pytest.mark.parametrize(("value", "expected"), [("none", None), ("None", None), ("", None)])
def test_none_for_optional(value: str, expected: None) -> None:
    assert from_mapping(TrainConfig, {"data_dir": value}).data_dir is expected


def test_optional_keeps_real_values() -> None:
    assert from_mapping(TrainConfig, {"data_dir": "/data/fm"}).data_dir == "/data/fm"
    assert from_mapping(TrainConfig, {"data_dir": None}).data_dir is None


def test_ints_widen_to_floats() -> None:
    config = from_mapping(TrainConfig, {"lr": 1})
    assert config.lr == 1.0 and type(config.lr) is float


def test_dashed_keys_are_accepted() -> None:
    config = from_mapping(TrainConfig, {"batch-size": "5", "max-train-examples": 10})
    assert config.batch_size == 5 and config.max_train_examples == 10


def test_empty_mapping_gives_defaults() -> None:
    assert from_mapping(TrainConfig, {}) == TrainConfig()
    assert from_mapping(VAEConfig, {}) == VAEConfig()


# --- type errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "data", "field", "fragment"),
    [
        (TrainConfig, {"epochs": True}, "epochs", "an integer"),
        (TrainConfig, {"epochs": False}, "epochs", "an integer"),
        (VAEConfig, {"latent_dim": True}, "latent_dim", "an integer"),
        (VAEConfig, {"hidden": [True, 32]}, "hidden", "an integer"),
        (VAEConfig, {"hidden": "true"}, "hidden", "an integer"),
        (TrainConfig, {"lr": True}, "lr", "a number"),
        (TrainConfig, {"epochs": 3.0}, "epochs", "an integer"),
        (TrainConfig, {"epochs": "3.5"}, "epochs", "an integer"),
        (TrainConfig, {"epochs": "three"}, "epochs", "'three'"),
        (TrainConfig, {"epochs": None}, "epochs", "an integer"),
        (TrainConfig, {"lr": "fast"}, "lr", "a number"),
        (TrainConfig, {"lr": [0.1]}, "lr", "a number"),
        (TrainConfig, {"dataset": 3}, "dataset", "a string"),
        (TrainConfig, {"data_dir": 3}, "data_dir", "a string"),
        (VAEConfig, {"hidden": 500}, "hidden", "a list of int"),
        (VAEConfig, {"hidden": {"a": 1}}, "hidden", "a list of int"),
        (VAEConfig, {"hidden": "500,x"}, "hidden", "'x'"),
        (VAEConfig, {"dropout": "half"}, "dropout", "a number"),
    ],
)
def test_type_errors_name_the_field(cls: type, data: dict, field: str, fragment: str) -> None:
    message = config_error(cls, data, where="cfg")
    assert message.startswith(f"cfg.{field}:"), message
    assert fragment in message, message


def test_errors_are_genae_errors() -> None:
    with pytest.raises(GenaeError):
        from_mapping(TrainConfig, {"epochs": "x"})


# --- unknown keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "key", "suggestion"),
    [
        (TrainConfig, "epoch", "epochs"),
        (TrainConfig, "batch-sise", "batch_size"),
        (TrainConfig, "learning_rate", None),
        (VAEConfig, "latnt_dim", "latent_dim"),
        (VAEConfig, "hiden", "hidden"),
        (VAEConfig, "epochs", None),  # a train key given to the model
    ],
)
def test_unknown_key(cls: type, key: str, suggestion: str | None) -> None:
    message = config_error(cls, {key: 1}, where="somewhere")
    assert message.startswith(f"somewhere: unknown key '{key}'"), message
    if suggestion is None:
        assert "did you mean" not in message
    else:
        assert f"(did you mean '{suggestion}'?)" in message


def test_suggest() -> None:
    assert suggest("fashion-mnst", ["mnist", "fashion-mnist"]) == " (did you mean 'fashion-mnist'?)"
    assert suggest("zzz", ["mnist", "fashion-mnist"]) == ""
    assert suggest("x", []) == ""


# --- validate(): ranges -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", -3),
        ("batch_size", 0),
        ("lr", 0),
        ("lr", -1e-3),
        ("lr", "nan"),
        ("seed", -1),
        ("device", "tpu"),
        ("device", "gpu"),
        ("device", ""),
        ("max_train_examples", -1),
        ("snapshot_epochs", [1, 0]),
        ("labels", "some"),
        ("labels", "-5"),
        ("labelled_batch_size", 0),
        ("checkpoint_every", -1),
        ("log_every", 0),
        ("eval_batch_size", 0),
    ],
)
def test_train_config_ranges(field: str, value: Any) -> None:
    message = config_error(TrainConfig, {field: value})
    assert message.startswith(f"{field}: expected "), message
    assert "got" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 1),
        ("batch_size", 1),
        ("lr", 1e-12),
        ("seed", 0),
        ("device", "cpu"),
        ("device", "cuda"),
        ("device", "cuda:3"),
        ("max_train_examples", 0),
        ("snapshot_epochs", []),
        ("snapshot_epochs", [1]),
        ("labels", "all"),
        ("labels", 100),
        ("labels", 0),
        ("labelled_batch_size", 1),
        ("checkpoint_every", 0),
        ("log_every", 1),
        ("eval_batch_size", 1),
    ],
)
def test_train_config_boundaries_are_valid(field: str, value: Any) -> None:
    config = from_mapping(TrainConfig, {field: value})
    expected = tuple(value) if isinstance(value, list) else value
    assert getattr(config, field) == expected


def test_labels_from_the_command_line_become_an_integer() -> None:
    assert from_mapping(TrainConfig, {"labels": "100"}).labels == 100
    assert from_mapping(TrainConfig, {"labels": "all"}).labels == "all"


def test_labels_accepts_a_toml_integer() -> None:
    assert from_mapping(TrainConfig, {"labels": 100}).labels == 100


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latent_dim", 0),
        ("latent_dim", -2),
        ("hidden", [32, 0]),
        ("hidden", [-1]),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("activation", "relux"),
        ("likelihood", "poisson"),
    ],
)
def test_vae_config_ranges(field: str, value: Any) -> None:
    message = config_error(VAEConfig, {field: value})
    assert message.startswith(f"{field}: expected "), message
    assert repr(value if not isinstance(value, list) else tuple(value)) in message


@pytest.mark.parametrize("std", [0, -1, "nan"])
def test_gaussian_decoder_std_must_be_positive(std: Any) -> None:
    message = config_error(VAEConfig, {"likelihood": "gaussian", "decoder_std": std})
    assert message.startswith("decoder_std:"), message


def test_vae_config_boundaries_are_valid() -> None:
    config = from_mapping(
        VAEConfig,
        {"latent_dim": 1, "hidden": [1], "dropout": 0.0, "likelihood": "gaussian"},
    )
    assert config.latent_dim == 1 and config.hidden == (1,) and config.likelihood == "gaussian"
    assert from_mapping(VAEConfig, {"dropout": 0.99}).dropout == 0.99


# --- to_mapping -------------------------------------------------------------------------------


def test_to_mapping_round_trip_through_json() -> None:
    train = from_mapping(
        TrainConfig,
        {
            "dataset": "digits",
            "data_dir": "/d",
            "epochs": 4,
            "lr": 2.5e-4,
            "binarize": True,
            "snapshot_epochs": [2, 4],
            "labels": "100",
        },
    )
    model = from_mapping(VAEConfig, {"hidden": [64, 32], "latent_dim": 3, "dropout": 0.1})
    for config in (train, model, TrainConfig(), VAEConfig()):
        mapping = to_mapping(config)
        assert list(mapping) == [f.name for f in dataclasses.fields(config)]
        assert not any(isinstance(v, tuple) for v in mapping.values())  # JSON-ready
        assert json.loads(json.dumps(mapping)) == mapping
        assert from_mapping(type(config), json.loads(json.dumps(mapping))) == config
    assert to_mapping(model)["hidden"] == [64, 32]
    assert to_mapping(train)["snapshot_epochs"] == [2, 4]


# --- read_toml --------------------------------------------------------------------------------


def test_read_toml(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[train]\nepochs = 3\nlr = 1e-3\n\n[model]\nhidden = [64, 32]\nname = "vae"\n')
    document = read_toml(path)
    assert document == {
        "train": {"epochs": 3, "lr": 0.001},
        "model": {"hidden": [64, 32], "name": "vae"},
    }
    # What read_toml returns is what from_mapping takes.
    assert from_mapping(TrainConfig, document["train"]).epochs == 3


def test_read_toml_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    assert str(info.value) == f"{path}: config file not found"


@pytest.mark.parametrize(
    "text",
    ["[train\nepochs = 3\n", "[train]\nepochs = \n", "[train]\nepochs = 3\nepochs = 4\n", "= 1\n"],
    ids=["unclosed-table", "missing-value", "duplicate-key", "missing-key"],
)
def test_read_toml_syntax_errors_name_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML (") and "\n" not in message


def test_read_toml_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_toml(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: cannot read config file")


def test_read_toml_non_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("# café\n[train]\nepochs = 3\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    assert str(info.value).startswith(f"{path}:")


# --- field documentation ----------------------------------------------------------------------


@dataclass
class _Documented:
    width: int = 3
    """How wide."""
    # a comment is not documentation
    depth: int = 2
    plain: str = ""
    """Spread
    over lines."""


@dataclass
class _Overriding(_Documented):
    width: int = 4
    """Wider."""
    extra: bool = False
    """Only here."""


def test_field_docs_reads_attribute_docstrings() -> None:
    assert field_docs(_Documented) == {"width": "How wide.", "plain": "Spread\nover lines."}


def test_field_docs_subclass_overrides_base() -> None:
    docs = field_docs(_Overriding)
    assert docs == {"width": "Wider.", "plain": "Spread\nover lines.", "extra": "Only here."}


def _all_configs() -> list[type]:
    return [TrainConfig, MetricOptions, *{cls.config_class: None for cls in MODELS.values()}]


@pytest.mark.parametrize("cls", _all_configs(), ids=lambda cls: cls.__name__)
def test_every_config_field_has_a_one_line_docstring(cls: type) -> None:
    docs = field_docs(cls)
    for name in field_types(cls):
        assert docs.get(name, "").strip(), f"{cls.__name__}.{name} has no docstring"
        assert "\n" not in docs[name], f"{cls.__name__}.{name}: docstring of more than one line"


def test_no_option_name_means_two_things() -> None:
    """A field name has one type across the trainer and every model (no `features` that is a
    feature-set name for one model and a width for another), and models never reuse a
    trainer option's name."""
    seen: dict[str, tuple[Any, str]] = {}
    trainer_fields = set(field_types(TrainConfig))
    for model, cls in MODELS.items():
        for name, annotation in field_types(cls.config_class).items():
            assert name not in trainer_fields, f"{model}.{name} is also a training option"
            first = seen.setdefault(name, (annotation, model))
            assert first[0] == annotation, (
                f"'{name}' is {first[0]} in {first[1]} but {annotation} in {model}"
            )
    assert "channels" not in seen and "features" not in {
        name for name, (annotation, _) in seen.items() if annotation is int
    }


def test_dfcvae_features_is_still_the_feature_set() -> None:
    assert from_mapping(DFCVAEConfig, {"features": "vgg19-345"}).features == "vgg19-345"
