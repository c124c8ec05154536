"""Checkpoints as one safetensors file: weights, optimiser states and RNG states as tensors, and
the rest of the training state as JSON in the file's metadata.

One file means one atomic rename, so a checkpoint is either the previous one or the complete new
one. Nothing is unpickled on load: safetensors holds only tensors, the metadata only JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from genae.errors import CheckpointError
from genae.io import atomic_path
from genae.version import __version__

FORMAT = "genae-checkpoint-1"


def save_weights(path: Path, module: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """The module's state dict as safetensors, written atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_weights(path: Path, module: nn.Module) -> None:
    """Load safetensors weights into `module`; names and shapes must match exactly."""
    tensors = read_tensors(path)
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit this model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise CheckpointError(
                f"{path}: weight '{key}' has shape {tuple(value.shape)}, "
                f"the model expects {tuple(own[key].shape)}"
            )
    module.load_state_dict(tensors)


def optimizer_tensors(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimiser state dict into tensors and JSON-ready values."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{name}.{param_id}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(
    name: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            param_id, field = key[len(prefix) :].split(".", 1)
            state.setdefault(int(param_id), {})[field] = value
    for key, value in meta["scalars"].items():
        param_id, field = key.split(".", 1)
        state.setdefault(int(param_id), {})[field] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    match_parameter_layouts(optimizer)


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor its parameter's memory layout. Checkpoints hold
    contiguous tensors, and load_state_dict keeps that layout; the fused Adam kernel walks a
    parameter, its gradient and its moments as one flat array each, so a channels_last weight
    beside contiguous moments would be updated with another element's moments."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            param_state = optimizer.state.get(parameter, {})
            for key, value in param_state.items():
                if torch.is_tensor(value) and value.shape == parameter.shape:
                    param_state[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Everything needed to continue a run bit for bit, in one atomically written file."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    optim_meta = {}
    for name, optimizer in optimizers.items():
        opt_tensors, optim_meta[name] = optimizer_tensors(name, optimizer)
        tensors.update(opt_tensors)
    tensors.update(rng_tensors())
    for key, value in (extra or {}).items():
        tensors[f"extra.{key}"] = value.detach().contiguous().cpu()
    meta = {
        "format": FORMAT,
        "genae_version": __version__,
        "state": state,
        "optimizers": optim_meta,
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"genae": json.dumps(meta)})


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The checkpoint's tensors and its JSON metadata (state and optimiser descriptions)."""
    tensors = read_tensors(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})["genae"])
    except (KeyError, json.JSONDecodeError, SafetensorError):
        raise CheckpointError(
            f"{path}: not a genae checkpoint (metadata missing or foreign)"
        ) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format '{meta.get('format')}' (genae "
            f"{meta.get('genae_version', '?')}); this genae reads '{FORMAT}'"
        )
    return tensors, meta


def apply_checkpoint(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    path: Path,
) -> dict[str, torch.Tensor]:
    """Restore model, optimisers and RNG from a loaded checkpoint; returns the `extra` tensors."""
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    own = model.state_dict()
    if set(weights) != set(own) or any(weights[k].shape != own[k].shape for k in own):
        raise CheckpointError(f"{path}: checkpoint is from a different model or configuration")
    model.load_state_dict(weights)
    if set(meta["optimizers"]) != set(optimizers):
        raise CheckpointError(
            f"{path}: checkpoint optimisers {sorted(meta['optimizers'])} do "
            f"not match this model's phases {sorted(optimizers)}"
        )
    for name, optimizer in optimizers.items():
        restore_optimizer(name, optimizer, tensors, meta["optimizers"][name])
    restore_rng(tensors)
    return {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
