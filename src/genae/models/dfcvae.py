"""Deep Feature Consistent VAE (Hou et al. 2016): the convolutional VAE with the pixel
likelihood replaced by a reconstruction loss in the feature space of a fixed network phi.

What is computed, per example, averaged over the minibatch (x_hat = decoder mean at z ~ q(z|x)):

    loss(x) = alpha * KL(q(z|x) || N(0, I))                          [nats, summed over z's dims]
            + beta  * sum_l ||phi_l(x) - phi_l(x_hat)||^2 / (2 s_l)
            [+ gamma * (-log p(x|z))]                                [nats, the conv VAE's pixels]

    s_l = mean over the minibatch j of ||phi_l(x_j)||^2             (feature_loss = "normalized")

s_l is a constant of the batch (targets carry no gradient). Each layer's term is a relative
squared error: 1/2 when phi_l(x_hat) is 0, 0 for a perfect reconstruction (summed over three
layers, 0.5-1.1 for the mean image in the measurements below); it does not change when phi_l is
multiplied by a constant, nor with the layer's size C_l H_l W_l, nor with the input scaling of
the feature network, so one beta serves every feature set and image size. The paper's term
(Hou et al. 2016) is

    L_rec^l = 1/(2 C_l H_l W_l) ||phi_l(x) - phi_l(x_hat)||^2
    loss    = alpha KL + beta sum_l L_rec^l

with alpha = 1, beta = 0.5; ours is L_rec^l / m_l, with m_l = s_l / (C_l H_l W_l) the layer's
mean squared target activation: the paper's formula with each layer's activations measured in
units of their RMS. `feature_loss = "raw"` keeps the paper's L_rec^l as is (m_l = 1).

Deviation from the paper's scales, and why beta is not 0.5. The raw L_rec^l is in the squared
units of phi's activations, so beta is tied to the feature network and its input scaling. The
authors' code (houxianxu/DFC-VAE, main_cvae_content.lua) feeds Caffe's VGG19 BGR images in
[0, 255] minus the mean pixel (no division by a std): activations roughly 255 * 0.226 = 58 times
torchvision's, squared errors ~3,300 times. It also adds 0.5 * MSE per layer (a mean over the
batch as well as the elements) to a KL summed over the batch (40 images), i.e. per example
KL + (1/40) sum_l L_rec^l. Net, roughly a raw beta of 3,300 / 40 = 80 on torchvision-scaled features
(biases make the factor inexact), 160 times beta = 0.5; here, with the raw loss, beta = 0.5
collapses the posterior (Fashion-MNIST, classifier features: KL 0.02 nats, FID 519 after 10
epochs). In normalised units the authors' effective beta per layer is m_l(Caffe) / 40, which
needs the ImageNet weights to evaluate; we do not claim to match it.

Default beta = 100 (`DEFAULT_FEATURE_WEIGHT`), chosen on validation data only (never the test
split): 2 epochs on 6,000 Fashion-MNIST examples, 1,000 validation examples, latent 100.
Classifier features, beta 30 / 100 / 300: val KL 2.7 / 10.0 / 21.3 nats, code sensitivity (mean
|pixel change| when codes are shuffled) 0.17 / 0.23 / 0.27, FID of 1,000 samples against the
validation images under the judge pinned at commit fc795b2: 520 / 459 / 474; raw loss, beta 0.5:
KL 0.02, code sensitivity 0.0004, FID 867 (collapsed). With beta 100 and torchvision's VGG19
layout under random weights (no ImageNet weights offline): vgg19-123 / vgg19-345 on 28x28 grey
(3,000 examples) KL 7.3 / 3.1 nats, code sensitivity 0.21 / 0.20; on a 64x64 RGB synthetic set
(Fashion-MNIST upsampled and coloured, 600 examples, 3 epochs) KL 13.0 / 7.0, code sensitivity
0.25 / 0.20; none collapsed. For the classifier features m_l is 0.7-1.1, so the normalised beta
= 100 is close to the raw beta = 120 of the vae-vs-dfc-fashion experiment.

phi (`features`): VGG19 ImageNet layers relu1_1/2_1/3_1 (`vgg19-123`) or relu3_1/4_1/5_1
(`vgg19-345`), with inputs scaled as torchvision's weights were trained (RGB in [0, 1], minus the
ImageNet mean (0.485, 0.456, 0.406), over the std (0.229, 0.224, 0.225); grey images repeated to
three channels: see `genae.nn.perceptual`), or `classifier`, the blocks of a registered
`classifier` run trained on the run's own data (inputs in [0, 1], as it was trained), for offline
use and grayscale data. That run is a helper (`pretrained`): trained once per dataset and config
and cached (or the run `feature_weights` names), with a narrower network and another seed than
the judge's, so that a loss network never shares the judge's features (a model could then lower
FID by matching them rather than by making better images). phi is frozen, never in training
mode, not part of the model's weights (a run directory stores only the VAE), and handed over or
built only for training, so loading a run to sample or evaluate never needs it. `pixel_weight`
(gamma, default 0 as in the paper) adds the convolutional VAE's pixel likelihood back, which
anchors colours the feature network is blind to. Test metrics are the convolutional VAE's
(neg_elbo under the pixel likelihood).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from genae.config import default_changed, require
from genae.data.types import DataSpec
from genae.errors import ConfigError
from genae.models.base import Batch, GenerativeModel, LossTerms, Pretrained
from genae.models.classifier import Classifier
from genae.models.convvae import ConvVAE, ConvVAEConfig
from genae.models.registry import register
from genae.nn.blocks import reparameterize
from genae.nn.perceptual import (
    FEATURE_CHOICES,
    FEATURE_LOSSES,
    FeatureExtractor,
    feature_loss,
    vgg19_features,
)

FEATURE_ROLE = "dfc-features"  # the helper's name, and its cache entries' prefix
# The `classifier` config of the feature network: narrower than any judge's (see `RECIPES` in
# genae.metrics.judge), and trained with its own seed (`feature_seed`).
FEATURE_NETWORK = {"block_channels": [24, 48, 96], "feature_width": 128}
# beta of the normalised feature loss, chosen on validation data (see the module docstring).
DEFAULT_FEATURE_WEIGHT = 100.0


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
    feature_weight: float = default_changed(DEFAULT_FEATURE_WEIGHT, before=0.5)
    """beta: weight of the feature loss beside the KL (nats per example); not the paper's scale."""
    feature_loss: str = default_changed("normalized", before="raw")
    """normalized (each layer's error relative to its targets' mean square) | raw (the paper's)."""
    pixel_weight: float = 0.0
    """gamma: weight of the pixel likelihood term; 0 as in the paper."""
    feature_epochs: int = 3
    """classifier features: epochs of training on the dataset."""
    feature_seed: int = 7
    """classifier features: its own seed, unlike the run's and the judge's."""

    # Not measured beside the feature loss yet, so a conditional DFC-VAE keeps the plain
    # objective unless a weight is given.
    DEFAULT_LABEL_CONSISTENCY_WEIGHT: ClassVar[float] = 0.0

    def validate(self) -> None:
        super().validate()
        require(
            self.features in FEATURE_CHOICES,
            "features",
            f"one of {', '.join(FEATURE_CHOICES)}",
            self.features,
        )
        require(
            self.feature_loss in FEATURE_LOSSES,
            "feature_loss",
            f"one of {', '.join(FEATURE_LOSSES)}",
            self.feature_loss,
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
            if not spec.has_class_labels:
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
        cfg, x, c = self.config, batch.x, self._condition(batch.y)
        mean, log_var = self.encode(x, c)
        z = reparameterize(mean, log_var)
        params = self.decode(z, c)
        x_hat = self.likelihood.mean(params).view_as(x)
        kl = self._kl_units(mean, log_var, c).sum(-1).mean()  # against p(z) or a learned p(z|y)
        phi, normalize = self.feature_network(x.device), cfg.feature_loss == "normalized"
        feature = feature_loss(phi, x, x_hat, normalize=normalize).mean()
        terms = {"kl": kl, "feature": feature}
        loss = cfg.kl_weight * kl + cfg.feature_weight * feature
        if cfg.pixel_weight > 0:
            pixel = -self.likelihood.log_prob(params, x.flatten(1)).mean()
            loss = loss + cfg.pixel_weight * pixel
            terms["pixel"] = pixel
        return self.with_label_consistency({"loss": loss, **terms}, batch)
