"""The `classifier` feature network of DFC-VAE: trained on the run's own dataset, then cached.

The network (`genae.nn.perceptual.FeatureClassifier`) is trained with its own seed on the
training split's class labels, so it is a different network — architecture and seed — from the
domain classifier that judges FID. It is cached as safetensors at

    $GENAE_DATA_DIR/features/<dataset>-<key>.safetensors   (or ~/.cache/genae/features/...)

where <key> hashes the architecture, seed, epochs and the training images and labels: the same
data gives the same file (training is deterministic on the CPU), changed data a new one. A
trained file can also be given explicitly (`--feature-weights FILE`, or a directory holding
`feature_classifier.safetensors`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from genae.data.memory import seeded_generator
from genae.data.sources import cache_dir
from genae.data.types import DatasetSplits
from genae.errors import ConfigError
from genae.io import atomic_path
from genae.nn.perceptual import FeatureClassifier, FeatureExtractor

WEIGHTS_NAME = "feature_classifier.safetensors"
BATCH_SIZE = 128
LR = 1e-3


def _cache_key(data: DatasetSplits, seed: int, epochs: int) -> str:
    digest = hashlib.sha256()
    digest.update(f"{FeatureClassifier.ARCH}|{seed}|{epochs}|{data.spec.shape}".encode())
    digest.update(data.train.images.contiguous().numpy().tobytes())
    digest.update(data.train.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_path(data: DatasetSplits, seed: int, epochs: int) -> Path:
    return cache_dir("features") / f"{data.name}-{_cache_key(data, seed, epochs)}.safetensors"


def train_classifier(
    data: DatasetSplits, seed: int, epochs: int, device: str = "cpu"
) -> tuple[FeatureClassifier, float]:
    """Train the feature classifier on the training split; returns it and its test accuracy."""
    images, labels = data.train.images, data.train.labels
    channels, num_classes = data.spec.shape[0], data.spec.num_classes
    generator = seeded_generator(seed, 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = FeatureClassifier(channels, num_classes).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for index in order.split(BATCH_SIZE):
            x = images[index].to(device).float().div_(255.0)
            loss = F.cross_entropy(net(x), labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data.test), 1000):
            x = data.test.images[start : start + 1000].to(device).float().div_(255.0)
            y = data.test.labels[start : start + 1000].to(device)
            correct += (net(x).argmax(1) == y).sum().item()
    return net.cpu(), correct / max(1, len(data.test))


def _load(path: Path, channels: int) -> FeatureClassifier:
    from safetensors import safe_open

    from genae.nn.perceptual import read_state_dict

    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
    except Exception as exc:  # not a safetensors file at all
        raise ConfigError(f"feature_weights: {path} is not a safetensors file ({exc})") from None
    if meta.get("arch") != FeatureClassifier.ARCH:
        raise ConfigError(
            f"feature_weights: {path} is not a genae feature classifier (arch "
            f"{meta.get('arch')!r}, expected {FeatureClassifier.ARCH!r})"
        )
    stored_classes, stored_channels = int(meta["num_classes"]), int(meta["in_channels"])
    if stored_channels != channels:
        raise ConfigError(
            f"feature_weights: {path} was trained on {stored_channels}-channel images, the data "
            f"has {channels}"
        )
    net = FeatureClassifier(channels, stored_classes)
    try:
        net.load_state_dict(read_state_dict(path))
    except RuntimeError as exc:
        raise ConfigError(f"feature_weights: {path} does not fit ({exc})".split("\n")[0]) from None
    return net.eval()


def save_classifier(path: Path, net: FeatureClassifier, info: dict) -> None:
    from safetensors.torch import save_file

    meta = {
        "arch": FeatureClassifier.ARCH,
        "in_channels": str(net.in_channels),
        "num_classes": str(net.head.out_features),
        "info": json.dumps(info),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def classifier_weights_file(
    data: DatasetSplits, *, weights: str | None, seed: int, epochs: int
) -> Path:
    """The file holding the feature classifier for `data`: `weights` if given (a file, or a
    directory holding one), else the cached file, trained now when missing."""
    if weights:
        path = Path(weights).expanduser()
        if path.is_dir():
            path = path / WEIGHTS_NAME
        if not path.is_file():
            raise ConfigError(f"feature_weights: {path} not found")
        return path
    if data.train.labels is None or not data.spec.num_classes or data.spec.attribute_names:
        raise ConfigError(
            f"features: 'classifier' needs class labels, and dataset '{data.name}' has none; "
            f"use a vgg19 feature set or pass --feature-weights"
        )
    path = cached_path(data, seed, epochs)
    if path.is_file():
        return path
    print(
        f"genae: training the classifier feature network on {data.name} ({epochs} epochs, "
        f"seed {seed}); it is cached at {path}",
        file=sys.stderr,
    )
    net, accuracy = train_classifier(data, seed, epochs)
    print(f"genae: feature classifier test accuracy {accuracy:.4f}", file=sys.stderr)
    info = {"dataset": data.name, "seed": seed, "epochs": epochs, "test_accuracy": accuracy}
    save_classifier(path, net, info)
    return path


def classifier_features(path: Path | str | None, channels: int) -> FeatureExtractor:
    """The frozen features of the feature classifier stored at `path`."""
    if path is None:
        raise ConfigError(
            "feature_weights: the classifier feature network is trained when `fit` starts; "
            "outside it, pass feature_weights (a trained feature_classifier.safetensors)"
        )
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise ConfigError(f"feature_weights: {path} not found")
    return _load(path, channels).extractor()
