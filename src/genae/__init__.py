"""genae: generative autoencoders in PyTorch — train, evaluate, compare, and look at them.

This facade is lazy: `import genae` loads neither torch nor the models, and changes no global
state (threads, numerics). The names below are imported on first use. That keeps `genae.cli`
able to set the OpenMP environment before torch loads (genae/runtime.py), and keeps a host
program's numerics its own: `genae.fit` flushes denormals only while it trains.
"""

from __future__ import annotations

import importlib
from typing import Any

from genae.version import __version__

# public name -> the module that defines it
_LAZY_EXPORTS = {
    "fit": "genae.api",
    "evaluate_run": "genae.api",
    "load": "genae.api",
    "save": "genae.api",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genae' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_EXPORTS])
