"""Deep Feature Consistent VAE (Hou et al. 2016): the convolutional VAE with the pixel
likelihood replaced by a reconstruction loss in the feature space of a fixed network phi.

    loss(x) = alpha * KL(q(z|x) || N(0, I))
            + beta  * sum_l 1/(2 C_l H_l W_l) ||phi_l(x) - phi_l(x_hat)||^2
            [+ gamma * (-log p(x|z))]                    x_hat = decoder mean at z ~ q(z|x)

The paper uses alpha = 1, beta = 0.5 and no pixel term; `pixel_weight` (gamma, default 0) adds
the convolutional VAE's pixel likelihood back, which anchors colours the feature network is blind
to. phi (`features`): VGG19 ImageNet layers relu1_1/2_1/3_1 (`vgg19-123`) or relu3_1/4_1/5_1
(`vgg19-345`), or `classifier`, the blocks of a registered `classifier` run trained on the run's
own data, for offline use and grayscale data. That run is a helper (`pretrained`): trained once
per dataset and config and cached (or the run `feature_weights` names), with a narrower network
and another seed than the judge's, so that a loss network never shares the judge's features (a
model could then lower FID by matching them rather than by making better images). phi is frozen,
never in training mode, not part of the model's weights (a run directory stores only the VAE),
and handed over or built only for training, so loading a run to sample or evaluate never needs
it. Test metrics are the convolutional VAE's (neg_elbo under the pixel likelihood).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genae.config import require
from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.models.base import Batch, GenerativeModel, LossTerms, Pretrained
from genae.models.classifier import Classifier
from genae.models.convvae import ConvVAE, ConvVAEConfig
from genae.models.registry import register
from genae.nn.blocks import reparameterize
from genae.nn.divergences import kl_normal_standard
from genae.nn.perceptual import (
    FEATURE_CHOICES,
    FeatureExtractor,
    feature_mse,
    vgg19_features,
)

FEATURE_ROLE = "dfc-features"  # the helper's name, and its cache entries' prefix
# The `classifier` config of the feature network: narrower than any judge's (see `RECIPES` in
# genae.metrics.judge), and trained with its own seed (`feature_seed`).
FEATURE_NETWORK = {"block_channels": [24, 48, 96], "feature_width": 128}


def classifier_features(network: GenerativeModel) -> FeatureExtractor:
    """The frozen outputs of each conv block of a trained `classifier` (inputs in [0, 1])."""
    if not isinstance(network, Classifier):
        raise ConfigError(f"features: expected a 'classifier' network, got '{network.name}'")
    blocks = len(network.body)
    return FeatureExtractor(
        network.body, range(blocks), in_channels=network.spec.shape[0], name="classifier features"
    )


@dataclass
class DFCVAEConfig(ConvVAEConfig):
    features: str = "vgg19-123"
    """Feature network phi: vgg19-123 | vgg19-345 (VGG19 relu layers) | classifier (own CNN)."""
    feature_weights: str | None = None
    """VGG19 .pth/.safetensors file or classifier run dir; none: torchvision's, or trained here."""
    kl_weight: float = 1.0
    """alpha: weight of the KL term."""
    feature_weight: float = 0.5
    """beta: weight of the feature-space reconstruction loss."""
    pixel_weight: float = 0.0
    """gamma: weight of the pixel likelihood term; 0 as in the paper."""
    feature_epochs: int = 3
    """classifier features: epochs of training on the dataset."""
    feature_seed: int = 7
    """classifier features: its own seed, unlike the run's and the judge's."""

    def validate(self) -> None:
        super().validate()
        require(
            self.features in FEATURE_CHOICES,
            "features",
            f"one of {', '.join(FEATURE_CHOICES)}",
            self.features,
        )
        for name in ("kl_weight", "feature_weight", "pixel_weight"):
            require(getattr(self, name) >= 0, name, "a number >= 0", getattr(self, name))
        require(self.feature_epochs >= 1, "feature_epochs", "an integer >= 1", self.feature_epochs)
        require(self.feature_seed >= 0, "feature_seed", "an integer >= 0", self.feature_seed)


