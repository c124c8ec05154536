"""Frozen feature networks and the feature-space ("perceptual") reconstruction loss of DFC-VAE.

Two families, both wrapped in `FeatureExtractor` (frozen, always in eval mode):

* ``vgg19-123`` / ``vgg19-345``: torchvision's VGG19 with ImageNet weights, tapped after
  relu1_1, relu2_1, relu3_1 or relu3_1, relu4_1, relu5_1 (Hou et al. 2016). In
  `torchvision.models.vgg19().features` (`make_layers(cfgs["E"])`) those ReLUs sit at indices

      relu1_1 = 1, relu2_1 = 6, relu3_1 = 11, relu4_1 = 20, relu5_1 = 29

  (each is the ReLU right after the first conv of a block; blocks are separated by the max-pools
  at 4, 9, 18, 27, 36). Inputs are scaled as those weights were trained (torchvision's
  VGG19_Weights.IMAGENET1K_V1 transforms): RGB in [0, 1], minus the ImageNet mean
  (0.485, 0.456, 0.406), divided by the std (0.229, 0.224, 0.225); grayscale images are repeated
  to three channels first. (The DFC-VAE authors' Caffe VGG19 took BGR in [0, 255] minus the mean
  pixel, without the std: activations roughly 255 * 0.226 = 58 times larger, squared errors
  ~3,300 times; the normalised loss below makes that scale irrelevant.)
* ``classifier``: the conv blocks of a `classifier` run trained on the dataset itself, tapped
  after each block (see `genae.models.dfcvae`). It works offline and on 28x28 or 8x8 grayscale
  data, where ImageNet features mean little.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from genae.errors import ConfigError

# --- VGG19 ------------------------------------------------------------------------------------

VGG19_RELU_INDEX: dict[str, int] = {
    "relu1_1": 1,
    "relu2_1": 6,
    "relu3_1": 11,
    "relu4_1": 20,
    "relu5_1": 29,
}
VGG_LAYER_SETS: dict[str, tuple[str, ...]] = {
    "vgg19-123": ("relu1_1", "relu2_1", "relu3_1"),
    "vgg19-345": ("relu3_1", "relu4_1", "relu5_1"),
}
# torchvision's file name for VGG19_Weights.IMAGENET1K_V1 and where it is published.
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/" + VGG19_FILE
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FEATURE_CHOICES = (*VGG_LAYER_SETS, "classifier")


def torchvision_weights_path() -> Path:
    """Where torchvision caches the VGG19 ImageNet weights ($TORCH_HOME/hub/checkpoints/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a .pth/.pt file (loaded without unpickling
    arbitrary objects: weights_only=True)."""
    if not path.is_file():
        raise ConfigError(f"feature_weights: {path} not found")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to parse is the file's fault, reported in one line
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"feature_weights: cannot read {path} as a state dict ({reason})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"feature_weights: {path} does not hold a dict of tensors")
    return state


class FeatureExtractor(nn.Module):
    """A frozen network returning the activations at chosen layer indices of `body`.

    Its parameters never require gradients and it never leaves eval mode (train() is a no-op),
    so BatchNorm statistics and dropout are those it was trained with. Gradients still flow
    through it to its *input*, which is what a perceptual loss needs.
    """

    def __init__(
        self,
        body: nn.Sequential,
        taps: Sequence[int],
        *,
        in_channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        name: str = "features",
    ) -> None:
        super().__init__()
        self.body = body[: max(taps) + 1]
        self.taps = tuple(taps)
        self.in_channels = in_channels
        self.name = name
        for module in self.body:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # a tapped activation must not be overwritten later
        shift = torch.tensor(mean if mean is not None else [0.0] * in_channels)
        scale = torch.tensor(std if std is not None else [1.0] * in_channels)
        self.register_buffer("shift", shift.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, -1, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stays in eval mode whatever the caller asks (its BatchNorm statistics are fixed)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] != self.in_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.in_channels, -1, -1)  # grayscale as RGB
            else:
                raise ConfigError(
                    f"{self.name}: expects {self.in_channels}-channel images, got {x.shape[1]}"
                )
        x = (x - self.shift) / self.scale
        outputs = []
        for index, layer in enumerate(self.body):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs


# How the feature term is scaled (DFCVAEConfig.feature_loss): `normalized` divides each layer's
# term by the mean square of its target activations, `raw` is the paper's unnormalised form.
FEATURE_LOSSES = ("normalized", "raw")


def feature_loss(
    net: FeatureExtractor, x: torch.Tensor, recon: torch.Tensor, *, normalize: bool = True
) -> torch.Tensor:
    """Per-example feature-consistency loss of Hou et al. 2016, summed over the tapped layers l:

        raw:         1/(2 C_l H_l W_l) ||phi_l(x) - phi_l(recon)||^2
        normalized:  the same divided by m_l, the mean over the batch, channels and positions
                     of phi_l(x)^2; i.e. ||phi_l(x_i) - phi_l(recon_i)||^2 / (2 s_l) with
                     s_l = mean_j ||phi_l(x_j)||^2 over the batch

    The normalised term is a relative squared error: it does not change when a layer's
    activations are multiplied by a constant (input scaling, weight scale, feature network),
    nor with the layer's size, and it is 1/2 per layer when phi(recon) is 0. m_l is a constant of
    the batch (the targets carry no gradient); it is floored at 1e-12 for a layer whose targets
    are all zero. Reductions run in float32 whatever the autocast dtype of the features.
    """
    with torch.no_grad():
        targets = net(x)
    total = torch.zeros(len(x), device=x.device)
    for target, feature in zip(targets, net(recon), strict=True):
        target, feature = target.float(), feature.float()
        term = 0.5 * (feature - target).pow(2).flatten(1).mean(-1)
        if normalize:
            term = term / target.pow(2).mean().clamp_min(1e-12)
        total = total + term
    return total


def feature_mse(net: FeatureExtractor, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """The raw (unnormalised) feature loss: per-example sum over the tapped layers of
    1/(2 C H W) ||phi(x) - phi(recon)||^2, the paper's formula. Targets carry no gradient."""
    return feature_loss(net, x, recon, normalize=False)


def vgg19_features(
    layers: str, weights: Path | None = None, image_shape: tuple[int, int, int] | None = None
) -> FeatureExtractor:
    """VGG19 tapped at the relu layers of `layers` ('vgg19-123' or 'vgg19-345').

    weights: a state dict file (.pth or .safetensors) of torchvision's `vgg19` (full model or
    just `features.*`); default torchvision's cached ImageNet file. A missing file is a one-line
    ConfigError saying where it was expected and how to get it.
    """
    # torchvision's vgg19() is VGG(make_layers(cfgs["E"])) plus a 120M-parameter classifier we
    # do not need; building only `features` skips seconds of initialisation.
    from torchvision.models.vgg import cfgs, make_layers

    if layers not in VGG_LAYER_SETS:
        raise ConfigError(f"features: expected one of {', '.join(FEATURE_CHOICES)}, got {layers!r}")
    taps = [VGG19_RELU_INDEX[name] for name in VGG_LAYER_SETS[layers]]
    if image_shape is not None:
        pools = sum(1 for i in (4, 9, 18, 27) if i < max(taps))
        if min(image_shape[1:]) < 2**pools:
            raise ConfigError(
                f"features: {layers} needs images of at least {2**pools}x{2**pools} pixels, the "
                f"data is {image_shape[1]}x{image_shape[2]}; use --features classifier"
            )
    path = weights if weights is not None else torchvision_weights_path()
    if weights is None and not path.is_file():
        raise ConfigError(
            f"features: the VGG19 ImageNet weights are not at {path}; download {VGG19_URL} "
            f"there, or pass --feature-weights PATH (.pth or .safetensors)"
        )
    state = read_state_dict(path)
    features = make_layers(cfgs["E"], batch_norm=False)
    body_state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(body_state, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"feature_weights: {path} is not a torchvision vgg19 state dict ({reason})"
        ) from None
    return FeatureExtractor(
        features, taps, in_channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, name=layers
    )
