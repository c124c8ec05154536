"""Deep Feature Consistent VAE (Hou et al. 2016): the convolutional VAE with the pixel
likelihood replaced by a reconstruction loss in the feature space of a fixed network phi.

    loss(x) = alpha * KL(q(z|x) || N(0, I))
            + beta  * sum_l 1/(2 C_l H_l W_l) ||phi_l(x) - phi_l(x_hat)||^2
            [+ gamma * (-log p(x|z))]                    x_hat = decoder mean at z ~ q(z|x)

The paper uses alpha = 1, beta = 0.5 and no pixel term; `pixel_weight` (gamma, default 0) adds
the convolutional VAE's pixel likelihood back, which anchors colours the feature network is blind
to. phi (`features`): VGG19 ImageNet layers relu1_1/2_1/3_1 (`vgg19-123`) or relu3_1/4_1/5_1
(`vgg19-345`), or `classifier`, a small CNN trained on the run's own data, for offline use and
grayscale data. phi is frozen, never in training mode, not part of the model's weights (a run
directory stores only the VAE), and built on first use, so loading a run to sample or evaluate
never needs it. Test metrics are the convolutional VAE's (neg_elbo under the pixel likelihood).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genae.config import require
from genae.data.types import DataSpec
from genae.models.base import Batch, LossTerms
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


@dataclass
class DFCVAEConfig(ConvVAEConfig):
    features: str = "vgg19-123"  # vgg19-123, vgg19-345 or classifier
    feature_weights: str | None = None  # VGG19 state dict (.pth/.safetensors) or classifier file
    kl_weight: float = 1.0  # alpha
    feature_weight: float = 0.5  # beta
    pixel_weight: float = 0.0  # gamma: weight of the pixel likelihood term; 0 as in the paper
    feature_epochs: int = 3  # classifier features: epochs of training on the dataset
    feature_seed: int = 7  # classifier features: its own seed, unlike the run's and the judge's

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
    def prepare(cls, model_config: dict, train_config: Any, data: Any, run_dir: Any) -> dict:
        """Find phi's weights before training starts, so a missing file fails at once. The
        classifier is trained (or taken from the cache) and copied into the run directory, whose
        config then names it: a resumed run uses exactly the same phi."""
        from genae.config import from_mapping
        from genae.training.features import (
            WEIGHTS_NAME,
            classifier_features,
            classifier_weights_file,
        )

        config = from_mapping(DFCVAEConfig, model_config, where=f"{cls.name} config")
        if config.features != "classifier":
            path = Path(config.feature_weights) if config.feature_weights else None
            vgg19_features(config.features, path, data.spec.shape)  # checks file and size
            return model_config
        source = classifier_weights_file(
            data,
            weights=config.feature_weights,
            seed=config.feature_seed,
            epochs=config.feature_epochs,
        )
        classifier_features(source, data.spec.shape[0])  # checks it fits the data
        if run_dir is not None:
            target = Path(run_dir) / WEIGHTS_NAME
            if source.resolve() != target.resolve():
                shutil.copyfile(source, target)
            source = target
        return {**model_config, "feature_weights": str(source)}

    def feature_network(self, device: torch.device) -> FeatureExtractor:
        """phi on `device`, built on first use."""
        if self._phi is None:
            cfg = self.config
            if cfg.features == "classifier":
                from genae.training.features import classifier_features

                self._phi = classifier_features(cfg.feature_weights, self.spec.shape[0])
            else:
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