@register
class DFCVAE(ConvVAE):
    """Deep feature consistent VAE (Hou et al. 2016): reconstructions compared in features."""

    name = "dfcvae"
    config_class = DFCVAEConfig

    def __init__(self, config: DFCVAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self._phi: FeatureExtractor | None = None  # not a submodule: see the module docstring

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_phi":  # keep phi out of state_dict(), parameters() and .to()
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @classmethod
    def pretrained(cls, config: DFCVAEConfig) -> tuple[Pretrained, ...]:
        """classifier features: a `classifier` run on the dataset, shared by every DFC-VAE with
        the same feature settings (or the run `feature_weights` names)."""
        if config.features != "classifier":
            return ()
        training = {
            "epochs": config.feature_epochs,
            "seed": config.feature_seed,
            "batch_size": 128,
            "snapshot_epochs": [],
        }
        return (
            Pretrained(
                FEATURE_ROLE,
                "classifier",
                FEATURE_NETWORK,
                training,
                shared=True,
                run_dir=config.feature_weights,
                option="feature_weights",
            ),
        )

    @classmethod
    def adopt_pretrained(
        cls, config: DFCVAEConfig, spec: DataSpec, helpers: Mapping[str, GenerativeModel]
    ) -> DFCVAEConfig:
        """Check phi before training starts, so a missing or unfit file fails at once."""
        if config.features != "classifier":
            path = Path(config.feature_weights) if config.feature_weights else None
            vgg19_features(config.features, path, spec.shape)  # checks file and size
            return config
        network = helpers.get(FEATURE_ROLE)
        if network is None:  # to be trained on this data: it needs its class labels
            if spec.attribute_names or not spec.num_classes:
                raise ConfigError(
                    "features: 'classifier' needs class labels, and this dataset has none; use "
                    "a vgg19 feature set or pass --feature-weights (a trained classifier run)"
                )
            return config
        if not isinstance(network, Classifier):
            raise ConfigError(
                f"feature_weights: {config.feature_weights} is a '{network.name}' run; the "
                f"classifier features need a 'classifier' run"
            )
        if network.spec.shape[0] != spec.shape[0]:
            raise ConfigError(
                f"feature_weights: {config.feature_weights} was trained on "
                f"{network.spec.shape[0]}-channel images, the data has {spec.shape[0]}"
            )
        return config

    def use_pretrained(self, helpers: Mapping[str, GenerativeModel]) -> None:
        if self.config.features == "classifier":
            self._phi = classifier_features(helpers[FEATURE_ROLE])

    def feature_network(self, device: torch.device) -> FeatureExtractor:
        """phi on `device`: VGG19 built on first use; the classifier as handed over."""
        if self._phi is None:
            cfg = self.config
            if cfg.features == "classifier":
                raise ConfigError(
                    "features: the classifier feature network is handed over when training "
                    "starts (genae.api.fit); outside it, call use_pretrained with a trained "
                    "'classifier' run"
                )
            path = Path(cfg.feature_weights) if cfg.feature_weights else None
            self._phi = vgg19_features(cfg.features, path, self.spec.shape)
        if self._phi.shift.device != device:
            self._phi = self._phi.to(device)
        return self._phi

    def loss(self, batch: Batch) -> LossTerms:
        cfg, x = self.config, batch.x
        mean, log_var = self.encode(x)
        z = reparameterize(mean, log_var)
        params = self.decode(z)
        x_hat = self.likelihood.mean(params).view_as(x)
        kl = kl_normal_standard(mean, log_var).mean()
        feature = feature_mse(self.feature_network(x.device), x, x_hat).mean()
        terms = {"kl": kl, "feature": feature}
        loss = cfg.kl_weight * kl + cfg.feature_weight * feature
        if cfg.pixel_weight > 0:
            pixel = -self.likelihood.log_prob(params, x.flatten(1)).mean()
            loss = loss + cfg.pixel_weight * pixel
            terms["pixel"] = pixel
        return {"loss": loss, **terms}
