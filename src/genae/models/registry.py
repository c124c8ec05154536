"""Model registry: model classes register themselves by name; nothing dispatches on strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genae.config import from_mapping, suggest
from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.models.base import GenerativeModel

MODELS: dict[str, type[GenerativeModel]] = {}


def register(cls: type[GenerativeModel]) -> type[GenerativeModel]:
    """Class decorator: make `cls` available under `cls.name`."""
    MODELS[cls.name] = cls
    return cls


def model_class(name: str) -> type[GenerativeModel]:
    if name not in MODELS:
        raise ConfigError(
            f"model: unknown model '{name}'{suggest(name, MODELS)}; available: {', '.join(MODELS)}"
        )
    return MODELS[name]


def build_model(name: str, config: Mapping[str, Any], spec: DataSpec) -> GenerativeModel:
    """Instantiate model `name` from a plain mapping of its config fields."""
    cls = model_class(name)
    return cls(from_mapping(cls.config_class, config, where=f"{name} config"), spec)
